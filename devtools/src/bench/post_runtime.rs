//! `lsc-dev bench-post-runtime`: what the extension adds to every invocation's bill. Lambda bills
//! the time from the runtime's response to the last extension's `/event/next` (the
//! post-runtime extension duration), and the environment takes no other request meanwhile.
//! Each setting runs N invocations of a function that makes three cached reads, under the fake
//! platform with two extensions registered: ours and the null extension, which calls `/next`
//! at once (what the peers do). Both are measured from the same responses, so the null
//! extension's figures are the floor on this machine in the same stretch of time.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::percentile;
use crate::fakes::aws::AwsJson;
use crate::fakes::moto::Moto;
use crate::fakes::otlp::OtlpReceiver;
use crate::fakes::platform::{FakeLambda, Options, runtime};
use crate::fakes::proxy::{Fault, FaultKind, FaultProxy};
use crate::harness::extension::{Extension, base_env};

const TOKEN: &str = "bench-token";
const SECRET: &str = "bench/secret";
/// The file name our extension registers under, and the null extension's.
const OURS: &str = "lambda-secrets-cache";
const NULL: &str = "null-extension";

struct Setting {
    name: String,
    env: Vec<(&'static str, String)>,
    /// Latency the proxy adds to every AWS call.
    aws_latency: Option<Duration>,
    /// A TTL and refresh-ahead point that make a refresh due at every invocation.
    refresh_due: bool,
}

impl Setting {
    fn new(name: &str, env: Vec<(&'static str, String)>) -> Setting {
        Setting {
            name: name.into(),
            env,
            aws_latency: None,
            refresh_due: false,
        }
    }
}

struct Row {
    ours: Vec<f64>,
    null: Vec<f64>,
    /// Exports attempted and failed, from `/status`.
    exports: Option<(u64, u64)>,
}

/// One environment with both extensions; per invocation the post-runtime duration of each.
async fn measure(bin: &Path, null_bin: &Path, proxy: &FaultProxy, setting: &Setting, n: usize) -> anyhow::Result<Row> {
    let platform = FakeLambda::start(Options {
        extensions: 2,
        ..Options::default()
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("lsc-bench-{}-{}", std::process::id(), platform.addr.port()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.yaml");
    let ttl = if setting.refresh_due { "    ttl: 10s\n" } else { "" };
    std::fs::write(&config, format!("secrets:\n  - id: {SECRET}\n{ttl}"))?;
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
    let mut extra: Vec<(&str, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API", platform.runtime_api()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".into()),
        ("SECRETS_CACHE_SANDBOX_HOST", "127.0.0.1".into()),
        ("SECRETS_CACHE_CONFIG", config.display().to_string()),
        ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info".into()),
    ];
    if setting.refresh_due {
        // Due 1 ms (± 10 %) after each fetch: every invocation finds it due.
        extra.push(("SECRETS_CACHE_REFRESH_AHEAD", "0.0001".into()));
    }
    extra.extend(setting.env.iter().cloned());
    env.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    let ext = Extension::spawn(bin, &[], &env)?;
    let null_env = vec![("AWS_LAMBDA_RUNTIME_API".to_string(), platform.runtime_api())];
    let _null = Extension::spawn(null_bin, &["--name", NULL], &null_env)?;
    let mut ext = ext;
    let addr = ext.wait_listening().await?;
    let handler = runtime::handler(move |_inv: runtime::Invocation| async move {
        for _ in 0..3 {
            let r = crate::harness::client::get(
                addr,
                "/secretsmanager/get?secretId=bench%2Fsecret",
                &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
            )
            .await
            .map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("read answered {}", r.status));
            }
        }
        Ok("ok".into())
    });
    runtime::spawn(&platform, None, handler);
    let init = platform.wait_init(Duration::from_secs(20)).await?;
    if !init.errors.is_empty() {
        bail!("init failed: {:?}\n{}", init.errors, ext.logs().join("\n"));
    }
    if let Some(latency) = setting.aws_latency {
        proxy.inject(Fault::always(FaultKind::Delay(latency)));
    }
    let mut row = Row {
        ours: Vec::with_capacity(n),
        null: Vec::with_capacity(n),
        exports: None,
    };
    for _ in 0..n {
        let o = platform.invoke("{}").await?;
        if let Err(e) = o.response {
            bail!("invocation failed: {e}\n{}", ext.logs().join("\n"));
        }
        for (name, post) in &o.post_runtime {
            let ms = post.as_secs_f64() * 1000.0;
            match name.as_str() {
                OURS => row.ours.push(ms),
                NULL => row.null.push(ms),
                other => bail!("an unexpected extension {other} registered"),
            }
        }
    }
    proxy.clear_faults();
    let status = ext.get("/status").await?.json();
    row.exports = status["otlp"]["exports"]
        .as_u64()
        .map(|e| (e, status["otlp"]["failures"].as_u64().unwrap_or(0)));
    platform.shutdown("spindown", Duration::from_millis(1000)).await;
    let _ = ext.wait_exit(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(row)
}

/// Register → our first `/next` (the Init the extension adds), with three configured secrets
/// and `latency` on every AWS call; `required` marks one of them `required: true`.
async fn init_time(bin: &Path, proxy: &FaultProxy, latency: Duration, required: bool) -> anyhow::Result<Duration> {
    let platform = FakeLambda::start(Options::default()).await?;
    let dir = std::env::temp_dir().join(format!("lsc-bench-init-{}-{}", std::process::id(), platform.addr.port()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.yaml");
    let mut yaml = String::from("secrets:\n");
    for i in 0..3 {
        yaml.push_str(&format!("  - id: bench/init-{i}\n"));
    }
    if required {
        yaml.push_str("    required: true\n");
    }
    std::fs::write(&config, yaml)?;
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    env.extend(
        [
            ("AWS_LAMBDA_RUNTIME_API", platform.runtime_api()),
            ("SECRETS_CACHE_CONFIG", config.display().to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    proxy.inject(Fault::always(FaultKind::Delay(latency)));
    let mut ext = Extension::spawn(bin, &[], &env)?;
    ext.wait_listening().await?;
    runtime::spawn(&platform, None, runtime::handler(|_| async { Ok("ok".to_string()) }));
    let init = platform.wait_init(Duration::from_secs(20)).await;
    proxy.clear_faults();
    let init = init?;
    if !init.errors.is_empty() {
        bail!("init failed: {:?}", init.errors);
    }
    let registered = platform.requests_to("/2020-01-01/extension/register")[0].at;
    let first_next = *platform.next_calls().first().context("no /next")?;
    platform.shutdown("spindown", Duration::from_millis(500)).await;
    let _ = ext.wait_exit(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(first_next.saturating_sub(registered))
}

fn row_text(v: &mut [f64]) -> String {
    format!(
        "{:.2} / {:.2} / {:.2}",
        percentile(v, 50.0),
        percentile(v, 99.0),
        percentile(v, 100.0)
    )
}

/// Every setting of `make bench`, as a Markdown section.
pub async fn run(bin: &Path, null_bin: &Path, n: usize) -> anyhow::Result<String> {
    for b in [bin, null_bin] {
        if !b.exists() {
            bail!("{} not found: build it with `cargo build --release`", b.display());
        }
    }
    let moto = Moto::start()?;
    let aws = AwsJson::new(moto.addr);
    aws.create_secret(SECRET, "{\"k\":\"bench\"}").await?;
    for i in 0..3 {
        aws.create_secret(&format!("bench/init-{i}"), "i").await?;
    }
    let proxy = FaultProxy::start(moto.addr).await?;
    let receiver = OtlpReceiver::start().await?;
    let hung = OtlpReceiver::start().await?;
    hung.set_delay(Some(Duration::from_secs(30)));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let rotel = crate::fakes::rotel::Rotel::start().await.ok();

    let settings = settings(&receiver, &hung, closed, rotel.as_ref());

    let mut out = format!(
        "Post-runtime duration: the runtime's response → the extension's next `/event/next`, per \
         invocation (zero when the extension was back first), {n} invocations per setting, a function \
         making 3 cached reads, the fake platform with two extensions: this one and a null extension \
         that calls `/next` at once (the floor, measured from the same responses). {}.\n\n\
         | setting | extension p50 / p99 / max ms | null extension p50 / p99 / max ms | exports (failed) |\n|---|---|---|---|\n",
        super::machine()
    );
    for setting in &settings {
        let mut row = measure(bin, null_bin, &proxy, setting, n)
            .await
            .with_context(|| setting.name.clone())?;
        let exports = row.exports.map_or("—".to_string(), |(e, f)| format!("{e} ({f})"));
        out.push_str(&format!(
            "| {} | {} | {} | {exports} |\n",
            setting.name,
            row_text(&mut row.ours),
            row_text(&mut row.null)
        ));
    }

    out.push_str(&init_table(bin, &proxy).await?);
    Ok(out)
}

/// The settings measured: no exporter, the exporter's policies, real collectors, collectors
/// that fail, and a refresh due at every invocation.
fn settings(
    receiver: &OtlpReceiver,
    hung: &OtlpReceiver,
    closed: std::net::SocketAddr,
    rotel: Option<&crate::fakes::rotel::Rotel>,
) -> Vec<Setting> {
    let endpoint = |e: String| ("OTEL_EXPORTER_OTLP_ENDPOINT", e);
    let every = ("SECRETS_CACHE_FLUSH", "periodic:0".to_string());
    let short = ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".to_string());
    let mut settings = vec![
        Setting::new("no OTLP endpoint (no Telemetry API subscription)", vec![]),
        Setting::new(
            "OTLP/HTTP to the in-repo receiver, default policy (`periodic`, at most every 20 s)",
            vec![endpoint(receiver.endpoint())],
        ),
        Setting::new(
            "OTLP/HTTP to the in-repo receiver, an export at every invocation's start (`periodic:0`)",
            vec![endpoint(receiver.endpoint()), every.clone()],
        ),
        Setting::new(
            "OTLP/HTTP to the in-repo receiver, `SECRETS_CACHE_FLUSH=end`",
            vec![endpoint(receiver.endpoint()), ("SECRETS_CACHE_FLUSH", "end".into())],
        ),
    ];
    if let Some(r) = rotel {
        settings.push(Setting::new(
            "OTLP/HTTP to rotel, `periodic:0`",
            vec![endpoint(r.endpoint.clone()), every.clone()],
        ));
        settings.push(Setting::new(
            "OTLP/gRPC to rotel, `periodic:0`",
            vec![
                endpoint(r.grpc_endpoint.clone()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
                every.clone(),
            ],
        ));
    }
    settings.push(Setting::new(
        "collector down (connection refused), `periodic:0`, timeout 300 ms",
        vec![endpoint(format!("http://{closed}")), every.clone(), short.clone()],
    ));
    settings.push(Setting::new(
        "collector hung (accepts, never answers), `periodic:0`, timeout 300 ms",
        vec![endpoint(hung.endpoint()), every.clone(), short.clone()],
    ));
    settings.push(Setting {
        aws_latency: Some(Duration::from_millis(20)),
        refresh_due: true,
        ..Setting::new("a refresh-ahead due at every invocation, AWS latency 20 ms, no OTLP", vec![])
    });

    settings
}

/// Init: what the prefetch adds before the first `/next`, with AWS answering in 100 ms.
async fn init_table(bin: &Path, proxy: &FaultProxy) -> anyhow::Result<String> {
    let latency = Duration::from_millis(100);
    let mut table = String::from(
        "\nInit: register → the extension's first `/next`, 3 configured secrets, every AWS call delayed \
         100 ms at the proxy (median of 3):\n\n| prefetch | register → first /next ms |\n|---|---|\n",
    );
    for (label, required) in [("no entry `required`", false), ("one entry `required: true`", true)] {
        let mut times = Vec::new();
        for _ in 0..3 {
            times.push(init_time(bin, proxy, latency, required).await?.as_secs_f64() * 1000.0);
        }
        table.push_str(&format!("| {label} | {:.1} |\n", percentile(&mut times, 50.0)));
    }
    Ok(table)
}
