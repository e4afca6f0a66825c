//! What an entry gets: its TTL, whether it is pinned (never evicted), and when refresh-ahead
//! picks it up. Built once from the cache's slice of the configuration; `of` is the one
//! answer to "what TTL does this entry get". Also the prefetch's named keys and listings,
//! computed here once.
//!
//! The order `of` looks in: the entry named in the config file (by the key asked for, then by
//! the answer's name or ARN); what a listing (`path`, `filter`) loaded, the first listing in
//! the file winning; a `path` the key lies under that did not load it (its TTL, not pinned);
//! the service's TTL. The TTLs themselves were resolved by `config` (a specific variable, then
//! `CACHE_EXTENSION_TTL`, then the file's `ttl`, then 300 s).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use hashbrown::HashMap;

use crate::config::file::{SecretFilter, parameter_under};
use crate::config::{ByService, CacheConfig, ParameterTarget, SecretVersion};
use crate::key::{Key, SelectorKind, Service};
use crate::upstream::Fetched;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ItemPolicy {
    pub(super) ttl: Duration,
    pub(super) pinned: bool,
}

/// A config entry that loads whatever a listing returns: its parameters under a `path`, or
/// the secrets a `filter` matches (how it runs: `listing`).
pub(super) struct Listing {
    pub(super) what: Listed,
    pub(super) role: String,
    pub(super) required: bool,
    pub(super) policy: ItemPolicy,
    /// For logs and init errors: the path or the filter, and the role.
    pub(super) label: String,
}

pub(super) enum Listed {
    Path { path: String, decrypt: bool },
    Filter(Vec<SecretFilter>),
}

pub(super) struct Policy {
    ttl: ByService<Duration>,
    refresh_ahead: f64,
    /// The prefetch's named entries in file order, each once, with whether Init needs it.
    named: Vec<(Key, bool)>,
    items: HashMap<Key, ItemPolicy>,
    listings: Vec<Listing>,
    /// What a listing loaded: the index of the first listing (in file order) that did, and its
    /// policy. Known once the prefetch has run, so a later refresh keeps the item pinned.
    found: Mutex<HashMap<Key, (usize, ItemPolicy)>>,
    jitter: RandomState,
}

impl Policy {
    pub(super) fn new(config: &CacheConfig) -> Policy {
        let file = &config.prefetch;
        let secrets = file.secrets.iter().map(|s| {
            let ttl = s.ttl.unwrap_or(config.ttl.secrets);
            (secret_key(&s.id, &s.version).with_role(&s.role), s.required, ttl)
        });
        let parameters = file.parameters.iter().filter_map(|p| match &p.target {
            ParameterTarget::Name(n) => {
                let ttl = p.ttl.unwrap_or(config.ttl.ssm);
                Some((Key::parameter(n, p.with_decryption).with_role(&p.role), p.required, ttl))
            }
            ParameterTarget::Path(_) => None,
        });
        let (mut named, mut items) = (Vec::new(), HashMap::new());
        // An item named twice takes the first entry's policy, and is fetched once.
        for (key, required, ttl) in secrets.chain(parameters) {
            if !items.contains_key(&key) {
                items.insert(key.clone(), ItemPolicy { ttl, pinned: true });
                named.push((key, required));
            } else if required && let Some(slot) = named.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = true;
            }
        }
        Policy {
            ttl: config.ttl,
            refresh_ahead: config.refresh_ahead,
            named,
            items,
            listings: listings(config),
            found: Mutex::new(HashMap::new()),
            jitter: RandomState::new(),
        }
    }

    /// The named entries the prefetch fetches, each once, with whether Init needs it.
    pub(super) fn named(&self) -> &[(Key, bool)] {
        &self.named
    }

    pub(super) fn listings(&self) -> &[Listing] {
        &self.listings
    }

    /// The policy of the entry `fetched` makes under `key` (see the module's doc for the order).
    pub(super) fn of(&self, key: &Key, fetched: &Fetched) -> ItemPolicy {
        let aliases = [fetched.name.as_deref(), fetched.arn.as_deref()];
        let named = std::iter::once(key.clone()).chain(aliases.into_iter().flatten().map(|id| key.with_id(id)));
        if let Some(p) = named.into_iter().find_map(|k| self.items.get(&k)) {
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
            ttl: *self.ttl.get(key.service),
            pinned: false,
        }
    }

    /// When, after its fetch, refresh-ahead picks up an entry of `key` with this TTL: at the
    /// configured fraction of it, jittered by ±10 % (fixed per key, random per process), so
    /// environments started together do not refresh in lock-step.
    pub(super) fn ahead_ms(&self, key: &Key, ttl_ms: u64) -> u64 {
        let jitter = (self.jitter.hash_one(key) % 2001) as f64 / 10_000.0 - 0.1;
        (ttl_ms as f64 * self.refresh_ahead * (1.0 + jitter)) as u64
    }

    /// The policy of the configured `path` that `key` lies under, if any.
    fn path_policy(&self, key: &Key) -> Option<ItemPolicy> {
        self.listings
            .iter()
            .find(|l| match &l.what {
                Listed::Path { path, decrypt } => {
                    key.service == Service::Ssm && *decrypt == key.decrypt && *l.role == *key.role && parameter_under(path, &key.id)
                }
                Listed::Filter(_) => false,
            })
            .map(|l| l.policy)
    }

    /// The listing `self.listings()[index]` loaded `key`: later installs under its name and
    /// ARN keep that listing's policy (pinned, the entry's TTL), unless a listing before it in
    /// the file loaded the item too (listings run at once; the file decides).
    pub(super) fn remember_found(&self, key: &Key, arn: Option<&str>, index: usize) {
        let policy = self.listings[index].policy;
        let mut found = self.found.lock().expect("found lock holds no invariants");
        for k in std::iter::once(key.clone()).chain(arn.map(|a| key.with_id(a))) {
            let slot = found.entry(k).or_insert((index, policy));
            if index < slot.0 {
                *slot = (index, policy);
            }
        }
    }
}

/// The listings of `config`'s file, in its order: paths, then filters.
fn listings(config: &CacheConfig) -> Vec<Listing> {
    let file = &config.prefetch;
    let paths = file.parameters.iter().filter_map(|p| match &p.target {
        ParameterTarget::Path(path) => Some(Listing {
            label: format!("{path} (path){}", role_label(&p.role)),
            what: Listed::Path {
                path: path.clone(),
                decrypt: p.with_decryption,
            },
            role: p.role.clone(),
            required: p.required,
            policy: ItemPolicy {
                ttl: p.ttl.unwrap_or(config.ttl.ssm),
                pinned: true,
            },
        }),
        ParameterTarget::Name(_) => None,
    });
    let filters = file.secret_filters.iter().map(|f| Listing {
        label: format!("{f}{}", role_label(&f.role)),
        what: Listed::Filter(f.filters.clone()),
        role: f.role.clone(),
        required: f.required,
        policy: ItemPolicy {
            ttl: f.ttl.unwrap_or(config.ttl.secrets),
            pinned: true,
        },
    });
    paths.chain(filters).collect()
}

/// The key a config entry `id` (with its version selector) is cached under.
pub(super) fn secret_key(id: &str, version: &SecretVersion) -> Key {
    match version {
        SecretVersion::Current => Key::secret(id, SelectorKind::Default, ""),
        SecretVersion::Stage(s) => Key::secret(id, SelectorKind::VersionStage, s),
        SecretVersion::Id(v) => Key::secret(id, SelectorKind::VersionId, v),
    }
}

fn role_label(role: &str) -> String {
    if role.is_empty() {
        String::new()
    } else {
        format!(" (role {role})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_started_together_refresh_apart() {
        // Each process draws its own jitter: 50 environments with the same config and the
        // same fetch time spread their refresh-ahead over the ±10 % window.
        let config = CacheConfig {
            enabled: true,
            capacity: 10,
            ttl: ByService::from_fn(|_| Duration::from_secs(300)),
            read_timeout: ByService::from_fn(|_| Duration::from_secs(3)),
            max_stale: Duration::from_secs(900),
            refresh_ahead: 0.8,
            prefetch_deadline: Duration::from_secs(6),
            prefetch: Default::default(),
        };
        let key = Key::secret("prod/db", SelectorKind::Default, "");
        let mut at: Vec<u64> = (0..50).map(|_| Policy::new(&config).ahead_ms(&key, 300_000)).collect();
        at.sort_unstable();
        assert!(at[0] >= 216_000 && at[49] <= 264_000, "{at:?}");
        assert!(at[49] - at[0] > 24_000, "spread over half the window at least: {at:?}");
        let seconds: std::collections::BTreeSet<u64> = at.iter().map(|ms| ms / 1000).collect();
        assert!(seconds.len() > 25, "not in lock-step: {} distinct seconds of 50", seconds.len());
    }
}
