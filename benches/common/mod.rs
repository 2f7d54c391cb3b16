//! What the fleet benchmark and the chaos harness share: a client from KUBECONFIG, throw-away
//! namespaces, the operator binary as a separate process (its /metrics and /proc figures),
//! watch-driven waiting, an EndpointSlice poller, a seeded PRNG and small statistics.
//!
//! Not a test harness: every function returns errors instead of panicking, so a run can report
//! what it measured before the failure.

#![allow(dead_code)] // each bench target uses its own subset

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Child as Process, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../tests/support/audit.rs"]
pub mod audit;
#[path = "../../tests/support/fixtures.rs"]
#[allow(dead_code)] // the samples and invalid specs are the test tiers'
mod fixtures;

use course_operator::labels;
use course_operator::render::Child;
use course_operator::zones::{ZoneHealth, ZoneInventory};

/// Field manager of what the harness itself writes (CourseServices, namespaces, raw children
/// are written as the operator's own manager so the comparison is exact).
pub const HARNESS_MANAGER: &str = "course-operator-bench";

pub use fixtures::repo_root;

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

/// A client for the cluster in KUBECONFIG.
pub async fn client() -> anyhow::Result<Client> {
    let mut config = kube::Config::infer().await.context("KUBECONFIG: run hack/cluster.sh up")?;
    // Thousands of objects go through one client; the default 295 s read timeout is fine, but
    // make sure a dead apiserver does not hang a phase forever.
    config.connect_timeout = Some(Duration::from_secs(10));
    Ok(Client::try_from(config)?)
}

/// Installs crds/ (the committed CRD) and waits until it is Established.
pub async fn ensure_crd(client: &Client) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(repo_root().join("crds/courseservices.microcourses.io.yaml"))?;
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(&crd.name_any(), &PatchParams::apply(HARNESS_MANAGER).force(), &Patch::Apply(&crd)).await?;
    poll(Duration::from_secs(30), "CRD Established", || async {
        let current = api.get(&crd.name_any()).await.ok()?;
        let conditions = current.status?.conditions?;
        conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await
}

/// Polls `probe` every 100 ms until it returns `Some` (for things no watch covers, like a
/// process's HTTP endpoint).
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A short unique suffix for names.
pub fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}", (nanos / 1000) % 0xff_ffff)
}

/// Creates namespace `<prefix>-<suffix>` labelled as the harness's.
pub async fn create_namespace(client: &Client, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}-{}", unique_suffix());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"course-operator-bench": "true"}},
    }))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    Ok(name)
}

/// Deletes a namespace; with `wait`, until it is gone (its pods and Service IPs are free again).
pub async fn delete_namespace(client: &Client, name: &str, wait: Option<Duration>) -> anyhow::Result<()> {
    if std::env::var("BENCH_KEEP_NAMESPACES").is_ok_and(|v| v == "1") {
        progress(format!("keeping namespace {name}"));
        return Ok(());
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
    if let Some(timeout) = wait {
        poll(timeout, &format!("namespace {name} gone"), || async {
            matches!(api.get_opt(name).await, Ok(None)).then_some(())
        })
        .await?;
    }
    Ok(())
}

/// The zones the cluster offers now, as the operator computes them for a spec without `zones`.
pub async fn cluster_zones(client: &Client) -> anyhow::Result<Vec<ZoneHealth>> {
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    Ok(ZoneInventory::from_nodes(nodes.items.iter()).for_spec(&[]))
}

/// Server-side applies a JSON object.
pub async fn apply_json<K>(api: &Api<K>, object: &serde_json::Value, manager: &str) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let name = object["metadata"]["name"].as_str().ok_or_else(|| anyhow!("object without a name"))?.to_owned();
    api.patch(&name, &PatchParams::apply(manager).force(), &Patch::Apply(object))
        .await
        .with_context(|| format!("apply {name}"))
}

/// A CourseService manifest on the simulated (kwok) nodes: the e2e suite's fixture.
#[allow(unused_imports)] // not every bench places CourseServices
pub use fixtures::course;

// ---------------------------------------------------------------------------------------------
// The operator as a separate process

/// The operator binary: `OPERATOR_BIN`, else the release binary Cargo built beside this target.
pub fn operator_binary() -> PathBuf {
    std::env::var_os("OPERATOR_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_course-operator")), PathBuf::from)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One operator process, run with the admin kubeconfig of KUBECONFIG (the bench measures the
/// controller, not RBAC; the e2e suite covers least privilege).
pub struct Operator {
    process: Process,
    pub identity: String,
    pub metrics_port: u16,
    pub log_path: PathBuf,
    pub started: Instant,
}

impl Operator {
    /// Starts `course-operator run` watching `namespace` (its Lease lives there too).
    pub fn spawn(namespace: &str, identity: &str, extra: &[&str], log_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let metrics_port = free_port()?;
        let log_path = log_dir.join(format!("operator-{namespace}-{identity}.log"));
        let log = std::fs::File::create(&log_path)?;
        let process = Command::new(operator_binary())
            .args(["run", "--namespace", namespace, "--lease-namespace", namespace, "--identity", identity])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("LOG_LEVEL", std::env::var("OPERATOR_LOG_LEVEL").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", operator_binary().display()))?;
        Ok(Self { process, identity: identity.to_owned(), metrics_port, log_path, started: Instant::now() })
    }

    /// Starts the operator and waits for /readyz (every cache synced).
    pub async fn start(namespace: &str, identity: &str, extra: &[&str], log_dir: &Path) -> anyhow::Result<Self> {
        let mut operator = Self::spawn(namespace, identity, extra, log_dir)?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        Ok(operator)
    }

    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let port = self.metrics_port;
        let result = poll(timeout, "operator /readyz", || async move {
            http_get(port, "/readyz").await.filter(|(code, _)| *code == 200).map(|_| ())
        })
        .await;
        if result.is_err() && !self.is_running() {
            bail!("the operator exited; log {}:\n{}", self.log_path.display(), self.log_tail(30));
        }
        result
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// /metrics as (series → value).
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let (_, body) = http_get(self.metrics_port, "/metrics").await.ok_or_else(|| anyhow!("no /metrics answer"))?;
        Ok(Metrics::parse(&body))
    }

    /// Whether /readyz answers 200 now (every cache synced, the Lease reached).
    pub async fn is_ready(&self) -> bool {
        http_get(self.metrics_port, "/readyz").await.is_some_and(|(code, _)| code == 200)
    }

    pub async fn is_leader(&self) -> bool {
        self.metrics().await.is_ok_and(|m| m.sum("course_operator_leader", "") >= 1.0)
    }

    /// A field of /proc/<pid>/status in KiB (VmHWM: peak resident set; VmRSS: now).
    pub fn proc_status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(self.pid(), field)
    }

    /// SIGKILL: no clean-up, the Lease is not released.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.process.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log, without terminal colour codes.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = strip_ansi(&self.log());
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `text` without ANSI escape sequences.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A field of /proc/<pid>/status in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// GET on 127.0.0.1:`port`: (status code, body).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.ok().flatten()
}

/// A scrape of the Prometheus text format: series (name plus labels, as printed) → value.
#[derive(Clone, Debug, Default)]
pub struct Metrics(pub BTreeMap<String, f64>);

/// Kubernetes verbs the operator's request counter distinguishes.
pub const VERBS: [&str; 7] = ["Get", "Watch", "Create", "Update", "Patch", "Delete", "Other"];
/// Of them, the writes.
pub const WRITE_VERBS: [&str; 4] = ["Create", "Update", "Patch", "Delete"];

impl Metrics {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// Sum over the series of `family` whose labels contain `filter`.
    pub fn sum(&self, family: &str, filter: &str) -> f64 {
        let sum: f64 = self
            .0
            .iter()
            .filter(|(s, _)| s.split('{').next() == Some(family) && s.contains(filter))
            .map(|(_, v)| v)
            .sum();
        sum + 0.0 // an empty f64 sum is -0.0
    }

    pub fn requests(&self, verb: &str) -> f64 {
        self.sum("course_operator_api_requests_total", &format!("verb=\"{verb}\""))
    }

    pub fn writes(&self) -> f64 {
        WRITE_VERBS.iter().map(|v| self.requests(v)).sum()
    }

    pub fn reconciles(&self, result: &str) -> f64 {
        self.sum("course_operator_reconciles_total", &format!("result=\"{result}\""))
    }

    /// Buckets (upper bound → cumulative count) of the reconcile duration histogram, all results.
    pub fn duration_buckets(&self) -> Vec<(f64, f64)> {
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (series, value) in &self.0 {
            if !series.starts_with("course_operator_reconcile_duration_seconds_bucket") {
                continue;
            }
            let Some(le) = label(series, "le") else { continue };
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
            let entry = buckets.entry(bound.to_bits()).or_insert((bound, 0.0));
            entry.1 += value;
        }
        let mut sorted: Vec<(f64, f64)> = buckets.into_values().collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        sorted
    }
}

/// Value of label `key` in a series like `name{a="x",le="0.5"}`.
fn label<'a>(series: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("{key}=\"");
    let start = series.find(&pattern)? + pattern.len();
    let rest = &series[start..];
    Some(&rest[..rest.find('"')?])
}

/// Histogram difference `after - before`, bucket by bucket.
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(bound, count)| {
            let earlier = before.iter().find(|(b, _)| b == bound).map_or(0.0, |(_, c)| *c);
            (*bound, count - earlier)
        })
        .collect()
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
// Rendered children, applied like the operator applies them

/// Stamps a child with the hash annotation the operator puts on every child it applies (the
/// same computation as `controller::children::fingerprint`, which is private), so a raw writer
/// sends byte-for-byte what the operator sends.
pub fn fingerprint(child: &mut Child) {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(&*child).unwrap_or_default();
    let hash: String = Sha256::digest(&json).iter().take(8).map(|b| format!("{b:02x}")).collect();
    child.meta_mut().annotations.get_or_insert_default().insert(labels::APPLIED_HASH.to_owned(), hash);
}

/// Server-side applies one rendered child with `params` (the operator's field manager, or a
/// dry run).
pub async fn apply_child(
    client: &Client,
    namespace: &str,
    child: &Child,
    params: &PatchParams,
) -> Result<(), kube::Error> {
    async fn one<K>(client: &Client, namespace: &str, object: &K, params: &PatchParams) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + serde::Serialize
            + DeserializeOwned,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        api.patch(&object.name_any(), params, &Patch::Apply(object)).await.map(|_| ())
    }
    match child {
        Child::ReplicaSet(o) => one(client, namespace, o.as_ref(), params).await,
        Child::Service(o) => one(client, namespace, o.as_ref(), params).await,
        Child::PodDisruptionBudget(o) => one(client, namespace, o.as_ref(), params).await,
        Child::HorizontalPodAutoscaler(o) => one(client, namespace, o.as_ref(), params).await,
        Child::StatefulSet(o) => one(client, namespace, o.as_ref(), params).await,
        Child::ConfigMap(o) => one(client, namespace, o.as_ref(), params).await,
        Child::Secret(o) => one(client, namespace, o.as_ref(), params).await,
        Child::Job(o) => one(client, namespace, o.as_ref(), params).await,
        Child::CronJob(o) => one(client, namespace, o.as_ref(), params).await,
        Child::NetworkPolicy(o) => one(client, namespace, o.as_ref(), params).await,
        Child::PersistentVolumeClaim(o) => one(client, namespace, o.as_ref(), params).await,
    }
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
