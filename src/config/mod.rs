//! Start of the data flow: environment variables + the config file → one validated `Config`,
//! grouped into the slice each part is built from (`http`, `cache`, `upstream`, `lifecycle`,
//! `otel`, `process`). Nothing binds or calls AWS until this has succeeded, and a failure lists
//! every problem with the variable or the file position it came from.

mod aws_env;
mod describe;
pub mod duration;
mod env;
pub mod file;
mod otel;
mod overlap;
mod problem;
pub mod role;
mod service;
pub mod trust;
mod walk;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

pub use aws_env::AwsEnvironment;
pub use env::{Env, ProcessEnv};
pub use file::{ParameterTarget, PrefetchList, SecretVersion, read_file_from_disk};
pub use otel::{FlushPolicy, OtelConfig, Temporality};
pub use problem::{ConfigError, Origin, Problem};
pub use service::{ByService, Service};
pub use trust::TrustRoots;

use crate::escape::escaped;
use env::Collector;

/// The largest TTL accepted anywhere (the AWS extension stops at 300 s; we allow a day).
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_PORT: u16 = 2773;
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);
pub const DEFAULT_CONFIG_PATH: &str = "/var/task/config.yaml";
/// The async runtime's threads (`SECRETS_CACHE_WORKER_THREADS`); see the README's Performance.
pub const DEFAULT_WORKER_THREADS: usize = 1;
/// Checked in this order; the first one set is the token (README, "HTTP API").
pub const TOKEN_VARIABLES: [&str; 3] = ["AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"];
const PORT_VAR: &str = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT";

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
    pub variable: &'static str,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(from {}, {} bytes)", self.variable, self.value.len())
    }
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

/// The function-facing HTTP server.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub port: u16,
    pub token: Token,
    /// Connections served at once before new ones get 429.
    pub max_inbound_connections: NonZeroUsize,
}

/// The cache: what it holds, for how long, and what it prefetches.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `false` (or a size of 0): pass-through, every read goes to AWS.
    pub enabled: bool,
    pub capacity: usize,
    pub ttl: ByService<Duration>,
    /// The longest a reader waits for an upstream answer.
    pub read_timeout: ByService<Duration>,
    pub max_stale: Duration,
    /// Fraction of the TTL after which an entry is refreshed ahead of expiry.
    pub refresh_ahead: f64,
    /// How long a `required` entry AWS throttles is retried before Init fails: inside Lambda's
    /// Init limit (10 s on demand; provisioned concurrency and managed instances have longer).
    pub prefetch_deadline: Duration,
    /// The config file's list; empty when the default file is absent.
    pub prefetch: PrefetchList,
}

/// The AWS clients.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Upper bound on one call on the request path, retries included.
    pub timeout: ByService<Duration>,
    /// Concurrent calls per service (`PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`).
    pub max_connections: NonZeroUsize,
    /// Other IAM roles this environment may read through (`SECRETS_CACHE_MAX_ROLES`; 0: none).
    pub max_roles: usize,
    /// AssumeRole's `RoleSessionName`: `lambda-secrets-cache-<function name>`, as CloudTrail
    /// shows it.
    pub session_name: String,
    /// Where the trusted root certificates come from.
    pub trust: TrustRoots,
    /// Where the SDK will find the Region and the credentials, as far as variables say.
    pub aws: AwsEnvironment,
}

/// What drives the cache: Lambda's events (extension mode), or timers.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// How the platform started this environment.
    pub init_type: InitType,
    /// Standalone and managed-instances mode: how often the refresh-ahead scan runs.
    pub refresh_interval: Duration,
    /// The host the Telemetry API listener binds and subscribes with.
    pub sandbox_host: String,
    /// Policy `end`: how long `/next` is held for `platform.runtimeDone` while the Telemetry API
    /// has delivered nothing (a failed subscription, a local emulator).
    pub runtime_done_wait: Duration,
    /// The longest a background fetch may need before `/next` (the larger upstream timeout).
    pub fetch_budget: Duration,
    /// When to export (`SECRETS_CACHE_FLUSH`).
    pub flush: FlushPolicy,
}

/// The process itself.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub log_level: LogLevel,
    /// `1`: tokio's current-thread runtime on the main thread; more: a work-stealing runtime
    /// with that many workers (`SECRETS_CACHE_WORKER_THREADS`).
    pub worker_threads: NonZeroUsize,
}

/// Everything the process needs, validated and typed, one slice per part.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub cache: CacheConfig,
    pub upstream: UpstreamConfig,
    pub lifecycle: LifecycleConfig,
    /// OTLP export, from the standard `OTEL_*` variables; `None` = off.
    pub otel: Option<OtelConfig>,
    pub process: ProcessConfig,
    /// The config file read (for `check` output), and whether it existed.
    pub config_path: PathBuf,
    pub file_loaded: bool,
}

/// Reads the file at `path`; `None` when it does not exist.
pub type ReadFile<'a> = &'a dyn Fn(&std::path::Path) -> std::io::Result<Option<String>>;

/// The loopback port alone, so the socket can be bound before anything else is read (the
/// config file above all); `None` when the variable is invalid (`load` then says why).
pub fn http_port(env: &dyn Env) -> Option<u16> {
    let mut c = Collector::new(env);
    let port = c.integer(PORT_VAR, 0, 65_535).map_or(DEFAULT_PORT, |p| p as u16);
    c.problems.is_empty().then_some(port)
}

impl Config {
    /// Builds the configuration from `env` and the config file it names.
    pub fn load(env: &dyn Env, read_file: ReadFile<'_>) -> Result<Config, ConfigError> {
        Self::load_with_path(env, read_file, None)
    }

    /// As `load`, with an explicit config path (from `check --config`), which must exist.
    pub fn load_with_path(env: &dyn Env, read_file: ReadFile<'_>, path: Option<PathBuf>) -> Result<Config, ConfigError> {
        let mut c = Collector::new(env);

        let port = c.integer(PORT_VAR, 0, 65_535).map_or(DEFAULT_PORT, |p| p as u16);
        let cache_enabled = c.boolean("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED").unwrap_or(true);
        let cache_size = c.integer("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", 0, 1_000_000).unwrap_or(1000) as usize;
        let max_upstream = c.integer("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", 1, 1000).unwrap_or(3) as usize;
        let max_inbound = c.integer("SECRETS_CACHE_MAX_INBOUND_CONNECTIONS", 1, 10_000).unwrap_or(800) as usize;
        let max_roles = c.integer("SECRETS_CACHE_MAX_ROLES", 0, 100).unwrap_or(10) as usize;
        let session_name = session_name(c.var("AWS_LAMBDA_FUNCTION_NAME").as_deref());
        let worker_threads = c
            .integer("SECRETS_CACHE_WORKER_THREADS", 1, 64)
            .unwrap_or(DEFAULT_WORKER_THREADS as u64) as usize;
        let log_level = match c.choice(
            "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL",
            &["debug", "info", "warn", "error", "none"],
        ) {
            Some("debug") => LogLevel::Debug,
            Some("warn") => LogLevel::Warn,
            Some("error") => LogLevel::Error,
            Some("none") => LogLevel::None,
            _ => LogLevel::Info,
        };

        let secrets_ttl = c.integer("SECRETS_MANAGER_TTL", 0, MAX_TTL.as_secs()).map(Duration::from_secs);
        let ssm_ttl = c.integer("SSM_PARAMETER_STORE_TTL", 0, MAX_TTL.as_secs()).map(Duration::from_secs);
        let shared_ttl = c.duration("CACHE_EXTENSION_TTL", MAX_TTL);
        let timeout = ByService {
            secrets: c.timeout("SECRETS_MANAGER_TIMEOUT_MILLIS", DEFAULT_TIMEOUT),
            ssm: c.timeout("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", DEFAULT_TIMEOUT),
        };
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
        let prefetch_deadline = c
            .duration("SECRETS_CACHE_PREFETCH_DEADLINE", Duration::from_secs(900))
            .unwrap_or(match init_type {
                // Init may take 130 s or the function timeout there.
                InitType::ProvisionedConcurrency | InitType::ManagedInstances => Duration::from_secs(60),
                // 10 s for the extensions, the runtime and the function's own init together.
                InitType::OnDemand | InitType::SnapStart => Duration::from_secs(6),
            });
        let sandbox_host = c.var("SECRETS_CACHE_SANDBOX_HOST").unwrap_or_else(|| "sandbox.localdomain".into());
        let runtime_done_wait = c
            .duration("SECRETS_CACHE_RUNTIME_DONE_WAIT", Duration::from_secs(10))
            .unwrap_or(Duration::from_millis(100));
        let token = token(&mut c, init_type);
        let trust = TrustRoots::load(&mut c);
        let aws = AwsEnvironment::load(&c);
        let otel = otel::load(&mut c);
        let flush = otel::flush_policy(&mut c, otel.as_ref());
        let (config_path, prefetch, file_loaded) = read(&mut c, read_file, path);
        let roles = prefetch.roles();
        if roles.len() > max_roles {
            c.bad(
                "SECRETS_CACHE_MAX_ROLES",
                format!("is {max_roles}, but the config file names {} roles", roles.len()),
            );
        }

        if !c.problems.is_empty() {
            return Err(ConfigError { problems: c.problems });
        }
        // Precedence: the specific variable, then CACHE_EXTENSION_TTL, then the file's `ttl`.
        let default_ttl = shared_ttl.or(prefetch.ttl).unwrap_or(DEFAULT_TTL);
        Ok(Config {
            http: HttpConfig {
                port,
                token: token.expect("a missing token is a problem above"),
                max_inbound_connections: NonZeroUsize::new(max_inbound).expect("range starts at 1"),
            },
            cache: CacheConfig {
                enabled: cache_enabled && cache_size > 0,
                capacity: cache_size,
                ttl: ByService {
                    secrets: secrets_ttl.unwrap_or(default_ttl),
                    ssm: ssm_ttl.unwrap_or(default_ttl),
                },
                read_timeout: timeout,
                max_stale,
                refresh_ahead,
                prefetch_deadline,
                prefetch,
            },
            upstream: UpstreamConfig {
                timeout,
                max_connections: NonZeroUsize::new(max_upstream).expect("range starts at 1"),
                max_roles,
                session_name,
                trust,
                aws,
            },
            lifecycle: LifecycleConfig {
                init_type,
                refresh_interval,
                sandbox_host,
                runtime_done_wait,
                fetch_budget: timeout.secrets.max(timeout.ssm),
                flush,
            },
            otel,
            process: ProcessConfig {
                log_level,
                worker_threads: NonZeroUsize::new(worker_threads).expect("range starts at 1"),
            },
            config_path,
            file_loaded,
        })
    }
}

/// `lambda-secrets-cache-<function>`, cut to STS's 64 characters, with characters a session
/// name cannot hold replaced by `-`.
fn session_name(function: Option<&str>) -> String {
    let mut name = String::from("lambda-secrets-cache");
    if let Some(f) = function.filter(|f| !f.is_empty()) {
        name.push('-');
        name.extend(f.chars().map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        }));
    }
    name.truncate(64);
    name
}

/// The first token variable set, in the order the README gives ("HTTP API"). With SnapStart the function's
/// credentials come from the container endpoint, and `AWS_SESSION_TOKEN` is not the one to trust.
///
/// When none has a value but one is present and empty, the token is the empty string (from
/// the first present): AWS's emulator (`sam local`) always sets `AWS_SESSION_TOKEN`, to `""`
/// with long-term keys, and a handler sends that variable as the header. A request must still
/// carry the header, empty. On Lambda the session token is never empty (SECURITY.md).
fn token(c: &mut Collector<'_>, init_type: InitType) -> Option<Token> {
    let mut order = TOKEN_VARIABLES;
    if init_type == InitType::SnapStart {
        order = ["AWS_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_SESSION_TOKEN"];
    }
    let token = order
        .iter()
        .find_map(|name| {
            c.var(name).map(|v| Token {
                value: Zeroizing::new(v),
                variable: name,
            })
        })
        .or_else(|| {
            order.iter().find(|name| c.present(name)).map(|name| Token {
                value: Zeroizing::new(String::new()),
                variable: name,
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
    token
}

/// The config file: its path, what it asks for, and whether it existed. A missing default
/// file is nothing to prefetch; a missing file named by `SECRETS_CACHE_CONFIG` or `--config`
/// is a problem.
fn read(c: &mut Collector<'_>, read_file: ReadFile<'_>, path: Option<PathBuf>) -> (PathBuf, PrefetchList, bool) {
    let explicit = path.is_some() || c.var("SECRETS_CACHE_CONFIG").is_some();
    let config_path = path
        .or_else(|| c.var("SECRETS_CACHE_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let problem = |message: String| Problem {
        origin: Origin::FileIo(config_path.clone()),
        message,
    };
    let (file, loaded) = match read_file(&config_path) {
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
                (PrefetchList::default(), true)
            }
        },
        Ok(None) if explicit => {
            c.problems.push(problem("config file not found".into()));
            (PrefetchList::default(), false)
        }
        Ok(None) => (PrefetchList::default(), false),
        Err(e) => {
            c.problems
                .push(problem(format!("cannot read config file: {}", escaped(&e.to_string()))));
            (PrefetchList::default(), false)
        }
    };
    (config_path, file, loaded)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
        assert_eq!(c.http.port, 2773);
        assert!(c.cache.enabled);
        assert_eq!(c.cache.capacity, 1000);
        assert_eq!(c.cache.ttl.secrets, Duration::from_secs(300));
        assert_eq!(c.cache.ttl.ssm, Duration::from_secs(300));
        assert_eq!(c.upstream.timeout.secrets, Duration::from_millis(3000));
        assert_eq!(c.cache.max_stale, Duration::from_secs(900));
        assert_eq!(c.http.token.variable, "AWS_SESSION_TOKEN");
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
        assert_eq!(c.http.token.variable, "AWS_TOKEN");
        assert_eq!(c.http.token.value.as_str(), "t");
        let c = load(&[
            ("AWS_SESSION_TOKEN", "s"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "c"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start"),
        ])
        .unwrap();
        assert_eq!(
            c.http.token.variable, "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "SnapStart trusts the container token"
        );
        assert_eq!(c.lifecycle.init_type, InitType::SnapStart);
        let c = load(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "c")]).unwrap();
        assert_eq!(c.http.token.variable, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    }

    #[test]
    fn an_empty_session_token_is_the_empty_token_and_never_beats_a_real_one() {
        // AWS's emulator with long-term keys.
        let c = load(&[("AWS_SESSION_TOKEN", "")]).unwrap();
        assert_eq!((c.http.token.variable, c.http.token.value.as_str()), ("AWS_SESSION_TOKEN", ""));
        let c = load(&[("AWS_TOKEN", " "), ("AWS_SESSION_TOKEN", "s")]).unwrap();
        assert_eq!(
            (c.http.token.variable, c.http.token.value.as_str()),
            ("AWS_SESSION_TOKEN", "s"),
            "a blank variable does not hide a set one"
        );
        let c = load(&[("AWS_TOKEN", ""), ("AWS_SESSION_TOKEN", "")]).unwrap();
        assert_eq!(c.http.token.variable, "AWS_TOKEN", "the order holds among empty ones");
        assert!(load(&[]).is_err(), "none present at all is still an error");
    }

    #[test]
    fn ttl_precedence_env_then_shared_then_file() {
        let env: HashMap<&str, &str> = [("AWS_TOKEN", "t"), ("SSM_PARAMETER_STORE_TTL", "60"), ("CACHE_EXTENSION_TTL", "2m")].into();
        let file = |_: &std::path::Path| Ok(Some("ttl: 1h\n".to_string()));
        let c = Config::load(&env, &file).unwrap();
        assert_eq!(c.cache.ttl.ssm, Duration::from_secs(60));
        assert_eq!(c.cache.ttl.secrets, Duration::from_secs(120));
        let env: HashMap<&str, &str> = [("AWS_TOKEN", "t")].into();
        let c = Config::load(&env, &file).unwrap();
        assert_eq!(c.cache.ttl.secrets, Duration::from_secs(3600));
        assert!(c.file_loaded);
    }

    #[test]
    fn ttls_above_300_are_honoured() {
        let c = load(&[("AWS_TOKEN", "t"), ("SECRETS_MANAGER_TTL", "3600")]).unwrap();
        assert_eq!(c.cache.ttl.secrets, Duration::from_secs(3600));
    }

    #[test]
    fn zero_timeout_means_default_not_forever() {
        let c = load(&[
            ("AWS_TOKEN", "t"),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "0"),
            ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "500"),
        ])
        .unwrap();
        assert_eq!(c.upstream.timeout.secrets, DEFAULT_TIMEOUT);
        assert_eq!(c.upstream.timeout.ssm, Duration::from_millis(500));
    }

    #[test]
    fn cache_size_zero_or_disabled_is_pass_through() {
        assert!(
            !load(&[("AWS_TOKEN", "t"), ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "0")])
                .unwrap()
                .cache
                .enabled
        );
        assert!(
            !load(&[("AWS_TOKEN", "t"), ("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "FALSE")])
                .unwrap()
                .cache
                .enabled
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
