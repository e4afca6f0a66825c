//! `lsc-dev bench-flush`: what holding `/next` costs per invocation. For each setting (no
//! OTLP, export to a loopback collector, to rotel, to a collector that is down) it runs N
//! invocations under the fake platform and measures, per invocation, the time from the
//! delivery of `platform.runtimeDone` to the extension's `/next`: the export plus bookkeeping,
//! i.e. the billed time the extension adds after the function is done.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use crate::aws::AwsJson;
use crate::extension::{Extension, base_env};
use crate::moto::Moto;
use crate::otlp::OtlpReceiver;
use crate::platform::{FakeLambda, Options, runtime};
use crate::proxy::FaultProxy;

const TOKEN: &str = "bench-token";

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0.0)
}

/// Per-invocation runtimeDone → `/next` in ms, for one setting.
async fn measure(bin: &Path, proxy: &FaultProxy, otel: &[(&str, String)], n: usize) -> anyhow::Result<Vec<f64>> {
    let platform = FakeLambda::start(Options::default()).await?;
    let dir = std::env::temp_dir().join(format!("lsc-bench-{}-{}", std::process::id(), platform.addr.port()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.yaml");
    std::fs::write(&config, "secrets:\n  - id: bench/secret\n")?;
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
    for (k, v) in [
        ("AWS_LAMBDA_RUNTIME_API", platform.runtime_api()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".into()),
        ("SECRETS_CACHE_SANDBOX_HOST", "127.0.0.1".into()),
        ("SECRETS_CACHE_CONFIG", config.display().to_string()),
        ("SECRETS_CACHE_FLUSH", "end".into()),
        ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info".into()),
    ] {
        env.push((k.to_string(), v));
    }
    for (k, v) in otel {
        env.push((k.to_string(), v.clone()));
    }
    let mut ext = Extension::spawn(bin, &[], &env)?;
    let addr = ext.wait_listening().await?;
    let handler = runtime::handler(move |_inv: runtime::Invocation| async move {
        for _ in 0..3 {
            let r = crate::client::get(
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
        bail!("init failed: {:?}", init.errors);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let o = platform.invoke("{}").await?;
        if let Err(e) = o.response {
            bail!("invocation failed: {e}");
        }
        let next = *platform.next_calls().last().expect("the extension called next");
        let delivered = platform
            .deliveries()
            .iter()
            .find(|d| d.carries("platform.runtimeDone", &o.request_id))
            .map(|d| d.at);
        if let Some(at) = delivered {
            out.push(next.saturating_sub(at).as_secs_f64() * 1000.0);
        }
    }
    platform.shutdown("spindown", Duration::from_millis(500)).await;
    let _ = ext.wait_exit(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

pub async fn run(bin: &Path, n: usize) -> anyhow::Result<()> {
    if !bin.exists() {
        bail!("{} not found: build it with `cargo build --release`", bin.display());
    }
    let moto = Moto::start()?;
    AwsJson::new(moto.addr).create_secret("bench/secret", "{\"k\":\"bench\"}").await?;
    let proxy = FaultProxy::start(moto.addr).await?;
    let receiver = OtlpReceiver::start().await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let rotel = crate::rotel::Rotel::start().await.ok();

    let mut settings: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no OTLP endpoint", vec![]),
        (
            "OTLP/HTTP to the in-repo receiver",
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())],
        ),
    ];
    if let Some(r) = &rotel {
        settings.push(("OTLP/HTTP to rotel", vec![("OTEL_EXPORTER_OTLP_ENDPOINT", r.endpoint.clone())]));
        settings.push((
            "OTLP/gRPC to rotel",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", r.grpc_endpoint.clone()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ],
        ));
    }
    settings.push((
        "collector down (timeout 300 ms)",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".into()),
        ],
    ));

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("runtimeDone delivered -> /next, {n} invocations each (3 cached reads per invocation), {cores} cores\n");
    println!("| setting | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    for (name, otel) in settings {
        let v = measure(bin, &proxy, &otel, n).await?;
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            percentile(v.clone(), 0.5),
            percentile(v.clone(), 0.99),
            v.iter().copied().fold(0.0, f64::max)
        );
    }
    Ok(())
}
