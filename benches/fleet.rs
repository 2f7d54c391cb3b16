//! Fleet benchmark (`make bench` → hack/bench.sh → this target): the release operator as a
//! separate process against the cluster in KUBECONFIG, watching one fresh namespace.
//!
//! Per run:
//! 1. fleet convergence: N CourseServices applied at once → every one converged (Available=True,
//!    observedGeneration current, every app pod Ready as the status reports); beside it a raw
//!    writer that server-side-applies exactly the children `plan::desired` renders, with the same
//!    client concurrency, and waits for every ReplicaSet to be Ready (in the cache+database
//!    round also every StatefulSet Ready and every init Job succeeded): the lower bound;
//! 2. API economy: requests per CourseService by verb, and writes in an idle window that spans
//!    several full resyncs;
//! 3. memory: VmHWM/VmRSS of the operator;
//! 4. latency under load: spec.replicas changes sent at a fixed rate (open loop, 10 per second)
//!    across the fleet → the watch shows that CourseService's ReplicaSets at the new total;
//! 5. rollout overhead: canary step advance and blue-green Service switch vs. the new pods'
//!    own readiness;
//! 6. the same convergence with cache + database on (quick N).
//!
//! Everything waits on watch events, never on sleeps. Output: JSON (BENCH_OUT_JSON) and a
//! Markdown table (BENCH_OUT_MD); hack/bench.sh splices the latter into BENCHMARKS.md.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};

use common::{Metrics, Operator, Watched, progress};
use course_operator::api::{CourseService, RolloutPhase};
use course_operator::controller::{fingerprint, server_side_apply};
use course_operator::database::DatabaseCredentials;
use course_operator::labels;
use course_operator::observe::Observed;
use course_operator::plan;
use course_operator::render::Child;
use course_operator::render::Images;
use course_operator::zones::ZoneHealth;

/// What one `make bench` run is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Config {
    full: bool,
    n: usize,
    runs: usize,
    idle_seconds: u64,
    resync_seconds: u64,
    concurrency: u16,
    /// Spec changes per second during the latency phase (open loop).
    latency_rate: u32,
    /// Samples the latency phase must collect in every run.
    latency_samples: usize,
    rollouts: usize,
    /// App replicas per CourseService in the plain fleet.
    replicas: i32,
    /// CourseServices in the cache+database round (0: skipped).
    data_n: usize,
    /// Client-side concurrency of the CourseService creation burst.
    create_concurrency: usize,
    zones: usize,
    #[serde(skip, default)]
    log_dir: PathBuf,
}

/// One convergence round: the operator and the raw writer on the same fleet.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Round {
    n: usize,
    pods_per_course: i32,
    children_per_course: f64,
    /// Seconds to submit the N CourseServices.
    submit_seconds: f64,
    /// Seconds until every CourseService converged (status).
    operator_seconds: f64,
    /// Seconds until every app ReplicaSet was Ready and, in the cache+database round, every
    /// StatefulSet Ready and every init Job succeeded (same criterion as the raw writer).
    operator_replica_sets_ready_seconds: f64,
    /// Seconds until every CourseService's status was written for its generation with an
    /// `Available` condition: a reconcile writes the status only after it applied every child
    /// without error, so this is "every child applied and the outcome reported".
    operator_applied_seconds: f64,
    raw_seconds: f64,
    raw_apply_seconds: f64,
    /// The primary ratio: `operator_applied_seconds` over `raw_apply_seconds` (both "every
    /// child applied"; kube-controller-manager and the pods are not on either clock).
    applied_ratio: f64,
    /// The raw writer ran before the operator in this run (the order alternates).
    raw_first: bool,
    /// The later of `operator_seconds` and `operator_replica_sets_ready_seconds`, over
    /// `raw_seconds`: the raw writer's clock stops at "every ReplicaSet Ready", so the operator's
    /// does too (its CourseServices may report Available earlier, from Ready endpoints or with
    /// 0 replicas, before kube-controller-manager has written the ReplicaSets' status).
    ratio: f64,
    /// API requests per CourseService until convergence, by verb.
    requests_per_course: BTreeMap<String, f64>,
    writes_per_course: f64,
    /// Raw writer: one apply per child.
    raw_writes_per_course: f64,
    reconciles_per_course: f64,
    peak_rss_mib: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Idle {
    seconds: u64,
    resync_seconds: u64,
    writes: f64,
    reads: f64,
    reconciles: f64,
    /// Seconds it took the writes to stop after convergence (trailing status updates).
    settle_seconds: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Latency {
    samples_ms: Vec<f64>,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Round trip of the PATCH itself (part of the above): how busy the apiserver is.
    patch_p50_ms: f64,
    #[serde(default)]
    patch_p99_ms: f64,
    /// Changes per second actually sent (samples over the time from first to last send).
    sent_per_second: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RolloutStep {
    kind: String,
    /// Last needed new pod Ready (watch) → operator's next action (watch).
    overhead_ms: f64,
    /// ReplicaSet status showing the pods Ready (kube-controller-manager) → operator action.
    operator_share_ms: f64,
    /// Pod Ready condition lastTransitionTime (1 s resolution) → operator action.
    overhead_from_condition_ms: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Rollouts {
    steps: Vec<RolloutStep>,
    canary_p50_ms: f64,
    canary_max_ms: f64,
    blue_green_p50_ms: f64,
    blue_green_max_ms: f64,
    canary_operator_share_p50_ms: f64,
    blue_green_operator_share_p50_ms: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Reconciles {
    count: f64,
    mean_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Run {
    run: usize,
    plain: Round,
    data: Option<Round>,
    idle: Idle,
    latency: Latency,
    rollouts: Rollouts,
    reconciles: Reconciles,
    /// Peak RSS of the plain-fleet operator over the whole run (all phases).
    peak_rss_mib: f64,
    /// Peak RSS of a second operator started on the converged fleet, once it reconciled every
    /// CourseService (the first LIST of every cache).
    restart_peak_rss_mib: f64,
    idle_rss_mib: f64,
    load_average: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match bench().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench() -> anyhow::Result<()> {
    // Re-render the Markdown of an earlier run (e.g. after a wording change) without a cluster.
    if let Ok(path) = std::env::var("BENCH_RENDER_FROM") {
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let config: Config = serde_json::from_value(doc["config"].clone())?;
        let runs: Vec<Run> = serde_json::from_value(doc["runs"].clone())?;
        let md = std::env::var("BENCH_OUT_MD").unwrap_or_else(|_| "/tmp/course-operator-bench/table.md".into());
        std::fs::write(&md, markdown(&config, &runs, doc["failure"].as_str()))?;
        return Ok(());
    }
    let client = common::client().await?;
    common::ensure_crd(&client).await?;
    let zones = common::cluster_zones(&client).await?;
    let config = configure(&client, &zones).await?;
    progress(format!("config: {config:?}"));
    progress(format!("operator binary: {}", common::operator_binary().display()));
    let cidr = ensure_service_ips(&client, &config).await?;

    let mut runs = Vec::new();
    let mut failure = None;
    for run in 1..=config.runs {
        progress(format!("=== run {run}/{} ===", config.runs));
        match one_run(&client, &config, &zones, run).await {
            Ok(result) => {
                write_outputs(&config, &runs_with(&runs, &result), None)?;
                runs.push(result);
            }
            Err(error) => {
                progress(format!("run {run} failed: {error:#}"));
                failure = Some(format!("run {run}: {error:#}"));
                break;
            }
        }
    }
    if cidr {
        common::remove_service_cidr(&client, BENCH_CIDR).await;
    }
    write_outputs(&config, &runs, failure.as_deref())?;
    match failure {
        Some(f) => Err(anyhow!(f)),
        None => Ok(()),
    }
}

fn runs_with(runs: &[Run], last: &Run) -> Vec<Run> {
    let mut all = runs.to_vec();
    all.push(last.clone());
    all
}

async fn configure(client: &Client, zones: &[ZoneHealth]) -> anyhow::Result<Config> {
    let full = common::env_flag("BENCH_FULL");
    let n = common::env_or("BENCH_N", if full { 1000 } else { 100 });
    // Pods the fleet may use: half of what the nodes have free, so e2e runs beside the bench
    // keep room.
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    let capacity: i64 = nodes
        .items
        .iter()
        // a quantity: the apiserver writes 2000 pods as "2k"
        .filter_map(|n| course_operator::quantity::to_bytes(&n.status.as_ref()?.allocatable.as_ref()?.get("pods")?.0))
        .filter_map(|pods| i64::try_from(pods).ok())
        .sum();
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items.len() as i64;
    let budget = ((capacity - pods) / 2).max(0);
    let auto_replicas = i32::try_from((budget / n.max(1) as i64).min(3)).unwrap_or(0);
    let replicas = common::env_or("BENCH_REPLICAS", auto_replicas);
    // Cache + database round: 1 app pod + 1 Redis + 1 MongoDB member per CourseService.
    let quick_n = common::env_or("BENCH_DATA_N", 100usize);
    let data_n =
        if common::env_flag("BENCH_NO_DATA") { 0 } else { quick_n.min(usize::try_from(budget / 3).unwrap_or(0)) };
    progress(format!(
        "pod capacity {capacity}, pods now {pods}: fleet gets {replicas} app replicas per CourseService, data round {data_n} CourseServices"
    ));
    Ok(Config {
        full,
        n,
        runs: common::env_or("BENCH_RUNS", if full { 1 } else { 3 }),
        idle_seconds: common::env_or("BENCH_IDLE_SECONDS", if full { 300 } else { 60 }),
        resync_seconds: common::env_or("BENCH_RESYNC_SECONDS", if full { 30 } else { 10 }),
        concurrency: common::env_or("BENCH_CONCURRENCY", 8),
        latency_rate: common::env_or("BENCH_LATENCY_RATE", 10u32).max(1),
        latency_samples: common::env_or("BENCH_LATENCY_SAMPLES", 300),
        rollouts: common::env_or("BENCH_ROLLOUTS", 2),
        replicas,
        data_n,
        create_concurrency: common::env_or("BENCH_CREATE_CONCURRENCY", 16),
        zones: zones.len(),
        log_dir: PathBuf::from(std::env::var("BENCH_LOG_DIR").unwrap_or_else(|_| "/tmp/course-operator-bench".into())),
    })
}

const BENCH_CIDR: &str = "course-operator-bench";

/// A fleet beyond ~150 Services gets an extra ServiceCIDR for the duration of the bench.
async fn ensure_service_ips(client: &Client, config: &Config) -> anyhow::Result<bool> {
    if config.n <= 150 {
        return Ok(false);
    }
    common::add_service_cidr(client, BENCH_CIDR, "10.1.0.0/20").await?;
    Ok(true)
}

fn fleet_spec(replicas: i32, data: bool) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "image": "registry.example.com/bench/app:1.0.0",
        "replicas": replicas,
        "service": {"type": "ClusterIP"},
    });
    if data {
        spec["replicas"] = 1.into();
        spec["cache"] = serde_json::json!({"enabled": true, "replicas": 1, "maxMemory": "64Mi"});
        spec["database"] = serde_json::json!({"enabled": true, "members": 1, "storage": "1Gi"});
    }
    spec
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i:04}")).collect()
}

fn converged(cs: &CourseService) -> bool {
    let Some(status) = cs.status.as_ref() else { return false };
    status.observed_generation == cs.metadata.generation
        && status.ready_replicas == cs.spec.replicas
        && status.conditions.iter().any(|c| c.type_ == "Available" && c.status == "True")
}

/// The operator has applied every child of `cs` for its current generation and reported it.
fn reported(cs: &CourseService) -> bool {
    let Some(status) = cs.status.as_ref() else { return false };
    status.observed_generation == cs.metadata.generation && status.conditions.iter().any(|c| c.type_ == "Available")
}

fn replica_set_ready(d: &ReplicaSet) -> bool {
    let Some(status) = d.status.as_ref() else { return false };
    status.observed_generation == d.metadata.generation
        && status.ready_replicas.unwrap_or(0) == d.spec.replicas.unwrap_or(1)
}

fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(0.0, |k| k as f64 / 1024.0)
}

fn converge_timeout(n: usize) -> Duration {
    Duration::from_secs(180 + n as u64)
}

async fn one_run(client: &Client, config: &Config, zones: &[ZoneHealth], run: usize) -> anyhow::Result<Run> {
    let mut result = Run { run, ..Run::default() };
    let resync = config.resync_seconds.to_string();
    let concurrency = config.concurrency.to_string();
    // Leader election on, as users run it: the Lease and the write fence are in the client stack
    // (Lease renewals are not counted in `course_operator_api_requests_total`).
    let operator_args = ["--resync-seconds", &resync, "--concurrency", &concurrency];

    // The raw writer goes first in every other run, so neither side always meets a cluster
    // still busy with the other's garbage collection.
    let raw_first = run.is_multiple_of(2);
    let raw_plain = if raw_first { Some(raw_round(client, config, zones, config.n, false).await?) } else { None };

    // 1–5 on the plain fleet, with one operator process.
    let ns = common::create_namespace(client, "bench-op").await?;
    let outcome = async {
        let mut operator = common::start_operator(&ns, "bench", &operator_args, &config.log_dir).await?;
        let spec = fleet_spec(config.replicas, false);
        let (round, courses, replica_sets) =
            operator_round(client, config, zones, &ns, &operator, config.n, &spec).await?;
        result.idle = idle_window(config, &operator).await?;
        result.idle_rss_mib = mib(common::proc_status_kib(operator.pid(), "VmRSS"));
        progress(format!("idle: {:?}", result.idle));
        result.latency = latency(client, config, &ns, &replica_sets, &courses).await?;
        progress(format!(
            "latency: p50 {:.0} ms, p99 {:.0} ms over {}",
            result.latency.p50_ms,
            result.latency.p99_ms,
            result.latency.samples_ms.len()
        ));
        result.rollouts = rollouts(client, config, &ns).await?;
        progress(format!("rollouts: {:?}", result.rollouts));
        let metrics = operator.metrics().await?;
        result.reconciles = reconcile_stats(&metrics);
        result.peak_rss_mib = mib(common::proc_status_kib(operator.pid(), "VmHWM"));
        // A restart on the converged fleet: the first list of every cache is the peak a
        // rolling upgrade of the operator meets (SIGTERM releases the Lease).
        operator.terminate();
        let restarted = common::start_operator(&ns, "bench-restarted", &operator_args, &config.log_dir).await?;
        let n = config.n as f64;
        common::poll(converge_timeout(config.n), "the restarted operator reconciled the fleet", || async {
            let metrics = restarted.metrics().await.ok()?;
            (metrics.reconciles("Success") >= n).then_some(())
        })
        .await?;
        result.restart_peak_rss_mib = mib(common::proc_status_kib(restarted.pid(), "VmHWM"));
        progress(format!("restart on the converged fleet: VmHWM {:.1} MiB", result.restart_peak_rss_mib));
        anyhow::Ok(round)
    }
    .await;
    common::delete_namespace(client, &ns, Some(Duration::from_secs(300))).await?;
    let mut round = outcome?;
    let raw = match raw_plain {
        Some(raw) => raw,
        None => raw_round(client, config, zones, config.n, false).await?,
    };
    round.compare(&raw, raw_first);
    progress(format!("plain fleet: {round:?}"));
    result.plain = round;

    // 6. cache + database on.
    if config.data_n > 0 {
        let raw_data =
            if raw_first { Some(raw_round(client, config, zones, config.data_n, true).await?) } else { None };
        let ns = common::create_namespace(client, "bench-data").await?;
        let outcome = async {
            let operator = common::start_operator(&ns, "bench", &operator_args, &config.log_dir).await?;
            let spec = fleet_spec(1, true);
            let (round, _, _) = operator_round(client, config, zones, &ns, &operator, config.data_n, &spec).await?;
            anyhow::Ok(round)
        }
        .await;
        common::delete_namespace(client, &ns, Some(Duration::from_secs(300))).await?;
        let mut round = outcome?;
        let raw = match raw_data {
            Some(raw) => raw,
            None => raw_round(client, config, zones, config.data_n, true).await?,
        };
        round.compare(&raw, raw_first);
        progress(format!("data fleet: {round:?}"));
        result.data = Some(round);
    }
    result.load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned();
    Ok(result)
}

/// N CourseServices at once → every one converged. Leaves the watchers running for later phases.
async fn operator_round(
    client: &Client,
    config: &Config,
    zones: &[ZoneHealth],
    ns: &str,
    operator: &Operator,
    n: usize,
    spec: &serde_json::Value,
) -> anyhow::Result<(Round, Watched<CourseService>, Watched<ReplicaSet>)> {
    let courses: Watched<CourseService> = Watched::start(client, ns, None).await?;
    let replica_sets: Watched<ReplicaSet> =
        Watched::start(client, ns, Some(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))).await?;
    let (app_replica_sets, sets, jobs) = children_per_course(spec, zones)?;
    let data_layer = match (sets, jobs) {
        (0, 0) => None,
        (sets, jobs) => Some(DataLayer::start(client, ns, sets * n, jobs * n).await?),
    };
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let before = operator.metrics().await?;
    let expected_replica_sets = n * app_replica_sets;
    progress(format!("operator: applying {n} CourseServices in {ns}"));
    let started = Instant::now();
    futures::stream::iter(names(n))
        .map(|name| {
            let api = api.clone();
            let object = common::course(&name, ns, spec.clone());
            async move { common::apply_json(&api, &object, common::HARNESS_MANAGER).await }
        })
        .buffer_unordered(config.create_concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let submitted = started.elapsed();
    let timeout = converge_timeout(n);
    let all_reported = courses.until(timeout, "every CourseService's children applied and reported", |objects| {
        (objects.iter().filter(|cs| reported(cs)).count() >= n).then_some(())
    });
    let all_converged = courses.until(timeout, "every CourseService converged", |objects| {
        (objects.iter().filter(|cs| converged(cs)).count() >= n).then_some(())
    });
    let all_ready = async {
        let (_, apps) = replica_sets
            .until(timeout, "every app ReplicaSet Ready", |objects| {
                let ready = objects.iter().filter(|d| is_app(d) && replica_set_ready(d)).count();
                (ready >= expected_replica_sets).then_some(())
            })
            .await?;
        let data = match &data_layer {
            Some(layer) => Some(layer.ready(timeout).await?),
            None => None,
        };
        anyhow::Ok(((), data.map_or(apps, |d| d.max(apps))))
    };
    let (applied, done, ready) = match tokio::try_join!(all_reported, all_converged, all_ready) {
        Ok(((_, applied), (_, done), (_, ready))) => (applied, done, ready),
        Err(error) => {
            let converged_now = courses.objects().iter().filter(|cs| converged(cs)).count();
            return Err(
                error.context(format!("{converged_now}/{n} converged; operator log tail:\n{}", operator.log_tail(20)))
            );
        }
    };
    let after = operator.metrics().await?;
    let per = |x: f64| x / n as f64;
    let mut requests = BTreeMap::new();
    for verb in common::VERBS {
        let delta = after.requests(verb) - before.requests(verb);
        if delta > 0.0 {
            requests.insert(verb.to_owned(), per(delta));
        }
    }
    let children = replica_sets.objects().len() as f64;
    let round = Round {
        n,
        pods_per_course: spec["replicas"].as_i64().unwrap_or(0) as i32
            + if spec.get("cache").is_some() { 2 } else { 0 },
        children_per_course: per(children),
        submit_seconds: submitted.as_secs_f64(),
        operator_applied_seconds: common::secs_between(started, applied),
        operator_seconds: common::secs_between(started, done),
        operator_replica_sets_ready_seconds: common::secs_between(started, ready),
        requests_per_course: requests,
        writes_per_course: per(after.writes() - before.writes()),
        reconciles_per_course: per(after.reconciles("Success") - before.reconciles("Success")),
        peak_rss_mib: mib(common::proc_status_kib(operator.pid(), "VmHWM")),
        ..Round::default()
    };
    progress(format!(
        "operator: {n} applied and reported in {:.1}s, converged in {:.1}s (ReplicaSets Ready at {:.1}s), {:.1} writes/CourseService, VmHWM {:.1} MiB",
        round.operator_applied_seconds,
        round.operator_seconds,
        round.operator_replica_sets_ready_seconds,
        round.writes_per_course,
        round.peak_rss_mib
    ));
    Ok((round, courses, replica_sets))
}

/// StatefulSets (cache, database members, arbiter) and Jobs (the database init Job) of one
/// CourseService of `spec`, as the operator renders it.
/// What one CourseService of `spec` gets, as the operator plans it on these zones: app
/// ReplicaSets (one per zone that runs pods: a `replicas: 1` spec has one), StatefulSets, Jobs.
fn children_per_course(spec: &serde_json::Value, zones: &[ZoneHealth]) -> anyhow::Result<(usize, usize, usize)> {
    let cs: CourseService = serde_json::from_value(common::course("c0000", "default", spec.clone()))?;
    let desired = plan::desired(&cs, zones, &Observed::default(), &Images::default())?;
    let count = |kind: &str| desired.children.iter().filter(|c| c.kind() == kind).count();
    Ok((count("ReplicaSet"), count("StatefulSet"), count("Job")))
}

/// The data layer of a fleet as it comes up: every StatefulSet with all its replicas Ready and
/// every init Job succeeded (kwok runs no container: it marks the pods Ready and completes the
/// Jobs' pods, so this measures the control plane's path, not mongod).
struct DataLayer {
    sets: Watched<StatefulSet>,
    jobs: Watched<Job>,
    expected_sets: usize,
    expected_jobs: usize,
}

impl DataLayer {
    async fn start(client: &Client, ns: &str, expected_sets: usize, expected_jobs: usize) -> anyhow::Result<Self> {
        let sets = Watched::start(client, ns, None).await?;
        let jobs = Watched::start(client, ns, None).await?;
        Ok(Self { sets, jobs, expected_sets, expected_jobs })
    }

    /// The instant the last StatefulSet became Ready or the last init Job succeeded.
    async fn ready(&self, timeout: Duration) -> anyhow::Result<Instant> {
        let sets = self.sets.until(timeout, "every StatefulSet Ready", |objects| {
            let ready = objects.iter().filter(|s| statefulset_ready(s)).count();
            (ready >= self.expected_sets).then_some(())
        });
        let jobs = self.jobs.until(timeout, "every init Job succeeded", |objects| {
            let done = objects.iter().filter(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0).count();
            (done >= self.expected_jobs).then_some(())
        });
        let ((_, sets), (_, jobs)) = tokio::try_join!(sets, jobs)?;
        Ok(sets.max(jobs))
    }
}

fn statefulset_ready(set: &StatefulSet) -> bool {
    let Some(status) = set.status.as_ref() else { return false };
    status.observed_generation == set.metadata.generation
        && status.ready_replicas.unwrap_or(0) == set.spec.replicas.unwrap_or(1)
}

fn is_app(d: &ReplicaSet) -> bool {
    d.labels().get(labels::COMPONENT).is_some_and(|c| c == "app")
}

/// What the raw writer took.
struct Raw {
    apply_seconds: f64,
    ready_seconds: f64,
    writes_per_course: f64,
}

impl Round {
    /// Both sides measured: the ratios.
    fn compare(&mut self, raw: &Raw, raw_first: bool) {
        self.raw_apply_seconds = raw.apply_seconds;
        self.raw_seconds = raw.ready_seconds;
        self.raw_writes_per_course = raw.writes_per_course;
        self.raw_first = raw_first;
        self.applied_ratio = self.operator_applied_seconds / raw.apply_seconds.max(1e-9);
        self.ratio = self.operator_seconds.max(self.operator_replica_sets_ready_seconds) / raw.ready_seconds.max(1e-9);
        progress(format!(
            "operator/raw: children applied {:.2} ({:.1}s / {:.1}s), every pod Ready {:.2}; raw writer ran {}",
            self.applied_ratio,
            self.operator_applied_seconds,
            raw.apply_seconds,
            self.ratio,
            if raw_first { "first" } else { "second" }
        ));
    }
}

/// The lower bound: the same rendered children, applied with the operator's concurrency (N
/// CourseServices `concurrency` at a time, each one's children in sequence, as a reconcile
/// does), then every ReplicaSet Ready.
async fn raw_round(
    client: &Client,
    config: &Config,
    zones: &[ZoneHealth],
    n: usize,
    data: bool,
) -> anyhow::Result<Raw> {
    let ns = common::create_namespace(client, "bench-raw").await?;
    let outcome = async {
        let spec = fleet_spec(config.replicas, data);
        // Without a uid the renderer sets no owner reference (nothing to own them here, and a
        // dangling one would be garbage-collected); everything else is byte-identical.
        let mut rendered: Vec<Vec<Child>> = Vec::new();
        for name in names(n) {
            let cs: CourseService = serde_json::from_value(common::course(&name, &ns, spec.clone()))?;
            let observed = Observed {
                now: Some(Timestamp::now()),
                database_credentials: data.then(DatabaseCredentials::generate),
                ..Observed::default()
            };
            let planned =
                plan::desired(&cs, zones, &observed, &Images::default()).map_err(|e| anyhow!("plan {name}: {e}"))?;
            let mut children = planned.children;
            children.iter_mut().for_each(fingerprint);
            rendered.push(children);
        }
        let expected = rendered.iter().flatten().filter(|c| matches!(c, Child::ReplicaSet(_))).count();
        let writes = rendered.iter().map(Vec::len).sum::<usize>();
        let replica_sets: Watched<ReplicaSet> = Watched::start(client, &ns, None).await?;
        let count = |kind: &str| rendered.iter().flatten().filter(|c| c.kind() == kind).count();
        let data_layer = match (count("StatefulSet"), count("Job")) {
            (0, 0) => None,
            (sets, jobs) => Some(DataLayer::start(client, &ns, sets, jobs).await?),
        };
        progress(format!("raw: applying {writes} children of {n} CourseServices in {ns}"));
        let params = PatchParams::apply(labels::MANAGER).force();
        let started = Instant::now();
        futures::stream::iter(rendered)
            .map(|children| {
                let (client, ns, params) = (client.clone(), ns.clone(), params.clone());
                async move {
                    for child in &children {
                        server_side_apply(&client, &ns, child, &params)
                            .await
                            .with_context(|| format!("raw apply {} {}", child.kind(), child.name()))?;
                    }
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(usize::from(config.concurrency))
            .try_collect::<Vec<_>>()
            .await?;
        let applied = started.elapsed();
        let (_, mut ready) = replica_sets
            .until(converge_timeout(n), "every raw ReplicaSet Ready", |objects| {
                (objects.iter().filter(|d| replica_set_ready(d)).count() >= expected).then_some(())
            })
            .await?;
        if let Some(layer) = &data_layer {
            ready = ready.max(layer.ready(converge_timeout(n)).await?);
        }
        let raw = Raw {
            apply_seconds: applied.as_secs_f64(),
            ready_seconds: common::secs_between(started, ready),
            writes_per_course: writes as f64 / n as f64,
        };
        progress(format!(
            "raw: applied in {:.1}s, every ReplicaSet (and StatefulSet, and init Job done) Ready at {:.1}s",
            raw.apply_seconds, raw.ready_seconds
        ));
        anyhow::Ok(raw)
    }
    .await;
    common::delete_namespace(client, &ns, Some(Duration::from_secs(300))).await?;
    outcome
}

/// Writes in an idle window at steady state, after the trailing writes have stopped.
async fn idle_window(config: &Config, operator: &Operator) -> anyhow::Result<Idle> {
    let settle_started = Instant::now();
    let quiet = Duration::from_secs(config.resync_seconds + 2);
    let mut last = operator.metrics().await?.writes();
    loop {
        tokio::time::sleep(quiet).await;
        let now = operator.metrics().await?.writes();
        if now == last {
            break;
        }
        if settle_started.elapsed() > Duration::from_secs(300) {
            progress("idle: writes did not stop within 300 s; measuring anyway");
            break;
        }
        last = now;
    }
    let settle_seconds = settle_started.elapsed().saturating_sub(quiet).as_secs_f64();
    progress(format!("idle: measuring {} s (resync every {} s)", config.idle_seconds, config.resync_seconds));
    let before = operator.metrics().await?;
    tokio::time::sleep(Duration::from_secs(config.idle_seconds)).await;
    let after = operator.metrics().await?;
    Ok(Idle {
        seconds: config.idle_seconds,
        resync_seconds: config.resync_seconds,
        writes: after.writes() - before.writes(),
        reads: after.requests("Get") - before.requests("Get"),
        reconciles: after.reconciles("Success") - before.reconciles("Success"),
        settle_seconds,
    })
}

fn replicas_of(replica_sets: &[Arc<ReplicaSet>], instance: &str) -> i32 {
    replica_sets
        .iter()
        .filter(|d| d.labels().get(labels::INSTANCE).is_some_and(|i| i == instance) && is_app(d))
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .map(|d| d.spec.replicas.unwrap_or(0))
        .sum()
}

/// Latency under load: every `1 / latency_rate` s a spec.replicas change goes to the next
/// CourseService of the fleet not already waiting (open loop: a slow answer delays no later
/// send), alternating +1 and −1 so the pod count stays bounded; each sample is the time from
/// sending the PATCH to the watch event showing that CourseService's ReplicaSets at the new
/// total. Every one of `latency_samples` changes must be seen within 30 s, or the run fails.
async fn latency(
    client: &Client,
    config: &Config,
    ns: &str,
    replica_sets: &Watched<ReplicaSet>,
    courses: &Watched<CourseService>,
) -> anyhow::Result<Latency> {
    use futures::stream::FuturesUnordered;
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let all = names(config.n);
    anyhow::ensure!(!all.is_empty(), "no CourseService to change");
    let mut replicas: BTreeMap<String, i32> = all
        .iter()
        .map(|name| {
            let cs = courses.objects().into_iter().find(|cs| cs.name_any() == *name);
            (name.clone(), cs.map_or(config.replicas, |cs| cs.spec.replicas))
        })
        .collect();
    let mut waiting: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut in_flight = FuturesUnordered::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / config.latency_rate);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut sent, mut next) = (0usize, 0usize);
    let (mut samples, mut patch_times) = (Vec::new(), Vec::new());
    let (mut first_send, mut last_send) = (None, None);
    while samples.len() < config.latency_samples {
        tokio::select! {
            _ = ticker.tick(), if sent < config.latency_samples => {
                // the next CourseService not already waiting for its previous change
                let Some(index) = (0..all.len()).map(|i| (next + i) % all.len()).find(|i| !waiting.contains(&all[*i])) else {
                    anyhow::bail!("every CourseService of the fleet is still waiting for its last change");
                };
                next = index + 1;
                let name = all[index].clone();
                let current = replicas.get(&name).copied().unwrap_or(config.replicas);
                let target = if sent % 2 == 1 && current > 0 { current - 1 } else { current + 1 };
                replicas.insert(name.clone(), target);
                waiting.insert(name.clone());
                sent += 1;
                let api = api.clone();
                let now = Instant::now();
                first_send.get_or_insert(now);
                last_send = Some(now);
                in_flight.push(async move {
                    let started = Instant::now();
                    let patch = serde_json::json!({"spec": {"replicas": target}});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                    let patched = started.elapsed();
                    let what = format!("{name}'s ReplicaSets at {target} replicas");
                    let (_, seen) = replica_sets
                        .until(Duration::from_secs(30), &what, |objects| (replicas_of(objects, &name) == target).then_some(()))
                        .await?;
                    anyhow::Ok((name, common::secs_between(started, seen) * 1000.0, patched.as_secs_f64() * 1000.0))
                });
            }
            Some(done) = in_flight.next() => {
                let (name, ms, patch_ms) = done?;
                waiting.remove(&name);
                samples.push(ms);
                patch_times.push(patch_ms);
            }
        }
    }
    let sending = match (first_send, last_send) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    let intervals = samples.len().saturating_sub(1) as f64;
    Ok(Latency {
        p50_ms: common::percentile(&samples, 50.0).unwrap_or(0.0),
        p99_ms: common::percentile(&samples, 99.0).unwrap_or(0.0),
        max_ms: samples.iter().copied().fold(0.0, f64::max),
        patch_p50_ms: common::median(&patch_times).unwrap_or(0.0),
        patch_p99_ms: common::percentile(&patch_times, 99.0).unwrap_or(0.0),
        sent_per_second: if sending > 0.0 { intervals / sending } else { 0.0 },
        samples_ms: samples,
    })
}

fn revision(labels_of: &std::collections::BTreeMap<String, String>) -> Option<&String> {
    labels_of.get(labels::REVISION)
}

fn pod_ready_since(pod: &Pod) -> Option<SystemTime> {
    let condition =
        pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    let time = condition.last_transition_time.as_ref()?.0;
    let millis = time.as_millisecond();
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).ok()?))
}

/// Ready-since times of the Ready, not deleted pods of `rev`, earliest first.
fn ready_pods(pods: &[Arc<Pod>], rev: &str) -> Vec<SystemTime> {
    let mut times: Vec<SystemTime> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.metadata.labels.as_ref().and_then(revision).is_some_and(|r| r == rev))
        .filter_map(|p| pod_ready_since(p))
        .collect();
    times.sort();
    times
}

fn revision_sum(replica_sets: &[Arc<ReplicaSet>], rev: &str, ready: bool) -> i32 {
    replica_sets
        .iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none() && is_app(d))
        .filter(|d| d.metadata.labels.as_ref().and_then(revision).is_some_and(|r| r == rev))
        .map(|d| {
            if ready {
                d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
            } else {
                d.spec.replicas.unwrap_or(0)
            }
        })
        .sum()
}

fn rollout_of(cs: &CourseService) -> Option<(RolloutPhase, String, String)> {
    let r = cs.status.as_ref()?.rollout.as_ref()?;
    Some((r.phase, r.stable_revision.clone()?, r.new_revision.clone()?))
}

/// Canary step advance and blue-green switch, measured against the new pods' readiness.
async fn rollouts(client: &Client, config: &Config, ns: &str) -> anyhow::Result<Rollouts> {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let canary = serde_json::json!({"type": "Canary", "canary": {"steps": [
        {"setWeight": 25}, {"setWeight": 50}, {"setWeight": 75},
    ]}});
    let blue_green = serde_json::json!({"type": "BlueGreen", "blueGreen": {
        "previewService": true, "autoPromotionSeconds": 0, "scaleDownDelaySeconds": 0,
    }});
    let spec = |image: &str, strategy: &serde_json::Value| serde_json::json!({"image": image, "replicas": 4, "strategy": strategy, "service": {"type": "ClusterIP"}});
    let courses: Watched<CourseService> = Watched::start(client, ns, None).await?;
    let mut result = Rollouts::default();
    for (name, strategy) in [("roll-canary", &canary), ("roll-bg", &blue_green)] {
        common::apply_json(&api, &common::course(name, ns, spec("bench/roll:0", strategy)), common::HARNESS_MANAGER)
            .await?;
    }
    let selector = |name: &str| format!("{}={name}", labels::INSTANCE);
    let anchor = (Instant::now(), SystemTime::now());
    for round in 1..=config.rollouts {
        for (name, strategy) in [("roll-canary", &canary), ("roll-bg", &blue_green)] {
            let (_, stable) = courses
                .until(Duration::from_secs(120), &format!("{name} Healthy"), |objects| {
                    let cs = objects.iter().find(|c| c.name_any() == name)?;
                    let (phase, stable, new) = rollout_of(cs)?;
                    (phase == RolloutPhase::Healthy && stable == new && converged(cs)).then_some(stable)
                })
                .await
                .map(|(stable, at)| (at, stable))?;
            let pods: Watched<Pod> = Watched::start(client, ns, Some(&selector(name))).await?;
            let replica_sets: Watched<ReplicaSet> = Watched::start(client, ns, Some(&selector(name))).await?;
            let services: Watched<Service> = Watched::start(client, ns, Some(&selector(name))).await?;
            let image = format!("bench/roll:{round}");
            common::apply_json(&api, &common::course(name, ns, spec(&image, strategy)), common::HARNESS_MANAGER)
                .await?;
            let (new, _) = replica_sets
                .until(Duration::from_secs(30), "the new revision's ReplicaSets", |objects| {
                    objects
                        .iter()
                        .filter_map(|d| d.metadata.labels.as_ref().and_then(revision))
                        .find(|r| **r != stable)
                        .cloned()
                })
                .await?;
            let timeout = Duration::from_secs(60);
            if name == "roll-canary" {
                for (want, next) in [(1, 2), (2, 3), (3, 4)] {
                    let pod_ready = pods.until(timeout, "new pods Ready", |p| {
                        let ready = ready_pods(p, &new);
                        (ready.len() >= want).then(|| ready[want - 1])
                    });
                    let replica_set_ready = replica_sets.until(timeout, "ReplicaSet status Ready", |d| {
                        (revision_sum(d, &new, true) >= i32::try_from(want).unwrap_or(0)).then_some(())
                    });
                    let advanced = replica_sets.until(timeout, "the next canary step", |d| {
                        (revision_sum(d, &new, false) >= next).then_some(())
                    });
                    let ((condition, pod_at), (_, dep_at), (_, op_at)) =
                        tokio::try_join!(pod_ready, replica_set_ready, advanced)?;
                    result.steps.push(step("canary", pod_at, dep_at, op_at, condition, anchor));
                }
            } else {
                let pod_ready = pods.until(timeout, "new pods Ready", |p| {
                    let ready = ready_pods(p, &new);
                    (ready.len() >= 4).then(|| ready[3])
                });
                let replica_set_ready = replica_sets
                    .until(timeout, "ReplicaSet status Ready", |d| (revision_sum(d, &new, true) >= 4).then_some(()));
                let switched = services.until(timeout, "the main Service switched", |s| {
                    let main = s.iter().find(|s| s.name_any() == name)?;
                    let selected = main.spec.as_ref()?.selector.as_ref()?.get(labels::REVISION)?;
                    (*selected == new).then_some(())
                });
                let ((condition, pod_at), (_, dep_at), (_, op_at)) =
                    tokio::try_join!(pod_ready, replica_set_ready, switched)?;
                result.steps.push(step("blue-green", pod_at, dep_at, op_at, condition, anchor));
            }
        }
    }
    let of = |kind: &str, f: fn(&RolloutStep) -> f64| -> Vec<f64> {
        result.steps.iter().filter(|s| s.kind == kind).map(f).collect()
    };
    let canary_overhead = of("canary", |s| s.overhead_ms);
    let bg_overhead = of("blue-green", |s| s.overhead_ms);
    result.canary_p50_ms = common::median(&canary_overhead).unwrap_or(0.0);
    result.canary_max_ms = canary_overhead.iter().copied().fold(0.0, f64::max);
    result.blue_green_p50_ms = common::median(&bg_overhead).unwrap_or(0.0);
    result.blue_green_max_ms = bg_overhead.iter().copied().fold(0.0, f64::max);
    result.canary_operator_share_p50_ms = common::median(&of("canary", |s| s.operator_share_ms)).unwrap_or(0.0);
    result.blue_green_operator_share_p50_ms = common::median(&of("blue-green", |s| s.operator_share_ms)).unwrap_or(0.0);
    Ok(result)
}

fn step(
    kind: &str,
    pod_at: Instant,
    dep_at: Instant,
    op_at: Instant,
    condition: SystemTime,
    anchor: (Instant, SystemTime),
) -> RolloutStep {
    let op_wall = common::wall_clock(anchor, op_at);
    let from_condition = match op_wall.duration_since(condition) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    RolloutStep {
        kind: kind.to_owned(),
        overhead_ms: common::secs_between(pod_at, op_at) * 1000.0,
        operator_share_ms: common::secs_between(dep_at, op_at) * 1000.0,
        overhead_from_condition_ms: from_condition * 1000.0,
    }
}

fn reconcile_stats(metrics: &Metrics) -> Reconciles {
    let buckets = metrics.duration_buckets();
    let count = buckets.last().map_or(0.0, |b| b.1);
    let sum = metrics.sum("course_operator_reconcile_duration_seconds_sum", "");
    Reconciles {
        count,
        mean_ms: if count > 0.0 { sum / count * 1000.0 } else { 0.0 },
        p50_ms: common::histogram_quantile(0.5, &buckets).unwrap_or(0.0) * 1000.0,
        p99_ms: common::histogram_quantile(0.99, &buckets).unwrap_or(0.0) * 1000.0,
        errors: metrics.reconciles("Error"),
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn med(runs: &[Run], f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = runs.iter().filter_map(f).collect();
    common::median(&values)
}

fn each(runs: &[Run], f: impl Fn(&Run) -> Option<f64>, digits: usize) -> String {
    runs.iter().map(|r| f(r).map_or("–".into(), |v| format!("{:.digits$}", v + 0.0))).collect::<Vec<_>>().join(" / ")
}

fn write_outputs(config: &Config, runs: &[Run], failure: Option<&str>) -> anyhow::Result<()> {
    let json_path = std::env::var("BENCH_OUT_JSON").unwrap_or_else(|_| "benchmarks/results.json".into());
    let md_path = std::env::var("BENCH_OUT_MD").unwrap_or_else(|_| "/tmp/course-operator-bench/table.md".into());
    let doc = serde_json::json!({
        "benchmark": "fleet",
        "mode": if config.full { "full" } else { "quick" },
        "config": config,
        "failure": failure,
        "runs": runs,
        "medians": {
            "plain_operator_seconds": med(runs, |r| Some(r.plain.operator_seconds)),
            "plain_raw_seconds": med(runs, |r| Some(r.plain.raw_seconds)),
            "plain_ratio": med(runs, |r| Some(r.plain.ratio)),
            "plain_applied_ratio": med(runs, |r| Some(r.plain.applied_ratio)),
            "data_operator_seconds": med(runs, |r| r.data.as_ref().map(|d| d.operator_seconds)),
            "data_raw_seconds": med(runs, |r| r.data.as_ref().map(|d| d.raw_seconds)),
            "data_ratio": med(runs, |r| r.data.as_ref().map(|d| d.ratio)),
            "data_applied_ratio": med(runs, |r| r.data.as_ref().map(|d| d.applied_ratio)),
            "writes_per_course": med(runs, |r| Some(r.plain.writes_per_course)),
            "idle_writes": med(runs, |r| Some(r.idle.writes)),
            "peak_rss_mib": med(runs, |r| Some(r.peak_rss_mib)),
            "restart_peak_rss_mib": med(runs, |r| Some(r.restart_peak_rss_mib)),
            "latency_p50_ms": med(runs, |r| Some(r.latency.p50_ms)),
            "latency_p99_ms": med(runs, |r| Some(r.latency.p99_ms)),
            "canary_overhead_p50_ms": med(runs, |r| Some(r.rollouts.canary_p50_ms)),
            "blue_green_overhead_p50_ms": med(runs, |r| Some(r.rollouts.blue_green_p50_ms)),
            "reconcile_p50_ms": med(runs, |r| Some(r.reconciles.p50_ms)),
            "reconcile_p99_ms": med(runs, |r| Some(r.reconciles.p99_ms)),
        },
    });
    if let Some(parent) = PathBuf::from(&json_path).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    if let Some(parent) = PathBuf::from(&md_path).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&md_path, markdown(config, runs, failure))?;
    Ok(())
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "–",
    }
}

fn markdown(config: &Config, runs: &[Run], failure: Option<&str>) -> String {
    let mut out = String::new();
    let n = config.n;
    let row = |out: &mut String,
               what: &str,
               f: &dyn Fn(&Run) -> Option<f64>,
               digits: usize,
               goal: &str,
               ok: Option<bool>| {
        let median = med(runs, f).map_or("–".into(), |v| format!("{:.digits$}", v + 0.0));
        out.push_str(&format!("| {what} | **{median}** | {} | {goal} | {} |\n", each(runs, f, digits), verdict(ok)));
    };
    out.push_str(&format!(
        "Mode **{}**: N = {n} CourseServices × {} app replicas ({} zones), {} run(s), medians in bold; \
         operator `--concurrency {}`, `--resync-seconds {}`.\n\n",
        if config.full { "full" } else { "quick" },
        config.replicas,
        config.zones,
        runs.len(),
        config.concurrency,
        config.resync_seconds,
    ));
    if let Some(f) = failure {
        out.push_str(&format!("**The run failed:** `{}`\n\n", f.lines().next().unwrap_or_default()));
    }
    out.push_str("| figure | median | runs | goal | |\n|---|---|---|---|---|\n");
    let applied_ratio = med(runs, |r| Some(r.plain.applied_ratio));
    row(
        &mut out,
        &format!("fleet of {n}: operator, every child applied and status written (s)"),
        &|r| Some(r.plain.operator_applied_seconds),
        1,
        "",
        None,
    );
    row(
        &mut out,
        &format!("fleet of {n}: raw writer, every child applied (s)"),
        &|r| Some(r.plain.raw_apply_seconds),
        1,
        "",
        None,
    );
    row(
        &mut out,
        "**operator / raw, children applied** (primary)",
        &|r| Some(r.plain.applied_ratio),
        2,
        "≤ 1.3",
        applied_ratio.map(|r| r <= 1.3),
    );
    row(
        &mut out,
        "  raw writer ran first (1) or second (0)",
        &|r| Some(if r.plain.raw_first { 1.0 } else { 0.0 }),
        0,
        "",
        None,
    );
    row(
        &mut out,
        &format!("fleet of {n}: operator, all converged (s)"),
        &|r| Some(r.plain.operator_seconds),
        1,
        "",
        None,
    );
    row(
        &mut out,
        "  … every app ReplicaSet Ready (s)",
        &|r| Some(r.plain.operator_replica_sets_ready_seconds),
        1,
        "",
        None,
    );
    row(&mut out, "  … CourseServices submitted (s)", &|r| Some(r.plain.submit_seconds), 1, "", None);
    row(&mut out, &format!("fleet of {n}: raw writer, all Ready (s)"), &|r| Some(r.plain.raw_seconds), 1, "", None);
    row(&mut out, "operator / raw, every pod Ready (secondary)", &|r| Some(r.plain.ratio), 2, "", None);
    if runs.iter().any(|r| r.data.is_some()) {
        let data_n = runs.iter().find_map(|r| r.data.as_ref().map(|d| d.n)).unwrap_or(0);
        let data_applied_ratio = med(runs, |r| r.data.as_ref().map(|d| d.applied_ratio));
        row(
            &mut out,
            &format!("cache+database fleet of {data_n}: operator, converged and every pod Ready (s)"),
            &|r| r.data.as_ref().map(|d| d.operator_seconds.max(d.operator_replica_sets_ready_seconds)),
            1,
            "",
            None,
        );
        row(&mut out, "  … raw writer, every pod Ready (s)", &|r| r.data.as_ref().map(|d| d.raw_seconds), 1, "", None);
        row(
            &mut out,
            "  **operator / raw, children applied**",
            &|r| r.data.as_ref().map(|d| d.applied_ratio),
            2,
            "≤ 1.3",
            data_applied_ratio.map(|r| r <= 1.3),
        );
        row(&mut out, "  operator / raw, every pod Ready", &|r| r.data.as_ref().map(|d| d.ratio), 2, "", None);
        row(&mut out, "  writes per CourseService", &|r| r.data.as_ref().map(|d| d.writes_per_course), 1, "", None);
        row(
            &mut out,
            "  raw writer: writes per CourseService (one per child)",
            &|r| r.data.as_ref().map(|d| d.raw_writes_per_course),
            1,
            "",
            None,
        );
    }
    for verb in common::VERBS {
        if runs.iter().any(|r| r.plain.requests_per_course.contains_key(verb)) {
            row(
                &mut out,
                &format!("requests per CourseService to converge: {verb}"),
                &|r| Some(r.plain.requests_per_course.get(verb).copied().unwrap_or(0.0)),
                2,
                "",
                None,
            );
        }
    }
    row(&mut out, "  writes per CourseService", &|r| Some(r.plain.writes_per_course), 2, "", None);
    row(
        &mut out,
        "  raw writer: writes per CourseService (one per child)",
        &|r| Some(r.plain.raw_writes_per_course),
        2,
        "",
        None,
    );
    row(&mut out, "  reconciles per CourseService to converge", &|r| Some(r.plain.reconciles_per_course), 2, "", None);
    let idle = med(runs, |r| Some(r.idle.writes));
    row(
        &mut out,
        &format!("writes in {} s idle (resync {} s)", config.idle_seconds, config.resync_seconds),
        &|r| Some(r.idle.writes),
        0,
        "0",
        idle.map(|w| w == 0.0),
    );
    row(&mut out, "  reconciles in the idle window", &|r| Some(r.idle.reconciles), 0, "", None);
    row(&mut out, "  reads (Get) in the idle window", &|r| Some(r.idle.reads), 0, "", None);
    row(&mut out, "  trailing writes settled after (s)", &|r| Some(r.idle.settle_seconds), 0, "", None);
    let rss = med(runs, |r| Some(r.peak_rss_mib));
    let rss_goal = if n >= 1000 { rss.map(|m| m <= 64.0) } else { None };
    row(
        &mut out,
        &format!("operator peak RSS, VmHWM (MiB) at N={n}"),
        &|r| Some(r.peak_rss_mib),
        1,
        "≤ 64 at 1000",
        rss_goal,
    );
    row(&mut out, "  RSS in the idle window (MiB)", &|r| Some(r.idle_rss_mib), 1, "", None);
    let restart_rss = med(runs, |r| Some(r.restart_peak_rss_mib));
    row(
        &mut out,
        &format!("operator restarted on the converged fleet, VmHWM (MiB) at N={n}"),
        &|r| Some(r.restart_peak_rss_mib),
        1,
        "≤ 64 at 1000",
        if n >= 1000 { restart_rss.map(|m| m <= 64.0) } else { None },
    );
    // A phase that was not run gets no figures and no verdict (never "met" on no samples).
    if config.latency_samples > 0 {
        // The latency goal holds in every run, not in the median one.
        let worst_p99 = runs
            .iter()
            .map(|r| r.latency.p99_ms)
            .fold(None, |worst: Option<f64>, p| Some(worst.map_or(p, |w| w.max(p))));
        row(
            &mut out,
            &format!(
                "spec change → ReplicaSets updated under load, p50 (ms; {} changes at {}/s)",
                config.latency_samples, config.latency_rate
            ),
            &|r| Some(r.latency.p50_ms),
            0,
            "",
            None,
        );
        row(
            &mut out,
            "  p99 (ms)",
            &|r| Some(r.latency.p99_ms),
            0,
            "≤ 250 in every run",
            worst_p99.map(|p| p <= 250.0),
        );
        row(&mut out, "  max (ms)", &|r| Some(r.latency.max_ms), 0, "", None);
        row(&mut out, "  changes sent per second", &|r| Some(r.latency.sent_per_second), 1, "", None);
        row(&mut out, "  PATCH round trip, p50 (ms)", &|r| Some(r.latency.patch_p50_ms), 0, "", None);
        row(&mut out, "  PATCH round trip, p99 (ms)", &|r| Some(r.latency.patch_p99_ms), 0, "", None);
    } else {
        let what = "spec change → ReplicaSets updated under load: not run (BENCH_LATENCY_SAMPLES=0)";
        row(&mut out, what, &|_| None, 0, "≤ 250 in every run", None);
    }
    if config.rollouts > 0 {
        let canary = med(runs, |r| Some(r.rollouts.canary_max_ms));
        let bg = med(runs, |r| Some(r.rollouts.blue_green_max_ms));
        row(
            &mut out,
            "canary step: operator time over pod readiness, p50 (ms)",
            &|r| Some(r.rollouts.canary_p50_ms),
            0,
            "",
            None,
        );
        row(&mut out, "  max (ms)", &|r| Some(r.rollouts.canary_max_ms), 0, "≤ 1000", canary.map(|m| m <= 1000.0));
        row(
            &mut out,
            "  of it after the ReplicaSet status showed Ready, p50 (ms)",
            &|r| Some(r.rollouts.canary_operator_share_p50_ms),
            0,
            "",
            None,
        );
        row(
            &mut out,
            "blue-green switch: operator time over pod readiness, p50 (ms)",
            &|r| Some(r.rollouts.blue_green_p50_ms),
            0,
            "",
            None,
        );
        row(&mut out, "  max (ms)", &|r| Some(r.rollouts.blue_green_max_ms), 0, "≤ 1000", bg.map(|m| m <= 1000.0));
        row(
            &mut out,
            "  of it after the ReplicaSet status showed Ready, p50 (ms)",
            &|r| Some(r.rollouts.blue_green_operator_share_p50_ms),
            0,
            "",
            None,
        );
    } else {
        let what = "canary step and blue-green switch: not run (BENCH_ROLLOUTS=0)";
        row(&mut out, what, &|_| None, 0, "≤ 1000", None);
    }
    row(&mut out, "reconcile duration p50 (ms, histogram)", &|r| Some(r.reconciles.p50_ms), 1, "", None);
    row(&mut out, "  p99 (ms)", &|r| Some(r.reconciles.p99_ms), 1, "", None);
    row(&mut out, "  mean (ms)", &|r| Some(r.reconciles.mean_ms), 1, "", None);
    row(&mut out, "  reconciles in the run", &|r| Some(r.reconciles.count), 0, "", None);
    row(&mut out, "  reconcile errors", &|r| Some(r.reconciles.errors), 0, "", None);
    out.push_str(&format!(
        "\nLoad average at the end of each run: {}.\n",
        runs.iter().map(|r| format!("`{}`", r.load_average)).collect::<Vec<_>>().join(", ")
    ));
    out
}
