//! The Extensions API and Telemetry API client: register, next, init/exit error, subscribe.
//! Each call opens a fresh loopback connection, so nothing pooled survives a freeze, and
//! `/event/next` has no client timeout (the platform may hold it for as long as the
//! environment stays frozen).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::event::{self, Event};

const REGISTER: &str = "/2020-01-01/extension/register";
const NEXT: &str = "/2020-01-01/extension/event/next";
const INIT_ERROR: &str = "/2020-01-01/extension/init/error";
const EXIT_ERROR: &str = "/2020-01-01/extension/exit/error";
const TELEMETRY: &str = "/2022-07-01/telemetry";

/// The schema the reference implementations (rotel, the OTel Lambda layer) subscribe with.
pub const TELEMETRY_SCHEMA: &str = "2022-12-13";
/// Lambda Managed Instances accept only this one; it is backward compatible.
pub const TELEMETRY_SCHEMA_LMI: &str = "2025-01-29";

/// Anything but `/next` that takes longer than this means the platform is broken.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Error bodies from the platform are small; never read more than this.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("cannot reach the Extensions API at {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("HTTP exchange with the Extensions API failed: {0}")]
    Http(String),
    #[error("{call} timed out after {timeout:?}")]
    Timeout { call: &'static str, timeout: Duration },
    #[error("{call} answered {status}: {body}")]
    Status { call: &'static str, status: u16, body: String },
    #[error("register answered without a Lambda-Extension-Identifier header")]
    NoIdentifier,
    #[error(transparent)]
    Event(#[from] event::EventError),
}

/// What register told us about the function.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    #[serde(skip)]
    pub id: String,
    #[serde(default)]
    pub function_name: Option<String>,
    #[serde(default)]
    pub function_version: Option<String>,
}

/// The outcome of `PUT /2022-07-01/telemetry`. Only `Subscribed` means deliveries will come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    Subscribed,
    /// 202: a local emulator without the Telemetry API.
    NotSupported(String),
    /// Any other answer, or no answer.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct ExtensionsApi {
    /// `host:port`, exactly as `AWS_LAMBDA_RUNTIME_API` gives it.
    authority: String,
}

struct Answer {
    status: StatusCode,
    identifier: Option<String>,
    body: Bytes,
}

impl ExtensionsApi {
    pub fn new(authority: &str) -> ExtensionsApi {
        ExtensionsApi {
            authority: authority.trim_end_matches('/').to_string(),
        }
    }

    /// `POST /register` for `events`; `name` must be the executable's file name.
    pub async fn register(&self, name: &str, events: &[&str]) -> Result<Registration, PlatformError> {
        let body = serde_json::json!({ "events": events }).to_string();
        let answer = self
            .call(
                "register",
                Method::POST,
                REGISTER,
                &[("Lambda-Extension-Name", name), ("Content-Type", "application/json")],
                body.into(),
                Some(CALL_TIMEOUT),
            )
            .await?;
        let answer = expect_ok("register", answer)?;
        let id = answer.identifier.ok_or(PlatformError::NoIdentifier)?;
        // An unexpected body costs us only function metadata, which the environment also has.
        let mut registration: Registration = serde_json::from_slice(&answer.body).unwrap_or_default();
        registration.id = id;
        Ok(registration)
    }

    /// `GET /event/next`: blocks until the platform has an event. No timeout, no retry.
    pub async fn next(&self, id: &str) -> Result<Event, PlatformError> {
        let answer = self
            .call(
                "next",
                Method::GET,
                NEXT,
                &[("Lambda-Extension-Identifier", id)],
                Bytes::new(),
                None,
            )
            .await?;
        let answer = expect_ok("next", answer)?;
        Ok(event::parse(&answer.body)?)
    }

    /// `POST /init/error`: only during Init; the platform fails the init and expects us to exit.
    pub async fn init_error(&self, id: &str, error_type: &str, message: &str) -> Result<(), PlatformError> {
        self.report_error("init/error", INIT_ERROR, id, error_type, message).await
    }

    /// `POST /exit/error`: after Init, before exiting because of an error.
    pub async fn exit_error(&self, id: &str, error_type: &str, message: &str) -> Result<(), PlatformError> {
        self.report_error("exit/error", EXIT_ERROR, id, error_type, message).await
    }

    async fn report_error(&self, call: &'static str, path: &str, id: &str, error_type: &str, message: &str) -> Result<(), PlatformError> {
        let body = serde_json::json!({ "errorMessage": message, "errorType": error_type, "stackTrace": [] }).to_string();
        let answer = self
            .call(
                call,
                Method::POST,
                path,
                &[
                    ("Lambda-Extension-Identifier", id),
                    ("Lambda-Extension-Function-Error-Type", error_type),
                    ("Content-Type", "application/json"),
                ],
                body.into(),
                Some(CALL_TIMEOUT),
            )
            .await?;
        expect_ok(call, answer).map(drop)
    }

    /// `PUT /2022-07-01/telemetry` for platform events, delivered to `destination`.
    /// Never an error: the caller runs without telemetry unless this says `Subscribed`.
    pub async fn subscribe(&self, id: &str, schema: &str, destination: &str) -> Subscription {
        let body = subscription_body(schema, destination);
        let answer = self
            .call(
                "subscribe",
                Method::PUT,
                TELEMETRY,
                &[("Lambda-Extension-Identifier", id), ("Content-Type", "application/json")],
                body.into(),
                Some(CALL_TIMEOUT),
            )
            .await;
        match answer {
            Ok(a) if a.status == StatusCode::OK => Subscription::Subscribed,
            Ok(a) if a.status == StatusCode::ACCEPTED => {
                Subscription::NotSupported(crate::escape::escaped(&String::from_utf8_lossy(&a.body)))
            }
            Ok(a) => Subscription::Failed(format!(
                "{}: {}",
                a.status.as_u16(),
                crate::escape::escaped(&String::from_utf8_lossy(&a.body))
            )),
            Err(e) => Subscription::Failed(e.to_string()),
        }
    }

    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Answer, PlatformError> {
        let exchange = self.exchange(method, path, headers, body);
        match timeout {
            Some(t) => tokio::time::timeout(t, exchange)
                .await
                .map_err(|_| PlatformError::Timeout { call, timeout: t })?,
            None => exchange.await,
        }
    }

    async fn exchange(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Result<Answer, PlatformError> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|source| PlatformError::Connect {
                addr: self.authority.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| PlatformError::Http(e.to_string()))?;
        tokio::spawn(async move {
            // The connection ends with the exchange; its error, if any, is the exchange's.
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.authority.as_str());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).map_err(|e| PlatformError::Http(e.to_string()))?;
        let response = sender.send_request(req).await.map_err(|e| PlatformError::Http(e.to_string()))?;
        let status = response.status();
        let identifier = response
            .headers()
            .get("Lambda-Extension-Identifier")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| PlatformError::Http(e.to_string()))?
            .to_bytes();
        Ok(Answer { status, identifier, body })
    }
}

fn expect_ok(call: &'static str, answer: Answer) -> Result<Answer, PlatformError> {
    if answer.status.is_success() {
        Ok(answer)
    } else {
        Err(PlatformError::Status {
            call,
            status: answer.status.as_u16(),
            body: crate::escape::escaped(&String::from_utf8_lossy(&answer.body)),
        })
    }
}

/// Platform events only (function and extension logs would include our own output: a loop),
/// and the smallest buffering delay the API allows: under `SECRETS_CACHE_FLUSH=end`
/// `platform.runtimeDone` gates `/next`.
pub fn subscription_body(schema: &str, destination: &str) -> String {
    serde_json::json!({
        "schemaVersion": schema,
        "types": ["platform"],
        "buffering": { "maxItems": 1000, "maxBytes": 262_144, "timeoutMs": 25 },
        "destination": { "protocol": "HTTP", "URI": destination },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_body_is_the_documented_shape() {
        let body: serde_json::Value = serde_json::from_str(&subscription_body(TELEMETRY_SCHEMA, "http://127.0.0.1:4321/")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "schemaVersion": "2022-12-13",
                "types": ["platform"],
                "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
                "destination": {"protocol": "HTTP", "URI": "http://127.0.0.1:4321/"}
            })
        );
    }

    #[test]
    fn registration_tolerates_missing_and_extra_fields() {
        let r: Registration = serde_json::from_str(r#"{"functionName":"f","functionVersion":"$LATEST","handler":"h","new":1}"#).unwrap();
        assert_eq!(r.function_name.as_deref(), Some("f"));
        assert_eq!(r.function_version.as_deref(), Some("$LATEST"));
        let r: Registration = serde_json::from_str("{}").unwrap();
        assert_eq!((r.function_name, r.function_version), (None, None));
    }
}
