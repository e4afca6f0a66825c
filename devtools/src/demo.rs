//! `make demo`: moto with a few secrets and parameters, the fake Lambda platform, the extension
//! in extension mode (through the counting proxy) with a config file, and a real Python handler
//! (config-examples/functions/python_handler.py under AWS's `awslambdaric`) invoked a few dozen
//! times in phases, with Lambda's REPORT lines and a summary of cache health.
//! Prints ids and numbers only, never a value.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::fakes::aws::AwsJson;
use crate::fakes::moto::Moto;
use crate::fakes::platform::Options;
use crate::fakes::proxy::{Fault, FaultProxy};
use crate::harness::extension::base_env;
use crate::local::function::{ExtensionPort, Function, Handler, Invoked, LocalFunction, Setup};

const TOKEN: &str = "demo-token";

/// The reads the handler reported (it times each one itself).
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

    /// Adds the `reads` of a python_handler answer.
    fn add_answer(&mut self, answer: &Value) {
        for read in answer["reads"].as_array().into_iter().flatten() {
            self.latencies_us.push((read["ms"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
            if read["status"] == 200 {
                *self.by_result.entry(read["cache"].as_str().unwrap_or("?").to_string()).or_default() += 1;
            } else {
                self.errors += 1;
            }
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
            "{} reads ({}{}), p50 {:.3} ms, p99 {:.3} ms in the handler",
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort_unstable();
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize).map_or(0.0, |d| ms(*d))
}

/// A phase of the demo: invocations with one event, their REPORT lines and reads.
struct Phase {
    reads: Reads,
    post_runtime: Vec<Duration>,
}

/// Runs `n` invocations with `event`; prints each one's REPORT line (the whole of Lambda's
/// lines for the environment's first).
async fn invocations(local: &mut LocalFunction, n: usize, event: &Value) -> anyhow::Result<Phase> {
    let mut phase = Phase {
        reads: Reads::new(),
        post_runtime: Vec::new(),
    };
    for _ in 0..n {
        let invoked: Invoked = local.invoke(&event.to_string()).await?;
        let lines = invoked.lambda_lines();
        if invoked.init_duration.is_some() {
            lines.iter().for_each(|l| println!("   {l}"));
        } else if let Some(report) = lines.last() {
            println!("   {report}");
        }
        let body = match &invoked.outcome.response {
            Ok(body) => body,
            Err(e) => bail!("invocation failed: {e}\n{}", local.output()),
        };
        phase.reads.add_answer(&serde_json::from_str(body)?);
        phase.post_runtime.push(invoked.outcome.extensions_overhead);
    }
    Ok(phase)
}

fn reads_event(secrets: &[&str], parameters: &[&str], concurrency: usize) -> Value {
    json!({"secrets": secrets, "parameters": parameters, "concurrency": concurrency})
}

/// The secrets the demo seeds; the first three are in its config file.
const SECRETS: [&str; 5] = [
    "prod/db/credentials",
    "prod/api/key",
    "prod/payments/token",
    "prod/cache/password",
    "prod/search/key",
];

/// Everything the demo runs: moto behind the counting proxy, the OTLP receiver, and the
/// function (the Python handler, the extension, the fake platform).
struct Demo {
    _moto: Moto,
    proxy: FaultProxy,
    aws: AwsJson,
    receiver: crate::fakes::otlp::OtlpReceiver,
    local: LocalFunction,
}

pub async fn run(extension_bin: &std::path::Path) -> anyhow::Result<()> {
    if !extension_bin.exists() {
        bail!("{} not found: build it with `cargo build --release`", extension_bin.display());
    }
    let mut demo = set_up(extension_bin).await?;
    let all = scenarios(&mut demo).await?;
    let requests = summary(&demo, &all).await?;
    shut_down(demo, requests).await
}

/// Seeds moto, writes the config file, starts the function and waits for Init.
async fn set_up(extension_bin: &std::path::Path) -> anyhow::Result<Demo> {
    println!("== lambda-secrets-cache demo: a Python handler under awslambdaric, the extension, the fake Lambda platform, moto ==");
    let moto = Moto::start().context("starting moto")?;
    let proxy = FaultProxy::start(moto.addr).await?;
    let aws = AwsJson::new(moto.addr);

    for (i, name) in SECRETS.iter().enumerate() {
        aws.create_secret(
            name,
            &format!("{{\"username\":\"app\",\"password\":\"demo-{i}-not-a-real-secret\"}}"),
        )
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

    let receiver = crate::fakes::otlp::OtlpReceiver::start().await?;
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
            ("AWS_SESSION_TOKEN", TOKEN),
            ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info"),
            ("SECRETS_CACHE_CONFIG", config.to_str().context("temp path is UTF-8")?),
            ("SECRETS_MANAGER_TTL", "3"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint().as_str()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let handler = crate::workspace_root().join("config-examples/functions/python_handler.handler");
    let handler = Handler::parse(handler.to_str().context("the workspace path is UTF-8")?, None)?;
    println!(
        "function: {} (Python, awslambdaric) in {}",
        handler.name,
        handler.task_root.display()
    );
    let local = LocalFunction::start(Setup {
        options: Options {
            function_name: "demo-orders".into(),
            timeout: Duration::from_secs(3),
            ..Options::default()
        },
        function: Function::Handler(handler),
        extension: vec![extension_bin.display().to_string()],
        env,
        port: ExtensionPort::Logged,
        record_reads: false,
        freeze: true,
    })
    .await?;
    std::fs::remove_dir_all(&dir)?;
    if local.init.failed() {
        bail!(
            "init failed: {:?} {:?}\n{}",
            local.init.errors,
            local.init.runtime_error,
            local.output()
        );
    }
    let platform = local.platform.clone();
    let registered = platform.requests_to("/2020-01-01/extension/register")[0].at;
    let first_next = platform.next_calls()[0];
    println!(
        "\ninit: register -> the extension's first /next (waits for the required secret's batch, not the rest) {:.1} ms; Init (the runtime imported the handler too) {:.1} ms; upstream {:?}",
        ms(first_next.saturating_sub(registered)),
        ms(local.init.duration),
        proxy.counts()
    );
    println!("(the extension and the runtime are SIGSTOPped between invocations, as Lambda freezes them)");

    Ok(Demo {
        _moto: moto,
        proxy,
        aws,
        receiver,
        local,
    })
}

/// The four scenarios; every read they made.
async fn scenarios(demo: &mut Demo) -> anyhow::Result<Reads> {
    let Demo { proxy, aws, local, .. } = demo;
    let hot_secrets = &SECRETS[..3];
    let hot_parameters = ["/prod/app/flags", "/prod/app/db-password"];
    let mut all = Reads::new();

    // 1. Steady traffic: every invocation reads 5 configured items.
    println!("\n1. 30 invocations x 5 reads:");
    let phase = invocations(local, 30, &reads_event(hot_secrets, &hot_parameters, 1)).await?;
    println!("   => {}", phase.reads.line());
    println!(
        "   post-runtime duration (the response -> the extension's /next, billed): p50 {:.2} ms, p99 {:.2} ms",
        percentile(phase.post_runtime.clone(), 0.5),
        percentile(phase.post_runtime, 0.99)
    );
    all.merge(phase.reads);

    // 2. A new secret read by 32 concurrent threads in one invocation.
    aws.create_secret("prod/new/secret", "{\"k\":\"demo-new\"}").await?;
    let before = proxy.calls("GetSecretValue");
    println!("2. 32 concurrent misses of a new secret:");
    let phase = invocations(local, 1, &reads_event(&["prod/new/secret"; 32], &[], 32)).await?;
    println!(
        "   => {} -> {} upstream call(s)",
        phase.reads.line(),
        proxy.calls("GetSecretValue") - before
    );
    all.merge(phase.reads);

    // 3. Idle (frozen) past the refresh-ahead point; INVOKE refreshes, the next one hits.
    println!("3. frozen 2.7 s, one invoke, frozen 0.9 s, one invoke:");
    tokio::time::sleep(Duration::from_millis(2700)).await;
    let before = proxy.total_calls();
    invocations(local, 1, &reads_event(&[], &[], 1)).await?;
    let refreshed = proxy.total_calls() - before;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let phase = invocations(local, 1, &reads_event(hot_secrets, &[], 1)).await?;
    println!(
        "   => {} ({refreshed} refresh call(s) made during the idle invoke; TTL 3 s)",
        phase.reads.line()
    );
    all.merge(phase.reads);

    // 4. Secrets Manager answers 503 while entries expire: served stale, bounded.
    proxy.inject(Fault::status(503, "ServiceUnavailable"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    println!("4. Secrets Manager returning 503:");
    let phase = invocations(local, 5, &reads_event(hot_secrets, &[], 1)).await?;
    println!("   => {}", phase.reads.line());
    all.merge(phase.reads);
    proxy.clear_faults();

    Ok(all)
}

/// What `/status` says after the scenarios; returns its request counts by result, which the
/// OTLP export must match.
async fn summary(demo: &Demo, all: &Reads) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let (proxy, local) = (&demo.proxy, &demo.local);
    local.platform.thaw();
    let status = local.extension.get("/status").await?.json();
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
    let requests = m["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .fold(std::collections::BTreeMap::new(), |mut acc, r| {
            *acc.entry(r["cache.result"].as_str().unwrap_or("?").to_string()).or_default() += r["count"].as_u64().unwrap_or(0);
            acc
        });
    Ok(requests)
}

/// SHUTDOWN within its deadline, then the export checked against `/status`'s counts.
async fn shut_down(mut demo: Demo, from_status: std::collections::BTreeMap<String, u64>) -> anyhow::Result<()> {
    let (receiver, local) = (&demo.receiver, &mut demo.local);
    let platform = local.platform.clone();
    let shutdown_at = Instant::now();
    match local.shutdown(Duration::from_millis(2000)).await? {
        Some(status) if status.success() => println!(
            "\nSHUTDOWN (deadline 2000 ms): exited with {status} after {:.1} ms",
            ms(shutdown_at.elapsed())
        ),
        Some(status) => bail!("the extension exited with {status} at SHUTDOWN"),
        None => bail!("the extension was still running at the SHUTDOWN deadline"),
    }
    let exported = receiver.sum_by("secrets_cache.requests", "cache.result");
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
