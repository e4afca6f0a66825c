//! One cached item: the pre-rendered body plus the times that decide fresh, stale or due.
//! Entries are immutable; what changes between fetches lives in the shared `EntryStats`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

use crate::key::Key;
use crate::upstream::Revision;

pub struct Entry {
    /// The key it was fetched under first, then its aliases (name, ARN).
    pub keys: Vec<Key>,
    pub body: Bytes,
    pub name: Option<String>,
    pub arn: Option<String>,
    /// Which value of the item this is (what orders it against another answer).
    pub revision: Revision,
    pub fetched_at_ms: u64,
    pub ttl_ms: u64,
    /// When refresh-ahead picks it up (jittered per entry).
    pub ahead_at_ms: u64,
    /// When its answer was received, on the fetch clock (see `order`).
    pub received: u64,
    /// Loaded by the config file (named, or found by a `path` or `filter`): never evicted.
    pub pinned: bool,
    pub stats: std::sync::Arc<EntryStats>,
}

impl Entry {
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.fetched_at_ms) < self.ttl_ms
    }

    pub fn expires_at_ms(&self) -> u64 {
        self.fetched_at_ms.saturating_add(self.ttl_ms)
    }

    pub fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.fetched_at_ms) / 1000
    }
}

/// Per-item counters and failure state, carried from one entry to its replacement.
#[derive(Default)]
pub struct EntryStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub last_read_ms: AtomicU64,
    /// Consecutive failed refreshes.
    pub failures: AtomicU32,
    /// While a transient failure is being waited out, readers get the stale value at once.
    pub retry_after_ms: AtomicU64,
    /// The error code of the last failed refresh (never a message, never a value).
    pub last_error: Mutex<Option<String>>,
    /// An overlapping answer could not be ordered against the value held: refresh-ahead reads
    /// the item once more.
    pub confirm: AtomicBool,
}

impl EntryStats {
    /// Records a read; the timestamp is only written when it moved by a second, so hot
    /// entries do not bounce a cache line between cores on every hit.
    pub fn touch(&self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_read_ms.load(Relaxed)) >= 1000 {
            self.last_read_ms.store(now_ms, Relaxed);
        }
    }

    pub fn record_success(&self) {
        if self.failures.swap(0, Relaxed) != 0 {
            self.retry_after_ms.store(0, Relaxed);
            *self.last_error.lock().expect("lock holds no invariants") = None;
        }
    }

    /// Backs off after consecutive transient failures (throttling among them): 1 s, 2 s, 4 s …
    /// up to 30 s, the second half of each at random, so environments that failed together do
    /// not come back together, and refresh-ahead does not try again at every INVOKE.
    pub fn record_failure(&self, code: &str, transient: bool, now_ms: u64) {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if transient {
            let backoff = (1000u64 << (n - 1).min(5)).min(30_000);
            let half = std::time::Duration::from_millis(backoff / 2);
            let jitter = crate::upstream::backoff(0, half, half).as_millis() as u64;
            self.retry_after_ms.store(now_ms + backoff / 2 + jitter, Relaxed);
        }
        *self.last_error.lock().expect("lock holds no invariants") = Some(code.to_string());
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("lock holds no invariants").clone()
    }
}
