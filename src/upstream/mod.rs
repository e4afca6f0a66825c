//! Data in: Secrets Manager and Parameter Store through the AWS SDK. Each answer is rendered
//! once into the response body the function will receive (see `render`), and every failure is
//! classified (see `error`). The cache talks to this layer only through the `Fetch` trait.

pub mod answer;
pub mod error;
mod intercept;
mod limit;
pub mod render;
mod roles;
mod secrets;
mod ssm;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::timeout::TimeoutConfig;
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

/// The real AWS services, through the AWS SDK.
pub struct Aws {
    /// The function's own credentials.
    own: Arc<roles::Clients>,
    /// Other roles, assumed on first use (`roleArn`).
    roles: roles::Roles,
    budgets: ByService<Duration>,
    /// `PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`: batches of at most this many ids go as
    /// one call each.
    max_connections: usize,
    counters: Arc<Counters>,
    spans: Spans,
}

impl Aws {
    /// Builds SDK clients from the standard AWS environment (region, credentials, and
    /// `AWS_ENDPOINT_URL` for local stand-ins), with our time budgets.
    pub async fn from_env(config: &UpstreamConfig, counters: Arc<Counters>, spans: Spans) -> Aws {
        use aws_smithy_http_client::tls;
        // Idle connections go stale across a Lambda freeze; keep them briefly and let the
        // SDK's retry handle the reset that can still happen after a thaw.
        let http = aws_smithy_http_client::Builder::new()
            .pool_idle_timeout(Duration::from_secs(15))
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http.clone())
            .load()
            .await;
        let timeouts = |budget: Duration| {
            TimeoutConfig::builder()
                .operation_timeout(budget)
                .connect_timeout(budget.min(Duration::from_secs(2)))
                .build()
        };
        // Three attempts with short back-offs: the whole call must fit a budget of ~3 s, and a
        // refused connection should surface as such, not as a time-out after long sleeps.
        let retries = aws_smithy_types::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_millis(500));
        let budgets = config.timeout;
        // One limit per service, shared by every identity's clients (one connection pool).
        let permits = config.max_connections.get();
        let (secrets_http, ssm_http) = (limit::limited(http.clone(), permits), limit::limited(http, permits));
        let sts_retries = retries.clone();
        let secrets_counters = counters.clone();
        let build = move |shared: &aws_types::SdkConfig| {
            let secrets = aws_sdk_secretsmanager::config::Builder::from(shared)
                .http_client(secrets_http.clone())
                .timeout_config(timeouts(budgets.secrets))
                .retry_config(retries.clone())
                .interceptor(intercept::CapAnswers)
                .interceptor(intercept::CountThrottles::new(Service::SecretsManager, secrets_counters.clone()))
                .build();
            let ssm = aws_sdk_ssm::config::Builder::from(shared)
                .http_client(ssm_http.clone())
                .timeout_config(timeouts(budgets.ssm))
                .retry_config(retries.clone())
                .interceptor(intercept::CapAnswers)
                .interceptor(intercept::CountThrottles::new(Service::Ssm, secrets_counters.clone()))
                .build();
            roles::Clients {
                secrets: aws_sdk_secretsmanager::Client::from_conf(secrets),
                ssm: aws_sdk_ssm::Client::from_conf(ssm),
            }
        };
        let assume_budget = config.timeout.secrets.max(config.timeout.ssm);
        // STS with the same budget and back-offs: its default ~1 s back-off would outlast the
        // read's budget, turning STS's own answer into a time-out.
        let sts = aws_sdk_sts::config::Builder::from(&shared)
            .timeout_config(timeouts(assume_budget))
            .retry_config(sts_retries);
        Aws {
            own: Arc::new(build(&shared)),
            roles: roles::Roles::new(
                shared,
                sts,
                config.session_name.clone(),
                config.max_roles,
                assume_budget,
                Box::new(build),
            ),
            budgets: config.timeout,
            max_connections: config.max_connections.get(),
            counters,
            spans,
        }
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

    /// The clients that read through `role` (empty: the function's own).
    fn clients(&self, role: &str) -> Result<Arc<roles::Clients>, FetchError> {
        if role.is_empty() {
            Ok(self.own.clone())
        } else {
            self.roles.clients(role)
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
    fn forget_assumed_roles(&self) {
        self.roles.forget();
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
