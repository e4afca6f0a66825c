//! Shared set-up for the integration tests: one moto per test binary, and per test a counting
//! proxy in front of it plus the extension binary in standalone mode pointed at the proxy.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use lsc_devtools::fakes::aws::AwsJson;
use lsc_devtools::fakes::moto::Moto;
use lsc_devtools::fakes::proxy::FaultProxy;
use lsc_devtools::harness::extension::{Extension, base_env};

pub const TOKEN: &str = "test-token-7f3a";
/// The header every read sends, with `TOKEN`.
pub const TOKEN_HEADER: (&str, &str) = ("X-Aws-Parameters-Secrets-Token", TOKEN);

/// The extension binary the tests start: the one cargo built, or `LSC_EXTENSION_BIN` (see
/// `lsc_devtools::harness::extension`).
pub fn bin() -> std::path::PathBuf {
    lsc_devtools::harness::extension::under_test(env!("CARGO_BIN_EXE_lambda-secrets-cache").as_ref())
}

/// A command running the binary under test (under `LSC_EXTENSION_RUNNER` when set).
pub fn bin_command() -> std::process::Command {
    lsc_devtools::harness::extension::command(&bin())
}

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
    start_with_faults(extra, Vec::new()).await
}

/// As `start`, with `faults` injected at the proxy before the extension starts (its prefetch
/// meets them).
pub async fn start_with_faults(extra: &[(&str, &str)], faults: Vec<lsc_devtools::fakes::proxy::Fault>) -> Harness {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(moto.addr).await.expect("proxy starts");
    for fault in faults {
        proxy.inject(fault);
    }
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
    let ext = Extension::start(&bin(), &["serve"], &env).await.expect("extension starts");
    Harness {
        aws: AwsJson::new(moto.addr),
        proxy,
        ext,
    }
}

/// A GET of `path` with the token, started now; its answer when joined.
pub fn spawn_get(addr: std::net::SocketAddr, path: String) -> tokio::task::JoinHandle<lsc_devtools::harness::client::Response> {
    tokio::spawn(async move {
        lsc_devtools::harness::client::get(addr, &path, &[TOKEN_HEADER])
            .await
            .expect("the extension answers")
    })
}

/// `n` GETs of `path` sent at once on separate connections; their answers, in order.
pub async fn concurrent_gets(addr: std::net::SocketAddr, path: &str, n: usize) -> Vec<lsc_devtools::harness::client::Response> {
    let reads: Vec<_> = (0..n).map(|_| spawn_get(addr, path.to_string())).collect();
    let mut out = Vec::with_capacity(n);
    for r in reads {
        out.push(r.await.expect("the read task ends"));
    }
    out
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

/// `/status`, as JSON.
pub async fn status(ext: &Extension) -> serde_json::Value {
    ext.get("/status").await.expect("/status answers").json()
}

/// `n` secrets in moto named after `prefix` (unique), with values `value-0`, `value-1`, ….
pub async fn seeded_secrets(prefix: &str, n: usize) -> Vec<String> {
    let aws = aws();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = unique(&format!("{prefix}{i}"));
        aws.create_secret(&id, &format!("value-{i}")).await.expect("secret created");
        ids.push(id);
    }
    ids
}

/// An error as the function must see it: `status` (a real error status), JSON
/// `{"__type": kind, "message": …}` with a message, no `X-Cache`, and none of `values`.
pub fn assert_api_error(r: &lsc_devtools::harness::client::Response, status: u16, kind: &str, values: &[&str], case: &str) {
    assert_eq!(
        (r.status, r.json()["__type"].as_str()),
        (status, Some(kind)),
        "{case}: {}",
        r.text()
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{case}");
    assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}: {}", r.text());
    assert_eq!(r.header("x-cache"), None, "{case}");
    for v in values {
        assert!(!r.text().contains(v), "{case}: the error body carries a value");
    }
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

/// moto + proxy + fake Lambda platform + the extension in extension mode, and a scripted
/// runtime whose handler reads the paths listed in each payload from the extension.
pub struct Lambda {
    pub aws: AwsJson,
    pub proxy: FaultProxy,
    pub platform: lsc_devtools::fakes::platform::FakeLambda,
    pub ext: Extension,
    pub config_file: Option<std::path::PathBuf>,
}

impl Drop for Lambda {
    fn drop(&mut self) {
        if let Some(path) = &self.config_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The environment the extension gets under the fake platform.
pub fn lambda_env(
    proxy: &FaultProxy,
    platform: &lsc_devtools::fakes::platform::FakeLambda,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    // What Lambda sets, but the region: `base_env` names the one moto is reached in.
    let lambda = platform.process_env().into_iter().filter(|(k, _)| *k != "AWS_REGION");
    let ours = [
        ("SECRETS_CACHE_SANDBOX_HOST", "127.0.0.1".to_string()),
        // Generous on a loaded CI machine; the no-telemetry tests set their own.
        ("SECRETS_CACHE_RUNTIME_DONE_WAIT", "2s".to_string()),
    ];
    for (k, v) in lambda.chain(ours) {
        env.push((k.to_string(), v));
    }
    // An empty value removes the variable.
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        if !v.is_empty() {
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

/// Writes `yaml` to a fresh temporary file.
pub fn config_file(yaml: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.yaml", unique("lsc-config")));
    std::fs::write(&path, yaml).expect("temp dir is writable");
    path
}

/// Starts everything without waiting for the extension to listen (it may fail init).
pub async fn spawn_lambda(options: lsc_devtools::fakes::platform::Options, yaml: Option<&str>, extra: &[(&str, &str)]) -> Lambda {
    spawn_lambda_with_faults(options, yaml, extra, Vec::new()).await
}

/// As `spawn_lambda`, with `faults` injected at the proxy before the extension starts (its
/// prefetch meets them).
pub async fn spawn_lambda_with_faults(
    options: lsc_devtools::fakes::platform::Options,
    yaml: Option<&str>,
    extra: &[(&str, &str)],
    faults: Vec<lsc_devtools::fakes::proxy::Fault>,
) -> Lambda {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(moto.addr).await.expect("proxy starts");
    for fault in faults {
        proxy.inject(fault);
    }
    let platform = lsc_devtools::fakes::platform::FakeLambda::start(options)
        .await
        .expect("platform starts");
    let config = yaml.map(config_file);
    let mut env = lambda_env(&proxy, &platform, extra);
    if let Some(path) = &config {
        env.push(("SECRETS_CACHE_CONFIG".into(), path.display().to_string()));
    }
    let ext = Extension::spawn(&bin(), &[], &env).expect("extension starts");
    Lambda {
        aws: AwsJson::new(moto.addr),
        proxy,
        platform,
        ext,
        config_file: config,
    }
}

/// As `spawn_lambda`, then waits until it listens and attaches the reading runtime.
pub async fn start_lambda(options: lsc_devtools::fakes::platform::Options, yaml: Option<&str>, extra: &[(&str, &str)]) -> Lambda {
    let mut lambda = spawn_lambda(options, yaml, extra).await;
    lambda.ext.wait_listening().await.expect("extension listens");
    lambda.attach_reader(None);
    lambda
}

/// What the reading function returns per path: status and `X-Cache`.
pub type Reads = Vec<(u16, String)>;

impl Lambda {
    /// A runtime whose handler GETs every path in the payload (a JSON array) from the
    /// extension; `init_paths` are read during function init.
    pub fn attach_reader(&self, init_paths: Option<Vec<String>>) -> tokio::sync::oneshot::Receiver<Reads> {
        use lsc_devtools::fakes::platform::runtime;
        let addr = self.ext.addr;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let init: Option<runtime::BoxFuture<()>> = init_paths.map(|paths| {
            Box::pin(async move {
                let _ = tx.send(read_all(addr, &paths).await);
            }) as runtime::BoxFuture<()>
        });
        runtime::spawn(&self.platform, init, reader(addr));
        rx
    }

    /// Sends SHUTDOWN with `deadline` and asserts the extension exits 0 before it (the logs
    /// are shown if not). Returns the time from SHUTDOWN to the exit.
    pub async fn shutdown_exits_in_time(&mut self, deadline: std::time::Duration) -> std::time::Duration {
        let at = self.platform.shutdown("spindown", deadline).await;
        let sent = std::time::Instant::now();
        let status = self
            .ext
            .wait_exit(at.saturating_duration_since(sent))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("still running at the SHUTDOWN deadline:\n{}", self.ext.logs().join("\n")));
        assert!(status.success(), "{status}\n{}", self.ext.logs().join("\n"));
        sent.elapsed()
    }

    /// Runs one invocation that reads `paths`; returns the outcome and what each read got.
    pub async fn invoke(&self, paths: &[String]) -> (lsc_devtools::fakes::platform::InvokeOutcome, Reads) {
        let outcome = self
            .platform
            .invoke(&serde_json::to_string(paths).unwrap())
            .await
            .expect("invoke runs");
        let reads = match &outcome.response {
            Ok(body) => serde_json::from_str(body).expect("the reader answers JSON"),
            Err(e) => panic!("invocation failed: {e}\n{}", self.ext.logs().join("\n")),
        };
        (outcome, reads)
    }
}

/// The function's handler: GET every path in the payload (a JSON array) from the extension at
/// `addr` and answer with what each read got.
pub fn reader(addr: std::net::SocketAddr) -> lsc_devtools::fakes::platform::runtime::Handler {
    lsc_devtools::fakes::platform::runtime::handler(move |inv: lsc_devtools::fakes::platform::runtime::Invocation| async move {
        let paths: Vec<String> = serde_json::from_str(&inv.payload).map_err(|e| e.to_string())?;
        let reads = read_all(addr, &paths).await;
        Ok(serde_json::to_string(&reads).expect("reads serialise"))
    })
}

pub async fn read_all(addr: std::net::SocketAddr, paths: &[String]) -> Reads {
    let mut out = Vec::new();
    for p in paths {
        match lsc_devtools::harness::client::get(addr, p, &[TOKEN_HEADER]).await {
            Ok(r) => out.push((r.status, r.header("x-cache").unwrap_or("-").to_string())),
            Err(e) => out.push((0, e.to_string())),
        }
    }
    out
}

/// Writes `request` on `stream` and reads one answer (head, then its Content-Length body);
/// whatever came before the connection closed if it closed first. At most 5 s.
pub async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return format!("write failed: {e}");
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    // One response: the head, then its Content-Length body.
    loop {
        let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await {
            Err(_) => return format!("no answer within 5 s: {}", String::from_utf8_lossy(&out)),
            Ok(Err(e)) => return format!("read failed: {e}"),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                return text;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}
