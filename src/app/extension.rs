//! Extension mode, in the order of SPEC §5: config, bind the HTTP server and (with an
//! exporter) the Telemetry API listener, register, subscribe, prefetch (Init waits for the
//! `required` entries only), then the `/event/next` loop until SHUTDOWN.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{AppError, Bound, Parts, Tasks, log_task_error, refresh_timer, shutdown, shutdown_signal, spawn_http, task_outcome};
use crate::cache::Background;
use crate::config::{Config, ConfigError, InitType};
use crate::escape::escaped;
use crate::lambda::ExtensionsApi;
use crate::lambda::client::{TELEMETRY_SCHEMA, TELEMETRY_SCHEMA_LMI};
use crate::lambda::telemetry_api::{Progress, TelemetryApi};
use crate::lifecycle::{Lifecycle, State, report_init_failure};

/// `name` is the executable's file name (the platform matches it against `/opt/extensions`).
pub async fn extension(config: Result<Config, ConfigError>, bound: Option<Bound>, runtime_api: &str, name: &str) -> Result<(), AppError> {
    let api = ExtensionsApi::new(runtime_api);
    let fail = |error_type: &'static str, message: String, id: Option<String>| {
        let api = api.clone();
        async move {
            report_init_failure(&api, name, id.as_deref(), error_type, &message).await;
            AppError::InitFailed { error_type, message }
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return Err(fail("Extension.ConfigInvalid", e.to_string(), None).await),
    };
    let init_type = config.lifecycle.init_type;
    let managed = init_type == InitType::ManagedInstances;
    let state = Arc::new(State::new(init_type));
    let parts = match Parts::build(&config, bound, Some(state.clone())).await {
        Ok(p) => p,
        Err(e) => return Err(fail("Extension.BindFailed", e.to_string(), None).await),
    };
    tracing::info!(addr = %parts.addr, mode = "extension", init_type = init_type.as_str(), "listening");
    // The Telemetry API feeds the OTLP export (faas.* metrics, the end of each function); with
    // no exporter nothing would consume it. Managed instances run invocations concurrently and
    // cannot register INVOKE; per-invoke telemetry does not apply there.
    let telemetry_api = if managed || parts.otel.is_none() {
        state.set_telemetry("off (no OTLP exporter)");
        None
    } else {
        let host = &config.lifecycle.sandbox_host;
        TelemetryApi::bind(host)
            .await
            .inspect_err(|e| tracing::warn!(host = %host, error = %e, "cannot bind the telemetry listener; running without telemetry"))
            .ok()
    };

    // Flights for the configured entries exist before the function can start (it starts once
    // we have registered); the fetches themselves start right after registering.
    let reserved = (init_type != InitType::SnapStart).then(|| parts.cache.reserve_prefetch());
    let events: &[&str] = if managed { &["SHUTDOWN"] } else { &["INVOKE", "SHUTDOWN"] };
    let registration = api.register(name, events).await?;
    let mut prefetch = reserved.map(|r| r.launch());
    tracing::info!(
        function = escaped(registration.function_name.as_deref().unwrap_or("?")),
        version = escaped(registration.function_version.as_deref().unwrap_or("?")),
        "registered"
    );
    let id = registration.id;

    let cancel = CancellationToken::new();
    let mut tasks: Tasks = JoinSet::new();
    spawn_http(&mut tasks, parts.server.clone(), parts.listener, cancel.clone());
    let schema = if managed { TELEMETRY_SCHEMA_LMI } else { TELEMETRY_SCHEMA };
    let progress = match telemetry_api {
        Some(t) => subscribe(t, &api, &id, schema, &state, &mut tasks, &cancel).await,
        None => watch::channel(Progress::default()).1,
    };

    match prefetch.as_mut() {
        Some(prefetch) => {
            if let Err(message) = required(prefetch).await {
                cancel.cancel();
                return Err(fail("Extension.PrefetchFailed", message, Some(id)).await);
            }
        }
        None => {
            tracing::info!("SnapStart: prefetch deferred until the first event after restore");
            parts.cache.defer_prefetch();
        }
    }
    if managed {
        // No INVOKE and no freeze: the rest of the prefetch just finishes.
        if let Some(rest) = prefetch.take() {
            tokio::spawn(async move { rest.finish().await.log("prefetch") });
        }
        let (cache, c, every) = (parts.cache.clone(), cancel.clone(), config.cache.refresh_interval);
        tasks.spawn(async move { ("refresh timer", refresh_timer(cache, every, c).await) });
    }

    let lifecycle = Lifecycle::new(
        (api.clone(), id.clone()),
        &config.lifecycle,
        parts.cache.clone(),
        state,
        progress,
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
    let (deadline, result) = match outcome {
        Ok(deadline) => (deadline, Ok(())),
        Err(e) => {
            // After init, a failure of ours is reported with exit/error before exiting; when
            // the Extensions API itself failed (403/500 on next) the platform wants us gone now.
            if !matches!(e, AppError::Platform(_)) {
                let _ = api.exit_error(&id, "Extension.Failed", &e.to_string()).await;
            }
            (tokio::time::Instant::now() + Duration::from_millis(500), Err(e))
        }
    };
    shutdown(&parts.cache, parts.otel.as_ref(), &cancel, &mut tasks, deadline).await;
    result
}

/// Subscribes to the Telemetry API and runs its listener and consumer; returns the progress
/// the lifecycle watches.
async fn subscribe(
    telemetry_api: TelemetryApi,
    api: &ExtensionsApi,
    id: &str,
    schema: &str,
    state: &Arc<State>,
    tasks: &mut Tasks,
    cancel: &CancellationToken,
) -> watch::Receiver<Progress> {
    let started = telemetry_api.start(api, id, schema, cancel.clone()).await;
    state.observe_telemetry(started.progress.clone(), started.dropped.clone());
    state.subscription(&started.subscription, &started.uri);
    let listener = started.listener;
    tasks.spawn(async move {
        let result = listener.await;
        (
            "telemetry listener",
            result.map_err(|e| AppError::TaskEnded(log_task_error("telemetry listener", e))),
        )
    });
    let consumer = started.consumer;
    tasks.spawn(async move {
        consumer.await;
        ("telemetry consumer", Ok(()))
    });
    let (state, progress) = (state.clone(), started.progress.clone());
    tasks.spawn(async move {
        crate::lifecycle::track_finished(state, progress).await;
        ("invocation tracker", Ok(()))
    });
    started.progress
}

/// Waits for the entries marked `required` (they can fail Init); the rest finish while the
/// function runs, and reads join them. `Err` names the entries that failed.
async fn required(prefetch: &mut Background) -> Result<(), String> {
    let report = prefetch.required().await;
    let failed: Vec<String> = report
        .required_failures()
        .map(|(item, e, _)| format!("{item}: {}", e.code()))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    report.log("required prefetch");
    Err(format!("required entries could not be fetched: {}", failed.join(", ")))
}
