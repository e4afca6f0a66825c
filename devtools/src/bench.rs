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

/// The `p`th percentile (0–100) of `v`, nearest rank.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len().max(1) - 1) as f64 * p / 100.0).round() as usize)
        .copied()
        .unwrap_or(0.0)
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
        let mut v = measure(bin, &proxy, &otel, n).await?;
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            percentile(&mut v, 50.0),
            percentile(&mut v, 99.0),
            percentile(&mut v, 100.0)
        );
    }
    Ok(())
}

/// `lsc-dev bench-http`: cached reads through the extension vs nginx serving the same bytes
/// as a static file, with wrk, on loopback: sizes × connections, median of `runs`.
pub mod http {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};

    use crate::aws::AwsJson;
    use crate::extension::{Extension, base_env};
    use crate::moto::Moto;
    use crate::proxy::FaultProxy;

    const TOKEN: &str = "bench-token";
    const LUA: &str = r#"
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

    fn wrk(url: &str, header: Option<&str>, connections: usize, seconds: u64, script: &Path) -> anyhow::Result<Sample> {
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

    /// One keep-alive HTTP/1.1 connection with a blocking client: sends `request`, reads the
    /// head and a `Content-Length` body, and times each exchange.
    struct Probe {
        stream: std::io::BufReader<std::net::TcpStream>,
        request: Vec<u8>,
        body: Vec<u8>,
    }

    impl Probe {
        fn connect(addr: std::net::SocketAddr, path: &str, header: Option<&str>) -> anyhow::Result<Probe> {
            let stream = std::net::TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
            Ok(Probe {
                stream: std::io::BufReader::with_capacity(128 * 1024, stream),
                request: format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n").into_bytes(),
                body: Vec::new(),
            })
        }

        /// One request; its latency in ms. A status other than 200 is an error.
        fn exchange(&mut self) -> anyhow::Result<f64> {
            use std::io::{BufRead, Read, Write};
            let started = Instant::now();
            self.stream.get_mut().write_all(&self.request)?;
            let (mut status, mut length, mut line) = (0u16, 0usize, String::new());
            loop {
                line.clear();
                if self.stream.read_line(&mut line)? == 0 {
                    bail!("connection closed");
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some(code) = l.strip_prefix("HTTP/1.1 ") {
                    status = code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                } else if let Some((name, value)) = l.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse()?;
                }
            }
            self.body.resize(length, 0);
            self.stream.read_exact(&mut self.body)?;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            if status != 200 {
                bail!("answered {status}");
            }
            Ok(elapsed)
        }
    }

    /// Latency at one connection, both servers in the same stretch of time: blocks of 200
    /// requests alternate between them, so the machine's noise (other processes, the VM's
    /// scheduling) falls on both alike, and every request's time is kept: the percentiles are
    /// exact over all of them, not a median of per-run figures.
    pub struct Paired {
        pub ext: Vec<f64>,
        pub nginx: Vec<f64>,
    }

    pub fn paired(ext: (std::net::SocketAddr, &str, &str), nginx: (std::net::SocketAddr, &str), requests: usize) -> anyhow::Result<Paired> {
        const BLOCK: usize = 200;
        let mut a = Probe::connect(ext.0, ext.1, Some(ext.2))?;
        let mut b = Probe::connect(nginx.0, nginx.1, None)?;
        for _ in 0..BLOCK {
            a.exchange()?;
            b.exchange()?;
        }
        let mut out = Paired {
            ext: Vec::with_capacity(requests),
            nginx: Vec::with_capacity(requests),
        };
        while out.ext.len() < requests {
            for _ in 0..BLOCK {
                out.ext.push(a.exchange().context("the extension")?);
            }
            for _ in 0..BLOCK {
                out.nginx.push(b.exchange().context("nginx")?);
            }
        }
        Ok(out)
    }

    /// Each figure's own median over the runs (a tail percentile from one run is noisy).
    fn median(samples: Vec<Sample>) -> Sample {
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

    pub async fn run(bin: &Path, runs: usize, seconds: u64) -> anyhow::Result<String> {
        let moto = Moto::start()?;
        let aws = AwsJson::new(moto.addr);
        let proxy = FaultProxy::start(moto.addr).await?;
        let dir = std::env::temp_dir().join(format!("lsc-bench-http-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("www"))?;
        let sizes = [("100 B", 100usize), ("4 KiB", 4096), ("64 KiB", 65_536)];
        let mut yaml = String::from("secrets:\n");
        for (i, (_, size)) in sizes.iter().enumerate() {
            let id = format!("bench/size-{i}");
            aws.create_secret(&id, &"s".repeat(*size)).await?;
            yaml.push_str(&format!("  - id: {id}\n"));
        }
        for i in 0..25 {
            aws.create_secret(&format!("bench/ready-{i}"), "r").await?;
        }
        std::fs::write(dir.join("config.yaml"), &yaml)?;

        // Start-to-ready with 25 prefetched secrets, and the calls it took.
        let mut ready_yaml = String::from("secrets:\n");
        for i in 0..25 {
            ready_yaml.push_str(&format!("  - id: bench/ready-{i}\n"));
        }
        std::fs::write(dir.join("ready.yaml"), &ready_yaml)?;
        let mut env = base_env(&proxy.endpoint(), TOKEN);
        env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
        env.push(("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL".into(), "info".into()));
        let mut ready_env = env.clone();
        ready_env.push(("SECRETS_CACHE_CONFIG".into(), dir.join("ready.yaml").display().to_string()));
        // Five starts; the median of each time.
        let (mut listening, mut ready) = (Vec::new(), Vec::new());
        let (mut ready_calls, mut idle_rss) = (0, 0);
        for _ in 0..5 {
            proxy.reset_counts();
            let started = Instant::now();
            let ext = Extension::start(bin, &["serve"], &ready_env).await?;
            listening.push(started.elapsed());
            ext.wait_log("prefetch finished", Duration::from_secs(10)).await?;
            ready.push(started.elapsed());
            ready_calls = ready_calls.max(proxy.total_calls());
            idle_rss = ext.rss_kb();
        }
        listening.sort();
        ready.sort();
        let (listening, ready) = (listening[2], ready[2]);

        // 64 concurrent misses of one secret.
        let mut miss_env = env.clone();
        miss_env.push(("SECRETS_CACHE_CONFIG".into(), dir.join("none.yaml").display().to_string()));
        std::fs::write(dir.join("none.yaml"), "secrets: []\n")?;
        let ext = Extension::start(bin, &["serve"], &miss_env).await?;
        proxy.reset_counts();
        let addr = ext.addr;
        let misses: Vec<_> = (0..64)
            .map(|_| {
                tokio::spawn(async move {
                    crate::client::get(
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
        let miss_calls = proxy.total_calls();
        drop(ext);

        // The extension with the three sizes cached, and nginx serving the same bytes.
        env.push(("SECRETS_CACHE_CONFIG".into(), dir.join("config.yaml").display().to_string()));
        env.push(("SECRETS_MANAGER_TTL".into(), "86400".into()));
        let ext = Extension::start(bin, &["serve"], &env).await?;
        ext.wait_log("prefetch finished", Duration::from_secs(10)).await?;
        let mut bodies = Vec::new();
        for (i, _) in sizes.iter().enumerate() {
            let r = ext.get(&format!("/secretsmanager/get?secretId=bench%2Fsize-{i}")).await?;
            std::fs::write(dir.join("www").join(format!("size-{i}.json")), &r.body)?;
            bodies.push(r.body.len());
        }
        let nginx_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let conf = format!(
            "worker_processes auto; daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; default_type application/json; sendfile on; tcp_nodelay on; keepalive_requests 1000000;\n\
               open_file_cache max=16 inactive=600s; open_file_cache_valid 600s;\n\
               server {{ listen 127.0.0.1:{nginx_port}; root {dir}/www; }} }}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let mut nginx = Command::new("nginx")
            .args(["-c"])
            .arg(dir.join("nginx.conf"))
            .args(["-p"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx (apt-get install nginx-light)")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let script = dir.join("report.lua");
        std::fs::write(&script, LUA)?;

        let header = format!("X-Aws-Parameters-Secrets-Token: {TOKEN}");
        let mut table = String::new();
        table.push_str("| body | connections | extension req/s | nginx req/s | ratio | ext p50 / p90 / p99 ms | nginx p50 / p90 / p99 ms |\n|---|---|---|---|---|---|---|\n");
        let mut load_rss = 0;
        for (i, (label, _)) in sizes.iter().enumerate() {
            for conns in [1usize, 16, 64] {
                let ext_url = format!("http://{}/secretsmanager/get?secretId=bench%2Fsize-{i}", ext.addr);
                let ngx_url = format!("http://127.0.0.1:{nginx_port}/size-{i}.json");
                let mut e = Vec::new();
                let mut n = Vec::new();
                // One connection measures latency more than throughput: more runs for its tail.
                let runs = if conns == 1 { runs.max(5) } else { runs };
                for _ in 0..runs {
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
        // One connection's latency, paired: both servers, alternating, every request kept.
        let requests = 20_000 * seconds as usize;
        table.push_str(&format!(
            "\nLatency at one connection, paired: {requests} requests to each server over one keep-alive connection each, \
             alternating blocks of 200, every request's time kept (exact percentiles over all of them; a blocking Rust client, not wrk):\n\n\
             | body | extension p50 / p90 / p99 / p99.9 ms | nginx p50 / p90 / p99 / p99.9 ms | p99 ratio |\n|---|---|---|---|\n"
        ));
        for (i, (label, _)) in sizes.iter().enumerate() {
            let ext_addr = ext.addr;
            let (ext_path, ngx_path) = (format!("/secretsmanager/get?secretId=bench%2Fsize-{i}"), format!("/size-{i}.json"));
            let ngx_addr: std::net::SocketAddr = ([127, 0, 0, 1], nginx_port).into();
            let header = header.clone();
            let mut p =
                tokio::task::spawn_blocking(move || paired((ext_addr, &ext_path, &header), (ngx_addr, &ngx_path), requests)).await??;
            let row = |v: &mut Vec<f64>| {
                [50.0, 90.0, 99.0, 99.9]
                    .map(|q| format!("{:.3}", super::percentile(v, q)))
                    .join(" / ")
            };
            let ratio = super::percentile(&mut p.ext, 99.0) / super::percentile(&mut p.nginx, 99.0);
            table.push_str(&format!("| {label} | {} | {} | {ratio:.2} |\n", row(&mut p.ext), row(&mut p.nginx)));
        }

        // SIGQUIT to the master: it stops its workers (SIGKILL would leave them running).
        let _ = Command::new("kill").args(["-QUIT", &nginx.id().to_string()]).status();
        let _ = nginx.wait();
        drop(ext);

        // The same extension with telemetry on: metrics and a span per read exported over
        // OTLP/HTTP to the in-repo receiver every second.
        let receiver = crate::otlp::OtlpReceiver::start().await?;
        let mut otel_env = env.clone();
        otel_env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint()));
        otel_env.push(("OTEL_METRIC_EXPORT_INTERVAL".into(), "1000".into()));
        let ext = Extension::start(bin, &["serve"], &otel_env).await?;
        ext.wait_log("prefetch finished", Duration::from_secs(10)).await?;
        table.push_str("\nWith telemetry on (OTLP/HTTP to the in-repo receiver, export every 1 s, a span per read):\n\n");
        table.push_str("| body | connections | extension req/s | ext p50 / p90 / p99 ms |\n|---|---|---|---|\n");
        let mut otel_rss = 0;
        for (i, (label, _)) in sizes.iter().enumerate().take(2) {
            let url = format!("http://{}/secretsmanager/get?secretId=bench%2Fsize-{i}", ext.addr);
            let mut e = Vec::new();
            for _ in 0..runs {
                e.push(wrk(&url, Some(&header), 64, seconds, &script)?);
                otel_rss = otel_rss.max(ext.rss_kb());
            }
            let e = median(e);
            table.push_str(&format!(
                "| {label} | 64 | {:.0} | {:.3} / {:.3} / {:.3} |\n",
                e.rps, e.p50_ms, e.p90_ms, e.p99_ms
            ));
        }
        let exports = receiver.metric_exports();
        drop(ext);

        // The uncached path for scale: GetSecretValue straight to moto (4 KiB secret).
        let moto_script = dir.join("moto.lua");
        std::fs::write(
            &moto_script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = '{{\"SecretId\":\"bench/size-1\"}}'\n\
                 wrk.headers[\"Content-Type\"] = \"application/x-amz-json-1.1\"\n\
                 wrk.headers[\"X-Amz-Target\"] = \"secretsmanager.GetSecretValue\"\n\
                 wrk.headers[\"Authorization\"] = \"AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0\"\n{LUA}"
            ),
        )?;
        table.push_str("\nReference: GetSecretValue straight to moto (the uncached path, 4 KiB):\n\n");
        table.push_str("| connections | req/s | p50 / p90 / p99 ms |\n|---|---|---|\n");
        for conns in [1usize, 16] {
            let m = median(
                (0..runs)
                    .map(|_| wrk(&format!("{}/", moto.endpoint()), None, conns, seconds, &moto_script))
                    .collect::<Result<_, _>>()?,
            );
            table.push_str(&format!(
                "| {conns} | {:.0} | {:.3} / {:.3} / {:.3} |\n",
                m.rps, m.p50_ms, m.p90_ms, m.p99_ms
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
        let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        Ok(format!(
            "# Benchmark results\n\nMachine: {cores} cores, {cpu}. Release build, loopback, wrk ({runs} runs of {seconds} s each, 5 at 1 connection; each figure the median over the runs), \
             nginx serving the same bytes as a static file in the same run (a worker per core, sendfile, open_file_cache, tcp_nodelay, no access log). Body sizes are the JSON bodies ({:?} bytes).\n\n{table}\n\
             | other | value |\n|---|---|\n\
             | exec → listening (25 secrets configured; median of 5 starts) | {:.1} ms |\n\
             | exec → prefetch of 25 secrets done (median of 5) | {:.1} ms |\n\
             | upstream calls for that prefetch | {ready_calls} |\n\
             | upstream calls for 64 concurrent misses of one secret | {miss_calls} |\n\
             | RSS idle (after prefetch) | {:.1} MB |\n\
             | RSS under load (max seen) | {:.1} MB |\n\
             | RSS under load, telemetry on (max seen; {exports} metric exports) | {:.1} MB |\n\
             | stripped binary | {:.1} MB |\n",
            bodies,
            listening.as_secs_f64() * 1000.0,
            ready.as_secs_f64() * 1000.0,
            idle_rss as f64 / 1024.0,
            load_rss as f64 / 1024.0,
            otel_rss as f64 / 1024.0,
            size as f64 / 1_048_576.0
        ))
    }
}
