//! The pure part of the `kubectl course` plugin: which actions make sense in which phase, and
//! the status view. The binary (src/bin/kubectl-course.rs) only reads and patches.

use std::fmt::Write as _;

use crate::api::{CourseService, RolloutPhase};
use crate::rollout::UserAction;

/// Why an action cannot be taken now.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether `action` makes sense for the CourseService as it is now.
pub fn check(cs: &CourseService, action: UserAction) -> Result<(), Refused> {
    let name = cs.metadata.name.as_deref().unwrap_or_default();
    let rollout = cs.status.as_ref().and_then(|s| s.rollout.as_ref());
    let Some(rollout) = rollout else {
        return Err(Refused(format!("{name} has no rollout status yet: is the operator running?")));
    };
    let in_progress = rollout.stable_revision != rollout.new_revision;
    let refuse = |why: String| Err(Refused(format!("cannot {} {name}: {why}", action.as_str())));
    let serving = rollout.stable_revision.as_deref().unwrap_or("?");
    match action {
        UserAction::Retry if rollout.phase != RolloutPhase::Aborted => {
            refuse("only an aborted rollout can be retried".into())
        }
        UserAction::Retry => Ok(()),
        _ if !in_progress => refuse(format!("no rollout in progress (revision {serving} serves alone)")),
        UserAction::Promote | UserAction::PromoteFull | UserAction::Pause if rollout.phase == RolloutPhase::Aborted => {
            refuse("the rollout was aborted; `kubectl course retry` starts it again".into())
        }
        UserAction::Abort if rollout.phase == RolloutPhase::Aborted => refuse("the rollout is already aborted".into()),
        UserAction::Pause if rollout.user_paused => refuse("the rollout is already paused".into()),
        UserAction::Resume if !rollout.user_paused => refuse("the rollout is not paused by a user".into()),
        _ => Ok(()),
    }
}

/// Annotation value for an action: `<action>@<nonce>`; a new nonce makes every request unique.
pub fn annotation_value(action: UserAction, nonce: u128) -> String {
    format!("{}@{nonce}", action.as_str())
}

fn bar(ready: i32, desired: i32, width: usize) -> String {
    let filled = if desired > 0 {
        usize::try_from(i64::from(ready.min(desired)) * width as i64 / i64::from(desired)).unwrap_or(0)
    } else {
        width
    };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled.min(width)))
}

/// The status view: strategy, phase, step and weight, per-zone ready bars, conditions.
pub fn render_status(cs: &CourseService) -> String {
    let mut out = String::new();
    let name = cs.metadata.name.as_deref().unwrap_or_default();
    let namespace = cs.metadata.namespace.as_deref().unwrap_or("default");
    let status = cs.status.clone().unwrap_or_default();
    let _ = writeln!(out, "CourseService {namespace}/{name}   image {}", cs.spec.image);
    let _ = writeln!(out, "replicas      {} desired, {} ready", cs.spec.replicas, status.ready_replicas);
    if let Some(r) = &status.rollout {
        let _ = writeln!(out, "strategy      {}", r.strategy);
        let paused = if r.user_paused { " (paused by user)" } else { "" };
        let _ = writeln!(out, "phase         {:?}{paused}", r.phase);
        let _ = writeln!(out, "step          {}   weight {}%", r.step, r.weight);
        let _ = writeln!(
            out,
            "revisions     stable {}   new {}",
            r.stable_revision.as_deref().unwrap_or("-"),
            r.new_revision.as_deref().unwrap_or("-")
        );
        if let Some(message) = &r.message {
            let _ = writeln!(out, "message       {message}");
        }
    }
    if !status.zones.is_empty() {
        let _ = writeln!(out, "zones");
        for z in &status.zones {
            let lost = if z.lost { "  LOST" } else { "" };
            let _ = writeln!(out, "  {:<14} {} {}/{}{lost}", z.name, bar(z.ready, z.desired, 20), z.ready, z.desired);
        }
    }
    if !status.conditions.is_empty() {
        let _ = writeln!(out, "conditions");
        for c in &status.conditions {
            let _ = writeln!(out, "  {:<12} {:<5} {:<28} {}", c.type_, c.status, c.reason, c.message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CourseServiceStatus, RolloutStatus, ZoneStatus};

    fn course(rollout: RolloutStatus) -> CourseService {
        let mut cs = crate::manifest::parse(
            "apiVersion: microcourses.io/v1alpha1\nkind: CourseService\nmetadata: {name: catalog, namespace: courses}\nspec: {image: 'catalog:2'}",
        )
        .expect("manifest");
        cs.status = Some(CourseServiceStatus {
            rollout: Some(rollout),
            zones: vec![ZoneStatus { name: "zone-a".into(), desired: 4, ready: 2, ..ZoneStatus::default() }],
            ..CourseServiceStatus::default()
        });
        cs
    }

    fn rollout(phase: RolloutPhase, stable: &str, new: &str) -> RolloutStatus {
        RolloutStatus {
            phase,
            stable_revision: Some(stable.into()),
            new_revision: Some(new.into()),
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn promote_needs_a_rollout_in_progress() {
        let healthy = course(rollout(RolloutPhase::Healthy, "r1", "r1"));
        let refused = check(&healthy, UserAction::Promote).expect_err("refused");
        assert!(refused.0.contains("no rollout in progress"), "{refused}");
        assert!(check(&course(rollout(RolloutPhase::Paused, "r1", "r2")), UserAction::Promote).is_ok());
    }

    #[test]
    fn retry_only_after_abort_and_abort_only_once() {
        let aborted = course(rollout(RolloutPhase::Aborted, "r1", "r2"));
        assert!(check(&aborted, UserAction::Retry).is_ok());
        assert!(check(&aborted, UserAction::Abort).is_err());
        assert!(check(&aborted, UserAction::Promote).is_err());
        assert!(check(&course(rollout(RolloutPhase::Progressing, "r1", "r2")), UserAction::Retry).is_err());
    }

    #[test]
    fn resume_needs_a_user_pause() {
        let mut paused = rollout(RolloutPhase::Paused, "r1", "r2");
        assert!(check(&course(paused.clone()), UserAction::Resume).is_err());
        paused.user_paused = true;
        assert!(check(&course(paused.clone()), UserAction::Resume).is_ok());
        assert!(check(&course(paused), UserAction::Pause).is_err());
    }

    #[test]
    fn status_view_shows_phase_weight_and_zone_bars() {
        let mut r = rollout(RolloutPhase::Progressing, "r1", "r2");
        r.weight = 20;
        let view = render_status(&course(r));
        assert!(view.contains("weight 20%"), "{view}");
        assert!(view.contains("zone-a         ██████████░░░░░░░░░░ 2/4"), "{view}");
        assert!(view.contains("stable r1   new r2"), "{view}");
    }

    #[test]
    fn annotation_values_parse_back() {
        let value = annotation_value(UserAction::PromoteFull, 42);
        assert_eq!(value, "promote-full@42");
        assert_eq!(UserAction::parse(&value), Some(UserAction::PromoteFull));
    }
}
