//! Start of the data flow: environment variables + the config file → one validated `Config`.
//! Nothing binds or calls AWS until this has succeeded, and a failure lists every problem.

pub mod duration;
pub mod file;

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::escape::quoted;

pub use file::{FileConfig, ParameterItem, ParameterTarget, SecretItem, SecretVersion};

/// The largest TTL accepted anywhere (the AWS extension stops at 300 s; we allow a day).
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_PORT: u16 = 2773;
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);
pub const DEFAULT_CONFIG_PATH: &str = "/var/task/config.yaml";
/// The async runtime's threads (`SECRETS_CACHE_WORKER_THREADS`); see the README's Performance.
pub const DEFAULT_WORKER_THREADS: usize = 1;
/// Extension mode: the least time between exports at the start of invocations.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(20);
/// Checked in this order; the first one set is the token (SPEC §2).
pub const TOKEN_VARIABLES: [&str; 3] = ["AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"];

/// Where configuration comes from. Tests pass a map; the binary passes the process environment.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    None,
}

impl LogLevel {
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::None => "off",
        }
    }
}

/// The shared secret callers send in `X-Aws-Parameters-Secrets-Token`.
#[derive(Clone)]
pub struct Token {
    pub value: Zeroizing<String>,
    /// The variable it came from, for `check` output (never the value).
    pub source: &'static str,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(from {}, {} bytes)", self.source, self.value.len())
    }
}

/// Per-source cache policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourcePolicy {
    pub ttl: Duration,
    /// Upper bound on one upstream fetch on the request path, retries included.
    pub timeout: Duration,
}

/// Everything the process needs, validated and typed.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub cache_enabled: bool,
    pub cache_size: usize,
    pub secrets: SourcePolicy,
    pub ssm: SourcePolicy,
    pub max_stale: Duration,
    /// Fraction of the TTL after which an entry is refreshed ahead of expiry.
    pub refresh_ahead: f64,
    /// Standalone mode: how often the refresh-ahead scan runs.
    pub refresh_interval: Duration,
    /// Concurrent upstream calls per service (`PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`).
    pub max_upstream_connections: NonZeroUsize,
    /// Concurrent inbound connections before 429.
    pub max_inbound_connections: NonZeroUsize,
    /// The async runtime: `1` runs everything on the main thread (tokio's current-thread
    /// runtime); more is a work-stealing runtime with that many workers
    /// (`SECRETS_CACHE_WORKER_THREADS`).
    pub worker_threads: NonZeroUsize,
    pub log_level: LogLevel,
    pub token: Token,
    pub config_path: PathBuf,
    /// The prefetch list; empty when the default file is absent.
    pub file: FileConfig,
    /// Whether the file existed (for `check` output).
    pub file_loaded: bool,
    /// Extension mode: how the platform started this environment.
    pub init_type: InitType,
    /// Extension mode: the host the Telemetry API listener binds and subscribes with.
    pub sandbox_host: String,
    /// Extension mode, policy `end`: how long `/next` is held for `platform.runtimeDone` while the Telemetry
    /// API has delivered nothing (no subscription, a local emulator).
    pub runtime_done_wait: Duration,
    /// OTLP export, from the standard `OTEL_*` variables; `None` = off.
    pub otel: Option<crate::telemetry::otlp::OtelConfig>,
    /// Extension mode: when to export (`SECRETS_CACHE_FLUSH`).
    pub flush: crate::lifecycle::flush::FlushPolicy,
}

/// `AWS_LAMBDA_INITIALIZATION_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitType {
    OnDemand,
    ProvisionedConcurrency,
    /// No secret may be fetched before the snapshot; prefetch runs on restore.
    SnapStart,
    /// Concurrent invocations, no freeze: INVOKE cannot be registered, refresh runs on a timer.
    ManagedInstances,
}

impl InitType {
    pub fn as_str(self) -> &'static str {
        match self {
            InitType::OnDemand => "on-demand",
            InitType::ProvisionedConcurrency => "provisioned-concurrency",
            InitType::SnapStart => "snap-start",
            InitType::ManagedInstances => "lambda-managed-instances",
        }
    }
}

/// Where a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Env(&'static str),
    File { path: PathBuf, line: usize, column: usize },
    FileIo(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Env(name) => write!(f, "{name}: {}", self.message),
            Origin::File { path, line, column } => {
                write!(f, "{}:{line}:{column}: {}", path.display(), self.message)
            }
            Origin::FileIo(path) => write!(f, "{}: {}", path.display(), self.message),
        }
    }
}

/// Every problem found in the environment and the config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "invalid configuration ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Reads the file at `path`; `None` when it does not exist.
pub type ReadFile<'a> = &'a dyn Fn(&std::path::Path) -> std::io::Result<Option<String>>;

/// Reads the config file from disk, treating "not found" as absent. It is opened without
/// blocking (a FIFO would otherwise wait in `open` for a writer, forever), must be a regular
/// file (not a FIFO, device or directory), and at most `file::MAX_FILE_BYTES + 1` bytes are
/// ever read (`/dev/zero` or a huge file costs nothing).
pub fn read_file_from_disk(path: &std::path::Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else {
            "a device or socket"
        };
        return Err(std::io::Error::other(format!("{what}, not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(file::MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > file::MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!("larger than {} bytes (1 MiB)", file::MAX_FILE_BYTES)));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| std::io::Error::other("not UTF-8 text"))
}

const PORT_VAR: &str = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT";

/// The loopback port alone, so the socket can be bound before anything else is read (the
/// config file above all); `None` when the variable is invalid (`load` then says why).
pub fn http_port(env: &dyn Env) -> Option<u16> {
    let mut c = Collector { env, problems: Vec::new() };
    let port = c.integer(PORT_VAR, 0, 65_535).map_or(DEFAULT_PORT, |p| p as u16);
    c.problems.is_empty().then_some(port)
}

struct Collector<'e> {
    env: &'e dyn Env,
    problems: Vec<Problem>,
}

impl Collector<'_> {
    fn bad(&mut self, name: &'static str, message: String) {
        self.problems.push(Problem {
            origin: Origin::Env(name),
            message,
        });
    }

    /// A set, non-blank variable.
    fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string())
    }

    fn integer(&mut self, name: &'static str, min: u64, max: u64) -> Option<u64> {
        let raw = self.var(name)?;
        match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            Ok(v) => {
                self.bad(name, format!("{v} is out of range ({min}–{max})"));
                None
            }
            Err(_) => {
                self.bad(name, format!("{} is not a whole number ({min}–{max})", quoted(&raw)));
                None
            }
        }
    }

    fn boolean(&mut self, name: &'static str) -> Option<bool> {
        let raw = self.var(name)?;
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => {
                self.bad(name, format!("{} is not true or false", quoted(&raw)));
                None
            }
        }
    }

    fn duration(&mut self, name: &'static str, max: Duration) -> Option<Duration> {
        let raw = self.var(name)?;
        match duration::parse(&raw) {
            Ok(d) if d <= max => Some(d),
            Ok(d) => {
                self.bad(
                    name,
                    format!("{} is above the maximum of {}", duration::display(d), duration::display(max)),
                );
                None
            }
            Err(e) => {
                self.bad(name, e);
                None
            }
        }
    }

    fn fraction(&mut self, name: &'static str) -> Option<f64> {
        let raw = self.var(name)?;
        match raw.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1.0 => Some(v),
            _ => {
                self.bad(name, format!("{} is not a fraction in (0, 1] such as 0.8", quoted(&raw)));
                None
            }
        }
    }

    /// Timeouts in milliseconds; 0 means the default, never "wait forever".
    fn timeout(&mut self, name: &'static str) -> Duration {
        match self.integer(name, 0, 300_000) {
            None | Some(0) => DEFAULT_TIMEOUT,
            Some(ms) => Duration::from_millis(ms),
        }
    }
}

impl Config {
    /// Builds the configuration from `env` and the config file it names.
    pub fn load(env: &dyn Env, read_file: ReadFile<'_>) -> Result<Config, ConfigError> {
        Self::load_with_path(env, read_file, None)
    }

    /// As `load`, with an explicit config path (from `check --config`), which must exist.
    pub fn load_with_path(env: &dyn Env, read_file: ReadFile<'_>, path: Option<PathBuf>) -> Result<Config, ConfigError> {
        let mut c = Collector { env, problems: Vec::new() };

        let port = c.integer(PORT_VAR, 0, 65_535).map_or(DEFAULT_PORT, |p| p as u16);
        let cache_enabled = c.boolean("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED").unwrap_or(true);
        let cache_size = c.integer("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", 0, 1_000_000).unwrap_or(1000) as usize;
        let max_upstream = c.integer("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", 1, 1000).unwrap_or(3) as usize;
        let max_inbound = c.integer("SECRETS_CACHE_MAX_INBOUND_CONNECTIONS", 1, 10_000).unwrap_or(800) as usize;
        let worker_threads = c
            .integer("SECRETS_CACHE_WORKER_THREADS", 1, 64)
            .unwrap_or(DEFAULT_WORKER_THREADS as u64) as usize;
        let log_level = match c.var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL").map(|v| v.to_ascii_lowercase()) {
            None => LogLevel::Info,
            Some(v) => match v.as_str() {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" => LogLevel::Warn,
                "error" => LogLevel::Error,
                "none" => LogLevel::None,
                _ => {
                    c.bad(
                        "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL",
                        format!("{} is not one of debug, info, warn, error, none", quoted(&v)),
                    );
                    LogLevel::Info
                }
            },
        };

        let secrets_ttl = c.integer("SECRETS_MANAGER_TTL", 0, MAX_TTL.as_secs()).map(Duration::from_secs);
        let ssm_ttl = c.integer("SSM_PARAMETER_STORE_TTL", 0, MAX_TTL.as_secs()).map(Duration::from_secs);
        let shared_ttl = c.duration("CACHE_EXTENSION_TTL", MAX_TTL);
        let secrets_timeout = c.timeout("SECRETS_MANAGER_TIMEOUT_MILLIS");
        let ssm_timeout = c.timeout("SSM_PARAMETER_STORE_TIMEOUT_MILLIS");
        let max_stale = c.duration("SECRETS_CACHE_MAX_STALE", MAX_TTL).unwrap_or(Duration::from_secs(900));
        let refresh_ahead = c.fraction("SECRETS_CACHE_REFRESH_AHEAD").unwrap_or(0.8);
        let refresh_interval = c
            .duration("SECRETS_CACHE_REFRESH_INTERVAL", MAX_TTL)
            .unwrap_or(Duration::from_secs(10));
        if refresh_interval < Duration::from_millis(100) {
            c.bad("SECRETS_CACHE_REFRESH_INTERVAL", "must be at least 100ms".into());
        }

        let init_type = match c.var("AWS_LAMBDA_INITIALIZATION_TYPE").as_deref() {
            Some("snap-start") => InitType::SnapStart,
            Some("provisioned-concurrency") => InitType::ProvisionedConcurrency,
            Some("lambda-managed-instances") => InitType::ManagedInstances,
            // Unknown future values: behave as the common case rather than refuse to start.
            _ => InitType::OnDemand,
        };
        let sandbox_host = c.var("SECRETS_CACHE_SANDBOX_HOST").unwrap_or_else(|| "sandbox.localdomain".into());
        let runtime_done_wait = c
            .duration("SECRETS_CACHE_RUNTIME_DONE_WAIT", Duration::from_secs(10))
            .unwrap_or(Duration::from_millis(100));

        // With SnapStart the function's credentials come from the container endpoint, and
        // AWS_SESSION_TOKEN is not the token to trust.
        let mut token_order = TOKEN_VARIABLES;
        if init_type == InitType::SnapStart {
            token_order = ["AWS_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_SESSION_TOKEN"];
        }
        let token = token_order.iter().find_map(|name| {
            c.var(name).map(|v| Token {
                value: Zeroizing::new(v),
                source: name,
            })
        });
        if token.is_none() {
            c.bad(
                "AWS_TOKEN",
                format!(
                    "no request token: set one of {} (callers send it in X-Aws-Parameters-Secrets-Token)",
                    TOKEN_VARIABLES.join(", ")
                ),
            );
        }

        let otel = crate::telemetry::otlp::OtelConfig::from_env(env).unwrap_or_else(|message| {
            c.bad("OTEL_EXPORTER_OTLP_*", message);
            None
        });

        // At the start of invocations, at most every OTEL_METRIC_EXPORT_INTERVAL (20 s unless set).
        let flush_interval = otel.as_ref().map_or(DEFAULT_FLUSH_INTERVAL, |o| {
            if env.get("OTEL_METRIC_EXPORT_INTERVAL").is_some() {
                o.interval
            } else {
                DEFAULT_FLUSH_INTERVAL
            }
        });
        let flush = match c.var("SECRETS_CACHE_FLUSH") {
            None => crate::lifecycle::flush::FlushPolicy::Periodic(flush_interval),
            Some(v) => crate::lifecycle::flush::FlushPolicy::parse(&v, flush_interval).unwrap_or_else(|e| {
                c.bad("SECRETS_CACHE_FLUSH", e);
                crate::lifecycle::flush::FlushPolicy::End
            }),
        };

        let explicit = path.is_some() || c.var("SECRETS_CACHE_CONFIG").is_some();
        let config_path = path
            .or_else(|| c.var("SECRETS_CACHE_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let (file, file_loaded) = match read_file(&config_path) {
            Ok(Some(text)) => match file::parse(&text) {
                Ok(f) => (f, true),
                Err(problems) => {
                    c.problems.extend(problems.into_iter().map(|p| Problem {
                        origin: Origin::File {
                            path: config_path.clone(),
                            line: p.line,
                            column: p.column,
                        },
                        message: p.message,
                    }));
                    (FileConfig::default(), true)
                }
            },
            Ok(None) if explicit => {
                c.problems.push(Problem {
                    origin: Origin::FileIo(config_path.clone()),
                    message: "config file not found".into(),
                });
                (FileConfig::default(), false)
            }
            Ok(None) => (FileConfig::default(), false),
            Err(e) => {
                c.problems.push(Problem {
                    origin: Origin::FileIo(config_path.clone()),
                    message: format!("cannot read config file: {e}"),
                });
                (FileConfig::default(), false)
            }
        };

        if !c.problems.is_empty() {
            return Err(ConfigError { problems: c.problems });
        }
        // Precedence: the specific variable, then CACHE_EXTENSION_TTL, then the file's `ttl`.
        let default_ttl = shared_ttl.or(file.ttl).unwrap_or(DEFAULT_TTL);
        Ok(Config {
            port,
            cache_enabled: cache_enabled && cache_size > 0,
            cache_size,
            secrets: SourcePolicy {
                ttl: secrets_ttl.unwrap_or(default_ttl),
                timeout: secrets_timeout,
            },
            ssm: SourcePolicy {
                ttl: ssm_ttl.unwrap_or(default_ttl),
                timeout: ssm_timeout,
            },
            max_stale,
            refresh_ahead,
            refresh_interval,
            max_upstream_connections: NonZeroUsize::new(max_upstream).expect("range starts at 1"),
            max_inbound_connections: NonZeroUsize::new(max_inbound).expect("range starts at 1"),
            worker_threads: NonZeroUsize::new(worker_threads).expect("range starts at 1"),
            log_level,
            token: token.expect("checked above"),
            config_path,
            file,
            file_loaded,
            init_type,
            sandbox_host,
            runtime_done_wait,
            otel,
            flush,
        })
    }

    /// The resolved settings as `check` prints them. Never includes the token or any value.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let d = duration::display;
        let mut out = String::new();
        let _ = writeln!(out, "http port:              127.0.0.1:{}", self.port);
        let _ = writeln!(
            out,
            "cache:                  {} (size {})",
            if self.cache_enabled { "enabled" } else { "disabled (pass-through)" },
            self.cache_size
        );
        let _ = writeln!(
            out,
            "secrets manager:        ttl {}, timeout {}",
            d(self.secrets.ttl),
            d(self.secrets.timeout)
        );
        let _ = writeln!(
            out,
            "parameter store:        ttl {}, timeout {}",
            d(self.ssm.ttl),
            d(self.ssm.timeout)
        );
        let _ = writeln!(out, "max stale:              {}", d(self.max_stale));
        let _ = writeln!(
            out,
            "refresh ahead at:       {:.0}% of ttl (±10% jitter)",
            self.refresh_ahead * 100.0
        );
        let _ = writeln!(out, "upstream connections:   {} per service", self.max_upstream_connections);
        let _ = writeln!(out, "inbound connections:    {}", self.max_inbound_connections);
        let _ = writeln!(
            out,
            "async runtime:          {}",
            match self.worker_threads.get() {
                1 => "current-thread (the main thread)".to_string(),
                n => format!("multi-thread, {n} workers"),
            }
        );
        let _ = writeln!(out, "log level:              {}", self.log_level.as_filter());
        let _ = writeln!(out, "token from:             {}", self.token.source);
        let _ = writeln!(out, "initialization type:    {}", self.init_type.as_str());
        let _ = writeln!(out, "flush policy:           {:?}", self.flush);
        let _ = writeln!(
            out,
            "otlp metrics:           {}",
            self.otel
                .as_ref()
                .map_or("off (no OTEL_EXPORTER_OTLP_ENDPOINT)".to_string(), |o| format!(
                    "{} ({:?}, timeout {})",
                    o.metrics_endpoint,
                    o.temporality,
                    d(o.timeout)
                ))
        );
        let _ = writeln!(
            out,
            "telemetry listener:     {} (runtimeDone wait without telemetry {})",
            self.sandbox_host,
            d(self.runtime_done_wait)
        );
        let state = if self.file_loaded {
            "loaded"
        } else {
            "absent (nothing to prefetch)"
        };
        let _ = writeln!(out, "config file:            {} ({state})", self.config_path.display());
        for s in &self.file.secrets {
            let version = match &s.version {
                SecretVersion::Current => String::new(),
                SecretVersion::Stage(v) => format!(" versionStage={v}"),
                SecretVersion::Id(v) => format!(" versionId={v}"),
            };
            let ttl = s.ttl.map(|t| format!(" ttl={}", d(t))).unwrap_or_default();
            let _ = writeln!(
                out,
                "  secret    {}{version}{ttl}{}",
                s.id,
                if s.required { " required" } else { "" }
            );
        }
        for p in &self.file.parameters {
            let target = match &p.target {
                ParameterTarget::Name(n) => format!("parameter {n}"),
                ParameterTarget::Path(p) => format!("path      {p} (recursive)"),
            };
            let ttl = p.ttl.map(|t| format!(" ttl={}", d(t))).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {target}{}{ttl}{}",
                if p.with_decryption { " withDecryption" } else { "" },
                if p.required { " required" } else { "" }
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_file(_: &std::path::Path) -> std::io::Result<Option<String>> {
        Ok(None)
    }

    fn load(vars: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::load(&env, &no_file)
    }

    #[test]
    fn defaults_match_the_aws_extension() {
        let c = load(&[("AWS_SESSION_TOKEN", "t")]).unwrap();
        assert_eq!(c.port, 2773);
        assert!(c.cache_enabled);
        assert_eq!(c.cache_size, 1000);
        assert_eq!(c.secrets.ttl, Duration::from_secs(300));
        assert_eq!(c.ssm.ttl, Duration::from_secs(300));
        assert_eq!(c.secrets.timeout, Duration::from_millis(3000));
        assert_eq!(c.max_stale, Duration::from_secs(900));
        assert_eq!(c.token.source, "AWS_SESSION_TOKEN");
        assert!(!c.file_loaded);
    }

    #[test]
    fn token_precedence_follows_the_spec() {
        let c = load(&[
            ("AWS_SESSION_TOKEN", "s"),
            ("AWS_TOKEN", "t"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "c"),
        ])
        .unwrap();
        assert_eq!(c.token.source, "AWS_TOKEN");
        assert_eq!(c.token.value.as_str(), "t");
        let c = load(&[
            ("AWS_SESSION_TOKEN", "s"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "c"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start"),
        ])
        .unwrap();
        assert_eq!(
            c.token.source, "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "SnapStart trusts the container token"
        );
        assert_eq!(c.init_type, InitType::SnapStart);
        let c = load(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "c")]).unwrap();
        assert_eq!(c.token.source, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    }

    #[test]
    fn ttl_precedence_env_then_shared_then_file() {
        let env: HashMap<&str, &str> = [("AWS_TOKEN", "t"), ("SSM_PARAMETER_STORE_TTL", "60"), ("CACHE_EXTENSION_TTL", "2m")].into();
        let file = |_: &std::path::Path| Ok(Some("ttl: 1h\n".to_string()));
        let c = Config::load(&env, &file).unwrap();
        assert_eq!(c.ssm.ttl, Duration::from_secs(60));
        assert_eq!(c.secrets.ttl, Duration::from_secs(120));
        let env: HashMap<&str, &str> = [("AWS_TOKEN", "t")].into();
        let c = Config::load(&env, &file).unwrap();
        assert_eq!(c.secrets.ttl, Duration::from_secs(3600));
        assert!(c.file_loaded);
    }

    #[test]
    fn ttls_above_300_are_honoured() {
        let c = load(&[("AWS_TOKEN", "t"), ("SECRETS_MANAGER_TTL", "3600")]).unwrap();
        assert_eq!(c.secrets.ttl, Duration::from_secs(3600));
    }

    #[test]
    fn zero_timeout_means_default_not_forever() {
        let c = load(&[
            ("AWS_TOKEN", "t"),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "0"),
            ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "500"),
        ])
        .unwrap();
        assert_eq!(c.secrets.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.ssm.timeout, Duration::from_millis(500));
    }

    #[test]
    fn cache_size_zero_or_disabled_is_pass_through() {
        assert!(
            !load(&[("AWS_TOKEN", "t"), ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "0")])
                .unwrap()
                .cache_enabled
        );
        assert!(
            !load(&[("AWS_TOKEN", "t"), ("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "FALSE")])
                .unwrap()
                .cache_enabled
        );
    }

    #[test]
    fn every_env_problem_is_reported_at_once() {
        let err = load(&[
            ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "70000"),
            ("SECRETS_MANAGER_TTL", "abc"),
            ("SSM_PARAMETER_STORE_TTL", "86401"),
            ("CACHE_EXTENSION_TTL", "5 minutes"),
            ("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "maybe"),
            ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "loud"),
            ("SECRETS_CACHE_REFRESH_AHEAD", "1.5"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 8, "{text}");
        for needle in [
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT: 70000 is out of range (0–65535)",
            "SECRETS_MANAGER_TTL: \"abc\" is not a whole number",
            "SSM_PARAMETER_STORE_TTL: 86401 is out of range",
            "CACHE_EXTENSION_TTL: invalid duration",
            "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED: \"maybe\" is not true or false",
            "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL: \"loud\"",
            "SECRETS_CACHE_REFRESH_AHEAD: \"1.5\"",
            "AWS_TOKEN: no request token",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn file_problems_carry_path_line_and_column() {
        let env: HashMap<&str, &str> = [("AWS_TOKEN", "t"), ("SECRETS_CACHE_CONFIG", "/x/config.yaml")].into();
        let file = |_: &std::path::Path| Ok(Some("secrets:\n  - id: a\n    ttl: forever\n".to_string()));
        let err = Config::load(&env, &file).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.to_string().contains("/x/config.yaml:3:10: `ttl`: invalid duration"), "{err}");
    }

    #[test]
    fn an_explicit_missing_file_is_an_error_but_the_default_is_optional() {
        let env: HashMap<&str, &str> = [("AWS_TOKEN", "t"), ("SECRETS_CACHE_CONFIG", "/nope.yaml")].into();
        let err = Config::load(&env, &no_file).unwrap_err();
        assert!(err.to_string().contains("/nope.yaml: config file not found"));
        assert!(load(&[("AWS_TOKEN", "t")]).is_ok());
    }

    #[test]
    fn the_config_file_must_be_a_regular_file_and_is_read_with_a_cap() {
        let dir = std::env::temp_dir().join(format!("lsc-config-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = read_file_from_disk(&fifo).unwrap_err();
        assert!(err.to_string().contains("a FIFO, not a regular file"), "{err}");
        let err = read_file_from_disk(&dir).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let err = read_file_from_disk(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let big = dir.join("big.yaml");
        std::fs::write(&big, vec![b'#'; file::MAX_FILE_BYTES + 10]).unwrap();
        assert!(read_file_from_disk(&big).unwrap_err().to_string().contains("larger than"));
        let ok = dir.join("ok.yaml");
        std::fs::write(&ok, "secrets: []\n").unwrap();
        assert_eq!(read_file_from_disk(&ok).unwrap().as_deref(), Some("secrets: []\n"));
        assert_eq!(read_file_from_disk(&dir.join("absent.yaml")).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_port_alone_is_read_the_same_way() {
        let env: HashMap<&str, &str> = [("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2999")].into();
        assert_eq!(http_port(&env), Some(2999));
        assert_eq!(http_port(&HashMap::new()), Some(DEFAULT_PORT));
        let env: HashMap<&str, &str> = [("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "99999")].into();
        assert_eq!(http_port(&env), None);
    }

    #[test]
    fn describe_never_prints_the_token() {
        let c = load(&[("AWS_TOKEN", "super-secret-token-value")]).unwrap();
        assert!(!c.describe().contains("super-secret-token-value"));
        assert!(!format!("{c:?}").contains("super-secret-token-value"));
    }
}
