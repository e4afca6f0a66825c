//! The accept loop every HTTP/1 server in the repository shares: the function-facing server,
//! the Telemetry API listener, and the fakes in devtools. It accepts until cancelled, serves
//! each connection with hyper, and at the end shuts every connection down gracefully
//! (hyper-util's `GracefulShutdown`: no new requests are read, those in flight finish) within a
//! drain time. Optionally it keeps the number of open sockets within a budget: when the budget
//! is spent it stops accepting (the kernel queues new connections) rather than take the
//! descriptors the rest of the process needs.
//!
//! A request must arrive whole within `request_timeout` of its first byte; the wait between
//! requests on a kept-alive connection is not bounded. (hyper's own header timeout also runs
//! while a connection is idle: after a Lambda freeze longer than it, it fires at the thaw and
//! races the function's next request on that connection, which then gets no answer.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// At most one "accept failed" warning per this (with a count of the ones in between).
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(10);

/// A connection handled by hand: it gets the stream and is done when the future is.
pub type Handover = Box<dyn FnOnce(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What to do with one accepted connection.
pub enum Admit<S> {
    /// Serve HTTP/1 on it with this service (dropped when the connection ends).
    Serve(S),
    /// Hand it to this instead (an answer written by hand), and close it after.
    ByHand(Handover),
}

/// How a server accepts and drains.
pub struct Accept {
    /// Connection settings (header limits). Its header-read timeout is off: see
    /// `request_timeout`.
    pub http: http1::Builder,
    /// How long a request may take to arrive once its first byte has (then the connection is
    /// closed); `None`: no bound.
    pub request_timeout: Option<Duration>,
    /// How long open connections get to finish once cancelled.
    pub drain: Duration,
    /// Open sockets allowed at once (served or handed elsewhere); `None`: no limit.
    pub budget: Option<usize>,
    /// For the warnings this loop logs.
    pub name: &'static str,
}

impl Accept {
    /// Defaults: hyper's HTTP/1 settings without its header timeout, no request timeout, a
    /// 500 ms drain, no budget.
    pub fn new(name: &'static str) -> Accept {
        let mut http = http1::Builder::new();
        http.header_read_timeout(None);
        Accept {
            http,
            request_timeout: None,
            drain: Duration::from_millis(500),
            budget: None,
            name,
        }
    }

    /// Accepts on `listener` until `cancel`, asking `admit` what to do with each connection;
    /// then drains. Only an accept error that is not transient ends it early.
    pub async fn run<S, F>(self, listener: TcpListener, cancel: CancellationToken, mut admit: F) -> std::io::Result<()>
    where
        F: FnMut() -> Admit<S>,
        S: HttpService<Incoming> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        S::ResBody: Send + 'static,
        <S::ResBody as hyper::body::Body>::Data: Send,
        <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let graceful = GracefulShutdown::new();
        let others = TaskTracker::new();
        let budget = self.budget.map(|n| Arc::new(Semaphore::new(n)));
        let mut failures = RateLimited::new(ACCEPT_WARNING_EVERY);
        loop {
            let slot = match &budget {
                None => None,
                Some(b) => tokio::select! {
                    () = cancel.cancelled() => break,
                    permit = b.clone().acquire_owned() => Some(permit.expect("the semaphore is never closed")),
                },
            };
            let stream = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // Out of descriptors and the like: back off instead of spinning, and say so
                    // once in a while.
                    Err(e) if is_transient(&e) => {
                        if let Some(since) = failures.tick() {
                            tracing::warn!(server = self.name, error = %e, failures = since, "accept failed; retrying");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let _ = stream.set_nodelay(true);
            match admit() {
                Admit::Serve(service) => {
                    let io = TokioIo::new(RequestDeadline::new(stream, self.request_timeout));
                    let conn = graceful.watch(self.http.serve_connection(io, service));
                    tokio::spawn(async move {
                        // A broken connection is the client's to retry; nothing to do here.
                        let _ = conn.await;
                        drop(slot);
                    });
                }
                Admit::ByHand(handle) => {
                    others.spawn(async move {
                        handle(stream).await;
                        drop(slot);
                    });
                }
            }
        }
        others.close();
        let drained = async {
            graceful.shutdown().await;
            others.wait().await;
        };
        let _ = tokio::time::timeout(self.drain, drained).await;
        Ok(())
    }
}

/// A connection whose request heads must arrive within a bound of their first bytes. A head
/// that arrives whole in one read (nearly all) costs no timer and no clock read: the deadline
/// is set only when a read waits in the middle of a head, and is off once the head's blank
/// line has arrived (the answer may take as long as its own budgets say) until the answer is
/// written. A connection waiting for its next request is never timed out, so nothing closes
/// it in a way a request could race.
struct RequestDeadline {
    stream: TcpStream,
    limit: Option<Duration>,
    /// Made at the first request that needs it, reset at each one after.
    sleep: Option<Pin<Box<Sleep>>>,
    state: Reading,
    /// The last bytes read of the current head, to find its end across reads.
    tail: [u8; 3],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Between requests.
    Idle,
    /// Part of a request has arrived.
    Partial,
    /// A read waited in the middle of a request: `sleep` is its deadline.
    Timed,
    /// The head has arrived whole: the answer is being made, no deadline.
    Headed,
}

impl RequestDeadline {
    fn new(stream: TcpStream, limit: Option<Duration>) -> RequestDeadline {
        RequestDeadline {
            stream,
            limit,
            sleep: None,
            state: Reading::Idle,
            tail: [0; 3],
        }
    }

    /// Takes the bytes just read: the head is whole once its blank line has arrived.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.state == Reading::Headed {
            return;
        }
        const END: &[u8] = b"\r\n\r\n";
        // The blank line may straddle reads: the last 3 bytes before, the first 3 now.
        let k = bytes.len().min(3);
        let mut edge = [0u8; 6];
        edge[..3].copy_from_slice(&self.tail);
        edge[3..3 + k].copy_from_slice(&bytes[..k]);
        if edge[..3 + k].windows(4).any(|w| w == END) || bytes.windows(4).any(|w| w == END) {
            self.state = Reading::Headed;
        } else if self.state == Reading::Idle {
            self.state = Reading::Partial;
        }
        self.tail = if bytes.len() >= 3 {
            [bytes[bytes.len() - 3], bytes[bytes.len() - 2], bytes[bytes.len() - 1]]
        } else {
            let mut t = [0u8; 3];
            t.copy_from_slice(&edge[k..k + 3]);
            t
        };
    }

    /// Polls the deadline (registering its wake-up): true once it has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.sleep.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }
}

impl AsyncRead for RequestDeadline {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let timed_out = || Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        if this.state == Reading::Timed && this.expired(cx) {
            return timed_out();
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.limit.is_some() {
                    this.saw(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let (Reading::Partial, Some(limit)) = (this.state, this.limit) {
                    let deadline = Instant::now() + limit;
                    match &mut this.sleep {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    this.state = Reading::Timed;
                    if this.expired(cx) {
                        return timed_out();
                    }
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for RequestDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        (self.state, self.tail) = (Reading::Idle, [0; 3]);
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        (self.state, self.tail) = (Reading::Idle, [0; 3]);
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Says "now" at most once per period, and how many times it was asked in between.
struct RateLimited {
    every: Duration,
    last: Option<tokio::time::Instant>,
    count: u64,
}

impl RateLimited {
    fn new(every: Duration) -> RateLimited {
        RateLimited {
            every,
            last: None,
            count: 0,
        }
    }

    fn tick(&mut self) -> Option<u64> {
        self.count += 1;
        let now = tokio::time::Instant::now();
        if self.last.is_some_and(|last| now < last + self.every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error().is_some_and(|c| c == libc::EMFILE || c == libc::ENFILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on 127.0.0.1:0 answering 200 to everything after `delay`, requests bounded to
    /// 10 s.
    async fn server_answering_after(delay: Duration) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let mut accept = Accept::new("test");
        accept.request_timeout = Some(Duration::from_secs(10));
        let service = move || {
            hyper::service::service_fn(move |_req| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok"))))
            })
        };
        tokio::spawn(accept.run(listener, cancel.clone(), move || Admit::Serve(service())));
        (addr, cancel)
    }

    async fn server() -> (std::net::SocketAddr, CancellationToken) {
        server_answering_after(Duration::ZERO).await
    }

    async fn answer(stream: &mut TcpStream) -> String {
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_idle_for_an_hour_is_answered() {
        let (addr, cancel) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        stream.write_all(request).await.unwrap();
        assert!(answer(&mut stream).await.starts_with("HTTP/1.1 200"));
        // The clock jumps as it does across a freeze; every timer due fires now.
        tokio::time::advance(Duration::from_secs(3600)).await;
        stream.write_all(request).await.unwrap();
        assert!(answer(&mut stream).await.starts_with("HTTP/1.1 200"));
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_takes_longer_than_the_request_limit_is_still_written() {
        // An answer that waits 30 s (a read whose budget is that long), the head in two parts
        // split inside its blank line.
        let (addr, cancel) = server_answering_after(Duration::from_secs(30)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        stream.write_all(b"\n\r\n").await.unwrap();
        assert!(answer(&mut stream).await.starts_with("HTTP/1.1 200"));
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_stops_halfway_is_closed_at_its_deadline() {
        let (addr, cancel) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let started = tokio::time::Instant::now();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "closed after {waited:?}"
        );
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn warnings_are_rate_limited_with_a_count() {
        let mut r = RateLimited::new(Duration::from_secs(10));
        assert_eq!(r.tick(), Some(1));
        for _ in 0..5 {
            assert_eq!(r.tick(), None);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(r.tick(), Some(6));
    }
}
