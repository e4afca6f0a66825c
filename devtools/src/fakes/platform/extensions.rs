//! The extensions registered with the platform: each one's record, its parked `next` call,
//! and how an event reaches every extension that asked for it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::FakeLambda;
use super::records::epoch_ms;

/// What a parked `next` call is answered with.
#[derive(Debug)]
pub(super) enum Reply {
    Event(Value),
}

pub(super) struct Registered {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) events: Vec<String>,
    pub(super) pending: Option<oneshot::Sender<Reply>>,
    pub(super) next_calls: Vec<Duration>,
    /// When the last event was handed to it (since start).
    pub(super) event_at: Duration,
}

impl Registered {
    pub(super) fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    pub(super) fn waiting(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.is_closed())
    }
}

impl FakeLambda {
    pub(super) async fn deliver_to_extensions(&self, kind: &str, event: &Value, deadline: Instant) {
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
    pub(super) async fn on_next(&self, id: &str, deadline: Instant) -> bool {
        self.wait_until(
            deadline.saturating_duration_since(Instant::now()),
            "an extension to call next",
            |i| i.extensions.iter().find(|e| e.id == id).filter(|e| e.waiting()).map(|_| ()),
        )
        .await
        .is_ok()
    }
}
