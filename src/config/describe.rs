//! The resolved settings as `check` prints them. Never the token or any value.

use std::fmt::Write;

use super::duration::display as d;
use super::{Config, FlushPolicy, ParameterTarget, SecretVersion};

impl Config {
    pub fn describe(&self) -> String {
        let (http, cache, upstream, lifecycle) = (&self.http, &self.cache, &self.upstream, &self.lifecycle);
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            let _ = writeln!(out, "{:<24}{value}", format!("{label}:"));
        };
        line("http port", format!("127.0.0.1:{}", http.port));
        line(
            "cache",
            format!(
                "{} (size {})",
                if cache.enabled { "enabled" } else { "disabled (pass-through)" },
                cache.capacity
            ),
        );
        line(
            "secrets manager",
            format!("ttl {}, timeout {}", d(cache.ttl.secrets), d(upstream.timeout.secrets)),
        );
        line(
            "parameter store",
            format!("ttl {}, timeout {}", d(cache.ttl.ssm), d(upstream.timeout.ssm)),
        );
        line("max stale", d(cache.max_stale));
        line(
            "prefetch deadline",
            format!(
                "{} (a throttled `required` entry is retried until then)",
                d(cache.prefetch_deadline)
            ),
        );
        line(
            "refresh ahead at",
            format!("{:.0}% of ttl (±10% jitter)", cache.refresh_ahead * 100.0),
        );
        line("upstream connections", format!("{} per service", upstream.max_connections));
        line("trust roots", upstream.trust.describe());
        line("region", upstream.aws.describe_region());
        line("credentials", upstream.aws.describe_credentials());
        line("inbound connections", http.max_inbound_connections.to_string());
        line(
            "async runtime",
            match self.process.worker_threads.get() {
                1 => "current-thread (the main thread)".to_string(),
                n => format!("multi-thread, {n} workers"),
            },
        );
        line("log level", self.process.log_level.as_filter().to_string());
        line(
            "token from",
            match http.token.value.is_empty() {
                false => http.token.variable.to_string(),
                true => format!(
                    "{} (set but empty: requests send the header with an empty value)",
                    http.token.variable
                ),
            },
        );
        line("initialization type", lifecycle.init_type.as_str().to_string());
        line(
            "flush policy",
            match lifecycle.flush {
                FlushPolicy::End => "end (after runtimeDone, before /next)".to_string(),
                FlushPolicy::Periodic(every) => format!("periodic (at an invocation's start, at most every {})", d(every)),
            },
        );
        line(
            "otlp metrics",
            self.otel.as_ref().map_or("off (no OTEL_EXPORTER_OTLP_ENDPOINT)".to_string(), |o| {
                format!("{} ({:?}, timeout {})", o.metrics_endpoint, o.temporality, d(o.timeout))
            }),
        );
        line(
            "telemetry listener",
            format!(
                "{} (runtimeDone wait without telemetry {})",
                lifecycle.sandbox_host,
                d(lifecycle.runtime_done_wait)
            ),
        );
        let state = if self.file_loaded {
            "loaded"
        } else {
            "absent (nothing to prefetch)"
        };
        line("config file", format!("{} ({state})", self.config_path.display()));
        for s in &cache.prefetch.secrets {
            let version = match &s.version {
                SecretVersion::Current => String::new(),
                SecretVersion::Stage(v) => format!(" versionStage={v}"),
                SecretVersion::Id(v) => format!(" versionId={v}"),
            };
            let ttl = s.ttl.map(|t| format!(" ttl={}", d(t))).unwrap_or_default();
            let _ = writeln!(
                out,
                "  secret    {}{version}{ttl}{}{}",
                s.id,
                if s.required { " required" } else { "" },
                role(&s.role)
            );
        }
        for f in &cache.prefetch.secret_filters {
            let ttl = f.ttl.map(|t| format!(" ttl={}", d(t))).unwrap_or_default();
            let _ = writeln!(
                out,
                "  secrets   {f}{ttl}{}{}",
                if f.required { " required" } else { "" },
                role(&f.role)
            );
        }
        for p in &cache.prefetch.parameters {
            let target = match &p.target {
                ParameterTarget::Name(n) => format!("parameter {n}"),
                ParameterTarget::Path(p) => format!("path      {p} (recursive)"),
            };
            let ttl = p.ttl.map(|t| format!(" ttl={}", d(t))).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {target}{}{ttl}{}{}",
                if p.with_decryption { " withDecryption" } else { "" },
                if p.required { " required" } else { "" },
                role(&p.role)
            );
        }
        for overlap in cache.prefetch.overlaps() {
            let _ = writeln!(out, "  overlap   {overlap}");
        }
        out
    }
}

fn role(arn: &str) -> String {
    if arn.is_empty() { String::new() } else { format!(" roleArn={arn}") }
}
