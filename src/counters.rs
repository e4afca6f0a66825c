//! What the call sites (http, cache, source) record. Each method updates the atomic counters
//! `/status` and the demo read, and the `metrics` facade that the OTLP exporter reads, in the
//! same call, so the two always agree. The hot-path handles are created once in `new()`; when
//! no recorder is installed (no OTLP endpoint) they are no-ops.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};
use serde::Serialize;

use crate::config::ByService;
use crate::key::Service;
use crate::telemetry::names;

/// `cache.result` of `secrets_cache.requests` (README, "Telemetry").
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

pub struct Counters {
    requests: ByService<[AtomicU64; 5]>,
    exported: Exported,
    /// Upstream API calls (a batch call counts once), by outcome ok/error.
    upstream_calls: ByService<[AtomicU64; 2]>,
    /// Items refreshed, by trigger and outcome ok/error.
    refreshes: ByService<[[AtomicU64; 2]; 4]>,
    evictions: AtomicU64,
    /// Throttled answers by service and operation (each attempt). Rare: a lock is fine.
    throttled: std::sync::Mutex<Vec<(Service, String, u64)>>,
    /// Request-path time in microseconds, for the mean in `/status`.
    request_micros: AtomicU64,
}

/// Facade handles for the per-request metrics, by service and result.
struct Exported {
    requests: ByService<[Counter; 5]>,
    durations: ByService<[Histogram; 5]>,
    staleness: ByService<Histogram>,
}

impl Exported {
    fn new() -> Exported {
        Exported {
            requests: by_service_and_result(|s, r| counter!(names::REQUESTS, names::SOURCE => s, names::CACHE_RESULT => r)),
            durations: by_service_and_result(|s, r| histogram!(names::REQUEST_DURATION, names::SOURCE => s, names::CACHE_RESULT => r)),
            staleness: ByService::from_fn(|s| histogram!(names::STALENESS, names::SOURCE => s.as_str())),
        }
    }
}

/// One handle per (service, result), indexed like the atomic counters.
fn by_service_and_result<T>(make: impl Fn(&'static str, &'static str) -> T) -> ByService<[T; 5]> {
    ByService::from_fn(|s| CacheResult::ALL.map(|r| make(s.as_str(), r.as_str())))
}

impl Default for Counters {
    fn default() -> Self {
        Counters::new()
    }
}

impl Counters {
    /// Binds the facade handles to the recorder installed now (install it first).
    pub fn new() -> Counters {
        Counters {
            requests: Default::default(),
            exported: Exported::new(),
            upstream_calls: Default::default(),
            refreshes: Default::default(),
            evictions: AtomicU64::new(0),
            throttled: Default::default(),
            request_micros: AtomicU64::new(0),
        }
    }

    /// One cache read. `age` is how old the served value was (`None` for an error).
    pub fn request(&self, service: Service, result: CacheResult, elapsed: Duration, age: Option<Duration>) {
        let r = result as usize;
        self.requests.get(service)[r].fetch_add(1, Relaxed);
        self.request_micros.fetch_add(elapsed.as_micros() as u64, Relaxed);
        self.exported.requests.get(service)[r].increment(1);
        self.exported.durations.get(service)[r].record(elapsed.as_secs_f64());
        if let Some(age) = age {
            self.exported.staleness.get(service).record(age.as_secs_f64());
        }
    }

    /// One AWS API call (a batch call counts once); `error` is its error code.
    pub fn upstream_call(&self, service: Service, method: &'static str, error: Option<&str>, elapsed: Duration) {
        self.upstream_calls.get(service)[usize::from(error.is_some())].fetch_add(1, Relaxed);
        let seconds = elapsed.as_secs_f64();
        match error {
            None => {
                histogram!(names::FETCH_DURATION, names::SOURCE => service.as_str(), names::RPC_METHOD => method, names::OUTCOME => "ok")
                    .record(seconds)
            }
            Some(code) => histogram!(
                names::FETCH_DURATION,
                names::SOURCE => service.as_str(),
                names::RPC_METHOD => method,
                names::OUTCOME => "error",
                names::ERROR_TYPE => bounded_error_type(code)
            )
            .record(seconds),
        }
    }

    pub fn refresh(&self, service: Service, trigger: Trigger, ok: bool) {
        self.refreshes.get(service)[trigger as usize][usize::from(!ok)].fetch_add(1, Relaxed);
        counter!(
            names::REFRESHES,
            names::SOURCE => service.as_str(),
            names::TRIGGER => trigger.as_str(),
            names::OUTCOME => if ok { "ok" } else { "error" }
        )
        .increment(1);
    }

    /// After each change of the cache: `secrets_cache.entries` by source, `secrets_cache.bytes`.
    pub fn cache_size(&self, entries: ByService<usize>, bytes: usize) {
        for service in Service::ALL {
            metrics::gauge!(names::ENTRIES, names::SOURCE => service.as_str()).set(*entries.get(service) as f64);
        }
        metrics::gauge!(names::BYTES).set(bytes as f64);
    }

    pub fn eviction(&self) {
        self.evictions.fetch_add(1, Relaxed);
        counter!(names::EVICTIONS).increment(1);
    }

    /// AWS throttled an attempt of `operation`; returns how many it has throttled so far.
    pub fn throttled(&self, service: Service, operation: &str) -> u64 {
        let operation = bounded_error_type(operation);
        counter!(names::THROTTLED, names::SOURCE => service.as_str(), names::RPC_METHOD => operation.clone()).increment(1);
        let mut throttled = self.throttled.lock().expect("throttled lock holds no invariants");
        match throttled.iter_mut().find(|(s, o, _)| *s == service && *o == operation) {
            Some((_, _, n)) => {
                *n += 1;
                *n
            }
            None => {
                throttled.push((service, operation, 1));
                1
            }
        }
    }

    pub fn requests(&self, service: Service, result: CacheResult) -> u64 {
        self.requests.get(service)[result as usize].load(Relaxed)
    }

    pub fn upstream_calls(&self, service: Service) -> (u64, u64) {
        let c = self.upstream_calls.get(service);
        (c[0].load(Relaxed), c[1].load(Relaxed))
    }

    pub fn status(&self) -> CountersStatus {
        let mut requests = Vec::new();
        let mut total = 0;
        for service in Service::ALL {
            for result in CacheResult::ALL {
                let n = self.requests(service, result);
                total += n;
                if n > 0 {
                    requests.push(Count {
                        source: service.as_str(),
                        label: result.as_str(),
                        count: n,
                    });
                }
            }
        }
        let hits: u64 = Service::ALL.iter().map(|s| self.requests(*s, CacheResult::Hit)).sum();
        let mut upstream = Vec::new();
        let mut refreshes = Vec::new();
        for service in Service::ALL {
            let (ok, err) = self.upstream_calls(service);
            upstream.push(UpstreamCalls {
                source: service.as_str(),
                ok,
                error: err,
            });
            for trigger in Trigger::ALL {
                let c = &self.refreshes.get(service)[trigger as usize];
                let (ok, error) = (c[0].load(Relaxed), c[1].load(Relaxed));
                if ok + error > 0 {
                    refreshes.push(Refreshes {
                        source: service.as_str(),
                        trigger: trigger.as_str(),
                        ok,
                        error,
                    });
                }
            }
        }
        CountersStatus {
            requests_total: total,
            hit_ratio: if total == 0 { 0.0 } else { hits as f64 / total as f64 },
            mean_request_micros: self.request_micros.load(Relaxed).checked_div(total).unwrap_or(0),
            requests,
            upstream_calls: upstream,
            refreshes,
            evictions: self.evictions.load(Relaxed),
            throttled: self
                .throttled
                .lock()
                .expect("throttled lock holds no invariants")
                .iter()
                .map(|(s, operation, count)| Throttled {
                    source: s.as_str(),
                    operation: operation.clone(),
                    count: *count,
                })
                .collect(),
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
pub struct CountersStatus {
    pub requests_total: u64,
    pub hit_ratio: f64,
    pub mean_request_micros: u64,
    pub requests: Vec<Count>,
    pub upstream_calls: Vec<UpstreamCalls>,
    pub refreshes: Vec<Refreshes>,
    pub evictions: u64,
    /// Answers AWS throttled, by operation (each attempt, retries included).
    pub throttled: Vec<Throttled>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throttled {
    pub source: &'static str,
    pub operation: String,
    pub count: u64,
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
