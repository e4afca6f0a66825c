//! What `/status` shows of the cache: every entry's ids, version, age, state and counters.
//! Never a value.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::snapshot::unique;
use super::store::Store;
use crate::key::SelectorKind;

impl Store {
    /// Everything `/status` shows of the store at `now`. Never a value.
    pub(super) fn status(&self, now: u64) -> CacheStatus {
        let snap = self.load_full();
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
                    source: k.service.as_str(),
                    selector: match k.kind {
                        SelectorKind::Default => None,
                        _ => Some(k.selector.to_string()),
                    },
                    with_decryption: k.decrypt,
                    role: (!k.role.is_empty()).then(|| k.role.to_string()),
                    name: e.name.clone(),
                    arn: e.arn.clone(),
                    version_id: e.revision.version.clone(),
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
        items.sort_by(|a, b| (a.source, &a.id, &a.role).cmp(&(b.source, &b.id, &b.role)));
        CacheStatus {
            enabled: self.enabled,
            capacity: self.capacity,
            entries: snap.entries,
            bytes: snap.bytes,
            items,
        }
    }
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
    /// The IAM role it was read through (`roleArn`); absent for the function's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
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
