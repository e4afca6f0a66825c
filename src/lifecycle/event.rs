//! What `GET /2020-01-01/extension/event/next` returns, parsed tolerantly: unknown fields are
//! ignored, `tracing` is optional, shutdown reasons are matched case-insensitively (the docs
//! write `SPINDOWN`, the runtime emulator sends `spindown`) and unknown ones become `Other`.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Invoke(Invoke),
    Shutdown(Shutdown),
    /// An event type this version does not know; logged and skipped, never fatal.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoke {
    pub request_id: String,
    /// The function's timeout instant, Unix epoch milliseconds.
    pub deadline_ms: u64,
    pub invoked_function_arn: Option<String>,
    /// The X-Ray header of this invocation, when tracing is on.
    pub trace: Option<XRayHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    pub reason: ShutdownReason,
    /// The instant the process is killed, Unix epoch milliseconds.
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    Spindown,
    Timeout,
    Failure,
    Other,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event is not JSON of the expected shape: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    event_type: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    deadline_ms: Option<u64>,
    #[serde(default)]
    invoked_function_arn: Option<String>,
    #[serde(default)]
    tracing: Option<RawTracing>,
    #[serde(default)]
    shutdown_reason: Option<String>,
}

#[derive(Deserialize)]
struct RawTracing {
    #[serde(default)]
    value: Option<String>,
}

pub fn parse(body: &[u8]) -> Result<Event, EventError> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    let deadline_ms = raw.deadline_ms.unwrap_or(0);
    match raw.event_type.to_ascii_uppercase().as_str() {
        "INVOKE" => Ok(Event::Invoke(Invoke {
            request_id: raw
                .request_id
                .ok_or_else(|| EventError::Malformed("INVOKE without requestId".into()))?,
            deadline_ms,
            invoked_function_arn: raw.invoked_function_arn,
            trace: raw.tracing.and_then(|t| t.value).as_deref().and_then(XRayHeader::parse),
        })),
        "SHUTDOWN" => {
            let reason = match raw.shutdown_reason.unwrap_or_default().to_ascii_lowercase().as_str() {
                "spindown" => ShutdownReason::Spindown,
                "timeout" => ShutdownReason::Timeout,
                "failure" => ShutdownReason::Failure,
                _ => ShutdownReason::Other,
            };
            Ok(Event::Shutdown(Shutdown { reason, deadline_ms }))
        }
        _ => Ok(Event::Unknown(raw.event_type)),
    }
}

/// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=557abcec3ee5a047;Sampled=1`, as in the
/// INVOKE event, `platform.*` records and the `X-Amzn-Trace-Id` request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRayHeader {
    /// The OpenTelemetry trace id: the two hex groups of `Root` after `1-`, 32 lowercase hex.
    pub trace_id: String,
    /// 16 lowercase hex, when present.
    pub parent_id: Option<String>,
    /// `Sampled=1` / `0`; `None` when absent or `?` (decide locally).
    pub sampled: Option<bool>,
}

impl XRayHeader {
    pub fn parse(value: &str) -> Option<XRayHeader> {
        let (mut root, mut parent, mut sampled) = (None, None, None);
        for part in value.split(';') {
            let (k, v) = part.trim().split_once('=')?;
            match k.trim() {
                "Root" => root = Some(v.trim()),
                "Parent" => parent = Some(v.trim()),
                "Sampled" => {
                    sampled = match v.trim() {
                        "1" => Some(true),
                        "0" => Some(false),
                        _ => None,
                    }
                }
                _ => {} // Lineage= and future keys
            }
        }
        let mut groups = root?.split('-');
        let (version, time, random) = (groups.next()?, groups.next()?, groups.next()?);
        if version != "1" || groups.next().is_some() || time.len() != 8 || random.len() != 24 {
            return None;
        }
        let trace_id = format!("{time}{random}").to_ascii_lowercase();
        if !is_hex(&trace_id) || trace_id.bytes().all(|b| b == b'0') {
            return None;
        }
        let parent_id = parent
            .map(str::to_ascii_lowercase)
            .filter(|p| p.len() == 16 && is_hex(p) && p != "0000000000000000");
        Some(XRayHeader {
            trace_id,
            parent_id,
            sampled,
        })
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_with_tracing() {
        let body = br#"{"eventType":"INVOKE","deadlineMs":1700000000000,"requestId":"3da1f2dc-3222-475e-9205-e2e6c6318895",
            "invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:ExtensionTest",
            "tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"},
            "newField":{"x":1}}"#;
        let Event::Invoke(invoke) = parse(body).unwrap() else {
            panic!("not an invoke")
        };
        assert_eq!(invoke.request_id, "3da1f2dc-3222-475e-9205-e2e6c6318895");
        assert_eq!(invoke.deadline_ms, 1_700_000_000_000);
        let trace = invoke.trace.unwrap();
        assert_eq!(trace.trace_id, "5f35ae120c0fec141ab77a00bc047aa2");
        assert_eq!(trace.parent_id.as_deref(), Some("2be948a625588e32"));
        assert_eq!(trace.sampled, Some(true));
    }

    #[test]
    fn invoke_without_tracing() {
        let Event::Invoke(invoke) = parse(br#"{"eventType":"INVOKE","deadlineMs":1,"requestId":"r"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(invoke.trace, None);
    }

    #[test]
    fn shutdown_reasons_any_case_and_unknown() {
        for (text, reason) in [
            ("spindown", ShutdownReason::Spindown),
            ("TIMEOUT", ShutdownReason::Timeout),
            ("Failure", ShutdownReason::Failure),
            ("oom", ShutdownReason::Other),
        ] {
            let body = format!(r#"{{"eventType":"SHUTDOWN","shutdownReason":"{text}","deadlineMs":1700000002000}}"#);
            assert_eq!(
                parse(body.as_bytes()).unwrap(),
                Event::Shutdown(Shutdown {
                    reason,
                    deadline_ms: 1_700_000_002_000
                })
            );
        }
    }

    #[test]
    fn unknown_types_are_not_errors_but_garbage_is() {
        assert_eq!(parse(br#"{"eventType":"RESTORE"}"#).unwrap(), Event::Unknown("RESTORE".into()));
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"eventType":"INVOKE"}"#).is_err(), "INVOKE needs a request id");
    }

    #[test]
    fn xray_headers() {
        let h = XRayHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=557abcec3ee5a047;Sampled=1;Lineage=a:1").unwrap();
        assert_eq!(
            (h.trace_id.as_str(), h.parent_id.as_deref(), h.sampled),
            ("5759e988bd862e3fe1be46a994272793", Some("557abcec3ee5a047"), Some(true))
        );
        let h = XRayHeader::parse("Root=1-5759E988-BD862E3FE1BE46A994272793;Sampled=?").unwrap();
        assert_eq!(
            (h.trace_id.as_str(), h.parent_id, h.sampled),
            ("5759e988bd862e3fe1be46a994272793", None, None)
        );
        assert_eq!(XRayHeader::parse("Parent=557abcec3ee5a047"), None, "no root");
        assert_eq!(
            XRayHeader::parse("Root=2-5759e988-bd862e3fe1be46a994272793"),
            None,
            "unknown version"
        );
        assert_eq!(XRayHeader::parse("Root=1-5759e988-bd86"), None, "short");
        assert_eq!(
            XRayHeader::parse("Root=1-00000000-000000000000000000000000"),
            None,
            "all-zero id is invalid in OTel"
        );
        assert_eq!(XRayHeader::parse("garbage"), None);
    }
}
