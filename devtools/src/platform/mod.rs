//! A fake Lambda platform on loopback: the Extensions API, the Telemetry API and the Runtime
//! API as AWS's runtime interface clients use it (`awslambdaric`, `aws-lambda-ric`), with the
//! ordering of a real execution environment (reference §3): extensions register → runtime
//! init → Init ends when the runtime and every extension wait on `next` → INVOKE goes to all
//! of them → the runtime responds → `platform.runtimeDone` → every extension calls `next`
//! again → `platform.report` → … → SHUTDOWN with a deadline.
//!
//! A driver (a test, `lsc-dev demo`) starts it, points `AWS_LAMBDA_RUNTIME_API` at
//! `runtime_api()`, attaches a runtime (a scripted one, `runtime::spawn`, or a real runtime
//! interface client running a handler, `crate::function`) and calls `wait_init`, `invoke` and
//! `shutdown`. Its sockets set TCP_NODELAY (the shared accept loop does). Every request it
//! receives is recorded, and faults can be scripted (`Faults`): a 202 on subscribe, no
//! runtimeDone, unknown event types, an error on `next`.

pub mod runtime;
mod server;
pub mod telemetry;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

pub use telemetry::Delivery;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitType {
    OnDemand,
    SnapStart,
}

impl InitType {
    pub fn as_str(self) -> &'static str {
        match self {
            InitType::OnDemand => "on-demand",
            InitType::SnapStart => "snap-start",
        }
    }
}

/// Misbehaviour to script. Change it at any time with `FakeLambda::set_faults`.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer `PUT /telemetry` with this status (202 = the emulator's "not supported").
    pub subscribe_status: Option<u16>,
    /// Never emit `platform.runtimeDone`.
    pub drop_runtime_done: bool,
    /// Mix telemetry types and fields this platform version "adds" into every delivery, and
    /// send one INVOKE-time event of an unknown `eventType` on `/next` before the real one.
    pub unknown_events: bool,
    /// Answer the n-th `/next` call (counted from 1 over all extensions) with this status.
    pub next_status: Option<(usize, u16)>,
    /// Hold every telemetry delivery this much longer than the subscription's buffering.
    pub telemetry_delay: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub function_name: String,
    pub function_version: String,
    pub memory_mb: u32,
    pub region: String,
    pub account_id: String,
    /// The function timeout: each INVOKE's `deadlineMs` is this far ahead.
    pub timeout: Duration,
    pub init_type: InitType,
    /// External extensions that must register before runtime init begins.
    pub extensions: usize,
    /// How long the runtime takes from receiving an invocation to running the handler.
    pub runtime_delay: Duration,
    pub faults: Faults,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            function_name: "fake-function".into(),
            function_version: "$LATEST".into(),
            memory_mb: 128,
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            timeout: Duration::from_secs(3),
            init_type: InitType::OnDemand,
            extensions: 1,
            runtime_delay: Duration::ZERO,
            faults: Faults::default(),
        }
    }
}

impl Options {
    pub fn function_arn(&self) -> String {
        format!("arn:aws:lambda:{}:{}:function:{}", self.region, self.account_id, self.function_name)
    }
}

/// One HTTP request the platform received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Since the platform started.
    pub at: Duration,
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An error an extension reported through `init/error` or `exit/error`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub kind: &'static str,
    pub extension: String,
    pub error_type: String,
    pub body: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Init,
    /// SnapStart: Init is over and the snapshot is taken; the next invoke restores first.
    Snapshot,
    Ready,
    Invoking,
    ShuttingDown,
}

/// What a parked `next` call is answered with.
#[derive(Debug)]
enum Reply {
    Event(Value),
}

struct Extension {
    id: String,
    name: String,
    events: Vec<String>,
    pending: Option<oneshot::Sender<Reply>>,
    next_calls: Vec<Duration>,
    /// When the last event was handed to it (since start).
    event_at: Duration,
}

impl Extension {
    fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    fn waiting(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.is_closed())
    }
}

/// What the runtime's `next` is answered with.
#[derive(Debug, Clone)]
pub struct RuntimeInvoke {
    pub request_id: String,
    pub deadline_ms: u64,
    pub function_arn: String,
    pub trace: String,
    pub payload: Bytes,
}

struct Inner {
    options: Options,
    phase: Phase,
    started: Instant,
    extensions: Vec<Extension>,
    next_count: usize,
    errors: Vec<Reported>,
    runtime_pending: Option<oneshot::Sender<RuntimeInvoke>>,
    /// SnapStart: a runtime interface client ends its init on `restore/next`, answered at the
    /// restore.
    runtime_restore: Option<oneshot::Sender<()>>,
    runtime_init_error: Option<Value>,
    responses: HashMap<String, oneshot::Sender<Result<Bytes, Bytes>>>,
    /// When the runtime posted each invocation's response or error (since start).
    responded_at: HashMap<String, Duration>,
    /// Telemetry POSTs on the wire: the environment is not frozen in the middle of one.
    delivering: usize,
    requests: Vec<Recorded>,
    /// Every platform event emitted, in order; subscribers deliver from here.
    events: Vec<Value>,
    /// When each of `events` was emitted (since start).
    emitted_at: Vec<Duration>,
    /// Each Telemetry API subscriber's progress through `events`.
    subscribers: Vec<telemetry::Cursor>,
    deliveries: Vec<Delivery>,
    invocations: usize,
    /// Processes to SIGSTOP between invocations and SIGCONT at the next event.
    freeze: Vec<u32>,
    init_duration_ms: f64,
    reported_init_duration: bool,
}

/// Outcome of Init.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    pub duration: Duration,
    /// Extensions' `init/error` reports; non-empty means Init failed.
    pub errors: Vec<Reported>,
    /// The runtime's `/runtime/init/error` body (its handler could not be loaded, say).
    pub runtime_error: Option<Value>,
}

impl InitOutcome {
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.runtime_error.is_some()
    }
}

/// Outcome of one invocation, with the timings a Lambda user would see.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    pub request_id: String,
    pub trace: String,
    /// The function's response, or its error body.
    pub response: Result<String, String>,
    /// `success`, `error` or `timeout`.
    pub status: &'static str,
    /// INVOKE → the runtime's response.
    pub function_duration: Duration,
    /// Post-runtime duration per extension (by name): from the runtime's response to that
    /// extension's next `/next`, zero if it was back first. Billed, invisible to callers.
    pub post_runtime: Vec<(String, Duration)>,
    /// The longest of them: what Lambda adds to the billed duration.
    pub extensions_overhead: Duration,
    /// An extension had not called `next` by the deadline.
    pub extensions_timed_out: bool,
}

impl InvokeOutcome {
    /// The OpenTelemetry trace id of this invocation's X-Ray `Root=1-<8 hex>-<24 hex>`.
    pub fn otel_trace_id(&self) -> String {
        let root = self.trace.split(';').next().unwrap_or_default();
        root.trim_start_matches("Root=1-").replace('-', "")
    }
}

#[derive(Clone)]
pub struct FakeLambda {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    changed: watch::Sender<u64>,
}

impl FakeLambda {
    /// Starts on 127.0.0.1:0 in the current tokio runtime. Emits `platform.initStart` at once.
    pub async fn start(options: Options) -> anyhow::Result<FakeLambda> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Inner {
            options,
            phase: Phase::Init,
            started: Instant::now(),
            extensions: Vec::new(),
            next_count: 0,
            errors: Vec::new(),
            runtime_pending: None,
            runtime_restore: None,
            runtime_init_error: None,
            responses: HashMap::new(),
            responded_at: HashMap::new(),
            delivering: 0,
            requests: Vec::new(),
            events: Vec::new(),
            emitted_at: Vec::new(),
            subscribers: Vec::new(),
            deliveries: Vec::new(),
            invocations: 0,
            freeze: Vec::new(),
            init_duration_ms: 0.0,
            reported_init_duration: false,
        };
        let platform = FakeLambda {
            addr,
            inner: Arc::new(Mutex::new(inner)),
            changed: watch::channel(0).0,
        };
        {
            let mut inner = platform.lock();
            let o = inner.options.clone();
            let record = json!({
                "initializationType": o.init_type.as_str(),
                "phase": "init",
                "runtimeVersion": "fake:1.v1",
                "runtimeVersionArn": "arn:aws:lambda:us-east-1::runtime:fake",
                "functionName": o.function_name,
                "functionVersion": o.function_version,
                "instanceId": format!("i-{}", &new_id()[..8]),
                "instanceMaxMemory": u64::from(o.memory_mb) * 1_048_576,
            });
            inner.emit("platform.initStart", record);
        }
        server::serve(listener, platform.clone());
        Ok(platform)
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// The variables Lambda sets for every process of the environment (extensions and the
    /// runtime), from this platform's options.
    pub fn process_env(&self) -> Vec<(&'static str, String)> {
        let o = self.options();
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.runtime_api()),
            ("AWS_LAMBDA_FUNCTION_NAME", o.function_name),
            ("AWS_LAMBDA_FUNCTION_VERSION", o.function_version),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", o.memory_mb.to_string()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", o.init_type.as_str().into()),
            ("AWS_REGION", o.region),
        ]
    }

    pub fn options(&self) -> Options {
        self.lock().options.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().options.faults = faults;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests to `path` (exact), in order.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.lock().requests.iter().filter(|r| r.path == path).cloned().collect()
    }

    pub fn errors(&self) -> Vec<Reported> {
        self.lock().errors.clone()
    }

    /// Telemetry deliveries attempted, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Waits until a delivery carrying an event of type `kind` has been attempted (deliveries
    /// go out `timeoutMs` after their first event, so a fast run can be ahead of them).
    pub async fn wait_delivery_of(&self, kind: &str, timeout: Duration) -> anyhow::Result<Delivery> {
        self.wait_until(timeout, "a telemetry delivery", |i| {
            i.deliveries.iter().find(|d| d.types().contains(&kind)).cloned()
        })
        .await
    }

    /// Every platform event emitted so far (delivered or not).
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// When each `next` call of the first extension arrived (since start).
    pub fn next_calls(&self) -> Vec<Duration> {
        self.lock().extensions.first().map(|e| e.next_calls.clone()).unwrap_or_default()
    }

    /// When the runtime posted each response or error so far, by request id (since start).
    pub fn responded_at(&self, request_id: &str) -> Option<Duration> {
        self.lock().responded_at.get(request_id).copied()
    }

    /// Time since the platform started.
    pub fn elapsed(&self) -> Duration {
        self.lock().started.elapsed()
    }

    /// Freeze these processes (SIGSTOP) whenever the environment is idle between events, as
    /// Lambda does, and thaw them (SIGCONT) for the next one: timers do not run meanwhile.
    pub fn freeze_between_invokes(&self, pids: Vec<u32>) {
        self.lock().freeze = pids;
    }

    /// Thaws the frozen processes for good (to inspect them between invocations).
    pub fn thaw(&self) {
        self.signal_frozen("CONT");
        self.lock().freeze.clear();
    }

    fn signal_frozen(&self, signal: &str) {
        let pids = self.lock().freeze.clone();
        for pid in pids {
            crate::process::signal_pid(pid, signal);
        }
    }

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
                let extensions_ready = i.extensions.len() >= i.options.extensions && i.extensions.iter().all(Extension::waiting);
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
        let request_id = new_uuid();
        let trace = new_trace_header();
        let (deadline, response_rx, invoke_event, runtime, runtime_invoke, runtime_delay) = {
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
            inner.emit(
                "platform.start",
                json!({"requestId": request_id, "version": version,
                       "tracing": {"spanId": &new_id()[..16], "type": "X-Amzn-Trace-Id", "value": trace}}),
            );
            let event = json!({"eventType": "INVOKE", "deadlineMs": deadline_ms, "requestId": request_id,
                               "invokedFunctionArn": arn, "tracing": {"type": "X-Amzn-Trace-Id", "value": trace}});
            let runtime = inner.runtime_pending.take().context("the runtime is not waiting on next")?;
            let (tx, rx) = oneshot::channel();
            inner.responses.insert(request_id.clone(), tx);
            let runtime_invoke = RuntimeInvoke {
                request_id: request_id.clone(),
                deadline_ms,
                function_arn: arn,
                trace: trace.clone(),
                payload: Bytes::from(payload.to_string()),
            };
            (
                Instant::now() + timeout,
                rx,
                event,
                runtime,
                runtime_invoke,
                inner.options.runtime_delay,
            )
        };
        // Lambda hands INVOKE to the runtime and the extensions at once; a real runtime then
        // needs a moment before the handler runs (`runtime_delay`).
        self.deliver_to_extensions("INVOKE", &invoke_event, deadline).await;
        if !runtime_delay.is_zero() {
            tokio::time::sleep(runtime_delay).await;
        }
        let _ = runtime.send(runtime_invoke);
        let started = Instant::now();

        let answer = tokio::time::timeout_at(deadline.into(), response_rx).await;
        let function_duration = started.elapsed();
        let (response, status) = match answer {
            Ok(Ok(Ok(body))) => (Ok(String::from_utf8_lossy(&body).into_owned()), "success"),
            Ok(Ok(Err(body))) => (Err(String::from_utf8_lossy(&body).into_owned()), "error"),
            Ok(Err(_)) => (Err("the runtime went away".into()), "error"),
            Err(_) => (Err("Task timed out".into()), "timeout"),
        };
        {
            let mut inner = self.lock();
            inner.responses.remove(&request_id);
            if !inner.options.faults.drop_runtime_done {
                let produced = response.as_ref().map_or(0, String::len);
                let mut record = json!({
                    "requestId": request_id, "status": status,
                    "metrics": {"durationMs": ms(function_duration), "producedBytes": produced},
                    "spans": [
                        {"name": "responseLatency", "start": iso8601(SystemTime::now() - function_duration), "durationMs": ms(function_duration)},
                        {"name": "responseDuration", "start": iso8601(SystemTime::now()), "durationMs": 0.0}
                    ],
                    "tracing": {"spanId": &new_id()[..16], "type": "X-Amzn-Trace-Id", "value": trace},
                });
                if status != "success" {
                    record["errorType"] = json!(if status == "timeout" {
                        "Sandbox.Timedout"
                    } else {
                        "Function.Error"
                    });
                }
                inner.emit("platform.runtimeDone", record);
            }
        }
        self.bump();

        let all_back = self
            .wait_until(deadline.saturating_duration_since(Instant::now()), "extensions to call next", |i| {
                i.extensions
                    .iter()
                    .filter(|e| e.wants("INVOKE"))
                    .all(Extension::waiting)
                    .then_some(())
            })
            .await;
        let (post_runtime, extensions_overhead) = {
            let mut inner = self.lock();
            let responded = inner
                .responded_at
                .get(&request_id)
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
            let total = function_duration + max;
            let mut metrics = json!({
                "durationMs": ms(total),
                "billedDurationMs": total.as_millis() as u64 + 1,
                "memorySizeMB": inner.options.memory_mb,
                "maxMemoryUsedMB": 42,
            });
            if !inner.reported_init_duration {
                inner.reported_init_duration = true;
                metrics["initDurationMs"] = json!(inner.init_duration_ms);
            }
            inner.emit(
                "platform.report",
                json!({"requestId": request_id, "status": status, "metrics": metrics,
                       "tracing": {"spanId": &new_id()[..16], "type": "X-Amzn-Trace-Id", "value": trace}}),
            );
            (post_runtime, max)
        };
        self.bump();
        // The environment is not frozen while telemetry whose buffering time has passed is
        // undelivered or on the wire (what is emitted after that waits for the next event);
        // see `telemetry::deliver`.
        let _ = self
            .wait_until(Duration::from_secs(5), "telemetry deliveries to finish", |i| {
                (i.delivering == 0 && i.subscribers.iter().all(|c| !c.overdue(i))).then_some(())
            })
            .await;
        self.lock().phase = Phase::Ready;
        self.bump();
        self.signal_frozen("STOP");
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
    fn restore(&self) {
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

    async fn deliver_to_extensions(&self, kind: &str, event: &Value, deadline: Instant) {
        let ids: Vec<String> = self
            .lock()
            .extensions
            .iter()
            .filter(|e| e.wants(kind))
            .map(|e| e.id.clone())
            .collect();
        for id in ids {
            if !self.on_next(&id, deadline).await {
                continue;
            }
            let unknown_first = {
                let mut inner = self.lock();
                let unknown_first = inner.options.faults.unknown_events && kind == "INVOKE";
                let now = inner.started.elapsed();
                if let Some(ext) = inner.extensions.iter_mut().find(|e| e.id == id)
                    && let Some(pending) = ext.pending.take()
                {
                    ext.event_at = now;
                    let reply = if unknown_first {
                        // An event type from the future; the real INVOKE follows on the next call.
                        json!({"eventType": "RESTORE_CHECK", "deadlineMs": epoch_ms() + 1000})
                    } else {
                        event.clone()
                    };
                    let _ = pending.send(Reply::Event(reply));
                }
                unknown_first
            };
            self.bump();
            if unknown_first {
                self.on_next(&id, deadline).await;
                if let Some(pending) = self
                    .lock()
                    .extensions
                    .iter_mut()
                    .find(|e| e.id == id)
                    .and_then(|e| e.pending.take())
                {
                    let _ = pending.send(Reply::Event(event.clone()));
                }
            }
        }
        self.bump();
    }

    /// Waits until extension `id` is parked on `next`; false if it is not by `deadline`.
    async fn on_next(&self, id: &str, deadline: Instant) -> bool {
        self.wait_until(
            deadline.saturating_duration_since(Instant::now()),
            "an extension to call next",
            |i| i.extensions.iter().find(|e| e.id == id).filter(|e| e.waiting()).map(|_| ()),
        )
        .await
        .is_ok()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    /// Re-checks `f` on every state change until it gives a value or `timeout` passes.
    async fn wait_until<T>(&self, timeout: Duration, what: &str, f: impl Fn(&Inner) -> Option<T>) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(v) = f(&self.lock()) {
                return Ok(v);
            }
            // Parked `next` calls can close without a state change; poll as a backstop.
            let tick = tokio::time::Instant::now() + Duration::from_millis(20);
            match tokio::time::timeout_at(deadline.min(tick), rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("platform state channel closed"),
                Err(_) if tokio::time::Instant::now() >= deadline => bail!("timed out after {timeout:?} waiting for {what}"),
                Err(_) => {}
            }
        }
    }
}

impl Inner {
    fn emit(&mut self, kind: &str, record: Value) {
        let at = self.started.elapsed();
        self.events
            .push(json!({"time": iso8601(SystemTime::now()), "type": kind, "record": record}));
        self.emitted_at.push(at);
        if self.options.faults.unknown_events && kind.starts_with("platform.") {
            self.events
                .push(json!({"time": iso8601(SystemTime::now()), "type": "platform.fromTheFuture",
                                    "record": {"note": "a type this extension cannot know", "nested": {"a": [1, 2]}},
                                    "extraTopLevelField": true}));
            self.emitted_at.push(at);
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `2026-11-21T10:00:00.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// 32 random hex digits.
pub(crate) fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

fn new_uuid() -> String {
    let h = new_id();
    format!("{}-{}-4{}-a{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// An X-Ray header as Lambda passes it: `Root=1-<8 hex time>-<24 hex>;Parent=<16 hex>;Sampled=1`.
fn new_trace_header() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let id = new_id();
    format!("Root=1-{secs:08x}-{};Parent={};Sampled=1", &id[..24], &id[16..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_666_361_105_764);
        assert_eq!(iso8601(t), "2022-10-21T14:05:05.764Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn ids_have_the_platform_shapes() {
        let uuid = new_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.matches('-').count(), 4);
        let trace = new_trace_header();
        let root = trace.strip_prefix("Root=1-").unwrap();
        assert_eq!(root.split(';').next().unwrap().len(), 8 + 1 + 24);
        assert!(trace.contains(";Parent=") && trace.ends_with(";Sampled=1"));
    }
}
