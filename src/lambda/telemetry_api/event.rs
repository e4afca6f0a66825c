//! Telemetry API records (schema 2022-12-13, tolerant of later ones). Each element of a
//! delivery is parsed on its own: an unknown `type`, a missing field or a wrong shape costs
//! that element only, never the batch.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum PlatformEvent {
    InitStart {
        initialization_type: String,
        phase: Option<String>,
    },
    InitReport {
        status: Option<String>,
        duration_ms: Option<f64>,
    },
    Start {
        request_id: String,
    },
    RuntimeDone {
        request_id: String,
        status: String,
        error_type: Option<String>,
        duration_ms: Option<f64>,
    },
    Report {
        request_id: String,
        status: Option<String>,
        duration_ms: Option<f64>,
        init_duration_ms: Option<f64>,
    },
    RestoreStart,
    /// Any other type (`platform.extension`, `platform.logsDropped`, a type newer than this
    /// code, ...), kept by name only: records of unknown shape are never logged.
    Other(String),
}

/// Every element that is an object with a `type`; the count of elements that were not.
pub fn parse_batch(body: &[u8]) -> (Vec<PlatformEvent>, usize) {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
        return (Vec::new(), 1);
    };
    let mut malformed = 0;
    let events = items
        .iter()
        .filter_map(|item| {
            let event = parse_one(item);
            if event.is_none() {
                malformed += 1;
            }
            event
        })
        .collect();
    (events, malformed)
}

fn parse_one(item: &Value) -> Option<PlatformEvent> {
    let kind = item.get("type")?.as_str()?;
    let record = item.get("record").unwrap_or(&Value::Null);
    let text = |field: &str| record.get(field).and_then(Value::as_str).map(str::to_string);
    let metric = |field: &str| record.get("metrics").and_then(|m| m.get(field)).and_then(Value::as_f64);
    let event = match kind {
        "platform.initStart" => PlatformEvent::InitStart {
            initialization_type: text("initializationType").unwrap_or_default(),
            phase: text("phase"),
        },
        "platform.initReport" => PlatformEvent::InitReport {
            status: text("status"),
            duration_ms: metric("durationMs"),
        },
        "platform.start" => PlatformEvent::Start {
            request_id: text("requestId")?,
        },
        "platform.runtimeDone" => PlatformEvent::RuntimeDone {
            request_id: text("requestId")?,
            status: text("status").unwrap_or_else(|| "unknown".into()),
            error_type: text("errorType"),
            duration_ms: metric("durationMs"),
        },
        "platform.report" => PlatformEvent::Report {
            request_id: text("requestId")?,
            status: text("status"),
            duration_ms: metric("durationMs"),
            init_duration_ms: metric("initDurationMs"),
        },
        "platform.restoreStart" => PlatformEvent::RestoreStart,
        other => PlatformEvent::Other(other.chars().take(64).collect()),
    };
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_runtime_done_record() {
        let body = br#"[{"time":"2022-10-21T14:05:05.764Z","type":"platform.runtimeDone","record":{"requestId":"459921b5-681c-4a96-beb0-81e0aa586026","status":"success","tracing":{"spanId":"24cd7d670fa455f0","type":"X-Amzn-Trace-Id","value":"Root=1-6352a70e-1e2c502e358361800241fd45;Parent=35465b3a9e2f7c6a;Sampled=1"},"spans":[{"name":"responseLatency","start":"2022-10-21T14:05:03.165Z","durationMs":2598.0}],"metrics":{"durationMs":2599.0,"producedBytes":8}}}]"#;
        let (events, malformed) = parse_batch(body);
        assert_eq!(malformed, 0);
        assert_eq!(
            events,
            vec![PlatformEvent::RuntimeDone {
                request_id: "459921b5-681c-4a96-beb0-81e0aa586026".into(),
                status: "success".into(),
                error_type: None,
                duration_ms: Some(2599.0),
            }]
        );
    }

    #[test]
    fn one_bad_element_costs_only_itself() {
        let body = br#"[
            {"time":"t","type":"platform.initStart","record":{"initializationType":"snap-start","phase":"init","newField":[1,2]}},
            {"time":"t","type":"platform.somethingNew","record":{"x":1}},
            {"time":"t","type":"function","record":"[INFO] a log line"},
            {"time":"t","type":"platform.start"},
            "not an object",
            {"time":"t","type":"platform.start","record":{"requestId":"r1","version":"$LATEST"}},
            {"time":"t","type":"platform.report","record":{"requestId":"r0","status":"success","metrics":{"durationMs":12.5,"initDurationMs":80.0}}}
        ]"#;
        let (events, malformed) = parse_batch(body);
        assert_eq!(malformed, 2, "a start without requestId and a bare string");
        assert_eq!(
            events,
            vec![
                PlatformEvent::InitStart {
                    initialization_type: "snap-start".into(),
                    phase: Some("init".into())
                },
                PlatformEvent::Other("platform.somethingNew".into()),
                PlatformEvent::Other("function".into()),
                PlatformEvent::Start { request_id: "r1".into() },
                PlatformEvent::Report {
                    request_id: "r0".into(),
                    status: Some("success".into()),
                    duration_ms: Some(12.5),
                    init_duration_ms: Some(80.0)
                },
            ]
        );
    }

    #[test]
    fn a_body_that_is_not_an_array_is_one_malformed_delivery() {
        assert_eq!(parse_batch(b"{\"type\":\"platform.start\"}"), (vec![], 1));
        assert_eq!(parse_batch(b"garbage"), (vec![], 1));
        assert_eq!(parse_batch(b"[]"), (vec![], 0));
    }
}
