//! Cache behaviour against a scripted upstream and a hand-moved clock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashMap;

use super::*;
use crate::config::file::{FilterItem, ParameterItem, SecretFilter, SecretItem};
use crate::config::{ByService, CacheConfig, ParameterTarget, PrefetchList, SecretVersion};
use crate::key::{Key, KeyRef, SelectorKind};
use crate::upstream::BoxFuture;

#[derive(Default)]
struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(SeqCst)
    }
}

impl TestClock {
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, SeqCst);
    }
}

/// An upstream whose answers the test sets, counting every call.
#[derive(Default)]
struct FakeFetch {
    /// Each value with the generation `set` gave it: its version and rank.
    values: Mutex<HashMap<String, Generation>>,
    generation: AtomicU64,
    calls: AtomicUsize,
    batches: Mutex<Vec<usize>>,
    /// The role of every call, in order.
    roles: Mutex<Vec<String>>,
    /// How many times assumed roles were dropped.
    forgotten: AtomicUsize,
    delay_ms: AtomicU64,
    /// Gates for the next single-item calls, in order.
    holds: Mutex<std::collections::VecDeque<Hold>>,
    /// Gates for the next filter listings, in order (before they read).
    filter_holds: Mutex<std::collections::VecDeque<Arc<Gate>>>,
    /// Answers carry no revision (nothing orders them but the time of their calls).
    unranked: std::sync::atomic::AtomicBool,
}

type Generation = (i64, Result<String, FetchError>);
/// Where one call stops: before it reads upstream, after it.
type Hold = (Option<Arc<Gate>>, Option<Arc<Gate>>);

/// A point a call stops at until the test opens it; the test can wait for a call to reach it.
struct Gate {
    reached: tokio::sync::Semaphore,
    open: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            reached: tokio::sync::Semaphore::new(0),
            open: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Gate {
    async fn pass(&self) {
        self.reached.add_permits(1);
        self.open.acquire().await.unwrap().forget();
    }

    async fn reached(&self) {
        self.reached.acquire().await.unwrap().forget();
    }

    fn open(&self) {
        self.open.add_permits(1);
    }
}

impl FakeFetch {
    fn set(&self, name: &str, value: Result<&str, FetchError>) {
        let generation = self.generation.fetch_add(1, SeqCst) as i64 + 1;
        self.values
            .lock()
            .unwrap()
            .insert(name.to_string(), (generation, value.map(str::to_string)));
    }

    fn answer(&self, id: &str) -> Result<Fetched, FetchError> {
        let name = id.strip_prefix("arn:").unwrap_or(id);
        match self.values.lock().unwrap().get(name) {
            Some((generation, Ok(v))) => Ok(Fetched {
                body: Bytes::from(v.clone()),
                name: Some(name.to_string()),
                arn: Some(format!("arn:{name}")),
                revision: match self.unranked.load(SeqCst) {
                    true => crate::upstream::Revision::default(),
                    false => crate::upstream::Revision {
                        version: Some(generation.to_string()),
                        rank: Some(*generation),
                    },
                },
            }),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(FetchError::item("ResourceNotFoundException", "not found")),
        }
    }

    async fn pause(&self) {
        let ms = self.delay_ms.load(SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

impl Fetch for FakeFetch {
    /// The answer is what upstream holds when the call arrives; `delay_ms` holds it back on
    /// the way to the cache (a slow network, not a slow lookup).
    fn fetch<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, SeqCst);
            self.roles.lock().unwrap().push(key.role.to_string());
            let (before, after) = self.holds.lock().unwrap().pop_front().unwrap_or_default();
            if let Some(gate) = before {
                gate.pass().await;
            }
            let answer = self.answer(&key.id);
            if let Some(gate) = after {
                gate.pass().await;
            }
            self.pause().await;
            answer
        })
    }

    fn fetch_batch<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Vec<Result<Fetched, FetchError>>> {
        Box::pin(async move {
            self.calls.fetch_add(1, SeqCst);
            self.batches.lock().unwrap().push(keys.len());
            self.roles.lock().unwrap().push(keys[0].role.to_string());
            let answers = keys.iter().map(|k| self.answer(&k.id)).collect();
            self.pause().await;
            answers
        })
    }

    fn fetch_path<'a>(
        &'a self,
        path: &'a str,
        _decrypt: bool,
        role: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Fetched>, FetchError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, SeqCst);
            self.roles.lock().unwrap().push(role.to_string());
            let names: Vec<String> = self
                .values
                .lock()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with(path))
                .cloned()
                .collect();
            Ok(names.iter().take(limit).filter_map(|n| self.answer(n).ok()).collect())
        })
    }

    fn forget_assumed_roles(&self) {
        self.forgotten.fetch_add(1, SeqCst);
    }

    /// Matches `name` filters as prefixes of the names set.
    fn fetch_filtered<'a>(
        &'a self,
        filters: &'a [SecretFilter],
        role: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Result<Fetched, FetchError>>, FetchError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, SeqCst);
            let held = self.filter_holds.lock().unwrap().pop_front();
            if let Some(gate) = held {
                gate.pass().await;
            }
            self.roles.lock().unwrap().push(role.to_string());
            let prefixes: Vec<&String> = filters.iter().filter(|f| f.key == "name").flat_map(|f| &f.values).collect();
            let mut names: Vec<String> = self
                .values
                .lock()
                .unwrap()
                .keys()
                .filter(|k| prefixes.iter().any(|p| k.starts_with(p.as_str())))
                .cloned()
                .collect();
            names.sort();
            names.truncate(limit);
            Ok(names.iter().map(|n| self.answer(n)).collect())
        })
    }
}

fn both<T: Copy>(v: T) -> ByService<T> {
    ByService { secrets: v, ssm: v }
}

fn policy() -> CacheConfig {
    CacheConfig {
        enabled: true,
        capacity: 100,
        ttl: both(Duration::from_secs(300)),
        read_timeout: both(Duration::from_secs(3)),
        max_stale: Duration::from_secs(900),
        refresh_ahead: 0.8,
        prefetch_deadline: std::time::Duration::from_secs(6),
        prefetch: PrefetchList::default(),
    }
}

fn setup(mut config: CacheConfig, file: &PrefetchList) -> (Arc<Cache>, Arc<FakeFetch>, Arc<TestClock>, Arc<Counters>) {
    let fetch = Arc::new(FakeFetch::default());
    let clock = Arc::new(TestClock(AtomicU64::new(1_700_000_000_000)));
    let counters = Arc::new(Counters::new());
    config.prefetch = file.clone();
    let cache = Cache::new(fetch.clone(), &config, counters.clone(), clock.clone());
    (cache, fetch, clock, counters)
}

fn key(id: &str) -> KeyRef<'_> {
    KeyRef::secret(id, SelectorKind::Default, "")
}

fn body(s: &Served) -> &str {
    std::str::from_utf8(&s.entry.body).unwrap()
}

fn transient() -> FetchError {
    FetchError::Service {
        status: 503,
        code: "ServiceUnavailable".into(),
        message: String::new(),
    }
}

#[tokio::test]
async fn a_miss_then_hits_from_the_snapshot() {
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    let first = cache.get(key("a"), false).await.unwrap();
    assert_eq!((first.result, body(&first)), (CacheResult::Miss, "one"));
    for _ in 0..5 {
        assert_eq!(cache.get(key("a"), false).await.unwrap().result, CacheResult::Hit);
    }
    assert_eq!(fetch.calls.load(SeqCst), 1);
    let status = cache.status();
    assert_eq!((status.items[0].hits, status.items[0].misses), (5, 1));
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_call() {
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    fetch.delay_ms.store(50, SeqCst);
    let reads: Vec<_> = (0..32)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get(key("a"), false).await.map(|s| s.result) })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap().unwrap(), CacheResult::Miss);
    }
    assert_eq!(fetch.calls.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_not_found_share_one_call_and_are_not_cached() {
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.delay_ms.store(50, SeqCst);
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get(key("missing"), false).await.err().map(|e| e.code().to_string()) })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap().as_deref(), Some("ResourceNotFoundException"));
    }
    assert_eq!(fetch.calls.load(SeqCst), 1);
    assert!(cache.get(key("missing"), false).await.is_err());
    assert_eq!(fetch.calls.load(SeqCst), 2, "errors are not cached");
}

#[tokio::test]
async fn expiry_fetches_the_new_value() {
    let (cache, fetch, clock, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    fetch.set("a", Ok("two"));
    clock.advance(Duration::from_secs(299));
    assert_eq!(body(&cache.get(key("a"), false).await.unwrap()), "one");
    clock.advance(Duration::from_secs(2));
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Miss, "two"));
}

#[tokio::test]
async fn transient_failure_serves_stale_until_max_stale() {
    let (cache, fetch, clock, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    fetch.set("a", Err(transient()));
    clock.advance(Duration::from_secs(301));
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Stale, "one"));
    assert_eq!(fetch.calls.load(SeqCst), 2);
    // Inside the back-off window the stale value is served without asking upstream again.
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!(s.result, CacheResult::Stale);
    assert_eq!(fetch.calls.load(SeqCst), 2);
    assert_eq!(cache.status().items[0].state, "failing");
    assert_eq!(cache.status().items[0].last_error.as_deref(), Some("ServiceUnavailable"));
    // Past expiry + max stale: the error is returned.
    clock.advance(Duration::from_secs(900));
    let e = cache.get(key("a"), false).await.err().unwrap();
    assert_eq!(e.code(), "ServiceUnavailable");
    // Recovery clears the failure state.
    fetch.set("a", Ok("two"));
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Miss, "two"));
    assert_eq!(cache.status().items[0].state, "fresh");
}

#[tokio::test]
async fn permanent_failure_is_returned_not_hidden() {
    let (cache, fetch, clock, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    fetch.set("a", Err(FetchError::item("AccessDeniedException", "no")));
    clock.advance(Duration::from_secs(301));
    assert_eq!(cache.get(key("a"), false).await.err().unwrap().code(), "AccessDeniedException");
}

#[tokio::test(start_paused = true)]
async fn a_hung_upstream_costs_a_reader_at_most_the_budget() {
    let mut p = policy();
    p.read_timeout = both(Duration::from_millis(200));
    let (cache, fetch, clock, _) = setup(p, &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    fetch.delay_ms.store(60_000, SeqCst);
    clock.advance(Duration::from_secs(301));
    let started = tokio::time::Instant::now();
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!(s.result, CacheResult::Stale);
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    let e = cache.get(key("b"), false).await.err().unwrap();
    assert_eq!((e.code(), e.http_status()), ("TimeoutError", 504));
}

#[tokio::test]
async fn refresh_now_bypasses_and_keeps_the_old_entry_on_failure() {
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    fetch.set("a", Ok("two"));
    let s = cache.get(key("a"), true).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Refresh, "two"));
    fetch.set("a", Err(transient()));
    assert!(cache.get(key("a"), true).await.is_err(), "refreshNow returns the error");
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Hit, "two"));
}

#[tokio::test]
async fn name_and_arn_reach_the_same_entry() {
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    assert_eq!(cache.get(key("arn:a"), false).await.unwrap().result, CacheResult::Hit);
    assert_eq!(fetch.calls.load(SeqCst), 1);
    assert_eq!(cache.status().entries, 1);
}

#[tokio::test]
async fn least_recently_read_is_evicted_but_pinned_entries_stay() {
    let mut p = policy();
    p.capacity = 2;
    let file = PrefetchList {
        secrets: vec![SecretItem {
            id: "pinned".into(),
            version: SecretVersion::Current,
            ttl: None,
            required: false,
            role: String::new(),
        }],
        ..Default::default()
    };
    let (cache, fetch, clock, counters) = setup(p, &file);
    for n in ["pinned", "a", "b", "c"] {
        fetch.set(n, Ok(n));
    }
    cache.prefetch().finish().await;
    clock.advance(Duration::from_secs(2));
    cache.get(key("a"), false).await.unwrap();
    clock.advance(Duration::from_secs(2));
    cache.get(key("b"), false).await.unwrap(); // evicts a: pinned stays
    let ids: Vec<String> = cache.status().items.into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["b", "pinned"]);
    clock.advance(Duration::from_secs(2));
    cache.get(key("c"), false).await.unwrap();
    let ids: Vec<String> = cache.status().items.into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["c", "pinned"]);
    assert_eq!(counters.status().evictions, 2);
}

#[tokio::test]
async fn ttl_zero_and_disabled_cache_pass_through() {
    let mut p = policy();
    p.ttl = both(Duration::ZERO);
    let (cache, fetch, _, _) = setup(p, &PrefetchList::default());
    fetch.set("a", Ok("one"));
    for _ in 0..3 {
        assert_eq!(cache.get(key("a"), false).await.unwrap().result, CacheResult::Miss);
    }
    assert_eq!(fetch.calls.load(SeqCst), 3);
    assert_eq!(cache.status().entries, 0);

    let mut p = policy();
    p.enabled = false;
    let (cache, fetch, _, _) = setup(p, &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    cache.get(key("a"), false).await.unwrap();
    assert_eq!(fetch.calls.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn prefetch_batches_and_early_readers_join_it() {
    let secrets: Vec<SecretItem> = (0..25)
        .map(|i| SecretItem {
            id: format!("s{i}"),
            version: SecretVersion::Current,
            ttl: None,
            required: i == 0,
            role: String::new(),
        })
        .collect();
    let parameters = vec![ParameterItem {
        target: ParameterTarget::Path("/app/".into()),
        with_decryption: true,
        ttl: Some(Duration::from_secs(60)),
        required: false,
        role: String::new(),
    }];
    let file = PrefetchList {
        secrets,
        parameters,
        ..Default::default()
    };
    let (cache, fetch, _, _) = setup(policy(), &file);
    for i in 0..25 {
        fetch.set(&format!("s{i}"), Ok("v"));
    }
    fetch.set("/app/x", Ok("p"));
    fetch.delay_ms.store(100, SeqCst);
    let prefetch = cache.prefetch();
    // A read issued before prefetch completes joins its flight: a miss, but no extra call.
    let early = cache.get(key("s7"), false).await.unwrap();
    assert_eq!(early.result, CacheResult::Miss);
    let report = prefetch.finish().await;
    assert_eq!((report.loaded, report.failed.len()), (26, 0));
    assert_eq!(*fetch.batches.lock().unwrap(), vec![20, 5]);
    assert_eq!(fetch.calls.load(SeqCst), 3, "two batches and one path");
    assert_eq!(cache.get(key("s24"), false).await.unwrap().result, CacheResult::Hit);
    let p = cache.get(KeyRef::parameter("/app/x", true), false).await.unwrap();
    assert_eq!(p.result, CacheResult::Hit);
    assert_eq!(p.entry.ttl_ms, 60_000);
    assert!(p.entry.pinned);
    // Created under the path after the prefetch: the path's TTL, but not pinned (reads cannot
    // grow what the config pins).
    fetch.set("/app/later", Ok("q"));
    let later = cache.get(KeyRef::parameter("/app/later", true), false).await.unwrap();
    assert_eq!(
        (later.result, later.entry.ttl_ms, later.entry.pinned),
        (CacheResult::Miss, 60_000, false)
    );
}

#[tokio::test]
async fn prefetch_reports_required_failures() {
    let file = PrefetchList {
        secrets: vec![SecretItem {
            id: "gone".into(),
            version: SecretVersion::Current,
            ttl: None,
            required: true,
            role: String::new(),
        }],
        ..Default::default()
    };
    let (cache, _, _, _) = setup(policy(), &file);
    let report = cache.prefetch().finish().await;
    let failures: Vec<_> = report.required_failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1.code(), "ResourceNotFoundException");
}

#[tokio::test(start_paused = true)]
async fn init_waits_for_required_entries_only() {
    let item = |id: &str, required| SecretItem {
        id: id.into(),
        version: SecretVersion::Stage("AWSPREVIOUS".into()),
        ttl: None,
        required,
        role: String::new(),
    };
    // Pinned versions are fetched one by one, so the two items are two fetches.
    let file = PrefetchList {
        secrets: vec![item("needed", true), item("later", false)],
        ..Default::default()
    };
    let (cache, fetch, _, _) = setup(policy(), &file);
    fetch.set("needed", Ok("n"));
    fetch.set("later", Ok("l"));
    fetch.delay_ms.store(100, SeqCst);
    let started = tokio::time::Instant::now();
    let mut prefetch = cache.prefetch();
    let required = prefetch.required().await;
    assert_eq!((required.loaded, required.failed.len()), (1, 0));
    assert_eq!(prefetch.len(), 1, "the optional entry is still to come");
    let whole = prefetch.finish().await;
    assert_eq!(whole.loaded, 2, "the final report counts the required entry too");
    assert_eq!(started.elapsed(), Duration::from_millis(100), "the two ran in parallel");
}

#[tokio::test]
async fn refresh_ahead_refreshes_due_entries_in_batches() {
    let (cache, fetch, clock, counters) = setup(policy(), &PrefetchList::default());
    for n in ["a", "b", "c"] {
        fetch.set(n, Ok("one"));
        cache.get(key(n), false).await.unwrap();
    }
    assert_eq!(cache.refresh_ahead().len(), 0, "nothing is due yet");
    fetch.set("a", Ok("two"));
    clock.advance(Duration::from_secs(270)); // 90 % of the TTL: past 80 % ± 10 %
    let refresh = cache.refresh_ahead();
    assert_eq!(refresh.len(), 3);
    let report = refresh.finish().await;
    assert_eq!((report.loaded, report.failed.len()), (3, 0));
    assert_eq!(*fetch.batches.lock().unwrap(), vec![3]);
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Hit, "two"));
    assert_eq!(s.entry.age_secs(clock.now_ms()), 0);
    assert!(counters.status().refreshes.iter().any(|r| r.trigger == "ahead" && r.ok == 3));
}

#[test]
fn batches_follow_api_limits() {
    let mut keys: Vec<Key> = (0..23).map(|i| Key::secret(&format!("s{i}"), SelectorKind::Default, "")).collect();
    keys.push(Key::secret("pinned", SelectorKind::VersionStage, "AWSPREVIOUS"));
    keys.extend((0..12).map(|i| Key::parameter(&format!("/p{i}"), i % 2 == 0)));
    let sizes: Vec<usize> = batches(keys).iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 20, 3, 6, 6]);
}

#[tokio::test(start_paused = true)]
async fn settle_waits_for_a_quick_refresh_and_cancels_a_slow_one() {
    let (cache, fetch, clock, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    let within = |d: Duration| tokio::time::Instant::now() + d;

    // Past the refresh-ahead point; a refresh that takes 50 ms finishes within the bound.
    clock.advance(Duration::from_secs(270)); // past 0.8 × 300 s + 10 % jitter
    fetch.set("a", Ok("two"));
    fetch.delay_ms.store(50, SeqCst);
    let report = cache.refresh_ahead().settle(within(Duration::from_secs(1))).await;
    assert_eq!((report.loaded, report.cancelled), (1, 0));
    assert_eq!(body(&cache.get(key("a"), false).await.unwrap()), "two");

    // One that would take 10 s is cancelled at the bound: the old value stays, no back-off.
    clock.advance(Duration::from_secs(270)); // past 0.8 × 300 s + 10 % jitter
    fetch.set("a", Ok("three"));
    fetch.delay_ms.store(10_000, SeqCst);
    let report = cache.refresh_ahead().settle(within(Duration::from_millis(200))).await;
    assert_eq!((report.loaded, report.cancelled), (0, 1));
    assert!(cache.tasks.is_empty(), "nothing left in flight");
    let entry = cache.get(key("a"), false).await.unwrap();
    assert_eq!((entry.result, body(&entry)), (CacheResult::Hit, "two"));
    assert!(cache.status().items[0].last_error.is_none(), "a cancel is not an upstream failure");

    // The cache still works afterwards: the next refresh is not born cancelled.
    fetch.delay_ms.store(0, SeqCst);
    let report = cache.refresh_ahead().settle(within(Duration::from_secs(1))).await;
    assert_eq!((report.loaded, report.cancelled), (1, 0));
    assert_eq!(body(&cache.get(key("a"), false).await.unwrap()), "three");
}

#[tokio::test(start_paused = true)]
async fn settling_refresh_ahead_never_cancels_a_readers_fetch() {
    // `/next` comes while the function still runs: settling the INVOKE's own work must not
    // cut a fetch the function's read is waiting on.
    let (cache, fetch, clock, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    fetch.set("b", Ok("bee"));
    cache.get(key("a"), false).await.unwrap();
    clock.advance(Duration::from_secs(270));
    fetch.delay_ms.store(1000, SeqCst);
    let c = cache.clone();
    let reader = tokio::spawn(async move { c.get(key("b"), false).await });
    tokio::task::yield_now().await;
    let refresh = cache.refresh_ahead();
    assert_eq!(refresh.len(), 1, "only a is due");
    let report = refresh.settle(tokio::time::Instant::now() + Duration::from_millis(200)).await;
    assert_eq!(report.cancelled, 1, "the slow refresh of a is cancelled");
    let read = reader.await.unwrap().expect("the reader's own fetch went on");
    assert_eq!((read.result, body(&read)), (CacheResult::Miss, "bee"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_by_name_never_rolls_back_what_a_later_fetch_by_arn_installed() {
    // Issue 14, case 3: a refresh by name whose V1 answer is delayed; meanwhile the secret is
    // rotated and a refresh by ARN installs V2 under both aliases; then V1 lands.
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("V1"));
    cache.get(key("a"), false).await.unwrap();
    fetch.delay_ms.store(2000, SeqCst);
    let c = cache.clone();
    let by_name = tokio::spawn(async move { c.get(key("a"), true).await });
    tokio::task::yield_now().await;
    fetch.delay_ms.store(0, SeqCst);
    fetch.set("a", Ok("V2"));
    let by_arn = cache.get(key("arn:a"), true).await.unwrap();
    assert_eq!(body(&by_arn), "V2");
    let late = by_name.await.unwrap().unwrap();
    assert_eq!(
        body(&late),
        "V2",
        "the older answer is not installed; its caller gets the newer entry"
    );
    for id in ["a", "arn:a"] {
        let s = cache.get(key(id), false).await.unwrap();
        assert_eq!((s.result, body(&s)), (CacheResult::Hit, "V2"), "{id}");
    }
}

#[tokio::test(start_paused = true)]
async fn refresh_now_never_joins_a_fetch_that_started_before_it() {
    // Issue 14, case 4: a miss is in flight with the old value when the secret is rotated;
    // refreshNow must fetch again, and the late old answer must not replace the new one.
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("b", Ok("old"));
    fetch.delay_ms.store(1000, SeqCst);
    let c = cache.clone();
    let miss = tokio::spawn(async move { c.get(key("b"), false).await });
    tokio::task::yield_now().await;
    fetch.delay_ms.store(0, SeqCst);
    fetch.set("b", Ok("new"));
    let refreshed = cache.get(key("b"), true).await.unwrap();
    assert_eq!((refreshed.result, body(&refreshed)), (CacheResult::Refresh, "new"));
    assert_eq!(fetch.calls.load(SeqCst), 2, "refreshNow made its own call");
    let _ = miss.await.unwrap();
    let s = cache.get(key("b"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Hit, "new"));
}

/// The next single-item call waits at a gate before it reads upstream, or after.
fn hold(fetch: &FakeFetch, before: bool) -> Arc<Gate> {
    let gate = Arc::new(Gate::default());
    let hold = if before {
        (Some(gate.clone()), None)
    } else {
        (None, Some(gate.clone()))
    };
    fetch.holds.lock().unwrap().push_back(hold);
    gate
}

fn spawn_get(cache: &Arc<Cache>, id: &'static str, refresh_now: bool) -> tokio::task::JoinHandle<Result<Served, FetchError>> {
    let c = cache.clone();
    tokio::spawn(async move { c.get(key(id), refresh_now).await })
}

/// `a` read (OLD); a refreshNow held before it reaches upstream; a second that reads OLD and
/// whose answer is held; rotate to NEW; the first reads NEW and serves it; the second's OLD
/// lands last: both readers get NEW.
async fn overlapping_refreshes(cache: &Arc<Cache>, fetch: &FakeFetch) {
    fetch.set("a", Ok("OLD"));
    cache.get(key("a"), false).await.unwrap();
    let first_held = hold(fetch, true);
    let first = spawn_get(cache, "a", true);
    first_held.reached().await;
    let second_held = hold(fetch, false);
    let second = spawn_get(cache, "a", true);
    second_held.reached().await;
    fetch.set("a", Ok("NEW"));
    first_held.open();
    assert_eq!(body(&first.await.unwrap().unwrap()), "NEW");
    second_held.open();
    assert_eq!(body(&second.await.unwrap().unwrap()), "NEW", "the late OLD answer gets NEW");
}

#[tokio::test]
async fn overlapping_fetches_are_ordered_by_what_upstream_read_not_by_when_they_started() {
    // Issue 22, item 1: a refreshNow held before it reaches upstream, a second one that reads
    // OLD at once and whose answer is held; rotate; the first reads NEW and serves it; the
    // second's OLD arrives last and must not replace NEW.
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    overlapping_refreshes(&cache, &fetch).await;
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Hit, "NEW"));
    assert!(cache.refresh_ahead().is_empty(), "ordered by version: nothing to confirm");
}

#[tokio::test]
async fn answers_nothing_orders_keep_the_value_held_and_read_the_item_again() {
    // The same interleaving with answers that carry no version or rank: the value already
    // there stays, and the next refresh-ahead reads the item once more.
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.unranked.store(true, SeqCst);
    overlapping_refreshes(&cache, &fetch).await;
    let confirm = cache.refresh_ahead();
    assert_eq!(confirm.len(), 1, "the item is read once more");
    confirm.finish().await;
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Hit, "NEW"));
    assert!(cache.refresh_ahead().is_empty(), "confirmed");
}

#[tokio::test]
async fn a_fetch_sent_after_a_value_arrived_replaces_it_even_with_an_older_version() {
    // An operator moved AWSCURRENT back: a read that starts after NEW was received and
    // returns OLD is the truth now.
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("OLD"));
    let old_generation = fetch.values.lock().unwrap()["a"].0;
    fetch.set("a", Ok("NEW"));
    assert_eq!(body(&cache.get(key("a"), false).await.unwrap()), "NEW");
    fetch.values.lock().unwrap().insert("a".into(), (old_generation, Ok("OLD".into())));
    let s = cache.get(key("a"), true).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Refresh, "OLD"));
    assert_eq!(body(&cache.get(key("a"), false).await.unwrap()), "OLD");
}

#[tokio::test]
async fn an_eviction_never_lets_an_older_answer_back_in() {
    // Issue 22, item 2: capacity 2; a read of x whose OLD answer is held; rotate; refreshNow
    // serves NEW; three other reads evict it; the held OLD answer arrives: it is not
    // installed, its reader gets NEW from one confirming read.
    let mut config = policy();
    config.capacity = 2;
    let (cache, fetch, clock, _) = setup(config, &PrefetchList::default());
    fetch.set("x", Ok("OLD"));
    let held = hold(&fetch, false);
    let late = spawn_get(&cache, "x", false);
    held.reached().await;
    fetch.set("x", Ok("NEW"));
    assert_eq!(body(&cache.get(key("x"), true).await.unwrap()), "NEW");
    for id in ["y", "z", "w"] {
        clock.advance(Duration::from_secs(1));
        fetch.set(id, Ok("other"));
        cache.get(key(id), false).await.unwrap();
    }
    assert!(cache.status().items.iter().all(|i| i.id != "x"), "x was evicted");
    let calls = fetch.calls.load(SeqCst);
    held.open();
    assert_eq!(body(&late.await.unwrap().unwrap()), "NEW", "never OLD");
    assert_eq!(fetch.calls.load(SeqCst), calls + 1, "one confirming read");
    for id in ["x", "arn:x"] {
        let s = cache.get(key(id), false).await.unwrap();
        assert_eq!((s.result, body(&s)), (CacheResult::Hit, "NEW"), "{id}");
    }
}

#[tokio::test(start_paused = true)]
async fn reads_by_name_and_by_arn_share_one_flight_once_the_aliases_are_known() {
    let (cache, fetch, clock, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    clock.advance(Duration::from_secs(301));
    fetch.delay_ms.store(100, SeqCst);
    let (c1, c2) = (cache.clone(), cache.clone());
    let by_name = tokio::spawn(async move { c1.get(key("a"), false).await });
    let by_arn = tokio::spawn(async move { c2.get(key("arn:a"), false).await });
    let (n, a) = (by_name.await.unwrap().unwrap(), by_arn.await.unwrap().unwrap());
    assert_eq!((body(&n), body(&a)), ("one", "one"));
    assert_eq!(fetch.calls.load(SeqCst), 2, "the first fetch, then one for both expired reads");
}

#[tokio::test]
async fn clear_drops_every_value() {
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    cache.clear();
    assert!(cache.status().items.is_empty());
    assert_eq!(cache.get(key("a"), false).await.unwrap().result, CacheResult::Miss);
}

#[tokio::test]
async fn a_read_between_reserve_and_launch_joins_the_prefetch() {
    let file = PrefetchList {
        secrets: vec![SecretItem {
            id: "a".into(),
            version: SecretVersion::Current,
            ttl: None,
            required: false,
            role: String::new(),
        }],
        ..Default::default()
    };
    let (cache, fetch, _, _) = setup(policy(), &file);
    fetch.set("a", Ok("one"));
    let reserved = cache.reserve_prefetch();
    let c = cache.clone();
    let early = tokio::spawn(async move { c.get(key("a"), false).await });
    tokio::task::yield_now().await;
    assert_eq!(fetch.calls.load(SeqCst), 0, "nothing fetched before launch");
    let report = reserved.launch().finish().await;
    assert_eq!(report.loaded, 1);
    assert_eq!(early.await.unwrap().unwrap().result, CacheResult::Miss);
    assert_eq!(fetch.calls.load(SeqCst), 1, "the early read joined");

    // A reservation dropped unlaunched (init failed first) leaves nothing behind.
    let (cache, fetch, _, _) = setup(policy(), &file);
    fetch.set("a", Ok("one"));
    drop(cache.reserve_prefetch());
    assert_eq!(cache.get(key("a"), false).await.unwrap().result, CacheResult::Miss);
    assert_eq!(fetch.calls.load(SeqCst), 1);
}

fn filter(prefix: &str, required: bool) -> FilterItem {
    FilterItem {
        filters: vec![SecretFilter {
            key: "name",
            values: vec![prefix.into()],
        }],
        ttl: Some(Duration::from_secs(60)),
        required,
        role: String::new(),
    }
}

#[tokio::test]
async fn a_filter_prefetches_every_match_pinned_by_name_and_arn() {
    let mut p = policy();
    p.capacity = 2;
    let file = PrefetchList {
        secret_filters: vec![filter("shop/", false)],
        ..Default::default()
    };
    let (cache, fetch, clock, _) = setup(p, &file);
    for n in ["shop/a", "shop/b", "other"] {
        fetch.set(n, Ok(n));
    }
    let report = cache.prefetch().finish().await;
    assert_eq!((report.loaded, report.failed.len()), (1, 0), "one filter, loaded");
    assert_eq!(fetch.calls.load(SeqCst), 1);
    for id in ["shop/a", "arn:shop/b"] {
        let served = cache.get(key(id), false).await.unwrap();
        assert_eq!(served.result, CacheResult::Hit, "{id}");
        assert!(served.entry.pinned);
        assert_eq!(served.entry.ttl_ms, 60_000);
    }
    // Past the TTL a refresh fetches it by name and keeps the filter entry's policy.
    clock.advance(Duration::from_secs(61));
    let refreshed = cache.get(key("shop/a"), false).await.unwrap();
    assert_eq!(refreshed.result, CacheResult::Miss);
    assert!(refreshed.entry.pinned && refreshed.entry.ttl_ms == 60_000);
    // Pinned: a third entry cannot evict them; it is evicted itself.
    cache.get(key("other"), false).await.unwrap();
    let ids: Vec<String> = cache.status().items.into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["shop/a", "shop/b"]);
}

#[tokio::test]
async fn a_filter_never_pins_more_than_the_cache_holds() {
    let mut p = policy();
    p.capacity = 2;
    let file = PrefetchList {
        secret_filters: vec![filter("shop/", false)],
        ..Default::default()
    };
    let (cache, fetch, _, _) = setup(p, &file);
    for n in ["shop/a", "shop/b", "shop/c"] {
        fetch.set(n, Ok(n));
    }
    let report = cache.prefetch().finish().await;
    assert_eq!((report.loaded, report.failed.len()), (1, 0));
    let ids: Vec<String> = cache.status().items.into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["shop/a", "shop/b"], "the capacity is the limit asked of the source");
}

#[tokio::test]
async fn an_item_two_entries_load_takes_one_place_and_the_first_entrys_ttl() {
    // Issue 22, item 10: a named secret and two filters matching it and three more, at
    // capacity 4: each secret takes one place (all four fit), the named one keeps its TTL, and
    // the others take the first filter's TTL even when the second filter lands first.
    let mut p = policy();
    p.capacity = 4;
    let (mut first, mut second) = (filter("s", false), filter("s", false));
    first.ttl = Some(Duration::from_secs(3600));
    second.ttl = Some(Duration::from_secs(60));
    let file = PrefetchList {
        secrets: vec![SecretItem {
            id: "s0".into(),
            version: SecretVersion::Current,
            ttl: Some(Duration::from_secs(7)),
            required: false,
            role: String::new(),
        }],
        secret_filters: vec![first, second],
        ..Default::default()
    };
    let (cache, fetch, _, _) = setup(p, &file);
    for n in ["s0", "s1", "s2", "s3"] {
        fetch.set(n, Ok(n));
    }
    let first_filter = Arc::new(Gate::default());
    fetch.filter_holds.lock().unwrap().push_back(first_filter.clone());
    let mut prefetch = cache.prefetch();
    first_filter.reached().await;
    // Every fetch but the first filter's has landed before it is let through.
    while cache.status().entries < 4 {
        tokio::task::yield_now().await;
    }
    first_filter.open();
    let report = std::mem::replace(&mut prefetch, cache.refresh_ahead()).finish().await;
    assert_eq!(report.failed.len(), 0);
    let status = cache.status();
    let ttls: Vec<(String, u64, bool)> = status.items.iter().map(|i| (i.id.clone(), i.ttl_seconds, i.pinned)).collect();
    assert_eq!(
        ttls,
        [
            ("s0".to_string(), 7, true),
            ("s1".to_string(), 3600, true),
            ("s2".to_string(), 3600, true),
            ("s3".to_string(), 3600, true)
        ]
    );
}

#[tokio::test]
async fn a_path_holds_whole_segments_only() {
    let file = PrefetchList {
        parameters: vec![ParameterItem {
            target: ParameterTarget::Path("/app".into()),
            with_decryption: false,
            ttl: Some(Duration::from_secs(60)),
            required: false,
            role: String::new(),
        }],
        ..Default::default()
    };
    let (cache, fetch, _, _) = setup(policy(), &file);
    for n in ["/app/x", "/application/x"] {
        fetch.set(n, Ok("v"));
    }
    let ttl = |id: &'static str| {
        let cache = cache.clone();
        async move { cache.get(KeyRef::parameter(id, false), false).await.unwrap().entry.ttl_ms }
    };
    assert_eq!(ttl("/app/x").await, 60_000);
    assert_eq!(ttl("/application/x").await, 300_000, "not under /app: the default TTL");
}

#[tokio::test]
async fn paths_and_filters_together_never_pin_more_than_the_cache_holds() {
    let mut p = policy();
    p.capacity = 4;
    let file = PrefetchList {
        secrets: vec![crate::config::file::SecretItem {
            id: "named".into(),
            version: crate::config::SecretVersion::Current,
            ttl: None,
            required: true,
            role: String::new(),
        }],
        secret_filters: vec![filter("shop/", false), filter("blog/", false)],
        ..Default::default()
    };
    let (cache, fetch, _, _) = setup(p, &file);
    for n in ["named", "shop/a", "shop/b", "blog/a", "blog/b"] {
        fetch.set(n, Ok(n));
    }
    let report = cache.prefetch().finish().await;
    assert_eq!(report.failed.len(), 0, "a full cache is a warning");
    let items = cache.status().items;
    assert_eq!(items.len(), 4, "the capacity bounds every configured entry together");
    assert!(items.iter().any(|i| i.id == "named"), "named entries come first");
    // What was left out is read like anything else: a miss, not pinned.
    let left_out = ["shop/a", "shop/b", "blog/a", "blog/b"]
        .into_iter()
        .find(|id| !items.iter().any(|i| i.id == *id))
        .unwrap();
    let served = cache.get(key(left_out), false).await.unwrap();
    assert_eq!(served.result, CacheResult::Miss);
    assert!(!served.entry.pinned);
}

#[tokio::test]
async fn a_listing_with_no_place_left_is_not_listed_and_fails_init_when_required() {
    let mut p = policy();
    p.capacity = 2;
    let named = |id: &str| crate::config::file::SecretItem {
        id: id.into(),
        version: crate::config::SecretVersion::Current,
        ttl: None,
        required: false,
        role: String::new(),
    };
    // Named entries fill the cache: the filters are not even listed.
    let file = PrefetchList {
        secrets: vec![named("named"), named("shop/a")],
        secret_filters: vec![filter("shop/", false), filter("shop/", true)],
        ..Default::default()
    };
    let (cache, fetch, _, _) = setup(p, &file);
    for n in ["named", "shop/a", "shop/b"] {
        fetch.set(n, Ok(n));
    }
    let report = cache.prefetch().finish().await;
    let failed: Vec<(&str, bool)> = report.failed.iter().map(|(_, e, required)| (e.code(), *required)).collect();
    assert_eq!(failed, [("CacheFull", true)], "the optional one is a warning");
    assert_eq!(fetch.calls.load(SeqCst), 1, "one batch for the named entries, no listing");
    assert_eq!(cache.status().items.len(), 2);
}

#[tokio::test]
async fn a_filter_matching_nothing_warns_or_fails_when_required() {
    let file = PrefetchList {
        secret_filters: vec![filter("none/", false), filter("nothing/", true)],
        ..Default::default()
    };
    let (cache, _, _, _) = setup(policy(), &file);
    let report = cache.prefetch().finish().await;
    assert_eq!(report.loaded, 1, "the optional filter is a warning, not a failure");
    let failures: Vec<_> = report.required_failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "filter name=nothing/");
    assert_eq!(failures[0].1.code(), "NoSecretMatched");
}

#[tokio::test]
async fn each_role_is_its_own_namespace() {
    let (cache, fetch, _, _) = setup(policy(), &PrefetchList::default());
    fetch.set("db", Ok("v"));
    let role = "arn:aws:iam::123456789012:role/reader";
    let other = "arn:aws:iam::210987654321:role/reader";
    for k in [key("db"), key("db").with_role(role), key("db").with_role(other)] {
        assert_eq!(cache.get(k, false).await.unwrap().result, CacheResult::Miss, "{k}");
        assert_eq!(cache.get(k, false).await.unwrap().result, CacheResult::Hit, "{k}");
    }
    // Aliases stay inside their role: the ARN through `role` is that role's entry.
    assert_eq!(
        cache.get(key("arn:db").with_role(role), false).await.unwrap().result,
        CacheResult::Hit
    );
    assert_eq!(*fetch.roles.lock().unwrap(), ["", role, other]);
    let status = cache.status();
    assert_eq!(status.entries, 3);
    let roles: Vec<Option<String>> = status.items.into_iter().map(|i| i.role).collect();
    assert!(roles.contains(&None) && roles.contains(&Some(role.to_string())) && roles.contains(&Some(other.to_string())));
}

#[test]
fn batches_never_mix_roles() {
    let role = "arn:aws:iam::123456789012:role/reader";
    let keys = vec![
        Key::secret("a", SelectorKind::Default, ""),
        Key::secret("b", SelectorKind::Default, "").with_role(role),
        Key::secret("c", SelectorKind::Default, ""),
        Key::parameter("/p", false).with_role(role),
    ];
    let groups: Vec<Vec<String>> = super::prefetch::batches(keys)
        .into_iter()
        .map(|g| g.iter().map(|k| format!("{}@{}", k.id, k.role)).collect())
        .collect();
    assert_eq!(
        groups,
        vec![
            vec!["a@".to_string(), "c@".into()],
            vec![format!("b@{role}")],
            vec![format!("/p@{role}")]
        ]
    );
}

#[tokio::test]
async fn a_throttled_refresh_backs_off_instead_of_trying_at_every_invoke() {
    let (cache, fetch, clock, _) = setup(policy(), &PrefetchList::default());
    fetch.set("a", Ok("one"));
    cache.get(key("a"), false).await.unwrap();
    clock.advance(Duration::from_secs(270));
    fetch.set("a", Err(FetchError::item("ThrottlingException", "Rate exceeded")));
    let refresh = cache.refresh_ahead();
    assert_eq!(refresh.len(), 1);
    refresh.finish().await;
    for _ in 0..5 {
        assert!(cache.refresh_ahead().is_empty(), "not again at the next invocation");
        clock.advance(Duration::from_millis(100));
    }
    clock.advance(Duration::from_millis(600));
    assert_eq!(
        cache.refresh_ahead().len(),
        1,
        "again after the back-off (0.5–1 s after one failure)"
    );
    let s = cache.get(key("a"), false).await.unwrap();
    assert_eq!((s.result, body(&s)), (CacheResult::Hit, "one"), "still fresh meanwhile");
}
