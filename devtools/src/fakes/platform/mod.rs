//! A fake Lambda platform on loopback: the Extensions API, the Telemetry API and the Runtime
//! API as AWS's runtime interface clients use it (`awslambdaric`, `aws-lambda-ric`), with the
//! ordering of a real execution environment (ARCHITECTURE.md, "The Lambda platform"): extensions register → runtime
//! init → Init ends when the runtime and every extension wait on `next` → INVOKE goes to all
//! of them → the runtime responds → `platform.runtimeDone` → every extension calls `next`
//! again → `platform.report` → … → SHUTDOWN with a deadline.
//!
//! A driver (a test, `lsc-dev demo`) starts it, points `AWS_LAMBDA_RUNTIME_API` at
//! `runtime_api()`, attaches a runtime (a scripted one, `runtime::spawn`, or a real runtime
//! interface client running a handler, `crate::local::function`) and calls `wait_init`, `invoke` and
//! `shutdown`. Its sockets set TCP_NODELAY (the shared accept loop does). Every request it
//! receives is recorded, and faults can be scripted (`Faults`): a 202 on subscribe, no
//! runtimeDone, unknown event types, an error on `next`.

mod extensions;
mod phases;
mod records;
pub mod runtime;
mod server;
pub mod telemetry;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use extensions::Registered;
pub use records::iso8601;
use records::new_id;
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
    /// Present what AWS's Runtime Interface Emulator presents (`Options::emulator`).
    pub emulator: bool,
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
            emulator: false,
        }
    }
}

impl Options {
    /// What AWS's Runtime Interface Emulator (`sam local invoke`, `aws-lambda-runtime-interface-
    /// emulator`) presents to an extension, from its source: function `test_function`, 3008 MB,
    /// each INVOKE's deadline 300 s ahead, `PUT /telemetry` answered `202
    /// Telemetry.NotSupported`, and no `AWS_LAMBDA_INITIALIZATION_TYPE`. Its SHUTDOWN reason is
    /// `SandboxTerminated` (give it to `FakeLambda::shutdown`). It passes `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` through, each `""` when it had none:
    /// that is the caller's environment to set. Unlike it, this platform still ends Init
    /// only when every extension waits on `next` (so does the emulator before it answers the
    /// invoke) and runs Init at start rather than at the first invoke.
    pub fn emulator() -> Options {
        Options {
            function_name: "test_function".into(),
            memory_mb: 3008,
            timeout: Duration::from_secs(300),
            faults: Faults {
                subscribe_status: Some(202),
                ..Faults::default()
            },
            emulator: true,
            ..Options::default()
        }
    }

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
    extensions: Vec<Registered>,
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
        .into_iter()
        .filter(|(k, _)| !(o.emulator && *k == "AWS_LAMBDA_INITIALIZATION_TYPE"))
        .collect()
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
            crate::harness::process::signal_pid(pid, signal);
        }
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
