//! Counters recorded at the call sites (http, cache, source). `/status` and the demo read them;
//! the telemetry layer exports the same numbers. One handle, passed in, nothing global.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use crate::source::Source;

/// `cache.result` of SPEC §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Stale,
    Refresh,
    Error,
}

impl CacheResult {
    pub const ALL: [CacheResult; 5] = [
        CacheResult::Hit,
        CacheResult::Miss,
        CacheResult::Stale,
        CacheResult::Refresh,
        CacheResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
            CacheResult::Refresh => "refresh",
            CacheResult::Error => "error",
        }
    }
}

/// `trigger` of `secrets_cache.refreshes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Prefetch,
    Expired,
    Ahead,
    RefreshNow,
}

impl Trigger {
    pub const ALL: [Trigger; 4] = [Trigger::Prefetch, Trigger::Expired, Trigger::Ahead, Trigger::RefreshNow];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Prefetch => "prefetch",
            Trigger::Expired => "expired",
            Trigger::Ahead => "ahead",
            Trigger::RefreshNow => "refresh_now",
        }
    }
}

type PerSource<T> = [T; 2];

#[derive(Default)]
pub struct Metrics {
    requests: PerSource<[AtomicU64; 5]>,
    /// Upstream API calls (a batch call counts once), by outcome ok/error.
    upstream_calls: PerSource<[AtomicU64; 2]>,
    /// Items refreshed, by trigger and outcome ok/error.
    refreshes: PerSource<[[AtomicU64; 2]; 4]>,
    evictions: AtomicU64,
    /// Request-path time in microseconds, for the mean in `/status`.
    request_micros: AtomicU64,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn request(&self, source: Source, result: CacheResult, elapsed: Duration) {
        self.requests[source.index()][result as usize].fetch_add(1, Relaxed);
        self.request_micros.fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// One AWS API call. `method` and `elapsed` are recorded by the OTLP exporter
    /// (`secrets_cache.fetch.duration`, telemetry issue); `/status` keeps only the counts.
    pub fn upstream_call(&self, source: Source, _method: &'static str, ok: bool, _elapsed: Duration) {
        self.upstream_calls[source.index()][usize::from(!ok)].fetch_add(1, Relaxed);
    }

    pub fn refresh(&self, source: Source, trigger: Trigger, ok: bool) {
        self.refreshes[source.index()][trigger as usize][usize::from(!ok)].fetch_add(1, Relaxed);
    }

    pub fn eviction(&self) {
        self.evictions.fetch_add(1, Relaxed);
    }

    pub fn requests(&self, source: Source, result: CacheResult) -> u64 {
        self.requests[source.index()][result as usize].load(Relaxed)
    }

    pub fn upstream_calls(&self, source: Source) -> (u64, u64) {
        let c = &self.upstream_calls[source.index()];
        (c[0].load(Relaxed), c[1].load(Relaxed))
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut requests = Vec::new();
        let mut total = 0;
        for source in Source::ALL {
            for result in CacheResult::ALL {
                let n = self.requests(source, result);
                total += n;
                if n > 0 {
                    requests.push(Count {
                        source: source.as_str(),
                        label: result.as_str(),
                        count: n,
                    });
                }
            }
        }
        let hits: u64 = Source::ALL.iter().map(|s| self.requests(*s, CacheResult::Hit)).sum();
        let mut upstream = Vec::new();
        let mut refreshes = Vec::new();
        for source in Source::ALL {
            let (ok, err) = self.upstream_calls(source);
            upstream.push(Upstream {
                source: source.as_str(),
                ok,
                error: err,
            });
            for trigger in Trigger::ALL {
                let c = &self.refreshes[source.index()][trigger as usize];
                let (ok, error) = (c[0].load(Relaxed), c[1].load(Relaxed));
                if ok + error > 0 {
                    refreshes.push(Refreshes {
                        source: source.as_str(),
                        trigger: trigger.as_str(),
                        ok,
                        error,
                    });
                }
            }
        }
        MetricsSnapshot {
            requests_total: total,
            hit_ratio: if total == 0 { 0.0 } else { hits as f64 / total as f64 },
            mean_request_micros: self.request_micros.load(Relaxed).checked_div(total).unwrap_or(0),
            requests,
            upstream_calls: upstream,
            refreshes,
            evictions: self.evictions.load(Relaxed),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    pub requests_total: u64,
    pub hit_ratio: f64,
    pub mean_request_micros: u64,
    pub requests: Vec<Count>,
    pub upstream_calls: Vec<Upstream>,
    pub refreshes: Vec<Refreshes>,
    pub evictions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub source: &'static str,
    #[serde(rename = "cache.result")]
    pub label: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub source: &'static str,
    pub ok: u64,
    pub error: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refreshes {
    pub source: &'static str,
    pub trigger: &'static str,
    pub ok: u64,
    pub error: u64,
}
