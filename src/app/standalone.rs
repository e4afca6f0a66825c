//! Standalone mode (`serve`): the same HTTP API, with the prefetch at start, refresh-ahead and
//! the OTLP export on timers, until SIGTERM or SIGINT.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{AppError, Bound, Parts, Tasks, shutdown, shutdown_signal, spawn_http, task_outcome};
use crate::config::Config;

pub async fn standalone(config: Config, bound: Option<Bound>) -> Result<(), AppError> {
    let parts = Parts::build(&config, bound, None)?;
    tracing::info!(addr = %parts.addr, mode = "standalone", "listening");
    let cancel = CancellationToken::new();
    let mut tasks: Tasks = JoinSet::new();

    spawn_http(&mut tasks, parts.server.clone(), parts.listener, cancel.clone());

    let cache = parts.cache.clone();
    let prefetch = cache.prefetch();
    tokio::spawn(async move { prefetch.finish().await.log("prefetch") });

    let c = cancel.clone();
    let interval = config.lifecycle.refresh_interval;
    tasks.spawn(async move {
        let ended = crate::lifecycle::refresh_on_timer(cache, interval, c).await;
        (
            "refresh timer",
            ended.map_err(|error| AppError::TaskFailed {
                task: "refresh timer",
                error,
            }),
        )
    });
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    shutdown(&parts.cache, parts.otel.as_ref(), &cancel, &mut tasks, deadline).await;
    outcome
}
