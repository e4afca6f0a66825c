//! Wiring: builds the parts from a validated `Config` and runs them. The only place that
//! spawns long-lived tasks: one `CancellationToken`, one `JoinSet`, one `select!`. A task that
//! ends before shutdown is an error, not silence.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, Policy, PrefetchReport, SystemClock};
use crate::config::Config;
use crate::http::{HttpError, Server};
use crate::metrics::Metrics;
use crate::source::Upstream;

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
}

/// The parts every mode shares: a bound listener and the cache behind it.
pub struct Parts {
    pub listener: TcpListener,
    pub addr: SocketAddr,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    pub server: Arc<Server>,
}

impl Parts {
    /// Binds the function-facing socket first (so it exists before anything else happens),
    /// then builds the AWS clients and the cache. Nothing is fetched yet.
    pub async fn build(config: &Config) -> Result<Parts, AppError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
        let listener = TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| AppError::Bind { addr, source })?;
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
        );
        Ok(Parts {
            listener,
            addr,
            cache,
            metrics,
            server,
        })
    }
}

pub fn log_prefetch(report: &PrefetchReport) {
    for (item, error, required) in &report.failed {
        tracing::warn!(item = %item, error = error.code(), required, "prefetch failed");
    }
    tracing::info!(loaded = report.loaded, failed = report.failed.len(), "prefetch finished");
}

/// Standalone mode: the same server, with refresh-ahead on a timer and prefetch at start.
pub async fn serve(config: Config) -> Result<(), AppError> {
    let parts = Parts::build(&config).await?;
    tracing::info!(addr = %parts.addr, mode = "standalone", "listening");
    let cancel = CancellationToken::new();
    let mut tasks: JoinSet<(&'static str, Result<(), AppError>)> = JoinSet::new();

    let server = parts.server.clone();
    let listener = parts.listener;
    let c = cancel.clone();
    tasks.spawn(async move { ("http server", server.run(listener, c).await.map_err(AppError::from)) });

    let cache = parts.cache.clone();
    let prefetch = cache.prefetch(&config.file);
    tokio::spawn(async move { log_prefetch(&prefetch.await) });

    let c = cancel.clone();
    let interval = config.refresh_interval;
    tasks.spawn(async move { ("refresh timer", refresh_timer(cache, interval, c).await) });

    let outcome = tokio::select! {
        signal = shutdown_signal() => signal.map(|name| tracing::info!(signal = name, "shutting down")),
        Some(ended) = tasks.join_next() => match ended {
            Ok((name, Ok(()))) => Err(AppError::TaskEnded(name)),
            Ok((_, Err(e))) => Err(e),
            Err(_) => Err(AppError::TaskEnded("a task (it panicked)")),
        },
    };
    cancel.cancel();
    parts.cache.tasks().close();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
        parts.cache.tasks().wait().await;
    })
    .await;
    outcome
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
                let due = cache.refresh_ahead();
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
