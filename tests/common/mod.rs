//! Shared set-up for the integration tests: one moto per test binary, and per test a counting
//! proxy in front of it plus the extension binary in standalone mode pointed at the proxy.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use lsc_devtools::aws::AwsJson;
use lsc_devtools::extension::{Extension, base_env};
use lsc_devtools::moto::Moto;
use lsc_devtools::proxy::FaultProxy;

pub const TOKEN: &str = "test-token-7f3a";
pub const BIN: &str = env!("CARGO_BIN_EXE_lambda-secrets-cache");

pub struct Harness {
    pub aws: AwsJson,
    pub proxy: FaultProxy,
    pub ext: Extension,
}

/// A name no other test in this process uses, so tests can share one moto.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn aws() -> AwsJson {
    AwsJson::new(Moto::shared().addr)
}

/// moto + proxy + extension (`serve`) with `extra` environment on top of the defaults.
pub async fn start(extra: &[(&str, &str)]) -> Harness {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(moto.addr).await.expect("proxy starts");
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
    let ext = Extension::start(BIN.as_ref(), &["serve"], &env).await.expect("extension starts");
    Harness {
        aws: AwsJson::new(moto.addr),
        proxy,
        ext,
    }
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn secret_path(id: &str) -> String {
    format!("/secretsmanager/get?secretId={}", encode(id))
}

pub fn parameter_path(name: &str, extra: &str) -> String {
    format!("/systemsmanager/parameters/get?name={}{extra}", encode(name))
}

/// The `/status` entry for `id`.
pub fn status_item(status: &serde_json::Value, id: &str) -> serde_json::Value {
    let items = status["cache"]["items"].as_array().expect("status lists items");
    items
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in /status: {status}"))
        .clone()
}
