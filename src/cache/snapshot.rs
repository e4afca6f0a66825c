//! What readers see: an immutable map from every key (aliases included) to its entry. The one
//! writer (`Cache::install`) replaces it whole; a read loads it once, without a lock.

use std::sync::Arc;

use hashbrown::HashMap;

use super::Entry;
use crate::config::ByService;
use crate::key::Key;

/// What readers see: every key (including aliases) → its entry.
#[derive(Default)]
pub struct Snapshot {
    pub(super) map: HashMap<Key, Arc<Entry>>,
    pub(super) entries: usize,
    /// Entries by service.
    pub(super) per_service: ByService<usize>,
    pub(super) bytes: usize,
}

impl Snapshot {
    pub(super) fn new(map: HashMap<Key, Arc<Entry>>) -> Snapshot {
        let (mut per_service, mut bytes) = (ByService::<usize>::default(), 0);
        for e in unique(&map) {
            *per_service.get_mut(e.primary().service) += 1;
            bytes += e.body.len();
        }
        Snapshot {
            map,
            entries: per_service.secrets + per_service.ssm,
            per_service,
            bytes,
        }
    }
}

/// Each entry once, whatever number of aliases it has.
pub(super) fn unique(map: &HashMap<Key, Arc<Entry>>) -> impl Iterator<Item = &Arc<Entry>> {
    map.iter().filter(|(k, e)| *k == e.primary()).map(|(_, e)| e)
}
