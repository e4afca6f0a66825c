//! SnapStart (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`): a snapshot of the whole memory is
//! taken after Init and restored, maybe many times, maybe much later. So nothing is fetched
//! during Init, and the first activity after the restore (a read, an INVOKE) drops whatever
//! the function's own init read through the cache, forgets every assumed role's credentials
//! (they are in the snapshot, and every restored copy would share them), and starts the
//! prefetch. The read path reaches the gate through the HTTP server's `before_read` hook.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::cache::{Background, Cache};
use crate::config::InitType;

pub struct RestoreGate {
    cache: Arc<Cache>,
    /// Set once Init is over; the first activity after that is the first after a restore.
    armed: AtomicBool,
    /// The prefetch the restore started, for the INVOKE to settle before `/next`.
    prefetch: Mutex<Option<Background>>,
}

impl RestoreGate {
    /// A gate when `init_type` is SnapStart; none otherwise (the prefetch runs at Init).
    pub fn for_init(init_type: InitType, cache: &Arc<Cache>) -> Option<Arc<RestoreGate>> {
        (init_type == InitType::SnapStart).then(|| {
            Arc::new(RestoreGate {
                cache: cache.clone(),
                armed: AtomicBool::new(false),
                prefetch: Mutex::new(None),
            })
        })
    }

    /// Init is over: the snapshot may be taken from now on.
    pub fn arm(&self) {
        self.armed.store(true, Relaxed);
    }

    /// A read or an INVOKE. Costs one atomic load unless armed. The prefetch's flights are
    /// registered before this returns, so the caller's own read joins them; a reader that loses
    /// the race waits on the lock, then joins them too.
    pub fn activity(&self) {
        if !self.armed.load(Relaxed) {
            return;
        }
        let mut started = self.prefetch.lock().expect("restore prefetch lock holds no invariants");
        if !self.armed.swap(false, Relaxed) {
            return;
        }
        tracing::info!("first activity after restore: prefetching");
        self.cache.clear();
        self.cache.forget_assumed_roles();
        *started = Some(self.cache.prefetch());
    }

    /// The prefetch the restore started, for whoever must settle it before a freeze.
    pub fn take_prefetch(&self) -> Option<Background> {
        self.prefetch.lock().expect("restore prefetch lock holds no invariants").take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use super::*;
    use crate::cache::SystemClock;
    use crate::config::file::{PrefetchList, SecretItem};
    use crate::config::{ByService, CacheConfig, SecretVersion};
    use crate::counters::{CacheResult, Counters};
    use crate::key::{Key, KeyRef, SelectorKind};
    use crate::upstream::{BoxFuture, Fetch, FetchError, Fetched, Revision};

    const ROLE: &str = "arn:aws:iam::123456789012:role/reader";

    /// Answers every id with a value; counts calls and forgotten roles.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        forgotten: AtomicUsize,
    }

    impl Fetch for Counting {
        fn fetch<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Fetched, FetchError>> {
            self.calls.fetch_add(1, SeqCst);
            Box::pin(async move {
                Ok(Fetched {
                    body: bytes::Bytes::from_static(b"v"),
                    name: Some(key.id.to_string()),
                    arn: None,
                    revision: Revision::default(),
                })
            })
        }

        fn forget_assumed_roles(&self) {
            self.forgotten.fetch_add(1, SeqCst);
        }
    }

    fn cache(fetch: Arc<Counting>) -> Arc<Cache> {
        let d = std::time::Duration::from_secs(300);
        let config = CacheConfig {
            enabled: true,
            capacity: 10,
            ttl: ByService { secrets: d, ssm: d },
            read_timeout: ByService::from_fn(|_| std::time::Duration::from_secs(3)),
            max_stale: d,
            refresh_ahead: 0.8,
            prefetch_deadline: std::time::Duration::from_secs(6),
            prefetch: PrefetchList {
                secrets: vec![SecretItem {
                    id: "db".into(),
                    version: SecretVersion::Current,
                    ttl: None,
                    required: false,
                    role: ROLE.into(),
                }],
                ..Default::default()
            },
        };
        Cache::new(fetch, &config, Arc::new(Counters::new()), Arc::new(SystemClock))
    }

    #[tokio::test]
    async fn the_first_activity_after_the_restore_forgets_roles_and_prefetches_once() {
        let fetch = Arc::new(Counting::default());
        let cache = cache(fetch.clone());
        assert!(RestoreGate::for_init(InitType::OnDemand, &cache).is_none());
        let gate = RestoreGate::for_init(InitType::SnapStart, &cache).unwrap();
        gate.activity();
        assert_eq!(fetch.calls.load(SeqCst), 0, "nothing before Init is over");
        gate.arm();
        assert_eq!(
            (fetch.calls.load(SeqCst), fetch.forgotten.load(SeqCst)),
            (0, 0),
            "nothing before the restore"
        );
        gate.activity();
        let key = KeyRef::secret("db", SelectorKind::Default, "").with_role(ROLE);
        let first = cache.get(key, false).await.unwrap();
        assert_eq!(first.result, CacheResult::Miss, "joined the prefetch the restore started");
        gate.activity();
        assert_eq!(cache.get(key, false).await.unwrap().result, CacheResult::Hit);
        assert_eq!((fetch.calls.load(SeqCst), fetch.forgotten.load(SeqCst)), (1, 1), "once per restore");
        assert_eq!(gate.take_prefetch().unwrap().finish().await.loaded, 1);
    }
}
