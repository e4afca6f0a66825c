//! Reading through another IAM role (`roleArn`): per role, SDK clients whose credentials come
//! from STS AssumeRole, cached by the SDK's lazy identity cache and assumed again 2.5 to 5
//! minutes before they expire (a 5-minute buffer less the cache's jitter; checked at use, so
//! a frozen environment thaws into a fresh assume when it needs one). At most `max` roles; a
//! request for one more takes the place of a role whose AssumeRole has only ever failed (it
//! holds no entries), or is refused itself: a role whose entries may be cached is kept.

use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use hashbrown::HashMap;

use super::FetchError;

/// The SDK clients one identity reads with.
pub(super) struct Clients {
    pub(super) secrets: aws_sdk_secretsmanager::Client,
    pub(super) ssm: aws_sdk_ssm::Client,
}

/// Credentials are assumed again up to this long before they expire (the lazy cache takes
/// up to half of it back as jitter).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

pub(super) struct Roles {
    shared: aws_types::SdkConfig,
    /// The STS client's settings (the same budget and back-offs as the other clients).
    sts_config: aws_sdk_sts::config::Builder,
    /// Made at the first role: most functions never read through one.
    sts: std::sync::OnceLock<aws_sdk_sts::Client>,
    session_name: String,
    max: usize,
    budget: Duration,
    /// Builds a role's clients from its config (the same timeouts, retries and answer cap as
    /// the function's own).
    build: Box<dyn Fn(&aws_types::SdkConfig) -> Clients + Send + Sync>,
    by_role: Mutex<HashMap<Arc<str>, Role>>,
}

struct Role {
    clients: Arc<Clients>,
    outcome: Arc<AtomicU8>,
}

/// What AssumeRole has answered for a role so far (`Role::outcome`).
const NOT_YET: u8 = 0;
/// Once assumed, a role keeps its place: entries read through it may be cached.
const ASSUMED: u8 = 1;
/// No attempt has succeeded and none is under way: nothing was read through it.
const ONLY_FAILED: u8 = 2;
/// Its place went to another role (only from `ONLY_FAILED`): a read still holding its
/// clients is refused, so a dropped role never reads.
const RETIRED: u8 = 3;

impl Roles {
    pub(super) fn new(
        shared: aws_types::SdkConfig,
        sts_config: aws_sdk_sts::config::Builder,
        session_name: String,
        max: usize,
        budget: Duration,
        build: Box<dyn Fn(&aws_types::SdkConfig) -> Clients + Send + Sync>,
    ) -> Roles {
        Roles {
            shared,
            sts_config,
            sts: std::sync::OnceLock::new(),
            session_name,
            max,
            budget,
            build,
            by_role: Mutex::new(HashMap::new()),
        }
    }

    /// The clients for `role`, made on first use; `TooManyRoles` (400) past the limit.
    pub(super) fn clients(&self, role: &str) -> Result<Arc<Clients>, FetchError> {
        let mut by_role = self.by_role.lock().expect("roles lock holds no invariants");
        if let Some(r) = by_role.get(role) {
            return Ok(r.clients.clone());
        }
        if by_role.len() >= self.max {
            // Retired in one step from "only failed": an attempt starting now sees it.
            let refused = by_role
                .iter()
                .find(|(_, r)| r.outcome.compare_exchange(ONLY_FAILED, RETIRED, Relaxed, Relaxed).is_ok())
                .map(|(arn, _)| arn.clone());
            if let Some(arn) = refused {
                by_role.remove(&arn);
                tracing::info!(role = %crate::escape::escaped(&arn), "dropping a role AssumeRole has only failed for, for a new one");
            }
        }
        if by_role.len() >= self.max {
            return Err(too_many_roles(self.max));
        }
        let outcome = Arc::new(AtomicU8::new(NOT_YET));
        let provider = AssumedRole {
            sts: self
                .sts
                .get_or_init(|| aws_sdk_sts::Client::from_conf(self.sts_config.clone().build()))
                .clone(),
            max: self.max,
            role: role.to_string(),
            session_name: self.session_name.clone(),
            budget: self.budget,
            outcome: outcome.clone(),
        };
        let identity_cache = aws_config::identity::IdentityCache::lazy()
            .buffer_time(REFRESH_BEFORE_EXPIRY)
            .build();
        let config = self
            .shared
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .identity_cache(identity_cache)
            .build();
        let clients = Arc::new((self.build)(&config));
        by_role.insert(
            role.into(),
            Role {
                clients: clients.clone(),
                outcome,
            },
        );
        tracing::info!(role = %crate::escape::escaped(role), roles = by_role.len(), "reading through a new role");
        Ok(clients)
    }
}

impl Roles {
    /// Drops every role's clients and credentials (a SnapStart restore: the snapshot holds
    /// them, so every restored copy would share them).
    pub(super) fn forget(&self) {
        let mut by_role = self.by_role.lock().expect("roles lock holds no invariants");
        if !by_role.is_empty() {
            tracing::info!(
                roles = by_role.len(),
                "restored from a snapshot: assuming roles again at their next use"
            );
            by_role.clear();
        }
    }
}

fn too_many_roles(max: usize) -> FetchError {
    FetchError::Service {
        status: 400,
        code: "TooManyRoles".into(),
        message: format!("this environment reads through at most {max} roles (SECRETS_CACHE_MAX_ROLES) and all are in use"),
    }
}

/// Credentials from `sts:AssumeRole` for one role.
#[derive(Debug)]
struct AssumedRole {
    sts: aws_sdk_sts::Client,
    /// `SECRETS_CACHE_MAX_ROLES`, for the error a retired role's reads get.
    max: usize,
    role: String,
    session_name: String,
    budget: Duration,
    outcome: Arc<AtomicU8>,
}

impl AssumedRole {
    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let retired = || CredentialsError::provider_error(AssumeRoleFailed(too_many_roles(self.max)));
        // Under way again: not a role to drop for a new one until this attempt fails too.
        if let Err(RETIRED) = self.outcome.compare_exchange(ONLY_FAILED, NOT_YET, Relaxed, Relaxed) {
            return Err(retired());
        }
        let assumed = self.try_assume().await;
        if assumed.is_ok() {
            if let Err(RETIRED) = self.outcome.compare_exchange(NOT_YET, ASSUMED, Relaxed, Relaxed) {
                return Err(retired());
            }
        } else {
            let _ = self.outcome.compare_exchange(NOT_YET, ONLY_FAILED, Relaxed, Relaxed);
        }
        assumed
    }

    async fn try_assume(&self) -> Result<Credentials, CredentialsError> {
        let call = self
            .sts
            .assume_role()
            .role_arn(&self.role)
            .role_session_name(&self.session_name)
            .send();
        let out = match tokio::time::timeout(self.budget, call).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                let failure = FetchError::from_sdk(e, self.budget.as_millis() as u64);
                tracing::warn!(role = %crate::escape::escaped(&self.role), error = failure.code(), "AssumeRole failed");
                return Err(CredentialsError::provider_error(AssumeRoleFailed(failure)));
            }
            Err(_) => {
                let failure = FetchError::Timeout(self.budget.as_millis() as u64);
                return Err(CredentialsError::provider_error(AssumeRoleFailed(failure)));
            }
        };
        let invalid =
            |why: &str| CredentialsError::provider_error(AssumeRoleFailed(FetchError::Invalid(format!("AssumeRole answered {why}"))));
        let c = out.credentials.ok_or_else(|| invalid("without credentials"))?;
        let expiry = std::time::SystemTime::try_from(c.expiration).map_err(|_| invalid("an expiry out of range"))?;
        if c.access_key_id.is_empty() || c.secret_access_key.is_empty() || c.session_token.is_empty() {
            return Err(invalid("with an empty credential"));
        }
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            Some(expiry),
            "AssumeRole",
        ))
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

/// Carries AssumeRole's own failure through the SDK's credentials error, so a read through a
/// role the function may not assume answers with STS's status and code (403 AccessDenied),
/// not a generic failure.
#[derive(Debug)]
pub(super) struct AssumeRoleFailed(pub(super) FetchError);

impl std::fmt::Display for AssumeRoleFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AssumeRole failed: {}", self.0)
    }
}

impl std::error::Error for AssumeRoleFailed {}

/// The AssumeRole failure somewhere in `err`'s chain of causes, if that is what failed.
pub(super) fn assume_role_failure(err: &(dyn std::error::Error + 'static)) -> Option<FetchError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(failed) = e.downcast_ref::<AssumeRoleFailed>() {
            return Some(failed.0.clone());
        }
        cause = e.source();
    }
    None
}
