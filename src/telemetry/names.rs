//! Metric names, units and histogram boundaries: the contract (README, "Telemetry"), in one place.
//! Dashboards use exactly these names (after the usual OTLP → Prometheus translation).

pub const REQUESTS: &str = "secrets_cache.requests";
pub const REQUEST_DURATION: &str = "secrets_cache.request.duration";
pub const FETCH_DURATION: &str = "secrets_cache.fetch.duration";
pub const STALENESS: &str = "secrets_cache.staleness";
pub const REFRESHES: &str = "secrets_cache.refreshes";
pub const ENTRIES: &str = "secrets_cache.entries";
pub const BYTES: &str = "secrets_cache.bytes";
pub const EVICTIONS: &str = "secrets_cache.evictions";
pub const THROTTLED: &str = "secrets_cache.throttled";
pub const FAAS_INVOCATIONS: &str = "faas.invocations";
pub const FAAS_COLDSTARTS: &str = "faas.coldstarts";
pub const FAAS_ERRORS: &str = "faas.errors";
pub const FAAS_TIMEOUTS: &str = "faas.timeouts";
pub const FAAS_INIT_DURATION: &str = "faas.init_duration";
pub const FAAS_INVOKE_DURATION: &str = "faas.invoke_duration";

/// Attribute keys.
pub const SOURCE: &str = "source";
pub const CACHE_RESULT: &str = "cache.result";
pub const RPC_METHOD: &str = "rpc.method";
pub const OUTCOME: &str = "outcome";
pub const ERROR_TYPE: &str = "error.type";
pub const TRIGGER: &str = "trigger";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// How one metric is exported.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
    pub description: &'static str,
    /// Explicit bucket boundaries for histograms.
    pub boundaries: &'static [f64],
}

/// A cached read costs tens of microseconds; a miss, milliseconds to seconds.
const REQUEST_BOUNDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const FETCH_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const STALENESS_BOUNDS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 86_400.0,
];
const INVOKE_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

pub const ALL: &[Spec] = &[
    spec(REQUESTS, Kind::Counter, "{request}", "Cache reads by source and result", &[]),
    spec(
        REQUEST_DURATION,
        Kind::Histogram,
        "s",
        "Time to answer a cache read",
        REQUEST_BOUNDS,
    ),
    spec(
        FETCH_DURATION,
        Kind::Histogram,
        "s",
        "Upstream AWS calls by method and outcome",
        FETCH_BOUNDS,
    ),
    spec(
        STALENESS,
        Kind::Histogram,
        "s",
        "Age of a value when it was served",
        STALENESS_BOUNDS,
    ),
    spec(
        REFRESHES,
        Kind::Counter,
        "{refresh}",
        "Upstream fetches of cache entries by trigger and outcome",
        &[],
    ),
    spec(ENTRIES, Kind::Gauge, "{entry}", "Entries in the cache", &[]),
    spec(BYTES, Kind::Gauge, "By", "Bytes of cached response bodies", &[]),
    spec(
        EVICTIONS,
        Kind::Counter,
        "{eviction}",
        "Entries evicted to stay within the cache size",
        &[],
    ),
    spec(
        THROTTLED,
        Kind::Counter,
        "{answer}",
        "Answers AWS throttled, by source and method (each attempt)",
        &[],
    ),
    spec(FAAS_INVOCATIONS, Kind::Counter, "{invocation}", "Invocations of the function", &[]),
    spec(
        FAAS_COLDSTARTS,
        Kind::Counter,
        "{coldstart}",
        "Invocations that were cold starts",
        &[],
    ),
    spec(FAAS_ERRORS, Kind::Counter, "{error}", "Invocations that ended in an error", &[]),
    spec(FAAS_TIMEOUTS, Kind::Counter, "{timeout}", "Invocations that timed out", &[]),
    spec(FAAS_INIT_DURATION, Kind::Histogram, "s", "Init phase duration", INVOKE_BOUNDS),
    spec(FAAS_INVOKE_DURATION, Kind::Histogram, "s", "Invocation duration", INVOKE_BOUNDS),
];

const fn spec(name: &'static str, kind: Kind, unit: &'static str, description: &'static str, boundaries: &'static [f64]) -> Spec {
    Spec {
        name,
        kind,
        unit,
        description,
        boundaries,
    }
}

pub fn find(name: &str) -> Option<&'static Spec> {
    ALL.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_histograms_have_sorted_bounds() {
        for (i, s) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|o| o.name != s.name), "{} twice", s.name);
            assert_eq!(s.kind == Kind::Histogram, !s.boundaries.is_empty(), "{}", s.name);
            assert!(s.boundaries.windows(2).all(|w| w[0] < w[1]), "{}", s.name);
        }
        assert_eq!(find(REQUESTS).map(|s| s.unit), Some("{request}"));
    }
}
