//! Telemetry, out: the metric names and attribute keys the call sites record (the contract of
//! SPEC §6), the span helpers (parents from the function's trace headers, X-Ray headers), the
//! `metrics` → OpenTelemetry recorder, and the OTLP pipeline the lifecycle flushes. No
//! endpoint configured, nothing here runs. (The Telemetry API, in, is `lambda::telemetry_api`.)

pub mod export;
pub mod faas;
pub mod names;
pub mod otlp;
pub mod recorder;
pub mod trace;
