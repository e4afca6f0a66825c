//! Metric collection on demand. Lambda freezes the process between invocations, so no
//! periodic reader: the lifecycle collects through `SharedReader` and exports when its flush
//! policy says (by default at the start of an INVOKE, overlapping the function; after
//! `platform.runtimeDone` only with `SECRETS_CACHE_FLUSH=end`; at SHUTDOWN), each export
//! bounded by a timeout.

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

/// A manual reader the provider and the flusher share.
#[derive(Debug, Clone)]
pub struct SharedReader(Arc<ManualReader>);

impl SharedReader {
    pub fn new(temporality: Temporality) -> SharedReader {
        SharedReader(Arc::new(ManualReader::builder().with_temporality(temporality).build()))
    }

    /// Everything recorded since the last collection (delta) or since start (cumulative).
    pub fn collect(&self) -> Result<ResourceMetrics, OTelSdkError> {
        let mut rm = ResourceMetrics::default();
        self.0.collect(&mut rm)?;
        Ok(rm)
    }
}

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};

    use super::*;
    use crate::telemetry::names;
    use crate::telemetry::recorder::OtelRecorder;

    fn sums(rm: &ResourceMetrics, name: &str) -> Vec<(Vec<String>, u64)> {
        let mut out = Vec::new();
        for scope in rm.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                    for dp in sum.data_points() {
                        let mut attrs: Vec<String> = dp.attributes().map(|kv| format!("{}={}", kv.key, kv.value)).collect();
                        attrs.sort();
                        out.push((attrs, dp.value()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn facade_calls_arrive_as_otel_instruments_with_units_and_delta_windows() {
        let reader = SharedReader::new(Temporality::Delta);
        let provider = SdkMeterProvider::builder().with_reader(reader.clone()).build();
        let recorder = OtelRecorder::new(provider.meter("test"));
        let (hit, miss, latency) = metrics::with_local_recorder(&recorder, || {
            (
                metrics::counter!(names::REQUESTS, names::SOURCE => "secretsmanager", names::CACHE_RESULT => "hit"),
                metrics::counter!(names::REQUESTS, names::SOURCE => "secretsmanager", names::CACHE_RESULT => "miss"),
                metrics::histogram!(names::REQUEST_DURATION, names::SOURCE => "ssm", names::CACHE_RESULT => "hit"),
            )
        });
        hit.increment(3);
        miss.increment(1);
        latency.record(0.0002);
        latency.record(0.0007);

        let rm = reader.collect().unwrap();
        assert_eq!(
            sums(&rm, names::REQUESTS),
            vec![
                (vec!["cache.result=hit".into(), "source=secretsmanager".into()], 3),
                (vec!["cache.result=miss".into(), "source=secretsmanager".into()], 1),
            ]
        );
        let metric = rm
            .scope_metrics()
            .flat_map(|s| s.metrics())
            .find(|m| m.name() == names::REQUEST_DURATION)
            .unwrap();
        assert_eq!(metric.unit(), "s");
        let AggregatedMetrics::F64(MetricData::Histogram(h)) = metric.data() else {
            panic!("a histogram")
        };
        let dp = h.data_points().next().unwrap();
        assert_eq!(dp.count(), 2);
        assert_eq!(dp.bounds().count(), names::find(names::REQUEST_DURATION).unwrap().boundaries.len());

        // Delta: the next window starts empty.
        hit.increment(2);
        let rm = reader.collect().unwrap();
        assert_eq!(
            sums(&rm, names::REQUESTS),
            vec![(vec!["cache.result=hit".into(), "source=secretsmanager".into()], 2)]
        );
    }
}
