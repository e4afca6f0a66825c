//! Init, in Lambda's order. The extension registers first (`register`: with `INVOKE` and
//! `SHUTDOWN`; `SHUTDOWN` only on Lambda Managed Instances, which run invocations concurrently
//! and refuse `INVOKE`): Lambda starts the runtime only once every extension has, so nothing
//! but binding the port and reading the config comes before it. Then (`init`) the prefetch's
//! flights are reserved before the server accepts (a read from the function's init joins
//! them) and launched. With an OTLP exporter (only then: nothing else consumes it) the
//! Telemetry API is subscribed, in the schema the init type needs. Init ends at the first
//! `/next`, which waits for the `required` entries only. Under SnapStart nothing is fetched:
//! the restore gate runs the prefetch at the first activity after the restore.
//!
//! A failure during Init is reported with `init/error` (registering first if need be); after
//! Init, with `exit/error`, except when the Extensions API itself failed (the platform wants
//! the extension gone at once).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::flush::FlushControl;
use super::restore::RestoreGate;
use super::state::State;
use super::{Lifecycle, refresh_on_timer};
use crate::cache::{Background, Cache};
use crate::config::{InitType, LifecycleConfig};
use crate::escape::escaped;
use crate::lambda::client::{TELEMETRY_SCHEMA, TELEMETRY_SCHEMA_LMI};
use crate::lambda::telemetry_api::{Progress, TelemetryApi};
use crate::lambda::{ExtensionsApi, PlatformError};
use crate::telemetry::otlp::Otel;
use crate::upstream::FetchError;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Reported to the platform already (`init/error`).
    #[error("init failed ({error_type}): {message}")]
    Failed { error_type: &'static str, message: String },
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

/// What the lifecycle drives and reports on, built by `app` from the configuration.
pub struct Parts {
    pub cache: Arc<Cache>,
    pub state: Arc<State>,
    pub otel: Option<Arc<Otel>>,
    /// SnapStart only.
    pub restore: Option<Arc<RestoreGate>>,
}

/// A long-lived task Init started, for `app` to run and watch: its name, and the work.
pub type Task = (&'static str, Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>);

/// Init went through: the `/next` loop to run, and the tasks to run beside it.
pub struct Started {
    pub lifecycle: Lifecycle,
    pub tasks: Vec<Task>,
}

/// Registers extension `name` for the events `init_type` allows; returns its identifier.
pub async fn register(api: &ExtensionsApi, name: &str, init_type: InitType) -> Result<String, InitError> {
    let events: &[&str] = match init_type {
        InitType::ManagedInstances => &["SHUTDOWN"],
        _ => &["INVOKE", "SHUTDOWN"],
    };
    let registration = api.register(name, events).await?;
    tracing::info!(
        function = escaped(registration.function_name.as_deref().unwrap_or("?")),
        version = escaped(registration.function_version.as_deref().unwrap_or("?")),
        "registered"
    );
    Ok(registration.id)
}

/// Runs the rest of Init for extension `name`, registered as `id`. `accept` starts the
/// function-facing server: called once the prefetch's flights are reserved. `cancel` ends the
/// tasks Init starts.
pub async fn init(
    api: &ExtensionsApi,
    (name, id): (&str, String),
    config: &LifecycleConfig,
    parts: Parts,
    accept: impl FnOnce(),
    cancel: &CancellationToken,
) -> Result<Started, InitError> {
    let managed = config.init_type == InitType::ManagedInstances;
    let reserved = parts.restore.is_none().then(|| parts.cache.reserve_prefetch());
    accept();
    let mut prefetch = reserved.map(|r| r.launch());
    let telemetry_api = if managed || parts.otel.is_none() {
        parts.state.set_telemetry("off (no OTLP exporter)");
        None
    } else {
        let host = &config.sandbox_host;
        TelemetryApi::bind(host)
            .await
            .inspect_err(|e| tracing::warn!(host = %host, error = %e, "cannot bind the telemetry listener; running without telemetry"))
            .ok()
    };

    let mut tasks: Vec<Task> = Vec::new();
    let schema = if managed { TELEMETRY_SCHEMA_LMI } else { TELEMETRY_SCHEMA };
    let progress = match telemetry_api {
        Some(t) => subscribe(t, api, &id, schema, &parts.state, &mut tasks, cancel).await,
        None => watch::channel(Progress::default()).1,
    };

    match prefetch.as_mut() {
        Some(prefetch) => {
            if let Err(message) = required(prefetch).await {
                return Err(failed(api, name, Some(&id), "Extension.PrefetchFailed", message).await);
            }
        }
        None => tracing::info!("SnapStart: prefetch deferred until the first event after restore"),
    }
    if managed {
        // No INVOKE and no freeze: the rest of the prefetch just finishes, and refresh-ahead
        // runs on a timer.
        if let Some(rest) = prefetch.take() {
            tasks.push((
                "prefetch",
                Box::pin(async move {
                    rest.finish().await.log("prefetch");
                    Ok(())
                }),
            ));
        }
        let (cache, every, cancel) = (parts.cache.clone(), config.refresh_interval, cancel.clone());
        tasks.push(("refresh timer", Box::pin(refresh_on_timer(cache, every, cancel))));
    }

    let lifecycle = Lifecycle {
        api: api.clone(),
        id,
        cache: parts.cache,
        state: parts.state,
        progress,
        runtime_done_wait: config.runtime_done_wait,
        fetch_budget: config.fetch_budget,
        otel: parts.otel,
        flush: FlushControl::new(config.flush),
        pending: prefetch,
        restore: parts.restore,
        last_request_id: None,
    };
    Ok(Started { lifecycle, tasks })
}

/// Init failed: tells the platform (`init/error`, registering first when there is no `id`
/// yet: an init error needs one), and says so. Failures to report are logged; the caller
/// exits anyway.
pub async fn failed(api: &ExtensionsApi, name: &str, id: Option<&str>, error_type: &'static str, message: String) -> InitError {
    tracing::error!(error_type, "{message}");
    let id = match id {
        Some(id) => Some(id.to_string()),
        None => match api.register(name, &["INVOKE", "SHUTDOWN"]).await {
            Ok(r) => Some(r.id),
            Err(e) => {
                tracing::error!(error = %e, "cannot register to report the init error");
                None
            }
        },
    };
    if let Some(id) = id
        && let Err(e) = api.init_error(&id, error_type, &message).await
    {
        tracing::error!(error = %e, "cannot report the init error");
    }
    InitError::Failed { error_type, message }
}

/// Subscribes to the Telemetry API; its listener, its consumer and the invocation tracker go
/// into `tasks`. Returns the progress the lifecycle watches.
async fn subscribe(
    telemetry_api: TelemetryApi,
    api: &ExtensionsApi,
    id: &str,
    schema: &str,
    state: &Arc<State>,
    tasks: &mut Vec<Task>,
    cancel: &CancellationToken,
) -> watch::Receiver<Progress> {
    let started = telemetry_api
        .start(api, id, schema, crate::telemetry::faas::record, cancel.clone())
        .await;
    state.observe_telemetry(started.progress.clone(), started.dropped.clone());
    state.subscription(&started.subscription, &started.uri);
    let consumer = started.consumer;
    tasks.push(("telemetry listener", Box::pin(started.listener)));
    tasks.push((
        "telemetry consumer",
        Box::pin(async move {
            consumer.await;
            Ok(())
        }),
    ));
    let (state, progress) = (state.clone(), started.progress.clone());
    tasks.push((
        "invocation tracker",
        Box::pin(async move {
            super::track_finished(state, progress).await;
            Ok(())
        }),
    ));
    started.progress
}

/// Waits for the entries marked `required` (they can fail Init); the rest finish while the
/// function runs, and reads join them. `Err` names the entries that failed.
async fn required(prefetch: &mut Background) -> Result<(), String> {
    let report = prefetch.required().await;
    let failed: Vec<String> = report
        .required_failures()
        .map(|(item, e, _)| match e {
            // AWS's own answer: its code says it (a throttled one says for how long).
            FetchError::Service { .. } if !e.is_throttling() => format!("{item}: {}", e.code()),
            // Ours: the code and the cause (no region, no credentials, unreachable, ...).
            _ => format!("{item}: {} ({})", e.code(), e.message()),
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    report.log("required prefetch");
    Err(format!("required entries could not be fetched: {}", failed.join(", ")))
}
