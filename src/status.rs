//! Pure computation of `CourseService.status` from a plan and what the cluster shows.
//!
//! Conditions keep their `lastTransitionTime` unless their status flips, so an unchanged world
//! produces an identical status and the controller writes nothing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{ComponentStatus, CourseService, CourseServiceStatus, DatabaseStatus, RolloutPhase, ZoneStatus};
use crate::conditions::{reasons, types};
use crate::labels::{self, Component};
use crate::names;
use crate::observe::Observed;
use crate::plan::Plan;
use crate::validate::InvalidSpec;
use crate::zones::ZoneHealth;

/// Everything the status is computed from.
pub struct Inputs<'a> {
    pub cs: &'a CourseService,
    /// `Err` when the spec failed validation.
    pub plan: Result<&'a Plan, &'a InvalidSpec>,
    pub zones: &'a [ZoneHealth],
    pub observed: &'a Observed,
    /// Time stamped on conditions that change now.
    pub now: Time,
}

/// The status to publish.
pub fn compute(input: &Inputs<'_>) -> CourseServiceStatus {
    let cs = input.cs;
    let previous = cs.status.clone().unwrap_or_default();
    let name = cs.metadata.name.as_deref().unwrap_or_default();
    let generation = cs.metadata.generation;
    let workloads = &input.observed.workloads;

    let mut status = CourseServiceStatus {
        observed_generation: generation,
        replicas: workloads.values().map(|d| d.replicas).sum(),
        ready_replicas: workloads.values().map(|d| d.ready).sum(),
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
            let rollout = &plan.rollout;
            let desired = cs.spec.replicas;
            let floor = (desired - cs.spec.disruption.max_unavailable).max(0);

            // Pods behind the main Service: the pinned revision (blue-green) or every revision.
            let serving: i32 = workloads
                .values()
                .filter(|d| rollout.service_revision.as_ref().is_none_or(|r| *r == d.revision))
                .map(|d| d.ready)
                .sum();

            let mut per_zone: BTreeMap<String, (i32, i32)> = BTreeMap::new();
            for sizes in rollout.targets.values() {
                for (zone, n) in sizes {
                    per_zone.entry(zone.slug()).or_default().0 += n;
                }
            }
            for d in workloads.values() {
                per_zone.entry(d.zone.clone()).or_default().1 += d.ready;
            }
            status.zones = input
                .zones
                .iter()
                .map(|health| {
                    let (desired, ready) = per_zone.get(&health.zone.slug()).copied().unwrap_or_default();
                    let name = health.zone.name();
                    ZoneStatus {
                        name: name.to_owned(),
                        desired,
                        ready,
                        lost: !health.healthy,
                        unschedulable_since: input.observed.unschedulable.since.get(name).map(ToString::to_string),
                    }
                })
                .collect();

            let available = serving >= floor;
            // Not yet Available since it was created is `Starting`, not an outage: alerts can
            // tell the two apart, and the first availability is no news worth an Event.
            let never_available = previous
                .conditions
                .iter()
                .find(|c| c.type_ == types::AVAILABLE)
                .is_none_or(|c| c.reason == reasons::STARTING);
            conditions.push(condition(
                types::AVAILABLE,
                available,
                match (available, never_available) {
                    (true, _) => reasons::MINIMUM_REPLICAS_AVAILABLE,
                    (false, true) => reasons::STARTING,
                    (false, false) => reasons::MINIMUM_REPLICAS_UNAVAILABLE,
                },
                format!("{serving} of {desired} pods serve behind the Service (at least {floor} needed)"),
            ));

            let settled = rollout.status.phase == RolloutPhase::Healthy
                && workloads.values().all(|d| d.replicas == d.ready)
                && per_zone.values().all(|(want, ready)| want == ready);
            let rolling_out = rollout.status.in_progress();
            conditions.push(condition(
                types::PROGRESSING,
                !settled,
                if rolling_out {
                    reasons::ROLLOUT_IN_PROGRESS
                } else if !settled {
                    reasons::SCALING
                } else {
                    reasons::RECONCILED
                },
                rollout
                    .status
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("revision {} runs {desired} pods", plan.revision)),
            ));

            let lost: Vec<&str> = input.zones.iter().filter(|z| !z.healthy).map(|z| z.zone.name()).collect();
            conditions.push(if rollout.status.phase == RolloutPhase::Aborted {
                condition(
                    types::DEGRADED,
                    true,
                    reasons::ROLLOUT_ABORTED,
                    rollout.status.message.clone().unwrap_or_default(),
                )
            } else if !lost.is_empty() {
                let unschedulable = &input.observed.unschedulable.since;
                let (stuck, empty): (Vec<&str>, Vec<&str>) = lost.iter().partition(|z| unschedulable.contains_key(**z));
                let mut why = Vec::new();
                if !empty.is_empty() {
                    why.push(format!("zone(s) {} have no Ready, schedulable node", empty.join(", ")));
                }
                if !stuck.is_empty() {
                    why.push(format!("pods stayed unschedulable in zone(s) {}", stuck.join(", ")));
                }
                condition(
                    types::DEGRADED,
                    true,
                    reasons::ZONE_LOST,
                    format!("{}; their pods run in the other zones", why.join("; ")),
                )
            } else {
                condition(
                    types::DEGRADED,
                    false,
                    reasons::ALL_ZONES_HEALTHY,
                    "every zone has Ready, schedulable nodes".into(),
                )
            });
            status.rollout = Some(rollout.status.clone());
            status.cache = cs.spec.cache.as_ref().filter(|c| c.enabled).map(|c| {
                let set = input.observed.statefulsets.get(&names::cache(name)).copied().unwrap_or_default();
                ComponentStatus { desired: c.replicas, ready: set.ready }
            });
            status.database = cs.spec.database.as_ref().filter(|d| d.enabled).map(|d| {
                if let Some(external) = &d.external {
                    let secret = &external.uri_secret;
                    return DatabaseStatus {
                        external: Some(format!("{}/{}", secret.name, secret.key)),
                        ..DatabaseStatus::default()
                    };
                }
                let set = input.observed.statefulsets.get(&names::database(name)).copied().unwrap_or_default();
                DatabaseStatus {
                    members: d.members,
                    ready: set.ready,
                    initialized: plan
                        .database
                        .as_ref()
                        .is_some_and(|d| input.observed.succeeded_jobs.contains(&d.init_job)),
                    external: None,
                }
            });
        }
    }
    status.conditions = merge_conditions(&previous.conditions, conditions);
    status
}

/// Whether `next` differs from `previous` only in how many pods (and cache and database
/// members) exist and are Ready: every condition keeps its status and reason, every zone its
/// share, the rollout its state. Such a change is progress, not news: the reconciler lets it
/// wait a moment for the next change, while a change of anything else is written at once.
pub fn progress_only(previous: &CourseServiceStatus, next: &CourseServiceStatus) -> bool {
    previous != next && without_counts(previous) == without_counts(next)
}

/// `status` with its pod counts, and the condition messages that quote them, blanked.
fn without_counts(status: &CourseServiceStatus) -> CourseServiceStatus {
    let mut blank = status.clone();
    blank.replicas = 0;
    blank.ready_replicas = 0;
    for zone in &mut blank.zones {
        zone.ready = 0;
    }
    if let Some(cache) = &mut blank.cache {
        cache.ready = 0;
    }
    if let Some(database) = &mut blank.database {
        database.ready = 0;
    }
    for condition in &mut blank.conditions {
        condition.message.clear();
    }
    blank
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

/// How a condition change is recorded as an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Normal,
    Warning,
}

/// The condition changes (status or reason) worth an Event: bad news as a Warning, good news
/// as Normal. Not worth one: a condition first appearing as good news; a new CourseService
/// `Starting` and then Available for the first time (its pods came up: the status shows it,
/// and the Event was one write in ten of a fleet coming up); and routine scaling,
/// `Progressing` moving between `Scaling` and `Reconciled`: the status shows it, a
/// HorizontalPodAutoscaler records its own rescales, and under steady scaling those two Events
/// per scale were a third of the operator's writes. Availability lost (a Warning) and regained
/// (Normal) are Events.
pub fn events<'a>(before: &[Condition], after: &'a [Condition]) -> Vec<(Notice, &'a Condition)> {
    let routine = |reason: &str| reason == reasons::SCALING || reason == reasons::RECONCILED;
    after
        .iter()
        .filter_map(|condition| {
            let previous = before.iter().find(|b| b.type_ == condition.type_);
            if previous.is_some_and(|p| p.status == condition.status && p.reason == condition.reason) {
                return None;
            }
            let bad = match condition.type_.as_str() {
                types::AVAILABLE => condition.status == "False",
                types::DEGRADED | types::INVALID_SPEC => condition.status == "True",
                _ => false,
            };
            if previous.is_none() && (!bad || condition.type_ == types::AVAILABLE) {
                return None;
            }
            if condition.type_ == types::AVAILABLE
                && (condition.reason == reasons::STARTING || previous.is_some_and(|p| p.reason == reasons::STARTING))
            {
                return None;
            }
            if condition.type_ == types::PROGRESSING
                && routine(&condition.reason)
                && previous.is_none_or(|p| routine(&p.reason))
            {
                return None;
            }
            Some((if bad { Notice::Warning } else { Notice::Normal }, condition))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn noticed(before: &[Condition], after: &[Condition]) -> Vec<(Notice, String)> {
        events(before, after).into_iter().map(|(notice, c)| (notice, c.reason.clone())).collect()
    }

    /// A CourseService of 3 replicas over three zones, one ReplicaSet per zone.
    struct ThreeZones {
        cs: CourseService,
        zones: Vec<crate::zones::ZoneHealth>,
        desired: crate::plan::Desired,
    }

    impl ThreeZones {
        fn new() -> Self {
            use crate::zones::{Zone, ZoneHealth};
            let cs: CourseService = crate::manifest::parse(
                "apiVersion: microcourses.io/v1alpha1\nkind: CourseService\n\
                 metadata: {name: catalog, namespace: shop, generation: 1}\nspec: {image: 'catalog:1', replicas: 3}",
            )
            .expect("manifest");
            let zones: Vec<ZoneHealth> = ["zone-a", "zone-b", "zone-c"]
                .map(|z| ZoneHealth { zone: Zone::Named(z.into()), healthy: true })
                .into();
            let desired = crate::plan::desired(&cs, &zones, &crate::observe::Observed::default(), &Default::default())
                .expect("plan");
            ThreeZones { cs, zones, desired }
        }

        /// The status of `cs` (whose own status is the previous one) with `ready` pods per zone
        /// of the first revision.
        fn status(&self, cs: &CourseService, ready: [i32; 3]) -> CourseServiceStatus {
            use crate::observe::{Observed, ObservedWorkload};
            use crate::render::Child;
            let replica_sets = self.desired.children.iter().filter_map(|child| match child {
                Child::ReplicaSet(rs) => Some(rs),
                _ => None,
            });
            let observed = Observed {
                workloads: replica_sets
                    .zip(ready)
                    .map(|(rs, ready)| {
                        let label = |key: &str| rs.metadata.labels.as_ref().and_then(|l| l.get(key)).cloned();
                        let workload = ObservedWorkload {
                            revision: label(crate::labels::REVISION).expect("revision"),
                            zone: label(crate::labels::ZONE).expect("zone"),
                            replicas: 1,
                            ready,
                            template: None,
                        };
                        (rs.metadata.name.clone().expect("name"), workload)
                    })
                    .collect(),
                ..Observed::default()
            };
            // planned again from what is observed, as a reconcile does: the rollout moves on
            let plan = crate::plan::desired(cs, &self.zones, &observed, &Default::default()).expect("plan").plan;
            let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
            compute(&Inputs { cs, plan: Ok(&plan), zones: &self.zones, observed: &observed, now })
        }
    }

    #[test]
    fn a_new_course_service_is_starting_until_first_available_and_only_then_can_lose_it() {
        let fixture = ThreeZones::new();
        let mut cs = fixture.cs.clone();
        let available = |status: &CourseServiceStatus| {
            let c = status.conditions.iter().find(|c| c.type_ == types::AVAILABLE).expect("Available");
            (c.status.clone(), c.reason.clone())
        };

        let first = fixture.status(&cs, [0, 0, 0]);
        assert_eq!(available(&first), ("False".into(), reasons::STARTING.into()));
        cs.status = Some(first.clone());
        assert_eq!(
            available(&fixture.status(&cs, [0, 0, 0])),
            ("False".into(), reasons::STARTING.into()),
            "still coming up"
        );
        let up = fixture.status(&cs, [1, 1, 1]);
        assert_eq!(available(&up), ("True".into(), reasons::MINIMUM_REPLICAS_AVAILABLE.into()));
        let first_available = events(&first.conditions, &up.conditions);
        assert!(first_available.iter().all(|(_, c)| c.type_ != types::AVAILABLE), "no Event: {first_available:?}");
        cs.status = Some(up.clone());
        let down = fixture.status(&cs, [0, 0, 0]);
        assert_eq!(available(&down), ("False".into(), reasons::MINIMUM_REPLICAS_UNAVAILABLE.into()), "an outage");
        let lost: Vec<_> = events(&up.conditions, &down.conditions).into_iter().map(|(n, c)| (n, &c.type_)).collect();
        assert!(lost.contains(&(Notice::Warning, &types::AVAILABLE.to_owned())), "{lost:?}");
    }

    #[test]
    fn pods_becoming_ready_zone_by_zone_are_progress_and_the_conditions_they_reach_are_news() {
        let fixture = ThreeZones::new();
        let mut cs = fixture.cs.clone();
        let starting = fixture.status(&cs, [0, 0, 0]);
        cs.status = Some(starting.clone());
        let one = fixture.status(&cs, [1, 0, 0]);
        assert!(progress_only(&starting, &one), "one zone Ready, still Starting: counts only");
        assert!(!progress_only(&starting, &starting), "no change at all");
        cs.status = Some(one.clone());
        let two = fixture.status(&cs, [1, 1, 0]);
        assert!(!progress_only(&one, &two), "Available (2 of 3, floor 2) is news");
        cs.status = Some(two.clone());
        let three = fixture.status(&cs, [1, 1, 1]);
        assert!(!progress_only(&two, &three), "settled (Progressing False) is news");
        cs.status = Some(three.clone());
        assert!(!progress_only(&three, &fixture.status(&cs, [1, 0, 1])), "a pod lost unsettles it: news");

        let mut moved = one.clone();
        moved.zones[0].desired = 2;
        assert!(!progress_only(&one, &moved), "a zone's share is not a count");
        let mut lost = one.clone();
        lost.zones[1].lost = true;
        assert!(!progress_only(&one, &lost), "a lost zone");
        let mut stepped = one.clone();
        stepped.rollout.get_or_insert_default().step += 1;
        assert!(!progress_only(&one, &stepped), "a rollout step");
        let with_cache =
            |ready| CourseServiceStatus { cache: Some(ComponentStatus { desired: 3, ready }), ..one.clone() };
        assert!(progress_only(&with_cache(1), &with_cache(2)), "cache members Ready: counts only");
        let with_database = |ready, initialized| CourseServiceStatus {
            database: Some(DatabaseStatus { members: 3, ready, initialized, external: None }),
            ..one.clone()
        };
        assert!(progress_only(&with_database(1, false), &with_database(3, false)), "database members Ready");
        assert!(!progress_only(&with_database(3, false), &with_database(3, true)), "the database initialized");
    }

    #[test]
    fn routine_scaling_records_no_event_and_a_rollout_or_bad_news_does() {
        let progressing = |status, reason| condition(types::PROGRESSING, status, reason);
        let settled = [progressing("False", reasons::RECONCILED)];
        let scaling = [progressing("True", reasons::SCALING)];
        let rolling = [progressing("True", reasons::ROLLOUT_IN_PROGRESS)];
        assert_eq!(noticed(&settled, &scaling), [], "a scale starting");
        assert_eq!(noticed(&scaling, &settled), [], "a scale done");
        assert_eq!(noticed(&[], &scaling), [], "a new CourseService's first status");
        assert_eq!(noticed(&settled, &rolling), [(Notice::Normal, reasons::ROLLOUT_IN_PROGRESS.to_owned())]);
        assert_eq!(noticed(&rolling, &settled), [(Notice::Normal, reasons::RECONCILED.to_owned())], "a rollout done");

        let available = |status, reason| condition(types::AVAILABLE, status, reason);
        let up = [available("True", reasons::MINIMUM_REPLICAS_AVAILABLE)];
        let down = [available("False", reasons::MINIMUM_REPLICAS_UNAVAILABLE)];
        let starting = [available("False", reasons::STARTING)];
        assert_eq!(noticed(&[], &starting), [], "a new CourseService's pods only starting");
        assert_eq!(noticed(&starting, &up), [], "its first availability");
        assert_eq!(noticed(&[], &down), [], "a first status not Available");
        assert_eq!(noticed(&up, &down), [(Notice::Warning, reasons::MINIMUM_REPLICAS_UNAVAILABLE.to_owned())]);
        assert_eq!(noticed(&down, &up), [(Notice::Normal, reasons::MINIMUM_REPLICAS_AVAILABLE.to_owned())]);
        assert_eq!(noticed(&up, &up), [], "no change");

        let degraded = [condition(types::DEGRADED, "True", reasons::ZONE_LOST)];
        assert_eq!(noticed(&[], &degraded), [(Notice::Warning, reasons::ZONE_LOST.to_owned())], "bad news at once");
    }
}
