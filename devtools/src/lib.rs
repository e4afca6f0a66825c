//! Development tools for lambda-secrets-cache, used by its tests and by `make demo`:
//! a moto launcher, a minimal AWS JSON-protocol client for seeding data, a counting and
//! fault-injecting proxy to put between the extension and moto, a harness that runs the
//! extension binary, and a small HTTP client.

pub mod aws;
pub mod bench;
pub mod client;
pub mod demo;
pub mod extension;
pub mod function;
pub mod local;
pub mod moto;
pub mod null_extension;
pub mod otlp;
pub mod platform;
pub mod process;
pub mod proxy;
pub mod reads;
pub mod rotel;

/// Serves `listener` with the product's shared accept loop until the task is aborted: the
/// fakes here (platform, OTLP receiver, AWS proxy) live as long as whoever started them.
pub fn serve_until_aborted<S, F>(name: &'static str, listener: tokio::net::TcpListener, mut service: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> S + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use lambda_secrets_cache::accept::{Accept, Admit};
    tokio::spawn(async move {
        let never = tokio_util::sync::CancellationToken::new();
        let _ = Accept::new(name).run(listener, never, move || Admit::Serve(service())).await;
    })
}

/// The workspace root (where `.venv/` lives).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("devtools sits inside the workspace")
        .to_path_buf()
}
