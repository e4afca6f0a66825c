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
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter as _};
use serde::Serialize;

use super::export::SharedReader;
use super::recorder::OtelRecorder;
use super::trace::SpanBuffer;
use crate::config::Env;

/// What `OTEL_*` asks for, read through `Env` so tests pass a map.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    /// `grpc` rather than the default `http/protobuf`.
    pub grpc: bool,
    pub metrics_endpoint: String,
    /// `None` when only a metrics endpoint is configured.
    pub traces_endpoint: Option<String>,
    pub temporality: Temporality,
    pub timeout: Duration,
    /// Standalone mode only: the export period (`OTEL_METRIC_EXPORT_INTERVAL`).
    pub interval: Duration,
    /// Finished spans buffered between exports (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queued_spans: usize,
    pub service_name: String,
    pub attributes: Vec<(String, String)>,
}

impl OtelConfig {
    /// `Ok(None)` when export is off; `Err` for a setting we cannot honour.
    pub fn from_env(env: &dyn Env) -> Result<Option<OtelConfig>, String> {
        if env.get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let protocol = env
            .get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
            .or_else(|| env.get("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let grpc = match protocol.as_deref() {
            None | Some("http/protobuf") => false,
            Some("grpc") => true,
            Some(p) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={p:?} is not supported (http/protobuf or grpc)"
                ));
            }
        };
        // HTTP appends the signal's path to the base endpoint; gRPC uses the base as it is.
        let signal = |specific: &str, path: &str| {
            env.get(specific).or_else(|| {
                env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| {
                    let base = base.trim_end_matches('/').to_string();
                    if grpc { base } else { format!("{base}{path}") }
                })
            })
        };
        let Some(endpoint) = signal("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "/v1/metrics") else {
            return Ok(None);
        };
        let traces_endpoint = signal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces");
        for e in std::iter::once(&endpoint).chain(traces_endpoint.as_ref()) {
            if !e.starts_with("http://") {
                return Err(format!(
                    "OTLP endpoint {e:?}: only http:// is supported (a collector in the same environment)"
                ));
            }
        }
        let temporality = match env
            .get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("delta") => Temporality::Delta,
            Some("cumulative") => Temporality::Cumulative,
            Some("lowmemory") => Temporality::LowMemory,
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={other:?} is not delta, cumulative or lowmemory"
                ));
            }
        };
        let timeout = match env.get("OTEL_EXPORTER_OTLP_TIMEOUT") {
            None => Duration::from_millis(1000),
            Some(ms) => Duration::from_millis(
                ms.parse::<u64>()
                    .map_err(|_| format!("OTEL_EXPORTER_OTLP_TIMEOUT={ms:?} is not milliseconds"))?,
            ),
        };
        let interval = match env.get("OTEL_METRIC_EXPORT_INTERVAL") {
            None => Duration::from_secs(60),
            Some(ms) => match ms.parse::<u64>() {
                Ok(ms) if ms >= 100 => Duration::from_millis(ms),
                _ => return Err(format!("OTEL_METRIC_EXPORT_INTERVAL={ms:?} is not milliseconds ≥ 100")),
            },
        };
        let max_queued_spans = match env.get("OTEL_BSP_MAX_QUEUE_SIZE") {
            None => super::trace::DEFAULT_MAX_QUEUED,
            Some(n) => match n.parse::<usize>() {
                Ok(n) if (1..=65_536).contains(&n) => n,
                _ => return Err(format!("OTEL_BSP_MAX_QUEUE_SIZE={n:?} is not a number from 1 to 65536")),
            },
        };
        let function = env.get("AWS_LAMBDA_FUNCTION_NAME");
        let service_name = env
            .get("OTEL_SERVICE_NAME")
            .or_else(|| function.clone())
            .unwrap_or_else(|| "lambda-secrets-cache".into());
        let mut attributes = vec![
            ("cloud.provider".to_string(), "aws".to_string()),
            ("cloud.platform".to_string(), "aws_lambda".to_string()),
        ];
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                attributes.push((k.to_string(), v));
            }
        };
        add("cloud.region", env.get("AWS_REGION"));
        add("faas.name", function);
        add("faas.version", env.get("AWS_LAMBDA_FUNCTION_VERSION"));
        add(
            "faas.max_memory",
            env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .and_then(|mb| mb.parse::<u64>().ok())
                .map(|mb| (mb * 1_048_576).to_string()),
        );
        Ok(Some(OtelConfig {
            grpc,
            metrics_endpoint: endpoint,
            traces_endpoint,
            temporality,
            timeout,
            interval,
            max_queued_spans,
            service_name,
            attributes,
        }))
    }
}

/// How the last exports went, for `/status`.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub exports: AtomicU64,
    pub failures: AtomicU64,
    pub last_micros: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct ExportSnapshot {
    pub endpoint: String,
    pub exports: u64,
    pub failures: u64,
    pub last_export_micros: u64,
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
    pub fn new(config: OtelConfig, instance: &str) -> Result<Arc<Otel>, String> {
        // No retries inside an export: a failed one is dropped and the lifecycle backs off, so
        // a collector that is down costs one attempt, not a series of them within the timeout.
        let exporter = if config.grpc {
            MetricExporter::builder()
                .with_tonic()
                .with_retry_policy(RetryPolicy::disabled())
                .with_endpoint(config.metrics_endpoint.clone())
                .with_timeout(config.timeout)
                .with_temporality(config.temporality)
                .build()
        } else {
            MetricExporter::builder()
                .with_http()
                .with_retry_policy(RetryPolicy::disabled())
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(config.metrics_endpoint.clone())
                .with_timeout(config.timeout)
                .with_temporality(config.temporality)
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
        let reader = SharedReader::new(config.temporality);
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
    /// AWS-call spans use. Call before `Metrics::new()`.
    pub fn install_globals(&self) {
        let meter = self.provider.meter("lambda-secrets-cache");
        if metrics::set_global_recorder(OtelRecorder::new(meter)).is_err() {
            tracing::warn!("a metrics recorder was already installed; OTLP metrics may be incomplete");
        }
        if let Some((_, _, provider)) = &self.traces {
            opentelemetry::global::set_tracer_provider(provider.clone());
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

    pub fn snapshot(&self) -> ExportSnapshot {
        ExportSnapshot {
            endpoint: self.config.metrics_endpoint.clone(),
            exports: self.stats.exports.load(Relaxed),
            failures: self.stats.failures.load(Relaxed),
            last_export_micros: self.stats.last_micros.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Option<OtelConfig>, String> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        OtelConfig::from_env(&env)
    }

    #[test]
    fn no_endpoint_means_no_export() {
        assert_eq!(load(&[]), Ok(None));
        assert_eq!(
            load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")]),
            Ok(None)
        );
    }

    #[test]
    fn reads_the_standard_variables() {
        let c = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
            ("OTEL_SERVICE_NAME", "svc"),
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.metrics_endpoint, "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(c.temporality, Temporality::Delta, "delta by default");
        assert_eq!(c.service_name, "svc");
        assert!(c.attributes.contains(&("faas.max_memory".into(), "134217728".into())));
        assert!(c.attributes.contains(&("cloud.platform".into(), "aws_lambda".into())));

        let c = load(&[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:9/m"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Cumulative"),
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.metrics_endpoint.as_str(), c.temporality),
            ("http://c:9/m", Temporality::Cumulative)
        );
        assert_eq!(c.service_name, "fn");
    }

    #[test]
    fn unsupported_settings_are_errors() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert!(load(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).is_err());
        let grpc = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap()
        .unwrap();
        assert!(grpc.grpc);
        assert_eq!(grpc.metrics_endpoint, "http://c:4317", "gRPC takes the base endpoint as it is");
        assert_eq!(grpc.traces_endpoint.as_deref(), Some("http://c:4317"));
        assert!(load(&[base, ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sideways")]).is_err());
        assert!(load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]).is_err());
    }
}
