//! Fetches the cache runs for itself rather than for a reader: the prefetch of the config file's
//! entries and refresh-ahead. Each batch of them is a `Background` handle, so the lifecycle can
//! wait for exactly that work before the environment may freeze, and cancel exactly that work
//! when it overruns, without touching a fetch a function's read is waiting on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Cache, Flight, NewFlight, batches, wait};
use crate::config::{FileConfig, ParameterTarget};
use crate::metrics::Trigger;
use crate::key::{Key, Source};
use crate::source::FetchError;

type Done = Pin<Box<dyn Future<Output = Result<(), FetchError>> + Send>>;

struct Item {
    /// What it fetches, for logs and init errors (an id or a path; never a value).
    label: String,
    required: bool,
    done: Done,
}

/// A set of fetches started together, and the token that cancels the ones it launched.
pub struct Background {
    items: Vec<Item>,
    cancel: CancellationToken,
}

/// How a `Background` ended.
#[derive(Debug, Default)]
pub struct Report {
    pub loaded: usize,
    /// (label, error, required)
    pub failed: Vec<(String, FetchError, bool)>,
    /// Items still running at the bound, cancelled so nothing is in flight at a freeze.
    pub cancelled: usize,
}

impl Report {
    pub fn required_failures(&self) -> impl Iterator<Item = &(String, FetchError, bool)> {
        self.failed.iter().filter(|(_, _, required)| *required)
    }

    /// One line for the whole prefetch, one per failed item (ids and error codes only).
    pub fn log(&self, what: &str) {
        for (item, error, required) in &self.failed {
            tracing::warn!(item = %crate::escape::escaped(item), error = error.code(), required, "{what} failed");
        }
        tracing::info!(
            loaded = self.loaded,
            failed = self.failed.len(),
            cancelled = self.cancelled,
            "{what} finished"
        );
    }

    fn add(&mut self, label: String, required: bool, result: Result<(), FetchError>) {
        match result {
            Ok(()) => self.loaded += 1,
            Err(e) => self.failed.push((label, e, required)),
        }
    }
}

impl Background {
    pub(super) fn new(cancel: CancellationToken) -> Background {
        Background { items: Vec::new(), cancel }
    }

    pub(super) fn push_flight(&mut self, label: String, required: bool, flight: Flight) {
        self.items.push(Item {
            label,
            required,
            done: Box::pin(async move { wait(flight).await.map(drop) }),
        });
    }

    /// Items not waited for yet.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Waits for the items marked `required` (they decide whether init succeeds) and leaves
    /// the others running.
    pub async fn required(&mut self) -> Report {
        let (required, rest) = std::mem::take(&mut self.items).into_iter().partition(|i| i.required);
        self.items = rest;
        let mut report = Report::default();
        for item in required {
            let result = item.done.await;
            report.add(item.label, true, result);
        }
        report
    }

    /// Waits for everything, without a bound (standalone mode).
    pub async fn finish(self) -> Report {
        let mut report = Report::default();
        for item in self.items {
            let result = item.done.await;
            report.add(item.label, item.required, result);
        }
        report
    }

    /// Waits until `deadline` for everything, then cancels what is left (it ends at its next
    /// poll, within a moment): nothing this handle started is in flight afterwards. Fetches
    /// it merely joined (a reader's) are waited for but not cancelled.
    pub async fn settle(self, deadline: Instant) -> Report {
        let mut report = Report::default();
        let mut items = self.items.into_iter();
        for item in items.by_ref() {
            let Item { label, required, mut done } = item;
            match tokio::time::timeout_at(deadline, &mut done).await {
                Ok(result) => report.add(label, required, result),
                Err(_) => {
                    report.cancelled += 1;
                    self.cancel.cancel();
                    // A cancelled fetch answers its waiters with an error at its next poll.
                    let _ = tokio::time::timeout(Duration::from_millis(100), done).await;
                    break;
                }
            }
        }
        for item in items {
            report.cancelled += 1;
            let _ = tokio::time::timeout(Duration::from_millis(100), item.done).await;
        }
        report
    }
}

/// Prefetch flights registered but not started; see `Cache::reserve_prefetch`.
pub struct Reserved {
    pub(super) cache: Arc<Cache>,
    pub(super) groups: Vec<Vec<NewFlight>>,
    pub(super) waits: Vec<(Key, Flight)>,
    pub(super) paths: Vec<(String, bool, bool)>,
    pub(super) required: HashMap<Key, bool>,
}

impl Cache {
    /// The first half of a prefetch: flights for the configured items exist from now on (a
    /// read joins them and waits), but nothing is fetched until `Reserved::launch`. Extension
    /// mode reserves before it registers and launches after, so registration is never delayed
    /// and a read from the function's init can never miss the prefetch.
    pub fn reserve_prefetch(self: &Arc<Self>, file: &FileConfig) -> Reserved {
        let mut keys: Vec<(Key, bool)> = Vec::new();
        let mut paths = Vec::new();
        if self.policy.enabled {
            keys.extend(file.secrets.iter().map(|s| (super::secret_key(&s.id, &s.version), s.required)));
            for p in &file.parameters {
                match &p.target {
                    ParameterTarget::Name(n) => keys.push((Key::parameter(n, p.with_decryption), p.required)),
                    ParameterTarget::Path(path) => paths.push((path.clone(), p.with_decryption, p.required)),
                }
            }
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
            required,
        }
    }

    /// Reserves and launches at once.
    pub fn prefetch(self: &Arc<Self>, file: &FileConfig) -> Background {
        self.reserve_prefetch(file).launch()
    }
}

impl Reserved {
    /// Starts every fetch now, the batches in parallel.
    pub fn launch(mut self) -> Background {
        let cache = self.cache.clone();
        let cancel = cache.cancel_token().child_token();
        let mut background = Background::new(cancel.clone());
        for group in std::mem::take(&mut self.groups) {
            cache.launch(group, Trigger::Prefetch, cancel.clone());
        }
        let required = std::mem::take(&mut self.required);
        for (key, flight) in std::mem::take(&mut self.waits) {
            let is_required = required.get(&key).copied().unwrap_or(false);
            background.push_flight(key.to_string(), is_required, flight);
        }
        for (path, decrypt, required) in std::mem::take(&mut self.paths) {
            let label = format!("{path} (path)");
            let this = cache.clone();
            let cancel = cancel.clone();
            let seq = cache.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let task = cache.tasks.spawn(async move {
                let result = tokio::select! {
                    r = this.fetch.fetch_path(&path, decrypt) => r,
                    () = cancel.cancelled() => Err(super::cancelled()),
                };
                let now = this.clock.now_ms();
                result.map(|items| {
                    for item in items {
                        if let Some(name) = item.name.clone() {
                            this.metrics.refresh(Source::Ssm, Trigger::Prefetch, true);
                            this.install(&Key::parameter(&name, decrypt), item, now, seq);
                        }
                    }
                })
            });
            background.items.push(Item {
                label,
                required,
                done: Box::pin(async move { task.await.unwrap_or_else(|join| Err(FetchError::Other(join.to_string()))) }),
            });
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
            self.cache.land(&f.key, f.seq);
            let _ = f.tx.send(Some(Err(super::cancelled())));
        }
    }
}
