//! Telemetry in: the Telemetry API listener and the platform events it receives. The
//! lifecycle waits on `platform.start` / `platform.runtimeDone` through `Progress`.

pub mod event;
pub mod export;
pub mod listener;
pub mod names;
pub mod otlp;
pub mod recorder;

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
    /// Elements received, by kind.
    pub events: u64,
    pub unknown: u64,
    pub malformed: u64,
    started: VecDeque<String>,
    done: VecDeque<(String, String)>,
}

impl Progress {
    pub fn started(&self, request_id: &str) -> bool {
        self.started.iter().any(|id| id == request_id)
    }

    /// The `status` of `platform.runtimeDone` for `request_id`, once it has arrived.
    pub fn runtime_done(&self, request_id: &str) -> Option<&str> {
        self.done.iter().find(|(id, _)| id == request_id).map(|(_, s)| s.as_str())
    }

    pub(crate) fn apply(&mut self, event: &PlatformEvent) {
        self.events += 1;
        match event {
            PlatformEvent::Start { request_id } => remember(&mut self.started, request_id.clone()),
            PlatformEvent::RuntimeDone { request_id, status, .. } => remember(&mut self.done, (request_id.clone(), status.clone())),
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

/// Parses queued deliveries and publishes the progress. Ends when the listener is gone.
pub async fn consume(mut queue: mpsc::Receiver<Bytes>, progress: watch::Sender<Progress>) {
    while let Some(body) = queue.recv().await {
        let (events, malformed) = parse_batch(&body);
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
