//! What readers see: an immutable map from every key (aliases included) to its entry. The one
//! writer (`Cache::install`) replaces it whole; a read loads it once, without a lock.

use std::sync::Arc;

use hashbrown::HashMap;

use super::Entry;
use crate::key::Key;

/// What readers see: every key (including aliases) → its entry.
#[derive(Default)]
pub struct Snapshot {
    pub(super) map: HashMap<Key, Arc<Entry>>,
    pub(super) entries: usize,
    /// Entries by source (`Source::index`).
    pub(super) per_source: [usize; 2],
    pub(super) bytes: usize,
}

impl Snapshot {
    pub(super) fn new(map: HashMap<Key, Arc<Entry>>) -> Snapshot {
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
pub(super) fn unique(map: &HashMap<Key, Arc<Entry>>) -> impl Iterator<Item = &Arc<Entry>> {
    map.iter().filter(|(k, e)| *k == e.primary()).map(|(_, e)| e)
}
