//! The middle of the data flow: an immutable snapshot (`ArcSwap`) that readers load once per
//! request without locking, and the one writer that replaces it (`store`). Misses and
//! refreshes go through single-flight flights (`flight`); an answer only replaces a value
//! upstream gave earlier (`order`); the configured entries are prefetched (`prefetch`);
//! background work is handed out as `Background` handles. Also here: TTL, refresh-ahead with
//! jitter, stale-if-error, and eviction of the least recently read entries. Built from its own
//! slice of the configuration (`config::CacheConfig`).

pub mod background;
pub mod entry;
mod flight;
mod listing;
mod order;
mod prefetch;
mod snapshot;
mod status;
mod store;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use background::Background;
pub use entry::Entry;
pub use snapshot::Snapshot;

use flight::{Flights, wait};
use snapshot::unique;
use store::{Installed, Store};

use prefetch::{batches, secret_key};

use crate::config::{CacheConfig, ParameterTarget};
use crate::counters::{CacheResult, Counters, Trigger};
use crate::key::{Key, KeyRef, Service};
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

#[derive(Debug, Clone, Copy)]
struct ItemPolicy {
    ttl: Duration,
    pinned: bool,
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
    fetch: Arc<dyn Fetch>,
    config: CacheConfig,
    items: HashMap<Key, ItemPolicy>,
    /// The config's parameter paths and secret filters.
    listings: Vec<listing::Listing>,
    /// What a config `filter` or `path` loaded, with the index of the first listing (in file
    /// order) that did and its policy (known once the prefetch has run, so a later refresh
    /// keeps them pinned with their TTL).
    found: Mutex<HashMap<Key, (usize, ItemPolicy)>>,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
    jitter: RandomState,
    /// Every background fetch, so the lifecycle can finish or cancel them before a freeze.
    tasks: TaskTracker,
    /// Cancels the fetches running now (`settle`); replaced after each use.
    cancel: Mutex<CancellationToken>,
    /// SnapStart: the prefetch waits for the restore (`defer_prefetch`).
    deferred: AtomicBool,
    /// SnapStart: set once init is over; the first activity after that runs the prefetch.
    restore_armed: AtomicBool,
    /// SnapStart: the prefetch started at the restore, for the INVOKE to settle before `/next`.
    restore_prefetch: Mutex<Option<Background>>,
}

impl Cache {
    pub fn new(fetch: Arc<dyn Fetch>, config: &CacheConfig, counters: Arc<Counters>, clock: Arc<dyn Clock>) -> Arc<Cache> {
        let mut items = HashMap::new();
        // An item named twice takes the first entry's policy.
        for s in &config.prefetch.secrets {
            let ttl = s.ttl.unwrap_or(config.ttl.secrets);
            items
                .entry(secret_key(&s.id, &s.version).with_role(&s.role))
                .or_insert(ItemPolicy { ttl, pinned: true });
        }
        for p in &config.prefetch.parameters {
            if let ParameterTarget::Name(n) = &p.target {
                let ttl = p.ttl.unwrap_or(config.ttl.ssm);
                items
                    .entry(Key::parameter(n, p.with_decryption).with_role(&p.role))
                    .or_insert(ItemPolicy { ttl, pinned: true });
            }
        }
        Arc::new(Cache {
            store: Store::new(config.enabled, config.capacity, counters.clone()),
            flights: Flights::default(),
            fetch,
            config: config.clone(),
            items,
            listings: listing::from_config(config),
            found: Mutex::new(HashMap::new()),
            counters,
            clock,
            jitter: RandomState::new(),
            tasks: TaskTracker::new(),
            cancel: Mutex::new(CancellationToken::new()),
            deferred: AtomicBool::new(false),
            restore_armed: AtomicBool::new(false),
            restore_prefetch: Mutex::new(None),
        })
    }

    /// Serves `key`: from the snapshot when fresh, else through one shared upstream call.
    pub async fn get(self: &Arc<Self>, key: KeyRef<'_>, refresh_now: bool) -> Result<Served, FetchError> {
        let now = self.clock.now_ms();
        self.restored();
        let cached = if self.config.enabled {
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
        let budget = *self.config.read_timeout.get(key.service);
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
        now < entry.expires_at_ms().saturating_add(self.config.max_stale.as_millis() as u64)
    }

    fn item_policy(&self, key: &Key, fetched: &Fetched) -> ItemPolicy {
        if let Some(p) = self.items.get(key) {
            return *p;
        }
        let aliases = [fetched.name.as_deref(), fetched.arn.as_deref()];
        if let Some(p) = aliases.into_iter().flatten().find_map(|id| self.items.get(&key.with_id(id))) {
            return *p;
        }
        if let Some((_, p)) = self.found.lock().expect("found lock holds no invariants").get(key) {
            return *p;
        }
        // Under a configured path but not loaded by its prefetch (created since, or left out
        // by the prefetch's budget): the path's TTL, not pinned, so reads cannot grow what is
        // pinned past what the prefetch loaded.
        if let Some(p) = self.path_policy(key) {
            return ItemPolicy { pinned: false, ..p };
        }
        ItemPolicy {
            ttl: *self.config.ttl.get(key.service),
            pinned: false,
        }
    }

    /// The policy of the configured `path` that `key` lies under, if any.
    fn path_policy(&self, key: &Key) -> Option<ItemPolicy> {
        self.listings
            .iter()
            .find(|l| match &l.what {
                listing::Listed::Path { path, decrypt } => {
                    key.service == Service::Ssm
                        && *decrypt == key.decrypt
                        && *l.role == *key.role
                        && crate::config::file::parameter_under(path, &key.id)
                }
                listing::Listed::Filter(_) => false,
            })
            .map(|l| l.policy)
    }

    /// The listing `self.listings[index]` (a path, a filter) loaded `key`: later installs
    /// under its name and ARN keep its `policy` (pinned, the entry's TTL), unless a listing
    /// before it in the file loaded the item too (listings run at once; the file decides).
    fn remember_found(&self, key: &Key, arn: Option<&str>, index: usize, policy: ItemPolicy) {
        let mut found = self.found.lock().expect("found lock holds no invariants");
        for k in std::iter::once(key.clone()).chain(arn.map(|a| key.with_id(a))) {
            let slot = found.entry(k).or_insert((index, policy));
            if index < slot.0 {
                *slot = (index, policy);
            }
        }
    }

    /// Jitter in [-10 %, +10 %], fixed per key and random per process, so environments started
    /// together do not refresh in lock-step.
    fn jitter(&self, key: &Key) -> f64 {
        (self.jitter.hash_one(key) % 2001) as f64 / 10_000.0 - 0.1
    }

    /// Offers `fetched`, the answer for `key` of a fetch sent at `sent` and received at
    /// `received`, to the store under `key`, its name and its ARN, with the TTL and pin its
    /// policy gives. What the item's readers get is in the result (see `store::Installed`).
    fn install(&self, key: &Key, fetched: Fetched, now: u64, sent: u64, received: u64) -> Installed {
        let item = self.item_policy(key, &fetched);
        let ttl_ms = item.ttl.as_millis() as u64;
        let mut keys = vec![key.clone()];
        for alias in [fetched.name.as_deref(), fetched.arn.as_deref()].into_iter().flatten() {
            let k = key.with_id(alias);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let ahead_ms = (ttl_ms as f64 * self.config.refresh_ahead * (1.0 + self.jitter(key))) as u64;
        let entry = Entry {
            keys,
            body: fetched.body,
            name: fetched.name,
            arn: fetched.arn,
            revision: fetched.revision,
            fetched_at_ms: now,
            ttl_ms,
            ahead_at_ms: now + ahead_ms,
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
        if !self.config.enabled {
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
}

#[cfg(test)]
mod tests;
