//! PodDisruptionBudgets.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Context;
use crate::labels::{self, Component};
use crate::names;

/// Budget over every application pod, all zones and revisions together: zone moves and node
/// drains may take down at most `spec.disruption.maxUnavailable` of them at once.
pub fn app(ctx: &Context<'_>) -> PodDisruptionBudget {
    budget(ctx, names::app(ctx.name), Component::App, ctx.cs.spec.disruption.max_unavailable)
}

/// A budget selecting every pod of `component`.
pub fn budget(ctx: &Context<'_>, name: String, component: Component, max_unavailable: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ctx.meta(name, component, Default::default()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(ctx.name, component)),
                match_expressions: None,
            }),
            // Evict crash-looping pods even when the budget is exhausted, or they block drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            min_available: None,
        }),
        status: None,
    }
}
