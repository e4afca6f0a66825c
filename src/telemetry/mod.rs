//! Telemetry in: the Telemetry API listener and the platform events it receives. The
//! lifecycle waits on `platform.start` / `platform.runtimeDone` through `Progress`.

pub mod event;
pub mod export;
pub mod listener;
pub mod names;
pub mod otlp;
pub mod recorder;
pub mod trace;

pub use event::{PlatformEvent, parse_batch};
pub use listener::TelemetryListener;

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

/// How many recent request ids to remember per kind: an event can arrive a little before or
/// after the lifecycle looks for it, never many invocations late.
const REMEMBERED: usize = 16;

/// What the Telemetry API has told us so far, as far as the lifecycle cares.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Batches received (any content). Zero means telemetry has not proven it works.
    pub deliveries: u64,
    /// Elements received; of those, of a type this version does not know; elements that were
    /// not records at all. `/status` shows them.
    pub events: u64,
    pub unknown: u64,
    pub malformed: u64,
    done: VecDeque<(String, String)>,
    reported: VecDeque<String>,
}

impl Progress {
    /// The `status` of `platform.runtimeDone` for `request_id`, once it has arrived.
    pub fn runtime_done(&self, request_id: &str) -> Option<&str> {
        self.done.iter().find(|(id, _)| id == request_id).map(|(_, s)| s.as_str())
    }

    /// Whether `platform.report` for `request_id` has arrived: it comes after the extensions'
    /// `/next`, so the last invocation's report reaches us at SHUTDOWN.
    pub fn reported(&self, request_id: &str) -> bool {
        self.reported.iter().any(|id| id == request_id)
    }

    pub(crate) fn apply(&mut self, event: &PlatformEvent) {
        self.events += 1;
        match event {
            PlatformEvent::RuntimeDone { request_id, status, .. } => remember(&mut self.done, (request_id.clone(), status.clone())),
            PlatformEvent::Report { request_id, .. } => remember(&mut self.reported, request_id.clone()),
            PlatformEvent::Other(_) => self.unknown += 1,
            _ => {}
        }
    }
}

fn remember<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() == REMEMBERED {
        list.pop_front();
    }
    list.push_back(item);
}

/// Parses queued deliveries, records the FaaS metrics they carry, and publishes the
/// progress. Ends when the listener is gone.
pub async fn consume(mut queue: mpsc::Receiver<Bytes>, progress: watch::Sender<Progress>) {
    while let Some(body) = queue.recv().await {
        let (events, malformed) = parse_batch(&body);
        for e in &events {
            record_faas(e);
        }
        progress.send_modify(|p| {
            p.deliveries += 1;
            p.malformed += malformed as u64;
            for e in &events {
                p.apply(e);
            }
        });
        tracing::debug!(events = events.len(), malformed, "telemetry delivery");
    }
}

/// `faas.*` from platform events: `start` counts an invocation; a `runtimeDone` that is not
/// `success` an error (or a timeout); `initReport` gives the init duration; `report` the
/// invocation duration, and a cold start when it carries `initDurationMs` (as Lambda's REPORT
/// line does).
pub fn record_faas(event: &PlatformEvent) {
    use metrics::{counter, histogram};
    match event {
        PlatformEvent::Start { .. } => counter!(names::FAAS_INVOCATIONS).increment(1),
        PlatformEvent::RuntimeDone { status, .. } => match status.as_str() {
            "success" => {}
            "timeout" => counter!(names::FAAS_TIMEOUTS).increment(1),
            _ => counter!(names::FAAS_ERRORS).increment(1),
        },
        PlatformEvent::InitReport { duration_ms: Some(ms), .. } => histogram!(names::FAAS_INIT_DURATION).record(ms / 1000.0),
        PlatformEvent::Report {
            duration_ms,
            init_duration_ms,
            ..
        } => {
            if let Some(ms) = duration_ms {
                histogram!(names::FAAS_INVOKE_DURATION).record(ms / 1000.0);
            }
            if init_duration_ms.is_some() {
                counter!(names::FAAS_COLDSTARTS).increment(1);
            }
        }
        _ => {}
    }
}
