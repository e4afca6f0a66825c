//! What `GET /2020-01-01/extension/event/next` returns, parsed tolerantly: unknown fields are
//! ignored, `tracing` is optional, shutdown reasons are matched case-insensitively (the docs
//! write `SPINDOWN`, the runtime emulator sends `spindown`) and unknown ones become `Other`.

use serde::Deserialize;

use super::xray::XRayHeader;

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
    /// AWS's Runtime Interface Emulator (`sam local`) ending the sandbox.
    SandboxTerminated,
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
                "sandboxterminated" => ShutdownReason::SandboxTerminated,
                _ => ShutdownReason::Other,
            };
            Ok(Event::Shutdown(Shutdown { reason, deadline_ms }))
        }
        _ => Ok(Event::Unknown(raw.event_type)),
    }
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
            ("SandboxTerminated", ShutdownReason::SandboxTerminated),
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
}
