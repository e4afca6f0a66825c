//! What can go wrong fetching from AWS, classified once so the cache (stale-if-error) and the
//! HTTP layer (status codes) agree. Messages come from AWS or the transport and never carry a
//! secret value.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// AWS answered with an error: not found, access denied, throttled, 5xx, ...
    #[error("{code}: {message}")]
    Service { status: u16, code: String, message: String },
    /// The time budget ran out (ours or the SDK's).
    #[error("upstream call timed out after {0} ms")]
    Timeout(u64),
    /// Could not reach AWS, or the connection broke.
    #[error("cannot reach upstream: {0}")]
    Network(String),
    /// AWS (or something posing as it) answered, but not with what was asked for: a success
    /// without the item or its value, another item, a body that is not the API's JSON, a
    /// status that is not an error, an answer over the size cap. Never cached.
    #[error("upstream answered with something that is not a valid answer: {0}")]
    Invalid(String),
    /// The SDK found no AWS Region (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile): nothing
    /// can be signed or addressed. Lambda always sets one; a local emulator may not.
    #[error("no AWS Region: set AWS_REGION (the SDK found none in the environment or the profile)")]
    NoRegion,
    /// The SDK could not get the function's credentials (none in the environment, the
    /// profile, the container or instance endpoints, or one of them failed): nothing was sent.
    #[error("no AWS credentials: {0}")]
    NoCredentials(String),
    /// Anything else: a malformed response, a request we could not build.
    #[error("unexpected upstream failure: {0}")]
    Other(String),
}

/// Error codes AWS uses for rate limiting; they are worth waiting out, not returning.
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ThrottledException",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
];

/// Whether `code` is one AWS uses for rate limiting.
pub fn is_throttling_code(code: &str) -> bool {
    THROTTLING.contains(&code)
}

impl FetchError {
    /// Transient errors allow serving a stale value; permanent ones are returned to the caller.
    pub fn is_transient(&self) -> bool {
        match self {
            // A credentials source can fail for a moment (the container endpoint): stale may serve.
            FetchError::Timeout(_) | FetchError::Network(_) | FetchError::Invalid(_) | FetchError::NoCredentials(_) => true,
            FetchError::Service { status, code, .. } => *status >= 500 || is_throttling_code(code),
            FetchError::NoRegion | FetchError::Other(_) => false,
        }
    }

    /// AWS throttled the call: the account's quota for the operation was spent. Worth waiting
    /// out, and worth spending another operation's quota on instead where there is one.
    pub fn is_throttling(&self) -> bool {
        matches!(self, FetchError::Service { code, .. } if is_throttling_code(code))
    }

    /// The HTTP status the function sees: AWS's, except throttling, which is `429` whatever
    /// status AWS used (Secrets Manager and Parameter Store answer `400`), so the function
    /// tells "slow down" from a bad request by the status alone.
    pub fn http_status(&self) -> u16 {
        match self {
            FetchError::Service { .. } if self.is_throttling() => 429,
            FetchError::Service { status, .. } => *status,
            FetchError::Timeout(_) => 504,
            FetchError::Network(_) | FetchError::Invalid(_) => 502,
            FetchError::NoRegion | FetchError::NoCredentials(_) | FetchError::Other(_) => 500,
        }
    }

    /// The `__type` of the error body, and the `error.type` metric attribute.
    pub fn code(&self) -> &str {
        match self {
            FetchError::Service { code, .. } => code,
            FetchError::Timeout(_) => "TimeoutError",
            FetchError::Network(_) => "ConnectionError",
            FetchError::Invalid(_) => "InvalidUpstreamResponse",
            FetchError::NoRegion => "MissingRegion",
            FetchError::NoCredentials(_) => "MissingCredentials",
            FetchError::Other(_) => "InternalFailure",
        }
    }

    pub fn message(&self) -> String {
        match self {
            FetchError::Service { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// An error reported per item inside a batch answer (`Errors[]`, `InvalidParameters`),
    /// which carries a code but no HTTP status of its own.
    pub fn item(code: &str, message: &str) -> FetchError {
        let code = error_code(code);
        let status = if code.starts_with("Internal") { 500 } else { 400 };
        FetchError::Service {
            status,
            code,
            message: error_message(message),
        }
    }

    /// Classifies an SDK failure. Only a real HTTP error status (400–599) is passed on as
    /// AWS's: a "service error" with any other status (a 200 whose body is not the API's
    /// JSON, a 3xx, a 1xx) is an invalid answer. Codes and messages from the wire are
    /// sanitised here, once. Transport details are kept short: they name the failure (reset,
    /// refused, malformed answer), never a response body.
    pub fn from_sdk<E>(err: SdkError<E, HttpResponse>, budget_ms: u64) -> FetchError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if let Some(failed) = super::roles::assume_role_failure(&err) {
            return failed;
        }
        if let Some(missing) = no_credentials(&err) {
            return missing;
        }
        if too_large(&err) {
            return FetchError::Invalid(format!("the answer is larger than {} bytes", super::answer::MAX_ANSWER));
        }
        match &err {
            SdkError::ServiceError(ctx) => {
                let e = ctx.err();
                let status = ctx.raw().status().as_u16();
                if !(400..=599).contains(&status) {
                    return FetchError::Invalid(format!("status {status} with a body that is not a valid answer"));
                }
                FetchError::Service {
                    status,
                    code: error_code(e.code().unwrap_or("UnknownError")),
                    message: error_message(e.message().unwrap_or("")),
                }
            }
            SdkError::TimeoutError(_) => FetchError::Timeout(budget_ms),
            SdkError::DispatchFailure(d) if d.is_timeout() => FetchError::Timeout(budget_ms),
            // A success whose body could not be read as the API's answer.
            SdkError::ResponseError(ctx) if ctx.raw().status().is_success() => {
                FetchError::Invalid(format!("the answer could not be read: {}", describe(&err)))
            }
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => FetchError::Network(describe(&err)),
            _ => FetchError::Other(describe(&err)),
        }
    }
}

/// An AWS error code is an identifier (`ResourceNotFoundException`); anything else from the
/// wire becomes `UnknownError` rather than reaching a log line or the function's `__type`.
fn error_code(code: &str) -> String {
    let identifier = !code.is_empty()
        && code.len() <= 128
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'#'));
    if identifier { code } else { "UnknownError" }.to_string()
}

/// AWS's error message, without control characters and at most 512 characters.
fn error_message(message: &str) -> String {
    message.chars().take(512).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The SDK's credentials error somewhere in `err`'s causes: the function's own credentials
/// could not be had (another role's failure is `roles::assume_role_failure`'s).
fn no_credentials(err: &(dyn std::error::Error + 'static)) -> Option<FetchError> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            let why = match c {
                CredentialsError::CredentialsNotLoaded(_) => {
                    "none found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, the container or instance endpoint)".to_string()
                }
                other => describe(other),
            };
            return Some(FetchError::NoCredentials(why));
        }
        next = e.source();
    }
    None
}

/// The answer overran the cap on its size (`answer::MAX_ANSWER`).
fn too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        next = e.source();
    }
    false
}

type HttpResponse = aws_smithy_runtime_api::http::Response;

/// The error and its causes, each by its `Display`, at most 300 characters. Never `Debug`: the
/// SDK's debug form of a response error includes the raw response, body and all, and a body
/// can hold a value.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    error_message(&parts.join(": ")).chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str) -> FetchError {
        FetchError::Service {
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn classification() {
        assert!(service(400, "ThrottlingException").is_transient());
        assert!(service(503, "ServiceUnavailable").is_transient());
        assert!(service(500, "InternalServiceError").is_transient());
        assert!(FetchError::Timeout(3000).is_transient());
        assert!(FetchError::Network("reset".into()).is_transient());
        assert!(!service(400, "ResourceNotFoundException").is_transient());
        assert!(!service(400, "AccessDeniedException").is_transient());
        assert!(!service(400, "DecryptionFailure").is_transient());
    }

    #[test]
    fn codes_and_messages_from_the_wire_are_sanitised() {
        let e = FetchError::item("Bad\nCode\0", "line one\nline two\u{7}");
        assert_eq!(e.code(), "UnknownError");
        assert_eq!(e.message(), "line one line two ");
        assert_eq!(
            FetchError::item("ResourceNotFoundException", "").code(),
            "ResourceNotFoundException"
        );
        let long = FetchError::item("X", &"m".repeat(2000));
        assert_eq!(long.message().len(), 512);
        assert_eq!(FetchError::Invalid("x".into()).http_status(), 502);
        assert!(FetchError::Invalid("x".into()).is_transient(), "stale-if-error applies");
    }

    #[test]
    fn throttling_is_429_with_the_code_aws_gave() {
        let throttled = service(400, "ThrottlingException");
        assert!(throttled.is_throttling() && throttled.is_transient());
        assert_eq!((throttled.http_status(), throttled.code()), (429, "ThrottlingException"));
        assert!(!service(400, "AccessDeniedException").is_throttling());
        assert!(!FetchError::Timeout(1).is_throttling());
    }

    #[test]
    fn http_mapping() {
        assert_eq!(FetchError::Timeout(1).http_status(), 504);
        assert_eq!(FetchError::Timeout(1).code(), "TimeoutError");
        assert_eq!(FetchError::Network("x".into()).http_status(), 502);
        assert_eq!(service(400, "ResourceNotFoundException").http_status(), 400);
        assert_eq!(FetchError::item("InternalServiceError", "x").http_status(), 500);
        assert_eq!(FetchError::item("ResourceNotFoundException", "x").http_status(), 400);
    }

    #[test]
    fn a_missing_region_or_credentials_is_ours_not_the_networks() {
        let region = FetchError::NoRegion;
        assert_eq!((region.http_status(), region.code()), (500, "MissingRegion"));
        assert!(!region.is_transient(), "it cannot appear later");
        assert!(region.message().contains("AWS_REGION"));
        let credentials = FetchError::NoCredentials("none found".into());
        assert_eq!((credentials.http_status(), credentials.code()), (500, "MissingCredentials"));
        assert!(
            credentials.is_transient(),
            "a credentials source can fail for a moment: stale may serve"
        );
    }
}
