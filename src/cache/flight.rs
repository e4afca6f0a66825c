//! Single-flight: every fetch is a flight that readers join, so N concurrent requests for an
//! item cost one upstream call. Flights are numbered when they start; `install` uses the number
//! so an answer from an earlier-started flight never replaces a later one's.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Cache, Entry};
use crate::key::Key;
use crate::metrics::Trigger;
use crate::source::FetchError;

pub(super) type FlightResult = Result<Arc<Entry>, FetchError>;
pub(super) type Flight = watch::Receiver<Option<FlightResult>>;
/// A flight registered by `reserve` and not yet launched: its key, its sequence number (the
/// order in which flights started), and where its result goes.
pub(super) struct NewFlight {
    pub(super) key: Key,
    pub(super) seq: u64,
    pub(super) tx: watch::Sender<Option<FlightResult>>,
}

impl Cache {
    /// Joins or starts one flight per key (`fresh`: always starts); new ones are fetched
    /// together in one task (a batch call when there are several), cancelled by `cancel`.
    /// Returns a flight per key, in order.
    pub(super) fn start(self: &Arc<Self>, keys: Vec<Key>, trigger: Trigger, fresh: bool, cancel: CancellationToken) -> Vec<Flight> {
        let (flights, new) = self.reserve(keys, fresh);
        self.launch(new, trigger, cancel);
        flights
    }

    /// Joins or registers a flight per key; returns them, and the new ones (whoever holds
    /// those must `launch` them). `fresh` never joins: a flight registered now replaces the
    /// one in the table, whose waiters still get its result.
    pub(super) fn reserve(&self, keys: Vec<Key>, fresh: bool) -> (Vec<Flight>, Vec<NewFlight>) {
        let mut flights = Vec::with_capacity(keys.len());
        let mut new = Vec::new();
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        let mut in_flight = self.flights.lock().expect("flight table lock holds no invariants");
        for key in keys {
            match in_flight.get(&key) {
                Some((_, f)) if !fresh => flights.push(f.clone()),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    in_flight.insert(key.clone(), (seq, rx.clone()));
                    flights.push(rx);
                    new.push(NewFlight { key, seq, tx });
                }
            }
        }
        (flights, new)
    }

    /// Removes `key`'s flight from the table if it is still the one that started at `seq`.
    pub(super) fn land(&self, key: &Key, seq: u64) {
        let mut in_flight = self.flights.lock().expect("flight table lock holds no invariants");
        if in_flight.get(key).is_some_and(|(s, _)| *s == seq) {
            in_flight.remove(key);
        }
    }

    pub(super) fn launch(self: &Arc<Self>, new: Vec<NewFlight>, trigger: Trigger, cancel: CancellationToken) {
        if !new.is_empty() {
            use opentelemetry::context::FutureExt;
            let this = self.clone();
            // The fetch's spans belong to whoever started it (a reader, or an invocation).
            self.tasks
                .spawn(async move { this.run(new, trigger, cancel).await }.with_current_context());
        }
    }

    async fn run(self: Arc<Self>, flights: Vec<NewFlight>, trigger: Trigger, cancel: CancellationToken) {
        let keys: Vec<Key> = flights.iter().map(|f| f.key.clone()).collect();
        let fetch = async {
            if let [one] = keys.as_slice() {
                vec![self.fetch.fetch(one).await]
            } else {
                self.fetch.fetch_batch(&keys).await
            }
        };
        let results = tokio::select! {
            results = fetch => results,
            () = cancel.cancelled() => {
                // Not an upstream failure: no back-off, no metric; waiters may serve stale.
                for f in flights {
                    self.land(&f.key, f.seq);
                    let _ = f.tx.send(Some(Err(cancelled())));
                }
                return;
            }
        };
        let now = self.clock.now_ms();
        for (f, result) in flights.into_iter().zip(results) {
            self.metrics.refresh(f.key.source, trigger, result.is_ok());
            let result = match result {
                Ok(fetched) => Ok(self.install(&f.key, fetched, now, f.seq)),
                Err(e) => {
                    self.note_failure(&f.key, &e, now);
                    if trigger != Trigger::Expired && trigger != Trigger::RefreshNow {
                        tracing::warn!(
                            key = %crate::escape::escaped(&f.key.to_string()),
                            trigger = trigger.as_str(),
                            error = e.code(),
                            "background fetch failed"
                        );
                    }
                    Err(e)
                }
            };
            // Installed first, then the flight removed: a reader arriving in between finds
            // either the flight or the new entry, never neither.
            self.land(&f.key, f.seq);
            let _ = f.tx.send(Some(result));
        }
    }
}

pub(super) fn cancelled() -> FetchError {
    FetchError::Network("cancelled before the environment froze".into())
}

pub(super) async fn wait(mut flight: Flight) -> FlightResult {
    match flight.wait_for(Option::is_some).await {
        Ok(v) => v.clone().expect("waited for Some"),
        Err(_) => Err(FetchError::Other("the fetch was abandoned".into())),
    }
}
