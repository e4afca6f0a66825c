//! Development tools for lambda-secrets-cache, used by its tests and by `make demo`:
//! a moto launcher, a minimal AWS JSON-protocol client for seeding data, a counting and
//! fault-injecting proxy to put between the extension and moto, a harness that runs the
//! extension binary, and a small HTTP client.

pub mod aws;
pub mod bench;
pub mod client;
pub mod demo;
pub mod extension;
pub mod moto;
pub mod null_extension;
pub mod otlp;
pub mod platform;
pub mod proxy;
pub mod rotel;

/// The workspace root (where `.venv/` lives).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("devtools sits inside the workspace")
        .to_path_buf()
}
