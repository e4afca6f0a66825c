//! Single-flight: every fetch is a flight that readers join, so N concurrent requests for an
//! item cost one upstream call. Each fetch is stamped on one logical clock (`Flights::tick`)
//! when it is sent and when its answer is received, which is what `order` decides by; the
//! fetches still open are tracked so the store knows which evicted revisions may still matter.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store::Installed;
use super::{Cache, Entry};
use crate::counters::Trigger;
use crate::key::Key;
use crate::upstream::FetchError;

pub(super) type FlightResult = Result<Arc<Entry>, FetchError>;
pub(super) type Flight = watch::Receiver<Option<FlightResult>>;

/// A flight registered by `reserve` and not yet launched: its key, when it was sent (the
/// order in which flights started), and where its result goes. Open until dropped.
pub(super) struct NewFlight {
    pub(super) key: Key,
    pub(super) ticket: Ticket,
    pub(super) tx: watch::Sender<Option<FlightResult>>,
}

/// The flight table and the fetch clock.
#[derive(Default)]
pub(super) struct Flights {
    /// In-flight fetches by key, with the tick each was sent at.
    table: Mutex<HashMap<Key, (u64, Flight)>>,
    clock: AtomicU64,
    /// Ticks of the fetches still open (sent, not yet installed), with how many at each.
    open: Arc<Mutex<BTreeMap<u64, usize>>>,
}

/// One open fetch, sent at `sent`; closed when dropped.
pub(super) struct Ticket {
    pub(super) sent: u64,
    open: Arc<Mutex<BTreeMap<u64, usize>>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("open fetches lock holds no invariants");
        if let Some(n) = open.get_mut(&self.sent) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.sent);
            }
        }
    }
}

impl Flights {
    /// The next tick of the fetch clock.
    pub(super) fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Relaxed) + 1
    }

    fn ticket_at(&self, sent: u64) -> Ticket {
        *self
            .open
            .lock()
            .expect("open fetches lock holds no invariants")
            .entry(sent)
            .or_default() += 1;
        Ticket {
            sent,
            open: self.open.clone(),
        }
    }

    /// A fetch sent now, open until the ticket is dropped.
    pub(super) fn ticket(&self) -> Ticket {
        self.ticket_at(self.tick())
    }

    /// When the oldest fetch still open was sent.
    pub(super) fn oldest_open(&self) -> Option<u64> {
        self.open
            .lock()
            .expect("open fetches lock holds no invariants")
            .keys()
            .next()
            .copied()
    }

    /// Joins or registers a flight per key; returns them, and the new ones (whoever holds
    /// those must launch them). `fresh` never joins: a flight registered now replaces the
    /// one in the table, whose waiters still get its result.
    pub(super) fn reserve(&self, keys: Vec<Key>, fresh: bool) -> (Vec<Flight>, Vec<NewFlight>) {
        let mut flights = Vec::with_capacity(keys.len());
        let mut new = Vec::new();
        let sent = self.tick();
        let mut in_flight = self.table.lock().expect("flight table lock holds no invariants");
        for key in keys {
            match in_flight.get(&key) {
                Some((_, f)) if !fresh => flights.push(f.clone()),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    in_flight.insert(key.clone(), (sent, rx.clone()));
                    flights.push(rx);
                    new.push(NewFlight {
                        key,
                        ticket: self.ticket_at(sent),
                        tx,
                    });
                }
            }
        }
        (flights, new)
    }

    /// Removes `key`'s flight from the table if it is still the one sent at `sent`.
    pub(super) fn land(&self, key: &Key, sent: u64) {
        let mut in_flight = self.table.lock().expect("flight table lock holds no invariants");
        if in_flight.get(key).is_some_and(|(s, _)| *s == sent) {
            in_flight.remove(key);
        }
    }
}

/// How many times an answer that arrives after a newer value was evicted is read again.
const CONFIRMING_READS: usize = 2;

impl Cache {
    /// Joins or starts one flight per key (`fresh`: always starts); new ones are fetched
    /// together in one task (a batch call when there are several), cancelled by `cancel`.
    /// Returns a flight per key, in order.
    pub(super) fn start(self: &Arc<Self>, keys: Vec<Key>, trigger: Trigger, fresh: bool, cancel: CancellationToken) -> Vec<Flight> {
        let (flights, new) = self.flights.reserve(keys, fresh);
        self.launch(new, trigger, cancel);
        flights
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
        let work = async {
            let results = if let [one] = keys.as_slice() {
                vec![self.fetch.fetch(one).await]
            } else {
                self.fetch.fetch_batch(&keys).await
            };
            let received = self.flights.tick();
            let now = self.clock.now_ms();
            let mut out = Vec::with_capacity(results.len());
            for (f, result) in flights.iter().zip(results) {
                self.counters.refresh(f.key.service, trigger, result.is_ok());
                out.push(match result {
                    Ok(fetched) => match self.install(&f.key, fetched, now, f.ticket.sent, received) {
                        Installed::New(entry) | Installed::Kept(entry) => Ok(entry),
                        Installed::Superseded => self.confirm(&f.key).await,
                    },
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
                });
            }
            out
        };
        let results = tokio::select! {
            results = work => results,
            // Not an upstream failure: no back-off, no metric; waiters may serve stale.
            () = cancel.cancelled() => flights.iter().map(|_| Err(cancelled())).collect(),
        };
        for (f, result) in flights.into_iter().zip(results) {
            // Installed first, then the flight removed: a reader arriving in between finds
            // either the flight or the new entry, never neither.
            self.flights.land(&f.key, f.ticket.sent);
            let _ = f.tx.send(Some(result));
        }
    }

    /// The answer for `key` was older than a value that was evicted since: it must not be
    /// served, and the newer value is gone, so read the item again. A read sent now is later
    /// than anything received so far, so it is installed (or meets a newer value still held).
    async fn confirm(&self, key: &Key) -> Result<Arc<Entry>, FetchError> {
        for _ in 0..CONFIRMING_READS {
            let ticket = self.flights.ticket();
            let fetched = self.fetch.fetch(key).await?;
            let received = self.flights.tick();
            match self.install(key, fetched, self.clock.now_ms(), ticket.sent, received) {
                Installed::New(entry) | Installed::Kept(entry) => return Ok(entry),
                Installed::Superseded => continue,
            }
        }
        Err(FetchError::Other(
            "newer values of this item kept arriving and leaving the cache; read it again".into(),
        ))
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
