//! Side by side with Argo Rollouts (`make bench-peers` → hack/bench-peers.sh → this target):
//! the same fleet, expressed once as CourseServices for the release course-operator and once
//! as Argo Rollouts (a Rollout with the same canary steps, replicas and pod template, plus its
//! Service) for Argo's controller built from the Go module proxy, on the same cluster.
//!
//! Per run, each side alone in a fresh namespace, with its controller as a separate process
//! watching only that namespace (leader election on for both); the order alternates by run:
//! 1. converge: N objects applied (16 requests in flight) → every one Healthy with all its
//!    replicas Ready;
//! 2. update: the image of all N changed at once → every canary finished on the new pods;
//! 3. memory: VmRSS of the controller with 0 objects, converged, after the update; VmHWM;
//! 4. writes: the apiserver's audit log (hack/kwok/audit-policy-peers.yaml) counted per phase for
//!    the side's namespace, by user agent: the controller's own, kube-controller-manager's; then
//!    an idle window of PEERS_IDLE_SECONDS (30) after the update, where both should write 0.
//!
//! Both sides are judged by the same clock: a list every 250 ms of the side's objects, from the
//! first request of the burst to the first list that saw all N done (so up to 250 ms late on
//! both sides alike). Environment: PEERS_N (100), PEERS_RUNS (2), PEERS_REPLICAS (3), PEERS_IDLE_SECONDS,
//! ARGO_ROLLOUTS_BIN and ARGO_ROLLOUTS_CRDS (set by hack/bench-peers.sh), OPERATOR_BIN,
//! PEERS_OUT_JSON, PEERS_OUT_MD.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt as _};
use serde::Serialize;
use serde_json::{Value, json};

use common::{LoggedProcess, progress};
use course_operator::api::{CourseService, RolloutPhase};

const POLL: Duration = Duration::from_millis(250);
const STEPS: &str =
    r#"[{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 60}, {"pause": {"duration": "10s"}}]"#;

#[derive(Clone, Debug, Default, Serialize)]
struct Side {
    controller: String,
    n: usize,
    converge_seconds: f64,
    update_seconds: f64,
    rss_empty_mib: f64,
    rss_converged_mib: f64,
    rss_updated_mib: f64,
    peak_rss_mib: f64,
    /// (converged − empty) / N, in KiB.
    rss_per_object_kib: f64,
    /// Write requests per object from the controller itself, create burst → all Healthy.
    own_writes_converge: f64,
    /// … image change → every canary finished.
    own_writes_update: f64,
    /// Write requests per object from kube-controller-manager (ReplicaSets, Deployments and
    /// their status; not pods, which the audit policy leaves out: 3 per object on both sides).
    kcm_writes_converge: f64,
    kcm_writes_update: f64,
    /// Write requests of the controller in the idle window after the update (all N objects).
    idle_writes: f64,
    /// Image change → each canary step passed, then finished: seconds, over the N objects.
    update_timeline: Vec<Milestone>,
}

/// When the N objects of one side passed one point of the canary, counted from the image change.
#[derive(Clone, Debug, Default, Serialize)]
struct Milestone {
    what: String,
    first_seconds: f64,
    median_seconds: f64,
    last_seconds: f64,
}

/// What the update poll saw of each object: when it first showed each canary step passed, and
/// when it first showed the canary finished.
struct Timeline {
    started: Instant,
    /// Per object: seconds at which step index k (1..=steps) was first seen, then "finished".
    seen: std::collections::BTreeMap<String, Vec<Option<f64>>>,
}

impl Timeline {
    /// The points of the canary: each step passed, then finished.
    const POINTS: [&'static str; 5] =
        ["20% Ready (step 1 passed)", "pause 10 s over", "60% Ready (step 3 passed)", "pause 10 s over", "finished"];

    fn new(started: Instant) -> Self {
        Self { started, seen: std::collections::BTreeMap::new() }
    }

    /// Records one listed object: `passed` steps behind it (its step index), or all of them and
    /// finished when `done`. A step skipped between two polls counts as passed at the later one.
    fn record(&mut self, name: &str, passed: Option<i64>, done: bool, at: Instant) {
        let t = common::secs_between(self.started, at);
        let points = self.seen.entry(name.to_owned()).or_insert_with(|| vec![None; Self::POINTS.len()]);
        let reached = if done { Self::POINTS.len() } else { usize::try_from(passed.unwrap_or(0)).unwrap_or(0) };
        for point in points.iter_mut().take(reached.min(Self::POINTS.len())) {
            point.get_or_insert(t);
        }
    }

    fn milestones(&self) -> Vec<Milestone> {
        Self::POINTS
            .iter()
            .enumerate()
            .map(|(i, what)| {
                let times: Vec<f64> = self.seen.values().filter_map(|p| p[i]).collect();
                Milestone {
                    what: (*what).into(),
                    first_seconds: times.iter().copied().fold(f64::INFINITY, f64::min),
                    median_seconds: common::median(&times).unwrap_or(0.0),
                    last_seconds: times.iter().copied().fold(0.0, f64::max),
                }
            })
            .collect()
    }
}

/// When each phase of one side began and ended (wall clock, as the audit log records it).
struct Phases {
    start: Timestamp,
    converged: Timestamp,
    update: Timestamp,
    updated: Timestamp,
    idle_end: Timestamp,
}

impl Side {
    /// Counts the audit log's writes in `ns` per phase; `own` tells the controller's user agent.
    fn count_writes(&mut self, ns: &str, phases: &Phases, own: impl Fn(&str) -> bool) -> anyhow::Result<()> {
        let path = common::audit::log_path(&common::repo_root());
        let writes = common::audit::writes(&path, ns, phases.start)
            .with_context(|| format!("read the audit log {}", path.display()))?;
        let count = |from: Timestamp, to: Timestamp, who: &dyn Fn(&str) -> bool| {
            writes.iter().filter(|w| w.at >= from && w.at < to && who(&w.user_agent)).count() as f64
        };
        let kcm = |ua: &str| ua.starts_with("kube-controller-manager/");
        let per = self.n.max(1) as f64;
        self.own_writes_converge = count(phases.start, phases.converged, &own) / per;
        self.own_writes_update = count(phases.update, phases.updated, &own) / per;
        self.kcm_writes_converge = count(phases.start, phases.converged, &kcm) / per;
        self.kcm_writes_update = count(phases.update, phases.updated, &kcm) / per;
        self.idle_writes = count(phases.updated, phases.idle_end, &own);
        if self.own_writes_converge == 0.0 {
            let mut agents: Vec<&str> = writes.iter().map(|w| w.user_agent.as_str()).collect();
            agents.sort_unstable();
            agents.dedup();
            bail!("no write of {} in the audit log for {ns}; user agents seen: {agents:?}", self.controller);
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, Serialize)]
struct Run {
    run: usize,
    first: String,
    course_operator: Side,
    argo_rollouts: Side,
}

struct Settings {
    n: usize,
    runs: usize,
    replicas: i32,
    argo_bin: PathBuf,
    argo_crds: PathBuf,
    log_dir: PathBuf,
    idle: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    match bench().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench() -> anyhow::Result<()> {
    let settings = Settings {
        n: common::env_or("PEERS_N", 100),
        runs: common::env_or("PEERS_RUNS", 2),
        replicas: common::env_or("PEERS_REPLICAS", 3),
        argo_bin: PathBuf::from(std::env::var("ARGO_ROLLOUTS_BIN").context("ARGO_ROLLOUTS_BIN is not set")?),
        argo_crds: PathBuf::from(std::env::var("ARGO_ROLLOUTS_CRDS").context("ARGO_ROLLOUTS_CRDS is not set")?),
        log_dir: PathBuf::from(std::env::var("PEERS_LOG_DIR").unwrap_or_else(|_| "/tmp/course-operator-peers".into())),
        idle: Duration::from_secs(common::env_or("PEERS_IDLE_SECONDS", 30)),
    };
    let client = common::client().await?;
    common::ensure_crd(&client).await?;
    install_argo_crds(&settings.argo_crds)?;
    // One Service per object on each side: beyond the local control plane's /24, an extra
    // ServiceCIDR for the run (each side's namespace, with its Services, is gone before the next).
    let cidr = settings.n > 150;
    if cidr {
        common::add_service_cidr(&client, PEERS_CIDR, "10.3.0.0/20").await?;
    }
    let outcome = all_runs(&client, &settings).await;
    if cidr {
        common::remove_service_cidr(&client, PEERS_CIDR).await;
    }
    write_outputs(&settings, &outcome?)
}

const PEERS_CIDR: &str = "course-operator-peers";

async fn all_runs(client: &Client, settings: &Settings) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for run in 1..=settings.runs {
        let argo_first = run.is_multiple_of(2);
        progress(format!(
            "=== run {run}/{}: {} first ===",
            settings.runs,
            if argo_first { "Argo Rollouts" } else { "course-operator" }
        ));
        let mut result =
            Run { run, first: if argo_first { "argo-rollouts" } else { "course-operator" }.into(), ..Run::default() };
        if argo_first {
            result.argo_rollouts = argo_side(client, settings).await?;
            result.course_operator = our_side(client, settings).await?;
        } else {
            result.course_operator = our_side(client, settings).await?;
            result.argo_rollouts = argo_side(client, settings).await?;
        }
        progress(format!("run {run}: {result:?}"));
        runs.push(result);
    }
    Ok(runs)
}

fn install_argo_crds(path: &Path) -> anyhow::Result<()> {
    let kubectl = common::repo_root().join(".cluster/bin/kubectl");
    let kubectl = if kubectl.exists() { kubectl } else { PathBuf::from("kubectl") };
    let status = Command::new(kubectl)
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .context("kubectl apply of the Argo Rollouts CRDs")?;
    if !status.success() {
        bail!("kubectl apply -f {} failed", path.display());
    }
    Ok(())
}

fn pod_template(image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "peer"}},
        "spec": {
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}],
        },
    })
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i:04}")).collect()
}

fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(0.0, |k| k as f64 / 1024.0)
}

/// Lists every `period` until `done` holds for the listed objects; returns the instant of the
/// list that showed it.
async fn poll_list<K, F>(api: &Api<K>, timeout: Duration, what: &str, mut done: F) -> anyhow::Result<Instant>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: FnMut(&[K]) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let listed = api.list(&ListParams::default()).await?;
        let at = Instant::now();
        if done(&listed.items) {
            return Ok(at);
        }
        if at > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// course-operator

async fn our_side(client: &Client, settings: &Settings) -> anyhow::Result<Side> {
    let ns = common::create_namespace(client, "peers-co").await?;
    let outcome = our_side_in(client, settings, &ns).await;
    common::delete_namespace(client, &ns, Some(Duration::from_secs(300))).await?;
    outcome
}

fn course_healthy(cs: &CourseService, replicas: i32, image: &str) -> bool {
    let Some(status) = cs.status.as_ref() else { return false };
    let healthy = status.rollout.as_ref().is_some_and(|r| {
        r.phase == RolloutPhase::Healthy && r.stable_revision.is_some() && r.stable_revision == r.new_revision
    });
    cs.spec.image == image
        && status.observed_generation == cs.metadata.generation
        && status.ready_replicas == replicas
        && healthy
}

async fn our_side_in(client: &Client, settings: &Settings, ns: &str) -> anyhow::Result<Side> {
    let operator = common::start_operator(ns, "peers", &[], &settings.log_dir).await?;
    let mut side = Side { controller: "course-operator".into(), n: settings.n, ..Side::default() };
    side.rss_empty_mib = mib(common::proc_status_kib(operator.pid(), "VmRSS"));
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let spec = |image: &str| {
        json!({"image": image, "replicas": settings.replicas, "service": {"type": "ClusterIP"},
               "strategy": {"type": "Canary", "canary": {"steps": serde_json::from_str::<Value>(STEPS).unwrap_or_default()}}})
    };
    let timeout = Duration::from_secs(600);
    let v1 = "registry.example.com/peers/app:1";
    let phase_start = Timestamp::now();
    let started = Instant::now();
    apply_all(names(settings.n), |name| {
        let api = api.clone();
        let object = common::course(&name, ns, spec(v1));
        async move { common::apply_json(&api, &object, common::HARNESS_MANAGER).await.map(|_| ()) }
    })
    .await?;
    let n = settings.n;
    let replicas = settings.replicas;
    let done = poll_list(&api, timeout, "every CourseService Healthy", |items| {
        items.iter().filter(|cs| course_healthy(cs, replicas, v1)).count() >= n
    })
    .await?;
    let converged = Timestamp::now();
    side.converge_seconds = common::secs_between(started, done);
    side.rss_converged_mib = mib(common::proc_status_kib(operator.pid(), "VmRSS"));
    progress(format!("course-operator: {n} Healthy in {:.1}s", side.converge_seconds));

    let v2 = "registry.example.com/peers/app:2";
    let update = Timestamp::now();
    let started = Instant::now();
    apply_all(names(settings.n), |name| {
        let api = api.clone();
        async move {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"image": v2}})))
                .await
                .map(|_| ())?;
            anyhow::Ok(())
        }
    })
    .await?;
    let mut timeline = Timeline::new(started);
    let done = poll_list(&api, timeout, "every CourseService's canary finished", |items| {
        let at = Instant::now();
        let mut finished = 0;
        for cs in items {
            let done = course_healthy(cs, replicas, v2);
            finished += usize::from(done);
            let rollout = cs.status.as_ref().and_then(|s| s.rollout.as_ref());
            // The step index means the new revision's canary only once the status names it.
            let passed = rollout.filter(|r| r.new_revision != r.stable_revision).map(|r| i64::from(r.step));
            timeline.record(&cs.name_any(), passed, done, at);
        }
        finished >= n
    })
    .await?;
    side.update_timeline = timeline.milestones();
    let updated = Timestamp::now();
    side.update_seconds = common::secs_between(started, done);
    side.rss_updated_mib = mib(common::proc_status_kib(operator.pid(), "VmRSS"));
    side.peak_rss_mib = mib(common::proc_status_kib(operator.pid(), "VmHWM"));
    side.rss_per_object_kib = (side.rss_converged_mib - side.rss_empty_mib) * 1024.0 / n.max(1) as f64;
    progress(format!("course-operator: {n} canaries finished in {:.1}s", side.update_seconds));
    tokio::time::sleep(settings.idle).await;
    let phases = Phases { start: phase_start, converged, update, updated, idle_end: Timestamp::now() };
    side.count_writes(ns, &phases, |ua| ua.starts_with("course-operator/"))?;
    Ok(side)
}

async fn apply_all<F, Fut>(names: Vec<String>, apply: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    futures::stream::iter(names).map(apply).buffer_unordered(16).try_collect::<Vec<_>>().await.map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Argo Rollouts

/// Starts Argo's controller as a separate process, watching one namespace.
fn start_argo(settings: &Settings, ns: &str) -> anyhow::Result<LoggedProcess> {
    let kubeconfig = std::env::var("KUBECONFIG").context("KUBECONFIG is not set")?;
    let mut command = Command::new(&settings.argo_bin);
    command
        .args(["--kubeconfig", &kubeconfig, "--namespaced", "--namespace", ns])
        .args(["--metricsport", "0", "--healthzPort", "0", "--loglevel", "warn"])
        // its Lease and configuration live in "the controller's namespace": this one
        .env("POD_NAMESPACE", ns);
    LoggedProcess::spawn(command, settings.log_dir.join(format!("argo-rollouts-{ns}.log")))
}

fn rollout_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"), "rollouts")
}

fn rollout_healthy(rollout: &DynamicObject, replicas: i32, image: &str) -> bool {
    let status = &rollout.data["status"];
    let spec_image = rollout.data["spec"]["template"]["spec"]["containers"][0]["image"].as_str();
    let ready = status["readyReplicas"].as_i64() == Some(i64::from(replicas))
        && status["updatedReplicas"].as_i64() == Some(i64::from(replicas));
    let stable = status["stableRS"].as_str().is_some() && status["stableRS"] == status["currentPodHash"];
    // Argo writes its observedGeneration as a string; before it matches, the status is the
    // previous spec's (a Rollout whose new image it has not seen yet still says Healthy).
    let generation = rollout.metadata.generation.unwrap_or(0).to_string();
    let observed = status["observedGeneration"].as_str() == Some(generation.as_str())
        || status["observedGeneration"].as_i64().map(|g| g.to_string()) == Some(generation);
    spec_image == Some(image) && observed && status["phase"] == "Healthy" && ready && stable
}

async fn argo_side(client: &Client, settings: &Settings) -> anyhow::Result<Side> {
    let ns = common::create_namespace(client, "peers-argo").await?;
    let outcome = argo_side_in(client, settings, &ns).await;
    common::delete_namespace(client, &ns, Some(Duration::from_secs(300))).await?;
    outcome
}

async fn argo_side_in(client: &Client, settings: &Settings, ns: &str) -> anyhow::Result<Side> {
    let argo = start_argo(settings, ns)?;
    // Its health port is not exposed here: it is ready to work once it holds its Lease in the
    // namespace (it starts its informers as the leader), as ours is once /readyz answers.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), ns);
    poll_list(&leases, Duration::from_secs(60), "Argo Rollouts to hold its Lease", |items| {
        items.iter().any(|l| l.spec.as_ref().and_then(|s| s.holder_identity.as_ref()).is_some())
    })
    .await
    .map_err(|e| anyhow!("{e}; Argo Rollouts log tail:\n{}", argo.log_tail(20)))?;
    let mut side = Side { controller: "argo-rollouts".into(), n: settings.n, ..Side::default() };
    side.rss_empty_mib = mib(common::proc_status_kib(argo.pid(), "VmRSS"));
    let resource = rollout_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), ns);
    let steps: Value = serde_json::from_str(STEPS)?;
    let rollout = |name: &str, image: &str| {
        let mut template = pod_template(image);
        template["metadata"]["labels"]["peer"] = json!(name);
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": settings.replicas,
                "selector": {"matchLabels": {"app": "peer", "peer": name}},
                "template": template,
                "strategy": {"canary": {"steps": steps}},
            },
        })
    };
    let timeout = Duration::from_secs(600);
    let v1 = "registry.example.com/peers/app:1";
    let phase_start = Timestamp::now();
    let started = Instant::now();
    apply_all(names(settings.n), |name| {
        let (api, services) = (api.clone(), services.clone());
        let object = rollout(&name, v1);
        let service = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": "peer", "peer": name}, "ports": [{"port": 80, "targetPort": 8080}]},
        });
        async move {
            let params = PatchParams::apply(common::HARNESS_MANAGER).force();
            services.patch(&name, &params, &Patch::Apply(&service)).await?;
            api.patch(&name, &params, &Patch::Apply(&object)).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    let n = settings.n;
    let replicas = settings.replicas;
    let done = poll_list(&api, timeout, "every Rollout Healthy", |items| {
        items.iter().filter(|r| rollout_healthy(r, replicas, v1)).count() >= n
    })
    .await
    .map_err(|e| anyhow!("{e}; Argo Rollouts log tail:\n{}", argo.log_tail(20)))?;
    let converged = Timestamp::now();
    side.converge_seconds = common::secs_between(started, done);
    side.rss_converged_mib = mib(common::proc_status_kib(argo.pid(), "VmRSS"));
    progress(format!("argo-rollouts: {n} Healthy in {:.1}s", side.converge_seconds));

    let v2 = "registry.example.com/peers/app:2";
    let update = Timestamp::now();
    let started = Instant::now();
    apply_all(names(settings.n), |name| {
        let api = api.clone();
        let object = rollout(&name, v2);
        async move {
            api.patch(&name, &PatchParams::apply(common::HARNESS_MANAGER).force(), &Patch::Apply(&object)).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    let mut timeline = Timeline::new(started);
    let done = poll_list(&api, timeout, "every Rollout's canary finished", |items| {
        let at = Instant::now();
        let mut finished = 0;
        for rollout in items {
            let done = rollout_healthy(rollout, replicas, v2);
            finished += usize::from(done);
            // Its step index means the new image's canary once its status is of this generation
            // and the stable ReplicaSet is not the current one.
            let status = &rollout.data["status"];
            let canary = status["stableRS"] != status["currentPodHash"];
            let passed = canary.then(|| status["currentStepIndex"].as_i64()).flatten();
            timeline.record(&rollout.name_any(), passed, done, at);
        }
        finished >= n
    })
    .await
    .map_err(|e| anyhow!("{e}; Argo Rollouts log tail:\n{}", argo.log_tail(20)))?;
    side.update_timeline = timeline.milestones();
    let updated = Timestamp::now();
    side.update_seconds = common::secs_between(started, done);
    side.rss_updated_mib = mib(common::proc_status_kib(argo.pid(), "VmRSS"));
    side.peak_rss_mib = mib(common::proc_status_kib(argo.pid(), "VmHWM"));
    side.rss_per_object_kib = (side.rss_converged_mib - side.rss_empty_mib) * 1024.0 / n.max(1) as f64;
    progress(format!("argo-rollouts: {n} canaries finished in {:.1}s", side.update_seconds));
    tokio::time::sleep(settings.idle).await;
    let phases = Phases { start: phase_start, converged, update, updated, idle_end: Timestamp::now() };
    // Its binary is rollouts-controller: client-go's default user agent starts with it.
    side.count_writes(ns, &phases, |ua| ua.starts_with("rollouts-controller/"))?;
    Ok(side)
}

// ---------------------------------------------------------------------------------------------
// output

fn median(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    let values: Vec<f64> = runs.iter().map(f).collect();
    common::median(&values).unwrap_or(0.0)
}

fn write_outputs(settings: &Settings, runs: &[Run]) -> anyhow::Result<()> {
    let json_path = std::env::var("PEERS_OUT_JSON").unwrap_or_else(|_| "benchmarks/peers.json".into());
    let md_path = std::env::var("PEERS_OUT_MD").unwrap_or_else(|_| "/tmp/course-operator-peers.md".into());
    let doc =
        json!({"benchmark": "peers", "n": settings.n, "replicas": settings.replicas, "steps": STEPS, "runs": runs});
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let mut out = format!(
        "N = {} objects per side × {} replicas, canary steps `20% → pause 10 s → 60% → pause 10 s`, {} run(s) alternating which side goes first; medians, each run in brackets.\n\n",
        settings.n,
        settings.replicas,
        runs.len()
    );
    out.push_str("| figure | course-operator | Argo Rollouts | ratio |\n|---|---|---|---|\n");
    let row = |out: &mut String, what: &str, f: &dyn Fn(&Side) -> f64, digits: usize| {
        let ours = median(runs, |r| f(&r.course_operator));
        let theirs = median(runs, |r| f(&r.argo_rollouts));
        let each = |pick: &dyn Fn(&Run) -> &Side| {
            runs.iter().map(|r| format!("{:.digits$}", f(pick(r)))).collect::<Vec<_>>().join(", ")
        };
        let ratio = if theirs > 0.0 { format!("{:.2}", ours / theirs) } else { "–".into() };
        out.push_str(&format!(
            "| {what} | **{ours:.digits$}** ({}) | **{theirs:.digits$}** ({}) | {ratio} |\n",
            each(&|r| &r.course_operator),
            each(&|r| &r.argo_rollouts)
        ));
    };
    row(&mut out, "all Healthy after the create burst (s)", &|s| s.converge_seconds, 1);
    row(&mut out, "all canaries finished after the image change (s)", &|s| s.update_seconds, 1);
    row(&mut out, "RSS with 0 objects (MiB)", &|s| s.rss_empty_mib, 1);
    row(&mut out, "RSS converged (MiB)", &|s| s.rss_converged_mib, 1);
    row(&mut out, "RSS after the update (MiB)", &|s| s.rss_updated_mib, 1);
    row(&mut out, "peak RSS, VmHWM (MiB)", &|s| s.peak_rss_mib, 1);
    row(&mut out, "RSS per object, (converged − empty) / N (KiB)", &|s| s.rss_per_object_kib, 0);
    row(&mut out, "own writes per object, create → all Healthy", &|s| s.own_writes_converge, 1);
    row(&mut out, "own writes per object, image change → canaries finished", &|s| s.own_writes_update, 1);
    row(&mut out, "kube-controller-manager writes per object, create → all Healthy", &|s| s.kcm_writes_converge, 1);
    row(&mut out, "kube-controller-manager writes per object, image change → finished", &|s| s.kcm_writes_update, 1);
    row(
        &mut out,
        &format!("own writes in {} s idle after the update (all N)", settings.idle.as_secs()),
        &|s| s.idle_writes,
        0,
    );
    out.push_str(
        "\nThe update, point by point: seconds from the image change until the 250 ms poll first saw an object past each point; the median object and the last one, medians over the runs.\n\n",
    );
    out.push_str("| point of the canary | course-operator, median / last object | Argo Rollouts, median / last object |\n|---|---|---|\n");
    for (i, what) in Timeline::POINTS.iter().enumerate() {
        let at = |pick: &dyn Fn(&Run) -> &Side, f: &dyn Fn(&Milestone) -> f64| {
            median(runs, |r| pick(r).update_timeline.get(i).map_or(0.0, f))
        };
        let cell = |pick: &dyn Fn(&Run) -> &Side| {
            format!("{:.1} / {:.1}", at(pick, &|m| m.median_seconds), at(pick, &|m| m.last_seconds))
        };
        out.push_str(&format!("| {what} | {} | {} |\n", cell(&|r| &r.course_operator), cell(&|r| &r.argo_rollouts)));
    }
    out.push_str("\nWrites are the apiserver's audit log (hack/kwok/audit-policy-peers.yaml) for the side's namespace, by user agent: every write verb to the workload kinds, Services, PDBs, HPAs, the custom resources and their status; pods and Events are not recorded (kube-controller-manager creates the same pods for both sides).\n");
    std::fs::write(&md_path, out)?;
    progress(format!("results: {json_path}, {md_path}"));
    Ok(())
}
