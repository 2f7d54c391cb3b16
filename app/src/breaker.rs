//! A circuit breaker: after `threshold` consecutive failures a dependency is not called for
//! an open period; then one probe call is let through (half-open). A successful probe closes
//! the breaker; a failed one opens it again for twice as long (jittered, capped).
//!
//! Pure: the caller passes the clock and the jitter, so every transition is unit-tested.

use std::time::{Duration, Instant};

/// What the breaker allows for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Closed: call.
    Call,
    /// Half-open: this call is the one probe.
    Probe,
    /// Open, or a probe is already out: do not call.
    Skip,
}

/// The breaker's state as exported in metrics: 0 closed, 1 half-open, 2 open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    HalfOpen,
    Open,
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// First open period.
    pub base: Duration,
    /// Longest open period.
    pub max: Duration,
}

#[derive(Debug)]
pub struct Breaker {
    settings: Settings,
    failures: u32,
    /// Consecutive open periods (the back-off exponent).
    opened: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    pub fn new(settings: Settings) -> Self {
        Self { settings, failures: 0, opened: 0, open_until: None, probing: false }
    }

    pub fn state(&self, now: Instant) -> State {
        match self.open_until {
            None => State::Closed,
            Some(until) if now < until => State::Open,
            Some(_) => State::HalfOpen,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state(now) {
            State::Closed => Admit::Call,
            State::Open => Admit::Skip,
            State::HalfOpen if self.probing => Admit::Skip,
            State::HalfOpen => {
                self.probing = true;
                Admit::Probe
            }
        }
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.opened = 0;
        self.open_until = None;
        self.probing = false;
    }

    /// Records a failed call; `jitter` in [0, 1) scales the open period between 50 % and 100 %
    /// of its exponential value so that many clients do not probe in step.
    pub fn failure(&mut self, now: Instant, jitter: f64) {
        self.failures = self.failures.saturating_add(1);
        let was_probe = std::mem::take(&mut self.probing);
        if was_probe || self.failures >= self.settings.threshold {
            let exponential = self.settings.base.saturating_mul(1u32 << self.opened.min(16));
            let period = exponential.min(self.settings.max).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
            self.opened = self.opened.saturating_add(1);
            self.open_until = Some(now + period);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: Settings = Settings { threshold: 3, base: Duration::from_secs(1), max: Duration::from_secs(8) };

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures_only() {
        let now = Instant::now();
        let mut b = Breaker::new(SETTINGS);
        b.failure(now, 0.0);
        b.failure(now, 0.0);
        b.success();
        b.failure(now, 0.0);
        b.failure(now, 0.0);
        assert_eq!(b.admit(now), Admit::Call, "a success in between resets the count");
        b.failure(now, 0.0);
        assert_eq!(b.state(now), State::Open);
        assert_eq!(b.admit(now), Admit::Skip);
    }

    #[test]
    fn one_probe_after_the_open_period_then_closed_on_success() {
        let now = Instant::now();
        let mut b = Breaker::new(SETTINGS);
        (0..3).for_each(|_| b.failure(now, 0.999_999));
        assert_eq!(b.admit(now + Duration::from_millis(990)), Admit::Skip);
        let later = now + Duration::from_secs(1);
        assert_eq!(b.state(later), State::HalfOpen);
        assert_eq!(b.admit(later), Admit::Probe);
        assert_eq!(b.admit(later), Admit::Skip, "only one probe at a time");
        b.success();
        assert_eq!(b.state(later), State::Closed);
        assert_eq!(b.admit(later), Admit::Call);
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap_with_jitter() {
        let start = Instant::now();
        let mut b = Breaker::new(SETTINGS);
        (0..3).for_each(|_| b.failure(start, 0.999_999));
        let mut now = start;
        let mut periods = vec![];
        for _ in 0..5 {
            let until = b.open_until.unwrap();
            periods.push((until - now).as_millis());
            now = until;
            assert_eq!(b.admit(now), Admit::Probe);
            b.failure(now, 0.999_999);
        }
        assert_eq!(periods, [999, 1999, 3999, 7999, 7999]);
        // the least jitter halves the period
        let mut b = Breaker::new(SETTINGS);
        (0..3).for_each(|_| b.failure(start, 0.0));
        assert_eq!((b.open_until.unwrap() - start).as_millis(), 500);
    }
}
