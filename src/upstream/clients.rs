//! The SDK clients, built once after `/register` (`Aws::connect`): from the standard AWS
//! environment (region, credentials, and `AWS_ENDPOINT_URL` for local stand-ins), with our
//! time budgets, retries, answer cap and per-service connection limit, and the trust roots
//! `roots` chose.

use std::sync::Arc;
use std::time::Duration;

use aws_smithy_http_client::tls;
use aws_smithy_types::timeout::TimeoutConfig;

use super::roots::{self, Roots};
use super::{intercept, limit, roles};
use crate::config::{Service, TrustRoots, UpstreamConfig};
use crate::counters::Counters;

pub(super) struct Built {
    /// The function's own credentials.
    pub(super) own: Arc<roles::Clients>,
    /// Other roles, assumed on first use (`roleArn`).
    pub(super) roles: roles::Roles,
    /// Whether the SDK found a Region: without one no call can be made (`MissingRegion`).
    pub(super) region: bool,
}

pub(super) async fn build(config: &UpstreamConfig, counters: &Arc<Counters>) -> Built {
    let roots = trust_roots(&config.trust).await;
    // Idle connections go stale across a Lambda freeze; keep them briefly and let the
    // SDK's retry handle the reset that can still happen after a thaw.
    let http = aws_smithy_http_client::Builder::new()
        .pool_idle_timeout(Duration::from_secs(15))
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(roots)
                .build()
                .expect("no TLS option can fail"),
        )
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
    let counters = counters.clone();
    let build = move |shared: &aws_types::SdkConfig| {
        let secrets = aws_sdk_secretsmanager::config::Builder::from(shared)
            .http_client(secrets_http.clone())
            .timeout_config(timeouts(budgets.secrets))
            .retry_config(retries.clone())
            .interceptor(intercept::CapAnswers)
            .interceptor(intercept::CountThrottles::new(Service::SecretsManager, counters.clone()))
            .build();
        let ssm = aws_sdk_ssm::config::Builder::from(shared)
            .http_client(ssm_http.clone())
            .timeout_config(timeouts(budgets.ssm))
            .retry_config(retries.clone())
            .interceptor(intercept::CapAnswers)
            .interceptor(intercept::CountThrottles::new(Service::Ssm, counters.clone()))
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
    let region = shared.region().is_some();
    if !region {
        tracing::error!("no AWS Region (AWS_REGION is unset and the profile names none): every read will fail with MissingRegion");
    }
    Built {
        region,
        own: Arc::new(build(&shared)),
        roles: roles::Roles::new(
            shared,
            sts,
            config.session_name.clone(),
            config.max_roles,
            assume_budget,
            Box::new(build),
        ),
    }
}

/// The roots `trust` names, read on a blocking thread when a file is read; logged. A file that
/// cannot be used leaves no roots: HTTPS calls fail (and say so), plain HTTP still works.
async fn trust_roots(trust: &TrustRoots) -> tls::TrustStore {
    let loaded = match trust {
        TrustRoots::Amazon => roots::load(trust),
        _ => {
            let trust = trust.clone();
            tokio::task::spawn_blocking(move || roots::load(&trust))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        }
    };
    match loaded {
        Ok(Roots {
            store,
            file,
            taken,
            rejected,
        }) => {
            match file {
                Some(file) => tracing::debug!(file = %file.display(), taken, rejected, "trust roots loaded"),
                None => tracing::debug!(roots = %trust.describe(), "trust roots"),
            }
            if rejected > 0 {
                tracing::warn!(rejected, "certificates in the CA bundle rustls cannot use were left out");
            }
            store
        }
        Err(e) => {
            tracing::error!(error = %e, "no trusted root certificates: HTTPS calls to AWS will fail");
            tls::TrustStore::empty()
        }
    }
}
