//! Every error the function can receive, rendered in one place as
//! `{"__type": "<Code>", "message": "<text>"}`. Messages never hold a secret value.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::source::FetchError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("X-Forwarded-For is not accepted: this endpoint serves local callers only")]
    Forwarded,
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
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Forwarded => StatusCode::BAD_REQUEST,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(e) => StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest(_) => "InvalidRequest",
            ApiError::Forwarded => "ForwardedRequestRejected",
            ApiError::Forbidden => "InvalidToken",
            ApiError::NotFound(_) => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::TooManyConnections => "ConnectionLimitExceeded",
            ApiError::Upstream(e) => e.code(),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Upstream(e) => e.message(),
            other => other.to_string(),
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
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
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}
