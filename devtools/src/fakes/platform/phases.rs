//! Init, invocations, SHUTDOWN and the SnapStart restore, in Lambda's order (see `mod.rs`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::oneshot;

use super::extensions::Registered;
use super::records::{self, epoch_ms, ms, new_trace_header, new_uuid};
use super::{FakeLambda, InitOutcome, InitType, InvokeOutcome, Phase, Reported, RuntimeInvoke};

impl FakeLambda {
    /// Resolves once every expected extension has registered: runtime init may begin.
    pub async fn registered(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, "extensions to register", |i| {
            (i.extensions.len() >= i.options.extensions || !i.errors.is_empty()).then_some(())
        })
        .await
    }

    /// Waits for Init to end: every extension and the runtime wait on `next`, or an
    /// extension reported an init error. Emits `initRuntimeDone` and `initReport`.
    pub async fn wait_init(&self, timeout: Duration) -> anyhow::Result<InitOutcome> {
        let (errors, runtime_error) = self
            .wait_until(timeout, "init to finish", |i| {
                let errors: Vec<Reported> = i.errors.iter().filter(|e| e.kind == "init").cloned().collect();
                if !errors.is_empty() || i.runtime_init_error.is_some() {
                    return Some((errors, i.runtime_init_error.clone()));
                }
                let extensions_ready = i.extensions.len() >= i.options.extensions && i.extensions.iter().all(Registered::waiting);
                let waiting = |p: Option<bool>| p.is_some_and(|closed| !closed);
                let runtime_ready = waiting(i.runtime_pending.as_ref().map(oneshot::Sender::is_closed))
                    || waiting(i.runtime_restore.as_ref().map(oneshot::Sender::is_closed));
                (extensions_ready && runtime_ready).then(|| (Vec::new(), None))
            })
            .await?;
        let outcome = InitOutcome {
            duration: Duration::ZERO,
            errors,
            runtime_error,
        };
        let mut inner = self.lock();
        let duration = inner.started.elapsed();
        let status = if outcome.failed() { "error" } else { "success" };
        let init_type = inner.options.init_type.as_str();
        let mut done = json!({"initializationType": init_type, "phase": "init", "status": status});
        let mut report = json!({"initializationType": init_type, "phase": "init", "status": status,
                                "metrics": {"durationMs": ms(duration)}});
        if outcome.failed() {
            let error_type = if outcome.errors.is_empty() {
                "Runtime.InitError"
            } else {
                "Extension.InitError"
            };
            done["errorType"] = json!(error_type);
            report["errorType"] = json!(error_type);
        }
        inner.emit("platform.initRuntimeDone", done);
        inner.emit("platform.initReport", report);
        inner.init_duration_ms = ms(duration);
        if !outcome.failed() {
            inner.phase = if inner.options.init_type == InitType::SnapStart {
                Phase::Snapshot
            } else {
                Phase::Ready
            };
        }
        drop(inner);
        self.bump();
        Ok(InitOutcome { duration, ..outcome })
    }

    /// One invocation, start to finish (see the module comment for the order).
    pub async fn invoke(&self, payload: &str) -> anyhow::Result<InvokeOutcome> {
        self.signal_frozen("CONT");
        if self.lock().phase == Phase::Snapshot {
            self.restore();
        }
        // The next invocation goes to the runtime when it asks for one: after its last response
        // it needs a moment to call `next` again.
        self.wait_until(Duration::from_secs(10), "the runtime to call next", |i| {
            i.runtime_pending.as_ref().is_some_and(|p| !p.is_closed()).then_some(())
        })
        .await?;
        let begun = self.begin_invoke(payload)?;
        let (request_id, trace, deadline) = (begun.invoke.request_id.clone(), begun.invoke.trace.clone(), begun.deadline);
        // Lambda hands INVOKE to the runtime and the extensions at once; a real runtime then
        // needs a moment before the handler runs (`runtime_delay`).
        self.deliver_to_extensions("INVOKE", &begun.event, deadline).await;
        if !begun.runtime_delay.is_zero() {
            tokio::time::sleep(begun.runtime_delay).await;
        }
        let _ = begun.runtime.send(begun.invoke);
        let started = Instant::now();
        let answer = tokio::time::timeout_at(deadline.into(), begun.response).await;
        let function_duration = started.elapsed();
        let (response, status) = match answer {
            Ok(Ok(Ok(body))) => (Ok(String::from_utf8_lossy(&body).into_owned()), "success"),
            Ok(Ok(Err(body))) => (Err(String::from_utf8_lossy(&body).into_owned()), "error"),
            Ok(Err(_)) => (Err("the runtime went away".into()), "error"),
            Err(_) => (Err("Task timed out".into()), "timeout"),
        };
        self.runtime_done(
            &request_id,
            &trace,
            status,
            response.as_ref().map_or(0, String::len),
            function_duration,
        );

        let all_back = self
            .wait_until(deadline.saturating_duration_since(Instant::now()), "extensions to call next", |i| {
                i.extensions
                    .iter()
                    .filter(|e| e.wants("INVOKE"))
                    .all(Registered::waiting)
                    .then_some(())
            })
            .await;
        let post_runtime = self.report(&request_id, &trace, status, function_duration);
        let extensions_overhead = post_runtime.iter().map(|(_, d)| *d).max().unwrap_or_default();
        self.settle_after_invoke().await;
        Ok(InvokeOutcome {
            request_id,
            trace,
            response,
            status,
            function_duration,
            post_runtime,
            extensions_overhead,
            extensions_timed_out: all_back.is_err(),
        })
    }

    /// The invocation starts: `platform.start`, the INVOKE event, the runtime's parked `next`
    /// taken, a place for its response.
    fn begin_invoke(&self, payload: &str) -> anyhow::Result<Begun> {
        let request_id = new_uuid();
        let trace = new_trace_header();
        let mut inner = self.lock();
        if inner.phase != Phase::Ready {
            bail!("invoke needs a finished init (phase is {:?})", inner.phase);
        }
        inner.phase = Phase::Invoking;
        inner.invocations += 1;
        let timeout = inner.options.timeout;
        let deadline_ms = epoch_ms() + timeout.as_millis() as u64;
        let arn = inner.options.function_arn();
        let version = inner.options.function_version.clone();
        inner.emit("platform.start", records::start(&request_id, &version, &trace));
        let event = json!({"eventType": "INVOKE", "deadlineMs": deadline_ms, "requestId": request_id,
                           "invokedFunctionArn": arn, "tracing": {"type": "X-Amzn-Trace-Id", "value": trace}});
        let runtime = inner.runtime_pending.take().context("the runtime is not waiting on next")?;
        let (tx, response) = oneshot::channel();
        inner.responses.insert(request_id.clone(), tx);
        Ok(Begun {
            deadline: Instant::now() + timeout,
            response,
            event,
            runtime,
            invoke: RuntimeInvoke {
                request_id,
                deadline_ms,
                function_arn: arn,
                trace,
                payload: Bytes::from(payload.to_string()),
            },
            runtime_delay: inner.options.runtime_delay,
        })
    }

    /// The runtime answered (or timed out): `platform.runtimeDone`, unless a fault drops it.
    fn runtime_done(&self, request_id: &str, trace: &str, status: &'static str, produced: usize, function_duration: Duration) {
        {
            let mut inner = self.lock();
            inner.responses.remove(request_id);
            if !inner.options.faults.drop_runtime_done {
                inner.emit(
                    "platform.runtimeDone",
                    records::runtime_done(request_id, trace, status, produced, function_duration),
                );
            }
        }
        self.bump();
    }

    /// Every extension is back on `next` (or the deadline passed): each one's post-runtime
    /// duration, and `platform.report` with the billed duration they make.
    fn report(&self, request_id: &str, trace: &str, status: &'static str, function_duration: Duration) -> Vec<(String, Duration)> {
        let post_runtime = {
            let mut inner = self.lock();
            let responded = inner
                .responded_at
                .get(request_id)
                .copied()
                .unwrap_or_else(|| inner.started.elapsed());
            let post_runtime: Vec<(String, Duration)> = inner
                .extensions
                .iter()
                .filter(|e| e.wants("INVOKE"))
                .map(|e| {
                    let next = e.next_calls.iter().find(|&&at| at > e.event_at).copied();
                    let post = next.unwrap_or_else(|| inner.started.elapsed()).saturating_sub(responded);
                    (e.name.clone(), post)
                })
                .collect();
            let max = post_runtime.iter().map(|(_, d)| *d).max().unwrap_or_default();
            let init_duration_ms = (!inner.reported_init_duration).then_some(inner.init_duration_ms);
            inner.reported_init_duration = true;
            let record = records::report(
                request_id,
                trace,
                status,
                function_duration + max,
                inner.options.memory_mb,
                init_duration_ms,
            );
            inner.emit("platform.report", record);
            post_runtime
        };
        self.bump();
        post_runtime
    }

    /// The environment is not frozen while telemetry whose buffering time has passed is
    /// undelivered or on the wire (what is emitted after that waits for the next event; see
    /// `telemetry::deliver`). Then it is ready for the next event, and frozen.
    async fn settle_after_invoke(&self) {
        let _ = self
            .wait_until(Duration::from_secs(5), "telemetry deliveries to finish", |i| {
                (i.delivering == 0 && i.subscribers.iter().all(|c| !c.overdue(i))).then_some(())
            })
            .await;
        self.lock().phase = Phase::Ready;
        self.bump();
        self.signal_frozen("STOP");
    }

    /// Sends SHUTDOWN with `deadlineMs = now + within` to every extension registered for it
    /// (waiting for each to be on `next`, as the platform does) and stops the runtime.
    /// Returns the deadline; killing the processes at it is the driver's job.
    pub async fn shutdown(&self, reason: &str, within: Duration) -> Instant {
        self.signal_frozen("CONT");
        let deadline = Instant::now() + within;
        let event = {
            let mut inner = self.lock();
            inner.phase = Phase::ShuttingDown;
            inner.runtime_pending = None;
            inner.runtime_restore = None;
            json!({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": epoch_ms() + within.as_millis() as u64})
        };
        self.bump();
        self.deliver_to_extensions("SHUTDOWN", &event, deadline).await;
        deadline
    }

    /// SnapStart restore: the snapshot resumes; restore events are emitted.
    pub(super) fn restore(&self) {
        let mut inner = self.lock();
        let o = inner.options.clone();
        inner.emit(
            "platform.restoreStart",
            json!({"functionName": o.function_name, "functionVersion": o.function_version, "runtimeVersion": "fake:1.v1"}),
        );
        if let Some(restored) = inner.runtime_restore.take() {
            let _ = restored.send(());
        }
        inner.emit("platform.restoreRuntimeDone", json!({"status": "success"}));
        inner.emit(
            "platform.restoreReport",
            json!({"status": "success", "metrics": {"durationMs": 12.0}}),
        );
        inner.phase = Phase::Ready;
    }
}

/// An invocation handed out, waiting to reach the extensions and the runtime.
struct Begun {
    deadline: Instant,
    response: oneshot::Receiver<Result<Bytes, Bytes>>,
    event: serde_json::Value,
    runtime: oneshot::Sender<RuntimeInvoke>,
    invoke: RuntimeInvoke,
    runtime_delay: Duration,
}
