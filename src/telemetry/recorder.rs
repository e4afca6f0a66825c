//! A `metrics` recorder that feeds OpenTelemetry instruments. Call sites use the `metrics`
//! facade; this turns each registered key into an OTel instrument (one per name, created with
//! the unit, description and buckets of `names`) plus its attribute set. Handles are created
//! once (see `crate::counters`), so recording is an `add`/`record` on a prepared attribute list.
//! The maintained bridge crates target opentelemetry 0.31; this one is small enough to own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::names::{self, Kind};

#[derive(Clone)]
enum Instrument {
    Counter(opentelemetry::metrics::Counter<u64>),
    Gauge(opentelemetry::metrics::Gauge<f64>),
    Histogram(opentelemetry::metrics::Histogram<f64>),
}

pub struct OtelRecorder {
    meter: Meter,
    instruments: Mutex<HashMap<String, Instrument>>,
}

impl OtelRecorder {
    pub fn new(meter: Meter) -> OtelRecorder {
        OtelRecorder {
            meter,
            instruments: Mutex::new(HashMap::new()),
        }
    }

    fn instrument(&self, name: &str, kind: Kind) -> Instrument {
        let mut map = self.instruments.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = map.get(name) {
            return i.clone();
        }
        let spec = names::find(name);
        let unit = spec.map_or("", |s| s.unit);
        let description = spec.map_or("", |s| s.description);
        let name_owned = name.to_string();
        let instrument = match kind {
            Kind::Counter => Instrument::Counter(
                self.meter
                    .u64_counter(name_owned.clone())
                    .with_unit(unit)
                    .with_description(description)
                    .build(),
            ),
            Kind::Gauge => Instrument::Gauge(
                self.meter
                    .f64_gauge(name_owned.clone())
                    .with_unit(unit)
                    .with_description(description)
                    .build(),
            ),
            Kind::Histogram => {
                let mut b = self
                    .meter
                    .f64_histogram(name_owned.clone())
                    .with_unit(unit)
                    .with_description(description);
                if let Some(s) = spec {
                    b = b.with_boundaries(s.boundaries.to_vec());
                }
                Instrument::Histogram(b.build())
            }
        };
        map.insert(name_owned, instrument.clone());
        instrument
    }
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| KeyValue::new(l.key().to_string(), l.value().to_string()))
        .collect()
}

struct OtelCounter(opentelemetry::metrics::Counter<u64>, Vec<KeyValue>);
struct OtelGauge(opentelemetry::metrics::Gauge<f64>, Vec<KeyValue>);
struct OtelHistogram(opentelemetry::metrics::Histogram<f64>, Vec<KeyValue>);

impl CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.0.add(value, &self.1);
    }

    /// OTel counters are monotonic sums of increments; an absolute value has no meaning here.
    fn absolute(&self, _value: u64) {}
}

impl GaugeFn for OtelGauge {
    fn increment(&self, _value: f64) {}
    fn decrement(&self, _value: f64) {}
    fn set(&self, value: f64) {
        self.0.record(value, &self.1);
    }
}

impl HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.0.record(value, &self.1);
    }
}

impl Recorder for OtelRecorder {
    // Units and descriptions come from `names`; descriptions given at run time are ignored.
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.instrument(key.name(), Kind::Counter) {
            Instrument::Counter(c) => Counter::from_arc(Arc::new(OtelCounter(c, attributes(key)))),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.instrument(key.name(), Kind::Gauge) {
            Instrument::Gauge(g) => Gauge::from_arc(Arc::new(OtelGauge(g, attributes(key)))),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.instrument(key.name(), Kind::Histogram) {
            Instrument::Histogram(h) => Histogram::from_arc(Arc::new(OtelHistogram(h, attributes(key)))),
            _ => Histogram::noop(),
        }
    }
}
