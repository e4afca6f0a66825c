//! `make demo`: moto with a few secrets and parameters, the fake Lambda platform, the extension
//! in extension mode (through the counting proxy) with a config file, a scripted function run
//! for a few dozen invocations in phases, and a summary of cache health.
//! Prints ids and numbers only, never a value.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::aws::AwsJson;
use crate::client;
use crate::extension::{Extension, base_env};
use crate::moto::Moto;
use crate::platform::{FakeLambda, Options, runtime};
use crate::proxy::{Fault, FaultProxy};

const TOKEN: &str = "demo-token";

struct Reads {
    latencies_us: Vec<u64>,
    by_result: std::collections::BTreeMap<String, u64>,
    errors: u64,
}

impl Reads {
    fn new() -> Reads {
        Reads {
            latencies_us: Vec::new(),
            by_result: Default::default(),
            errors: 0,
        }
    }

    fn add(&mut self, latency: Duration, response: &client::Response) {
        self.latencies_us.push(latency.as_micros() as u64);
        if response.status == 200 {
            *self
                .by_result
                .entry(response.header("x-cache").unwrap_or("?").to_string())
                .or_default() += 1;
        } else {
            self.errors += 1;
        }
    }

    fn merge(&mut self, other: Reads) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.by_result {
            *self.by_result.entry(k).or_default() += v;
        }
        self.errors += other.errors;
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }

    fn line(&self) -> String {
        let results: Vec<String> = self.by_result.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!(
            "{} reads ({}{}), p50 {:.3} ms, p99 {:.3} ms",
            self.latencies_us.len(),
            results.join(", "),
            if self.errors > 0 {
                format!(", errors {}", self.errors)
            } else {
                String::new()
            },
            self.percentile(0.50),
            self.percentile(0.99)
        )
    }
}

async fn read(addr: std::net::SocketAddr, path: &str, reads: &mut Reads) -> anyhow::Result<()> {
    let started = Instant::now();
    let r = client::get(addr, path, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await?;
    reads.add(started.elapsed(), &r);
    Ok(())
}

fn secret(id: &str) -> String {
    format!("/secretsmanager/get?secretId={}", id.replace('/', "%2F"))
}

fn parameter(name: &str, decrypt: bool) -> String {
    format!(
        "/systemsmanager/parameters/get?name={}&withDecryption={decrypt}",
        name.replace('/', "%2F")
    )
}

/// Runs the function's reads of one invocation, recording each into `into`.
async fn read_all(addr: std::net::SocketAddr, paths: Vec<String>, into: Arc<Mutex<Reads>>) -> Result<String, String> {
    let mut local = Reads::new();
    let reads = paths.iter().map(|p| {
        let p = p.clone();
        async move {
            let mut r = Reads::new();
            read(addr, &p, &mut r).await.map(|()| r)
        }
    });
    // Concurrent within the invocation, as a function with several threads or tasks would.
    for r in futures_join_all(reads).await {
        local.merge(r.map_err(|e| e.to_string())?);
    }
    into.lock().unwrap_or_else(|p| p.into_inner()).merge(local);
    Ok("{\"ok\":true}".into())
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort_unstable();
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize).map_or(0.0, |d| ms(*d))
}

/// Runs `n` invocations, each reading `paths`; returns each one's post-runtime duration.
async fn invocations(platform: &FakeLambda, n: usize, paths: &[String]) -> anyhow::Result<Vec<Duration>> {
    let payload = serde_json::to_string(paths)?;
    let mut overheads = Vec::new();
    for _ in 0..n {
        let outcome = platform.invoke(&payload).await?;
        if let Err(e) = &outcome.response {
            bail!("invocation failed: {e}");
        }
        overheads.push(outcome.extensions_overhead);
    }
    Ok(overheads)
}

fn take(reads: &Arc<Mutex<Reads>>) -> Reads {
    std::mem::replace(&mut *reads.lock().unwrap_or_else(|p| p.into_inner()), Reads::new())
}

pub async fn run(extension_bin: &Path) -> anyhow::Result<()> {
    if !extension_bin.exists() {
        bail!("{} not found: build it with `cargo build --release`", extension_bin.display());
    }
    println!("== lambda-secrets-cache demo: extension mode under the fake Lambda platform, against moto ==");
    let moto = Moto::start().context("starting moto")?;
    let proxy = FaultProxy::start(moto.addr).await?;
    let aws = AwsJson::new(moto.addr);

    let secrets = [
        "prod/db/credentials",
        "prod/api/key",
        "prod/payments/token",
        "prod/cache/password",
        "prod/search/key",
    ];
    for (i, name) in secrets.iter().enumerate() {
        aws.create_secret(name, &format!("{{\"password\":\"demo-{i}-not-a-real-secret\"}}"))
            .await?;
    }
    aws.put_parameter("/prod/app/flags", "feature-x=on", "String").await?;
    aws.put_parameter("/prod/app/endpoint", "https://example.invalid", "String").await?;
    aws.put_parameter("/prod/app/db-password", "demo-param-secret", "SecureString")
        .await?;
    println!(
        "moto on {} with 5 secrets and 3 parameters; counting proxy on {}",
        moto.addr, proxy.addr
    );

    let receiver = crate::otlp::OtlpReceiver::start().await?;
    let platform = FakeLambda::start(Options {
        function_name: "demo-orders".into(),
        timeout: Duration::from_secs(3),
        ..Options::default()
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("lsc-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "secrets:\n  - id: prod/db/credentials\n    required: true\n  - id: prod/api/key\n  - id: prod/payments/token\nparameters:\n  - path: /prod/app/\n    withDecryption: true\n",
    )?;
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
    env.extend(
        [
            ("AWS_LAMBDA_RUNTIME_API", platform.runtime_api().as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "demo-orders"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("SECRETS_CACHE_SANDBOX_HOST", "127.0.0.1"),
            ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info"),
            ("SECRETS_CACHE_CONFIG", config.to_str().context("temp path is UTF-8")?),
            ("SECRETS_MANAGER_TTL", "3"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint().as_str()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let spawned = platform.elapsed();
    let mut ext = Extension::spawn(extension_bin, &[], &env)?;
    let addr = ext.wait_listening().await?;
    let reads = Arc::new(Mutex::new(Reads::new()));
    let into = reads.clone();
    let handler = runtime::handler(move |inv: runtime::Invocation| {
        let into = into.clone();
        async move {
            let paths: Vec<String> = serde_json::from_str(&inv.payload).map_err(|e| e.to_string())?;
            read_all(addr, paths, into).await
        }
    });
    runtime::spawn(&platform, None, handler);
    let init = platform.wait_init(Duration::from_secs(20)).await?;
    if !init.errors.is_empty() {
        bail!("init failed: {:?}\n{}", init.errors, ext.logs().join("\n"));
    }
    std::fs::remove_dir_all(&dir)?;
    let registered = platform.requests_to("/2020-01-01/extension/register")[0].at;
    let first_next = platform.next_calls()[0];
    println!(
        "\ninit: exec -> register {:.1} ms; register -> first /next (waits for the required secret's batch, not the rest) {:.1} ms; init {:.1} ms; upstream {:?}",
        ms(registered.saturating_sub(spawned)),
        ms(first_next.saturating_sub(registered)),
        ms(init.duration),
        proxy.counts()
    );
    platform.freeze_between_invokes(vec![ext.pid()]);
    println!("(the extension is SIGSTOPped between invocations, as Lambda freezes it)");

    let hot: Vec<String> = secrets[..3]
        .iter()
        .map(|s| secret(s))
        .chain(["/prod/app/flags", "/prod/app/db-password"].map(|p| parameter(p, true)))
        .collect();
    let mut all = Reads::new();

    // 1. Steady traffic: every invocation reads 5 configured items.
    let overheads = invocations(&platform, 30, &hot).await?;
    let phase = take(&reads);
    println!("\n1. 30 invocations x 5 reads:              {}", phase.line());
    println!(
        "   post-runtime duration (the response -> the extension's /next, billed): p50 {:.2} ms, p99 {:.2} ms",
        percentile(overheads.clone(), 0.5),
        percentile(overheads, 0.99)
    );
    all.merge(phase);

    // 2. A new secret read by 32 concurrent tasks in one invocation.
    aws.create_secret("prod/new/secret", "{\"k\":\"demo-new\"}").await?;
    let before = proxy.calls("GetSecretValue");
    invocations(&platform, 1, &vec![secret("prod/new/secret"); 32]).await?;
    let phase = take(&reads);
    println!(
        "2. 32 concurrent misses of a new secret:  {} -> {} upstream call(s)",
        phase.line(),
        proxy.calls("GetSecretValue") - before
    );
    all.merge(phase);

    // 3. Idle (frozen) past the refresh-ahead point; INVOKE refreshes, the next one hits.
    tokio::time::sleep(Duration::from_millis(2700)).await;
    let before = proxy.total_calls();
    invocations(&platform, 1, &[]).await?;
    let refreshed = proxy.total_calls() - before;
    tokio::time::sleep(Duration::from_millis(900)).await;
    invocations(&platform, 1, &hot[..3]).await?;
    let phase = take(&reads);
    println!(
        "3. frozen 2.7 s, one invoke, frozen 0.9 s: {} ({refreshed} refresh call(s) made during the idle invoke; TTL 3 s)",
        phase.line()
    );
    all.merge(phase);

    // 4. Secrets Manager answers 503 while entries expire: served stale, bounded.
    proxy.inject(Fault::status(503, "ServiceUnavailable"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    invocations(&platform, 5, &hot[..3]).await?;
    let phase = take(&reads);
    println!("4. Secrets Manager returning 503:         {}", phase.line());
    all.merge(phase);
    proxy.clear_faults();

    platform.thaw();
    let status = ext.get("/status").await?.json();
    let m = &status["metrics"];
    let l = &status["lifecycle"];
    println!("\n== summary ==");
    println!("reads:            {}", all.line());
    println!(
        "hit ratio:        {:.1} % (server-side, all reads)",
        m["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!("server time/read: {} µs mean", m["mean_request_micros"]);
    println!(
        "lifecycle:        {} invocations; /next released when its work settled {}, by runtimeDone {}, no telemetry {}, deadline {}; telemetry {}",
        l["invocations"],
        l["next_released_by"]["work_settled"],
        l["next_released_by"]["runtime_done"],
        l["next_released_by"]["no_telemetry"],
        l["next_released_by"]["deadline"],
        l["telemetry"].as_str().unwrap_or("?")
    );
    let mut counts: Vec<(String, usize)> = proxy.counts().into_iter().collect();
    counts.sort();
    println!("upstream calls:   {} total {:?}", proxy.total_calls(), counts);
    println!(
        "cache:            {} entries, {} bytes, evictions {}",
        status["cache"]["entries"], status["cache"]["bytes"], m["evictions"]
    );
    for item in status["cache"]["items"].as_array().into_iter().flatten() {
        println!(
            "  {:<9} {:<26} {:<8} age {:>2}s ttl {:>3}s hits {:>4} misses {:>2}{}",
            item["source"].as_str().unwrap_or(""),
            item["id"].as_str().unwrap_or(""),
            item["state"].as_str().unwrap_or(""),
            item["age_seconds"],
            item["ttl_seconds"],
            item["hits"],
            item["misses"],
            item["last_error"].as_str().map(|e| format!(" last error {e}")).unwrap_or_default()
        );
    }
    let deadline = platform.shutdown("spindown", Duration::from_millis(2000)).await;
    let shutdown_at = Instant::now();
    match ext.wait_exit(deadline.saturating_duration_since(Instant::now())).await? {
        Some(status) if status.success() => println!(
            "\nSHUTDOWN (deadline 2000 ms): exited with {status} after {:.1} ms",
            ms(shutdown_at.elapsed())
        ),
        Some(status) => bail!("the extension exited with {status} at SHUTDOWN"),
        None => bail!("the extension was still running at the SHUTDOWN deadline"),
    }
    let exported = receiver.sum_by("secrets_cache.requests", "cache.result");
    let from_status: std::collections::BTreeMap<String, u64> =
        m["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .fold(Default::default(), |mut acc, r| {
                *acc.entry(r["cache.result"].as_str().unwrap_or("?").to_string()).or_default() += r["count"].as_u64().unwrap_or(0);
                acc
            });
    let spans = receiver.spans().len();
    println!(
        "OTLP (loopback receiver): {} metric exports; secrets_cache.requests {:?} ({} /status); {} spans; faas.invocations {}",
        receiver.metric_exports(),
        exported,
        if exported == from_status { "equal to" } else { "DIFFERENT from" },
        spans,
        receiver.sum_by("faas.invocations", "").values().sum::<u64>()
    );
    if exported != from_status {
        bail!("the exported secrets_cache.requests {exported:?} differ from /status's {from_status:?}: the final export went missing");
    }
    let deliveries = platform.deliveries();
    println!(
        "telemetry:        {} deliveries to the extension, {} answered 200",
        deliveries.len(),
        deliveries.iter().filter(|d| d.status == Some(200)).count()
    );
    Ok(())
}
