//! Wiring: builds the parts from a validated `Config`, each from its own slice, and runs them.
//! The only place that spawns long-lived tasks: one `CancellationToken`, one `JoinSet`, one
//! `select!` per mode (`standalone`, `extension`). A task that ends before shutdown is an error,
//! not silence.

mod extension;
mod standalone;

pub use extension::extension;
pub use standalone::standalone;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, SystemClock};
use crate::config::Config;
use crate::counters::Counters;
use crate::http::{Hooks, HttpError, Server};
use crate::lambda::PlatformError;
use crate::lifecycle::{InitError, RestoreGate, State};
use crate::telemetry::otlp::Otel;
use crate::telemetry::trace::Spans;
use crate::upstream::Aws;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{0} stopped unexpectedly")]
    TaskEnded(&'static str),
    #[error("{task} failed: {error}")]
    TaskFailed { task: &'static str, error: std::io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("init failed ({error_type}): {message}")]
    InitFailed { error_type: &'static str, message: String },
}

impl From<InitError> for AppError {
    fn from(e: InitError) -> AppError {
        match e {
            InitError::Failed { error_type, message } => AppError::InitFailed { error_type, message },
            InitError::Platform(e) => AppError::Platform(e),
        }
    }
}

/// The function-facing socket, bound before the config file is read (`bind`).
pub type Bound = Result<std::net::TcpListener, (SocketAddr, std::io::Error)>;

/// Binds 127.0.0.1:`port` (0: an ephemeral port). Called before the async runtime exists.
pub fn bind(port: u16) -> Bound {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = std::net::TcpListener::bind(addr).map_err(|e| (addr, e))?;
    listener.set_nonblocking(true).map_err(|e| (addr, e))?;
    Ok(listener)
}

/// The parts every mode shares: a bound listener and the cache behind it.
struct Parts {
    listener: TcpListener,
    addr: SocketAddr,
    cache: Arc<Cache>,
    server: Arc<Server>,
    /// The OTLP pipeline, when an endpoint is configured.
    otel: Option<Arc<Otel>>,
    /// Extension mode under SnapStart: the prefetch waits for the restore.
    restore: Option<Arc<RestoreGate>>,
}

impl Parts {
    /// Takes the function-facing socket (`bound` early, else bound now), then builds the OTLP
    /// pipeline, the cache and the server (with what `/status` shows of `lifecycle`, in
    /// extension mode), and starts building the AWS clients (`Aws::connect`: a fetch that comes
    /// first waits for them). Nothing is fetched yet. In extension mode this runs after
    /// `/register`, while the runtime starts.
    fn build(config: &Config, bound: Option<Bound>, lifecycle: Option<Arc<State>>) -> Result<Parts, AppError> {
        let configured = SocketAddr::from((Ipv4Addr::LOCALHOST, config.http.port));
        let bind_failed = |addr, source| AppError::Bind { addr, source };
        let std_listener = bound
            .unwrap_or_else(|| bind(config.http.port))
            .map_err(|(addr, e)| bind_failed(addr, e))?;
        let addr = std_listener.local_addr().map_err(|e| bind_failed(configured, e))?;
        let listener = TcpListener::from_std(std_listener).map_err(|e| bind_failed(addr, e))?;
        // The recorder goes in before `Counters::new()` binds its handles to it.
        let otel = config.otel.as_ref().and_then(|c| match Otel::new(c, &instance_id()) {
            Ok(otel) => {
                otel.install_globals();
                tracing::info!(endpoint = %c.metrics_endpoint, "OTLP metrics export on");
                Some(otel)
            }
            Err(e) => {
                tracing::warn!(error = %e, "OTLP export disabled");
                None
            }
        });
        if config.http.token.value.is_empty() {
            tracing::warn!(
                variable = config.http.token.variable,
                "the request token is empty (the variable is set but empty, as AWS's emulator sets AWS_SESSION_TOKEN with long-term keys): requests must send X-Aws-Parameters-Secrets-Token with an empty value"
            );
        }
        let counters = Arc::new(Counters::new());
        let spans = Spans::new(otel.as_ref().and_then(|o| o.tracer()));
        let upstream = Arc::new(Aws::new(&config.upstream, counters.clone(), spans.clone()));
        connect(upstream.clone());
        let cache = Cache::new(upstream, &config.cache, counters.clone(), Arc::new(SystemClock));
        let restore = lifecycle
            .as_ref()
            .and_then(|_| RestoreGate::for_init(config.lifecycle.init_type, &cache));
        let hooks = hooks(otel.clone(), lifecycle, restore.clone());
        let server = Server::new(cache.clone(), counters, &config.http, hooks, spans);
        Ok(Parts {
            listener,
            addr,
            cache,
            server,
            otel,
            restore,
        })
    }
}

/// Builds the AWS clients on a thread of its own: their CPU work (the trust roots, the SDK's
/// configuration) stays off the async thread, so the first `/next` and the function's first
/// reads are not queued behind it. A fetch that needs the clients first waits for the build.
fn connect(upstream: Arc<Aws>) {
    let handle = tokio::runtime::Handle::current();
    let on_thread = upstream.clone();
    let spawned = std::thread::Builder::new()
        .name("aws-clients".into())
        .spawn(move || handle.block_on(on_thread.connect()));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "no thread for the AWS clients; building them on the runtime");
        tokio::spawn(async move { upstream.connect().await });
    }
}

/// What `/status` shows beside the cache (the OTLP export, the lifecycle), the current
/// invocation for spans, and the SnapStart restore gate each read passes, as the server's
/// hooks.
fn hooks(otel: Option<Arc<Otel>>, lifecycle: Option<Arc<State>>, restore: Option<Arc<RestoreGate>>) -> Hooks {
    let current = lifecycle.clone();
    Hooks {
        status: Some(Box::new(move || {
            let mut sections = serde_json::Map::new();
            if let Some(state) = &lifecycle {
                sections.insert("lifecycle".into(), serde_json::to_value(state.status()).expect("status serialises"));
            }
            if let Some(otel) = &otel {
                sections.insert("otlp".into(), serde_json::to_value(otel.status()).expect("status serialises"));
            }
            sections
        })),
        invocation: current.map(|state| Box::new(move || state.current().map(|i| i.trace.clone())) as Box<dyn Fn() -> _ + Send + Sync>),
        before_read: restore.map(|gate| Box::new(move || gate.activity()) as Box<dyn Fn() + Send + Sync>),
    }
}

/// This environment's `faas.instance`: the platform does not tell extensions their log
/// stream, so a random id per process.
fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}{:08x}", h.finish(), std::process::id())
}

type Tasks = JoinSet<(&'static str, Result<(), AppError>)>;

fn spawn_http(tasks: &mut Tasks, server: Arc<Server>, listener: TcpListener, cancel: CancellationToken) {
    tasks.spawn(async move { ("http server", server.run(listener, cancel).await.map_err(AppError::from)) });
}

/// SHUTDOWN: stop accepting, let background fetches end, a final export, drop every value,
/// all before `deadline` (less a margin for process exit).
async fn shutdown(
    cache: &Arc<Cache>,
    otel: Option<&Arc<Otel>>,
    cancel: &CancellationToken,
    tasks: &mut Tasks,
    deadline: tokio::time::Instant,
) {
    let stop_by = deadline.checked_sub(Duration::from_millis(200)).unwrap_or(deadline);
    let left = || stop_by.saturating_duration_since(tokio::time::Instant::now());
    cancel.cancel();
    let _ = tokio::time::timeout(left() / 3, async { while tasks.join_next().await.is_some() {} }).await;
    cache.settle(left() / 3).await;
    if let Some(otel) = otel {
        otel.flush(left()).await;
    }
    cache.clear();
}

fn task_outcome(ended: Result<(&'static str, Result<(), AppError>), tokio::task::JoinError>) -> AppError {
    match ended {
        Ok((name, Ok(()))) => AppError::TaskEnded(name),
        Ok((_, Err(e))) => e,
        Err(_) => AppError::TaskEnded("a task (it panicked)"),
    }
}

/// Resolves on SIGTERM or SIGINT, with the signal's name.
async fn shutdown_signal() -> Result<&'static str, AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signals)?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}
