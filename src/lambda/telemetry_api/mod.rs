//! The Telemetry API, in: a listener on the sandbox address that the platform delivers
//! `platform.*` events to, the parsing of those events (each handed to an observer: the
//! `faas.*` metrics are `telemetry::faas`), and the `Progress` the lifecycle watches (which
//! invocations have finished and been reported).
//! Set up with `TelemetryApi::bind` before registering and `start` after.

pub mod event;
pub mod listener;

pub use event::{PlatformEvent, parse_batch};
pub use listener::{Dropped, Listener};

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::client::{ExtensionsApi, Subscription};

/// The listener, bound (`bind`) but not yet subscribed.
pub struct TelemetryApi {
    listener: Listener,
}

/// What `start` hands back: what arrives, the subscription's outcome, and the two long-lived
/// tasks (the listener, the consumer) for the caller to run.
pub struct Started<L, C> {
    pub progress: watch::Receiver<Progress>,
    pub dropped: Arc<Dropped>,
    pub subscription: Subscription,
    /// The destination we subscribed with.
    pub uri: String,
    pub listener: L,
    pub consumer: C,
}

impl TelemetryApi {
    /// Binds `host` (a name such as `sandbox.localdomain`, or an address) on an ephemeral port.
    pub async fn bind(host: &str) -> std::io::Result<TelemetryApi> {
        Ok(TelemetryApi {
            listener: Listener::bind(host).await?,
        })
    }

    /// Subscribes extension `id` to platform events (`schema`) delivered to this listener;
    /// each event is handed to `observe` as it is parsed.
    pub async fn start(
        self,
        api: &ExtensionsApi,
        id: &str,
        schema: &str,
        observe: fn(&PlatformEvent),
        cancel: CancellationToken,
    ) -> Started<impl Future<Output = std::io::Result<()>> + Send + 'static, impl Future<Output = ()> + Send + 'static> {
        let uri = self.listener.uri.clone();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let (queue_tx, queue_rx) = mpsc::channel::<Bytes>(listener::QUEUE);
        let dropped = Arc::new(Dropped::default());
        let listener = self.listener.run(queue_tx, dropped.clone(), cancel);
        let consumer = consume(queue_rx, progress_tx, observe);
        let subscription = api.subscribe(id, schema, &uri).await;
        Started {
            progress,
            dropped,
            subscription,
            uri,
            listener,
            consumer,
        }
    }
}

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

/// Parses queued deliveries, hands each event to `observe`, and publishes the progress.
/// Ends when the listener is gone.
pub async fn consume(mut queue: mpsc::Receiver<Bytes>, progress: watch::Sender<Progress>, observe: fn(&PlatformEvent)) {
    while let Some(body) = queue.recv().await {
        let (events, malformed) = parse_batch(&body);
        for e in &events {
            observe(e);
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
