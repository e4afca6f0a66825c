//! lambda-secrets-cache: an AWS Lambda extension that keeps Secrets Manager secrets and
//! Parameter Store parameters in memory and serves them over loopback HTTP.
//!
//! Data flows one way: `config` → `source` (AWS SDK) → `cache` (arc-swap snapshot) → `http`,
//! with `metrics` recorded along the way and `app` wiring the parts together. In extension mode
//! `lifecycle` drives it from Extensions API events, and `telemetry` receives the platform's
//! Telemetry API deliveries.

#![forbid(unsafe_code)]

pub mod accept;
pub mod app;
pub mod cache;
pub mod config;
pub mod counters;
pub mod escape;
pub mod http;
pub mod key;
pub mod lambda;
pub mod lifecycle;
pub mod telemetry;
pub mod upstream;
