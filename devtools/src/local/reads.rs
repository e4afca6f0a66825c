//! A recording pass-through between a function and the extension it reads from: every request
//! is forwarded unchanged and answered with what the extension said, and each one is noted
//! (path, status, the `X-Cache` header, time taken) so a local run can show the cache reads a
//! handler made. It adds one loopback hop (a new upstream connection per request).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::harness::client;

/// One read the function made.
#[derive(Debug, Clone)]
pub struct Read {
    pub method: String,
    /// Path and query as the function sent them.
    pub target: String,
    /// The extension's status, or `None` if it could not be reached.
    pub status: Option<u16>,
    /// The extension's `X-Cache` header (`hit`, `miss`, …) when it sent one.
    pub cache: Option<String>,
    /// Time at the extension, seen from here.
    pub took: Duration,
}

impl std::fmt::Display for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status.map_or_else(|| "unreachable".to_string(), |s| s.to_string());
        write!(
            f,
            "{} {} -> {status} {} {:.2} ms",
            self.method,
            self.target,
            self.cache.as_deref().unwrap_or("-"),
            self.took.as_secs_f64() * 1000.0
        )
    }
}

pub struct ReadRecorder {
    pub addr: SocketAddr,
    reads: Arc<Mutex<Vec<Read>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadRecorder {
    /// Listens on 127.0.0.1:0 and forwards to `extension`.
    pub async fn start(extension: SocketAddr) -> anyhow::Result<ReadRecorder> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let reads: Arc<Mutex<Vec<Read>>> = Arc::default();
        let log = reads.clone();
        let task = crate::serve_until_aborted("read recorder", listener, move || {
            let log = log.clone();
            hyper::service::service_fn(move |req| {
                let log = log.clone();
                async move { Ok::<_, Infallible>(forward(extension, req, &log).await) }
            })
        });
        Ok(ReadRecorder { addr, reads, task })
    }

    /// The reads recorded since the last call.
    pub fn take(&self) -> Vec<Read> {
        std::mem::take(&mut *self.reads.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for ReadRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(extension: SocketAddr, req: http::Request<Incoming>, log: &Mutex<Vec<Read>>) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(k, _)| *k != http::header::HOST)
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let started = Instant::now();
    let answer = client::request(extension, parts.method.as_str(), &target, &headers, body.to_vec()).await;
    let took = started.elapsed();
    let (status, cache, response) = match answer {
        Ok(r) => {
            let cache = r.header("x-cache").map(str::to_string);
            let mut response = http::Response::new(Full::new(r.body));
            *response.status_mut() = http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            for (k, v) in &r.headers {
                if k != http::header::CONTENT_LENGTH && k != http::header::TRANSFER_ENCODING && k != http::header::CONNECTION {
                    response.headers_mut().append(k, v.clone());
                }
            }
            (Some(r.status), cache, response)
        }
        Err(_) => {
            let mut response = http::Response::new(Full::new(Bytes::from_static(b"the extension could not be reached")));
            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
            (None, None, response)
        }
    };
    log.lock().unwrap_or_else(|p| p.into_inner()).push(Read {
        method: parts.method.to_string(),
        target,
        status,
        cache,
        took,
    });
    response
}
