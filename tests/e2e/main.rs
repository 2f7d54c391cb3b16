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

mod admission;
mod controller;
mod data;
mod real_nodes;
mod resilience;
mod rollouts;
mod traffic;
