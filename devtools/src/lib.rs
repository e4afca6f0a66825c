//! Development tools for lambda-secrets-cache: what its tests run on, and the `lsc-dev`
//! commands (`make demo`, `make bench`, running a function locally). By role, bottom up:
//!
//! - `harness`: child processes with captured output (`process`), the extension binary under
//!   test (`extension`), a small HTTP client (`client`);
//! - `fakes`: real servers on loopback that stand in for what the extension talks to: the
//!   Lambda platform (`platform`: Extensions, Telemetry and Runtime APIs), moto (`moto`) and a
//!   client to seed it (`aws`), a counting, fault-injecting AWS proxy (`proxy`), an OTLP
//!   receiver (`otlp`), the rotel collector (`rotel`); the null extension the benchmarks run
//!   beside ours is its own std-only binary (`lsc-null-extension`);
//! - `local`: a function run locally under AWS's runtime interface clients (`function`), the
//!   reads it made (`reads`), and the `lsc-dev lambda` command (`command`);
//! - `bench`: the `lsc-dev bench-*` commands; `demo`: `make demo`.

pub mod bench;
pub mod demo;
pub mod fakes;
pub mod harness;
pub mod local;

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
