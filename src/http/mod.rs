//! Data out: the loopback HTTP server the function calls (README, "HTTP API"). A request is routed by a
//! pure function (`route`), checked (forwarding, token), served from the cache, and every error
//! is rendered by `ApiError`. The server owns no state beyond handles passed in: what it reports
//! of the lifecycle and the export comes through `Hooks`.

pub mod error;
pub mod route;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
use route::Endpoint;

use crate::accept::Admit;
use crate::cache::Cache;
use crate::cache::Served;
use crate::config::{HttpConfig, Token};
use crate::counters::{CacheResult, Counters};
use crate::key::{KeyRef, Service};
use crate::telemetry::trace::{InvocationTrace, Spans};
use crate::upstream::FetchError;

pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-aws-parameters-secrets-token");
// Header names built once: a `&str` name is parsed and validated on every use.
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// Headers a proxy adds when it relays a request. None of the AWS extension's clients (its
/// documented calls, the Powertools parameters utility, middy) send one: a request carrying
/// any of them came through a proxy (an `HTTP_PROXY` that does not exempt localhost, or an
/// SSRF relaying through one) and is refused.
const PROXY_HEADERS: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
    "via",
];
/// Request line plus headers; hyper answers 431 above it. Bodies are never read.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// A request must arrive whole within this of its first byte. A kept-alive connection waiting
/// for its next request is not timed out (see `serve`): a Lambda freeze would fire that timer
/// at the thaw, racing the function's next request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection over the limit gets to send its request before its 429.
const REFUSE_WAIT: Duration = Duration::from_millis(500);
/// How long open connections get to finish when the server stops. Reads still waiting on AWS
/// when `ANSWER_MARGIN` of it is left are answered `504 ShuttingDown`, so none goes unanswered.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
const ANSWER_MARGIN: Duration = Duration::from_millis(100);
/// Descriptors kept out of the inbound budget: upstream connections (a few per service), the
/// Telemetry API listener and its deliveries, OTLP exports, Extensions API calls, the
/// runtime's own (epoll, timers) and stdio.
const RESERVED_DESCRIPTORS: u64 = 64;
/// The most sockets held open at once when `RLIMIT_NOFILE` is effectively unlimited.
const MAX_DESCRIPTOR_BUDGET: u64 = 16_384;
/// Sockets of the budget kept for refusing (429): served connections never take them, so a
/// connection over the limit is answered within a second whatever the limit is set to.
const REFUSE_RESERVE: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("accepting connections failed: {0}")]
    Accept(#[source] std::io::Error),
}

/// What the server reports from outside the cache, injected so it holds no lifecycle or
/// telemetry objects. Standalone mode has none.
#[derive(Default)]
pub struct Hooks {
    /// Sections `/status` shows beside `cache` and `metrics` (extension mode: `lifecycle`,
    /// and `otlp` with an exporter).
    pub status: Option<Box<dyn Fn() -> serde_json::Map<String, serde_json::Value> + Send + Sync>>,
    /// The invocation a read belongs to, for its span.
    pub invocation: Option<Box<dyn Fn() -> Option<InvocationTrace> + Send + Sync>>,
    /// Called before every read reaches the cache (SnapStart: the first one after a restore
    /// starts the prefetch, which the read then joins).
    pub before_read: Option<Box<dyn Fn() + Send + Sync>>,
}

/// Everything a request needs, shared by all connections.
pub struct Server {
    cache: Arc<Cache>,
    counters: Arc<Counters>,
    token: Token,
    /// Connections served at once (`SECRETS_CACHE_MAX_INBOUND_CONNECTIONS`, within the
    /// descriptor budget less `REFUSE_RESERVE`); more are answered 429 and closed at once.
    connections: Arc<Semaphore>,
    /// Sockets open at once, served or being refused: when none is left, accepting pauses
    /// (the kernel queues new connections) so upstream calls always have descriptors.
    descriptors: usize,
    /// Cancelled when the drain is nearly over: reads still waiting get 504.
    answer_now: CancellationToken,
    hooks: Hooks,
    /// Each read's SERVER span (no-ops when traces are not exported).
    spans: Spans,
}

impl Server {
    pub fn new(cache: Arc<Cache>, counters: Arc<Counters>, config: &HttpConfig, hooks: Hooks, spans: Spans) -> Arc<Server> {
        let descriptors = descriptor_budget();
        let served = descriptors - REFUSE_RESERVE.min(descriptors / 4);
        Arc::new(Server {
            cache,
            counters,
            token: config.token.clone(),
            connections: Arc::new(Semaphore::new(config.max_inbound_connections.get().min(served))),
            descriptors,
            answer_now: CancellationToken::new(),
            hooks,
            spans,
        })
    }

    /// Accepts until `cancel`, then lets open connections finish (bounded); what is still
    /// waiting near the end of the drain is answered `504 ShuttingDown`.
    pub async fn run(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) -> Result<(), HttpError> {
        let mut accept = crate::accept::Accept::new("http");
        accept.http.max_buf_size(MAX_HEADER_BYTES).max_headers(MAX_HEADERS);
        accept.request_timeout = Some(REQUEST_TIMEOUT);
        accept.drain = DRAIN_TIMEOUT;
        accept.budget = Some(self.descriptors);
        let this = self.clone();
        let serving = accept.run(listener, cancel.clone(), move || {
            let Ok(permit) = this.connections.clone().try_acquire_owned() else {
                // Over the limit: answered with a 429 and closed within a second, whatever the
                // client sends or does not send.
                return Admit::ByHand(Box::new(|stream| Box::pin(refuse(stream))));
            };
            let this = this.clone();
            Admit::Serve(service_fn(move |req| {
                let (this, _held) = (this.clone(), &permit);
                async move { Ok::<_, Infallible>(this.handle(req).await) }
            }))
        });
        let answer_now = async {
            cancel.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT - ANSWER_MARGIN).await;
            self.answer_now.cancel();
            std::future::pending::<()>().await
        };
        tokio::select! {
            served = serving => served.map_err(HttpError::Accept),
            () = answer_now => unreachable!("pending forever"),
        }
    }

    /// One request, start to finish. Always answers; never panics on input.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        match self.dispatch(&req).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        }
    }

    async fn dispatch<B>(&self, req: &Request<B>) -> Result<Response<Full<Bytes>>, ApiError> {
        let uri = req.uri();
        // `GET http://host/...` is how a client talks to a proxy, not to a local server.
        if uri.scheme().is_some() || uri.authority().is_some() {
            return Err(ApiError::BadRequest(
                "absolute-form request targets are not accepted: send the path only".into(),
            ));
        }
        let endpoint = route::endpoint(uri.path()).ok_or_else(|| ApiError::NotFound(uri.path().chars().take(128).collect()))?;
        if req.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed(req.method().as_str().chars().take(16).collect()));
        }
        if endpoint == Endpoint::Ping {
            return Ok(text(StatusCode::OK, "healthy"));
        }
        self.authorise(req.headers())?;
        let read = match endpoint {
            Endpoint::Ping => unreachable!("answered above"),
            Endpoint::Status => return Ok(self.status()),
            Endpoint::Secret => route::secret(uri.query())?,
            Endpoint::Parameter => route::parameter(uri.query())?,
            Endpoint::SecretPath(id) => route::secret_path(id, uri.query())?,
        };
        let started = Instant::now();
        if let Some(before_read) = &self.hooks.before_read {
            before_read();
        }
        let key = read.key();
        let get = self.traced_get(req.headers(), key, read.refresh_now);
        // A hit is ready at the first poll; only a read waiting on AWS can see the shutdown.
        let result = tokio::select! {
            biased;
            r = get => r.map_err(ApiError::Upstream),
            () = self.answer_now.cancelled() => Err(ApiError::ShuttingDown),
        };
        match result {
            Ok(served) => {
                self.counters
                    .request(key.service, served.result, started.elapsed(), Some(served.age));
                let mut response = Response::new(Full::new(served.entry.body.clone()));
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(header::AGE, HeaderValue::from(served.age_secs));
                headers.insert(X_CACHE, HeaderValue::from_static(served.result.as_str()));
                Ok(response)
            }
            Err(e) => {
                self.counters.request(key.service, CacheResult::Error, started.elapsed(), None);
                Err(e)
            }
        }
    }

    /// `cache.get`, in a SERVER span when traces are exported.
    async fn traced_get(&self, headers: &HeaderMap, key: KeyRef<'_>, refresh_now: bool) -> Result<Served, FetchError> {
        let invocation = self.hooks.invocation.as_ref().and_then(|current| current());
        let route = match key.service {
            Service::SecretsManager => "GET /secretsmanager/get",
            Service::Ssm => "GET /systemsmanager/parameters/get",
        };
        let Some(span) = self.spans.read(headers, invocation.as_ref(), key.service.as_str(), route) else {
            return self.cache.get(key, refresh_now).await;
        };
        let result = span.run(self.cache.get(key, refresh_now)).await;
        span.end(result.as_ref().map(|s| s.result.as_str()).map_err(FetchError::code));
        result
    }

    /// A proxy header means the request was relayed: refuse (SSRF). Then the token, compared
    /// in constant time.
    fn authorise(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(name) = PROXY_HEADERS.into_iter().find(|h| headers.contains_key(*h)) {
            return Err(ApiError::Forwarded(name));
        }
        let expected = self.token.value.as_bytes();
        let mut presented = headers.get_all(TOKEN_HEADER).iter();
        match (presented.next(), presented.next()) {
            (Some(v), None) if bool::from(v.as_bytes().ct_eq(expected)) => Ok(()),
            _ => Err(ApiError::Forbidden),
        }
    }

    fn status(&self) -> Response<Full<Bytes>> {
        let mut body = self.hooks.status.as_ref().map(|sections| sections()).unwrap_or_default();
        body.insert(
            "cache".into(),
            serde_json::to_value(self.cache.status()).expect("status serialises"),
        );
        body.insert(
            "metrics".into(),
            serde_json::to_value(self.counters.status()).expect("status serialises"),
        );
        let body = serde_json::to_vec_pretty(&body).expect("status serialises");
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The 429 for a connection over the limit. It answers the client's first request head, read
/// for at most `REFUSE_WAIT` (clients such as hyper's treat bytes that arrive before they have
/// sent a request as a broken connection, not as an answer); whatever else the client sends is
/// read and dropped before closing, so it is not reset before it can read the answer. All of it
/// is bounded to a second, so a client that sends nothing does not hold a descriptor for the
/// header timeout.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = ApiError::TooManyConnections.body();
    let head = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let deadline = tokio::time::Instant::now() + REFUSE_WAIT;
        let (mut read, mut last) = (0usize, [0u8; 3]);
        while read < MAX_HEADER_BYTES {
            let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(deadline, stream.read(&mut sink)).await else {
                break;
            };
            read += n;
            let mut window = last.to_vec();
            window.extend_from_slice(&sink[..n]);
            if window.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            // `window` starts with the previous three bytes, so it is never shorter than that.
            last.copy_from_slice(&window[window.len() - 3..]);
        }
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Ok(1..)) = tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {}
        std::io::Result::Ok(())
    })
    .await;
}

/// How many sockets may be open at once: the soft `RLIMIT_NOFILE` less what the rest of the
/// process needs (Lambda's is 1 024).
fn descriptor_budget() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let budget = if soft > RESERVED_DESCRIPTORS * 2 {
        soft - RESERVED_DESCRIPTORS
    } else {
        soft / 2
    };
    budget.clamp(1, MAX_DESCRIPTOR_BUDGET) as usize
}
