//! Spans: a SERVER span per cache request and a CLIENT span per AWS call, parented on the
//! function's trace. Finished spans wait in a bounded buffer until the lifecycle flushes (no
//! background thread or timer that a freeze would cut in half).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, Key, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::names;

pub const RPC_SYSTEM: Key = Key::from_static_str("rpc.system");
pub const RPC_SERVICE: Key = Key::from_static_str("rpc.service");
pub const RPC_METHOD: Key = Key::from_static_str(names::RPC_METHOD);
// Span attributes shared with the metrics: one spelling each.
pub const SOURCE: Key = Key::from_static_str(names::SOURCE);
pub const CACHE_RESULT: Key = Key::from_static_str(names::CACHE_RESULT);
pub const ERROR_TYPE: Key = Key::from_static_str(names::ERROR_TYPE);
pub const AWS_REQUEST_ID: Key = Key::from_static_str("aws.request_id");
pub const FAAS_INVOCATION_ID: Key = Key::from_static_str("faas.invocation_id");
pub const FAAS_COLDSTART: Key = Key::from_static_str("faas.coldstart");

/// A span processor that only buffers; `take` hands the spans to the exporter at flush time.
/// At most `max` wait (`OTEL_BSP_MAX_QUEUE_SIZE`); beyond it they are dropped and counted.
/// While one batch is being exported the next can fill, so up to twice this many are in memory.
#[derive(Debug, Clone)]
pub struct SpanBuffer {
    spans: Arc<Mutex<Vec<SpanData>>>,
    max: usize,
    dropped: Arc<AtomicU64>,
}

impl SpanBuffer {
    pub fn new(max: usize) -> SpanBuffer {
        SpanBuffer {
            spans: Arc::default(),
            max,
            dropped: Arc::default(),
        }
    }

    pub fn take(&self) -> Vec<SpanData> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Spans dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

impl SpanProcessor for SpanBuffer {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() < self.max {
            spans.push(span);
        } else {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
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

/// The parent of a cache request's span: the request's own `traceparent`, else its
/// `X-Amzn-Trace-Id`, else `invocation`'s X-Ray header (the INVOKE event's); else none (a new
/// root).
pub fn parent(headers: &HeaderMap, invocation: Option<&XRayHeader>) -> Context {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let remote = header("traceparent")
        .and_then(traceparent)
        .or_else(|| header("x-amzn-trace-id").and_then(XRayHeader::parse).and_then(|x| xray(&x)))
        .or_else(|| invocation.and_then(xray));
    match remote {
        Some(sc) => Context::new().with_remote_span_context(sc),
        None => Context::new(),
    }
}

/// W3C `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
pub fn traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

/// X-Ray `Root`/`Parent`/`Sampled` as a remote parent. Without `Parent` there is nothing to
/// hang a span on; `Sampled` absent or `?` means sampled (decide locally: keep).
fn xray(x: &XRayHeader) -> Option<SpanContext> {
    let trace_id = TraceId::from_hex(&x.trace_id).ok()?;
    let span_id = SpanId::from_hex(x.parent_id.as_deref()?).ok()?;
    let flags = if x.sampled == Some(false) {
        TraceFlags::default()
    } else {
        TraceFlags::SAMPLED
    };
    Some(SpanContext::new(trace_id, span_id, flags, true, TraceState::default()))
}

/// What a span needs to know about the invocation a read belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationTrace {
    pub request_id: String,
    /// The first invocation this process serves.
    pub coldstart: bool,
    /// The INVOKE event's X-Ray header, when tracing is on.
    pub xray: Option<XRayHeader>,
}

impl InvocationTrace {
    /// `faas.invocation_id` and `faas.coldstart`.
    pub fn attributes(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new(FAAS_INVOCATION_ID, self.request_id.clone()),
            KeyValue::new(FAAS_COLDSTART, self.coldstart),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_span_buffer_drops_and_counts() {
        use opentelemetry::trace::{Tracer, TracerProvider};
        let buffer = SpanBuffer::new(2);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(buffer.clone())
            .build();
        let tracer = provider.tracer("test");
        for name in ["a", "b", "c"] {
            tracer.in_span(name, |_| {});
        }
        assert_eq!(buffer.dropped(), 1);
        let kept: Vec<String> = buffer.take().into_iter().map(|s| s.name.into_owned()).collect();
        assert_eq!(kept, ["a", "b"]);
        // Taking makes room again; the count is cumulative.
        tracer.in_span("d", |_| {});
        assert_eq!((buffer.take().len(), buffer.dropped()), (1, 1));
    }

    #[test]
    fn traceparent_parses_the_w3c_form_only() {
        let sc = traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        assert!(
            !traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .is_sampled()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn parent_prefers_the_request_then_the_invocation() {
        let invocation = XRayHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1").unwrap();
        let mut headers = HeaderMap::new();
        let cx = parent(&headers, Some(&invocation));
        assert_eq!(cx.span().span_context().trace_id().to_string(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(cx.span().span_context().span_id().to_string(), "53995c3f42cd8ad8");

        headers.insert(
            "x-amzn-trace-id",
            "Root=1-11111111-222222222222222222222222;Parent=3333333333333333;Sampled=0"
                .parse()
                .unwrap(),
        );
        let cx = parent(&headers, Some(&invocation));
        assert_eq!(cx.span().span_context().trace_id().to_string(), "11111111222222222222222222222222");
        assert!(!cx.span().span_context().is_sampled());

        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
        );
        let cx = parent(&headers, Some(&invocation));
        assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");

        assert!(!parent(&HeaderMap::new(), None).has_active_span());
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
