//! lambda-secrets-cache: an AWS Lambda extension that keeps Secrets Manager secrets and
//! Parameter Store parameters in memory and serves them over loopback HTTP.
//!
//! Data flows one way: `config` → `upstream` (the AWS SDK) → `cache` (arc-swap snapshot) →
//! `http`, with `counters` recorded along the way and `app` wiring the parts together. In
//! extension mode `lifecycle` drives it from the platform's events (`lambda`: the Extensions
//! and Telemetry APIs), and `telemetry` exports metrics and spans over OTLP. ARCHITECTURE.md
//! has the map.

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
