//! An OTLP/HTTP receiver on loopback for exact assertions: it decodes every
//! `POST /v1/metrics` and `/v1/traces` (protobuf) with `opentelemetry-proto`, keeps them, and
//! answers like a collector. It can be told to answer slowly, to stand in for a sick collector.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use prost::Message;

/// The decoded OTLP types, for tests that look at what arrived.
pub use opentelemetry_proto as proto;

#[derive(Default)]
struct State {
    metrics: Vec<ExportMetricsServiceRequest>,
    traces: Vec<ExportTraceServiceRequest>,
    /// Every request body as it arrived, decodable or not (for leak scans).
    raw: Vec<Bytes>,
    delay: Option<Duration>,
}

pub struct OtlpReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> anyhow::Result<OtlpReceiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let task = crate::serve_until_aborted("otlp receiver", listener, move || {
            let s = s.clone();
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let s = s.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let delay = {
                        let mut state = s.lock().unwrap();
                        state.raw.push(body.clone());
                        state.delay
                    };
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                    let status = match path.as_str() {
                        "/v1/metrics" => match ExportMetricsServiceRequest::decode(body) {
                            Ok(m) => {
                                s.lock().unwrap().metrics.push(m);
                                200
                            }
                            Err(_) => 400,
                        },
                        "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
                            Ok(t) => {
                                s.lock().unwrap().traces.push(t);
                                200
                            }
                            Err(_) => 400,
                        },
                        _ => 404,
                    };
                    let mut response = http::Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
                    response
                        .headers_mut()
                        .insert("content-type", http::HeaderValue::from_static("application/x-protobuf"));
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        });
        Ok(OtlpReceiver { addr, state, task })
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every export this late from now on (a slow collector).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn metric_exports(&self) -> usize {
        self.state.lock().unwrap().metrics.len()
    }

    pub fn trace_exports(&self) -> Vec<ExportTraceServiceRequest> {
        self.state.lock().unwrap().traces.clone()
    }

    /// Every span received, in arrival order.
    pub fn spans(&self) -> Vec<proto::tonic::trace::v1::Span> {
        self.trace_exports()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }

    /// Every data point of metric `name` across all exports.
    fn metrics_named(&self, name: &str) -> Vec<Metric> {
        let state = self.state.lock().unwrap();
        state
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .filter(|m| m.name == name)
            .cloned()
            .collect()
    }

    /// Names of every metric received.
    pub fn metric_names(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let mut names: Vec<String> = state
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// A counter (delta sums, added up over all exports) by the value of `attribute`.
    pub fn sum_by(&self, name: &str, attribute: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for m in self.metrics_named(name) {
            if let Some(metric::Data::Sum(sum)) = m.data {
                for dp in sum.data_points {
                    let key = attr(&dp.attributes, attribute).unwrap_or_default();
                    let v = match dp.value {
                        Some(number_data_point::Value::AsInt(i)) => i as u64,
                        Some(number_data_point::Value::AsDouble(d)) => d as u64,
                        None => 0,
                    };
                    *out.entry(key).or_default() += v;
                }
            }
        }
        out
    }

    /// A histogram's total count, for data points whose attributes include all of `filter`.
    pub fn histogram_count(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        let mut n = 0;
        for m in self.metrics_named(name) {
            if let Some(metric::Data::Histogram(h)) = m.data {
                for dp in h.data_points {
                    if filter.iter().all(|(k, v)| attr(&dp.attributes, k).as_deref() == Some(*v)) {
                        n += dp.count;
                    }
                }
            }
        }
        n
    }

    /// The last exported value of gauge `name` for the data point whose attribute `filter.0`
    /// equals `filter.1` (an empty key matches any point).
    pub fn gauge_last(&self, name: &str, filter: (&str, &str)) -> Option<f64> {
        let mut last = None;
        for m in self.metrics_named(name) {
            if let Some(metric::Data::Gauge(g)) = m.data {
                for dp in g.data_points {
                    if filter.0.is_empty() || attr(&dp.attributes, filter.0).as_deref() == Some(filter.1) {
                        last = match dp.value {
                            Some(number_data_point::Value::AsDouble(d)) => Some(d),
                            Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
                            None => last,
                        };
                    }
                }
            }
        }
        last
    }

    /// Unit of metric `name` as exported.
    pub fn unit(&self, name: &str) -> Option<String> {
        self.metrics_named(name).first().map(|m| m.unit.clone())
    }

    /// Resource attributes of the first metric export.
    pub fn resource(&self) -> BTreeMap<String, String> {
        let state = self.state.lock().unwrap();
        state
            .metrics
            .first()
            .and_then(|r| r.resource_metrics.first())
            .and_then(|rm| rm.resource.as_ref())
            .map(|r| {
                r.attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), value_string(kv.value.as_ref())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every request body received, as it arrived.
    pub fn raw_bodies(&self) -> Vec<Bytes> {
        self.state.lock().unwrap().raw.clone()
    }

    /// Everything received, rendered as text (for leak scans).
    pub fn dump(&self) -> String {
        let state = self.state.lock().unwrap();
        format!("{:?}\n{:?}", state.metrics, state.traces)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).map(|kv| value_string(kv.value.as_ref()))
}

fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
