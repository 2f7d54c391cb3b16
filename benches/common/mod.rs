//! What the benches (fleet, peers, render, chaos) share. The cluster harness itself (client,
//! CRD, namespaces, polling, the operator process, /metrics) is the e2e suite's too, in
//! tests/support/; here are the benches' settings for it (their field manager, OPERATOR_BIN,
//! the admin kubeconfig), watch-driven waiting, a seeded PRNG, small statistics and the
//! ServiceCIDR a large fleet needs.
//!
//! Not a test harness: every function returns errors instead of panicking, so a run can report
//! what it measured before the failure.

#![allow(dead_code)] // each bench target uses its own subset

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

#[path = "../../tests/support/audit.rs"]
pub mod audit;
#[path = "../../tests/support/fixtures.rs"]
#[allow(dead_code)] // the samples and invalid specs are the test tiers'
mod fixtures;
#[path = "../../tests/support/harness.rs"]
mod harness;
#[path = "../../tests/support/metrics.rs"]
mod metrics;
#[path = "../../tests/support/process.rs"]
mod process;

use course_operator::zones::{ZoneHealth, ZoneInventory};

/// Field manager of what the harness itself writes (CourseServices, namespaces, raw children
/// are written as the operator's own manager so the comparison is exact).
pub const HARNESS_MANAGER: &str = "course-operator-bench";

/// The e2e suite's fixtures and cluster harness, as the benches use them.
#[allow(unused_imports)] // each bench target uses its own subset
pub use {
    fixtures::{course, repo_root},
    harness::{apply_json, kwok_nodes_in, node_manifests, node_ready, poll, remove_nodes, restore_nodes},
    metrics::{Metrics, VERBS},
    process::{LoggedProcess, OperatorProcess as Operator, strip_ansi},
};

/// An environment variable parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// Whether an environment variable is set to 1/true/yes.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// Prints a progress line to stderr with the elapsed time of the whole run.
pub fn progress(message: impl AsRef<str>) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>7.1}s] {}", start.elapsed().as_secs_f64(), message.as_ref());
}

/// A client for the cluster in KUBECONFIG. Thousands of objects go through it; the default
/// 295 s read timeout is fine, but a dead apiserver must not hang a phase forever.
pub async fn client() -> anyhow::Result<Client> {
    harness::client(Some(Duration::from_secs(10))).await
}

/// Installs crds/ (the committed CRD) and waits until it is Established.
pub async fn ensure_crd(client: &Client) -> anyhow::Result<()> {
    harness::ensure_crd(client, HARNESS_MANAGER).await
}

/// Creates namespace `<prefix>-<suffix>` labelled as the harness's.
pub async fn create_namespace(client: &Client, prefix: &str) -> anyhow::Result<String> {
    harness::create_namespace(client, prefix, HARNESS_MANAGER).await
}

/// Deletes a namespace (unless BENCH_KEEP_NAMESPACES=1); with `wait`, until it is gone.
pub async fn delete_namespace(client: &Client, name: &str, wait: Option<Duration>) -> anyhow::Result<()> {
    harness::delete_namespace(client, name, "BENCH_KEEP_NAMESPACES", wait).await
}

/// The zones the cluster offers now, as the operator computes them for a spec without `zones`.
pub async fn cluster_zones(client: &Client) -> anyhow::Result<Vec<ZoneHealth>> {
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    Ok(ZoneInventory::from_nodes(nodes.items.iter()).for_spec(&[]))
}

// ---------------------------------------------------------------------------------------------
// The operator as a separate process

/// The operator binary: `OPERATOR_BIN`, else the release binary Cargo built beside this target.
pub fn operator_binary() -> PathBuf {
    std::env::var_os("OPERATOR_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_course-operator")), PathBuf::from)
}

/// Starts `course-operator run` watching `namespace` (its Lease lives there too), without
/// waiting. It runs with the admin kubeconfig of KUBECONFIG (the bench measures the controller,
/// not RBAC; the e2e suite covers least privilege), at OPERATOR_LOG_LEVEL (info), and logs to
/// `log_dir`.
pub fn spawn_operator(namespace: &str, identity: &str, extra: &[&str], log_dir: &Path) -> anyhow::Result<Operator> {
    let level = std::env::var("OPERATOR_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let launch = process::Launch {
        binary: operator_binary(),
        env: vec![("LOG_LEVEL", level.into()), ("NO_COLOR", "1".into())],
        log_path: log_dir.join(format!("operator-{namespace}-{identity}.log")),
        // /metrics of a busy operator on a loaded machine: more patience than the tests'
        answer_within: Duration::from_secs(5),
    };
    Operator::spawn(launch, namespace, identity, extra)
}

/// Starts the operator as [`spawn_operator`] does and waits for /readyz (every cache synced).
pub async fn start_operator(
    namespace: &str,
    identity: &str,
    extra: &[&str],
    log_dir: &Path,
) -> anyhow::Result<Operator> {
    let mut operator = spawn_operator(namespace, identity, extra, log_dir)?;
    operator.wait_ready(Operator::READY_WITHIN).await?;
    Ok(operator)
}

/// A field of /proc/<pid>/status in KiB (VmHWM: peak resident set; VmRSS: now).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Quantile `q` of a cumulative histogram, interpolated linearly inside the bucket.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let fraction = if width > 0.0 { (rank - lower.1) / width } else { 1.0 };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Watch-driven waiting

/// A reflector over one kind in one namespace, with a change counter: waiting re-checks a
/// condition on every watch event (never on a timer), so the instant a wait returns is the
/// instant the event that satisfied it arrived.
pub struct Watched<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    changes: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Watched<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// Watches `K` in `namespace` (optionally by label) and waits for the initial list.
    pub async fn start(client: &Client, namespace: &str, labels: Option<&str>) -> anyhow::Result<Self> {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let mut config = watcher::Config::default();
        if let Some(labels) = labels {
            config = config.labels(labels);
        }
        let (reader, writer) = reflector::store();
        let (sender, changes) = tokio::sync::watch::channel(0u64);
        let stream = watcher(api, config).default_backoff().reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut count = 0u64;
            while stream.next().await.is_some() {
                count += 1;
                let _ = sender.send(count);
            }
        });
        tokio::time::timeout(Duration::from_secs(60), reader.wait_until_ready())
            .await
            .map_err(|_| anyhow!("initial list of {} in {namespace} took over 60 s", K::kind(&())))??;
        Ok(Self { store: reader, changes, task })
    }

    /// Every cached object.
    pub fn objects(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Waits until `check` returns `Some` for the cached objects; returns it and the instant
    /// of the event that made it true.
    pub async fn until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&[Arc<K>]) -> Option<T>,
    ) -> anyhow::Result<(T, Instant)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            if let Some(value) = check(&self.store.state()) {
                return Ok((value, Instant::now()));
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Err(_) => bail!("timed out after {timeout:?} waiting for {what}"),
                Ok(Err(_)) => bail!("the watch behind '{what}' ended"),
                Ok(Ok(())) => {}
            }
        }
    }
}

impl<K: Resource<DynamicType = ()> + 'static> Drop for Watched<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness and statistics

/// SplitMix64: tiny, seedable, and the same sequence on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let span = u64::try_from(high - low).unwrap_or(u64::MAX).saturating_add(1);
        low + i64::try_from(self.next_u64() % span).unwrap_or(0)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = usize::try_from(self.range(0, i64::try_from(items.len()).unwrap_or(1) - 1)).unwrap_or(0);
        &items[index]
    }

    /// Uniform duration in `low..=high`.
    pub fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        let ms = self.range(i64::try_from(low.as_millis()).unwrap_or(0), i64::try_from(high.as_millis()).unwrap_or(0));
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

/// Nearest-rank percentile of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 50.0)
}

/// Seconds between two instants (signed).
pub fn secs_between(from: Instant, to: Instant) -> f64 {
    if to >= from { (to - from).as_secs_f64() } else { -(from - to).as_secs_f64() }
}

/// Wall-clock time of an `Instant`, given one pair of (Instant, SystemTime) read together.
pub fn wall_clock(anchor: (Instant, SystemTime), at: Instant) -> SystemTime {
    if at >= anchor.0 { anchor.1 + (at - anchor.0) } else { anchor.1 - (anchor.0 - at) }
}

// ---------------------------------------------------------------------------------------------
// Service addresses

/// The local control plane's Service range is a /24 (254 ClusterIPs for the whole cluster): a
/// run that creates hundreds of Services adds a ServiceCIDR for its duration.
pub async fn add_service_cidr(client: &Client, name: &str, cidr: &str) -> anyhow::Result<()> {
    let api: Api<k8s_openapi::api::networking::v1::ServiceCIDR> = Api::all(client.clone());
    let object = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": name},
        "spec": {"cidrs": [cidr]},
    });
    apply_json(&api, &object, HARNESS_MANAGER).await.with_context(|| format!("adding ServiceCIDR {name} ({cidr})"))?;
    progress(format!("added ServiceCIDR {name} ({cidr}) for this run's Services"));
    Ok(())
}

/// Deletes a ServiceCIDR added by [`add_service_cidr`] (the apiserver keeps it until its last
/// address is released).
pub async fn remove_service_cidr(client: &Client, name: &str) {
    let api: Api<k8s_openapi::api::networking::v1::ServiceCIDR> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}
