//! Data in: Secrets Manager and Parameter Store through the AWS SDK. Each answer is rendered
//! once into the response body the function will receive (see `render`), and every failure is
//! classified (see `error`). The cache talks to this layer only through the `Fetch` trait.

pub mod answer;
mod clients;
pub mod error;
mod intercept;
mod limit;
pub mod render;
mod roles;
pub mod roots;
mod secrets;
mod ssm;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bytes::Bytes;

pub use error::FetchError;

use crate::config::file::SecretFilter;
use crate::config::{ByService, UpstreamConfig};
use crate::counters::Counters;
use crate::key::{Key, Service};
use crate::telemetry::trace::Spans;

/// One item as fetched: its rendered body, the ids it can also be found by, and which value
/// of the item it is.
#[derive(Clone)]
pub struct Fetched {
    pub body: Bytes,
    pub name: Option<String>,
    pub arn: Option<String>,
    pub revision: Revision,
}

/// Which value of an item an answer carries, as far as upstream says: what the cache needs to
/// order two answers whose calls overlapped (see `cache::order`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revision {
    /// Names one value for good: a Secrets Manager `VersionId` (versions are immutable), a
    /// Parameter Store `Version`. Equal versions, equal values.
    pub version: Option<String>,
    /// Orders values: a later value has a higher rank. Parameter Store's `Version` (it only
    /// grows); a secret version's `CreatedDate` in milliseconds (a rotation creates a newer
    /// one; only an operator moving `AWSCURRENT` back breaks that order).
    pub rank: Option<i64>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body holds the value: never print it.
        f.debug_struct("Fetched")
            .field("name", &self.name)
            .field("arn", &self.arn)
            .field("revision", &self.revision)
            .field("body_len", &self.body.len())
            .finish()
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The upstream as the cache sees it. Object-safe so tests can count and fail calls; a fake
/// needs only `fetch` (the batch falls back to one call per item, listings are unsupported).
pub trait Fetch: Send + Sync + 'static {
    /// One item (GetSecretValue / GetParameter).
    fn fetch<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Fetched, FetchError>>;

    /// Many items of one service with the batch APIs; one result per key, in order.
    fn fetch_batch<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Vec<Result<Fetched, FetchError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.fetch(key).await);
            }
            out
        })
    }

    /// The parameters under `path`, recursively (GetParametersByPath), through `role`
    /// (empty: the function's own), at most `limit` of them.
    fn fetch_path<'a>(
        &'a self,
        path: &'a str,
        decrypt: bool,
        role: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Fetched>, FetchError>> {
        let _ = (path, decrypt, role, limit);
        Box::pin(async { Err(FetchError::Other("listing parameters by path is not supported here".into())) })
    }

    /// Drops the credentials of every assumed role (SnapStart restore: they were in the
    /// snapshot). The next read through a role assumes it again.
    fn forget_assumed_roles(&self) {}

    /// Resolves once calls can be made (the real one builds its clients after `/register`).
    /// A reader waits for it before its own time budget starts: the order of start-up must
    /// not turn a read into a time-out. Bounded by `READY_WAIT`.
    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// The secrets `filters` match (BatchGetSecretValue with Filters, every page), through
    /// `role`, at most `limit` of them: one result per match. The outer error is a failed
    /// call; nothing from it counts.
    fn fetch_filtered<'a>(
        &'a self,
        filters: &'a [SecretFilter],
        role: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Result<Fetched, FetchError>>, FetchError>> {
        let _ = (filters, role, limit);
        Box::pin(async { Err(FetchError::Other("listing secrets by filter is not supported here".into())) })
    }
}

/// How many pages a listing (a parameter path, a secrets filter, a batch by ids) may take
/// for `limit` items at `per_page`: AWS may answer short pages with a token, so four times
/// what a full listing needs, plus one; an endpoint that keeps handing out tokens is not
/// called forever.
fn page_bound(limit: usize, per_page: usize) -> usize {
    limit.div_ceil(per_page) * 4 + 1
}

/// A listing read `page` by page (each call gets the previous page's token): until there are
/// no more pages, `limit` items are in hand, or `page_bound` pages were read. Cut to `limit`,
/// with a warning when it was cut; a page that fails fails the listing.
async fn listing<T, P>(
    what: &'static str,
    limit: usize,
    per_page: usize,
    mut page: impl FnMut(Option<String>) -> P,
) -> Result<Vec<T>, FetchError>
where
    P: Future<Output = Result<(Vec<T>, Option<String>), FetchError>>,
{
    let mut out = Vec::new();
    let mut next_token = None;
    for _ in 0..page_bound(limit, per_page) {
        let (items, next) = page(next_token.take()).await?;
        out.extend(items);
        next_token = next;
        if next_token.is_none() {
            return Ok(out);
        }
        if out.len() >= limit {
            break;
        }
    }
    out.truncate(limit);
    tracing::warn!(
        listing = what,
        items = out.len(),
        limit,
        "the listing has more than the cache holds (or its pages did not end); kept what fits"
    );
    Ok(out)
}

/// A full-jitter exponential back-off: a random time up to `base × 2^attempt`, at most `cap`,
/// so environments throttled together do not come back together.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling = base.saturating_mul(1 << attempt.min(16)).min(cap);
    // RandomState is seeded per instance: a fresh one is a fresh random number.
    let r = std::collections::hash_map::RandomState::new().build_hasher().finish();
    ceiling.mul_f64((r % 10_001) as f64 / 10_000.0)
}

/// Largest batches the APIs accept.
pub const SECRETS_BATCH: usize = 20;
pub const PARAMETERS_BATCH: usize = 10;

/// The longest a read or a fetch waits for the AWS clients to be built (`Fetch::ready`),
/// apart from its own budget. They take milliseconds; a bundle file that never comes (a FIFO,
/// a hung network file system) is the case this bounds.
pub const READY_WAIT: Duration = Duration::from_secs(5);

/// The real AWS services, through the AWS SDK.
pub struct Aws {
    config: UpstreamConfig,
    /// The SDK clients, built by `connect`.
    built: tokio::sync::OnceCell<clients::Built>,
    budgets: ByService<Duration>,
    /// `PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`: batches of at most this many ids go as
    /// one call each.
    max_connections: usize,
    counters: Arc<Counters>,
    spans: Spans,
}

impl Aws {
    /// Nothing is read or built yet: `connect` does that, after `/register`.
    pub fn new(config: &UpstreamConfig, counters: Arc<Counters>, spans: Spans) -> Aws {
        Aws {
            config: config.clone(),
            built: tokio::sync::OnceCell::new(),
            budgets: config.timeout,
            max_connections: config.max_connections.get(),
            counters,
            spans,
        }
    }

    /// Builds the SDK clients (the trust roots, the shared AWS configuration), once: the first
    /// caller does the work, the others wait for it. `app` calls it right after registering,
    /// so it overlaps the runtime's start; a fetch that comes first waits for it.
    pub async fn connect(&self) {
        self.built().await;
    }

    async fn built(&self) -> &clients::Built {
        self.built.get_or_init(|| clients::build(&self.config, &self.counters)).await
    }

    /// Runs one SDK call, timed and classified (the service's concurrency limit is in its HTTP
    /// client: `limit`); `read` turns the SDK's output into what the caller trusts (an answer
    /// it rejects makes the call a failed one, in the span and the metrics too).
    async fn call<T, R, E, F>(
        &self,
        service: Service,
        method: &'static str,
        call: F,
        read: impl FnOnce(T) -> Result<R, FetchError>,
    ) -> Result<R, FetchError>
    where
        F: Future<Output = Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        T: aws_types::request_id::RequestId,
    {
        let started = Instant::now();
        let budget = *self.budgets.get(service);
        // A CLIENT span, child of whatever started this fetch (a reader's SERVER span, or the
        // invocation for refresh-ahead).
        let span = self.spans.call(
            match service {
                Service::SecretsManager => "SecretsManager",
                Service::Ssm => "SSM",
            },
            method,
        );
        let (result, request_id) = match tokio::time::timeout(budget, call).await {
            Ok(raw) => {
                use aws_types::request_id::RequestId;
                let request_id = raw.request_id().map(str::to_string);
                let result = raw.map_err(|e| FetchError::from_sdk(e, budget.as_millis() as u64)).and_then(read);
                (result, request_id)
            }
            Err(_) => (Err(FetchError::Timeout(budget.as_millis() as u64)), None),
        };
        span.end(request_id.as_deref(), result.as_ref().err().map(FetchError::code));
        self.counters
            .upstream_call(service, method, result.as_ref().err().map(FetchError::code), started.elapsed());
        if let Err(e) = &result {
            tracing::debug!(service = service.as_str(), method, error = %e.code(), "upstream call failed");
            if let FetchError::Invalid(why) = e {
                tracing::warn!(service = service.as_str(), method, why = %why, "upstream answer rejected");
            }
        }
        result
    }

    /// The clients that read through `role` (empty: the function's own), once built (at most
    /// `READY_WAIT`, apart from the call's own budget).
    async fn clients(&self, role: &str) -> Result<Arc<roles::Clients>, FetchError> {
        let built = tokio::time::timeout(READY_WAIT, self.built())
            .await
            .map_err(|_| FetchError::Timeout(READY_WAIT.as_millis() as u64))?;
        if !built.region {
            return Err(FetchError::NoRegion);
        }
        if role.is_empty() {
            Ok(built.own.clone())
        } else {
            built.roles.clients(role)
        }
    }

    /// Items a batch answer did not account for are fetched one call each, at once (the
    /// service's connection limit bounds how many are on the wire).
    async fn fill_missing(&self, keys: &[Key], results: Vec<Option<Result<Fetched, FetchError>>>) -> Vec<Result<Fetched, FetchError>> {
        let missing = keys
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(k, _)| self.fetch_one(k));
        let mut fetched = futures_util::future::join_all(missing).await.into_iter();
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| fetched.next().expect("one answer per missing item")))
            .collect()
    }

    async fn fetch_one(&self, key: &Key) -> Result<Fetched, FetchError> {
        match key.service {
            Service::SecretsManager => self.get_secret(key).await,
            Service::Ssm => self.get_parameter(key).await,
        }
    }
}

impl Fetch for Aws {
    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.built.get().is_none() {
                let _ = tokio::time::timeout(READY_WAIT, self.built()).await;
            }
        })
    }

    fn forget_assumed_roles(&self) {
        if let Some(built) = self.built.get() {
            built.roles.forget();
        }
    }

    fn fetch<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(self.fetch_one(key))
    }

    fn fetch_batch<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Vec<Result<Fetched, FetchError>>> {
        Box::pin(async move {
            match keys {
                [] => Vec::new(),
                [one] => vec![self.fetch_one(one).await],
                // One batch call reads through one role; `cache::batches` groups them so.
                [first, ..] if keys.iter().any(|k| k.role != first.role) => {
                    let mut out = Vec::with_capacity(keys.len());
                    for k in keys {
                        out.push(self.fetch_one(k).await);
                    }
                    out
                }
                [first, ..] => match first.service {
                    Service::SecretsManager => self.batch_secrets(keys).await,
                    Service::Ssm => self.batch_parameters(keys).await,
                },
            }
        })
    }

    fn fetch_path<'a>(
        &'a self,
        path: &'a str,
        decrypt: bool,
        role: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Fetched>, FetchError>> {
        Box::pin(self.parameters_by_path(path, decrypt, role, limit))
    }

    fn fetch_filtered<'a>(
        &'a self,
        filters: &'a [SecretFilter],
        role: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Result<Fetched, FetchError>>, FetchError>> {
        Box::pin(self.secrets_by_filter(filters, role, limit))
    }
}
