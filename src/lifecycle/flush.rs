//! When to export in extension mode (`SECRETS_CACHE_FLUSH`). The time between the function's
//! response and our `/next` is billed to the user, so the default never waits for the
//! function: what earlier invocations recorded is exported at the start of an invocation,
//! overlapping the function's own run (`periodic`, at most every interval), and at SHUTDOWN.
//! `end` waits for `platform.runtimeDone` and exports before `/next`, for users who want every
//! invocation's data at once and accept its cost. After a failed export the next one waits,
//! doubling up to five minutes, so a collector that is down or hung costs one timeout per
//! back-off period rather than one per invocation. Decisions use the wall clock: the process is
//! frozen between invocations and no timer can be trusted.

use std::time::Duration;

use crate::config::FlushPolicy;

/// The longest wait after consecutive failed exports.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The first wait after a failure under `end` (which has no interval of its own).
const MIN_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct FlushControl {
    policy: FlushPolicy,
    /// Wall-clock ms of the last export attempt.
    last_ms: Option<u64>,
    /// Consecutive failed exports.
    failures: u32,
}

impl FlushControl {
    pub fn new(policy: FlushPolicy) -> FlushControl {
        FlushControl {
            policy,
            last_ms: None,
            failures: 0,
        }
    }

    /// Whether `/next` waits for `platform.runtimeDone` (policy `end`).
    pub fn waits_for_runtime_done(&self) -> bool {
        self.policy == FlushPolicy::End
    }

    /// At an INVOKE: export now, overlapping the function's run?
    pub fn at_start(&self, now_ms: u64) -> bool {
        matches!(self.policy, FlushPolicy::Periodic(_)) && self.due(now_ms)
    }

    /// After runtimeDone: export before `/next`?
    pub fn at_end(&self, now_ms: u64) -> bool {
        self.policy == FlushPolicy::End && self.due(now_ms)
    }

    /// Records an export attempt that ended at `now_ms`.
    pub fn exported(&mut self, now_ms: u64, ok: bool) {
        self.last_ms = Some(now_ms);
        self.failures = if ok { 0 } else { self.failures.saturating_add(1) };
    }

    fn due(&self, now_ms: u64) -> bool {
        match self.last_ms {
            None => true,
            Some(last) => now_ms.saturating_sub(last) >= self.wait().as_millis() as u64,
        }
    }

    /// The gap required since the last attempt: the interval, or after `n` failures
    /// `max(interval, 1 s) × 2ⁿ`, at most five minutes.
    fn wait(&self) -> Duration {
        let interval = match self.policy {
            FlushPolicy::End => Duration::ZERO,
            FlushPolicy::Periodic(interval) => interval,
        };
        if self.failures == 0 {
            return interval;
        }
        let base = interval.max(MIN_BACKOFF);
        base.saturating_mul(1u32 << self.failures.min(16)).min(MAX_BACKOFF).max(interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn end_exports_after_every_invocation_and_never_at_the_start() {
        let mut c = FlushControl::new(FlushPolicy::End);
        assert!(c.waits_for_runtime_done());
        for t in 0..50 {
            assert!(!c.at_start(t * S));
            assert!(c.at_end(t * S));
            c.exported(t * S, true);
        }
    }

    #[test]
    fn periodic_exports_at_the_start_at_most_every_interval() {
        let mut c = FlushControl::new(FlushPolicy::Periodic(Duration::from_secs(10)));
        assert!(!c.waits_for_runtime_done());
        let mut exports = Vec::new();
        for t in (0..60).map(|n| 1_000_000 + n * 2 * S) {
            assert!(!c.at_end(t));
            if c.at_start(t) {
                c.exported(t, true);
                exports.push(t);
            }
        }
        assert_eq!(exports.len(), 12, "every 10 s over 120 s: {exports:?}");
        let mut every = FlushControl::new(FlushPolicy::Periodic(Duration::ZERO));
        for t in 0..10 {
            assert!(every.at_start(t));
            every.exported(t, true);
        }
    }

    #[test]
    fn failures_back_off_doubling_up_to_five_minutes_and_success_resets() {
        // Under `end`: 2 s, 4 s, 8 s … 256 s, then 300 s.
        let mut c = FlushControl::new(FlushPolicy::End);
        let mut t = 1_000_000;
        let mut gaps = Vec::new();
        for _ in 0..10 {
            c.exported(t, false);
            let mut next = t + 1;
            while !c.at_end(next) {
                next += 1;
            }
            gaps.push((next - t) / S);
            t = next;
        }
        assert_eq!(gaps, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        c.exported(t, true);
        assert!(c.at_end(t), "a success ends the back-off");

        // Periodic every 20 s: 40 s, 80 s, 160 s, 300 s.
        let mut c = FlushControl::new(FlushPolicy::Periodic(Duration::from_secs(20)));
        c.exported(0, false);
        assert!(!c.at_start(39 * S) && c.at_start(40 * S));
        c.exported(40 * S, false);
        assert!(!c.at_start(119 * S) && c.at_start(120 * S));
    }
}
