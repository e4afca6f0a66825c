//! When to export in extension mode (`SECRETS_CACHE_FLUSH`). Exporting before `/next` costs
//! billed time but never caller latency; exporting at the start of an invocation overlaps the
//! export with the function's own run. `adaptive` (the default, as rotel and Datadog do it)
//! flushes at the end while traffic is sporadic, and at the start — at most every interval —
//! once invocations are frequent. Decisions use the wall clock: the process is frozen between
//! invocations and no timer can be trusted.

use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After `platform.runtimeDone`, before every `/next`.
    End,
    /// At the start of an invocation, at most every `interval`.
    Periodic(Duration),
    /// `End` until invocations are frequent, then `Periodic(interval)`.
    Adaptive(Duration),
}

impl FlushPolicy {
    pub fn parse(value: &str, interval: Duration) -> Result<FlushPolicy, String> {
        match value.trim() {
            "end" => Ok(FlushPolicy::End),
            "adaptive" => Ok(FlushPolicy::Adaptive(interval)),
            other => match other.strip_prefix("periodic:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms >= 100 => Ok(FlushPolicy::Periodic(Duration::from_millis(ms))),
                _ => Err(format!("{other:?} is not end, adaptive or periodic:<ms ≥ 100>")),
            },
        }
    }
}

/// Invocations considered for "frequent".
const WINDOW: usize = 20;
/// Frequent = the last `WINDOW` invocations came at least once a minute on average.
const FREQUENT: Duration = Duration::from_secs(60);
/// A gap this long means the traffic pattern starts over.
const IDLE_RESET: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct FlushControl {
    policy: FlushPolicy,
    recent: VecDeque<u64>,
    last_flush_ms: u64,
}

impl FlushControl {
    pub fn new(policy: FlushPolicy) -> FlushControl {
        FlushControl {
            policy,
            recent: VecDeque::with_capacity(WINDOW),
            last_flush_ms: 0,
        }
    }

    /// Records an INVOKE at `now_ms`; true when a flush should start now.
    pub fn on_invoke(&mut self, now_ms: u64) -> bool {
        if self
            .recent
            .back()
            .is_some_and(|&last| now_ms.saturating_sub(last) > IDLE_RESET.as_millis() as u64)
        {
            self.recent.clear();
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(now_ms);
        match self.at_start_every() {
            Some(interval) => now_ms.saturating_sub(self.last_flush_ms) >= interval.as_millis() as u64,
            None => false,
        }
    }

    /// Whether to flush before `/next` this time.
    pub fn at_end(&self) -> bool {
        self.at_start_every().is_none()
    }

    pub fn flushed(&mut self, now_ms: u64) {
        self.last_flush_ms = now_ms;
    }

    /// `Some(interval)` while flushing at the start of invocations.
    fn at_start_every(&self) -> Option<Duration> {
        match self.policy {
            FlushPolicy::End => None,
            FlushPolicy::Periodic(interval) => Some(interval),
            FlushPolicy::Adaptive(interval) => self.frequent().then_some(interval),
        }
    }

    fn frequent(&self) -> bool {
        if self.recent.len() < WINDOW {
            return false;
        }
        let span = self.recent.back().copied().unwrap_or(0) - self.recent.front().copied().unwrap_or(0);
        span / (WINDOW as u64 - 1) <= FREQUENT.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn parses_the_three_policies() {
        let i = Duration::from_secs(20);
        assert_eq!(FlushPolicy::parse("end", i), Ok(FlushPolicy::End));
        assert_eq!(FlushPolicy::parse("adaptive", i), Ok(FlushPolicy::Adaptive(i)));
        assert_eq!(
            FlushPolicy::parse("periodic:5000", i),
            Ok(FlushPolicy::Periodic(Duration::from_secs(5)))
        );
        assert!(FlushPolicy::parse("periodic:5", i).is_err());
        assert!(FlushPolicy::parse("sometimes", i).is_err());
    }

    #[test]
    fn end_flushes_every_invocation_at_the_end() {
        let mut c = FlushControl::new(FlushPolicy::End);
        for t in 0..50 {
            assert!(!c.on_invoke(t * S));
            assert!(c.at_end());
        }
    }

    #[test]
    fn periodic_flushes_at_the_start_at_most_every_interval() {
        let mut c = FlushControl::new(FlushPolicy::Periodic(Duration::from_secs(10)));
        let mut flushes = Vec::new();
        for t in (0..60).map(|n| 1_000_000 + n * 2 * S) {
            if c.on_invoke(t) {
                c.flushed(t);
                flushes.push(t);
            }
            assert!(!c.at_end());
        }
        assert_eq!(flushes.len(), 12, "every 10 s over 120 s: {flushes:?}");
    }

    #[test]
    fn adaptive_switches_after_twenty_frequent_invocations_and_back_after_idle() {
        let mut c = FlushControl::new(FlushPolicy::Adaptive(Duration::from_secs(20)));
        let mut t = 1_000_000;
        for n in 0..WINDOW {
            let start = c.on_invoke(t);
            assert!(!start || n == WINDOW - 1);
            if n < WINDOW - 1 {
                assert!(c.at_end(), "sporadic until the window is full ({n})");
            }
            t += 5 * S;
        }
        assert!(!c.at_end(), "frequent now: flush at the start");
        // Every 5 s: a start flush every 20 s.
        let mut flushes = 0;
        for _ in 0..40 {
            if c.on_invoke(t) {
                c.flushed(t);
                flushes += 1;
            }
            t += 5 * S;
        }
        assert_eq!(flushes, 10);
        // Ten idle minutes: sporadic again.
        t += 600 * S;
        assert!(!c.on_invoke(t));
        assert!(c.at_end());
        // Slow traffic (every 2 minutes) never counts as frequent.
        let mut c = FlushControl::new(FlushPolicy::Adaptive(Duration::from_secs(20)));
        for n in 0..40 {
            c.on_invoke(n * 120 * S);
            assert!(c.at_end());
        }
    }
}
