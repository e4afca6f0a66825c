//! What the call sites (http, cache, source) record. Each method updates the atomic counters
//! `/status` and the demo read, and the `metrics` facade that the OTLP exporter reads, in the
//! same call, so the two always agree. The hot-path handles are created once in `new()`; when
//! no recorder is installed (no OTLP endpoint) they are no-ops.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};
use serde::Serialize;

use crate::key::Source;
use crate::telemetry::names;

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

pub struct Metrics {
    requests: PerSource<[AtomicU64; 5]>,
    exported: Exported,
    /// Upstream API calls (a batch call counts once), by outcome ok/error.
    upstream_calls: PerSource<[AtomicU64; 2]>,
    /// Items refreshed, by trigger and outcome ok/error.
    refreshes: PerSource<[[AtomicU64; 2]; 4]>,
    evictions: AtomicU64,
    /// Request-path time in microseconds, for the mean in `/status`.
    request_micros: AtomicU64,
}

/// Facade handles for the per-request metrics, by source and result.
struct Exported {
    requests: PerSource<[Counter; 5]>,
    durations: PerSource<[Histogram; 5]>,
    staleness: PerSource<Histogram>,
}

impl Exported {
    fn new() -> Exported {
        Exported {
            requests: by_source_and_result(|s, r| counter!(names::REQUESTS, names::SOURCE => s, names::CACHE_RESULT => r)),
            durations: by_source_and_result(|s, r| histogram!(names::REQUEST_DURATION, names::SOURCE => s, names::CACHE_RESULT => r)),
            staleness: Source::ALL.map(|s| histogram!(names::STALENESS, names::SOURCE => s.as_str())),
        }
    }
}

/// One handle per (source, result), indexed like the atomic counters.
fn by_source_and_result<T>(make: impl Fn(&'static str, &'static str) -> T) -> PerSource<[T; 5]> {
    Source::ALL.map(|s| CacheResult::ALL.map(|r| make(s.as_str(), r.as_str())))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Binds the facade handles to the recorder installed now (install it first).
    pub fn new() -> Metrics {
        Metrics {
            requests: Default::default(),
            exported: Exported::new(),
            upstream_calls: Default::default(),
            refreshes: Default::default(),
            evictions: AtomicU64::new(0),
            request_micros: AtomicU64::new(0),
        }
    }

    /// One cache read. `age` is how old the served value was (`None` for an error).
    pub fn request(&self, source: Source, result: CacheResult, elapsed: Duration, age: Option<Duration>) {
        let (s, r) = (source.index(), result as usize);
        self.requests[s][r].fetch_add(1, Relaxed);
        self.request_micros.fetch_add(elapsed.as_micros() as u64, Relaxed);
        self.exported.requests[s][r].increment(1);
        self.exported.durations[s][r].record(elapsed.as_secs_f64());
        if let Some(age) = age {
            self.exported.staleness[s].record(age.as_secs_f64());
        }
    }

    /// One AWS API call (a batch call counts once); `error` is its error code.
    pub fn upstream_call(&self, source: Source, method: &'static str, error: Option<&str>, elapsed: Duration) {
        self.upstream_calls[source.index()][usize::from(error.is_some())].fetch_add(1, Relaxed);
        let seconds = elapsed.as_secs_f64();
        match error {
            None => {
                histogram!(names::FETCH_DURATION, names::SOURCE => source.as_str(), names::RPC_METHOD => method, names::OUTCOME => "ok")
                    .record(seconds)
            }
            Some(code) => histogram!(
                names::FETCH_DURATION,
                names::SOURCE => source.as_str(),
                names::RPC_METHOD => method,
                names::OUTCOME => "error",
                names::ERROR_TYPE => bounded_error_type(code)
            )
            .record(seconds),
        }
    }

    pub fn refresh(&self, source: Source, trigger: Trigger, ok: bool) {
        self.refreshes[source.index()][trigger as usize][usize::from(!ok)].fetch_add(1, Relaxed);
        counter!(
            names::REFRESHES,
            names::SOURCE => source.as_str(),
            names::TRIGGER => trigger.as_str(),
            names::OUTCOME => if ok { "ok" } else { "error" }
        )
        .increment(1);
    }

    /// After each change of the cache: `secrets_cache.entries` by source, `secrets_cache.bytes`.
    pub fn cache_size(&self, entries: [usize; 2], bytes: usize) {
        for source in Source::ALL {
            metrics::gauge!(names::ENTRIES, names::SOURCE => source.as_str()).set(entries[source.index()] as f64);
        }
        metrics::gauge!(names::BYTES).set(bytes as f64);
    }

    pub fn eviction(&self) {
        self.evictions.fetch_add(1, Relaxed);
        counter!(names::EVICTIONS).increment(1);
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
            upstream.push(UpstreamCalls {
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

/// AWS error codes are a bounded set of identifiers; anything that does not look like one is
/// folded into `other` so a strange upstream cannot blow up metric cardinality.
fn bounded_error_type(code: &str) -> String {
    if !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_') {
        code.to_string()
    } else {
        "other".to_string()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    pub requests_total: u64,
    pub hit_ratio: f64,
    pub mean_request_micros: u64,
    pub requests: Vec<Count>,
    pub upstream_calls: Vec<UpstreamCalls>,
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

/// API calls to one service, by outcome.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamCalls {
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
