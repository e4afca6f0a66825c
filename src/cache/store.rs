//! The store: the snapshot readers load without a lock, and its one writer. `install` puts an
//! answer in unless what the store holds (or held, before an eviction) is the later value
//! (`order`); eviction drops the least recently read unpinned entries and keeps what ordering
//! needs of them (their revision) for as long as a fetch sent before they arrived is open.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hashbrown::HashMap;

use super::Entry;
use super::order::{self, Held, Incoming, Later};
use super::snapshot::{Snapshot, unique};
use crate::counters::Counters;
use crate::key::Key;
use crate::upstream::Revision;

/// What `install` did with an answer.
pub(super) enum Installed {
    /// It is in the snapshot now (or passed through, with caching off).
    New(Arc<Entry>),
    /// A later value is held: that one is what the answer's readers get.
    Kept(Arc<Entry>),
    /// A later value was held and evicted since: the answer must not be served, and there is
    /// nothing to serve instead.
    Superseded,
}

/// What is left of an evicted entry: enough to order a late answer against it.
struct Evicted {
    revision: Revision,
    received: u64,
}

pub(super) struct Store {
    snapshot: ArcSwap<Snapshot>,
    /// Serialises writers (readers never take it), and holds the evicted entries' revisions.
    writer: Mutex<HashMap<Key, Evicted>>,
    /// False: pass-through, nothing is kept.
    pub(super) enabled: bool,
    pub(super) capacity: usize,
    counters: Arc<Counters>,
}

impl Store {
    pub(super) fn new(enabled: bool, capacity: usize, counters: Arc<Counters>) -> Store {
        Store {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            writer: Mutex::new(HashMap::new()),
            enabled,
            capacity,
            counters,
        }
    }

    /// What readers see now. One load per read; never held across an `.await`.
    pub(super) fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub(super) fn load_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Puts `entry` (its keys: the key it was fetched under, then its aliases) into the
    /// snapshot, unless a value held under one of its keys is later (then that one is
    /// returned), or was later and has been evicted. `sent` is when the entry's fetch was sent;
    /// `oldest_open` when the oldest fetch still open was (evicted revisions older than that
    /// are no longer needed). The item's counters carry over to the new entry.
    pub(super) fn install(&self, mut entry: Entry, sent: u64, oldest_open: Option<u64>) -> Installed {
        let mut evicted = self.writer.lock().expect("writer lock holds no invariants");
        let snap = self.snapshot.load_full();
        let incoming = Incoming {
            revision: &entry.revision,
            sent,
            body: &entry.body,
        };
        let (mut later_held, mut unknown) = (None::<&Arc<Entry>>, None::<&Arc<Entry>>);
        for held in entry.keys.iter().filter_map(|k| snap.map.get(k)) {
            let as_held = Held {
                revision: &held.revision,
                received: held.received,
                body: Some(&held.body),
            };
            match order::later(&as_held, &incoming) {
                Later::Held if later_held.is_none_or(|l| l.received < held.received) => later_held = Some(held),
                Later::Unknown => unknown = Some(held),
                _ => {}
            }
        }
        if let Some(held) = later_held {
            return Installed::Kept(held.clone());
        }
        if let Some(held) = unknown {
            held.stats.confirm.store(true, Relaxed);
            return Installed::Kept(held.clone());
        }
        let superseded = entry.keys.iter().filter_map(|k| evicted.get(k)).any(|e| {
            let as_held = Held {
                revision: &e.revision,
                received: e.received,
                body: None,
            };
            order::later(&as_held, &incoming) != Later::Incoming
        });
        if superseded {
            return Installed::Superseded;
        }

        entry.stats = entry
            .keys
            .iter()
            .find_map(|k| snap.map.get(k))
            .map_or_else(Default::default, |e| e.stats.clone());
        entry.stats.record_success();
        entry.stats.confirm.store(false, Relaxed);
        entry.stats.last_read_ms.store(entry.fetched_at_ms, Relaxed);
        let entry = Arc::new(entry);
        if !self.enabled || entry.ttl_ms == 0 {
            return Installed::New(entry);
        }
        let mut map = snap.map.clone();
        for k in &entry.keys {
            if let Some(old) = map.get(k).cloned() {
                remove(&mut map, &old, &mut evicted, &entry.keys);
            }
            evicted.remove(k);
        }
        for k in &entry.keys {
            map.insert(k.clone(), entry.clone());
        }
        self.evict(&mut map, &mut evicted);
        evicted.retain(|_, e| oldest_open.is_some_and(|open| open < e.received));
        self.publish(map);
        Installed::New(entry)
    }

    /// Drops the least recently read unpinned entries until the map fits the capacity.
    fn evict(&self, map: &mut HashMap<Key, Arc<Entry>>, evicted: &mut HashMap<Key, Evicted>) {
        let mut count = unique(map).count();
        while count > self.capacity {
            let Some(victim) = unique(map)
                .filter(|e| !e.pinned)
                .min_by_key(|e| e.stats.last_read_ms.load(Relaxed))
                .cloned()
            else {
                return; // everything left is pinned by the config file
            };
            remove(map, &victim, evicted, &[]);
            self.counters.eviction();
            count -= 1;
        }
    }

    fn publish(&self, map: HashMap<Key, Arc<Entry>>) {
        let snapshot = Snapshot::new(map);
        self.counters.cache_size(snapshot.per_service, snapshot.bytes);
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Drops every cached value (their buffers are zeroised when the last reader lets go).
    pub(super) fn clear(&self) {
        let mut evicted = self.writer.lock().expect("writer lock holds no invariants");
        evicted.clear();
        self.publish(HashMap::new());
    }
}

/// Takes `old` out of `map` under every key it holds; the keys `kept` does not cover keep its
/// revision in `evicted`, so a late answer under them is still ordered against it.
fn remove(map: &mut HashMap<Key, Arc<Entry>>, old: &Arc<Entry>, evicted: &mut HashMap<Key, Evicted>, kept: &[Key]) {
    for k in &old.keys {
        if map.get(k).is_some_and(|e| Arc::ptr_eq(e, old)) {
            map.remove(k);
            if !kept.contains(k) {
                evicted.insert(
                    k.clone(),
                    Evicted {
                        revision: old.revision.clone(),
                        received: old.received,
                    },
                );
            }
        }
    }
}
