//! Prometheus metrics of the controller: reconciles by result, API requests by verb.
//! Labels are bounded sets; object names never become labels.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Success,
    InvalidSpec,
    Error,
    /// Not the leader: nothing was done.
    Skipped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    result: Outcome,
}

/// Kubernetes verb of an API request, derived from its HTTP method and query.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Verb {
    Get,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    Other,
}

impl Verb {
    /// Whether the verb changes the cluster.
    pub fn is_write(self) -> bool {
        matches!(self, Self::Create | Self::Update | Self::Patch | Self::Delete)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabel {
    verb: Verb,
}

/// Which step of the leader election a failed Lease request belonged to.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ElectionPhase {
    /// Reading or creating the Lease before taking part.
    Join,
    /// Acquiring, renewing or re-reading the Lease.
    Renew,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: ElectionPhase,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabel, Counter>,
    reconcile_duration: Family<OutcomeLabel, Histogram>,
    reconcile_wait: Histogram,
    api_requests: Family<VerbLabel, Counter>,
    watch_errors: Family<ResourceLabel, Counter>,
    triggers: Family<ResourceLabel, Counter>,
    writes_fenced: Counter,
    leader: Gauge,
    leader_election_errors: Family<PhaseLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("course_operator");
        let reconciles = Family::<OutcomeLabel, Counter>::default();
        let reconcile_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let reconcile_wait = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let api_requests = Family::<VerbLabel, Counter>::default();
        let watch_errors = Family::<ResourceLabel, Counter>::default();
        let triggers = Family::<ResourceLabel, Counter>::default();
        let writes_fenced = Counter::default();
        let leader = Gauge::default();
        let leader_election_errors = Family::<PhaseLabel, Counter>::default();
        // Both series exist from the start at 0, so an alert on their rate sees the first failure.
        for phase in [ElectionPhase::Join, ElectionPhase::Renew] {
            drop(leader_election_errors.get_or_create(&PhaseLabel { phase }));
        }
        registry.register("reconciles", "CourseService reconciles by result", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of CourseService reconciles by result",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_wait_seconds",
            "Time a due CourseService waited for a reconcile turn (all --concurrency turns busy), first come first served",
            reconcile_wait.clone(),
        );
        registry.register(
            "api_requests",
            "Kubernetes API requests made by the controller (leader-election Lease traffic excluded), by verb",
            api_requests.clone(),
        );
        registry.register(
            "watch_errors",
            "Failed list or watch requests of a cache, by resource (each cache retries on its own back-off)",
            watch_errors.clone(),
        );
        registry.register(
            "triggers",
            "Changes of watched objects that queued a reconcile, by resource (changes of nothing a reconcile reads queue none)",
            triggers.clone(),
        );
        registry.register(
            "writes_fenced",
            "Write requests held back because the leader Lease was not confirmed this replica's",
            writes_fenced.clone(),
        );
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        registry.register(
            "leader_election_errors",
            "Failed leader Lease requests by phase (each is retried with back-off; the process stays up)",
            leader_election_errors.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            reconcile_wait,
            api_requests,
            watch_errors,
            triggers,
            writes_fenced,
            leader,
            leader_election_errors,
        }
    }
}

impl Metrics {
    /// Records one reconcile.
    pub fn reconciled(&self, result: Outcome, took: Duration) {
        let label = OutcomeLabel { result };
        self.reconciles.get_or_create(&label).inc();
        self.reconcile_duration.get_or_create(&label).observe(took.as_secs_f64());
    }

    /// Records how long a due reconcile waited for its turn.
    pub fn waited_for_turn(&self, took: Duration) {
        self.reconcile_wait.observe(took.as_secs_f64());
    }

    /// Records one API request.
    pub fn api_request(&self, verb: Verb) {
        self.api_requests.get_or_create(&VerbLabel { verb }).inc();
    }

    /// Records one failed list or watch request of the cache of `resource`.
    pub fn watch_error(&self, resource: &str) {
        self.watch_errors.get_or_create(&ResourceLabel { resource: resource.to_owned() }).inc();
    }

    /// The counter of changes of a watched `resource` that queued a reconcile.
    pub fn triggers(&self, resource: &str) -> Counter {
        self.triggers.get_or_create(&ResourceLabel { resource: resource.to_owned() }).clone()
    }

    /// Records one write request the fence held back.
    pub fn write_fenced(&self) {
        self.writes_fenced.inc();
    }

    /// Records one failed leader Lease request.
    pub fn leader_election_error(&self, phase: ElectionPhase) {
        self.leader_election_errors.get_or_create(&PhaseLabel { phase }).inc();
    }

    /// Publishes leadership.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The verb of a request as the apiserver would log it.
pub fn verb_of<B>(request: &Request<B>) -> Verb {
    let watch = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match *request.method() {
        Method::GET if watch => Verb::Watch,
        Method::GET => Verb::Get,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        _ => Verb::Other,
    }
}

/// A tower layer for the kube client that counts every request by verb.
pub fn counting_layer<B>(
    metrics: Arc<Metrics>,
) -> tower::util::MapRequestLayer<impl Fn(Request<B>) -> Request<B> + Clone> {
    tower::util::MapRequestLayer::new(move |request: Request<B>| {
        metrics.api_request(verb_of(&request));
        request
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_follow_method_and_watch_parameter() {
        let req = |method: Method, uri: &str| Request::builder().method(method).uri(uri).body(()).expect("request");
        assert_eq!(verb_of(&req(Method::GET, "/api/v1/nodes?watch=true&resourceVersion=1")), Verb::Watch);
        assert_eq!(verb_of(&req(Method::GET, "/api/v1/nodes")), Verb::Get);
        assert_eq!(verb_of(&req(Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/b")), Verb::Patch);
        assert!(Verb::Delete.is_write() && !Verb::Watch.is_write());
    }

    #[test]
    fn exposition_carries_reconcile_and_request_counters() {
        let metrics = Metrics::default();
        metrics.reconciled(Outcome::Success, Duration::from_millis(3));
        metrics.api_request(Verb::Patch);
        let text = metrics.encode();
        assert!(text.contains("course_operator_reconciles_total{result=\"Success\"} 1"), "{text}");
        assert!(text.contains("course_operator_api_requests_total{verb=\"Patch\"} 1"), "{text}");
    }
}
