//! E2E tier: runs against the cluster in KUBECONFIG (the local control plane from
//! `make cluster`, or kind). Each test works in its own namespace.

#[path = "../support/audit.rs"]
mod audit;
#[path = "../support/cluster.rs"]
mod cluster;
#[path = "../support/endpoints.rs"]
mod endpoints;
#[path = "../support/fixtures.rs"]
mod fixtures;
#[path = "../support/harness.rs"]
mod harness;
#[path = "../support/metrics.rs"]
#[allow(dead_code)] // the benches read more of /metrics than the tests
mod metrics;
#[path = "../support/process.rs"]
mod process;

mod admission;
mod controller;
mod data;
mod real_nodes;
mod resilience;
mod rollouts;
mod traffic;
