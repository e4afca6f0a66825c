//! AWS's per-account request quotas, as token buckets: each quota covers one operation or a
//! group sharing one (Parameter Store's GetParameter, GetParameters and GetParametersByPath
//! share 40 a second at standard throughput), refills at its rate and holds at most a second's
//! worth. A call that finds its bucket empty is throttled, as AWS throttles it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One quota: the operations it covers and its rate.
#[derive(Debug, Clone)]
pub struct Quota {
    pub operations: Vec<String>,
    /// Calls per second, shared by every caller.
    pub per_second: f64,
}

impl Quota {
    pub fn new(operations: &[&str], per_second: f64) -> Quota {
        Quota {
            operations: operations.iter().map(|o| o.to_string()).collect(),
            per_second,
        }
    }

    /// AWS's read quotas (per account and Region), every rate scaled by `scale`.
    pub fn aws(scale: f64) -> Vec<Quota> {
        vec![
            Quota::new(&["BatchGetSecretValue"], 100.0 * scale),
            Quota::new(&["GetSecretValue"], 10_000.0 * scale),
            Quota::new(&["DescribeSecret"], 40_000.0 * scale),
            Quota::new(&["GetParameter", "GetParameters", "GetParametersByPath"], 40.0 * scale),
        ]
    }
}

/// The buckets of a set of quotas.
#[derive(Debug, Default)]
pub struct Buckets(Mutex<Vec<Bucket>>);

#[derive(Debug)]
struct Bucket {
    quota: Quota,
    tokens: f64,
    refilled: Instant,
}

impl Buckets {
    /// Full buckets for `quotas` (replacing any before).
    pub fn set(&self, quotas: Vec<Quota>) {
        let now = Instant::now();
        *self.0.lock().unwrap() = quotas
            .into_iter()
            .map(|quota| Bucket {
                tokens: quota.per_second.max(1.0),
                quota,
                refilled: now,
            })
            .collect();
    }

    /// Takes a token for `operation`; false when its quota is spent (the call is throttled).
    /// An operation no quota covers always passes.
    pub fn take(&self, operation: &str) -> bool {
        let mut buckets = self.0.lock().unwrap();
        let Some(b) = buckets.iter_mut().find(|b| b.quota.operations.iter().any(|o| o == operation)) else {
            return true;
        };
        let now = Instant::now();
        let rate = b.quota.per_second;
        b.tokens = (b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate).min(rate.max(1.0));
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long a bucket of `per_second` takes to refill one token.
pub fn refill(per_second: f64) -> Duration {
    Duration::from_secs_f64(1.0 / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_a_second_and_refills_at_its_rate() {
        let b = Buckets::default();
        b.set(vec![Quota::new(&["GetParameter", "GetParameters"], 4.0)]);
        let passed = (0..10)
            .filter(|i| b.take(if i % 2 == 0 { "GetParameter" } else { "GetParameters" }))
            .count();
        assert_eq!(passed, 4, "the group shares one bucket of a second's worth");
        assert!(b.take("GetSecretValue"), "no quota, no throttling");
        std::thread::sleep(refill(4.0) + Duration::from_millis(20));
        assert!(b.take("GetParameter"));
        assert!(!b.take("GetParameter"));
    }
}
