//! Spans: a SERVER span per cache request and a CLIENT span per AWS call, parented on the
//! function's trace, made here (`Spans`) and only here: the HTTP server and the upstream make
//! one call each. Finished spans wait in a bounded buffer until the lifecycle flushes (no
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
use crate::lambda::XRayHeader;

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

/// Makes our spans, with the tracer the OTLP pipeline gives (`Otel::spans`); without one (no
/// traces exported) every call is a no-op that costs a branch.
#[derive(Clone, Default)]
pub struct Spans {
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
}

/// A SERVER span for one cache read (`Spans::read`).
pub struct ReadSpan {
    cx: Context,
}

/// A CLIENT span for one AWS call (`Spans::call`); nothing when traces are off.
pub struct CallSpan(Option<Span>);

impl Spans {
    pub fn new(tracer: Option<opentelemetry_sdk::trace::SdkTracer>) -> Spans {
        Spans { tracer }
    }

    /// A SERVER span for a read of `service`, parented on the request's own trace headers,
    /// else on `invocation`'s X-Ray header (`parent`); `None` when traces are off.
    pub fn read(
        &self,
        headers: &HeaderMap,
        invocation: Option<&InvocationTrace>,
        service: &'static str,
        route: &'static str,
    ) -> Option<ReadSpan> {
        use opentelemetry::trace::{SpanKind, Tracer};
        let tracer = self.tracer.as_ref()?;
        let parent = parent(headers, invocation.and_then(|i| i.xray.as_ref()));
        let mut attributes = invocation.map(|i| i.attributes()).unwrap_or_default();
        attributes.push(KeyValue::new(SOURCE, service));
        let span = tracer
            .span_builder(route)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Some(ReadSpan {
            cx: parent.with_span(span),
        })
    }

    /// A CLIENT span for `method` of `service` (`SecretsManager`, `SSM`), child of the context
    /// current now (a read's span, or the invocation's for refresh-ahead).
    pub fn call(&self, service: &'static str, method: &'static str) -> CallSpan {
        use opentelemetry::trace::{SpanKind, Tracer};
        let Some(tracer) = &self.tracer else {
            return CallSpan(None);
        };
        let span = tracer
            .span_builder(format!("{service}/{method}"))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new(RPC_SYSTEM, "aws-api"),
                KeyValue::new(RPC_SERVICE, service),
                KeyValue::new(RPC_METHOD, method),
            ])
            .start(tracer);
        CallSpan(Some(span))
    }
}

impl ReadSpan {
    /// Runs `future` (the read) inside this span: the fetch it starts is its child.
    pub async fn run<F: std::future::Future>(&self, future: F) -> F::Output {
        use opentelemetry::context::FutureExt;
        future.with_context(self.cx.clone()).await
    }

    /// Ends the span with the read's outcome: the cache result, or the error code.
    pub fn end(self, outcome: Result<&'static str, &str>) {
        use opentelemetry::trace::Status;
        let span = self.cx.span();
        match outcome {
            Ok(result) => span.set_attribute(KeyValue::new(CACHE_RESULT, result)),
            Err(code) => {
                span.set_attribute(KeyValue::new(CACHE_RESULT, "error"));
                span.set_attribute(KeyValue::new(ERROR_TYPE, code.to_string()));
                span.set_status(Status::error(code.to_string()));
            }
        }
        span.end();
    }
}

impl CallSpan {
    /// Ends the span with AWS's request id, when it answered, and the error code, if any.
    pub fn end(self, request_id: Option<&str>, error: Option<&str>) {
        use opentelemetry::trace::{Span, Status};
        let Some(mut span) = self.0 else {
            return;
        };
        if let Some(id) = request_id {
            span.set_attribute(KeyValue::new(AWS_REQUEST_ID, id.to_string()));
        }
        if let Some(code) = error {
            span.set_attribute(KeyValue::new(ERROR_TYPE, code.to_string()));
            span.set_status(Status::error(code.to_string()));
        }
        span.end();
    }
}

/// The invocation's trace as the current context until the guard drops: what refresh-ahead
/// starts then belongs to the invocation's trace.
pub fn enter_invocation(xray: Option<&XRayHeader>) -> opentelemetry::ContextGuard {
    parent(&HeaderMap::new(), xray).attach()
}

/// `future`, run in the trace context current now: spans it opens (a fetch's CLIENT span)
/// belong to whoever started it (a reader, or an invocation), even in another task.
pub fn in_current_context<F: std::future::Future>(future: F) -> impl std::future::Future<Output = F::Output> {
    use opentelemetry::context::FutureExt;
    future.with_current_context()
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
}
