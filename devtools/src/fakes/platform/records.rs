//! The platform's records and ids: `platform.*` events as the Telemetry API delivers them,
//! timestamps, request ids, X-Ray headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Inner;

impl Inner {
    pub(super) fn emit(&mut self, kind: &str, record: Value) {
        let at = self.started.elapsed();
        self.events
            .push(json!({"time": iso8601(SystemTime::now()), "type": kind, "record": record}));
        self.emitted_at.push(at);
        if self.options.faults.unknown_events && kind.starts_with("platform.") {
            self.events
                .push(json!({"time": iso8601(SystemTime::now()), "type": "platform.fromTheFuture",
                                    "record": {"note": "a type this extension cannot know", "nested": {"a": [1, 2]}},
                                    "extraTopLevelField": true}));
            self.emitted_at.push(at);
        }
    }
}

/// `platform.start`.
pub(super) fn start(request_id: &str, version: &str, trace: &str) -> Value {
    json!({"requestId": request_id, "version": version,
           "tracing": {"spanId": &new_id()[..16], "type": "X-Amzn-Trace-Id", "value": trace}})
}

/// `platform.runtimeDone` for a function that ran `duration` and produced `produced` bytes.
pub(super) fn runtime_done(request_id: &str, trace: &str, status: &str, produced: usize, duration: Duration) -> Value {
    let mut record = json!({
        "requestId": request_id, "status": status,
        "metrics": {"durationMs": ms(duration), "producedBytes": produced},
        "spans": [
            {"name": "responseLatency", "start": iso8601(SystemTime::now() - duration), "durationMs": ms(duration)},
            {"name": "responseDuration", "start": iso8601(SystemTime::now()), "durationMs": 0.0}
        ],
        "tracing": {"spanId": &new_id()[..16], "type": "X-Amzn-Trace-Id", "value": trace},
    });
    if status != "success" {
        record["errorType"] = json!(if status == "timeout" {
            "Sandbox.Timedout"
        } else {
            "Function.Error"
        });
    }
    record
}

/// `platform.report`: `total` is the function's duration plus the longest post-runtime one;
/// the first invocation carries the init duration.
pub(super) fn report(request_id: &str, trace: &str, status: &str, total: Duration, memory_mb: u32, init_duration_ms: Option<f64>) -> Value {
    let mut metrics = json!({
        "durationMs": ms(total),
        "billedDurationMs": total.as_millis() as u64 + 1,
        "memorySizeMB": memory_mb,
        "maxMemoryUsedMB": 42,
    });
    if let Some(init) = init_duration_ms {
        metrics["initDurationMs"] = json!(init);
    }
    json!({"requestId": request_id, "status": status, "metrics": metrics,
           "tracing": {"spanId": &new_id()[..16], "type": "X-Amzn-Trace-Id", "value": trace}})
}

pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `2026-11-21T10:00:00.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// 32 random hex digits.
pub(crate) fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

pub(super) fn new_uuid() -> String {
    let h = new_id();
    format!("{}-{}-4{}-a{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// An X-Ray header as Lambda passes it: `Root=1-<8 hex time>-<24 hex>;Parent=<16 hex>;Sampled=1`.
pub(super) fn new_trace_header() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let id = new_id();
    format!("Root=1-{secs:08x}-{};Parent={};Sampled=1", &id[..24], &id[16..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_666_361_105_764);
        assert_eq!(iso8601(t), "2022-10-21T14:05:05.764Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn ids_have_the_platform_shapes() {
        let uuid = new_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.matches('-').count(), 4);
        let trace = new_trace_header();
        let root = trace.strip_prefix("Root=1-").unwrap();
        assert_eq!(root.split(';').next().unwrap().len(), 8 + 1 + 24);
        assert!(trace.contains(";Parent=") && trace.ends_with(";Sampled=1"));
    }
}
