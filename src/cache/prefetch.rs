//! Prefetch: the config file's entries fetched with the batch APIs, registered as flights
//! before anything can read them (`reserve_prefetch`) and launched after (`Reserved::launch`).
//! With SnapStart the prefetch is deferred to the first activity after the restore.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use hashbrown::HashMap;

use super::Cache;
use super::background::{Background, Item};
use super::flight::{Flight, NewFlight, cancelled};
use crate::config::file::FilterItem;
use crate::config::{ParameterTarget, SecretVersion};
use crate::key::{Key, SelectorKind, Source};
use crate::metrics::Trigger;
use crate::source::{FetchError, PARAMETERS_BATCH, SECRETS_BATCH};

/// Prefetch flights registered but not started; see `Cache::reserve_prefetch`.
pub struct Reserved {
    pub(super) cache: Arc<Cache>,
    pub(super) groups: Vec<Vec<NewFlight>>,
    pub(super) waits: Vec<(Key, Flight)>,
    /// (path, withDecryption, role, required)
    pub(super) paths: Vec<(String, bool, String, bool)>,
    pub(super) filters: Vec<FilterItem>,
    pub(super) required: HashMap<Key, bool>,
}

impl Cache {
    /// The first half of a prefetch: flights for the configured items exist from now on (a
    /// read joins them and waits), but nothing is fetched until `Reserved::launch`. Extension
    /// mode reserves before it registers and launches after, so registration is never delayed
    /// and a read from the function's init can never miss the prefetch.
    pub fn reserve_prefetch(self: &Arc<Self>) -> Reserved {
        let file = &self.config.prefetch;
        let mut keys: Vec<(Key, bool)> = Vec::new();
        let mut paths = Vec::new();
        let mut filters = Vec::new();
        if self.config.enabled {
            keys.extend(
                file.secrets
                    .iter()
                    .map(|s| (secret_key(&s.id, &s.version).with_role(&s.role), s.required)),
            );
            for p in &file.parameters {
                match &p.target {
                    ParameterTarget::Name(n) => keys.push((Key::parameter(n, p.with_decryption).with_role(&p.role), p.required)),
                    ParameterTarget::Path(path) => paths.push((path.clone(), p.with_decryption, p.role.clone(), p.required)),
                }
            }
            filters = file.secret_filters.clone();
        }
        let required: HashMap<Key, bool> = keys.iter().cloned().collect();
        let mut waits = Vec::new();
        let mut groups = Vec::new();
        for group in batches(keys.into_iter().map(|(k, _)| k).collect()) {
            let (flights, new) = self.reserve(group.clone(), false);
            waits.extend(group.into_iter().zip(flights));
            groups.push(new);
        }
        Reserved {
            cache: self.clone(),
            groups,
            waits,
            paths,
            filters,
            required,
        }
    }

    /// Reserves and launches at once.
    pub fn prefetch(self: &Arc<Self>) -> Background {
        self.reserve_prefetch().launch()
    }

    /// SnapStart: nothing is fetched before the snapshot; the prefetch waits for the first
    /// activity after the restore (see `arm_restore`).
    pub fn defer_prefetch(&self) {
        self.deferred.store(true, Relaxed);
    }

    /// Init is over (the snapshot may be taken now): with a deferred prefetch, the first
    /// activity from here on (a read, an INVOKE) is the first thing after a restore. It drops
    /// whatever was fetched before the snapshot and starts the prefetch. Without one, nothing.
    pub fn arm_restore(&self) {
        if self.deferred.load(Relaxed) {
            self.restore_armed.store(true, Relaxed);
        }
    }

    /// Called on every read and on INVOKE; costs one atomic load unless armed. The prefetch's
    /// flights are registered before it returns, so the caller's own read joins them; a reader
    /// that loses the race waits on the lock, then joins them too.
    pub fn restored(self: &Arc<Self>) {
        if !self.restore_armed.load(Relaxed) {
            return;
        }
        let mut started = self.restore_prefetch.lock().expect("restore prefetch lock holds no invariants");
        if !self.restore_armed.swap(false, Relaxed) {
            return;
        }
        tracing::info!("first activity after restore: prefetching");
        self.deferred.store(false, Relaxed);
        self.clear();
        // Credentials assumed before the snapshot are in it: every restored copy assumes anew.
        self.fetch.forget_assumed_roles();
        *started = Some(self.prefetch());
    }

    /// The prefetch a restore started, for whoever must settle it before a freeze.
    pub fn take_restore_prefetch(&self) -> Option<Background> {
        self.restore_prefetch
            .lock()
            .expect("restore prefetch lock holds no invariants")
            .take()
    }
}

impl Reserved {
    /// Starts every fetch now, the batches in parallel. Paths and filters share what the
    /// named entries leave of the capacity: together they never pin more than the cache holds.
    pub fn launch(mut self) -> Background {
        let cache = self.cache.clone();
        let cancel = cache.cancel_token().child_token();
        let mut background = Background::new(cancel.clone());
        let budget = Arc::new(Budget(AtomicUsize::new(cache.config.capacity.saturating_sub(self.waits.len()))));
        for group in std::mem::take(&mut self.groups) {
            cache.launch(group, Trigger::Prefetch, cancel.clone());
        }
        let required = std::mem::take(&mut self.required);
        for (key, flight) in std::mem::take(&mut self.waits) {
            let is_required = required.get(&key).copied().unwrap_or(false);
            background.push_flight(key.to_string(), is_required, flight);
        }
        for (path, decrypt, role, required) in std::mem::take(&mut self.paths) {
            let label = format!("{path} (path){}", role_label(&role));
            let label_for_log = label.clone();
            let this = cache.clone();
            let cancel = cancel.clone();
            let budget = budget.clone();
            let seq = cache.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let task = cache.tasks.spawn(async move {
                let result = tokio::select! {
                    // Entries under a path are pinned: never more than the budget.
                    r = this.fetch.fetch_path(&path, decrypt, &role, budget.left()) => r,
                    () = cancel.cancelled() => Err(cancelled()),
                };
                let now = this.clock.now_ms();
                result.map(|items| {
                    let mut left_out = 0;
                    for item in items {
                        let Some(name) = item.name.clone() else { continue };
                        if !budget.claim() {
                            left_out += 1;
                            continue;
                        }
                        let key = Key::parameter(&name, decrypt).with_role(&role);
                        if let Some(policy) = this.path_policy(&key) {
                            this.remember_found(&key, item.arn.as_deref(), policy);
                        }
                        this.metrics.refresh(Source::Ssm, Trigger::Prefetch, true);
                        this.install(&key, item, now, seq);
                    }
                    warn_left_out(left_out, &label_for_log);
                })
            });
            background.items.push(Item {
                label,
                required,
                done: Box::pin(async move { task.await.unwrap_or_else(|join| Err(FetchError::Other(join.to_string()))) }),
            });
        }
        for item in std::mem::take(&mut self.filters) {
            background.items.push(cache.prefetch_filter(item, cancel.clone(), budget.clone()));
        }
        background
    }
}

impl Cache {
    /// Every secret `item`'s filter matches, installed by name and ARN and pinned with the
    /// entry's TTL. No match is a warning, or a failure when the entry is `required`; so is
    /// a match that cannot be loaded.
    fn prefetch_filter(self: &Arc<Self>, item: FilterItem, cancel: tokio_util::sync::CancellationToken, budget: Arc<Budget>) -> Item {
        let label = format!("{item}{}", role_label(&item.role));
        let required = item.required;
        let this = self.clone();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let what = label.clone();
        let task = self.tasks.spawn(async move {
            let answers = tokio::select! {
                // Matches are pinned: never more than the budget.
                r = this.fetch.fetch_filtered(&item.filters, &item.role, budget.left()) => r?,
                () = cancel.cancelled() => return Err(cancelled()),
            };
            if answers.is_empty() {
                tracing::warn!(filter = %crate::escape::escaped(&what), required, "the filter matched no secret");
                return if required {
                    Err(FetchError::item("NoSecretMatched", "the filter matched no secret"))
                } else {
                    Ok(())
                };
            }
            let policy = super::ItemPolicy {
                ttl: item.ttl.unwrap_or(this.config.ttl.secrets),
                pinned: true,
            };
            let now = this.clock.now_ms();
            let mut first_error = None;
            let mut left_out = 0;
            for answer in answers {
                match answer {
                    Ok(fetched) => {
                        let Some(name) = fetched.name.clone() else { continue };
                        if !budget.claim() {
                            left_out += 1;
                            continue;
                        }
                        let key = Key::secret(&name, SelectorKind::Default, "").with_role(&item.role);
                        this.remember_found(&key, fetched.arn.as_deref(), policy);
                        this.metrics.refresh(Source::SecretsManager, Trigger::Prefetch, true);
                        this.install(&key, fetched, now, seq);
                    }
                    Err(e) => {
                        this.metrics.refresh(Source::SecretsManager, Trigger::Prefetch, false);
                        first_error.get_or_insert(e);
                    }
                }
            }
            warn_left_out(left_out, &what);
            first_error.map_or(Ok(()), Err)
        });
        Item {
            label,
            required,
            done: Box::pin(async move { task.await.unwrap_or_else(|join| Err(FetchError::Other(join.to_string()))) }),
        }
    }
}

/// The entries paths and filters may still pin, shared by every listing of one prefetch.
struct Budget(AtomicUsize);

impl Budget {
    fn left(&self) -> usize {
        self.0.load(Relaxed)
    }

    /// Takes one entry's place; false once the budget is spent.
    fn claim(&self) -> bool {
        self.0.fetch_update(Relaxed, Relaxed, |left| left.checked_sub(1)).is_ok()
    }
}

fn warn_left_out(left_out: usize, what: &str) {
    if left_out > 0 {
        tracing::warn!(
            entry = %crate::escape::escaped(what),
            left_out,
            "the configured entries fill the cache: matches left out (raise PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE)"
        );
    }
}

fn role_label(role: &str) -> String {
    if role.is_empty() {
        String::new()
    } else {
        format!(" (role {role})")
    }
}

impl Drop for Reserved {
    /// Never launched (init failed first): unregister the flights so later reads fetch.
    fn drop(&mut self) {
        if self.groups.is_empty() {
            return;
        }
        for f in self.groups.drain(..).flatten() {
            self.cache.land(&f.key, f.seq);
            let _ = f.tx.send(Some(Err(cancelled())));
        }
    }
}

pub(super) fn secret_key(id: &str, version: &SecretVersion) -> Key {
    match version {
        SecretVersion::Current => Key::secret(id, SelectorKind::Default, ""),
        SecretVersion::Stage(s) => Key::secret(id, SelectorKind::VersionStage, s),
        SecretVersion::Id(v) => Key::secret(id, SelectorKind::VersionId, v),
    }
}

/// Groups keys into batch-API calls: current secrets by 20, parameters by 10 per decryption
/// flag, each group read through one role; secrets pinned to a version or stage are fetched
/// one by one (the batch API returns AWSCURRENT only).
pub(super) fn batches(keys: Vec<Key>) -> Vec<Vec<Key>> {
    let mut out = Vec::new();
    // (role, kind of group) → keys, in first-seen order.
    type Group = (Box<str>, u8);
    let mut groups: Vec<(Group, Vec<Key>)> = Vec::new();
    for k in keys {
        let group = match (k.source, k.kind, k.decrypt) {
            (Source::SecretsManager, SelectorKind::Default, _) => 0,
            (Source::SecretsManager, _, _) => {
                out.push(vec![k]);
                continue;
            }
            (Source::Ssm, _, false) => 1,
            (Source::Ssm, _, true) => 2,
        };
        let id = (k.role.clone(), group);
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, members)) => members.push(k),
            None => groups.push((id, vec![k])),
        }
    }
    for ((_, group), members) in groups {
        let size = if group == 0 { SECRETS_BATCH } else { PARAMETERS_BATCH };
        out.extend(members.chunks(size).map(<[Key]>::to_vec));
    }
    out
}
