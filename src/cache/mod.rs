//! The middle of the data flow: an immutable snapshot (`ArcSwap`) that readers load once per
//! request without locking, and the one writer that replaces it. Misses and refreshes go
//! through single-flight "flights" so N concurrent requests for an item cost one upstream call.
//! Also here: TTL, refresh-ahead with jitter, stale-if-error, and eviction of the least
//! recently read entries.

pub mod background;
pub mod entry;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hashbrown::HashMap;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use background::{Background, Report, Reserved};
pub use entry::{Entry, EntryStats};

use crate::config::{Config, FileConfig, ParameterTarget, SecretVersion};
use crate::metrics::{CacheResult, Metrics, Trigger};
use crate::key::{Key, KeyRef, SelectorKind, Source};
use crate::source::{Fetch, FetchError, Fetched, PARAMETERS_BATCH, SECRETS_BATCH};

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

/// The cache-wide rules, from `Config`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub enabled: bool,
    pub capacity: usize,
    pub ttl: [Duration; 2],
    /// Longest a reader waits for an upstream answer.
    pub timeout: [Duration; 2],
    pub max_stale: Duration,
    pub refresh_ahead: f64,
}

impl Policy {
    pub fn from_config(c: &Config) -> Policy {
        Policy {
            enabled: c.cache_enabled,
            capacity: c.cache_size,
            ttl: [c.secrets.ttl, c.ssm.ttl],
            timeout: [c.secrets.timeout, c.ssm.timeout],
            max_stale: c.max_stale,
            refresh_ahead: c.refresh_ahead,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ItemPolicy {
    ttl: Duration,
    pinned: bool,
}

/// What readers see: every key (including aliases) → its entry.
#[derive(Default)]
pub struct Snapshot {
    map: HashMap<Key, Arc<Entry>>,
    entries: usize,
    /// Entries by source (`Source::index`).
    per_source: [usize; 2],
    bytes: usize,
}

impl Snapshot {
    fn new(map: HashMap<Key, Arc<Entry>>) -> Snapshot {
        let (mut per_source, mut bytes) = ([0, 0], 0);
        for e in unique(&map) {
            per_source[e.primary().source.index()] += 1;
            bytes += e.body.len();
        }
        Snapshot {
            map,
            entries: per_source[0] + per_source[1],
            per_source,
            bytes,
        }
    }
}

/// Each entry once, whatever number of aliases it has.
fn unique(map: &HashMap<Key, Arc<Entry>>) -> impl Iterator<Item = &Arc<Entry>> {
    map.iter().filter(|(k, e)| *k == e.primary()).map(|(_, e)| e)
}

type FlightResult = Result<Arc<Entry>, FetchError>;
type Flight = watch::Receiver<Option<FlightResult>>;
/// A flight registered by `reserve` and not yet launched: its key, its sequence number (the
/// order in which flights started), and where its result goes.
struct NewFlight {
    key: Key,
    seq: u64,
    tx: watch::Sender<Option<FlightResult>>,
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
    snapshot: ArcSwap<Snapshot>,
    /// Serialises writers; readers never take it.
    writer: Mutex<()>,
    /// In-flight fetches by key, with the sequence number each started with.
    flights: Mutex<HashMap<Key, (u64, Flight)>>,
    /// Gives every flight its place in time: an answer from a flight that started earlier
    /// never replaces one from a flight that started later.
    seq: AtomicU64,
    fetch: Arc<dyn Fetch>,
    policy: Policy,
    items: HashMap<Key, ItemPolicy>,
    paths: Vec<(String, bool, ItemPolicy)>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    jitter: RandomState,
    /// Every background fetch, so the lifecycle can finish or cancel them before a freeze.
    tasks: TaskTracker,
    /// Cancels the fetches running now (`settle`); replaced after each use.
    cancel: Mutex<CancellationToken>,
}

impl Cache {
    pub fn new(fetch: Arc<dyn Fetch>, policy: Policy, file: &FileConfig, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Arc<Cache> {
        let mut items = HashMap::new();
        let mut paths = Vec::new();
        for s in &file.secrets {
            let ttl = s.ttl.unwrap_or(policy.ttl[Source::SecretsManager.index()]);
            items.insert(secret_key(&s.id, &s.version), ItemPolicy { ttl, pinned: true });
        }
        for p in &file.parameters {
            let ttl = p.ttl.unwrap_or(policy.ttl[Source::Ssm.index()]);
            match &p.target {
                ParameterTarget::Name(n) => {
                    items.insert(Key::parameter(n, p.with_decryption), ItemPolicy { ttl, pinned: true });
                }
                ParameterTarget::Path(path) => paths.push((path.clone(), p.with_decryption, ItemPolicy { ttl, pinned: true })),
            }
        }
        Arc::new(Cache {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            writer: Mutex::new(()),
            flights: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            fetch,
            policy,
            items,
            paths,
            metrics,
            clock,
            jitter: RandomState::new(),
            tasks: TaskTracker::new(),
            cancel: Mutex::new(CancellationToken::new()),
        })
    }

    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Serves `key`: from the snapshot when fresh, else through one shared upstream call.
    pub async fn get(self: &Arc<Self>, key: KeyRef<'_>, refresh_now: bool) -> Result<Served, FetchError> {
        let now = self.clock.now_ms();
        let cached = if self.policy.enabled {
            self.snapshot.load().map.get(&key).cloned()
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
        let budget = self.policy.timeout[key.source.index()];
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
        now < entry.expires_at_ms().saturating_add(self.policy.max_stale.as_millis() as u64)
    }

    /// Joins or starts one flight per key (`fresh`: always starts); new ones are fetched
    /// together in one task (a batch call when there are several), cancelled by `cancel`.
    /// Returns a flight per key, in order.
    fn start(self: &Arc<Self>, keys: Vec<Key>, trigger: Trigger, fresh: bool, cancel: CancellationToken) -> Vec<Flight> {
        let (flights, new) = self.reserve(keys, fresh);
        self.launch(new, trigger, cancel);
        flights
    }

    /// Joins or registers a flight per key; returns them, and the new ones (whoever holds
    /// those must `launch` them). `fresh` never joins: a flight registered now replaces the
    /// one in the table, whose waiters still get its result.
    fn reserve(&self, keys: Vec<Key>, fresh: bool) -> (Vec<Flight>, Vec<NewFlight>) {
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
    fn land(&self, key: &Key, seq: u64) {
        let mut in_flight = self.flights.lock().expect("flight table lock holds no invariants");
        if in_flight.get(key).is_some_and(|(s, _)| *s == seq) {
            in_flight.remove(key);
        }
    }

    fn launch(self: &Arc<Self>, new: Vec<NewFlight>, trigger: Trigger, cancel: CancellationToken) {
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

    fn item_policy(&self, key: &Key, fetched: &Fetched) -> ItemPolicy {
        if let Some(p) = self.items.get(key) {
            return *p;
        }
        let aliases = [fetched.name.as_deref(), fetched.arn.as_deref()];
        if let Some(p) = aliases.into_iter().flatten().find_map(|id| self.items.get(&key.with_id(id))) {
            return *p;
        }
        if key.source == Source::Ssm
            && let Some((_, _, p)) = self
                .paths
                .iter()
                .find(|(path, decrypt, _)| *decrypt == key.decrypt && key.id.starts_with(path.as_str()))
        {
            return *p;
        }
        ItemPolicy {
            ttl: self.policy.ttl[key.source.index()],
            pinned: false,
        }
    }

    /// Jitter in [-10 %, +10 %], fixed per key and random per process, so environments started
    /// together do not refresh in lock-step.
    fn jitter(&self, key: &Key) -> f64 {
        (self.jitter.hash_one(key) % 2001) as f64 / 10_000.0 - 0.1
    }

    /// Replaces the snapshot with one that holds `fetched` under `key`, its name and its ARN,
    /// unless one of those keys already holds an entry fetched by a flight that started later
    /// (`seq`): then that newer entry stays and is returned instead, so an entry never goes
    /// back to an older answer whichever alias fetched it.
    fn install(&self, key: &Key, fetched: Fetched, now: u64, seq: u64) -> Arc<Entry> {
        let item = self.item_policy(key, &fetched);
        let ttl_ms = item.ttl.as_millis() as u64;
        let mut keys = vec![key.clone()];
        for alias in [fetched.name.as_deref(), fetched.arn.as_deref()].into_iter().flatten() {
            let k = key.with_id(alias);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let ahead_ms = (ttl_ms as f64 * self.policy.refresh_ahead * (1.0 + self.jitter(key))) as u64;
        let _writer = self.writer.lock().expect("writer lock holds no invariants");
        let snap = self.snapshot.load_full();
        if self.policy.enabled
            && let Some(newer) = keys
                .iter()
                .filter_map(|k| snap.map.get(k))
                .filter(|e| e.seq > seq)
                .max_by_key(|e| e.seq)
        {
            return newer.clone();
        }
        let stats = keys
            .iter()
            .find_map(|k| snap.map.get(k))
            .map(|e| e.stats.clone())
            .unwrap_or_default();
        stats.record_success();
        stats.last_read_ms.store(now, Relaxed);
        let entry = Arc::new(Entry {
            keys,
            body: fetched.body,
            name: fetched.name,
            arn: fetched.arn,
            version: fetched.version,
            fetched_at_ms: now,
            ttl_ms,
            ahead_at_ms: now + ahead_ms,
            seq,
            pinned: item.pinned,
            stats,
        });
        if !self.policy.enabled || ttl_ms == 0 {
            return entry;
        }
        let mut map = snap.map.clone();
        for k in &entry.keys {
            if let Some(old) = map.get(k).cloned() {
                for old_key in &old.keys {
                    if map.get(old_key).is_some_and(|e| Arc::ptr_eq(e, &old)) {
                        map.remove(old_key);
                    }
                }
            }
        }
        for k in &entry.keys {
            map.insert(k.clone(), entry.clone());
        }
        self.evict(&mut map);
        let snapshot = Snapshot::new(map);
        self.metrics.cache_size(snapshot.per_source, snapshot.bytes);
        self.snapshot.store(Arc::new(snapshot));
        entry
    }

    /// Drops the least recently read unpinned entries until the map fits the capacity.
    fn evict(&self, map: &mut HashMap<Key, Arc<Entry>>) {
        let mut count = unique(map).count();
        while count > self.policy.capacity {
            let Some(victim) = unique(map)
                .filter(|e| !e.pinned)
                .min_by_key(|e| e.stats.last_read_ms.load(Relaxed))
                .cloned()
            else {
                return; // everything left is pinned by the config file
            };
            for k in &victim.keys {
                if map.get(k).is_some_and(|e| Arc::ptr_eq(e, &victim)) {
                    map.remove(k);
                }
            }
            self.metrics.eviction();
            count -= 1;
        }
    }

    fn note_failure(&self, key: &Key, err: &FetchError, now: u64) {
        if let Some(entry) = self.snapshot.load().map.get(key) {
            entry.stats.record_failure(err.code(), err.is_transient(), now);
        }
    }

    /// Starts a background refresh of every entry past its refresh-ahead point, using the
    /// batch APIs. The handle says how many were due and lets the caller wait for them.
    pub fn refresh_ahead(self: &Arc<Self>) -> Background {
        let cancel = self.cancel_token().child_token();
        let mut background = Background::new(cancel.clone());
        if !self.policy.enabled {
            return background;
        }
        let now = self.clock.now_ms();
        let due: Vec<Key> = unique(&self.snapshot.load().map)
            .filter(|e| e.ttl_ms > 0 && now >= e.ahead_at_ms && now >= e.stats.retry_after_ms.load(Relaxed))
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
        let _writer = self.writer.lock().expect("writer lock holds no invariants");
        self.snapshot.store(Arc::new(Snapshot::default()));
        self.metrics.cache_size([0, 0], 0);
    }

    /// Everything `/status` shows. Never a value.
    pub fn status(&self) -> CacheStatus {
        let now = self.clock.now_ms();
        let snap = self.snapshot.load_full();
        let mut items: Vec<EntryStatus> = unique(&snap.map)
            .map(|e| {
                let last_error = e.stats.last_error();
                let state = match (&last_error, e.is_fresh(now)) {
                    (Some(_), _) => "failing",
                    (None, true) => "fresh",
                    (None, false) => "stale",
                };
                let k = e.primary();
                EntryStatus {
                    id: k.id.to_string(),
                    source: k.source.as_str(),
                    selector: match k.kind {
                        SelectorKind::Default => None,
                        _ => Some(k.selector.to_string()),
                    },
                    with_decryption: k.decrypt,
                    name: e.name.clone(),
                    arn: e.arn.clone(),
                    version_id: e.version.clone(),
                    age_seconds: e.age_secs(now),
                    ttl_seconds: e.ttl_ms / 1000,
                    state,
                    last_error,
                    hits: e.stats.hits.load(Relaxed),
                    misses: e.stats.misses.load(Relaxed),
                    pinned: e.pinned,
                    bytes: e.body.len(),
                }
            })
            .collect();
        items.sort_by(|a, b| (a.source, &a.id).cmp(&(b.source, &b.id)));
        CacheStatus {
            enabled: self.policy.enabled,
            capacity: self.policy.capacity,
            entries: snap.entries,
            bytes: snap.bytes,
            items,
        }
    }
}

fn cancelled() -> FetchError {
    FetchError::Network("cancelled before the environment froze".into())
}

async fn wait(mut flight: Flight) -> FlightResult {
    match flight.wait_for(Option::is_some).await {
        Ok(v) => v.clone().expect("waited for Some"),
        Err(_) => Err(FetchError::Other("the fetch was abandoned".into())),
    }
}

fn secret_key(id: &str, version: &SecretVersion) -> Key {
    match version {
        SecretVersion::Current => Key::secret(id, SelectorKind::Default, ""),
        SecretVersion::Stage(s) => Key::secret(id, SelectorKind::VersionStage, s),
        SecretVersion::Id(v) => Key::secret(id, SelectorKind::VersionId, v),
    }
}

/// Groups keys into batch-API calls: current secrets by 20, parameters by 10 per decryption
/// flag; secrets pinned to a version or stage are fetched one by one (the batch API returns
/// AWSCURRENT only).
fn batches(keys: Vec<Key>) -> Vec<Vec<Key>> {
    let mut out = Vec::new();
    let (mut secrets, mut plain, mut decrypted) = (Vec::new(), Vec::new(), Vec::new());
    for k in keys {
        match (k.source, k.kind, k.decrypt) {
            (Source::SecretsManager, SelectorKind::Default, _) => secrets.push(k),
            (Source::SecretsManager, _, _) => out.push(vec![k]),
            (Source::Ssm, _, false) => plain.push(k),
            (Source::Ssm, _, true) => decrypted.push(k),
        }
    }
    out.extend(secrets.chunks(SECRETS_BATCH).map(<[Key]>::to_vec));
    out.extend(plain.chunks(PARAMETERS_BATCH).map(<[Key]>::to_vec));
    out.extend(decrypted.chunks(PARAMETERS_BATCH).map(<[Key]>::to_vec));
    out
}

#[derive(Debug, Serialize)]
pub struct CacheStatus {
    pub enabled: bool,
    pub capacity: usize,
    pub entries: usize,
    pub bytes: usize,
    pub items: Vec<EntryStatus>,
}

#[derive(Debug, Serialize)]
pub struct EntryStatus {
    pub id: String,
    pub source: &'static str,
    pub selector: Option<String>,
    pub with_decryption: bool,
    pub name: Option<String>,
    pub arn: Option<String>,
    pub version_id: Option<String>,
    pub age_seconds: u64,
    pub ttl_seconds: u64,
    pub state: &'static str,
    pub last_error: Option<String>,
    pub hits: u64,
    pub misses: u64,
    pub pinned: bool,
    pub bytes: usize,
}

#[cfg(test)]
mod tests;
