//! Every error the function can receive, rendered in one place as
//! `{"__type": "<Code>", "message": "<text>"}`. Messages never hold a secret value. The statuses
//! are a closed set: our documented 4xx, 429, AWS's own 4xx/5xx, 502 and 504; never a 1xx,
//! 2xx or 3xx for an error.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::upstream::FetchError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} is not accepted: this endpoint serves local callers only, not requests relayed by a proxy")]
    Forwarded(&'static str),
    #[error("missing or invalid X-Aws-Parameters-Secrets-Token header")]
    Forbidden,
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method {0} is not allowed; use GET")]
    MethodNotAllowed(String),
    #[error("too many concurrent connections; retry shortly")]
    TooManyConnections,
    #[error("{0}")]
    Upstream(FetchError),
    #[error("the extension is shutting down")]
    ShuttingDown,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Forwarded(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            // Only a real error status is passed on; anything else would tell the function the
            // read worked.
            ApiError::Upstream(e) => match StatusCode::from_u16(e.http_status()) {
                Ok(status) if status.is_client_error() || status.is_server_error() => status,
                _ => StatusCode::BAD_GATEWAY,
            },
            ApiError::ShuttingDown => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest(_) => "InvalidRequest",
            ApiError::Forwarded(_) => "ForwardedRequestRejected",
            ApiError::Forbidden => "InvalidToken",
            ApiError::NotFound(_) => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::TooManyConnections => "ConnectionLimitExceeded",
            ApiError::Upstream(e) => e.code(),
            ApiError::ShuttingDown => "ShuttingDown",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Upstream(e) => e.message(),
            other => other.to_string(),
        }
    }

    /// The JSON body: `{"__type": "<Code>", "message": "<text>"}`.
    pub fn body(&self) -> Bytes {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            #[serde(rename = "__type")]
            kind: &'a str,
            message: String,
        }
        let body = serde_json::to_vec(&Body {
            kind: self.code(),
            message: self.message(),
        })
        .expect("plain strings serialise");
        Bytes::from(body)
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body()));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_never_answered_with_a_success_or_informational_status() {
        for status in [100, 101, 200, 204, 302, 399, 600, 999] {
            let e = ApiError::Upstream(FetchError::Service {
                status,
                code: "X".into(),
                message: String::new(),
            });
            assert_eq!(e.status(), StatusCode::BAD_GATEWAY, "{status}");
        }
        for status in [400, 403, 404, 429, 500, 503] {
            let e = ApiError::Upstream(FetchError::Service {
                status,
                code: "X".into(),
                message: String::new(),
            });
            assert_eq!(e.status().as_u16(), status);
        }
        assert_eq!(ApiError::ShuttingDown.status(), StatusCode::GATEWAY_TIMEOUT);
    }
}
