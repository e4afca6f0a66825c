//! Secrets Manager through the SDK: GetSecretValue, BatchGetSecretValue by ids and by
//! filters, and the SDK's answers into `answer::Secret`.

use std::time::Duration;

use super::{Aws, FetchError, Fetched, SECRETS_BATCH, answer};
use crate::config::file::SecretFilter;
use crate::key::{Key, SelectorKind, Service};

impl Aws {
    pub(super) async fn get_secret(&self, key: &Key) -> Result<Fetched, FetchError> {
        let clients = self.clients(&key.role).await?;
        let mut req = clients.secrets.get_secret_value().secret_id(&*key.id);
        match key.kind {
            SelectorKind::VersionId => req = req.version_id(&*key.selector),
            SelectorKind::VersionStage => req = req.version_stage(&*key.selector),
            _ => {}
        }
        self.call(Service::SecretsManager, "GetSecretValue", req.send(), |out| {
            answer::secret(key, out.into())
        })
        .await
    }

    /// Current secrets by id. BatchGetSecretValue is the scarcest quota AWS has (100 calls a
    /// second per account and Region, not adjustable; GetSecretValue has 10 000): so as many ids
    /// as upstream places are fetched one call each, at once (one round trip either way), and a
    /// throttled batch hands its ids to GetSecretValue instead of being retried.
    pub(super) async fn batch_secrets(&self, keys: &[Key]) -> Vec<Result<Fetched, FetchError>> {
        if keys.len() <= self.max_connections {
            return self.fill_missing(keys, vec![None; keys.len()]).await;
        }
        let mut results: Vec<Option<Result<Fetched, FetchError>>> = vec![None; keys.len()];
        let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
        let clients = match self.clients(&keys[0].role).await {
            Ok(c) => c,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut next_token = None;
        // Pages past the bound (an endpoint that keeps handing out tokens) are not asked for;
        // what they did not answer is fetched one by one.
        for _ in 0..super::page_bound(keys.len(), SECRETS_BATCH) {
            let out = match self.batch_page(&clients, &ids, next_token.take()).await {
                Ok(out) => out,
                // Throttled: GetSecretValue's quota has room. No permission for the batch API, or
                // an old endpoint: the same, one call each.
                Err(e) if e.is_throttling() || !e.is_transient() => break,
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
                    let failed = FetchError::item(e.error_code().unwrap_or("UnknownError"), e.message().unwrap_or(""));
                    // A throttled item is asked for again with GetSecretValue.
                    results[i] = (!failed.is_throttling()).then_some(Err(failed));
                }
            }
            next_token = out.next_token;
            if next_token.is_none() {
                break;
            }
        }
        self.fill_missing(keys, results).await
    }

    /// One page of BatchGetSecretValue by ids. The SDK does not retry it: a throttled batch is
    /// not asked again (see `batch_secrets`); other transient failures are, like any call, up to
    /// three attempts with short jittered back-offs.
    async fn batch_page(
        &self,
        clients: &super::roles::Clients,
        ids: &[String],
        next_token: Option<String>,
    ) -> Result<aws_sdk_secretsmanager::operation::batch_get_secret_value::BatchGetSecretValueOutput, FetchError> {
        let mut attempt = 0;
        loop {
            let req = clients
                .secrets
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.to_vec()))
                .set_next_token(next_token.clone())
                .customize()
                .config_override(
                    aws_sdk_secretsmanager::config::Builder::default().retry_config(aws_smithy_types::retry::RetryConfig::disabled()),
                );
            match self.call(Service::SecretsManager, "BatchGetSecretValue", req.send(), Ok).await {
                Err(e) if e.is_transient() && !e.is_throttling() && attempt < 2 => {
                    attempt += 1;
                    tokio::time::sleep(super::backoff(attempt, Duration::from_millis(50), Duration::from_millis(500))).await;
                }
                result => return result,
            }
        }
    }

    /// BatchGetSecretValue with `Filters`, 20 per page, at most `limit` results
    /// (`super::listing`). Each match is validated as an answer for its own name (shape,
    /// AWSCURRENT, sizes); errors AWS lists per secret are results too.
    pub(super) async fn secrets_by_filter(
        &self,
        filters: &[SecretFilter],
        role: &str,
        limit: usize,
    ) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let clients = self.clients(role).await?;
        let filters: Vec<Filter> = filters
            .iter()
            .map(|f| {
                Filter::builder()
                    .key(FilterNameStringType::from(f.key))
                    .set_values(Some(f.values.clone()))
                    .build()
            })
            .collect();
        super::listing("BatchGetSecretValue", limit, SECRETS_BATCH, |token| {
            let req = clients
                .secrets
                .batch_get_secret_value()
                .set_filters(Some(filters.clone()))
                .max_results(SECRETS_BATCH as i32)
                .set_next_token(token);
            self.call(Service::SecretsManager, "BatchGetSecretValue", req.send(), |page| {
                let mut items = Vec::new();
                for v in page.secret_values.unwrap_or_default() {
                    let Some(name) = v.name.clone() else {
                        items.push(Err(FetchError::Invalid("a filtered secret came without a Name".into())));
                        continue;
                    };
                    let key = Key::secret(&name, SelectorKind::Default, "").with_role(role);
                    let result = answer::secret(&key, v.into());
                    if let Err(FetchError::Invalid(why)) = &result {
                        tracing::warn!(method = "BatchGetSecretValue", why = %why, "upstream answer rejected");
                    }
                    items.push(result);
                }
                for e in page.errors.unwrap_or_default() {
                    items.push(Err(FetchError::item(
                        e.error_code().unwrap_or("UnknownError"),
                        e.message().unwrap_or(""),
                    )));
                }
                Ok((items, page.next_token))
            })
        })
        .await
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
