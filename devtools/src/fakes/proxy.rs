//! A loopback proxy to put between the extension and moto: it counts every AWS call by
//! operation, can enforce AWS's request quotas (`quota`: a throttled call gets AWS's
//! throttling answer), and can inject faults (an error status, a delay before or after the upstream
//! answers, a dropped connection, any scripted answer: a status that is not an error, a body
//! that is not the API's), so tests can prove how many upstream calls were made and what
//! readers get when AWS, or something posing as it, misbehaves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::harness::client;

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this status and AWS error code instead of forwarding.
    Status { status: u16, code: String },
    /// Wait this long, then forward.
    Delay(Duration),
    /// Forward at once, then hold upstream's answer this long: the answer reflects upstream as
    /// it was when asked, and arrives late.
    DelayAnswer(Duration),
    /// Drop the connection without answering.
    Reset,
    /// Answer with exactly this, whatever was asked.
    Answer(Answer),
    /// Stop at `gate` until the test opens it: before forwarding (`after: false`, the call
    /// reads upstream as it is when released) or after upstream answered (`after: true`, the
    /// answer reflects upstream as it was when asked).
    Hold { gate: Gate, after: bool },
    /// Wait a random time up to `before` before forwarding, and up to `after` once upstream
    /// answered: calls overlap and answer out of order.
    Jitter { before: Duration, after: Duration },
}

/// Where a held call waits (`FaultKind::Hold`). The test waits for a call to reach it, changes
/// upstream, then opens it. Clones share the gate.
#[derive(Debug, Clone)]
pub struct Gate(Arc<GateInner>);

#[derive(Debug)]
struct GateInner {
    reached: tokio::sync::Semaphore,
    open: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new(GateInner {
            reached: tokio::sync::Semaphore::new(0),
            open: tokio::sync::Semaphore::new(0),
        }))
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Gate {
    /// Waits until a call is held here (each call is waited for once).
    pub async fn reached(&self) {
        let within = tokio::time::timeout(Duration::from_secs(10), self.0.reached.acquire()).await;
        within.expect("a call reaches the gate within 10 s").expect("never closed").forget();
    }

    /// Lets one held call (or the next to come) through.
    pub fn open(&self) {
        self.0.open.add_permits(1);
    }

    async fn pass(&self) {
        self.0.reached.add_permits(1);
        self.0.open.acquire().await.expect("never closed").forget();
    }
}

/// A scripted upstream answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Answer {
    /// An AWS JSON-protocol answer with this status and body.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/x-amz-json-1.1".into())],
            body: body.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// Operation name (`GetSecretValue`); `None` matches every call.
    pub op: Option<String>,
    pub kind: FaultKind,
    /// How many calls it applies to; `None` = until cleared.
    pub remaining: Option<usize>,
}

impl Fault {
    pub fn always(kind: FaultKind) -> Fault {
        Fault {
            op: None,
            kind,
            remaining: None,
        }
    }

    pub fn status(status: u16, code: &str) -> Fault {
        Fault::always(FaultKind::Status { status, code: code.into() })
    }

    pub fn on(mut self, op: &str) -> Fault {
        self.op = Some(op.into());
        self
    }

    pub fn times(mut self, n: usize) -> Fault {
        self.remaining = Some(n);
        self
    }

    /// The next call of `op` waits at a new gate (see `FaultKind::Hold`); the gate is returned.
    pub fn hold(op: &str, after: bool) -> (Fault, Gate) {
        let gate = Gate::default();
        let fault = Fault::always(FaultKind::Hold { gate: gate.clone(), after }).on(op).times(1);
        (fault, gate)
    }
}

#[derive(Default)]
struct State {
    counts: Mutex<HashMap<String, usize>>,
    /// Every call in order: (operation, the access key id that signed it, when it arrived).
    log: Mutex<Vec<(String, String, std::time::Instant)>>,
    faults: Mutex<Vec<Fault>>,
    quotas: super::quota::Buckets,
    /// Calls answered with throttling, by operation (quotas and injected faults alike).
    throttled: Mutex<HashMap<String, usize>>,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts on 127.0.0.1:0 in the current tokio runtime, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let s = state.clone();
        let task = crate::serve_until_aborted("aws proxy", listener, move || {
            let s = s.clone();
            hyper::service::service_fn(move |req| handle(s.clone(), upstream, req))
        });
        Ok(FaultProxy { addr, state, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls of one operation (`GetSecretValue`, `BatchGetSecretValue`, `GetParameter`, …).
    pub fn calls(&self, op: &str) -> usize {
        self.state.counts.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.state.counts.lock().unwrap().values().sum()
    }

    pub fn counts(&self) -> HashMap<String, usize> {
        self.state.counts.lock().unwrap().clone()
    }

    pub fn reset_counts(&self) {
        self.state.counts.lock().unwrap().clear();
        self.state.log.lock().unwrap().clear();
        self.state.throttled.lock().unwrap().clear();
    }

    /// Every call so far as (operation, access key id of its signature), in order: which
    /// credentials (whose role) made it.
    pub fn signed_calls(&self) -> Vec<(String, String)> {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|(op, key, _)| (op.clone(), key.clone()))
            .collect()
    }

    /// Every call so far as (when it arrived, operation), in order.
    pub fn timed_calls(&self) -> Vec<(std::time::Instant, String)> {
        self.state.log.lock().unwrap().iter().map(|(op, _, at)| (*at, op.clone())).collect()
    }

    /// Enforces `quotas` from now on (none: no limit).
    pub fn set_quotas(&self, quotas: Vec<super::quota::Quota>) {
        self.state.quotas.set(quotas);
    }

    /// Calls of `op` answered with throttling so far.
    pub fn throttled(&self, op: &str) -> usize {
        self.state.throttled.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    pub fn inject(&self, fault: Fault) {
        self.state.faults.lock().unwrap().push(fault);
    }

    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An AWS error answer as the service's protocol renders it: JSON with `__type` and the
/// `x-amzn-ErrorType` header, or the query protocol's XML (STS).
fn aws_error(query_protocol: bool, status: u16, code: &str, message: &str) -> http::Response<Full<Bytes>> {
    let (body, content_type) = if query_protocol {
        let xml = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
        );
        (xml, "text/xml")
    } else {
        let json = serde_json::json!({"__type": code, "message": message}).to_string();
        (json, "application/x-amz-json-1.1")
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    response.headers_mut().insert(
        "x-amzn-errortype",
        http::HeaderValue::from_str(code).unwrap_or(http::HeaderValue::from_static("Unknown")),
    );
    response
}

/// A random duration in [0, `max`].
fn random_up_to(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per instance: a fresh one is a fresh random number.
    let r = std::collections::hash_map::RandomState::new().build_hasher().finish();
    max.mul_f64((r % 10_001) as f64 / 10_000.0)
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

async fn handle(state: Arc<State>, upstream: SocketAddr, req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    // JSON-protocol services name the operation in X-Amz-Target; query-protocol ones (STS)
    // in the form body's `Action`.
    let query_protocol = target.is_empty();
    let op = if query_protocol {
        form_urlencoded::parse(&body)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    } else {
        target.rsplit('.').next().unwrap_or("").to_string()
    };
    let access_key = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or("")
        .to_string();
    *state.counts.lock().unwrap().entry(op.clone()).or_default() += 1;
    state.log.lock().unwrap().push((op.clone(), access_key, std::time::Instant::now()));

    if !state.quotas.take(&op) {
        *state.throttled.lock().unwrap().entry(op.clone()).or_default() += 1;
        let code = if query_protocol { "Throttling" } else { "ThrottlingException" };
        return Ok(aws_error(query_protocol, 400, code, "Rate exceeded"));
    }
    let fault = {
        let mut faults = state.faults.lock().unwrap();
        let hit = faults
            .iter_mut()
            .position(|f| f.op.as_deref().is_none_or(|o| o == op) && f.remaining != Some(0));
        hit.map(|i| {
            if let Some(n) = faults[i].remaining.as_mut() {
                *n -= 1;
            }
            faults[i].kind.clone()
        })
    };
    match fault {
        Some(FaultKind::Status { status, code }) => {
            if code.contains("Throttl") {
                *state.throttled.lock().unwrap().entry(op.clone()).or_default() += 1;
            }
            return Ok(aws_error(query_protocol, status, &code, "injected by the test proxy"));
        }
        Some(FaultKind::Reset) => return Err(Dropped),
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::Hold { ref gate, after: false }) => gate.pass().await,
        Some(FaultKind::Jitter { before, .. }) => tokio::time::sleep(random_up_to(before)).await,
        Some(FaultKind::Answer(a)) => {
            let mut response = http::Response::new(Full::new(a.body));
            *response.status_mut() = http::StatusCode::from_u16(a.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in &a.headers {
                if let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k.as_str()), http::HeaderValue::from_str(v)) {
                    response.headers_mut().append(k, v);
                }
            }
            return Ok(response);
        }
        Some(FaultKind::DelayAnswer(_) | FaultKind::Hold { after: true, .. }) | None => {}
    }

    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(k, _)| *k != "host" && *k != "content-length")
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let answered = client::request(upstream, parts.method.as_str(), path, &header_refs, body.to_vec()).await;
    match fault {
        Some(FaultKind::DelayAnswer(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::Hold { gate, after: true }) => gate.pass().await,
        Some(FaultKind::Jitter { after, .. }) => tokio::time::sleep(random_up_to(after)).await,
        _ => {}
    }
    match answered {
        Ok(up) => {
            let mut response = http::Response::new(Full::new(up.body));
            *response.status_mut() = http::StatusCode::from_u16(up.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            for (k, v) in &up.headers {
                if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                    response.headers_mut().append(k, v.clone());
                }
            }
            Ok(response)
        }
        Err(_) => Err(Dropped),
    }
}
