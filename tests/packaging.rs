//! Packaging tier: the Helm chart, the generated install manifest and the workflows, checked
//! without a cluster. Needs helm: `$HELM`, else `.cluster/bin/helm`, else the hack/build.sh
//! cache `~/.cache/course-operator/helm-$HELM_VERSION/bin/helm`; without one every helm test
//! fails (it never skips).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

const CHART: &str = "charts/course-operator";
const CRD: &str = "crds/courseservices.microcourses.io.yaml";
const RELEASE: &str = "course-operator";
const NAMESPACE: &str = "course-operator-system";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The helm binary, found once per test binary.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let mut tried = Vec::new();
        if let Some(from_env) = std::env::var_os("HELM").filter(|v| !v.is_empty()) {
            let path = PathBuf::from(from_env);
            assert!(path.is_file(), "HELM={} does not exist", path.display());
            return path;
        }
        tried.push("$HELM (unset)".to_owned());
        let linked = repo_root().join(".cluster/bin/helm");
        if linked.is_file() {
            return linked;
        }
        tried.push(linked.display().to_string());
        let version = read("hack/versions.env")
            .lines()
            .find_map(|line| line.strip_prefix("HELM_VERSION="))
            .map(|v| v.trim().to_owned())
            .expect("hack/versions.env has HELM_VERSION");
        let cache = std::env::var_os("COURSE_OPERATOR_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/course-operator")
        });
        let cached = cache.join(format!("helm-{version}/bin/helm"));
        if cached.is_file() {
            return cached;
        }
        tried.push(cached.display().to_string());
        panic!(
            "the packaging tests need helm {version} and found none (tried: {}). \
             Build it with `hack/build.sh helm` (or `hack/cluster.sh tools`), or set HELM=/path/to/helm.",
            tried.join(", ")
        );
    })
}

fn run_helm(args: &[&str]) -> Output {
    Command::new(helm())
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", helm().display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `helm template` of the chart as release course-operator in course-operator-system, with
/// `extra` arguments; every rendered object as JSON.
fn template(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    let out = run_helm(&args);
    assert!(out.status.success(), "helm {args:?} failed:\n{}", text(&out.stderr));
    serde_saphyr::from_multiple(&text(&out.stdout)).expect("helm template output parses as YAML")
}

fn kind_of(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects.iter().find(|o| kind_of(o) == kind && name_of(o) == name).unwrap_or_else(|| {
        let present: Vec<String> = objects.iter().map(|o| format!("{}/{}", kind_of(o), name_of(o))).collect();
        panic!("no {kind}/{name} rendered; rendered: {present:?}")
    })
}

fn the_deployment(objects: &[Value]) -> &Value {
    find(objects, "Deployment", RELEASE)
}

fn operator_container(objects: &[Value]) -> &Value {
    &the_deployment(objects)["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(container: &Value) -> Vec<&str> {
    container["args"].as_array().expect("container args").iter().map(|a| a.as_str().expect("string arg")).collect()
}

/// The value following `flag` in an argument list.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).copied()
}

/// Rules compared as permissions: order of rules and of list entries does not matter, every
/// field (apiGroups, resources, verbs, resourceNames, nonResourceURLs) does.
fn permission_set(rules: &Value) -> BTreeSet<String> {
    rules
        .as_array()
        .expect("rules is a list")
        .iter()
        .map(|rule| {
            let mut canonical = rule.as_object().expect("rule is a map").clone();
            for list in canonical.values_mut() {
                if let Some(items) = list.as_array_mut() {
                    items.sort_by_key(|item| item.to_string());
                }
            }
            serde_json::to_string(&canonical).expect("rule serialises")
        })
        .collect()
}

fn committed_rbac() -> Vec<Value> {
    serde_saphyr::from_multiple(&read("manifests/rbac/clusterrole.yaml"))
        .expect("manifests/rbac/clusterrole.yaml parses")
}

fn assert_same_rules(rendered: &Value, committed: &Value, what: &str) {
    let (rendered, committed) = (permission_set(rendered), permission_set(committed));
    assert!(
        rendered == committed,
        "{what}: the chart's rules differ from manifests/rbac/clusterrole.yaml\n\
         only in the chart: {:#?}\nonly in the manifest: {:#?}",
        rendered.difference(&committed).collect::<Vec<_>>(),
        committed.difference(&rendered).collect::<Vec<_>>()
    );
}

#[test]
fn chart_crd_is_a_byte_identical_copy_of_the_committed_crd() {
    let top = std::fs::read(repo_root().join(CRD)).expect("crds/ file readable");
    let chart = std::fs::read(repo_root().join(CHART).join(CRD)).expect("chart crds/ file readable");
    assert!(top == chart, "{CHART}/{CRD} differs from {CRD}: run `hack/gen-install.sh --write` (copies it)");
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: Value = serde_saphyr::from_str(&read(&format!("{CHART}/Chart.yaml"))).expect("Chart.yaml parses");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"].as_str(), Some(env!("CARGO_PKG_VERSION")), "Chart.yaml appVersion");
}

#[test]
fn chart_cluster_role_has_exactly_the_rules_of_the_committed_rbac() {
    let rendered = template(&[]);
    let committed = committed_rbac();
    assert_same_rules(
        &find(&rendered, "ClusterRole", RELEASE)["rules"],
        &find(&committed, "ClusterRole", "course-operator")["rules"],
        "ClusterRole course-operator",
    );
    let binding = find(&rendered, "ClusterRoleBinding", RELEASE);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], RELEASE);
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );
    find(&rendered, "ServiceAccount", RELEASE);
}

#[test]
fn leader_election_is_a_role_in_the_release_namespace_with_the_committed_rules() {
    let rendered = template(&[]);
    let committed = committed_rbac();
    let name = format!("{RELEASE}-leader-election");
    let role = find(&rendered, "Role", &name);
    assert_eq!(role["metadata"]["namespace"], NAMESPACE, "the Lease permissions stay in the operator's namespace");
    assert_same_rules(
        &role["rules"],
        &find(&committed, "ClusterRole", "course-operator-leader-election")["rules"],
        "Role course-operator-leader-election",
    );
    let binding = find(&rendered, "RoleBinding", &name);
    assert_eq!(binding["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name})
    );
    assert_eq!(binding["subjects"][0]["name"], RELEASE);
    assert!(
        !rendered.iter().any(|o| kind_of(o) == "ClusterRole" && name_of(o) == name),
        "leader election must not be granted cluster-wide"
    );
}

#[test]
fn helm_lint_strict_passes() {
    let out = run_helm(&["lint", "--strict", CHART]);
    assert!(out.status.success(), "helm lint --strict {CHART} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    let out = run_helm(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "watchNamespace=courses",
    ]);
    assert!(
        out.status.success(),
        "helm lint --strict with options failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn no_rbac_rule_uses_a_wildcard() {
    let rendered = template(&["--set", "serviceMonitor.enabled=true"]);
    let roles: Vec<&Value> = rendered.iter().filter(|o| matches!(kind_of(o), "Role" | "ClusterRole")).collect();
    assert_eq!(roles.len(), 2, "a ClusterRole and a leader-election Role");
    for role in roles {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"] {
                let wildcard =
                    rule[field].as_array().into_iter().flatten().any(|v| v.as_str().is_some_and(|s| s.contains('*')));
                assert!(!wildcard, "{} {} has a wildcard in {field}: {rule}", kind_of(role), name_of(role));
            }
        }
    }
}

#[test]
fn deployment_runs_two_replicas_with_the_restricted_security_context() {
    let rendered = template(&[]);
    let deployment = the_deployment(&rendered);
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = operator_container(&rendered);
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert!(security.get("privileged").is_none_or(|p| p == false));
    assert!(container["resources"]["requests"].is_object(), "resources are set");
    assert_eq!(container["image"], format!("ghcr.io/microcourses/course-operator:{}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn deployment_runs_the_controller_with_leader_election_and_probes() {
    let rendered = template(&[]);
    let container = operator_container(&rendered);
    let args = args_of(container);
    assert_eq!(args.first(), Some(&"run"));
    assert_eq!(flag_value(&args, "--log-format"), Some("json"));
    assert_eq!(flag_value(&args, "--log-level"), Some("info"));
    assert_eq!(flag_value(&args, "--metrics-addr"), Some("0.0.0.0:8080"));
    assert_eq!(flag_value(&args, "--lease-namespace"), Some("$(POD_NAMESPACE)"));
    assert!(!args.contains(&"--no-leader-election"), "two replicas need leader election");
    assert!(!args.contains(&"--namespace"), "all namespaces by default");
    let env = container["env"].as_array().expect("env");
    let field_of =
        |name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone());
    assert_eq!(field_of("POD_NAMESPACE"), Some(Value::from("metadata.namespace")));
    assert_eq!(field_of("POD_NAME"), Some(Value::from("metadata.name")));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["ports"][0]["name"], "metrics");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe} on the 8080 metrics port");
    }
}

#[test]
fn operator_pods_prefer_other_nodes_and_spread_over_zones() {
    let rendered = template(&[]);
    let pod = &the_deployment(&rendered)["spec"]["template"]["spec"];
    let preferred = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(preferred["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(preferred["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"], RELEASE);
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");

    let hard = template(&["--set", "podAntiAffinityPreset=hard", "--set", "topologySpread.enabled=false"]);
    let pod = &the_deployment(&hard)["spec"]["template"]["spec"];
    assert!(pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_array());
    assert!(pod.get("topologySpreadConstraints").is_none());
}

#[test]
fn watch_namespace_restricts_the_controller() {
    let rendered = template(&["--set", "watchNamespace=courses", "--set", "logFormat=pretty"]);
    let args = args_of(operator_container(&rendered));
    assert_eq!(flag_value(&args, "--namespace"), Some("courses"));
    assert_eq!(flag_value(&args, "--log-format"), Some("pretty"));
}

#[test]
fn image_values_become_the_operator_default_image_flags() {
    let args_with = |extra: &[&str]| -> Vec<String> {
        args_of(operator_container(&template(extra))).into_iter().map(str::to_owned).collect()
    };
    let defaults = args_with(&[]);
    for flag in ["--cache-image", "--database-image-repository", "--backup-image-repository"] {
        assert!(!defaults.iter().any(|a| a == flag), "{flag} passed without a value set: {defaults:?}");
    }
    let mirrored = args_with(&[
        "--set",
        "images.cache=registry.example:5000/redis:7.2",
        "--set",
        "images.databaseRepository=registry.example:5000/mongo",
        "--set",
        "images.backupRepository=registry.example/mongo-tools",
    ]);
    let args: Vec<&str> = mirrored.iter().map(String::as_str).collect();
    assert_eq!(flag_value(&args, "--cache-image"), Some("registry.example:5000/redis:7.2"));
    assert_eq!(flag_value(&args, "--database-image-repository"), Some("registry.example:5000/mongo"));
    assert_eq!(flag_value(&args, "--backup-image-repository"), Some("registry.example/mongo-tools"));
}

#[test]
fn metrics_service_pdb_and_optional_service_monitor() {
    let rendered = template(&[]);
    let service = find(&rendered, "Service", &format!("{RELEASE}-metrics"));
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    let pdb = find(&rendered, "PodDisruptionBudget", RELEASE);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"], the_deployment(&rendered)["spec"]["selector"]);
    assert!(!rendered.iter().any(|o| kind_of(o) == "ServiceMonitor"), "no ServiceMonitor unless enabled");

    let monitored = template(&["--set", "serviceMonitor.enabled=true"]);
    let monitor = find(&monitored, "ServiceMonitor", RELEASE);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], RELEASE);
}

#[test]
fn install_yaml_is_the_output_of_gen_install() {
    let out = Command::new("bash")
        .arg(repo_root().join("hack/gen-install.sh"))
        .env("HELM", helm())
        .current_dir(repo_root())
        .output()
        .expect("running hack/gen-install.sh");
    assert!(out.status.success(), "hack/gen-install.sh failed:\n{}", text(&out.stderr));
    let generated = text(&out.stdout);
    let committed = read("manifests/install.yaml");
    assert!(committed == generated, "manifests/install.yaml is stale: run `hack/gen-install.sh --write`");

    let objects: Vec<Value> = serde_saphyr::from_multiple(&committed).expect("install.yaml parses");
    assert_eq!((kind_of(&objects[0]), name_of(&objects[0])), ("Namespace", NAMESPACE), "the Namespace comes first");
    assert_eq!(
        (kind_of(&objects[1]), name_of(&objects[1])),
        ("CustomResourceDefinition", "courseservices.microcourses.io"),
        "then the CRD"
    );
    let crd: Value = serde_saphyr::from_str(&read(CRD)).expect("CRD parses");
    assert!(objects[1] == crd, "install.yaml carries an old CRD: run `hack/gen-install.sh --write`");
    for object in objects.iter().filter(|o| {
        !matches!(kind_of(o), "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding")
    }) {
        assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{} {} is namespaced", kind_of(object), name_of(object));
    }
}

#[test]
fn values_schema_rejects_bad_values() {
    for (set, why) in [
        ("replicaCount=abc", "a string replica count"),
        ("replicaCount=0", "no operator pods"),
        ("logFormat=xml", "a log format the operator does not know"),
        ("image.pullPolicy=Sometimes", "an unknown pull policy"),
        ("securityContext.allowPrivilegeEscalation=true", "privilege escalation"),
        ("replicas=3", "an unknown key (typo of replicaCount)"),
        ("images.databaseRepository=mongo:7.0", "a database repository with a tag (the tag is spec.database.version)"),
        ("images.cache=redis 7", "a cache image with white space"),
        ("images.redis=redis:7", "an unknown image key"),
    ] {
        let out = run_helm(&["template", RELEASE, CHART, "--set", set]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "--set {set} ({why}) was accepted");
        assert!(stderr.contains("schema"), "--set {set} ({why}) failed, but not on the values schema:\n{stderr}");
    }
}

#[test]
fn workflows_pass_actionlint() {
    let out = Command::new("bash")
        .arg(repo_root().join("hack/lint-workflows.sh"))
        .current_dir(repo_root())
        .output()
        .expect("running hack/lint-workflows.sh");
    assert!(out.status.success(), "hack/lint-workflows.sh failed:\n{}{}", text(&out.stdout), text(&out.stderr));
}

/// Every `course_operator_*` series name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.match_indices("course_operator_")
        .map(|(at, _)| {
            text[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect()
        })
        .collect()
}

#[test]
fn dashboard_and_metrics_doc_name_only_exported_series() {
    use course_operator::controller::metrics::{Metrics, Outcome, Verb};
    let metrics = Metrics::default();
    metrics.reconciled(Outcome::Success, std::time::Duration::from_millis(5));
    metrics.api_request(Verb::Patch);
    metrics.set_leader(true);
    metrics.watch_error("deployments");
    metrics.triggers("pods").inc();
    // Series and family names (HELP/TYPE lines name the histogram family).
    let exported = metric_names(&metrics.encode());

    let dashboard_text = read("dashboards/course-operator.json");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_i64().is_some_and(|v| v >= 36), "a current Grafana schemaVersion");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.iter().any(|e| e.contains("histogram_quantile(0.99")), "a p99 reconcile duration panel");
    for (what, text) in
        [("dashboards/course-operator.json", dashboard_text.as_str()), ("docs/metrics.md", &read("docs/metrics.md"))]
    {
        let named = metric_names(text);
        let unknown: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{what} names series the operator does not export: {unknown:?}\nexported: {exported:?}"
        );
        for family in ["reconciles_total", "reconcile_duration_seconds_bucket", "api_requests_total", "leader"] {
            assert!(
                named.contains(&format!("course_operator_{family}")),
                "{what} does not show course_operator_{family}"
            );
        }
    }
}

#[test]
fn kind_config_has_a_control_plane_and_one_worker_per_zone() {
    let config: Value = serde_saphyr::from_str(&read("manifests/kind-config.yaml")).expect("kind config parses");
    assert_eq!(config["kind"], "Cluster");
    assert_eq!(config["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let nodes = config["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.iter().filter(|n| n["role"] == "control-plane").count(), 1);
    let zones: Vec<&str> = nodes
        .iter()
        .filter(|n| n["role"] == "worker")
        .map(|n| n["labels"]["topology.kubernetes.io/zone"].as_str().expect("worker has a zone label"))
        .collect();
    assert_eq!(zones, ["zone-a", "zone-b", "zone-c"]);
    assert!(nodes.iter().all(|n| n["labels"]["topology.kubernetes.io/region"].is_string()), "every node has a region");
}
