//! The rollout state machine, driven through a simulated cluster.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use proptest::prelude::{Just, ProptestConfig, any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as _;

use super::*;
use crate::api::{BlueGreenStrategy, CanaryStrategy, Pause, RollingStrategy};

type Cluster = BTreeMap<String, BTreeMap<Zone, ZoneObserved>>;

fn zones() -> Vec<ZoneHealth> {
    ["zone-a", "zone-b", "zone-c"]
        .iter()
        .map(|z| ZoneHealth { zone: Zone::Named((*z).into()), healthy: true })
        .collect()
}

fn canary(steps: Vec<CanaryStep>) -> Strategy {
    Strategy {
        type_: StrategyType::Canary,
        canary: Some(CanaryStrategy { steps, analysis: None }),
        ..Strategy::default()
    }
}

fn weight(w: i32) -> CanaryStep {
    CanaryStep { set_weight: Some(w), pause: None }
}

fn pause(duration: Option<&str>) -> CanaryStep {
    CanaryStep { set_weight: None, pause: Some(Pause { duration: duration.map(str::to_owned) }) }
}

/// A cluster in which `revision` runs `total` Ready pods.
fn running(revision: &str, total: i32) -> Cluster {
    let split = zones::split(total, &zones(), "svc");
    BTreeMap::from([(
        revision.to_owned(),
        split.into_iter().map(|(z, n)| (z, ZoneObserved { replicas: n, ready: n })).collect(),
    )])
}

struct Sim {
    strategy: Strategy,
    total: i32,
    cluster: Cluster,
    status: RolloutStatus,
    now: Timestamp,
    decisions: Vec<Decision>,
    /// The analysis verdict the next reconcile sees.
    verdict: Option<analysis::Verdict>,
    /// Restarts of new pods the next reconcile sees.
    restarts: i32,
}

impl Sim {
    fn new(strategy: Strategy, total: i32, stable: &str) -> Self {
        let status = RolloutStatus {
            strategy: strategy.type_,
            stable_revision: Some(stable.into()),
            new_revision: Some(stable.into()),
            phase: RolloutPhase::Healthy,
            weight: 100,
            ..RolloutStatus::default()
        };
        Self {
            strategy,
            total,
            cluster: running(stable, total),
            status,
            now: Timestamp::UNIX_EPOCH,
            decisions: vec![],
            verdict: None,
            restarts: 0,
        }
    }

    /// One reconcile: decide, then the cluster takes the sizes (scale-down removes pods that
    /// are not Ready first).
    fn step(&mut self, new: &str, action: Option<UserAction>) -> Decision {
        let raw = action.map(|a| format!("{}@{}", a.as_str(), self.decisions.len()));
        let inputs = Inputs {
            strategy: &self.strategy,
            total: self.total,
            max_unavailable: 1,
            new_revision: new,
            previous: Some(&self.status),
            observed: &self.cluster,
            zones: &zones(),
            seed: "svc",
            now: self.now,
            action: raw.as_deref().zip(action),
            analysis: self.verdict.as_ref(),
            new_pod_restarts: self.restarts,
        };
        let decision = decide(&inputs);
        let mut next = Cluster::new();
        for (revision, split) in &decision.targets {
            let current = self.cluster.get(revision).cloned().unwrap_or_default();
            let zones: BTreeMap<Zone, ZoneObserved> = split
                .iter()
                .map(|(z, n)| {
                    let ready = current.get(z).map_or(0, |o| o.ready).min(*n);
                    (z.clone(), ZoneObserved { replicas: *n, ready })
                })
                .collect();
            next.insert(revision.clone(), zones);
        }
        self.cluster = next;
        self.status = decision.status.clone();
        self.decisions.push(decision.clone());
        decision
    }

    /// Every pod becomes Ready and `seconds` pass.
    fn settle(&mut self, seconds: i64) {
        for zones in self.cluster.values_mut() {
            for o in zones.values_mut() {
                o.ready = o.replicas;
            }
        }
        self.now = self.now.checked_add(SignedDuration::from_secs(seconds)).expect("time");
    }

    fn size(&self, revision: &str) -> i32 {
        counts(&self.cluster, revision).0
    }
}

#[test]
fn first_revision_is_stable_at_once() {
    let strategy = Strategy::default();
    let observed = Cluster::new();
    let decision = decide(&Inputs {
        strategy: &strategy,
        total: 6,
        max_unavailable: 1,
        new_revision: "r1",
        previous: None,
        observed: &observed,
        zones: &zones(),
        seed: "svc",
        now: Timestamp::UNIX_EPOCH,
        action: None,
        analysis: None,
        new_pod_restarts: 0,
    });
    assert_eq!(decision.status.stable_revision.as_deref(), Some("r1"));
    assert_eq!(decision.targets.len(), 1);
    assert_eq!(decision.targets["r1"].iter().map(|(_, n)| n).sum::<i32>(), 6);
}

#[test]
fn canary_walks_its_steps_and_waits_for_promote() {
    let mut sim = Sim::new(canary(vec![weight(20), pause(Some("30s")), weight(50), pause(None)]), 10, "r1");
    sim.step("r2", None);
    assert_eq!(sim.size("r2"), 2, "20% of 10");
    assert_eq!(sim.status.weight, 20);
    sim.settle(1);
    let d = sim.step("r2", None);
    assert_eq!(sim.status.step, 1, "weight reached, now pausing");
    assert!(d.requeue_after.is_some_and(|r| r <= Duration::from_secs(31)), "requeue at the pause deadline: {d:?}");
    sim.settle(31);
    sim.step("r2", None);
    assert_eq!(sim.size("r2"), 5);
    sim.settle(1);
    sim.step("r2", None);
    assert_eq!(sim.status.phase, RolloutPhase::Paused, "{:?}", sim.status);
    sim.settle(600);
    sim.step("r2", None);
    assert_eq!(sim.status.phase, RolloutPhase::Paused, "an empty pause waits forever");
    sim.step("r2", Some(UserAction::Promote));
    for _ in 0..10 {
        sim.settle(1);
        sim.step("r2", None);
    }
    assert_eq!(sim.status.phase, RolloutPhase::Healthy);
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r2"));
    assert_eq!(sim.cluster.keys().collect::<Vec<_>>(), vec!["r2"], "a finished rollout leaves one revision");
    assert_eq!(sim.size("r2"), 10);
}

#[test]
fn canary_aborts_when_new_pods_miss_the_deadline_and_returns_to_stable() {
    let mut sim = Sim::new(canary(vec![weight(50)]), 6, "r1");
    sim.step("r2", None);
    // The new pods never become Ready (a broken image): only time passes.
    sim.now = sim.now.checked_add(SignedDuration::from_secs(601)).expect("time");
    let d = sim.step("r2", None);
    assert!(d.aborted_now);
    assert_eq!(sim.status.phase, RolloutPhase::Aborted);
    for _ in 0..5 {
        sim.settle(1);
        sim.step("r2", None);
    }
    assert_eq!(sim.cluster.keys().collect::<Vec<_>>(), vec!["r1"]);
    assert_eq!(sim.size("r1"), 6);
    assert_eq!(sim.status.phase, RolloutPhase::Aborted, "stays aborted until the spec changes or a retry");
}

#[test]
fn failing_analysis_beyond_its_limit_aborts_the_canary() {
    let mut strategy = canary(vec![weight(50), pause(None)]);
    if let Some(c) = strategy.canary.as_mut() {
        c.analysis = Some(crate::api::Analysis {
            url: "http://metrics".into(),
            json_pointer: "/v".into(),
            min: None,
            max: Some(0.05),
            interval_seconds: 10,
            failure_limit: 1,
        });
    }
    let mut sim = Sim::new(strategy.clone(), 4, "r1");
    sim.step("r2", None);
    assert!(analysis_due(&strategy, Some(&sim.status), "r2", sim.now).is_some(), "never checked: due at once");
    sim.verdict = Some(analysis::Verdict { passed: false, message: "analysis failed: 0.2 (wanted <= 0.05)".into() });
    sim.step("r2", None);
    assert_eq!(sim.status.phase, RolloutPhase::Progressing, "one failure is within the limit");
    assert!(analysis_due(&strategy, Some(&sim.status), "r2", sim.now).is_none(), "checked just now");
    sim.settle(11);
    sim.step("r2", None);
    assert_eq!(sim.status.phase, RolloutPhase::Aborted);
    assert!(sim.status.message.as_deref().is_some_and(|m| m.contains("0.2")), "{:?}", sim.status.message);
}

#[test]
fn crash_looping_new_pods_abort_a_canary() {
    let mut sim = Sim::new(canary(vec![weight(50), pause(None)]), 4, "r1");
    sim.step("r2", None);
    sim.settle(1);
    sim.restarts = 3;
    sim.step("r2", None);
    assert_ne!(sim.status.phase, RolloutPhase::Aborted, "3 restarts are allowed by default");
    sim.restarts = 4;
    let d = sim.step("r2", None);
    assert!(d.aborted_now);
    assert!(sim.status.message.as_deref().is_some_and(|m| m.contains("restarted 4 times")), "{:?}", sim.status.message);
}

#[test]
fn retry_restarts_an_aborted_rollout_from_its_first_step() {
    let mut sim = Sim::new(canary(vec![weight(50)]), 4, "r1");
    sim.step("r2", Some(UserAction::Abort));
    assert_eq!(sim.status.phase, RolloutPhase::Aborted);
    sim.settle(1);
    sim.step("r2", Some(UserAction::Retry));
    assert_eq!(sim.status.phase, RolloutPhase::Progressing);
    assert_eq!(sim.size("r2"), 2);
}

#[test]
fn blue_green_switches_traffic_only_once_the_new_revision_is_ready() {
    let strategy = Strategy {
        type_: StrategyType::BlueGreen,
        blue_green: Some(BlueGreenStrategy {
            preview_service: true,
            auto_promotion_seconds: None,
            scale_down_delay_seconds: 30,
        }),
        ..Strategy::default()
    };
    let mut sim = Sim::new(strategy, 4, "r1");
    let d = sim.step("r2", None);
    assert_eq!(d.service_revision.as_deref(), Some("r1"));
    assert_eq!(d.preview_revision.as_deref(), Some("r2"));
    assert_eq!(sim.size("r2"), 4, "pre-sized at the current replica count");
    let d = sim.step("r2", Some(UserAction::Promote));
    assert_eq!(d.service_revision.as_deref(), Some("r1"), "no switch to pods that are not Ready");
    sim.settle(1);
    sim.step("r2", None);
    assert_eq!(sim.status.phase, RolloutPhase::Paused);
    let d = sim.step("r2", Some(UserAction::Promote));
    assert_eq!(d.service_revision.as_deref(), Some("r2"));
    assert_eq!(sim.size("r1"), 4, "old revision kept for the scale-down delay");
    sim.settle(31);
    let d = sim.step("r2", None);
    assert_eq!(d.status.phase, RolloutPhase::Healthy);
    assert_eq!(sim.cluster.keys().collect::<Vec<_>>(), vec!["r2"]);
}

#[test]
fn zone_by_zone_updates_one_zone_at_a_time_in_order() {
    let strategy = Strategy {
        type_: StrategyType::Rolling,
        rolling: Some(RollingStrategy { zone_by_zone: true, ..RollingStrategy::default() }),
        ..Strategy::default()
    };
    let mut sim = Sim::new(strategy, 6, "r1");
    let mut order = Vec::new();
    for _ in 0..30 {
        sim.step("r2", None);
        let touched: Vec<String> = sim.cluster.get("r2").map_or(vec![], |zones| {
            zones.iter().filter(|(_, o)| o.replicas > 0).map(|(z, _)| z.name().to_owned()).collect()
        });
        let updating: Vec<&String> = touched.iter().filter(|z| !order.contains(*z)).collect();
        assert!(updating.len() <= 1, "two zones updating at once: {touched:?}");
        if let Some(zone) = updating.first() {
            order.push((*zone).clone());
        }
        sim.settle(1);
        if sim.status.phase == RolloutPhase::Healthy {
            break;
        }
    }
    assert_eq!(order, vec!["zone-a", "zone-b", "zone-c"]);
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r2"));
}

#[test]
fn zone_by_zone_stops_at_a_failing_zone() {
    let strategy = Strategy {
        type_: StrategyType::Rolling,
        progress_deadline_seconds: 60,
        rolling: Some(RollingStrategy { zone_by_zone: true, ..RollingStrategy::default() }),
        ..Strategy::default()
    };
    let mut sim = Sim::new(strategy, 6, "r1");
    sim.step("r2", None);
    sim.now = sim.now.checked_add(SignedDuration::from_secs(61)).expect("time");
    sim.step("r2", None);
    assert_eq!(sim.status.phase, RolloutPhase::Paused);
    assert!(sim.status.message.as_deref().is_some_and(|m| m.contains("zone-a")), "{:?}", sim.status.message);
    let zone_b = Zone::Named("zone-b".into());
    assert_eq!(sim.cluster["r2"].get(&zone_b).map_or(0, |o| o.replicas), 0, "zone-b untouched");
}

fn any_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(canary(vec![weight(20), pause(Some("10s")), weight(50), weight(80)])),
        Just(Strategy {
            type_: StrategyType::BlueGreen,
            blue_green: Some(BlueGreenStrategy { auto_promotion_seconds: Some(5), ..BlueGreenStrategy::default() }),
            ..Strategy::default()
        }),
        (any::<bool>()).prop_map(|zone_by_zone| Strategy {
            type_: StrategyType::Rolling,
            rolling: Some(RollingStrategy { zone_by_zone, ..RollingStrategy::default() }),
            ..Strategy::default()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Pods become Ready at random; at no reconcile does the Ready count drop below
    /// total - maxUnavailable (from a healthy start); weights only go up unless aborted; an
    /// abort always ends on the stable revision alone.
    #[test]
    fn rollouts_keep_capacity_and_end_in_one_revision(
        strategy in any_strategy(),
        total in 1i32..12,
        readiness in prop::collection::vec(any::<bool>(), 80),
        abort_at in prop::option::of(0usize..40),
    ) {
        let mut sim = Sim::new(strategy, total, "r1");
        let floor = total - 1;
        let mut last_weight = 0;
        for (i, becomes_ready) in readiness.iter().enumerate() {
            let action = (abort_at == Some(i)).then_some(UserAction::Abort);
            let action = action.or_else(|| (i % 7 == 6).then_some(UserAction::Promote));
            sim.step("r2", action);
            let ready: i32 = sim.cluster.values().flat_map(|z| z.values()).map(|o| o.ready).sum();
            prop_assert!(ready >= floor, "ready {} < {} at reconcile {}: {:?}", ready, floor, i, sim.status);
            if sim.status.phase == RolloutPhase::Aborted {
                last_weight = 0;
            } else if sim.status.strategy == StrategyType::Canary && sim.status.new_revision.as_deref() == Some("r2") && sim.status.stable_revision.as_deref() == Some("r1") {
                prop_assert!(sim.status.weight >= last_weight, "weight went down {} -> {}", last_weight, sim.status.weight);
                last_weight = sim.status.weight;
            }
            if *becomes_ready { sim.settle(6) } else { sim.now = sim.now.checked_add(SignedDuration::from_secs(1)).expect("time") }
        }
        for _ in 0..40 {
            sim.settle(31);
            sim.step("r2", Some(UserAction::PromoteFull).filter(|_| sim.status.phase != RolloutPhase::Aborted));
        }
        let revisions: Vec<&String> = sim.cluster.keys().collect();
        prop_assert_eq!(revisions.len(), 1, "revisions left: {:?} ({:?})", revisions, sim.status);
        if sim.status.phase == RolloutPhase::Aborted {
            prop_assert_eq!(revisions[0].as_str(), "r1", "abort must end on stable");
        } else {
            prop_assert_eq!(revisions[0].as_str(), "r2");
            prop_assert_eq!(sim.status.phase, RolloutPhase::Healthy);
        }
        prop_assert_eq!(sim.size(revisions[0]), total);
    }
}
