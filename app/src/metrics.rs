//! Prometheus metrics of the app (`GET /metrics`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::breaker::State;
use crate::catalog::CacheUse;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Result {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Dependency {
    dependency: &'static str,
}

type HistogramFamily = Family<Op, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Request, Counter>,
    cache_reads: Family<Result, Counter>,
    cache_errors: Family<Op, Counter>,
    breakers: Family<Dependency, Gauge>,
    database: HistogramFamily,
}

fn database_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl Metrics {
    pub fn new(version: &str, pod: &str) -> Self {
        let mut registry = Registry::with_prefix("course_app");
        let requests = Family::<Request, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route, method and status", requests.clone());
        let cache_reads = Family::<Result, Counter>::default();
        registry.register(
            "cache_reads",
            "Reads by where they were served from: hit, miss (then the database) or bypass (cache skipped)",
            cache_reads.clone(),
        );
        for result in ["hit", "miss", "bypass"] {
            cache_reads.get_or_create(&Result { result }).get();
        }
        let cache_errors = Family::<Op, Counter>::default();
        registry.register(
            "cache_errors",
            "Failed or timed-out cache calls, by operation (get, set, del)",
            cache_errors.clone(),
        );
        for op in ["get", "set", "del"] {
            cache_errors.get_or_create(&Op { op }).get();
        }
        let breakers = Family::<Dependency, Gauge>::default();
        registry.register("breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", breakers.clone());
        let database: HistogramFamily = Family::new_with_constructor(database_buckets);
        registry.register(
            "database_call_seconds",
            "Latency of each database call attempt, by operation",
            database.clone(),
        );
        let info = Info::new(vec![("version", version.to_owned()), ("pod", pod.to_owned())]);
        registry.register("build", "The app's version and pod", info);
        Metrics { registry, requests, cache_reads, cache_errors, breakers, database }
    }

    pub fn request(&self, route: &str, method: &str, status: u16) {
        self.requests.get_or_create(&Request { route: route.to_owned(), method: method.to_owned(), status }).inc();
    }

    pub fn cache_read(&self, used: CacheUse) {
        self.cache_reads.get_or_create(&Result { result: used.as_str() }).inc();
    }

    pub fn cache_error(&self, op: &'static str) {
        self.cache_errors.get_or_create(&Op { op }).inc();
    }

    pub fn set_breaker(&self, dependency: &'static str, state: State) {
        let value = match state {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        };
        self.breakers.get_or_create(&Dependency { dependency }).set(value);
    }

    pub fn observe_db(&self, op: &'static str, took: Duration) {
        self.database.get_or_create(&Op { op }).observe(took.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
