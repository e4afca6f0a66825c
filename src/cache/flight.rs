//! Single-flight: every fetch is a flight that readers join, so N concurrent requests for an
//! item cost one upstream call. `Flights` holds the table of flights in the air, launches
//! them (what a flight does is the caller's closure), and keeps the clock each fetch is
//! stamped on when it is sent and when its answer is received (what `order` decides by),
//! with the fetches still open, so the store knows which evicted revisions may still matter.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Entry;
use crate::key::Key;
use crate::upstream::FetchError;

pub(super) type FlightResult = Result<Arc<Entry>, FetchError>;
pub(super) type Flight = watch::Receiver<Option<FlightResult>>;
type Table = HashMap<Key, (u64, Flight)>;

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
    table: Arc<Mutex<Table>>,
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
        land(&self.table, key, sent);
    }

    /// Runs `work` for the keys of `new` (all sent at one tick) in a task of `tasks`, until it
    /// is done or `cancel` fires; then lands each flight and hands its waiters its result. A
    /// cancelled fetch is not an upstream failure: its waiters get `cancelled()` (and may
    /// serve stale).
    pub(super) fn launch<W, F>(&self, tasks: &TaskTracker, new: Vec<NewFlight>, cancel: CancellationToken, work: W)
    where
        W: FnOnce(Vec<Key>, u64) -> F,
        F: Future<Output = Vec<FlightResult>> + Send + 'static,
    {
        let Some(sent) = new.first().map(|f| f.ticket.sent) else {
            return;
        };
        let work = work(new.iter().map(|f| f.key.clone()).collect(), sent);
        let table = self.table.clone();
        tasks.spawn(crate::telemetry::trace::in_current_context(async move {
            let results = tokio::select! {
                results = work => results,
                () = cancel.cancelled() => new.iter().map(|_| Err(cancelled())).collect(),
            };
            for (f, result) in new.into_iter().zip(results) {
                // Installed first, then the flight removed: a reader arriving in between finds
                // either the flight or the new entry, never neither.
                land(&table, &f.key, f.ticket.sent);
                let _ = f.tx.send(Some(result));
            }
        }));
    }
}

fn land(table: &Mutex<Table>, key: &Key, sent: u64) {
    let mut in_flight = table.lock().expect("flight table lock holds no invariants");
    if in_flight.get(key).is_some_and(|(s, _)| *s == sent) {
        in_flight.remove(key);
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
