//! Lambda lifecycle (extension mode): the `/event/next` loop and what each event means for the
//! cache. INVOKE starts refresh-ahead, then holds `/next` until the platform says the function
//! is done (`platform.runtimeDone`, bounded) and nothing is left in flight; SHUTDOWN ends the
//! loop. Time is judged by the wall clock: the process is frozen between events.

pub mod client;
pub mod event;
pub mod flush;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

pub use client::{ExtensionsApi, LifecycleError, Registration, Subscription};
pub use event::{Event, Invoke, Shutdown, ShutdownReason, XRayHeader};

use crate::cache::{Cache, Clock};
use crate::config::{Config, FileConfig, InitType};
use crate::telemetry::Progress;

/// Kept back from `deadlineMs` so `/next` is called before the platform gives up on us.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// The invocation being served, for attributing cache reads (spans, logs) to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub request_id: String,
    pub deadline_ms: u64,
    pub invoked_function_arn: Option<String>,
    pub trace: Option<XRayHeader>,
    /// The first invocation this process serves.
    pub coldstart: bool,
}

/// How an INVOKE's wait for `platform.runtimeDone` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The function finished (runtimeDone for this request arrived).
    RuntimeDone,
    /// The Telemetry API delivered nothing within `SECRETS_CACHE_RUNTIME_DONE_WAIT`.
    NoTelemetry,
    /// Telemetry works, but runtimeDone did not come before the deadline.
    Deadline,
}

/// Extension-mode state that `/status` shows and the telemetry issue reads.
pub struct State {
    pub init_type: InitType,
    invocations: AtomicU64,
    current: ArcSwapOption<Invocation>,
    telemetry: Mutex<String>,
    runtime_done: AtomicU64,
    no_telemetry: AtomicU64,
    deadline: AtomicU64,
    cancelled_fetches: AtomicU64,
    /// SnapStart: the prefetch list, held until the first sign of a restore.
    deferred: Mutex<Option<FileConfig>>,
    /// Set once init is over; whoever sees activity first after that runs the prefetch.
    restore_armed: AtomicBool,
    /// The Telemetry API side, once the listener runs: what arrived, what was dropped.
    telemetry_in: std::sync::OnceLock<(watch::Receiver<Progress>, Arc<crate::telemetry::listener::Dropped>)>,
}

#[derive(Debug, Serialize)]
pub struct StateSnapshot {
    pub mode: &'static str,
    pub initialization_type: &'static str,
    pub invocations: u64,
    pub current_request_id: Option<String>,
    pub telemetry: String,
    /// How each INVOKE's hold on `/next` ended.
    pub next_released_by: Released,
    pub cancelled_fetches: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_in: Option<TelemetryIn>,
}

/// What the Telemetry API listener received and dropped.
#[derive(Debug, Serialize)]
pub struct TelemetryIn {
    pub deliveries: u64,
    pub events: u64,
    pub unknown_types: u64,
    pub malformed: u64,
    pub dropped_queue_full: u64,
    pub dropped_too_large: u64,
}

#[derive(Debug, Serialize)]
pub struct Released {
    pub runtime_done: u64,
    pub no_telemetry: u64,
    pub deadline: u64,
}

impl State {
    pub fn new(init_type: InitType) -> State {
        State {
            init_type,
            invocations: AtomicU64::new(0),
            current: ArcSwapOption::empty(),
            telemetry: Mutex::new("not subscribed".into()),
            runtime_done: AtomicU64::new(0),
            no_telemetry: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            cancelled_fetches: AtomicU64::new(0),
            deferred: Mutex::new(None),
            restore_armed: AtomicBool::new(false),
            telemetry_in: std::sync::OnceLock::new(),
        }
    }

    /// Lets `/status` report the Telemetry API deliveries.
    pub fn observe_telemetry(&self, progress: watch::Receiver<Progress>, dropped: Arc<crate::telemetry::listener::Dropped>) {
        let _ = self.telemetry_in.set((progress, dropped));
    }

    /// SnapStart: keep `file` for after the restore instead of fetching it now.
    pub fn defer_prefetch(&self, file: FileConfig) {
        *self.deferred.lock().expect("deferred prefetch lock holds no invariants") = Some(file);
    }

    /// Called on every cache request and on INVOKE. After a SnapStart init, the first of
    /// them is the first thing that happens after the restore: it drops whatever was fetched
    /// before the snapshot and starts the prefetch (registered before it returns, so the
    /// caller's own read joins it). Costs one atomic load otherwise.
    pub fn restored(&self, cache: &Arc<Cache>) {
        if !self.restore_armed.load(Relaxed) {
            return;
        }
        // Held until the flights are registered: a reader that loses the race waits here and
        // then joins them, instead of fetching on its own.
        let mut deferred = self.deferred.lock().expect("deferred prefetch lock holds no invariants");
        if !self.restore_armed.swap(false, Relaxed) {
            return;
        }
        let Some(file) = deferred.take() else {
            return;
        };
        tracing::info!("first activity after restore: prefetching");
        cache.clear();
        let prefetch = cache.prefetch(&file);
        drop(deferred);
        tokio::spawn(async move { crate::app::log_prefetch(&prefetch.await) });
    }

    /// The invocation in progress; `None` during init.
    pub fn current(&self) -> Option<Arc<Invocation>> {
        self.current.load_full()
    }

    pub fn set_telemetry(&self, description: impl Into<String>) {
        *self.telemetry.lock().expect("telemetry description lock holds no invariants") = description.into();
    }

    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            mode: "extension",
            initialization_type: self.init_type.as_str(),
            invocations: self.invocations.load(Relaxed),
            current_request_id: self.current().map(|i| i.request_id.clone()),
            telemetry: self
                .telemetry
                .lock()
                .expect("telemetry description lock holds no invariants")
                .clone(),
            next_released_by: Released {
                runtime_done: self.runtime_done.load(Relaxed),
                no_telemetry: self.no_telemetry.load(Relaxed),
                deadline: self.deadline.load(Relaxed),
            },
            cancelled_fetches: self.cancelled_fetches.load(Relaxed),
            telemetry_in: self.telemetry_in.get().map(|(progress, dropped)| {
                let p = progress.borrow();
                TelemetryIn {
                    deliveries: p.deliveries,
                    events: p.events,
                    unknown_types: p.unknown,
                    malformed: p.malformed,
                    dropped_queue_full: dropped.full.load(Relaxed),
                    dropped_too_large: dropped.too_large.load(Relaxed),
                }
            }),
        }
    }
}

/// The `/event/next` loop after a successful init.
pub struct Lifecycle {
    pub api: ExtensionsApi,
    pub id: String,
    pub cache: Arc<Cache>,
    pub state: Arc<State>,
    pub progress: watch::Receiver<Progress>,
    pub runtime_done_wait: Duration,
    /// The longest a background fetch may need (the larger upstream timeout).
    pub fetch_budget: Duration,
    pub otel: Option<Arc<crate::telemetry::otlp::Otel>>,
    pub flush: flush::FlushControl,
}

impl Lifecycle {
    pub fn new(
        api: ExtensionsApi,
        id: String,
        cache: Arc<Cache>,
        state: Arc<State>,
        progress: watch::Receiver<Progress>,
        config: &Config,
        otel: Option<Arc<crate::telemetry::otlp::Otel>>,
    ) -> Self {
        Lifecycle {
            api,
            id,
            cache,
            state,
            progress,
            runtime_done_wait: config.runtime_done_wait,
            fetch_budget: config.secrets.timeout.max(config.ssm.timeout),
            otel,
            flush: flush::FlushControl::new(config.flush),
        }
    }

    /// Runs until SHUTDOWN (returned) or an Extensions API failure.
    pub async fn run(mut self) -> Result<Shutdown, LifecycleError> {
        // The first `next` ends Init; with SnapStart the snapshot is taken while we wait.
        self.state.restore_armed.store(true, Relaxed);
        loop {
            match self.api.next(&self.id).await? {
                Event::Invoke(invoke) => self.invoke(invoke).await,
                Event::Shutdown(shutdown) => {
                    self.state.current.store(None);
                    return Ok(shutdown);
                }
                Event::Unknown(kind) => {
                    tracing::warn!(event_type = %kind.chars().take(64).collect::<String>(), "unknown event type ignored")
                }
            }
        }
    }

    async fn invoke(&mut self, invoke: Invoke) {
        let received = Instant::now();
        let coldstart = self.state.invocations.fetch_add(1, Relaxed) == 0;
        let hard_stop = instant_of(invoke.deadline_ms).checked_sub(DEADLINE_MARGIN).unwrap_or(received);
        let request_id = invoke.request_id.clone();
        self.state.current.store(Some(Arc::new(Invocation {
            request_id: invoke.request_id,
            deadline_ms: invoke.deadline_ms,
            invoked_function_arn: invoke.invoked_function_arn,
            trace: invoke.trace,
            coldstart,
        })));

        self.state.restored(&self.cache);
        // Frequent traffic: export what earlier invocations recorded while this one runs.
        let start_flush = match &self.otel {
            Some(otel) if self.flush.on_invoke(now_ms()) => {
                let otel = otel.clone();
                let budget = hard_stop.saturating_duration_since(Instant::now());
                Some(tokio::spawn(async move { otel.flush(budget).await }))
            }
            _ => None,
        };
        // Refresh-ahead's AWS calls join the invocation's trace.
        let due = {
            let current = self.state.current();
            let _cx = crate::telemetry::trace::parent(&http::HeaderMap::new(), current.as_deref()).attach();
            self.cache.refresh_ahead()
        };

        let waited = wait_runtime_done(self.progress.clone(), &request_id, received + self.runtime_done_wait, hard_stop).await;
        match waited {
            Waited::RuntimeDone => &self.state.runtime_done,
            Waited::NoTelemetry => &self.state.no_telemetry,
            Waited::Deadline => &self.state.deadline,
        }
        .fetch_add(1, Relaxed);

        // Nothing may be mid-flight at the freeze: finish within the fetch budget, else cancel.
        let settle_by = hard_stop.min(Instant::now() + self.fetch_budget);
        let cancelled = self.cache.settle(settle_by.saturating_duration_since(Instant::now())).await;
        self.state.cancelled_fetches.fetch_add(cancelled as u64, Relaxed);
        // Reads from now on (the function's stray threads, or a read that beats the next INVOKE
        // here) belong to no invocation rather than to the wrong one.
        self.state.current.store(None);
        // Nothing may be on the wire at `/next`: the process may freeze mid-request.
        if let Some(mut started) = start_flush {
            if tokio::time::timeout_at(hard_stop, &mut started).await.is_err() {
                started.abort();
            }
            self.flush.flushed(now_ms());
        }
        if let Some(otel) = &self.otel
            && self.flush.at_end()
        {
            otel.flush(hard_stop.saturating_duration_since(Instant::now())).await;
            self.flush.flushed(now_ms());
        }
        tracing::debug!(
            request_id = %request_id,
            coldstart,
            refresh_ahead = due,
            released_by = ?waited,
            cancelled,
            held_ms = received.elapsed().as_millis() as u64,
            "invoke done"
        );
    }
}

/// Holds until `platform.runtimeDone` for `request_id`. Telemetry must prove itself by
/// `grace` (any delivery at all); if it has not, the function's end cannot be observed and the
/// wait ends there. Never past `hard_stop`.
pub async fn wait_runtime_done(mut progress: watch::Receiver<Progress>, request_id: &str, grace: Instant, hard_stop: Instant) -> Waited {
    let grace = grace.min(hard_stop);
    let live = tokio::time::timeout_at(
        grace,
        progress.wait_for(|p| p.deliveries > 0 || p.runtime_done(request_id).is_some()),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !live {
        return Waited::NoTelemetry;
    }
    match tokio::time::timeout_at(hard_stop, progress.wait_for(|p| p.runtime_done(request_id).is_some())).await {
        Ok(Ok(_)) => Waited::RuntimeDone,
        // The telemetry consumer ended: nothing more will come.
        Ok(Err(_)) => Waited::NoTelemetry,
        Err(_) => Waited::Deadline,
    }
}

/// Milliseconds since the Unix epoch, by the wall clock (the cache's clock).
pub fn now_ms() -> u64 {
    crate::cache::SystemClock.now_ms()
}

/// The monotonic instant at which the wall clock reads `epoch_ms` (now, if that has passed).
pub fn instant_of(epoch_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(epoch_ms.saturating_sub(now_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(tx: &watch::Sender<Progress>, body: &str) {
        let (events, _) = crate::telemetry::parse_batch(body.as_bytes());
        tx.send_modify(|p| {
            p.deliveries += 1;
            for e in &events {
                p.apply(e);
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_runtime_done_of_this_request() {
        let (tx, rx) = watch::channel(Progress::default());
        let start = Instant::now();
        let wait = tokio::spawn(wait_runtime_done(
            rx,
            "r2",
            start + Duration::from_millis(100),
            start + Duration::from_secs(60),
        ));
        tokio::time::sleep(Duration::from_millis(30)).await;
        delivered(&tx, r#"[{"type":"platform.start","record":{"requestId":"r2"}}]"#);
        tokio::time::sleep(Duration::from_secs(5)).await;
        delivered(
            &tx,
            r#"[{"type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}}]"#,
        );
        assert!(!wait.is_finished(), "another request's runtimeDone does not release");
        tokio::time::sleep(Duration::from_secs(5)).await;
        delivered(
            &tx,
            r#"[{"type":"platform.runtimeDone","record":{"requestId":"r2","status":"error"}}]"#,
        );
        assert_eq!(wait.await.unwrap(), Waited::RuntimeDone);
        assert_eq!(start.elapsed().as_secs(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn without_deliveries_the_wait_ends_at_the_grace_period() {
        let (_tx, rx) = watch::channel(Progress::default());
        let start = Instant::now();
        let waited = wait_runtime_done(rx, "r1", start + Duration::from_millis(100), start + Duration::from_secs(60)).await;
        assert_eq!(waited, Waited::NoTelemetry);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn never_past_the_deadline() {
        let (tx, rx) = watch::channel(Progress::default());
        delivered(
            &tx,
            r#"[{"type":"platform.initStart","record":{"initializationType":"on-demand"}}]"#,
        );
        let start = Instant::now();
        let waited = wait_runtime_done(rx, "r1", start + Duration::from_millis(100), start + Duration::from_secs(3)).await;
        assert_eq!(waited, Waited::Deadline);
        assert_eq!(start.elapsed(), Duration::from_secs(3));

        let (_tx, rx) = watch::channel(Progress::default());
        let start = Instant::now();
        let waited = wait_runtime_done(rx, "r1", start + Duration::from_secs(5), start + Duration::from_secs(1)).await;
        assert_eq!((waited, start.elapsed()), (Waited::NoTelemetry, Duration::from_secs(1)));
    }
}
