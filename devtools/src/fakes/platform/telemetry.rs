//! Telemetry API on the fake platform: validating a subscription like the real API does, and
//! delivering buffered platform events to the subscriber's HTTP destination as JSON arrays.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::{FakeLambda, Phase};

/// One POST to a subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// When the subscriber answered (since the platform started).
    pub at: Duration,
    pub destination: String,
    /// The subscriber's answer, or `None` when it could not be reached.
    pub status: Option<u16>,
    pub events: Vec<Value>,
}

impl Delivery {
    pub fn types(&self) -> Vec<&str> {
        self.events.iter().filter_map(|e| e.get("type").and_then(Value::as_str)).collect()
    }

    /// Whether this batch carried `type` for `request_id`.
    pub fn carries(&self, kind: &str, request_id: &str) -> bool {
        self.events
            .iter()
            .any(|e| e["type"] == kind && e["record"]["requestId"] == request_id)
    }
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub types: Vec<String>,
    pub max_items: usize,
    pub timeout: Duration,
    pub uri: String,
    addr: SocketAddr,
    path: String,
}

impl Subscription {
    /// The checks and limits of the real API (ARCHITECTURE.md, "The Lambda platform").
    pub fn validate(body: &Value) -> Result<Subscription, String> {
        let schema = body.get("schemaVersion").and_then(Value::as_str).unwrap_or("");
        if !["2022-07-01", "2022-12-13", "2025-01-29"].contains(&schema) {
            return Err(format!("schemaVersion {schema:?} is not supported"));
        }
        let types: Vec<String> = body
            .get("types")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        if types.is_empty() || types.iter().any(|t| !["platform", "function", "extension"].contains(&t.as_str())) {
            return Err("types should be a non-empty subset of platform, function, extension".into());
        }
        let buffering = body.get("buffering").cloned().unwrap_or(Value::Null);
        let number = |k: &str, default: u64| buffering.get(k).and_then(Value::as_u64).unwrap_or(default);
        let (max_items, max_bytes, timeout_ms) = (number("maxItems", 10_000), number("maxBytes", 262_144), number("timeoutMs", 1000));
        if !(1000..=10_000).contains(&max_items) || !(262_144..=1_048_576).contains(&max_bytes) || !(25..=30_000).contains(&timeout_ms) {
            return Err("buffering out of range (maxItems 1000–10000, maxBytes 262144–1048576, timeoutMs 25–30000)".into());
        }
        let destination = body.get("destination").cloned().unwrap_or(Value::Null);
        if destination.get("protocol").and_then(Value::as_str) != Some("HTTP") {
            return Err("destination.protocol must be HTTP".into());
        }
        let uri = destination.get("URI").and_then(Value::as_str).unwrap_or("").to_string();
        let rest = uri.strip_prefix("http://").ok_or("destination URI must be http://")?;
        let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
        let (host, port) = authority.rsplit_once(':').ok_or("URI port is not provided")?;
        let port: u16 = port.parse().map_err(|_| "URI port is not a number".to_string())?;
        // Outside Lambda the sandbox name means this machine (as lambda-simulator does it).
        let host = match host {
            "sandbox.localdomain" | "sandbox" | "localhost" => "127.0.0.1",
            h => h.trim_start_matches('[').trim_end_matches(']'),
        };
        let ip: std::net::IpAddr = host.parse().map_err(|_| format!("cannot resolve {host} on the fake platform"))?;
        Ok(Subscription {
            types,
            max_items: max_items as usize,
            timeout: Duration::from_millis(timeout_ms),
            uri,
            addr: SocketAddr::new(ip, port),
            path,
        })
    }

    fn wants(&self, event: &Value) -> bool {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let family = if kind.starts_with("platform.") { "platform" } else { kind };
        self.types.iter().any(|t| t == family)
    }
}

/// A subscriber's place in the platform's event list.
#[derive(Debug, Clone)]
pub(super) struct Cursor {
    /// Events before this index have been delivered (or skipped as not subscribed).
    next: usize,
    /// Buffering plus any scripted delay: how long an event waits before it goes out.
    hold: Duration,
}

impl Cursor {
    /// An event that should have gone out by now has not.
    pub(super) fn overdue(&self, inner: &super::Inner) -> bool {
        let now = inner.started.elapsed();
        inner.emitted_at.get(self.next).is_some_and(|at| *at + self.hold <= now)
    }
}

/// Delivers every matching event (including those emitted before the subscription) in
/// batches after `timeoutMs` of buffering (plus any scripted delay), and only while the
/// environment is not frozen: what is emitted between invocations (the last `runtimeDone` when
/// the extension was back on `next` first, every `report`) arrives during the next event, as in
/// Lambda. The environment is not frozen while a batch is due or on the wire. A failed POST is
/// retried twice, then the batch is dropped, as the platform does with a consumer that cannot
/// keep up.
pub async fn deliver(platform: FakeLambda, subscription: Subscription) {
    let mut changes = platform.changed.subscribe();
    let index = {
        let mut inner = platform.lock();
        let hold = subscription.timeout + inner.options.faults.telemetry_delay.unwrap_or_default();
        inner.subscribers.push(Cursor { next: 0, hold });
        inner.subscribers.len() - 1
    };
    loop {
        let (pending, hold) = {
            let inner = platform.lock();
            let c = &inner.subscribers[index];
            (inner.events.len() > c.next, c.hold)
        };
        if !pending {
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::time::sleep(hold).await;
        let batch: Vec<Value> = loop {
            {
                let mut inner = platform.lock();
                if !matches!(inner.phase, Phase::Ready | Phase::Snapshot) {
                    let mut batch = Vec::new();
                    let mut next = inner.subscribers[index].next;
                    while next < inner.events.len() && batch.len() < subscription.max_items {
                        if subscription.wants(&inner.events[next]) {
                            batch.push(inner.events[next].clone());
                        }
                        next += 1;
                    }
                    inner.subscribers[index].next = next;
                    inner.delivering += 1;
                    break batch;
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        };
        let status = if batch.is_empty() {
            None
        } else {
            post(&subscription, &batch).await
        };
        let mut inner = platform.lock();
        inner.delivering -= 1;
        if !batch.is_empty() {
            let at = inner.started.elapsed();
            inner.deliveries.push(Delivery {
                at,
                destination: subscription.uri.clone(),
                status,
                events: batch,
            });
        }
        drop(inner);
        platform.bump();
    }
}

/// One batch, with two retries; the subscriber's last answer, `None` if it never answered.
async fn post(subscription: &Subscription, batch: &[Value]) -> Option<u16> {
    let body = serde_json::to_vec(batch).expect("values serialise");
    let mut status = None;
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        let sent = crate::harness::client::request(
            subscription.addr,
            "POST",
            &subscription.path,
            &[("content-type", "application/json")],
            body.clone(),
        );
        match tokio::time::timeout(Duration::from_secs(2), sent).await {
            Ok(Ok(r)) => {
                status = Some(r.status);
                if r.status == 200 {
                    break;
                }
            }
            _ => status = None,
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(uri: &str, timeout_ms: u64) -> Value {
        json!({"schemaVersion": "2022-12-13", "types": ["platform"],
               "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": timeout_ms},
               "destination": {"protocol": "HTTP", "URI": uri}})
    }

    #[test]
    fn validates_like_the_real_api() {
        let s = Subscription::validate(&body("http://sandbox.localdomain:4243/path", 25)).unwrap();
        assert_eq!((s.addr, s.path.as_str()), ("127.0.0.1:4243".parse().unwrap(), "/path"));
        assert!(Subscription::validate(&body("http://127.0.0.1/", 25)).unwrap_err().contains("port"));
        assert!(
            Subscription::validate(&body("http://127.0.0.1:1/", 10)).is_err(),
            "timeoutMs below 25"
        );
        let mut bad = body("http://127.0.0.1:1/", 25);
        bad["types"] = json!([]);
        assert!(Subscription::validate(&bad).is_err());
    }
}
