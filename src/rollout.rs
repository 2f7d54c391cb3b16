//! The rollout state machine: which revisions run at what size in each zone, which revision
//! the main Service is pinned to, and the rollout status to publish.
//!
//! Pure. Every decision is recomputed from `status.rollout` plus what the cluster shows, so an
//! operator killed at any instant resumes exactly where it was.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{CanaryStep, RollingStrategy, RolloutPhase, RolloutStatus, Strategy, StrategyType};
use crate::validate::parse_duration;
use crate::zones::{self, Zone, ZoneHealth, ZoneObserved, ZoneSplit};

/// A user request on a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAction {
    /// Finish the current pause (canary) or switch traffic (blue-green).
    Promote,
    /// Skip every remaining step.
    PromoteFull,
    /// Go back to the stable revision.
    Abort,
    /// Start an aborted rollout again from its first step.
    Retry,
    Pause,
    Resume,
}

impl UserAction {
    /// Parses `promote@1700000000` style annotation values.
    pub fn parse(value: &str) -> Option<Self> {
        let action = value.split('@').next()?;
        Some(match action {
            "promote" => Self::Promote,
            "promote-full" => Self::PromoteFull,
            "abort" => Self::Abort,
            "retry" => Self::Retry,
            "pause" => Self::Pause,
            "resume" => Self::Resume,
            _ => return None,
        })
    }

    /// The word used in the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::PromoteFull => "promote-full",
            Self::Abort => "abort",
            Self::Retry => "retry",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

/// What the state machine decides from.
pub struct Inputs<'a> {
    pub strategy: &'a Strategy,
    /// `spec.replicas`: the total the HPA (or the user) asks for.
    pub total: i32,
    pub max_unavailable: i32,
    /// Revision of the current spec.
    pub new_revision: &'a str,
    pub previous: Option<&'a RolloutStatus>,
    /// What runs now: revision → zone → counts.
    pub observed: &'a BTreeMap<String, BTreeMap<Zone, ZoneObserved>>,
    pub zones: &'a [ZoneHealth],
    /// Seed of the zone split (the CourseService name).
    pub seed: &'a str,
    pub now: Timestamp,
    /// The annotation value, when it has not been handled yet.
    pub action: Option<(&'a str, UserAction)>,
    /// The canary analysis check made for this reconcile (see [`analysis_due`]).
    pub analysis: Option<&'a analysis::Verdict>,
    /// Most restarts of any pod of the new revision (0 when not looked at).
    pub new_pod_restarts: i32,
}

/// The canary analysis to run now, if any: a canary rollout of `new_revision` is under way
/// and `intervalSeconds` have passed since the last check.
pub fn analysis_due<'a>(
    strategy: &'a Strategy,
    previous: Option<&RolloutStatus>,
    new_revision: &str,
    now: Timestamp,
) -> Option<&'a crate::api::Analysis> {
    let analysis = strategy.canary.as_ref()?.analysis.as_ref()?;
    let rollout = previous?;
    let under_way =
        strategy.type_ == StrategyType::Canary && rollout.rolling_out_to(new_revision) && !rollout.user_paused;
    let interval = Duration::from_secs(u64::try_from(analysis.interval_seconds).unwrap_or(10));
    let due = rollout.analysis_checked_at.is_none() || elapsed(rollout.analysis_checked_at.as_deref(), now) >= interval;
    (under_way && due).then_some(analysis)
}

/// The outcome: sizes per revision and zone, the Service pin, and the status.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Revision → replicas per zone to ask for now. Revisions that run but are not listed are
    /// removed.
    pub targets: BTreeMap<String, ZoneSplit>,
    /// Pin the main Service to this revision (blue-green); `None`: every revision serves.
    pub service_revision: Option<String>,
    /// Revision the preview Service selects (blue-green before the switch).
    pub preview_revision: Option<String>,
    pub status: RolloutStatus,
    /// Look again at this time even without events (timed pauses, deadlines).
    pub requeue_after: Option<Duration>,
    /// The rollout failed its gate in this decision (for a Warning Event).
    pub aborted_now: bool,
}

fn counts(observed: &BTreeMap<String, BTreeMap<Zone, ZoneObserved>>, revision: &str) -> (i32, i32) {
    observed
        .get(revision)
        .map_or((0, 0), |zones| zones.values().fold((0, 0), |(r, ready), o| (r + o.replicas, ready + o.ready)))
}

fn zone_counts(
    observed: &BTreeMap<String, BTreeMap<Zone, ZoneObserved>>,
    revision: &str,
) -> BTreeMap<Zone, ZoneObserved> {
    observed.get(revision).cloned().unwrap_or_default()
}

/// Resolves `25%` or `2` against `base`, rounding percentages up (surge) or down (unavailable).
fn resolve(value: &IntOrString, base: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = i64::from(base) * percent;
            let value = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

fn elapsed(since: Option<&str>, now: Timestamp) -> Duration {
    since
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(|t| now.duration_since(t))
        .and_then(|d: SignedDuration| Duration::try_from(d).ok())
        .unwrap_or_default()
}

fn split_paced(total: i32, inputs: &Inputs<'_>, revision: &str) -> ZoneSplit {
    let split = zones::split(total, inputs.zones, inputs.seed);
    zones::pace(&split, &zone_counts(inputs.observed, revision), inputs.max_unavailable)
}

/// Decides the next step of the rollout.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let new = inputs.new_revision.to_owned();
    let previous = inputs.previous.cloned().unwrap_or_default();
    let stable = previous.stable_revision.clone();
    let mut status = RolloutStatus {
        strategy: inputs.strategy.type_,
        stable_revision: stable.clone(),
        new_revision: Some(new.clone()),
        step: previous.step,
        weight: previous.weight,
        phase: previous.phase,
        message: previous.message.clone(),
        step_started_at: previous.step_started_at.clone(),
        user_paused: previous.user_paused,
        analysis_failures: previous.analysis_failures,
        analysis_checked_at: previous.analysis_checked_at.clone(),
        last_action: previous.last_action.clone(),
    };
    let now_text = inputs.now.to_string();
    let mut action = None;
    if let Some((raw, parsed)) = inputs.action {
        status.last_action = Some(raw.to_owned());
        action = Some(parsed);
    }

    // Nothing serves yet, or the spec went back to the stable revision: no rollout.
    let Some(stable) = stable.filter(|s| *s != new && counts(inputs.observed, s).0 > 0) else {
        return steady(inputs, status, &new);
    };

    // A new revision (or a different one than the rollout in progress) starts from step 0.
    if previous.new_revision.as_deref() != Some(new.as_str()) || action == Some(UserAction::Retry) {
        status.step = 0;
        status.weight = 0;
        status.phase = RolloutPhase::Progressing;
        status.step_started_at = Some(now_text.clone());
        status.user_paused = false;
        status.analysis_failures = 0;
        status.analysis_checked_at = None;
        status.message = Some(format!("rolling out revision {new} over {stable}"));
    }
    match action {
        Some(UserAction::Pause) => status.user_paused = true,
        Some(UserAction::Resume) => status.user_paused = false,
        _ => {}
    }

    let mut machine = Machine { inputs, stable, new, status, now_text, aborted_now: false };
    if action == Some(UserAction::Abort) && machine.status.phase != RolloutPhase::Aborted {
        machine.abort("aborted by request".into());
    }
    if machine.status.phase == RolloutPhase::Aborted {
        return machine.aborted();
    }
    let max_restarts = inputs.strategy.max_pod_restarts;
    if inputs.new_pod_restarts > max_restarts && inputs.strategy.type_ != StrategyType::Rolling {
        machine.abort(format!(
            "a pod of the new revision restarted {} times (at most {max_restarts} allowed)",
            inputs.new_pod_restarts
        ));
        return machine.aborted();
    }
    if inputs.new_pod_restarts > max_restarts {
        // Rolling: stop where it is (blast radius: the zones updated so far).
        machine.status.user_paused = true;
        machine.status.message = Some(format!(
            "stopped: a pod of the new revision restarted {} times (at most {max_restarts} allowed); fix the spec or `kubectl course abort`",
            inputs.new_pod_restarts
        ));
    }
    match inputs.strategy.type_ {
        StrategyType::Rolling => machine.rolling(action),
        StrategyType::Canary => machine.canary(action),
        StrategyType::BlueGreen => machine.blue_green(action),
    }
}

/// One revision serves: size it, remove every other one within the budget.
fn steady(inputs: &Inputs<'_>, mut status: RolloutStatus, new: &str) -> Decision {
    let mut targets = BTreeMap::new();
    let target = split_paced(inputs.total, inputs, new);
    let (_, new_ready) = counts(inputs.observed, new);
    let floor = (inputs.total - inputs.max_unavailable).max(0);
    // Other revisions (an abandoned rollout) go once the serving revision carries the load.
    for revision in inputs.observed.keys().filter(|r| r.as_str() != new) {
        if new_ready < floor {
            let keep: ZoneSplit =
                zone_counts(inputs.observed, revision).into_iter().map(|(z, o)| (z, o.replicas)).collect();
            targets.insert(revision.clone(), keep);
        }
    }
    targets.insert(new.to_owned(), target);
    let settled = new_ready >= inputs.total && targets.len() == 1;
    status.stable_revision = Some(new.to_owned());
    status.new_revision = Some(new.to_owned());
    status.step = 0;
    status.weight = 100;
    status.phase = if settled { RolloutPhase::Healthy } else { RolloutPhase::Progressing };
    status.message = None;
    status.step_started_at = None;
    status.user_paused = false;
    status.analysis_failures = 0;
    status.analysis_checked_at = None;
    let service_revision = (inputs.strategy.type_ == StrategyType::BlueGreen).then(|| new.to_owned());
    Decision { targets, service_revision, preview_revision: None, status, requeue_after: None, aborted_now: false }
}

struct Machine<'a> {
    inputs: &'a Inputs<'a>,
    stable: String,
    new: String,
    status: RolloutStatus,
    now_text: String,
    aborted_now: bool,
}

impl Machine<'_> {
    fn floor(&self) -> i32 {
        (self.inputs.total - self.inputs.max_unavailable).max(0)
    }

    fn step_elapsed(&self) -> Duration {
        elapsed(self.status.step_started_at.as_deref(), self.inputs.now)
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.inputs.strategy.progress_deadline_seconds).unwrap_or(600))
    }

    fn next_step(&mut self) {
        self.status.step += 1;
        self.status.step_started_at = Some(self.now_text.clone());
    }

    fn abort(&mut self, why: String) {
        self.status.phase = RolloutPhase::Aborted;
        self.status.message = Some(format!("rollout of {} aborted: {why}; serving {}", self.new, self.stable));
        self.status.weight = 0;
        self.status.step_started_at = Some(self.now_text.clone());
        self.aborted_now = true;
    }

    /// Revisions other than stable and new: kept while stable+new cannot carry the load.
    fn others(&self, targets: &mut BTreeMap<String, ZoneSplit>) {
        let (_, stable_ready) = counts(self.inputs.observed, &self.stable);
        let (_, new_ready) = counts(self.inputs.observed, &self.new);
        if stable_ready + new_ready >= self.floor() {
            return;
        }
        for revision in self.inputs.observed.keys().filter(|r| **r != self.stable && **r != self.new) {
            let keep = zone_counts(self.inputs.observed, revision).into_iter().map(|(z, o)| (z, o.replicas)).collect();
            targets.insert(revision.clone(), keep);
        }
    }

    fn decision(
        &self,
        targets: BTreeMap<String, ZoneSplit>,
        service: Option<String>,
        preview: Option<String>,
        requeue: Option<Duration>,
    ) -> Decision {
        Decision {
            targets,
            service_revision: service,
            preview_revision: preview,
            status: self.status.clone(),
            requeue_after: requeue,
            aborted_now: self.aborted_now,
        }
    }

    /// Aborted: stable back to full size at once; the new pods stay as they are until the
    /// stable pods alone carry the budget, then go together.
    fn aborted(self) -> Decision {
        let (_, stable_ready) = counts(self.inputs.observed, &self.stable);
        let mut targets = BTreeMap::new();
        targets.insert(self.stable.clone(), split_paced(self.inputs.total, self.inputs, &self.stable));
        if stable_ready < self.floor() {
            let keep = zone_counts(self.inputs.observed, &self.new).into_iter().map(|(z, o)| (z, o.replicas)).collect();
            targets.insert(self.new.clone(), keep);
        }
        self.others(&mut targets);
        let service = (self.inputs.strategy.type_ == StrategyType::BlueGreen).then(|| self.stable.clone());
        self.decision(targets, service, None, None)
    }

    /// The new revision is fully out: it becomes stable.
    fn complete(mut self) -> Decision {
        self.status.stable_revision = Some(self.new.clone());
        self.status.phase = RolloutPhase::Healthy;
        self.status.weight = 100;
        self.status.message = Some(format!("revision {} is stable", self.new));
        self.status.step_started_at = None;
        let mut targets = BTreeMap::new();
        targets.insert(self.new.clone(), split_paced(self.inputs.total, self.inputs, &self.new));
        let service = (self.inputs.strategy.type_ == StrategyType::BlueGreen).then(|| self.new.clone());
        self.decision(targets, service, None, None)
    }

    /// Zone by zone (or all zones at once): within a zone, surge new pods and retire old ones
    /// as the new become Ready, never below `share - maxUnavailable` Ready pods.
    fn rolling(mut self, _action: Option<UserAction>) -> Decision {
        let settings = self.inputs.strategy.rolling.clone().unwrap_or_default();
        let shares = zones::split(self.inputs.total, self.inputs.zones, self.inputs.seed);
        let new_zones = zone_counts(self.inputs.observed, &self.new);
        let stable_zones = zone_counts(self.inputs.observed, &self.stable);
        let done = |zone: &Zone, share: i32| {
            let n = new_zones.get(zone).copied().unwrap_or_default();
            let o = stable_zones.get(zone).copied().unwrap_or_default();
            n.replicas == share && n.ready >= share && o.replicas == 0
        };
        let first_open = shares.iter().position(|(z, s)| !done(z, *s));
        let Some(active) = first_open else { return self.complete() };

        let mut new_split = Vec::new();
        let mut stable_split = Vec::new();
        for (index, (zone, share)) in shares.iter().enumerate() {
            let n = new_zones.get(zone).copied().unwrap_or_default();
            let o = stable_zones.get(zone).copied().unwrap_or_default();
            let in_wave = !settings.zone_by_zone || index == active;
            let (new_target, old_target) = if index < active && settings.zone_by_zone {
                (*share, 0)
            } else if !in_wave || self.status.user_paused {
                (n.replicas.min(*share), (*share - n.replicas.min(*share)).max(0))
            } else {
                zone_wave(&settings, *share, n, o)
            };
            new_split.push((zone.clone(), new_target));
            stable_split.push((zone.clone(), old_target));
        }

        let (_, new_ready) = counts(self.inputs.observed, &self.new);
        self.status.weight = if self.inputs.total > 0 { (new_ready * 100 / self.inputs.total).min(100) } else { 100 };
        let active_index = i32::try_from(active).unwrap_or(0);
        if settings.zone_by_zone && active_index != self.status.step {
            self.status.step = active_index;
            self.status.step_started_at = Some(self.now_text.clone());
        }
        let zone_name = shares.get(active).map(|(z, _)| z.name().to_owned()).unwrap_or_default();
        if self.status.user_paused {
            self.status.phase = RolloutPhase::Paused;
            self.status.message = Some("paused by request".into());
        } else if self.step_elapsed() > self.deadline() {
            // Blast radius: one zone. Stop here until the spec is fixed, retried or aborted.
            self.status.phase = RolloutPhase::Paused;
            self.status.message = Some(format!(
                "stopped: zone {zone_name} did not become Available within {}s; fix the spec, `kubectl course retry` or `abort`",
                self.inputs.strategy.progress_deadline_seconds
            ));
            let frozen_new = new_zones.into_iter().map(|(z, o)| (z, o.replicas)).collect();
            let frozen_old = stable_zones.into_iter().map(|(z, o)| (z, o.replicas)).collect();
            let mut targets = BTreeMap::from([(self.new.clone(), frozen_new), (self.stable.clone(), frozen_old)]);
            self.others(&mut targets);
            return self.decision(targets, None, None, None);
        } else {
            self.status.phase = RolloutPhase::Progressing;
            self.status.message = Some(if settings.zone_by_zone {
                format!("updating zone {zone_name} ({} of {})", active + 1, shares.len())
            } else {
                "updating every zone".into()
            });
        }
        let mut targets = BTreeMap::from([(self.new.clone(), new_split), (self.stable.clone(), stable_split)]);
        self.others(&mut targets);
        let deadline_left = self.deadline().saturating_sub(self.step_elapsed());
        self.decision(targets, None, None, Some(deadline_left + Duration::from_secs(1)))
    }

    fn canary(mut self, action: Option<UserAction>) -> Decision {
        let steps: Vec<CanaryStep> = self.inputs.strategy.canary.as_ref().map(|c| c.steps.clone()).unwrap_or_default();
        if action == Some(UserAction::PromoteFull) {
            self.status.step = i32::try_from(steps.len()).unwrap_or(i32::MAX);
        }
        let total = self.inputs.total;
        let (new_replicas, new_ready) = counts(self.inputs.observed, &self.new);
        let (stable_replicas, _) = counts(self.inputs.observed, &self.stable);
        let mut requeue = None;

        if let Some(verdict) = self.inputs.analysis {
            self.status.analysis_checked_at = Some(self.now_text.clone());
            if !verdict.passed {
                self.status.analysis_failures += 1;
                let limit = self
                    .inputs
                    .strategy
                    .canary
                    .as_ref()
                    .and_then(|c| c.analysis.as_ref())
                    .map_or(0, |a| a.failure_limit);
                if self.status.analysis_failures > limit {
                    self.abort(verdict.message.clone());
                    return self.aborted();
                }
            }
        }
        if let Some(analysis) = self.inputs.strategy.canary.as_ref().and_then(|c| c.analysis.as_ref()) {
            requeue = Some(Duration::from_secs(u64::try_from(analysis.interval_seconds).unwrap_or(10)));
        }

        // Walk through steps that are already satisfied, so one reconcile can pass several.
        loop {
            let index = usize::try_from(self.status.step).unwrap_or(0);
            let Some(step) = steps.get(index) else { break };
            if let Some(weight) = step.set_weight {
                self.status.weight = self.status.weight.max(weight);
                let want = canary_size(weight, total);
                if new_ready >= want && new_replicas >= want {
                    self.next_step();
                    continue;
                }
                if self.step_elapsed() > self.deadline() {
                    self.abort(format!(
                        "{want} new pods were not Ready within {}s",
                        self.inputs.strategy.progress_deadline_seconds
                    ));
                    return self.aborted();
                }
                let left = self.deadline().saturating_sub(self.step_elapsed()) + Duration::from_secs(1);
                requeue = Some(requeue.map_or(left, |r: Duration| r.min(left)));
                break;
            }
            let duration = step.pause.as_ref().and_then(|p| p.duration.as_deref()).and_then(parse_duration);
            match duration {
                Some(ms) => {
                    let wait = Duration::from_millis(ms);
                    if self.step_elapsed() >= wait || action == Some(UserAction::Promote) {
                        self.next_step();
                        continue;
                    }
                    let left = wait - self.step_elapsed() + Duration::from_millis(200);
                    requeue = Some(requeue.map_or(left, |r: Duration| r.min(left)));
                }
                None => {
                    if action == Some(UserAction::Promote) {
                        self.next_step();
                        continue;
                    }
                }
            }
            break;
        }

        let index = usize::try_from(self.status.step).unwrap_or(0);
        let finishing = index >= steps.len();
        let weight = if finishing { 100 } else { self.status.weight };
        let new_total = if finishing { total } else { canary_size(weight, total) };
        if finishing && new_ready >= total && stable_replicas == 0 {
            return self.complete();
        }
        // Stable shrinks only as new pods become Ready, and never below the budget.
        let stable_total = (total - new_total).max((self.floor() - new_ready).min(stable_replicas)).max(0);
        let paused_step = steps.get(index).is_some_and(|s| s.pause.is_some());
        let manual_pause = paused_step && steps[index].pause.as_ref().is_some_and(|p| p.duration.is_none());
        self.status.phase =
            if self.status.user_paused || manual_pause { RolloutPhase::Paused } else { RolloutPhase::Progressing };
        self.status.message = Some(if finishing {
            format!("promoting revision {}", self.new)
        } else if manual_pause {
            format!("step {}: paused at {weight}% until `kubectl course promote`", index + 1)
        } else {
            format!("step {} of {}: {weight}% on revision {}", index + 1, steps.len(), self.new)
        });
        if self.status.user_paused {
            requeue = None;
        }
        // The stable pods fill the zones the canary's pods left short, so every zone keeps
        // its share of the whole while the two revisions are mixed.
        let new_split = zones::split(new_total, self.inputs.zones, self.inputs.seed);
        let stable_observed = zone_counts(self.inputs.observed, &self.stable);
        let stable_now: ZoneSplit = stable_observed.iter().map(|(z, o)| (z.clone(), o.replicas)).collect();
        let stable_split =
            zones::resize_beside(stable_total, self.inputs.zones, self.inputs.seed, &stable_now, &new_split);
        let mut targets = BTreeMap::new();
        targets.insert(self.new.clone(), split_paced(new_total, self.inputs, &self.new));
        targets.insert(self.stable.clone(), zones::pace(&stable_split, &stable_observed, self.inputs.max_unavailable));
        self.others(&mut targets);
        self.decision(targets, None, None, requeue)
    }

    /// Steps: 0 bring the new revision up at full size behind the preview Service; 1 wait for
    /// promotion; 2 traffic switched, old kept for the scale-down delay.
    fn blue_green(mut self, action: Option<UserAction>) -> Decision {
        let settings = self.inputs.strategy.blue_green.clone().unwrap_or_default();
        let total = self.inputs.total;
        let (_, new_ready) = counts(self.inputs.observed, &self.new);
        let mut requeue = None;
        if self.status.step == 0 {
            if new_ready >= total {
                self.next_step();
            } else if self.step_elapsed() > self.deadline() {
                self.abort(format!(
                    "the new revision was not Ready within {}s",
                    self.inputs.strategy.progress_deadline_seconds
                ));
                return self.aborted();
            } else {
                requeue = Some(self.deadline().saturating_sub(self.step_elapsed()) + Duration::from_secs(1));
            }
        }
        if self.status.step == 1 && !self.status.user_paused {
            let auto = settings.auto_promotion_seconds.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
            let promote = matches!(action, Some(UserAction::Promote | UserAction::PromoteFull))
                || auto.is_some_and(|wait| self.step_elapsed() >= wait);
            // Traffic switches only to a revision that is Ready at its full size.
            if promote && new_ready >= total {
                self.next_step();
            } else if let Some(wait) = auto {
                requeue = Some(wait.saturating_sub(self.step_elapsed()) + Duration::from_millis(200));
            }
        }
        if self.status.step >= 2 {
            let delay = Duration::from_secs(u64::try_from(settings.scale_down_delay_seconds).unwrap_or(0));
            if self.step_elapsed() >= delay || action == Some(UserAction::PromoteFull) {
                return self.complete();
            }
            requeue = Some(delay - self.step_elapsed() + Duration::from_millis(200));
        }
        let switched = self.status.step >= 2;
        self.status.weight = if switched { 100 } else { 0 };
        self.status.phase = match self.status.step {
            0 => RolloutPhase::Progressing,
            1 if settings.auto_promotion_seconds.is_none() || self.status.user_paused => RolloutPhase::Paused,
            _ => RolloutPhase::Progressing,
        };
        self.status.message = Some(match self.status.step {
            0 => format!("bringing revision {} up to {total} pods behind the preview Service", self.new),
            1 => format!("revision {} is Ready; waiting for promotion", self.new),
            _ => format!("traffic on revision {}; keeping {} for the scale-down delay", self.new, self.stable),
        });
        let mut targets = BTreeMap::new();
        targets.insert(self.new.clone(), split_paced(total, self.inputs, &self.new));
        // HPA-aware: the old revision follows the total too while it may serve again.
        targets.insert(self.stable.clone(), split_paced(total, self.inputs, &self.stable));
        self.others(&mut targets);
        let service = Some(if switched { self.new.clone() } else { self.stable.clone() });
        let preview = settings.preview_service.then(|| self.new.clone());
        self.decision(targets, service, preview, requeue)
    }
}

/// Replicas of the new revision at `weight` percent: ceil, at least one.
pub fn canary_size(weight: i32, total: i32) -> i32 {
    let scaled = i64::from(weight.clamp(0, 100)) * i64::from(total.max(0));
    i32::try_from((scaled + 99) / 100).unwrap_or(total).max(1).min(total.max(1))
}

/// One zone's rolling wave: (new replicas, old replicas).
fn zone_wave(settings: &RollingStrategy, share: i32, new: ZoneObserved, old: ZoneObserved) -> (i32, i32) {
    let mut surge = resolve(&settings.max_surge, share, true);
    let unavailable = resolve(&settings.max_unavailable, share, false);
    if surge == 0 && unavailable == 0 {
        surge = 1;
    }
    let new_target = share.min(new.replicas.max(share + surge - old.replicas)).max(0);
    let min_available = (share - unavailable).max(0);
    let removable_ready = (new.ready + old.ready - min_available).max(0);
    let old_not_ready = (old.replicas - old.ready).max(0);
    let old_target = (old.replicas - old_not_ready - removable_ready).max(0);
    (new_target, old_target)
}

pub mod analysis;

#[cfg(test)]
mod tests;
