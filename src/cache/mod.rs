//! The middle of the data flow, as three parts and the coordinator over them:
//! - the store (`store`): the snapshot readers load once per request without a lock, its one
//!   writer, eviction, and which of two answers is later (`order`);
//! - the flights (`flight`): single-flight fetches and the clock they are stamped on;
//! - the policy (`policy`): what TTL and pin an entry gets, built once from the configuration.
//!
//! `Cache` serves reads (fresh, stale-if-error, or through a flight), fetches and installs,
//! refreshes ahead, prefetches the config file's entries (`prefetch`, `listing`), and hands
//! background work out as `Background` handles. Built from its own slice of the configuration
//! (`config::CacheConfig`).

pub mod background;
pub mod entry;
mod flight;
mod listing;
mod order;
mod policy;
mod prefetch;
mod snapshot;
mod status;
mod store;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use background::Background;
pub use entry::Entry;
pub use prefetch::Reserved;
pub use snapshot::Snapshot;
pub use status::{CacheStatus, EntryStatus};

use flight::{FlightResult, Flights, NewFlight, wait};
use policy::Policy;
use prefetch::batches;
use snapshot::unique;
use store::{Installed, Store};

use crate::config::{ByService, CacheConfig};
use crate::counters::{CacheResult, Counters, Trigger};
use crate::key::{Key, KeyRef};
use crate::upstream::{Fetch, FetchError, Fetched};

/// Wall-clock milliseconds. Lambda freezes the process between invokes, so TTLs are judged by
/// the wall clock, never by timers or the monotonic clock. Injected so tests control time.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}

/// A value handed to a reader, and how it was obtained.
pub struct Served {
    pub entry: Arc<Entry>,
    pub result: CacheResult,
    /// Whole seconds since the value was fetched (the `Age` header).
    pub age_secs: u64,
    /// The same, exactly (`secrets_cache.staleness`).
    pub age: Duration,
}

impl Served {
    fn new(entry: Arc<Entry>, result: CacheResult, now_ms: u64) -> Served {
        let age_secs = entry.age_secs(now_ms);
        let age = Duration::from_millis(now_ms.saturating_sub(entry.fetched_at_ms));
        Served {
            entry,
            result,
            age_secs,
            age,
        }
    }
}

pub struct Cache {
    store: Store,
    flights: Flights,
    policy: Policy,
    fetch: Arc<dyn Fetch>,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
    /// False: pass-through (`PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED=false`).
    enabled: bool,
    capacity: usize,
    /// How long a reader waits on upstream.
    read_timeout: ByService<Duration>,
    max_stale: Duration,
    /// How long a `required` entry's throttled prefetch is retried (`SECRETS_CACHE_PREFETCH_DEADLINE`).
    prefetch_deadline: Duration,
    /// Every background fetch, so the lifecycle can finish or cancel them before a freeze.
    tasks: TaskTracker,
    /// Cancels the fetches running now (`settle`); replaced after each use.
    cancel: Mutex<CancellationToken>,
}

/// How many times an answer that arrives after a newer value was evicted is read again.
const CONFIRMING_READS: usize = 2;

impl Cache {
    pub fn new(fetch: Arc<dyn Fetch>, config: &CacheConfig, counters: Arc<Counters>, clock: Arc<dyn Clock>) -> Arc<Cache> {
        Arc::new(Cache {
            store: Store::new(config.enabled, config.capacity, counters.clone()),
            flights: Flights::default(),
            policy: Policy::new(config),
            fetch,
            counters,
            clock,
            enabled: config.enabled,
            capacity: config.capacity,
            read_timeout: config.read_timeout,
            max_stale: config.max_stale,
            prefetch_deadline: config.prefetch_deadline,
            tasks: TaskTracker::new(),
            cancel: Mutex::new(CancellationToken::new()),
        })
    }

    /// Serves `key`: from the snapshot when fresh, else through one shared upstream call.
    pub async fn get(self: &Arc<Self>, key: KeyRef<'_>, refresh_now: bool) -> Result<Served, FetchError> {
        let now = self.clock.now_ms();
        let cached = if self.enabled {
            self.store.load().map.get(&key).cloned()
        } else {
            None
        };
        if let Some(entry) = &cached
            && !refresh_now
        {
            if entry.is_fresh(now) {
                entry.stats.hits.fetch_add(1, Relaxed);
                entry.stats.touch(now);
                return Ok(Served::new(entry.clone(), CacheResult::Hit, now));
            }
            // Upstream failed a moment ago: do not make every reader wait on it again.
            if entry.stats.retry_after_ms.load(Relaxed) > now && self.servable_stale(entry, now) {
                entry.stats.touch(now);
                return Ok(Served::new(entry.clone(), CacheResult::Stale, now));
            }
        }

        let trigger = if refresh_now { Trigger::RefreshNow } else { Trigger::Expired };
        // Right after start-up the AWS clients may still be being built: the budget is the
        // call's, and starts once they are (a few ms; bounded by the upstream).
        self.fetch.ready().await;
        let budget = *self.read_timeout.get(key.service);
        // One flight per item whatever alias it is asked by: once the item is known, its
        // flight is keyed by the entry's first key. `refreshNow` starts a flight of its own:
        // one that began before it was asked may carry the value it wants replaced.
        let flight_key = cached.as_ref().map_or_else(|| key.to_owned(), |e| e.primary().clone());
        let flight = self
            .start(vec![flight_key], trigger, refresh_now, self.cancel_token())
            .pop()
            .expect("one key in, one flight out");
        let result = match tokio::time::timeout(budget, wait(flight)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(budget.as_millis() as u64)),
        };
        match result {
            Ok(entry) => {
                let now = self.clock.now_ms();
                entry.stats.misses.fetch_add(1, Relaxed);
                entry.stats.touch(now);
                let result = if refresh_now { CacheResult::Refresh } else { CacheResult::Miss };
                Ok(Served::new(entry, result, now))
            }
            Err(e) if !refresh_now && e.is_transient() => {
                let now = self.clock.now_ms();
                match cached {
                    Some(old) if self.servable_stale(&old, now) => Ok(Served::new(old, CacheResult::Stale, now)),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn servable_stale(&self, entry: &Entry, now: u64) -> bool {
        now < entry.expires_at_ms().saturating_add(self.max_stale.as_millis() as u64)
    }

    /// Joins or starts one flight per key (`fresh`: always starts); new ones are fetched
    /// together in one task (a batch call when there are several), cancelled by `cancel`.
    /// Returns a flight per key, in order.
    fn start(self: &Arc<Self>, keys: Vec<Key>, trigger: Trigger, fresh: bool, cancel: CancellationToken) -> Vec<flight::Flight> {
        let (flights, new) = self.flights.reserve(keys, fresh);
        self.launch(new, trigger, cancel);
        flights
    }

    /// Fetches the new flights (`start`, or a prefetch's reserved ones) in a background task.
    fn launch(self: &Arc<Self>, new: Vec<NewFlight>, trigger: Trigger, cancel: CancellationToken) {
        let this = self.clone();
        self.flights.launch(&self.tasks, new, cancel, move |keys, sent| async move {
            this.fetch_and_install(keys, sent, trigger).await
        });
    }

    /// One call for `keys` (a batch call when there are several), sent at `sent`; each answer
    /// installed (or what the store holds instead), each failure noted on its entry.
    async fn fetch_and_install(&self, keys: Vec<Key>, sent: u64, trigger: Trigger) -> Vec<FlightResult> {
        let results = if let [one] = keys.as_slice() {
            vec![self.fetch.fetch(one).await]
        } else {
            self.fetch.fetch_batch(&keys).await
        };
        let received = self.flights.tick();
        let now = self.clock.now_ms();
        let mut out = Vec::with_capacity(results.len());
        for (key, result) in keys.iter().zip(results) {
            self.counters.refresh(key.service, trigger, result.is_ok());
            out.push(match result {
                Ok(fetched) => match self.install(key, fetched, now, sent, received) {
                    Installed::New(entry) | Installed::Kept(entry) => Ok(entry),
                    Installed::Superseded => self.confirm(key).await,
                },
                Err(e) => {
                    self.note_failure(key, &e, now);
                    if trigger != Trigger::Expired && trigger != Trigger::RefreshNow {
                        tracing::warn!(
                            key = %crate::escape::escaped(&key.to_string()),
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

    /// Offers `fetched`, the answer for `key` of a fetch sent at `sent` and received at
    /// `received`, to the store under `key`, its name and its ARN, with the TTL and pin its
    /// policy gives. What the item's readers get is in the result (see `store::Installed`).
    fn install(&self, key: &Key, fetched: Fetched, now: u64, sent: u64, received: u64) -> Installed {
        let item = self.policy.of(key, &fetched);
        let ttl_ms = item.ttl.as_millis() as u64;
        let mut keys = vec![key.clone()];
        for alias in [fetched.name.as_deref(), fetched.arn.as_deref()].into_iter().flatten() {
            let k = key.with_id(alias);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let entry = Entry {
            keys,
            body: fetched.body,
            name: fetched.name,
            arn: fetched.arn,
            revision: fetched.revision,
            fetched_at_ms: now,
            ttl_ms,
            ahead_at_ms: now + self.policy.ahead_ms(key, ttl_ms),
            received,
            pinned: item.pinned,
            stats: Arc::default(),
        };
        self.store.install(entry, sent, self.flights.oldest_open())
    }

    fn note_failure(&self, key: &Key, err: &FetchError, now: u64) {
        if let Some(entry) = self.store.load().map.get(key) {
            entry.stats.record_failure(err.code(), err.is_transient(), now);
        }
    }

    /// Starts a background refresh of every entry past its refresh-ahead point, using the
    /// batch APIs. The handle says how many were due and lets the caller wait for them.
    pub fn refresh_ahead(self: &Arc<Self>) -> Background {
        let cancel = self.cancel_token().child_token();
        let mut background = Background::new(cancel.clone());
        if !self.enabled {
            return background;
        }
        let now = self.clock.now_ms();
        let due: Vec<Key> = unique(&self.store.load().map)
            .filter(|e| e.ttl_ms > 0 && now >= e.stats.retry_after_ms.load(Relaxed))
            .filter(|e| now >= e.ahead_at_ms || e.stats.confirm.load(Relaxed))
            .map(|e| e.primary().clone())
            .collect();
        for group in batches(due) {
            let flights = self.start(group.clone(), Trigger::Ahead, false, cancel.clone());
            for (key, flight) in group.into_iter().zip(flights) {
                background.push_flight(key.to_string(), false, flight);
            }
        }
        background
    }

    fn cancel_token(&self) -> CancellationToken {
        self.cancel.lock().expect("cancel lock holds no invariants").clone()
    }

    /// SHUTDOWN: lets every fetch (readers' and background ones) finish within `within`, then
    /// cancels the rest. Returns how many were cancelled.
    pub async fn settle(&self, within: Duration) -> usize {
        self.tasks.close();
        let mut cancelled = 0;
        if tokio::time::timeout(within, self.tasks.wait()).await.is_err() {
            cancelled = self.tasks.len();
            let token = std::mem::take(&mut *self.cancel.lock().expect("cancel lock holds no invariants"));
            token.cancel();
            // Cancelled fetches end at their next poll; a new one started meanwhile is not waited for.
            let _ = tokio::time::timeout(Duration::from_millis(100), self.tasks.wait()).await;
        }
        self.tasks.reopen();
        cancelled
    }

    /// Drops every cached value (their buffers are zeroised when the last reader lets go).
    pub fn clear(&self) {
        self.store.clear();
    }

    /// Everything `/status` shows of the cache. Never a value.
    pub fn status(&self) -> CacheStatus {
        self.store.status(self.clock.now_ms())
    }

    /// Drops the credentials of every assumed role (a SnapStart restore: they were in the
    /// snapshot).
    pub fn forget_assumed_roles(&self) {
        self.fetch.forget_assumed_roles();
    }
}

#[cfg(test)]
mod tests;
