//! Prefetch: the config file's entries fetched with the batch APIs, registered as flights
//! before anything can read them (`reserve_prefetch`) and launched after (`Reserved::launch`).
//! (With SnapStart the lifecycle runs it at the first activity after the restore.)

use std::sync::Arc;

use hashbrown::HashMap;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Cache;
use super::background::{Background, Item, while_throttled};
use super::flight::{Flight, NewFlight, cancelled, wait};
use super::listing::Budget;
use crate::counters::Trigger;
use crate::key::{Key, SelectorKind, Service};
use crate::upstream::{PARAMETERS_BATCH, SECRETS_BATCH};

/// Prefetch flights registered but not started; see `Cache::reserve_prefetch`.
pub struct Reserved {
    pub(super) cache: Arc<Cache>,
    pub(super) groups: Vec<Vec<NewFlight>>,
    pub(super) waits: Vec<(Key, Flight)>,
    /// Whether the config's listings (paths, filters) run at the launch.
    pub(super) listings: bool,
    pub(super) required: HashMap<Key, bool>,
}

impl Cache {
    /// The first half of a prefetch: flights for the configured items exist from now on (a
    /// read joins them and waits), but nothing is fetched until `Reserved::launch`. Extension
    /// mode reserves before its server accepts and launches after, so a read from the
    /// function's init can never miss the prefetch.
    pub fn reserve_prefetch(self: &Arc<Self>) -> Reserved {
        let named: &[(Key, bool)] = if self.enabled { self.policy.named() } else { &[] };
        let required: HashMap<Key, bool> = named.iter().cloned().collect();
        let mut waits = Vec::new();
        let mut groups = Vec::new();
        for group in batches(named.iter().map(|(k, _)| k.clone()).collect()) {
            let (flights, new) = self.flights.reserve(group.clone(), false);
            waits.extend(group.into_iter().zip(flights));
            groups.push(new);
        }
        Reserved {
            cache: self.clone(),
            groups,
            waits,
            listings: self.enabled,
            required,
        }
    }

    /// Reserves and launches at once.
    pub fn prefetch(self: &Arc<Self>) -> Background {
        self.reserve_prefetch().launch()
    }

    /// A `required` entry: its prefetch flight, and while AWS throttles it, new flights after
    /// jittered back-offs until `deadline` (Init needs it; throttling in a fleet's burst passes).
    fn required_item(self: &Arc<Self>, key: Key, first: Flight, deadline: Instant, cancel: CancellationToken) -> Item {
        let this = self.clone();
        let label = key.to_string();
        let mut first = Some(first);
        Item {
            label,
            required: true,
            done: Box::pin(async move {
                while_throttled(deadline, &cancel.clone(), || {
                    let flight = first.take().unwrap_or_else(|| {
                        this.start(vec![key.clone()], Trigger::Prefetch, false, cancel.clone())
                            .pop()
                            .expect("one key in, one flight out")
                    });
                    async move { wait(flight).await.map(drop) }
                })
                .await
            }),
        }
    }
}

impl Reserved {
    /// Starts every fetch now, the batches in parallel. Paths and filters share what the
    /// named entries leave of the capacity: together they never pin more than the cache holds.
    pub fn launch(mut self) -> Background {
        let cache = self.cache.clone();
        let cancel = cache.cancel_token().child_token();
        let mut background = Background::new(cancel.clone());
        let named = self.waits.iter().map(|(k, _)| k.clone());
        let budget = Budget::new(cache.capacity.saturating_sub(self.waits.len()), named);
        for group in std::mem::take(&mut self.groups) {
            cache.launch(group, Trigger::Prefetch, cancel.clone());
        }
        let deadline = Instant::now() + cache.prefetch_deadline;
        let required = std::mem::take(&mut self.required);
        for (key, flight) in std::mem::take(&mut self.waits) {
            if required.get(&key).copied().unwrap_or(false) {
                background.items.push(cache.required_item(key, flight, deadline, cancel.clone()));
            } else {
                background.push_flight(key.to_string(), false, flight);
            }
        }
        if self.listings {
            for i in 0..cache.policy.listings().len() {
                background
                    .items
                    .push(cache.prefetch_listing(i, cancel.clone(), budget.clone(), deadline));
            }
        }
        background
    }
}

impl Drop for Reserved {
    /// Never launched (init failed first): unregister the flights so later reads fetch.
    fn drop(&mut self) {
        if self.groups.is_empty() {
            return;
        }
        for f in self.groups.drain(..).flatten() {
            self.cache.flights.land(&f.key, f.ticket.sent);
            let _ = f.tx.send(Some(Err(cancelled())));
        }
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
        let group = match (k.service, k.kind, k.decrypt) {
            (Service::SecretsManager, SelectorKind::Default, _) => 0,
            (Service::SecretsManager, _, _) => {
                out.push(vec![k]);
                continue;
            }
            (Service::Ssm, _, false) => 1,
            (Service::Ssm, _, true) => 2,
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
