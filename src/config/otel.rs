//! OTLP export settings from the standard `OTEL_*` variables, and when extension mode exports
//! (`SECRETS_CACHE_FLUSH`). Every problem is listed with its variable, like every other setting.

use std::time::Duration;

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Delta,
    Cumulative,
    LowMemory,
}

use super::env::Collector;
use crate::escape::quoted;

/// Finished spans kept between exports by default (`OTEL_BSP_MAX_QUEUE_SIZE`, the OTel
/// specification's default).
pub const DEFAULT_MAX_QUEUED_SPANS: usize = 2048;
/// Extension mode: the least time between exports at the start of invocations.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(20);

/// What `OTEL_*` asks for.
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

/// When to export in extension mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After `platform.runtimeDone`, before every `/next`.
    End,
    /// At the start of an invocation, at most every `interval` (zero: every invocation).
    Periodic(Duration),
}

impl FlushPolicy {
    /// `periodic`, `periodic:<ms>` or `end`; `interval` is what a bare `periodic` means.
    /// `adaptive`, the earlier default, is read as `periodic`.
    pub fn parse(value: &str, interval: Duration) -> Result<FlushPolicy, String> {
        match value.trim() {
            "end" => Ok(FlushPolicy::End),
            "periodic" | "adaptive" => Ok(FlushPolicy::Periodic(interval)),
            other => match other.strip_prefix("periodic:").map(str::parse::<u64>) {
                Some(Ok(ms)) => Ok(FlushPolicy::Periodic(Duration::from_millis(ms))),
                _ => Err(format!("{} is not periodic, periodic:<ms> or end", quoted(other))),
            },
        }
    }
}

/// `None` when export is off (no endpoint, or `OTEL_SDK_DISABLED=true`).
pub(super) fn load(c: &mut Collector<'_>) -> Option<OtelConfig> {
    let disabled = c.boolean("OTEL_SDK_DISABLED").unwrap_or(false);
    let protocol_var = if c.var("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL").is_some() {
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
    } else {
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    };
    let grpc = c.choice(protocol_var, &["http/protobuf", "grpc"]) == Some("grpc");
    // HTTP appends the signal's path to the base endpoint; gRPC uses the base as it is.
    let endpoint = |c: &mut Collector<'_>, specific: &'static str, path: &str| {
        let (var, url) = match c.var(specific) {
            Some(url) => (specific, url),
            None => {
                let base = c.var("OTEL_EXPORTER_OTLP_ENDPOINT")?;
                let base = base.trim_end_matches('/').to_string();
                ("OTEL_EXPORTER_OTLP_ENDPOINT", if grpc { base } else { format!("{base}{path}") })
            }
        };
        if url.starts_with("http://") {
            Some(url)
        } else {
            c.bad(
                var,
                format!("{}: only http:// is supported (a collector in the same environment)", quoted(&url)),
            );
            None
        }
    };
    let metrics_endpoint = endpoint(c, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "/v1/metrics");
    let traces_endpoint = endpoint(c, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces");
    let temporality = match c.choice(
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        &["delta", "cumulative", "lowmemory"],
    ) {
        Some("cumulative") => Temporality::Cumulative,
        Some("lowmemory") => Temporality::LowMemory,
        _ => Temporality::Delta,
    };
    let timeout = Duration::from_millis(c.integer("OTEL_EXPORTER_OTLP_TIMEOUT", 1, 600_000).unwrap_or(1000));
    let interval = Duration::from_millis(c.integer("OTEL_METRIC_EXPORT_INTERVAL", 100, 86_400_000).unwrap_or(60_000));
    let max_queued_spans = c
        .integer("OTEL_BSP_MAX_QUEUE_SIZE", 1, 65_536)
        .map_or(DEFAULT_MAX_QUEUED_SPANS, |n| n as usize);
    let function = c.var("AWS_LAMBDA_FUNCTION_NAME");
    let service_name = c
        .var("OTEL_SERVICE_NAME")
        .or_else(|| function.clone())
        .unwrap_or_else(|| "lambda-secrets-cache".into());
    let mut attributes = vec![
        ("cloud.provider".to_string(), "aws".to_string()),
        ("cloud.platform".to_string(), "aws_lambda".to_string()),
    ];
    let memory = c
        .var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .and_then(|mb| mb.parse::<u64>().ok())
        .map(|mb| (mb * 1_048_576).to_string());
    for (k, v) in [
        ("cloud.region", c.var("AWS_REGION")),
        ("faas.name", function),
        ("faas.version", c.var("AWS_LAMBDA_FUNCTION_VERSION")),
        ("faas.max_memory", memory),
    ] {
        if let Some(v) = v {
            attributes.push((k.to_string(), v));
        }
    }
    if disabled {
        return None;
    }
    Some(OtelConfig {
        grpc,
        metrics_endpoint: metrics_endpoint?,
        traces_endpoint,
        temporality,
        timeout,
        interval,
        max_queued_spans,
        service_name,
        attributes,
    })
}

/// `SECRETS_CACHE_FLUSH`, with a bare `periodic` meaning at most every
/// `OTEL_METRIC_EXPORT_INTERVAL` when it is set, else every 20 s.
pub(super) fn flush_policy(c: &mut Collector<'_>, otel: Option<&OtelConfig>) -> FlushPolicy {
    let interval = match otel {
        Some(o) if c.var("OTEL_METRIC_EXPORT_INTERVAL").is_some() => o.interval,
        _ => DEFAULT_FLUSH_INTERVAL,
    };
    match c.var("SECRETS_CACHE_FLUSH") {
        None => FlushPolicy::Periodic(interval),
        Some(v) => FlushPolicy::parse(&v, interval).unwrap_or_else(|e| {
            c.bad("SECRETS_CACHE_FLUSH", e);
            FlushPolicy::End
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::env::Env;

    fn load_with(vars: &[(&str, &str)]) -> (Option<OtelConfig>, Vec<String>) {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        let mut c = Collector::new(&env as &dyn Env);
        let otel = load(&mut c);
        (otel, c.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn no_endpoint_means_no_export() {
        assert_eq!(load_with(&[]), (None, vec![]));
        let (otel, problems) = load_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")]);
        assert_eq!((otel, problems.len()), (None, 0));
    }

    #[test]
    fn reads_the_standard_variables() {
        let (c, _) = load_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
            ("OTEL_SERVICE_NAME", "svc"),
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        let c = c.unwrap();
        assert_eq!(c.metrics_endpoint, "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(c.temporality, Temporality::Delta, "delta by default");
        assert_eq!(c.service_name, "svc");
        assert!(c.attributes.contains(&("faas.max_memory".into(), "134217728".into())));
        assert!(c.attributes.contains(&("cloud.platform".into(), "aws_lambda".into())));

        let (c, _) = load_with(&[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:9/m"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Cumulative"),
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
        ]);
        let c = c.unwrap();
        assert_eq!(
            (c.metrics_endpoint.as_str(), c.temporality),
            ("http://c:9/m", Temporality::Cumulative)
        );
        assert_eq!(c.service_name, "fn");
        let (grpc, _) = load_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let grpc = grpc.unwrap();
        assert!(grpc.grpc);
        assert_eq!(grpc.metrics_endpoint, "http://c:4317", "gRPC takes the base endpoint as it is");
        assert_eq!(grpc.traces_endpoint.as_deref(), Some("http://c:4317"));
    }

    #[test]
    fn every_unsupported_setting_is_listed_with_its_variable() {
        let (_, problems) = load_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sideways"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ]);
        for needle in [
            "OTEL_EXPORTER_OTLP_PROTOCOL: \"http/json\" is not one of http/protobuf, grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT: \"https://c:4318/v1/metrics\": only http://",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: \"sideways\"",
            "OTEL_EXPORTER_OTLP_TIMEOUT: \"soon\" is not a whole number",
            "OTEL_METRIC_EXPORT_INTERVAL: 5 is out of range",
            "OTEL_BSP_MAX_QUEUE_SIZE: 0 is out of range",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(needle)),
                "missing {needle:?} in {problems:#?}"
            );
        }
    }

    #[test]
    fn parses_the_flush_policies() {
        let i = Duration::from_secs(20);
        assert_eq!(FlushPolicy::parse("end", i), Ok(FlushPolicy::End));
        assert_eq!(FlushPolicy::parse("periodic", i), Ok(FlushPolicy::Periodic(i)));
        assert_eq!(FlushPolicy::parse("adaptive", i), Ok(FlushPolicy::Periodic(i)), "the old default");
        assert_eq!(
            FlushPolicy::parse("periodic:5000", i),
            Ok(FlushPolicy::Periodic(Duration::from_secs(5)))
        );
        assert_eq!(FlushPolicy::parse("periodic:0", i), Ok(FlushPolicy::Periodic(Duration::ZERO)));
        assert!(FlushPolicy::parse("periodic:soon", i).is_err());
        assert!(FlushPolicy::parse("sometimes", i).is_err());
    }
}
