//! Pure computation of `CourseService.status` from a plan and what the cluster shows.
//!
//! Conditions keep their `lastTransitionTime` unless their status flips, so an unchanged world
//! produces an identical status and the controller writes nothing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{CourseService, CourseServiceStatus, RolloutPhase, RolloutStatus, ZoneStatus};
use crate::conditions::{reasons, types};
use crate::labels::{self, Component};
use crate::names;
use crate::plan::Plan;
use crate::validate::InvalidSpec;
use crate::zones::{ZoneHealth, ZoneObserved};

/// Everything the status is computed from.
pub struct Inputs<'a> {
    pub cs: &'a CourseService,
    /// `Err` when the spec failed validation.
    pub plan: Result<&'a Plan, &'a InvalidSpec>,
    pub zones: &'a [ZoneHealth],
    /// Every application Deployment of this CourseService, by name (all revisions).
    pub deployments: &'a BTreeMap<String, ZoneObserved>,
    /// Time stamped on conditions that change now.
    pub now: Time,
}

/// The status to publish.
pub fn compute(input: &Inputs<'_>) -> CourseServiceStatus {
    let cs = input.cs;
    let previous = cs.status.clone().unwrap_or_default();
    let name = cs.metadata.name.as_deref().unwrap_or_default();
    let generation = cs.metadata.generation;
    let replicas: i32 = input.deployments.values().map(|d| d.replicas).sum();
    let ready_replicas: i32 = input.deployments.values().map(|d| d.ready).sum();

    let mut status = CourseServiceStatus {
        observed_generation: generation,
        replicas,
        ready_replicas,
        selector: Some(labels::to_selector_string(&labels::selector(name, Component::App))),
        ..previous.clone()
    };
    let condition = |type_: &str, ok: bool, reason: &str, message: String| Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: input.now.clone(),
    };

    let mut conditions = Vec::new();
    match input.plan {
        Err(invalid) => {
            // Bad input changes nothing else: the last known state stays as it was.
            conditions.push(condition(types::INVALID_SPEC, true, reasons::SPEC_INVALID, invalid.to_string()));
        }
        Ok(plan) => {
            conditions.push(condition(types::INVALID_SPEC, false, reasons::SPEC_VALID, "spec is valid".into()));
            let desired = cs.spec.replicas;
            let floor = (desired - cs.spec.disruption.max_unavailable).max(0);
            let current: BTreeMap<&str, ZoneObserved> = plan
                .split
                .iter()
                .map(|(zone, _)| {
                    let deployment = names::app_deployment(name, &plan.revision, zone);
                    (zone.name(), input.deployments.get(&deployment).copied().unwrap_or_default())
                })
                .collect();
            let current_ready: i32 = current.values().map(|o| o.ready).sum();
            status.zones = plan
                .split
                .iter()
                .zip(input.zones)
                .map(|((zone, share), health)| ZoneStatus {
                    name: zone.name().to_owned(),
                    desired: *share,
                    ready: current.get(zone.name()).map_or(0, |o| o.ready),
                    lost: !health.healthy,
                })
                .collect();

            let available = current_ready >= floor;
            conditions.push(condition(
                types::AVAILABLE,
                available,
                if available { reasons::MINIMUM_REPLICAS_AVAILABLE } else { reasons::MINIMUM_REPLICAS_UNAVAILABLE },
                format!(
                    "{current_ready} of {desired} pods of revision {} are Ready (at least {floor} needed)",
                    plan.revision
                ),
            ));

            let settled = plan.paced == plan.split
                && plan.split.iter().all(|(zone, share)| {
                    current.get(zone.name()).is_some_and(|o| o.replicas == *share && o.ready == *share)
                });
            let revision_prefix = format!("{name}-{}-", plan.revision);
            let rolling_out = input.deployments.keys().any(|d| !d.starts_with(&revision_prefix));
            let progressing = !settled || rolling_out;
            conditions.push(condition(
                types::PROGRESSING,
                progressing,
                if rolling_out {
                    reasons::ROLLOUT_IN_PROGRESS
                } else if progressing {
                    reasons::SCALING
                } else {
                    reasons::RECONCILED
                },
                if progressing {
                    format!("bringing revision {} to {desired} Ready pods", plan.revision)
                } else {
                    format!("revision {} runs {desired} Ready pods", plan.revision)
                },
            ));

            let lost: Vec<&str> = input.zones.iter().filter(|z| !z.healthy).map(|z| z.zone.name()).collect();
            conditions.push(if lost.is_empty() {
                condition(
                    types::DEGRADED,
                    false,
                    reasons::ALL_ZONES_HEALTHY,
                    "every zone has Ready, schedulable nodes".into(),
                )
            } else {
                condition(
                    types::DEGRADED,
                    true,
                    reasons::ZONE_LOST,
                    format!(
                        "zone(s) {} have no Ready, schedulable node; their pods run in the other zones",
                        lost.join(", ")
                    ),
                )
            });

            status.rollout = Some(RolloutStatus {
                strategy: cs.spec.strategy.type_,
                stable_revision: if rolling_out {
                    previous.rollout.as_ref().and_then(|r| r.stable_revision.clone())
                } else {
                    Some(plan.revision.clone())
                },
                new_revision: Some(plan.revision.clone()),
                step: 0,
                weight: if rolling_out { 0 } else { 100 },
                phase: if progressing { RolloutPhase::Progressing } else { RolloutPhase::Healthy },
                message: None,
                step_started_at: None,
                ..RolloutStatus::default()
            });
        }
    }
    status.conditions = merge_conditions(&previous.conditions, conditions);
    status
}

/// Replaces conditions by type, keeping `lastTransitionTime` of those whose status is unchanged
/// and keeping conditions this computation does not mention.
fn merge_conditions(previous: &[Condition], updates: Vec<Condition>) -> Vec<Condition> {
    let mut merged: Vec<Condition> =
        previous.iter().filter(|p| !updates.iter().any(|u| u.type_ == p.type_)).cloned().collect();
    for mut update in updates {
        if let Some(old) = previous.iter().find(|p| p.type_ == update.type_)
            && old.status == update.status
        {
            update.last_transition_time = old.last_transition_time.clone();
        }
        merged.push(update);
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

/// Conditions whose status differs between two lists (for Events on transitions).
pub fn transitions<'a>(before: &[Condition], after: &'a [Condition]) -> Vec<&'a Condition> {
    after
        .iter()
        .filter(|a| {
            before.iter().find(|b| b.type_ == a.type_).is_none_or(|b| b.status != a.status || b.reason != a.reason)
        })
        .collect()
}
