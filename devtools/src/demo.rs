//! `make demo`: moto with a few secrets and parameters, the extension in front of it (through
//! the counting proxy), a scripted series of reads in phases, and a summary of cache health.
//! Prints ids and numbers only, never a value.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::aws::AwsJson;
use crate::client;
use crate::extension::{Extension, base_env};
use crate::moto::Moto;
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

pub async fn run(extension_bin: &Path) -> anyhow::Result<()> {
    if !extension_bin.exists() {
        bail!("{} not found: build it with `cargo build --release`", extension_bin.display());
    }
    println!("== lambda-secrets-cache demo (standalone mode against moto) ==");
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
    aws.create_binary_secret("prod/tls/key", "AAECAwQFBgcICQ==").await?;
    aws.put_parameter("/prod/app/flags", "feature-x=on", "String").await?;
    aws.put_parameter("/prod/app/endpoint", "https://example.invalid", "String").await?;
    aws.put_parameter("/prod/app/db-password", "demo-param-secret", "SecureString")
        .await?;
    println!(
        "moto on {} with 6 secrets and 3 parameters; counting proxy on {}",
        moto.addr, proxy.addr
    );

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
            ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info"),
            ("SECRETS_CACHE_CONFIG", config.to_str().context("temp path is UTF-8")?),
            ("SECRETS_MANAGER_TTL", "3"),
            ("SECRETS_CACHE_REFRESH_INTERVAL", "500ms"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let started = Instant::now();
    let ext = Extension::start(extension_bin, &["serve"], &env).await?;
    println!(
        "extension listening on {} after {:.1} ms (config: 3 secrets + 1 path prefetched)",
        ext.addr,
        started.elapsed().as_secs_f64() * 1000.0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ext.logs().iter().any(|l| l.contains("prefetch finished")) {
        if Instant::now() > deadline {
            bail!("prefetch did not finish: {:#?}", ext.logs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "prefetch done after {:.1} ms with {:?}",
        started.elapsed().as_secs_f64() * 1000.0,
        proxy.counts()
    );
    std::fs::remove_dir_all(&dir)?;

    let mut all = Reads::new();
    let addr = ext.addr;

    // Phase 1: every item once. Prefetched ones are hits from the first read.
    let mut phase = Reads::new();
    for s in secrets.iter().chain(&["prod/tls/key"]) {
        read(addr, &secret(s), &mut phase).await?;
    }
    for p in ["/prod/app/flags", "/prod/app/endpoint", "/prod/app/db-password"] {
        read(addr, &parameter(p, true), &mut phase).await?;
    }
    println!("\n1. first read of each of 9 items:       {}", phase.line());
    all.merge(phase);

    // Phase 2: steady state, 8 concurrent callers.
    let paths: Arc<Vec<String>> = Arc::new(
        secrets
            .iter()
            .map(|s| secret(s))
            .chain(["/prod/app/flags"].map(|p| parameter(p, true)))
            .collect(),
    );
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let paths = paths.clone();
            tokio::spawn(async move {
                let mut r = Reads::new();
                for i in 0..250 {
                    read(addr, &paths[(w + i) % paths.len()], &mut r).await?;
                }
                anyhow::Ok(r)
            })
        })
        .collect();
    let mut phase = Reads::new();
    for w in workers {
        phase.merge(w.await??);
    }
    println!("2. steady state, 8 callers:             {}", phase.line());
    all.merge(phase);

    // Phase 3: 32 concurrent first reads of one new secret.
    aws.create_secret("prod/new/secret", "{\"k\":\"demo-new\"}").await?;
    let before = proxy.calls("GetSecretValue");
    let burst: Vec<_> = (0..32)
        .map(|_| {
            tokio::spawn(async move {
                let mut r = Reads::new();
                read(addr, &secret("prod/new/secret"), &mut r).await?;
                anyhow::Ok(r)
            })
        })
        .collect();
    let mut phase = Reads::new();
    for b in burst {
        phase.merge(b.await??);
    }
    println!(
        "3. 32 concurrent misses of a new secret: {} -> {} upstream call(s)",
        phase.line(),
        proxy.calls("GetSecretValue") - before
    );
    all.merge(phase);

    // Phase 4: refresh-ahead keeps entries warm past their 3 s TTL.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut phase = Reads::new();
    for s in &secrets[..3] {
        read(addr, &secret(s), &mut phase).await?;
    }
    println!(
        "4. reads 3.5 s later (TTL 3 s):          {} (refreshed ahead in the background)",
        phase.line()
    );
    all.merge(phase);

    // Phase 5: Secrets Manager answers 503; expired entries are served stale.
    proxy.inject(Fault::status(503, "ServiceUnavailable"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut phase = Reads::new();
    for s in &secrets {
        read(addr, &secret(s), &mut phase).await?;
    }
    println!("5. Secrets Manager returning 503:       {}", phase.line());
    all.merge(phase);
    proxy.clear_faults();

    let status = ext.get("/status").await?.json();
    let m = &status["metrics"];
    println!("\n== summary ==");
    println!("reads:            {}", all.line());
    println!(
        "hit ratio:        {:.1} % (server-side, all reads)",
        m["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!("server time/read: {} µs mean", m["mean_request_micros"]);
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
    let status = ext.stop().await?;
    println!("\nextension stopped on SIGTERM: {status}");
    Ok(())
}
