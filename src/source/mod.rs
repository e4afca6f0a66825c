//! Data in: Secrets Manager and Parameter Store through the AWS SDK. Each answer is rendered
//! once into the response body the function will receive (see `render`), and every failure is
//! classified (see `error`). The cache talks to this layer only through the `Fetch` trait.

pub mod answer;
pub mod error;
pub mod render;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use tokio::sync::Semaphore;

pub use error::FetchError;

use crate::config::UpstreamConfig;
use crate::key::{Key, SelectorKind, Source};
use crate::metrics::Metrics;

/// One item as fetched: its rendered body and the ids it can also be found by.
#[derive(Clone)]
pub struct Fetched {
    pub body: Bytes,
    pub name: Option<String>,
    pub arn: Option<String>,
    /// Secrets Manager `VersionId`, or Parameter Store `Version`.
    pub version: Option<String>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body holds the value: never print it.
        f.debug_struct("Fetched")
            .field("name", &self.name)
            .field("arn", &self.arn)
            .field("version", &self.version)
            .field("body_len", &self.body.len())
            .finish()
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The upstream as the cache sees it. Object-safe so tests can count and fail calls.
pub trait Fetch: Send + Sync + 'static {
    /// One item (GetSecretValue / GetParameter).
    fn fetch<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Fetched, FetchError>>;

    /// Many items of one source with the batch APIs; one result per key, in order.
    fn fetch_batch<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Vec<Result<Fetched, FetchError>>>;

    /// Every parameter under `path`, recursively (GetParametersByPath).
    fn fetch_path<'a>(&'a self, path: &'a str, decrypt: bool) -> BoxFuture<'a, Result<Vec<Fetched>, FetchError>>;
}

/// Largest batches the APIs accept.
pub const SECRETS_BATCH: usize = 20;
pub const PARAMETERS_BATCH: usize = 10;

/// The real AWS services.
pub struct Upstream {
    secrets: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    /// `PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`: concurrent calls per service.
    limits: [Semaphore; 2],
    budgets: [Duration; 2],
    metrics: Arc<Metrics>,
}

impl Upstream {
    /// Builds SDK clients from the standard AWS environment (region, credentials, and
    /// `AWS_ENDPOINT_URL` for local stand-ins), with our time budgets.
    pub async fn from_env(config: &UpstreamConfig, metrics: Arc<Metrics>) -> Upstream {
        use aws_smithy_http_client::tls;
        // Idle connections go stale across a Lambda freeze; keep them briefly and let the
        // SDK's retry handle the reset that can still happen after a thaw.
        let http = aws_smithy_http_client::Builder::new()
            .pool_idle_timeout(Duration::from_secs(15))
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
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
        let secrets = aws_sdk_secretsmanager::config::Builder::from(&shared)
            .timeout_config(timeouts(config.timeout.secrets))
            .retry_config(retries.clone())
            .interceptor(CapAnswers)
            .build();
        let ssm = aws_sdk_ssm::config::Builder::from(&shared)
            .timeout_config(timeouts(config.timeout.ssm))
            .retry_config(retries)
            .interceptor(CapAnswers)
            .build();
        let permits = config.max_connections.get();
        Upstream {
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets),
            ssm: aws_sdk_ssm::Client::from_conf(ssm),
            limits: [Semaphore::new(permits), Semaphore::new(permits)],
            budgets: [config.timeout.secrets, config.timeout.ssm],
            metrics,
        }
    }

    /// Runs one SDK call under the service's concurrency limit, timed and classified; `read`
    /// turns the SDK's output into what the caller trusts (an answer it rejects makes the
    /// call a failed one, in the span and the metrics too).
    async fn call<T, R, E, F>(
        &self,
        source: Source,
        method: &'static str,
        call: F,
        read: impl FnOnce(T) -> Result<R, FetchError>,
    ) -> Result<R, FetchError>
    where
        F: Future<Output = Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        T: aws_types::request_id::RequestId,
    {
        let _permit = self.limits[source.index()].acquire().await.expect("semaphore is never closed");
        let started = Instant::now();
        let budget = self.budgets[source.index()];
        // A CLIENT span, child of whatever started this fetch (a reader's SERVER span, or the
        // invocation for refresh-ahead). A no-op when tracing is off.
        let mut span = {
            use opentelemetry::trace::{SpanKind, Tracer};
            let tracer = opentelemetry::global::tracer("lambda-secrets-cache");
            let service = match source {
                Source::SecretsManager => "SecretsManager",
                Source::Ssm => "SSM",
            };
            tracer
                .span_builder(format!("{service}/{method}"))
                .with_kind(SpanKind::Client)
                .with_attributes([
                    opentelemetry::KeyValue::new(crate::telemetry::trace::RPC_SYSTEM, "aws-api"),
                    opentelemetry::KeyValue::new(crate::telemetry::trace::RPC_SERVICE, service),
                    opentelemetry::KeyValue::new(crate::telemetry::trace::RPC_METHOD, method),
                ])
                .start(&tracer)
        };
        let result = match tokio::time::timeout(budget, call).await {
            Ok(raw) => {
                use aws_types::request_id::RequestId;
                use opentelemetry::trace::Span;
                if let Some(id) = raw.request_id() {
                    span.set_attribute(opentelemetry::KeyValue::new(
                        crate::telemetry::trace::AWS_REQUEST_ID,
                        id.to_string(),
                    ));
                }
                raw.map_err(|e| FetchError::from_sdk(e, budget.as_millis() as u64)).and_then(read)
            }
            Err(_) => Err(FetchError::Timeout(budget.as_millis() as u64)),
        };
        {
            use opentelemetry::trace::{Span, Status};
            if let Err(e) = &result {
                span.set_attribute(opentelemetry::KeyValue::new(
                    crate::telemetry::trace::ERROR_TYPE,
                    e.code().to_string(),
                ));
                span.set_status(Status::error(e.code().to_string()));
            }
            span.end();
        }
        self.metrics
            .upstream_call(source, method, result.as_ref().err().map(FetchError::code), started.elapsed());
        if let Err(e) = &result {
            tracing::debug!(source = source.as_str(), method, error = %e.code(), "upstream call failed");
            if let FetchError::Invalid(why) = e {
                tracing::warn!(source = source.as_str(), method, why = %why, "upstream answer rejected");
            }
        }
        result
    }

    async fn get_secret(&self, key: &Key) -> Result<Fetched, FetchError> {
        let mut req = self.secrets.get_secret_value().secret_id(&*key.id);
        match key.kind {
            SelectorKind::VersionId => req = req.version_id(&*key.selector),
            SelectorKind::VersionStage => req = req.version_stage(&*key.selector),
            _ => {}
        }
        self.call(Source::SecretsManager, "GetSecretValue", req.send(), |out| {
            answer::secret(key, out.into())
        })
        .await
    }

    async fn batch_secrets(&self, keys: &[Key]) -> Vec<Result<Fetched, FetchError>> {
        let mut results: Vec<Option<Result<Fetched, FetchError>>> = vec![None; keys.len()];
        let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
        let mut next_token = None;
        loop {
            let req = self
                .secrets
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.clone()))
                .set_next_token(next_token.take());
            let out = match self.call(Source::SecretsManager, "BatchGetSecretValue", req.send(), Ok).await {
                Ok(out) => out,
                // No permission for the batch API, or an old endpoint: fall back to one call each.
                Err(e) if !e.is_transient() => break,
                Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
            };
            for v in out.secret_values.unwrap_or_default() {
                let matched = keys
                    .iter()
                    .position(|k| answer::secret_matches(&k.id, v.name.as_deref(), v.arn.as_deref()));
                let Some(i) = matched else {
                    continue;
                };
                let result = answer::secret(&keys[i], v.into());
                if let Err(FetchError::Invalid(why)) = &result {
                    tracing::warn!(method = "BatchGetSecretValue", why = %why, "upstream answer rejected");
                }
                results[i] = Some(result);
            }
            for e in out.errors.unwrap_or_default() {
                if let Some(i) = keys.iter().position(|k| Some(&*k.id) == e.secret_id()) {
                    results[i] = Some(Err(FetchError::item(
                        e.error_code().unwrap_or("UnknownError"),
                        e.message().unwrap_or(""),
                    )));
                }
            }
            next_token = out.next_token;
            if next_token.is_none() {
                break;
            }
        }
        self.fill_missing(keys, results).await
    }

    async fn get_parameter(&self, key: &Key) -> Result<Fetched, FetchError> {
        let req = self.ssm.get_parameter().name(key.ssm_name()).with_decryption(key.decrypt);
        self.call(Source::Ssm, "GetParameter", req.send(), |out| {
            let mut p = out
                .parameter
                .ok_or_else(|| FetchError::Invalid("GetParameter answered without a parameter".into()))?;
            // AWS echoes the selector (`:3`, `:label`); some stand-ins (moto) do not. Keep the shape.
            if p.selector.as_deref().is_none_or(str::is_empty) && matches!(key.kind, SelectorKind::Version | SelectorKind::Label) {
                p.selector = Some(format!(":{}", key.selector));
            }
            answer::parameter(answer::Wanted::Key(key), p)
        })
        .await
    }

    async fn batch_parameters(&self, keys: &[Key]) -> Vec<Result<Fetched, FetchError>> {
        let mut results: Vec<Option<Result<Fetched, FetchError>>> = vec![None; keys.len()];
        // GetParameters takes one withDecryption flag: one call per flag.
        for decrypt in [false, true] {
            let group: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].decrypt == decrypt).collect();
            if group.is_empty() {
                continue;
            }
            let names: Vec<String> = group.iter().map(|&i| keys[i].ssm_name()).collect();
            let req = self.ssm.get_parameters().set_names(Some(names.clone())).with_decryption(decrypt);
            let out = match self.call(Source::Ssm, "GetParameters", req.send(), Ok).await {
                Ok(out) => out,
                Err(e) if !e.is_transient() => continue,
                Err(e) => {
                    for &i in &group {
                        results[i] = Some(Err(e.clone()));
                    }
                    continue;
                }
            };
            for p in out.parameters.unwrap_or_default() {
                let full = format!("{}{}", p.name().unwrap_or(""), p.selector().unwrap_or(""));
                let arn = p.arn().map(|a| format!("{a}{}", p.selector().unwrap_or("")));
                if let Some(&i) = group
                    .iter()
                    .zip(&names)
                    .find(|(_, n)| **n == full || Some(n.as_str()) == arn.as_deref())
                    .map(|(i, _)| i)
                {
                    let result = answer::parameter(answer::Wanted::Key(&keys[i]), p);
                    if let Err(FetchError::Invalid(why)) = &result {
                        tracing::warn!(method = "GetParameters", why = %why, "upstream answer rejected");
                    }
                    results[i] = Some(result);
                }
            }
            for invalid in out.invalid_parameters.unwrap_or_default() {
                if let Some(&i) = group.iter().zip(&names).find(|(_, n)| **n == invalid).map(|(i, _)| i) {
                    results[i] = Some(Err(FetchError::item(
                        "ParameterNotFound",
                        &format!("parameter {invalid} not found"),
                    )));
                }
            }
        }
        self.fill_missing(keys, results).await
    }

    /// Items a batch answer did not account for are fetched one by one.
    async fn fill_missing(&self, keys: &[Key], results: Vec<Option<Result<Fetched, FetchError>>>) -> Vec<Result<Fetched, FetchError>> {
        let mut out = Vec::with_capacity(keys.len());
        for (key, result) in keys.iter().zip(results) {
            out.push(match result {
                Some(r) => r,
                None => self.fetch_one(key).await,
            });
        }
        out
    }

    async fn fetch_one(&self, key: &Key) -> Result<Fetched, FetchError> {
        match key.source {
            Source::SecretsManager => self.get_secret(key).await,
            Source::Ssm => self.get_parameter(key).await,
        }
    }

    async fn parameters_by_path(&self, path: &str, decrypt: bool) -> Result<Vec<Fetched>, FetchError> {
        let mut out = Vec::new();
        let mut next_token = None;
        loop {
            let req = self
                .ssm
                .get_parameters_by_path()
                .path(path)
                .recursive(true)
                .with_decryption(decrypt)
                .set_next_token(next_token.take());
            // One parameter that is not a valid answer under the path fails the whole path:
            // nothing from it is installed.
            let (items, next) = self
                .call(Source::Ssm, "GetParametersByPath", req.send(), |page| {
                    let items = page
                        .parameters
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| answer::parameter(answer::Wanted::Under(path), p))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((items, page.next_token))
                })
                .await?;
            out.extend(items);
            next_token = next;
            if next_token.is_none() {
                return Ok(out);
            }
        }
    }
}

impl Fetch for Upstream {
    fn fetch<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(self.fetch_one(key))
    }

    fn fetch_batch<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Vec<Result<Fetched, FetchError>>> {
        Box::pin(async move {
            match keys {
                [] => Vec::new(),
                [one] => vec![self.fetch_one(one).await],
                [first, ..] => match first.source {
                    Source::SecretsManager => self.batch_secrets(keys).await,
                    Source::Ssm => self.batch_parameters(keys).await,
                },
            }
        })
    }

    fn fetch_path<'a>(&'a self, path: &'a str, decrypt: bool) -> BoxFuture<'a, Result<Vec<Fetched>, FetchError>> {
        Box::pin(self.parameters_by_path(path, decrypt))
    }
}

impl From<aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput> for answer::Secret {
    fn from(out: aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput) -> Self {
        answer::Secret {
            arn: out.arn,
            name: out.name,
            version_id: out.version_id,
            secret_string: out.secret_string,
            secret_binary: out.secret_binary,
            version_stages: out.version_stages,
            created_date: out.created_date,
        }
    }
}

impl From<aws_sdk_secretsmanager::types::SecretValueEntry> for answer::Secret {
    fn from(v: aws_sdk_secretsmanager::types::SecretValueEntry) -> Self {
        answer::Secret {
            arn: v.arn,
            name: v.name,
            version_id: v.version_id,
            secret_string: v.secret_string,
            secret_binary: v.secret_binary,
            version_stages: v.version_stages,
            created_date: v.created_date,
        }
    }
}

/// Caps every answer's body at `answer::MAX_ANSWER` before the SDK reads it into memory: an
/// endpoint that streams megabytes costs one rejected call, not the function's memory.
#[derive(Debug)]
struct CapAnswers;

impl aws_smithy_runtime_api::client::interceptors::Intercept for CapAnswers {
    fn name(&self) -> &'static str {
        "CapAnswers"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let body = context.response_mut().body_mut();
        let taken = std::mem::replace(body, aws_smithy_types::body::SdkBody::taken());
        *body = aws_smithy_types::body::SdkBody::from_body_1_x(http_body_util::Limited::new(taken, answer::MAX_ANSWER));
        Ok(())
    }
}
