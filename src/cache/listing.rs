//! Running the config's listings (`policy::Listing`): entries that load whatever a listing
//! returns, every parameter under a `path` (GetParametersByPath) or every secret a `filter`
//! matches (BatchGetSecretValue with Filters). One prefetch item per listing; what it returns is installed by name (and ARN),
//! pinned with the entry's TTL. Together, one prefetch's listings pin at most what the named
//! entries leave of the capacity (`Budget`), each item once: an item a named entry or another
//! listing loads too takes no second place, and its policy is the named entry's, else the
//! first listing's in the file.

use std::sync::{Arc, Mutex};

use hashbrown::HashSet;

use tokio_util::sync::CancellationToken;

use super::Cache;
use tokio::time::Instant;

use super::background::{Item, while_throttled};
use super::flight::cancelled;
use super::policy::{Listed, Listing};
use crate::counters::Trigger;
use crate::key::{Key, SelectorKind, Service};
use crate::upstream::{Fetch, FetchError, Fetched};

impl Listing {
    /// At most `limit` items. A path is all or nothing (one invalid parameter fails it); a
    /// filter has a result per match.
    async fn list(&self, fetch: &dyn Fetch, limit: usize) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
        match &self.what {
            Listed::Path { path, decrypt } => Ok(fetch
                .fetch_path(path, *decrypt, &self.role, limit)
                .await?
                .into_iter()
                .map(Ok)
                .collect()),
            Listed::Filter(filters) => fetch.fetch_filtered(filters, &self.role, limit).await,
        }
    }

    fn service(&self) -> Service {
        match self.what {
            Listed::Path { .. } => Service::Ssm,
            Listed::Filter(_) => Service::SecretsManager,
        }
    }

    /// The key an item named `name` is installed under.
    fn key(&self, name: &str) -> Key {
        match self.what {
            Listed::Path { decrypt, .. } => Key::parameter(name, decrypt),
            Listed::Filter(_) => Key::secret(name, SelectorKind::Default, ""),
        }
        .with_role(&self.role)
    }
}

/// The entries listings may still pin, shared by every listing of one prefetch, and the
/// items that already have a place (named entries, and what a listing claimed).
pub(super) struct Budget(Mutex<(usize, HashSet<Key>)>);

impl Budget {
    pub(super) fn new(entries: usize, named: impl IntoIterator<Item = Key>) -> Arc<Budget> {
        Arc::new(Budget(Mutex::new((entries, named.into_iter().collect()))))
    }

    /// How many items a listing may ask for: the places left, plus the items that have one
    /// already (a listing may return them too; they cost nothing). At most the capacity.
    fn limit(&self) -> usize {
        let budget = self.0.lock().expect("budget lock holds no invariants");
        if budget.0 == 0 { 0 } else { budget.0 + budget.1.len() }
    }

    /// A place for `key`: the one it has, or a new one; false once the budget is spent.
    fn claim(&self, key: &Key) -> bool {
        let mut budget = self.0.lock().expect("budget lock holds no invariants");
        let (left, placed) = &mut *budget;
        if placed.contains(key) {
            return true;
        }
        if *left == 0 {
            return false;
        }
        *left -= 1;
        placed.insert(key.clone());
        true
    }
}

impl Cache {
    /// The prefetch item for the listing `index`. A filter that matches nothing is a
    /// warning, or a failure when the entry is `required`; so is a match that cannot be
    /// loaded, and an entry with no place left at all. Items past the budget are left out
    /// with a warning.
    pub(super) fn prefetch_listing(
        self: &Arc<Self>,
        index: usize,
        cancel: CancellationToken,
        budget: Arc<Budget>,
        deadline: Instant,
    ) -> Item {
        let listing = &self.policy.listings()[index];
        let (label, required) = (listing.label.clone(), listing.required);
        let this = self.clone();
        let task = self.tasks.spawn(async move {
            let listing = &this.policy.listings()[index];
            let limit = budget.limit();
            if limit == 0 {
                return spent(listing);
            }
            // Only the batch API lists secrets by filter: a throttled listing is waited out.
            let (answers, ticket) = while_throttled(deadline, &cancel, || async {
                let ticket = this.flights.ticket();
                tokio::select! {
                    r = listing.list(&*this.fetch, limit) => r.map(|answers| (answers, ticket)),
                    () = cancel.cancelled() => Err(cancelled()),
                }
            })
            .await?;
            let received = this.flights.tick();
            if answers.is_empty() && matches!(listing.what, Listed::Filter(_)) {
                tracing::warn!(filter = %crate::escape::escaped(&listing.label), required = listing.required, "the filter matched no secret");
                return if listing.required {
                    Err(FetchError::item("NoSecretMatched", "the filter matched no secret"))
                } else {
                    Ok(())
                };
            }
            let now = this.clock.now_ms();
            let (mut first_error, mut left_out) = (None, 0);
            for answer in answers {
                match answer {
                    Ok(fetched) => {
                        let Some(name) = fetched.name.clone() else { continue };
                        let key = listing.key(&name);
                        if !budget.claim(&key) {
                            left_out += 1;
                            continue;
                        }
                        this.policy.remember_found(&key, fetched.arn.as_deref(), index);
                        this.counters.refresh(listing.service(), Trigger::Prefetch, true);
                        // A newer value held (or evicted since) stays: the listing's is older.
                        let _ = this.install(&key, fetched, now, ticket.sent, received);
                    }
                    Err(e) => {
                        this.counters.refresh(listing.service(), Trigger::Prefetch, false);
                        first_error.get_or_insert(e);
                    }
                }
            }
            if left_out > 0 {
                tracing::warn!(
                    entry = %crate::escape::escaped(&listing.label),
                    left_out,
                    "the configured entries fill the cache: items left out (raise PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE)"
                );
            }
            first_error.map_or(Ok(()), Err)
        });
        Item {
            label,
            required,
            done: Box::pin(async move { task.await.unwrap_or_else(|join| Err(FetchError::Other(join.to_string()))) }),
        }
    }
}

/// The named entries took every place before `listing` started: it is not listed at all (a
/// warning, or `CacheFull` when it is required).
fn spent(listing: &Listing) -> Result<(), FetchError> {
    tracing::warn!(
        entry = %crate::escape::escaped(&listing.label),
        required = listing.required,
        "the named entries fill the cache: not listed (raise PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE)"
    );
    if listing.required {
        Err(FetchError::item(
            "CacheFull",
            "the configured entries fill the cache (PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE)",
        ))
    } else {
        Ok(())
    }
}
