//! `lsc-dev bench-http`: cached reads through the extension vs nginx serving the same bytes
//! as a static file, with wrk, on loopback: sizes × connections, median of `runs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::probe::{Placement, Target, interleaved};
use crate::fakes::aws::AwsJson;
use crate::fakes::moto::Moto;
use crate::fakes::proxy::FaultProxy;
use crate::harness::extension::{Extension, base_env};

const TOKEN: &str = "bench-token";
pub const LUA: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %f %f %f %f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"#;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

pub fn wrk(url: &str, header: Option<&str>, connections: usize, seconds: u64, script: &Path) -> anyhow::Result<Sample> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &connections.min(2).to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{seconds}s"),
    ])
    .arg("-s")
    .arg(script);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .with_context(|| format!("no result from wrk: {text}"))?;
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        bail!("unexpected wrk output: {line}");
    }
    Ok(Sample {
        rps: v[0],
        p50_ms: v[1],
        p90_ms: v[2],
        p99_ms: v[3],
        errors: v[4] as u64,
    })
}

/// nginx serving `dir/www` on an ephemeral loopback port: its best case for static bytes
/// (a worker per core, sendfile, open_file_cache, tcp_nodelay, no access log).
pub struct Nginx {
    pub port: u16,
    child: std::process::Child,
}

impl Nginx {
    pub async fn start(dir: &Path) -> anyhow::Result<Nginx> {
        let port = crate::harness::free_port()?;
        let conf = format!(
            "worker_processes auto; daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; default_type application/json; sendfile on; tcp_nodelay on; keepalive_requests 1000000;\n\
               open_file_cache max=16 inactive=600s; open_file_cache_valid 600s;\n\
               server {{ listen 127.0.0.1:{port}; root {dir}/www; }} }}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let child = Command::new("nginx")
            .args(["-c"])
            .arg(dir.join("nginx.conf"))
            .args(["-p"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx (apt-get install nginx-light)")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Nginx { port, child })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The master's pid (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    /// SIGQUIT to the master: it stops its workers (SIGKILL would leave them running).
    fn drop(&mut self) {
        crate::harness::process::signal_pid(self.child.id(), "QUIT");
        let _ = self.child.wait();
    }
}

/// Each figure's own median over the runs (a tail percentile from one run is noisy).
pub fn median(samples: Vec<Sample>) -> Sample {
    let of = |f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Sample {
        rps: of(|s| s.rps),
        p50_ms: of(|s| s.p50_ms),
        p90_ms: of(|s| s.p90_ms),
        p99_ms: of(|s| s.p99_ms),
        errors: samples.iter().map(|s| s.errors).sum(),
    }
}

/// What every measurement of `run` shares: moto with the secrets seeded, the counting proxy
/// in front of it, a scratch directory with the config files, and the base environment.
struct Fixture {
    moto: Moto,
    proxy: FaultProxy,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

/// The three body sizes served (the JSON bodies of secrets of these many bytes).
const SIZES: [(&str, usize); 3] = [("100 B", 100), ("4 KiB", 4096), ("64 KiB", 65_536)];

impl Fixture {
    async fn new() -> anyhow::Result<Fixture> {
        let moto = Moto::start()?;
        let aws = AwsJson::new(moto.addr);
        let proxy = FaultProxy::start(moto.addr).await?;
        let dir = std::env::temp_dir().join(format!("lsc-bench-http-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("www"))?;
        let mut sized = String::from("secrets:\n");
        for (i, (_, size)) in SIZES.iter().enumerate() {
            let id = format!("bench/size-{i}");
            aws.create_secret(&id, &"s".repeat(*size)).await?;
            sized.push_str(&format!("  - id: {id}\n"));
        }
        let mut ready = String::from("secrets:\n");
        for i in 0..25 {
            aws.create_secret(&format!("bench/ready-{i}"), "r").await?;
            ready.push_str(&format!("  - id: bench/ready-{i}\n"));
        }
        std::fs::write(dir.join("config.yaml"), &sized)?;
        std::fs::write(dir.join("ready.yaml"), &ready)?;
        std::fs::write(dir.join("none.yaml"), "secrets: []\n")?;
        let mut env = base_env(&proxy.endpoint(), TOKEN);
        env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
        env.push(("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL".into(), "info".into()));
        Ok(Fixture { moto, proxy, dir, env })
    }

    /// The base environment with the config file `name` from the scratch directory, and `extra`.
    fn env(&self, config: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.push(("SECRETS_CACHE_CONFIG".into(), self.dir.join(config).display().to_string()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start-up with 25 prefetched secrets: the medians of five starts, the calls it took, RSS.
struct Startup {
    listening: Duration,
    ready: Duration,
    calls: usize,
    idle_rss_kb: u64,
}

async fn measure_startup(bin: &Path, f: &Fixture) -> anyhow::Result<Startup> {
    let env = f.env("ready.yaml", &[]);
    let (mut listening, mut ready) = (Vec::new(), Vec::new());
    let (mut calls, mut idle_rss_kb) = (0, 0);
    for _ in 0..5 {
        f.proxy.reset_counts();
        let started = Instant::now();
        let ext = Extension::start(bin, &["serve"], &env).await?;
        listening.push(started.elapsed());
        ext.wait_log("prefetch finished", Duration::from_secs(10)).await?;
        ready.push(started.elapsed());
        calls = calls.max(f.proxy.total_calls());
        idle_rss_kb = ext.rss_kb();
    }
    listening.sort();
    ready.sort();
    Ok(Startup {
        listening: listening[2],
        ready: ready[2],
        calls,
        idle_rss_kb,
    })
}

/// Upstream calls for 64 concurrent misses of one secret.
async fn measure_misses(bin: &Path, f: &Fixture) -> anyhow::Result<usize> {
    let ext = Extension::start(bin, &["serve"], &f.env("none.yaml", &[])).await?;
    f.proxy.reset_counts();
    let addr = ext.addr;
    let misses: Vec<_> = (0..64)
        .map(|_| {
            tokio::spawn(async move {
                crate::harness::client::get(
                    addr,
                    "/secretsmanager/get?secretId=bench%2Fready-0",
                    &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
                )
                .await
            })
        })
        .collect();
    for m in misses {
        m.await??;
    }
    Ok(f.proxy.total_calls())
}

/// The extension with the three sizes cached against nginx serving the same bytes: wrk at 1,
/// 16 and 64 connections, then the paired one-connection probe. Returns the table and the
/// highest RSS seen under load.
async fn measure_against_nginx(bin: &Path, f: &Fixture, runs: usize, seconds: u64) -> anyhow::Result<(String, Vec<usize>, u64)> {
    let ext = Extension::start(bin, &["serve"], &f.env("config.yaml", &[("SECRETS_MANAGER_TTL", "86400")])).await?;
    ext.wait_log("prefetch finished", Duration::from_secs(10)).await?;
    let mut bodies = Vec::new();
    for i in 0..SIZES.len() {
        let r = ext.get(&format!("/secretsmanager/get?secretId=bench%2Fsize-{i}")).await?;
        std::fs::write(f.dir.join("www").join(format!("size-{i}.json")), &r.body)?;
        bodies.push(r.body.len());
    }
    let nginx = Nginx::start(&f.dir).await?;
    let script = f.dir.join("report.lua");
    std::fs::write(&script, LUA)?;
    let header = format!("X-Aws-Parameters-Secrets-Token: {TOKEN}");
    let mut table = String::from(
        "| body | connections | extension req/s | nginx req/s | ratio | ext p50 / p90 / p99 ms | nginx p50 / p90 / p99 ms |\n|---|---|---|---|---|---|---|\n",
    );
    let mut load_rss = 0;
    for (i, (label, _)) in SIZES.iter().enumerate() {
        for conns in [1usize, 16, 64] {
            let ext_url = format!("http://{}/secretsmanager/get?secretId=bench%2Fsize-{i}", ext.addr);
            let ngx_url = format!("http://127.0.0.1:{}/size-{i}.json", nginx.port);
            let (mut e, mut n) = (Vec::new(), Vec::new());
            // One connection measures latency more than throughput: more runs for its tail.
            for _ in 0..if conns == 1 { runs.max(5) } else { runs } {
                e.push(wrk(&ext_url, Some(&header), conns, seconds, &script)?);
                load_rss = load_rss.max(ext.rss_kb());
                n.push(wrk(&ngx_url, None, conns, seconds, &script)?);
            }
            let (e, n) = (median(e), median(n));
            // wrk counts non-2xx answers as errors: a server answering 403 or 404 fast
            // would make a meaningless comparison, so either one's errors stop the run.
            if e.errors > 0 || n.errors > 0 {
                bail!(
                    "{label} at {conns}: {} errors from the extension, {} from nginx",
                    e.errors,
                    n.errors
                );
            }
            table.push_str(&format!(
                "| {label} | {conns} | {:.0} | {:.0} | {:.2} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} |\n",
                e.rps,
                n.rps,
                e.rps / n.rps,
                e.p50_ms,
                e.p90_ms,
                e.p99_ms,
                n.p50_ms,
                n.p90_ms,
                n.p99_ms
            ));
        }
    }
    table.push_str(&paired_latency(&ext, &nginx, &header, 20_000 * seconds as usize).await?);
    Ok((table, bodies, load_rss))
}

/// One connection's latency, paired: both servers, alternating, every request kept.
async fn paired_latency(ext: &Extension, nginx: &Nginx, header: &str, requests: usize) -> anyhow::Result<String> {
    let mut table = format!(
        "\nLatency at one connection, paired: {requests} requests to each server over one keep-alive connection each, \
         alternating blocks of 200, every request's time kept (exact percentiles over all of them; a blocking Rust client, not wrk). \
         The client and both servers pinned to one CPU, then the servers to the other CPU (see devtools/src/bench/probe.rs):\n\n\
         | body | placement | extension p50 / p90 / p99 / p99.9 ms | nginx p50 / p90 / p99 / p99.9 ms | p99 ratio |\n|---|---|---|---|---|\n"
    );
    for (i, (label, _)) in SIZES.iter().enumerate() {
        for placement in Placement::available() {
            let targets = [
                Target {
                    addr: ext.addr,
                    path: format!("/secretsmanager/get?secretId=bench%2Fsize-{i}"),
                    header: Some(header.to_string()),
                    pids: vec![ext.pid()],
                },
                Target {
                    addr: nginx.addr(),
                    path: format!("/size-{i}.json"),
                    header: None,
                    pids: vec![nginx.pid()],
                },
            ];
            let mut p = tokio::task::spawn_blocking(move || interleaved(&targets, requests, placement)).await??;
            let row = |v: &mut Vec<f64>| {
                [50.0, 90.0, 99.0, 99.9]
                    .map(|q| format!("{:.3}", super::percentile(v, q)))
                    .join(" / ")
            };
            let ratio = super::percentile(&mut p[0], 99.0) / super::percentile(&mut p[1], 99.0);
            table.push_str(&format!(
                "| {label} | {} | {} | {} | {ratio:.2} |\n",
                placement.label(),
                row(&mut p[0]),
                row(&mut p[1])
            ));
        }
    }
    Ok(table)
}

/// The same extension with telemetry on: metrics and a span per read exported over OTLP/HTTP
/// to the in-repo receiver every second. Returns the table, the highest RSS and the exports.
async fn measure_with_telemetry(bin: &Path, f: &Fixture, runs: usize, seconds: u64) -> anyhow::Result<(String, u64, usize)> {
    let receiver = crate::fakes::otlp::OtlpReceiver::start().await?;
    let endpoint = receiver.endpoint();
    let env = f.env(
        "config.yaml",
        &[
            ("SECRETS_MANAGER_TTL", "86400"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    );
    let ext = Extension::start(bin, &["serve"], &env).await?;
    ext.wait_log("prefetch finished", Duration::from_secs(10)).await?;
    let (script, header) = (f.dir.join("report.lua"), format!("X-Aws-Parameters-Secrets-Token: {TOKEN}"));
    let mut table = String::from(
        "\nWith telemetry on (OTLP/HTTP to the in-repo receiver, export every 1 s, a span per read):\n\n\
         | body | connections | extension req/s | ext p50 / p90 / p99 ms |\n|---|---|---|---|\n",
    );
    let mut rss = 0;
    for (i, (label, _)) in SIZES.iter().enumerate().take(2) {
        let url = format!("http://{}/secretsmanager/get?secretId=bench%2Fsize-{i}", ext.addr);
        let mut e = Vec::new();
        for _ in 0..runs {
            e.push(wrk(&url, Some(&header), 64, seconds, &script)?);
            rss = rss.max(ext.rss_kb());
        }
        let e = median(e);
        table.push_str(&format!(
            "| {label} | 64 | {:.0} | {:.3} / {:.3} / {:.3} |\n",
            e.rps, e.p50_ms, e.p90_ms, e.p99_ms
        ));
    }
    Ok((table, rss, receiver.metric_exports()))
}

/// The uncached path for scale: GetSecretValue straight to moto (4 KiB secret).
fn measure_moto(f: &Fixture, runs: usize, seconds: u64) -> anyhow::Result<String> {
    let script = f.dir.join("moto.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{{\"SecretId\":\"bench/size-1\"}}'\n\
             wrk.headers[\"Content-Type\"] = \"application/x-amz-json-1.1\"\n\
             wrk.headers[\"X-Amz-Target\"] = \"secretsmanager.GetSecretValue\"\n\
             wrk.headers[\"Authorization\"] = \"AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0\"\n{LUA}"
        ),
    )?;
    let mut table = String::from(
        "\nReference: GetSecretValue straight to moto (the uncached path, 4 KiB):\n\n| connections | req/s | p50 / p90 / p99 ms |\n|---|---|---|\n",
    );
    for conns in [1usize, 16] {
        let m = median(
            (0..runs)
                .map(|_| wrk(&format!("{}/", f.moto.endpoint()), None, conns, seconds, &script))
                .collect::<Result<_, _>>()?,
        );
        table.push_str(&format!(
            "| {conns} | {:.0} | {:.3} / {:.3} / {:.3} |\n",
            m.rps, m.p50_ms, m.p90_ms, m.p99_ms
        ));
    }
    Ok(table)
}

/// `lsc-dev bench-http`: the measurements above, in one Markdown report.
pub async fn run(bin: &Path, runs: usize, seconds: u64) -> anyhow::Result<String> {
    let f = Fixture::new().await?;
    let startup = measure_startup(bin, &f).await?;
    let miss_calls = measure_misses(bin, &f).await?;
    let (mut table, bodies, load_rss) = measure_against_nginx(bin, &f, runs, seconds).await?;
    let (telemetry, otel_rss, exports) = measure_with_telemetry(bin, &f, runs, seconds).await?;
    table.push_str(&telemetry);
    table.push_str(&measure_moto(&f, runs, seconds)?);
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    Ok(format!(
        "# Benchmark results\n\nMachine: {}. Release build, loopback, wrk ({runs} runs of {seconds} s each, 5 at 1 connection; each figure the median over the runs), \
         nginx serving the same bytes as a static file in the same run (a worker per core, sendfile, open_file_cache, tcp_nodelay, no access log). Body sizes are the JSON bodies ({bodies:?} bytes).\n\n{table}\n\
         | other | value |\n|---|---|\n\
         | exec → listening (25 secrets configured; median of 5 starts) | {:.1} ms |\n\
         | exec → prefetch of 25 secrets done (median of 5) | {:.1} ms |\n\
         | upstream calls for that prefetch | {} |\n\
         | upstream calls for 64 concurrent misses of one secret | {miss_calls} |\n\
         | RSS idle (after prefetch) | {:.1} MB |\n\
         | RSS under load (max seen) | {:.1} MB |\n\
         | RSS under load, telemetry on (max seen; {exports} metric exports) | {:.1} MB |\n\
         | stripped binary | {:.1} MB |\n",
        super::machine(),
        startup.listening.as_secs_f64() * 1000.0,
        startup.ready.as_secs_f64() * 1000.0,
        startup.calls,
        startup.idle_rss_kb as f64 / 1024.0,
        load_rss as f64 / 1024.0,
        otel_rss as f64 / 1024.0,
        size as f64 / 1_048_576.0
    ))
}
