//! Lambda lifecycle (extension mode): the `/event/next` loop and what each event means for the
//! cache. The time between the function's response and our `/next` is billed to the user, so
//! INVOKE starts its work (refresh-ahead, an export of what earlier invocations recorded) to
//! overlap the function's run and calls `/next` as soon as that work has settled, without
//! waiting for the function; only the `end` flush policy waits for `platform.runtimeDone`.
//! Nothing this loop started is in flight at `/next`. SHUTDOWN ends the loop. Time is judged by
//! the wall clock: the process is frozen between events.

pub mod flush;
mod init;
mod restore;
mod state;

pub use init::{InitError, Parts, Started, Task, failed, init, register};
pub use restore::RestoreGate;
pub use state::{Invocation, LifecycleStatus, Released, State};

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::{Background, Cache, Clock};
use crate::lambda::telemetry_api::Progress;
use crate::lambda::{Event, ExtensionsApi, Invoke, PlatformError, Shutdown};
use crate::telemetry::trace::InvocationTrace;

/// Kept back from `deadlineMs` so `/next` is called before the platform gives up on us.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// The `/event/next` loop after a successful init (`init` builds it).
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
    /// SnapStart: runs the prefetch at the first activity after the restore.
    restore: Option<Arc<RestoreGate>>,
    /// The last INVOKE's request id: its `platform.report` is awaited at SHUTDOWN.
    last_request_id: Option<String>,
}

/// How a registered extension tells the platform it failed after Init (`exit/error`).
#[derive(Clone)]
pub struct Registered {
    api: ExtensionsApi,
    id: String,
}

impl Registered {
    /// Reports `error` with `exit/error`, unless the Extensions API itself failed: then the
    /// platform wants the extension gone at once, and no further call succeeds.
    pub async fn failed(&self, error: &(dyn std::error::Error + 'static), platform_failed: bool) {
        if !platform_failed {
            let _ = self.api.exit_error(&self.id, "Extension.Failed", &error.to_string()).await;
        }
    }
}

/// Kept for the SHUTDOWN export out of the deadline's remainder: the wait for the last
/// invocation's `platform.report` takes at most this share of it, and never more than this.
const LAST_REPORT_WAIT: Duration = Duration::from_millis(300);

impl Lifecycle {
    /// The registration, for reporting a failure after Init.
    pub fn registered(&self) -> Registered {
        Registered {
            api: self.api.clone(),
            id: self.id.clone(),
        }
    }

    /// Runs until SHUTDOWN (returned) or an Extensions API failure.
    pub async fn run(mut self) -> Result<Shutdown, PlatformError> {
        // The first `next` ends Init; with SnapStart the snapshot is taken while we wait.
        if let Some(gate) = &self.restore {
            gate.arm();
        }
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

        if let Some(gate) = &self.restore {
            gate.activity();
        }
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
            let _cx = crate::telemetry::trace::enter_invocation(xray);
            self.cache.refresh_ahead()
        };
        let due = refresh.len();

        let released = match &self.otel {
            Some(_) if self.flush.waits_for_runtime_done() => {
                if self.state.subscribed.load(Relaxed) {
                    wait_runtime_done(self.progress.clone(), &request_id, received + self.runtime_done_wait, hard_stop).await
                } else {
                    // Refused, or `202` NotSupported as in AWS's emulator: no
                    // `platform.runtimeDone` can come, so nothing is held for it.
                    Released::NoTelemetry
                }
            }
            _ => Released::Settled,
        };
        self.state.released[released as usize].fetch_add(1, Relaxed);

        // This invocation's own work, and what Init or a restore left running, ends before
        // `/next`: the environment may freeze right after it. The function is not waited for.
        let settle_by = hard_stop.min(Instant::now() + self.fetch_budget);
        let mut cancelled = refresh.settle(settle_by).await.cancelled;
        let restored = self.restore.as_ref().and_then(|gate| gate.take_prefetch());
        for prefetch in self.pending.take().into_iter().chain(restored) {
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

/// Refresh-ahead on a timer, where no INVOKE drives it (standalone mode, Lambda Managed
/// Instances). After a pause (a laptop sleeping, a frozen container) it runs once, not a
/// burst of missed ticks.
pub async fn refresh_on_timer(cache: Arc<Cache>, every: Duration, cancel: CancellationToken) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(every);
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
