//! What can go wrong fetching from AWS, classified once so the cache (stale-if-error) and the
//! HTTP layer (status codes) agree. Messages come from AWS or the transport and never carry a
//! secret value.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
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

impl FetchError {
    /// Transient errors allow serving a stale value; permanent ones are returned to the caller.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Timeout(_) | FetchError::Network(_) => true,
            FetchError::Service { status, code, .. } => *status >= 500 || THROTTLING.contains(&code.as_str()),
            FetchError::Other(_) => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::Service { code, .. } if code == "ResourceNotFoundException" || code == "ParameterNotFound" || code == "ParameterVersionNotFound")
    }

    /// The HTTP status the function sees.
    pub fn http_status(&self) -> u16 {
        match self {
            FetchError::Service { status, .. } => *status,
            FetchError::Timeout(_) => 504,
            FetchError::Network(_) => 502,
            FetchError::Other(_) => 500,
        }
    }

    /// The `__type` of the error body, and the `error.type` metric attribute.
    pub fn code(&self) -> &str {
        match self {
            FetchError::Service { code, .. } => code,
            FetchError::Timeout(_) => "TimeoutError",
            FetchError::Network(_) => "ConnectionError",
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
        let status = if code.starts_with("Internal") { 500 } else { 400 };
        FetchError::Service {
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    /// Classifies an SDK failure. Transport details are kept short: they name the failure
    /// (reset, refused, malformed answer), never a response body.
    pub fn from_sdk<E>(err: SdkError<E, HttpResponse>, budget_ms: u64) -> FetchError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(ctx) => {
                let e = ctx.err();
                FetchError::Service {
                    status: ctx.raw().status().as_u16(),
                    code: e.code().unwrap_or("UnknownError").to_string(),
                    message: e.message().unwrap_or("").to_string(),
                }
            }
            SdkError::TimeoutError(_) => FetchError::Timeout(budget_ms),
            SdkError::DispatchFailure(d) if d.is_timeout() => FetchError::Timeout(budget_ms),
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => FetchError::Network(describe(&err)),
            _ => FetchError::Other(describe(&err)),
        }
    }
}

type HttpResponse = aws_smithy_runtime_api::http::Response;

fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = DisplayErrorContext(err).to_string();
    if let Some((i, _)) = text.char_indices().nth(300) {
        text.truncate(i);
    }
    text
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
        assert!(service(400, "ParameterNotFound").is_not_found());
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
}
