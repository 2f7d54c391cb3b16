//! E2E harness: a client from KUBECONFIG (so the suite runs unchanged on the local control
//! plane or kind), a throw-away namespace per test, the operator run as its ServiceAccount, and
//! polling with deadlines instead of sleeps. The cluster harness the benches share
//! (tests/support/harness.rs, process.rs) returns its failures; here the tests panic with them.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{OnceCell, RwLock};

use super::fixtures::repo_root;
use super::harness;
use super::process::{Launch, OperatorProcess};

/// Field manager of objects the tests write.
pub const TEST_MANAGER: &str = "course-operator-e2e";

/// Tests that change the cluster itself (nodes, the apiserver) take this exclusively; every
/// other test holds it shared.
pub static CLUSTER: RwLock<()> = RwLock::const_new(());

/// A client for the cluster in KUBECONFIG.
pub async fn client() -> Client {
    harness::client(None).await.unwrap_or_else(|e| panic!("e2e tests need a cluster: {e:#}"))
}

static CRD: OnceCell<()> = OnceCell::const_new();

/// Installs crds/ once per test binary and waits until it is Established.
pub async fn ensure_crd(client: &Client) {
    CRD.get_or_init(|| async {
        harness::ensure_crd(client, TEST_MANAGER).await.unwrap_or_else(|e| panic!("{e:#}"));
    })
    .await;
}

/// Polls `probe` every 200 ms (the tests run in parallel: half the benches' pace spares the
/// apiserver) until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    harness::poll_every(Duration::from_millis(200), timeout, what, probe).await.unwrap_or_else(|e| panic!("{e}"))
}

/// What a test needs beyond an apiserver, by the file it is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// The local cluster's tainted kwok nodes: pods Ready at once, nodes to flip, CPU to fake.
    KwokNodes,
    /// The machine of the local cluster: hack/nodes.sh runs its real kubelets, its processes
    /// and its apiserver's audit log are here, MetalLB routes LoadBalancer addresses to it.
    LocalMachine,
}

impl Needs {
    fn of_test_file(file: &str) -> &'static [Needs] {
        let module = file.rsplit('/').next().unwrap_or(file);
        match module {
            "controller.rs" | "data.rs" | "resilience.rs" | "rollouts.rs" => &[Needs::KwokNodes],
            "real_nodes.rs" | "traffic.rs" => &[Needs::LocalMachine],
            _ => &[],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Needs::KwokNodes => "the kwok nodes of the local cluster (nodes labelled type=kwok)",
            Needs::LocalMachine => {
                "the machine of the local cluster (hack/nodes.sh's real nodes, its processes, its audit log, MetalLB)"
            }
        }
    }
}

/// Whether a test runs, given what the cluster lacks and `E2E_SKIP_UNSUPPORTED`.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Run,
    /// Skipped, with the reason printed: only when asked for (a kind cluster).
    Skip(String),
    /// The cluster lacks what the test needs and nobody asked to skip: the test fails.
    Fail(String),
}

pub fn gate(missing: &[Needs], skip_unsupported: bool) -> Gate {
    if missing.is_empty() {
        return Gate::Run;
    }
    let what: Vec<&str> = missing.iter().map(|n| n.describe()).collect();
    let reason = format!("needs {}, which this cluster lacks", what.join(" and "));
    if skip_unsupported { Gate::Skip(reason) } else { Gate::Fail(reason) }
}

async fn has(client: &Client, need: Needs) -> bool {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    match need {
        Needs::KwokNodes => nodes
            .list(&kube::api::ListParams::default().labels("type=kwok").limit(1))
            .await
            .is_ok_and(|list| !list.items.is_empty()),
        Needs::LocalMachine => {
            on_local_machine() && nodes.get_opt("real-zone-a").await.is_ok_and(|node| node.is_some())
        }
    }
}

/// True when this machine runs the local cluster's real nodes (hack/nodes.sh).
pub fn on_local_machine() -> bool {
    repo_root().join(".cluster/nodes").is_dir()
}

/// Runs `test` in a fresh namespace `e2e-<prefix>-<suffix>`, deleted afterwards (also when the
/// test panics) unless `E2E_KEEP_NAMESPACES=1`. A test whose file needs what the cluster lacks
/// ([`Needs`]) fails, or, with `E2E_SKIP_UNSUPPORTED=1` (the kind workflow), is skipped with
/// the reason printed.
#[track_caller]
pub fn with_namespace<F, Fut>(prefix: &str, test: F) -> impl Future<Output = ()>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let caller = std::panic::Location::caller();
    let needs = Needs::of_test_file(caller.file());
    let prefix = prefix.to_owned();
    async move {
        let client = client().await;
        let mut missing = Vec::new();
        for &need in needs {
            if !has(&client, need).await {
                missing.push(need);
            }
        }
        let skip_unsupported = std::env::var("E2E_SKIP_UNSUPPORTED").is_ok_and(|v| v == "1");
        match gate(&missing, skip_unsupported) {
            Gate::Run => run_in_namespace(client, &prefix, test).await,
            Gate::Skip(reason) => eprintln!("SKIPPED e2e-{prefix} ({}:{}): {reason}", caller.file(), caller.line()),
            Gate::Fail(reason) => panic!(
                "e2e-{prefix} ({}:{}) {reason}: run it on the local cluster (make cluster), or set \
                 E2E_SKIP_UNSUPPORTED=1 to skip such tests",
                caller.file(),
                caller.line()
            ),
        }
    }
}

async fn run_in_namespace<F, Fut>(client: Client, prefix: &str, test: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    ensure_crd(&client).await;
    let name = harness::create_namespace(&client, &format!("e2e-{prefix}"), TEST_MANAGER)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let outcome = std::panic::AssertUnwindSafe(test(client.clone(), name.clone())).catch_unwind().await;
    let _ = harness::delete_namespace(&client, &name, "E2E_KEEP_NAMESPACES", None).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Server-side applies a JSON object as the test's field manager.
pub async fn apply<K>(api: &Api<K>, object: serde_json::Value) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    harness::apply_json(api, &object, TEST_MANAGER).await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// How long connecting, and then reading an answer, may take each before a request counts as
/// unanswered.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// `GET path` on `host:port` over HTTP/1.0 from this machine: (status code, body); `None` when
/// nothing answers within 3 s.
pub async fn http_get(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    harness::http_get(host, port, path, ANSWER_WITHIN).await
}

/// The operator binary, run out of cluster against KUBECONFIG but impersonating its own
/// ServiceAccount bound to manifests/rbac/clusterrole.yaml, so missing permissions fail tests.
pub struct Operator {
    // Declared first, dropped first: the process is killed before its directory goes.
    process: OperatorProcess,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

static RBAC: OnceCell<()> = OnceCell::const_new();

async fn ensure_cluster_roles(client: &Client) {
    RBAC.get_or_init(|| async {
        let text = std::fs::read_to_string(repo_root().join("manifests/rbac/clusterrole.yaml")).expect("RBAC manifest");
        let roles: Vec<ClusterRole> = serde_saphyr::from_multiple(&text).expect("RBAC parses");
        let api: Api<ClusterRole> = Api::all(client.clone());
        for role in roles {
            api.patch(&role.name_any(), &PatchParams::apply(TEST_MANAGER).force(), &Patch::Apply(&role))
                .await
                .expect("apply ClusterRole");
        }
    })
    .await;
}

/// The user the operator runs as in `namespace`, and its groups.
fn service_account_user(namespace: &str) -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:{namespace}:course-operator"),
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    )
}

/// Binds the operator's roles to ServiceAccount `course-operator` in `namespace` and waits
/// until the apiserver's authorizer grants them (RBAC takes effect asynchronously, so a
/// process started right after the binding can otherwise be refused). The
/// ClusterRoleBinding is owned by the Namespace, so it goes when the namespace goes.
pub async fn bind_service_account(client: &Client, namespace: &str) {
    ensure_cluster_roles(client).await;
    let ns: Namespace = Api::all(client.clone()).get(namespace).await.expect("namespace exists");
    let owner = serde_json::json!([{
        "apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": ns.uid().expect("uid"),
    }]);
    apply(&Api::<ServiceAccount>::namespaced(client.clone(), namespace), serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "course-operator", "namespace": namespace},
    }))
    .await;
    let subject = serde_json::json!([{"kind": "ServiceAccount", "name": "course-operator", "namespace": namespace}]);
    apply(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("course-operator-{namespace}"), "ownerReferences": owner},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "course-operator"},
            "subjects": subject,
        }),
    )
    .await;
    apply(&Api::<RoleBinding>::namespaced(client.clone(), namespace), serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "course-operator-leader-election", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "course-operator-leader-election"},
        "subjects": subject,
    }))
    .await;
    // One permission from each binding: the Lease (RoleBinding) and the children (ClusterRoleBinding).
    for (group, resource, verb) in [
        ("coordination.k8s.io", "leases", "update"),
        ("apps", "replicasets", "patch"),
        ("microcourses.io", "courseservices", "watch"),
    ] {
        eventually(Duration::from_secs(30), &format!("RBAC to allow {verb} {resource}"), || async {
            allowed(client, namespace, group, resource, verb).await.then_some(())
        })
        .await;
    }
}

/// Whether the apiserver's authorizer lets the operator's ServiceAccount in `namespace` do
/// `verb` on `resource` there (a SubjectAccessReview).
pub async fn allowed(client: &Client, namespace: &str, group: &str, resource: &str, verb: &str) -> bool {
    let (user, groups) = service_account_user(namespace);
    let review: SubjectAccessReview = serde_json::from_value(serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": user, "groups": groups,
            "resourceAttributes": {"namespace": namespace, "group": group, "resource": resource, "verb": verb},
        },
    }))
    .expect("SubjectAccessReview object");
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .is_ok_and(|r| r.status.is_some_and(|s| s.allowed))
}

/// A kubeconfig like the current one, impersonating the operator's ServiceAccount.
fn impersonating_kubeconfig(namespace: &str, dir: &std::path::Path) -> PathBuf {
    let mut config = Kubeconfig::read().expect("KUBECONFIG readable");
    let context_name = config.current_context.clone().expect("kubeconfig has a current context");
    let user = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.user.clone())
        .expect("current context has a user");
    let (sa_user, sa_groups) = service_account_user(namespace);
    for auth in &mut config.auth_infos {
        if Some(&auth.name) == user.as_ref() {
            let info = auth.auth_info.get_or_insert_default();
            info.impersonate = Some(sa_user.clone());
            info.impersonate_groups = Some(sa_groups.clone());
        }
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_saphyr::to_string(&config).expect("kubeconfig serialises")).expect("write kubeconfig");
    path
}

impl Operator {
    /// Starts the operator watching `namespace` (its Lease lives there too) once its RBAC is
    /// in effect, and waits until it reports ready. `extra` adds command-line options.
    pub async fn start(client: &Client, namespace: &str, identity: &str, extra: &[&str]) -> Self {
        bind_service_account(client, namespace).await;
        let mut operator = Self::spawn(namespace, identity, extra);
        operator.wait_ready(OperatorProcess::READY_WITHIN).await;
        operator
    }

    /// Starts the operator process as the ServiceAccount of `namespace` without binding its
    /// roles and without waiting.
    pub fn spawn(namespace: &str, identity: &str, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("course-operator-e2e-{namespace}-{identity}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = impersonating_kubeconfig(namespace, &dir);
        let level = std::env::var("E2E_OPERATOR_LOG_LEVEL").unwrap_or_else(|_| "info,course_operator=debug".into());
        let launch = Launch {
            binary: PathBuf::from(env!("CARGO_BIN_EXE_course-operator")),
            env: vec![("KUBECONFIG", kubeconfig.into()), ("LOG_LEVEL", level.into())],
            log_path: dir.join("operator.log"),
            answer_within: ANSWER_WITHIN,
        };
        let process = OperatorProcess::spawn(launch, namespace, identity, extra).unwrap_or_else(|e| panic!("{e:#}"));
        Self { process, _dir: tempdir::Dir(dir) }
    }

    /// Waits until /readyz answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        self.process.wait_ready(timeout).await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// The operator's log so far (for assertion messages).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// GET on the metrics port: (status code, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        self.process.get(path).await
    }

    /// Sum of the samples of metric `family` (the whole name, e.g. `..._total`) on /metrics
    /// whose labels contain `label_filter`.
    pub async fn counter(&self, family: &str, label_filter: &str) -> f64 {
        self.try_counter(family, label_filter).await.expect("metrics answer")
    }

    /// Like [`Self::counter`], `None` while the metrics port does not answer yet.
    pub async fn try_counter(&self, family: &str, label_filter: &str) -> Option<f64> {
        Some(self.process.metrics().await.ok()?.sum(family, label_filter))
    }

    /// Write requests (create, update, patch, delete) made so far.
    pub async fn writes(&self) -> f64 {
        self.process.metrics().await.expect("metrics answer").writes()
    }

    /// Whether this replica says it holds the lease.
    pub async fn is_leader(&self) -> bool {
        self.process.metrics().await.expect("metrics answer").is_leader()
    }

    /// SIGKILL: no clean-up, the Lease is not released.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends a signal by name (`STOP` freezes the process, `CONT` thaws it).
    pub fn signal(&self, name: &str) {
        self.process.signal(name).unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// SIGTERM and wait: a graceful stop that releases the Lease.
    pub fn terminate(&mut self) {
        self.process.terminate();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", self.log());
        }
        self.kill();
    }
}

pub use crate::audit::AuditedWrite;

/// Write requests to the operator's kinds in `namespace` received at or after `since`, as the
/// local apiserver recorded them (hack/kwok/audit-policy.yaml). Panics when there is no audit
/// log (a cluster not started by hack/cluster.sh): the caller's claim cannot be checked then.
pub fn audited_writes(namespace: &str, since: k8s_openapi::jiff::Timestamp) -> Vec<AuditedWrite> {
    let path = crate::audit::log_path(&repo_root());
    crate::audit::writes(&path, namespace, since).unwrap_or_else(|e| {
        panic!("{}: {e}; the local cluster (hack/cluster.sh) writes the apiserver's audit log there", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_runs_skips_only_when_asked_and_otherwise_fails_on_a_cluster_that_lacks_what_it_needs() {
        assert_eq!(gate(&[], false), Gate::Run);
        assert_eq!(gate(&[], true), Gate::Run);
        assert!(matches!(gate(&[Needs::KwokNodes], false), Gate::Fail(r) if r.contains("type=kwok")));
        assert!(matches!(gate(&[Needs::LocalMachine], true), Gate::Skip(r) if r.contains("hack/nodes.sh")));
        assert_eq!(Needs::of_test_file("tests/e2e/rollouts.rs"), &[Needs::KwokNodes]);
        assert_eq!(Needs::of_test_file("tests/e2e/traffic.rs"), &[Needs::LocalMachine]);
        assert_eq!(Needs::of_test_file("tests/e2e/admission.rs"), &[] as &[Needs]);
    }
}
