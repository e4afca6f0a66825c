//! What the lifecycle knows and shows: the invocation being served (for spans), how many
//! there were, what released each `/next`, the Telemetry API subscription and what it
//! delivered. `/status` shows it (`LifecycleStatus`); the HTTP server reads the current
//! invocation through a hook.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::InitType;
use crate::lambda::Subscription;
use crate::lambda::telemetry_api::{Dropped, Progress};
use crate::telemetry::trace::InvocationTrace;

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

/// Extension-mode state: `/status` shows it, spans read the current invocation.
pub struct State {
    pub init_type: InitType,
    pub(super) invocations: AtomicU64,
    pub(super) current: ArcSwapOption<Invocation>,
    telemetry: Mutex<String>,
    /// The Telemetry API accepted our subscription: deliveries will come.
    pub(super) subscribed: AtomicBool,
    /// INVOKEs by what released their `/next` (`Released` as index).
    pub(super) released: [AtomicU64; 4],
    pub(super) cancelled_fetches: AtomicU64,
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
