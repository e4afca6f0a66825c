//! The Telemetry API destination: one long-lived listener on `SECRETS_CACHE_SANDBOX_HOST`
//! and an ephemeral port. It answers 200 as soon as a delivery's body is read and queues the
//! body for parsing; when the queue is full the delivery is dropped and counted (the platform
//! would otherwise retry and fall further behind).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accept::{Accept, Admit};

/// The platform sends at most `2 × maxBytes` (256 KiB subscribed) plus metadata.
const MAX_DELIVERY: usize = 4 << 20;
/// Deliveries waiting to be parsed; each is at most one buffering window.
pub const QUEUE: usize = 256;
/// Connections open at once. The platform delivers one batch at a time; whatever else opens
/// connections here (anything inside the sandbox can) waits in the kernel's queue instead of
/// taking the process's descriptors and memory.
const MAX_CONNECTIONS: usize = 16;

pub struct Listener {
    listener: TcpListener,
    /// The destination URI to subscribe with: the configured host name, the bound port.
    pub uri: String,
}

#[derive(Default)]
pub struct Dropped {
    pub full: AtomicU64,
    pub too_large: AtomicU64,
}

impl Listener {
    /// Binds `host` (a name such as `sandbox.localdomain`, or an address) on an ephemeral port.
    pub async fn bind(host: &str) -> std::io::Result<Listener> {
        let listener = TcpListener::bind((host, 0)).await?;
        let addr = listener.local_addr()?;
        let host_part = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let uri = format!("http://{host_part}:{}/", addr.port());
        Ok(Listener { listener, uri })
    }

    /// Answers deliveries until `cancel`, then lets open connections finish (bounded).
    pub async fn run(self, queue: mpsc::Sender<Bytes>, dropped: Arc<Dropped>, cancel: CancellationToken) -> std::io::Result<()> {
        let mut accept = Accept::new("telemetry listener");
        // hyper's header timeout, idle waits included: a delivery the platform sends on a
        // connection closed at a thaw is retried by the platform, and connections that send
        // nothing must not keep the budget from it.
        accept.http.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(5));
        accept.budget = Some(MAX_CONNECTIONS);
        accept
            .run(self.listener, cancel, move || {
                let (queue, dropped) = (queue.clone(), dropped.clone());
                Admit::Serve(service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (queue, dropped) = (queue.clone(), dropped.clone());
                    async move { Ok::<_, Infallible>(deliver(req, &queue, &dropped).await) }
                }))
            })
            .await
    }
}

/// One delivery: read whole (at most `MAX_DELIVERY`), queued for parsing, answered at once.
async fn deliver(req: http::Request<hyper::body::Incoming>, queue: &mpsc::Sender<Bytes>, dropped: &Dropped) -> Response<Full<Bytes>> {
    let status = match Limited::new(req.into_body(), MAX_DELIVERY).collect().await {
        Ok(body) => {
            if queue.try_send(body.to_bytes()).is_err() {
                dropped.full.fetch_add(1, Relaxed);
            }
            StatusCode::OK
        }
        Err(_) => {
            dropped.too_large.fetch_add(1, Relaxed);
            StatusCode::PAYLOAD_TOO_LARGE
        }
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(addr: std::net::SocketAddr, body: &'static [u8]) -> u16 {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post("/").body(Full::new(Bytes::from_static(body))).unwrap();
        sender.send_request(req).await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn answers_200_queues_bodies_and_counts_what_does_not_fit() {
        let listener = Listener::bind("127.0.0.1").await.unwrap();
        assert_eq!(
            listener.uri,
            format!("http://127.0.0.1:{}/", listener.listener.local_addr().unwrap().port())
        );
        let addr = listener.listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let dropped = Arc::new(Dropped::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(listener.run(tx, dropped.clone(), cancel.clone()));

        assert_eq!(post(addr, b"[1]").await, 200);
        assert_eq!(post(addr, b"[2]").await, 200, "a full queue still answers 200");
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"[1]"));
        assert_eq!(dropped.full.load(Relaxed), 1);

        cancel.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_past_the_budget_wait_for_a_place() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = Listener::bind("127.0.0.1").await.unwrap();
        let addr = listener.listener.local_addr().unwrap();
        let (tx, _rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(listener.run(tx, Arc::default(), cancel.clone()));
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut late = tokio::net::TcpStream::connect(addr).await.unwrap();
        late.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let waited = tokio::time::timeout(Duration::from_millis(300), late.read_to_end(&mut answer)).await;
        assert!(waited.is_err(), "not served while the budget is taken");
        drop(idle.pop());
        tokio::time::timeout(Duration::from_secs(2), late.read_to_end(&mut answer))
            .await
            .expect("served once a place is free")
            .unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        cancel.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_delivery_under_way_at_shutdown_is_answered_and_queued() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = Listener::bind("127.0.0.1").await.unwrap();
        let addr = listener.listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(listener.run(tx, Arc::default(), cancel.clone()));

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n[1,")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "shutdown waits for the delivery under way");
        stream.write_all(b"2]").await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"[1,2]"));
        task.await.unwrap().unwrap();
    }
}
