//! OTLP out, configured only by the standard `OTEL_*` variables. No endpoint (or
//! `OTEL_SDK_DISABLED=true`) means no exporter, no recorder, and no cost: the `metrics` handles
//! stay no-ops. Exports happen when the lifecycle calls `flush`, never on a free-running timer
//! in extension mode (a frozen process has no timers), and each one is bounded by a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{MetricExporter, Protocol, RetryPolicy, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter as _};
use serde::Serialize;

use super::export::SharedReader;
use super::recorder::OtelRecorder;
use super::trace::SpanBuffer;
use crate::config::OtelConfig;

/// How the last exports went, for `/status`.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub exports: AtomicU64,
    pub failures: AtomicU64,
    pub last_micros: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct ExportStatus {
    pub endpoint: String,
    pub exports: u64,
    pub failures: u64,
    pub last_export_micros: u64,
    /// Finished spans dropped because `OTEL_BSP_MAX_QUEUE_SIZE` were already waiting.
    pub spans_dropped: u64,
}

pub struct Otel {
    reader: SharedReader,
    provider: SdkMeterProvider,
    exporter: MetricExporter,
    /// Spans wait here for the next flush; `None` when tracing is off.
    traces: Option<(SpanBuffer, SpanExporter, SdkTracerProvider)>,
    config: OtelConfig,
    stats: ExportStats,
}

impl Otel {
    /// Builds the pipeline; `instance` is this environment's `faas.instance`.
    pub fn new(config: &OtelConfig, instance: &str) -> Result<Arc<Otel>, String> {
        let config = config.clone();
        // No retries inside an export: a failed one is dropped and the lifecycle backs off, so
        // a collector that is down costs one attempt, not a series of them within the timeout.
        let exporter = if config.grpc {
            MetricExporter::builder()
                .with_tonic()
                .with_retry_policy(RetryPolicy::disabled())
                .with_endpoint(config.metrics_endpoint.clone())
                .with_timeout(config.timeout)
                .with_temporality(sdk_temporality(config.temporality))
                .build()
        } else {
            MetricExporter::builder()
                .with_http()
                .with_retry_policy(RetryPolicy::disabled())
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(config.metrics_endpoint.clone())
                .with_timeout(config.timeout)
                .with_temporality(sdk_temporality(config.temporality))
                .build()
        }
        .map_err(|e| format!("cannot build the OTLP metric exporter: {e}"))?;
        let mut attributes: Vec<KeyValue> = config
            .attributes
            .iter()
            .map(|(k, v)| match k.as_str() {
                "faas.max_memory" => KeyValue::new(k.clone(), v.parse::<i64>().unwrap_or(0)),
                _ => KeyValue::new(k.clone(), v.clone()),
            })
            .collect();
        attributes.push(KeyValue::new("faas.instance", instance.to_string()));
        attributes.push(KeyValue::new("service.instance.id", instance.to_string()));
        let resource = Resource::builder()
            .with_attributes(attributes)
            .with_service_name(config.service_name.clone())
            .build();
        let traces = match &config.traces_endpoint {
            None => None,
            Some(endpoint) => {
                let mut exporter = if config.grpc {
                    SpanExporter::builder()
                        .with_tonic()
                        .with_retry_policy(RetryPolicy::disabled())
                        .with_endpoint(endpoint.clone())
                        .with_timeout(config.timeout)
                        .build()
                } else {
                    SpanExporter::builder()
                        .with_http()
                        .with_retry_policy(RetryPolicy::disabled())
                        .with_protocol(Protocol::HttpBinary)
                        .with_endpoint(endpoint.clone())
                        .with_timeout(config.timeout)
                        .build()
                }
                .map_err(|e| format!("cannot build the OTLP span exporter: {e}"))?;
                exporter.set_resource(&resource);
                let buffer = SpanBuffer::new(config.max_queued_spans);
                let provider = SdkTracerProvider::builder()
                    .with_span_processor(buffer.clone())
                    .with_resource(resource.clone())
                    .build();
                Some((buffer, exporter, provider))
            }
        };
        let reader = SharedReader::new(sdk_temporality(config.temporality));
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .with_resource(resource)
            .build();
        Ok(Arc::new(Otel {
            reader,
            provider,
            exporter,
            traces,
            config,
            stats: ExportStats::default(),
        }))
    }

    /// Installs the `metrics` recorder that feeds this pipeline, and the tracer provider the
    /// AWS-call spans use. Call before `Counters::new()`.
    pub fn install_globals(&self) {
        let meter = self.provider.meter("lambda-secrets-cache");
        if metrics::set_global_recorder(OtelRecorder::new(meter)).is_err() {
            tracing::warn!("a metrics recorder was already installed; OTLP metrics may be incomplete");
        }
    }

    /// The tracer for our spans, when tracing is on.
    pub fn tracer(&self) -> Option<opentelemetry_sdk::trace::SdkTracer> {
        self.traces.as_ref().map(|(_, _, provider)| provider.tracer("lambda-secrets-cache"))
    }

    /// Collects and exports everything recorded since the last flush, metrics and spans in
    /// parallel, within `budget` (and the configured export timeout). A failed export is
    /// dropped, not retried later: delta windows stay correct, and a down collector costs at
    /// most the timeout.
    pub async fn flush(&self, budget: Duration) -> bool {
        let started = Instant::now();
        let budget = budget.min(self.config.timeout);
        let rm = match self.reader.collect() {
            Ok(rm) => rm,
            Err(e) => {
                tracing::debug!(error = %e, "metric collection failed");
                return false;
            }
        };
        let spans = async {
            match &self.traces {
                Some((buffer, exporter, _)) => {
                    let batch = buffer.take();
                    batch.is_empty() || matches!(exporter.export(batch).await, Ok(()))
                }
                None => true,
            }
        };
        let both = async {
            let (m, t) = tokio::join!(self.exporter.export(&rm), spans);
            m.is_ok() && t
        };
        let ok = matches!(tokio::time::timeout(budget, both).await, Ok(true));
        self.stats.exports.fetch_add(1, Relaxed);
        if !ok {
            self.stats.failures.fetch_add(1, Relaxed);
            tracing::debug!(endpoint = %self.config.metrics_endpoint, "OTLP export failed or timed out");
        }
        self.stats.last_micros.store(started.elapsed().as_micros() as u64, Relaxed);
        ok
    }

    /// Standalone mode: export every `OTEL_METRIC_EXPORT_INTERVAL` until cancelled.
    pub async fn run_periodic(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    self.flush(self.config.timeout).await;
                }
            }
        }
    }

    pub fn status(&self) -> ExportStatus {
        ExportStatus {
            endpoint: self.config.metrics_endpoint.clone(),
            exports: self.stats.exports.load(Relaxed),
            failures: self.stats.failures.load(Relaxed),
            last_export_micros: self.stats.last_micros.load(Relaxed),
            spans_dropped: self.traces.as_ref().map_or(0, |(buffer, _, _)| buffer.dropped()),
        }
    }
}

/// The configured temporality, in the SDK's terms.
fn sdk_temporality(t: crate::config::Temporality) -> opentelemetry_sdk::metrics::Temporality {
    use crate::config::Temporality as T;
    use opentelemetry_sdk::metrics::Temporality as Sdk;
    match t {
        T::Delta => Sdk::Delta,
        T::Cumulative => Sdk::Cumulative,
        T::LowMemory => Sdk::LowMemory,
    }
}
