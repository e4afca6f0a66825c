//! Extension mode: registration first (only the bound port and the config read come before
//! it), then the parts built from the configuration while the runtime starts, Lambda's Init
//! and `/event/next` loop (`lifecycle`), then the shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{AppError, Bound, Parts, Tasks, shutdown, shutdown_signal, spawn_http, task_outcome};
use crate::config::{Config, ConfigError};
use crate::lambda::ExtensionsApi;
use crate::lifecycle::{self, State};

/// `name` is the executable's file name (the platform matches it against `/opt/extensions`).
pub async fn extension(config: Result<Config, ConfigError>, bound: Option<Bound>, runtime_api: &str, name: &str) -> Result<(), AppError> {
    let api = ExtensionsApi::new(runtime_api);
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            return Err(lifecycle::failed(&api, name, None, "Extension.ConfigInvalid", e.to_string())
                .await
                .into());
        }
    };
    let id = lifecycle::register(&api, name, config.lifecycle.init_type).await?;
    let state = Arc::new(State::new(config.lifecycle.init_type));
    let parts = match Parts::build(&config, bound, Some(state.clone())) {
        Ok(p) => p,
        Err(e) => {
            return Err(lifecycle::failed(&api, name, Some(&id), "Extension.BindFailed", e.to_string())
                .await
                .into());
        }
    };

    let cancel = CancellationToken::new();
    let mut tasks: Tasks = JoinSet::new();
    let driven = lifecycle::Parts {
        cache: parts.cache.clone(),
        state,
        otel: parts.otel.clone(),
        restore: parts.restore.clone(),
    };
    let (server, listener, addr) = (parts.server.clone(), parts.listener, parts.addr);
    let accept = || {
        tracing::info!(addr = %addr, mode = "extension", init_type = config.lifecycle.init_type.as_str(), "listening");
        spawn_http(&mut tasks, server, listener, cancel.clone());
    };
    let started = match lifecycle::init(&api, (name, id), &config.lifecycle, driven, accept, &cancel).await {
        Ok(started) => started,
        Err(e) => {
            cancel.cancel();
            return Err(e.into());
        }
    };
    for (task, work) in started.tasks {
        tasks.spawn(async move { (task, work.await.map_err(|e| AppError::TaskFailed { task, error: e })) });
    }
    let registered = started.lifecycle.registered();

    let outcome = tokio::select! {
        ended = started.lifecycle.run() => match ended {
            Ok(shutdown) => {
                tracing::info!(reason = ?shutdown.reason, "shutdown");
                Ok(lifecycle::instant_of(shutdown.deadline_ms))
            }
            Err(e) => Err(AppError::from(e)),
        },
        signal = shutdown_signal() => signal.map(|name| {
            tracing::info!(signal = name, "shutting down");
            tokio::time::Instant::now() + Duration::from_millis(1500)
        }),
        Some(ended) = tasks.join_next() => Err(task_outcome(ended)),
    };
    let (deadline, result) = match outcome {
        Ok(deadline) => (deadline, Ok(())),
        Err(e) => {
            registered.failed(&e, matches!(e, AppError::Platform(_))).await;
            (tokio::time::Instant::now() + Duration::from_millis(500), Err(e))
        }
    };
    shutdown(&parts.cache, parts.otel.as_ref(), &cancel, &mut tasks, deadline).await;
    result
}
