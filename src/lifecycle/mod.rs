//! Lambda lifecycle (extension mode): the `/event/next` loop and what each event means for the
//! cache. The time between the function's response and our `/next` is billed to the user, so
//! INVOKE starts its work (refresh-ahead, an export of what earlier invocations recorded) to
//! overlap the function's run and calls `/next` as soon as that work has settled, without
//! waiting for the function; only the `end` flush policy waits for `platform.runtimeDone`.
//! Nothing this loop started is in flight at `/next`. SHUTDOWN ends the loop. Time is judged by
//! the wall clock: the process is frozen between events.

pub mod flush;
mod init;

pub use init::report_init_failure;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cache::{Background, Cache, Clock};
use crate::config::{InitType, LifecycleConfig};
use crate::lambda::telemetry_api::{Dropped, Progress};
use crate::lambda::{Event, ExtensionsApi, Invoke, PlatformError, Shutdown, Subscription};
use crate::telemetry::trace::InvocationTrace;

/// Kept back from `deadlineMs` so `/next` is called before the platform gives up on us.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// The invocation being served, for attributing cache reads (spans, logs) to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Its request id, whether it is the cold start, its X-Ray header.
    pub trace: InvocationTrace,
    pub deadline_ms: u64,
    pub invoked_function_arn: Option<String>,
}

/// What released an INVOKE's `/next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The invocation's own work settled (the default: the function is not waited for).
    Settled,
    /// Policy `end`: the function finished (runtimeDone for this request arrived).
    RuntimeDone,
    /// Policy `end`: the Telemetry API delivered nothing within `SECRETS_CACHE_RUNTIME_DONE_WAIT`.
    NoTelemetry,
    /// Policy `end`: telemetry works, but runtimeDone did not come before the deadline.
    Deadline,
}

/// Extension-mode state that `/status` shows and the telemetry issue reads.
pub struct State {
    pub init_type: InitType,
    invocations: AtomicU64,
    current: ArcSwapOption<Invocation>,
    telemetry: Mutex<String>,
    /// The Telemetry API accepted our subscription: deliveries will come.
    subscribed: AtomicBool,
    /// INVOKEs by what released their `/next` (`Released` as index).
    released: [AtomicU64; 4],
    cancelled_fetches: AtomicU64,
    /// The Telemetry API side, once the listener runs: what arrived, what was dropped.
    telemetry_in: std::sync::OnceLock<(watch::Receiver<Progress>, Arc<Dropped>)>,
}

#[derive(Debug, Serialize)]
pub struct LifecycleStatus {
    pub mode: &'static str,
    pub initialization_type: &'static str,
    pub invocations: u64,
    pub current_request_id: Option<String>,
    pub telemetry: String,
    /// What released each INVOKE's `/next`.
    pub next_released_by: ReleasedCounts,
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
pub struct ReleasedCounts {
    pub work_settled: u64,
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
            subscribed: AtomicBool::new(false),
            released: Default::default(),
            cancelled_fetches: AtomicU64::new(0),
            telemetry_in: std::sync::OnceLock::new(),
        }
    }

    /// Lets `/status` report the Telemetry API deliveries.
    pub fn observe_telemetry(&self, progress: watch::Receiver<Progress>, dropped: Arc<Dropped>) {
        let _ = self.telemetry_in.set((progress, dropped));
    }

    /// The function behind `request_id` has finished (`platform.runtimeDone`): reads from now on
    /// belong to no invocation, unless the next INVOKE has already replaced it.
    pub fn finished(&self, request_id: &str) {
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.trace.request_id == request_id) {
            self.current.compare_and_swap(&*current, None);
        }
    }

    /// The invocation in progress; `None` during init.
    pub fn current(&self) -> Option<Arc<Invocation>> {
        self.current.load_full()
    }

    /// How the Telemetry API subscription to `uri` went, logged once and kept for `/status`;
    /// only `Subscribed` means deliveries will come.
    pub fn subscription(&self, outcome: &Subscription, uri: &str) {
        match outcome {
            Subscription::Subscribed => {
                tracing::info!(destination = %uri, "subscribed to the Telemetry API");
                self.set_telemetry(format!("subscribed ({uri})"));
                self.subscribed.store(true, Relaxed);
            }
            Subscription::NotSupported(body) => {
                tracing::warn!(answer = %crate::escape::escaped(body), "Telemetry API not supported here (202); running without telemetry");
                self.set_telemetry("not supported (202)");
            }
            Subscription::Failed(why) => {
                tracing::warn!(error = %crate::escape::escaped(why), "Telemetry API subscription failed; running without telemetry");
                self.set_telemetry("subscription failed");
            }
        }
    }

    pub fn set_telemetry(&self, description: impl Into<String>) {
        *self.telemetry.lock().expect("telemetry description lock holds no invariants") = description.into();
    }

    pub fn status(&self) -> LifecycleStatus {
        LifecycleStatus {
            mode: "extension",
            initialization_type: self.init_type.as_str(),
            invocations: self.invocations.load(Relaxed),
            current_request_id: self.current().map(|i| i.trace.request_id.clone()),
            telemetry: self
                .telemetry
                .lock()
                .expect("telemetry description lock holds no invariants")
                .clone(),
            next_released_by: ReleasedCounts {
                work_settled: self.released[Released::Settled as usize].load(Relaxed),
                runtime_done: self.released[Released::RuntimeDone as usize].load(Relaxed),
                no_telemetry: self.released[Released::NoTelemetry as usize].load(Relaxed),
                deadline: self.released[Released::Deadline as usize].load(Relaxed),
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
    api: ExtensionsApi,
    id: String,
    cache: Arc<Cache>,
    state: Arc<State>,
    progress: watch::Receiver<Progress>,
    runtime_done_wait: Duration,
    /// The longest a background fetch may need (the larger upstream timeout).
    fetch_budget: Duration,
    otel: Option<Arc<crate::telemetry::otlp::Otel>>,
    flush: flush::FlushControl,
    /// Work begun before the first INVOKE that Init did not wait for (the prefetch of entries
    /// not marked `required`); the first INVOKE settles it before `/next`.
    pending: Option<Background>,
    /// The last INVOKE's request id: its `platform.report` is awaited at SHUTDOWN.
    last_request_id: Option<String>,
}

/// Kept for the SHUTDOWN export out of the deadline's remainder: the wait for the last
/// invocation's `platform.report` takes at most this share of it, and never more than this.
const LAST_REPORT_WAIT: Duration = Duration::from_millis(300);

impl Lifecycle {
    /// `api` and `id`: the registered extension; `progress`: what the Telemetry API delivers
    /// (never changes without it); `pending`: what Init left running.
    pub fn new(
        (api, id): (ExtensionsApi, String),
        config: &LifecycleConfig,
        cache: Arc<Cache>,
        state: Arc<State>,
        progress: watch::Receiver<Progress>,
        otel: Option<Arc<crate::telemetry::otlp::Otel>>,
        pending: Option<Background>,
    ) -> Self {
        Lifecycle {
            api,
            id,
            cache,
            state,
            progress,
            runtime_done_wait: config.runtime_done_wait,
            fetch_budget: config.fetch_budget,
            otel,
            flush: flush::FlushControl::new(config.flush),
            pending,
            last_request_id: None,
        }
    }

    /// Runs until SHUTDOWN (returned) or an Extensions API failure.
    pub async fn run(mut self) -> Result<Shutdown, PlatformError> {
        // The first `next` ends Init; with SnapStart the snapshot is taken while we wait.
        self.cache.arm_restore();
        loop {
            match self.api.next(&self.id).await? {
                Event::Invoke(invoke) => self.invoke(invoke).await,
                Event::Shutdown(shutdown) => {
                    self.state.current.store(None);
                    self.await_last_report(instant_of(shutdown.deadline_ms)).await;
                    return Ok(shutdown);
                }
                Event::Unknown(kind) => {
                    tracing::warn!(event_type = %crate::escape::escaped(&kind), "unknown event type ignored")
                }
            }
        }
    }

    async fn invoke(&mut self, invoke: Invoke) {
        let received = Instant::now();
        let coldstart = self.state.invocations.fetch_add(1, Relaxed) == 0;
        let hard_stop = instant_of(invoke.deadline_ms).checked_sub(DEADLINE_MARGIN).unwrap_or(received);
        let request_id = invoke.request_id.clone();
        self.last_request_id = Some(request_id.clone());
        self.state.current.store(Some(Arc::new(Invocation {
            trace: InvocationTrace {
                request_id: invoke.request_id,
                coldstart,
                xray: invoke.trace,
            },
            deadline_ms: invoke.deadline_ms,
            invoked_function_arn: invoke.invoked_function_arn,
        })));

        self.cache.restored();
        // What earlier invocations recorded goes out while this one runs.
        let mut export = match &self.otel {
            Some(otel) if self.flush.at_start(now_ms()) => {
                let otel = otel.clone();
                let budget = hard_stop.saturating_duration_since(Instant::now());
                Some(tokio::spawn(async move { otel.flush(budget).await }))
            }
            _ => None,
        };
        // Refresh-ahead's AWS calls join the invocation's trace.
        let refresh = {
            let current = self.state.current();
            let xray = current.as_ref().and_then(|c| c.trace.xray.as_ref());
            let _cx = crate::telemetry::trace::parent(&http::HeaderMap::new(), xray).attach();
            self.cache.refresh_ahead()
        };
        let due = refresh.len();

        let released = match &self.otel {
            Some(_) if self.flush.waits_for_runtime_done() => {
                wait_runtime_done(self.progress.clone(), &request_id, received + self.runtime_done_wait, hard_stop).await
            }
            _ => Released::Settled,
        };
        self.state.released[released as usize].fetch_add(1, Relaxed);

        // This invocation's own work, and what Init or a restore left running, ends before
        // `/next`: the environment may freeze right after it. The function is not waited for.
        let settle_by = hard_stop.min(Instant::now() + self.fetch_budget);
        let mut cancelled = refresh.settle(settle_by).await.cancelled;
        for prefetch in self.pending.take().into_iter().chain(self.cache.take_restore_prefetch()) {
            let report = prefetch.settle(settle_by).await;
            report.log("prefetch");
            cancelled += report.cancelled;
        }
        self.state.cancelled_fetches.fetch_add(cancelled as u64, Relaxed);
        // Nothing may be on the wire at `/next`: the process may freeze mid-request.
        if let Some(started) = export.as_mut() {
            let ok = match tokio::time::timeout_at(hard_stop, &mut *started).await {
                Ok(finished) => finished.unwrap_or(false),
                Err(_) => {
                    started.abort();
                    false
                }
            };
            self.flush.exported(now_ms(), ok);
        }
        if let Some(otel) = &self.otel
            && self.flush.at_end(now_ms())
        {
            let ok = otel.flush(hard_stop.saturating_duration_since(Instant::now())).await;
            self.flush.exported(now_ms(), ok);
        }
        tracing::debug!(
            request_id = %request_id,
            coldstart,
            refresh_ahead = due,
            released_by = ?released,
            exported = export.is_some(),
            cancelled,
            held_ms = received.elapsed().as_millis() as u64,
            "invoke done"
        );
    }

    /// SHUTDOWN: the last invocation's `platform.report` arrives only now (the platform sends
    /// it after our `/next`). When telemetry works, give it a moment so the final export
    /// counts that invocation too.
    async fn await_last_report(&self, deadline: Instant) {
        let (Some(_), Some(id)) = (&self.otel, &self.last_request_id) else {
            return;
        };
        if !self.state.subscribed.load(Relaxed) {
            return;
        }
        let bound = (deadline.saturating_duration_since(Instant::now()) / 4).min(LAST_REPORT_WAIT);
        let mut progress = self.progress.clone();
        let _ = tokio::time::timeout(bound, progress.wait_for(|p| p.reported(id))).await;
    }
}

/// Clears the current invocation when the Telemetry API says its function finished, so a read
/// after that (from a stray thread of the function) is attributed to no invocation rather
/// than to the wrong one. Ends with the telemetry consumer.
pub async fn track_finished(state: Arc<State>, mut progress: watch::Receiver<Progress>) {
    while progress.changed().await.is_ok() {
        let Some(current) = state.current() else {
            continue;
        };
        if progress.borrow().runtime_done(&current.trace.request_id).is_some() {
            state.finished(&current.trace.request_id);
        }
    }
}

/// Holds until `platform.runtimeDone` for `request_id`. Telemetry must prove itself by
/// `grace` (any delivery at all); if it has not, the function's end cannot be observed and the
/// wait ends there. Never past `hard_stop`.
pub async fn wait_runtime_done(mut progress: watch::Receiver<Progress>, request_id: &str, grace: Instant, hard_stop: Instant) -> Released {
    let grace = grace.min(hard_stop);
    let live = tokio::time::timeout_at(
        grace,
        progress.wait_for(|p| p.deliveries > 0 || p.runtime_done(request_id).is_some()),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !live {
        return Released::NoTelemetry;
    }
    match tokio::time::timeout_at(hard_stop, progress.wait_for(|p| p.runtime_done(request_id).is_some())).await {
        Ok(Ok(_)) => Released::RuntimeDone,
        // The telemetry consumer ended: nothing more will come.
        Ok(Err(_)) => Released::NoTelemetry,
        Err(_) => Released::Deadline,
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
        let (events, _) = crate::lambda::telemetry_api::parse_batch(body.as_bytes());
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
        assert_eq!(wait.await.unwrap(), Released::RuntimeDone);
        assert_eq!(start.elapsed().as_secs(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn without_deliveries_the_wait_ends_at_the_grace_period() {
        let (_tx, rx) = watch::channel(Progress::default());
        let start = Instant::now();
        let waited = wait_runtime_done(rx, "r1", start + Duration::from_millis(100), start + Duration::from_secs(60)).await;
        assert_eq!(waited, Released::NoTelemetry);
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
        assert_eq!(waited, Released::Deadline);
        assert_eq!(start.elapsed(), Duration::from_secs(3));

        let (_tx, rx) = watch::channel(Progress::default());
        let start = Instant::now();
        let waited = wait_runtime_done(rx, "r1", start + Duration::from_secs(5), start + Duration::from_secs(1)).await;
        assert_eq!((waited, start.elapsed()), (Released::NoTelemetry, Duration::from_secs(1)));
    }
}
