//! Telemetry, out, and everything that names OpenTelemetry: the metric names and attribute
//! keys the call sites record (the contract: README, "Telemetry"), the spans (`trace::Spans`:
//! a read's, a call's, parented on the function's trace), the `faas.*` metrics from platform
//! events (`faas`), the `metrics` → OpenTelemetry recorder, and the OTLP pipeline the
//! lifecycle flushes. No endpoint configured, nothing here runs. (The Telemetry API, in, is
//! `lambda::telemetry_api`.)

pub mod export;
pub mod faas;
pub mod names;
pub mod otlp;
pub mod recorder;
pub mod trace;
