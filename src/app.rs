//! Wiring: builds the parts from a validated `Config` and runs them. The only place that
//! spawns long-lived tasks: one `CancellationToken`, one `JoinSet`, one `select!`. A task that
//! ends before shutdown is an error, not silence.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::cache::{Cache, Policy, SystemClock};
use crate::config::{Config, ConfigError, InitType};
use crate::http::{HttpError, Server};
use crate::lifecycle::client::{TELEMETRY_SCHEMA, TELEMETRY_SCHEMA_LMI};
use crate::lifecycle::{ExtensionsApi, Lifecycle, LifecycleError, State, Subscription};
use crate::metrics::Metrics;
use crate::source::Upstream;
use crate::telemetry::otlp::Otel;
use crate::telemetry::{self, Progress, TelemetryListener};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{0} stopped unexpectedly")]
    TaskEnded(&'static str),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("init failed ({error_type}): {message}")]
    InitFailed { error_type: &'static str, message: String },
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
pub struct Parts {
    pub listener: TcpListener,
    pub addr: SocketAddr,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    pub server: Arc<Server>,
    /// The OTLP pipeline, when an endpoint is configured.
    pub otel: Option<Arc<Otel>>,
}

impl Parts {
    /// Takes the function-facing socket (`bound` early, else bound now, so it exists before
    /// anything else happens), then builds the AWS clients and the cache. Nothing is fetched yet.
    pub async fn build(config: &Config, bound: Option<Bound>, lifecycle: Option<Arc<State>>) -> Result<Parts, AppError> {
        let configured = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
        let bind_failed = |addr, source| AppError::Bind { addr, source };
        let std_listener = bound
            .unwrap_or_else(|| bind(config.port))
            .map_err(|(addr, e)| bind_failed(addr, e))?;
        let addr = std_listener.local_addr().map_err(|e| bind_failed(configured, e))?;
        let listener = TcpListener::from_std(std_listener).map_err(|e| bind_failed(addr, e))?;
        // The recorder goes in before `Metrics::new()` binds its handles to it.
        let otel = match &config.otel {
            Some(c) => match Otel::new(c.clone(), &instance_id()) {
                Ok(otel) => {
                    otel.install_globals();
                    tracing::info!(endpoint = %c.metrics_endpoint, "OTLP metrics export on");
                    Some(otel)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "OTLP export disabled");
                    None
                }
            },
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let upstream = Arc::new(Upstream::from_env(config, metrics.clone()).await);
        let cache = Cache::new(
            upstream,
            Policy::from_config(config),
            &config.file,
            metrics.clone(),
            Arc::new(SystemClock),
        );
        let server = Server::new(
            cache.clone(),
            metrics.clone(),
            config.token.clone(),
            config.max_inbound_connections.get(),
            lifecycle,
            otel.clone(),
        );
        Ok(Parts {
            listener,
            addr,
            cache,
            metrics,
            server,
            otel,
        })
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

/// Standalone mode: the same server, with refresh-ahead on a timer and prefetch at start.
pub async fn serve(config: Config, bound: Option<Bound>) -> Result<(), AppError> {
    let parts = Parts::build(&config, bound, None).await?;
    tracing::info!(addr = %parts.addr, mode = "standalone", "listening");
    let cancel = CancellationToken::new();
    let mut tasks: Tasks = JoinSet::new();

    spawn_http(&mut tasks, parts.server.clone(), parts.listener, cancel.clone());

    let cache = parts.cache.clone();
    let prefetch = cache.prefetch(&config.file);
    tokio::spawn(async move { prefetch.finish().await.log("prefetch") });

    let c = cancel.clone();
    let interval = config.refresh_interval;
    tasks.spawn(async move { ("refresh timer", refresh_timer(cache, interval, c).await) });
    if let Some(otel) = parts.otel.clone() {
        let c = cancel.clone();
        tasks.spawn(async move {
            otel.run_periodic(c).await;
            ("otlp export timer", Ok(()))
        });
    }

    let outcome = tokio::select! {
        signal = shutdown_signal() => signal.map(|name| tracing::info!(signal = name, "shutting down")),
        Some(ended) = tasks.join_next() => Err(task_outcome(ended)),
    };
    finish(
        &parts.cache,
        parts.otel.as_ref(),
        &cancel,
        &mut tasks,
        tokio::time::Instant::now() + Duration::from_secs(2),
    )
    .await;
    outcome
}

type Tasks = JoinSet<(&'static str, Result<(), AppError>)>;

fn spawn_http(tasks: &mut Tasks, server: Arc<Server>, listener: TcpListener, cancel: CancellationToken) {
    tasks.spawn(async move { ("http server", server.run(listener, cancel).await.map_err(AppError::from)) });
}

/// Extension mode, in the order of SPEC §5: config, bind the HTTP server and the telemetry
/// listener, register, subscribe, prefetch, then the `/event/next` loop until SHUTDOWN.
/// `name` is the executable's file name (the platform matches it against `/opt/extensions`).
pub async fn extension(config: Result<Config, ConfigError>, bound: Option<Bound>, runtime_api: &str, name: &str) -> Result<(), AppError> {
    let api = ExtensionsApi::new(runtime_api);
    let config = match config {
        Ok(c) => c,
        Err(e) => return Err(init_failure(&api, name, None, "Extension.ConfigInvalid", e.to_string()).await),
    };
    let managed = config.init_type == InitType::ManagedInstances;
    let state = Arc::new(State::new(config.init_type));
    let parts = match Parts::build(&config, bound, Some(state.clone())).await {
        Ok(p) => p,
        Err(e) => return Err(init_failure(&api, name, None, "Extension.BindFailed", e.to_string()).await),
    };
    tracing::info!(addr = %parts.addr, mode = "extension", init_type = config.init_type.as_str(), "listening");
    // The Telemetry API feeds the OTLP export (faas.* metrics, the end of each function); with
    // no exporter nothing would consume it. Managed instances run invocations concurrently and
    // cannot register INVOKE; per-invoke telemetry does not apply there.
    let listener = if managed || parts.otel.is_none() {
        None
    } else {
        match TelemetryListener::bind(&config.sandbox_host).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(host = %config.sandbox_host, error = %e, "cannot bind the telemetry listener; running without telemetry");
                None
            }
        }
    };
    if parts.otel.is_none() {
        state.set_telemetry("off (no OTLP exporter)");
    }

    // Flights for the configured entries exist before the function can start (it starts once
    // we have registered); the fetches themselves start right after registering.
    let reserved = (config.init_type != InitType::SnapStart).then(|| parts.cache.reserve_prefetch(&config.file));
    let events: &[&str] = if managed { &["SHUTDOWN"] } else { &["INVOKE", "SHUTDOWN"] };
    let registration = api.register(name, events).await?;
    let mut prefetch = reserved.map(|r| r.launch());
    tracing::info!(
        function = registration.function_name.as_deref().unwrap_or("?"),
        version = registration.function_version.as_deref().unwrap_or("?"),
        "registered"
    );
    let id = registration.id.clone();

    let cancel = CancellationToken::new();
    let mut tasks: Tasks = JoinSet::new();
    spawn_http(&mut tasks, parts.server.clone(), parts.listener, cancel.clone());

    let (progress_tx, progress) = watch::channel(Progress::default());
    if let Some(listener) = listener {
        let uri = listener.uri.clone();
        let (queue_tx, queue_rx) = mpsc::channel::<Bytes>(telemetry::listener::QUEUE);
        let dropped = Arc::new(telemetry::listener::Dropped::default());
        state.observe_telemetry(progress.clone(), dropped.clone());
        let c = cancel.clone();
        tasks.spawn(async move {
            let result = listener.run(queue_tx, dropped, c).await;
            (
                "telemetry listener",
                result.map_err(|e| AppError::TaskEnded(log_task_error("telemetry listener", e))),
            )
        });
        tasks.spawn(async move {
            telemetry::consume(queue_rx, progress_tx).await;
            ("telemetry consumer", Ok(()))
        });
        tokio::spawn(crate::lifecycle::track_finished(state.clone(), progress.clone()));
        let schema = if managed { TELEMETRY_SCHEMA_LMI } else { TELEMETRY_SCHEMA };
        let outcome = api.subscribe(&id, schema, &uri).await;
        match &outcome {
            Subscription::Subscribed => {
                tracing::info!(destination = %uri, "subscribed to the Telemetry API");
                state.set_telemetry(format!("subscribed ({uri})"));
                state.set_subscribed();
            }
            Subscription::NotSupported(body) => {
                tracing::warn!(answer = %crate::escape::escaped(body), "Telemetry API not supported here (202); running without telemetry");
                state.set_telemetry("not supported (202)");
            }
            Subscription::Failed(why) => {
                tracing::warn!(error = %crate::escape::escaped(why), "Telemetry API subscription failed; running without telemetry");
                state.set_telemetry("subscription failed");
            }
        }
    }

    // Init waits for the entries marked `required` only (they can fail it); the rest finish
    // while the function runs, and reads join them.
    if let Some(prefetch) = prefetch.as_mut() {
        let report = prefetch.required().await;
        let required: Vec<String> = report
            .required_failures()
            .map(|(item, e, _)| format!("{item}: {}", e.code()))
            .collect();
        if !required.is_empty() {
            report.log("required prefetch");
            cancel.cancel();
            let message = format!("required entries could not be fetched: {}", required.join(", "));
            return Err(init_failure(&api, name, Some(&id), "Extension.PrefetchFailed", message).await);
        }
    } else {
        tracing::info!("SnapStart: prefetch deferred until the first event after restore");
        state.defer_prefetch(config.file.clone());
    }
    if managed {
        // No INVOKE and no freeze: the rest of the prefetch just finishes.
        if let Some(rest) = prefetch.take() {
            tokio::spawn(async move { rest.finish().await.log("prefetch") });
        }
        let cache = parts.cache.clone();
        let c = cancel.clone();
        let interval = config.refresh_interval;
        tasks.spawn(async move { ("refresh timer", refresh_timer(cache, interval, c).await) });
    }

    let lifecycle = Lifecycle::new(
        api.clone(),
        id.clone(),
        parts.cache.clone(),
        state,
        progress,
        &config,
        parts.otel.clone(),
        prefetch,
    );
    let outcome = tokio::select! {
        ended = lifecycle.run() => match ended {
            Ok(shutdown) => {
                tracing::info!(reason = ?shutdown.reason, "shutdown");
                Ok(crate::lifecycle::instant_of(shutdown.deadline_ms))
            }
            Err(e) => Err(AppError::from(e)),
        },
        signal = shutdown_signal() => signal.map(|name| {
            tracing::info!(signal = name, "shutting down");
            tokio::time::Instant::now() + Duration::from_millis(1500)
        }),
        Some(ended) = tasks.join_next() => Err(task_outcome(ended)),
    };
    match outcome {
        Ok(deadline) => {
            finish(&parts.cache, parts.otel.as_ref(), &cancel, &mut tasks, deadline).await;
            Ok(())
        }
        Err(e) => {
            // After init, a failure of ours is reported with exit/error before exiting; when
            // the Extensions API itself failed (403/500 on next) the platform wants us gone now.
            if !matches!(e, AppError::Lifecycle(_)) {
                let _ = api.exit_error(&id, "Extension.Failed", &e.to_string()).await;
            }
            finish(
                &parts.cache,
                parts.otel.as_ref(),
                &cancel,
                &mut tasks,
                tokio::time::Instant::now() + Duration::from_millis(500),
            )
            .await;
            Err(e)
        }
    }
}

/// SHUTDOWN: stop accepting, let background fetches end, a final export, drop every value,
/// all before `deadline` (less a margin for process exit).
async fn finish(
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

/// Init failed: make sure we are registered (an init error needs an identifier), tell the
/// platform why, and hand back the error for the exit status.
async fn init_failure(api: &ExtensionsApi, name: &str, id: Option<&str>, error_type: &'static str, message: String) -> AppError {
    tracing::error!(error_type, "{message}");
    let id = match id {
        Some(id) => id.to_string(),
        None => match api.register(name, &["INVOKE", "SHUTDOWN"]).await {
            Ok(r) => r.id,
            Err(e) => {
                tracing::error!(error = %e, "cannot register to report the init error");
                return AppError::InitFailed { error_type, message };
            }
        },
    };
    if let Err(e) = api.init_error(&id, error_type, &message).await {
        tracing::error!(error = %e, "cannot report the init error");
    }
    AppError::InitFailed { error_type, message }
}

fn task_outcome(ended: Result<(&'static str, Result<(), AppError>), tokio::task::JoinError>) -> AppError {
    match ended {
        Ok((name, Ok(()))) => AppError::TaskEnded(name),
        Ok((_, Err(e))) => e,
        Err(_) => AppError::TaskEnded("a task (it panicked)"),
    }
}

fn log_task_error(task: &'static str, e: std::io::Error) -> &'static str {
    tracing::error!(task, error = %e, "task failed");
    task
}

/// Refresh-ahead on a timer; in extension mode INVOKE events drive it instead.
async fn refresh_timer(cache: Arc<Cache>, every: Duration, cancel: CancellationToken) -> Result<(), AppError> {
    let mut tick = tokio::time::interval(every);
    // After a pause (a laptop sleeping, a frozen container) run once, not a burst of ticks.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let due = cache.refresh_ahead().len();
                if due > 0 {
                    tracing::debug!(due, "refresh-ahead started");
                }
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT, with the signal's name.
pub async fn shutdown_signal() -> Result<&'static str, AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signals)?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}
