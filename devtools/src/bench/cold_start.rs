//! `lsc-dev bench-cold-start`: what a function sees on a cold start and after, with AWS's own
//! Python runtime client (`awslambdaric`) running bench/functions/cold_start.py under the fake
//! platform, and every AWS call held `latency` at the proxy (moto answers in about a
//! millisecond; AWS does not). The handler is the same in every variant apart from its read:
//!
//! - `prefetch`: lambda-secrets-cache with the secret in its config file;
//! - `lazy`: lambda-secrets-cache with no config file;
//! - `boto3`: `get_secret_value` in the handler (null extension beside it);
//! - `caching`: AWS's `aws-secretsmanager-caching` in the handler (null extension);
//! - `null`: no read, the null extension: the floor.
//!
//! Per environment: Init, the time from the environment's start (the extension exec'd) to the
//! handler holding its secret on the first invocation, that first read, the warm reads of the
//! following invocations, the post-runtime duration of every invocation, and the AWS calls.
//! Variants are interleaved round by round (the order rotates); the table gives medians over
//! rounds.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::bench::percentile;
use crate::fakes::moto::Moto;
use crate::fakes::platform::Options;
use crate::fakes::proxy::{Fault, FaultKind, FaultProxy};
use crate::harness::extension::base_env;
use crate::local::function::{ExtensionPort, Function, Handler, LocalFunction, Setup};

const SECRET: &str = "bench/cold-start/db";
const TOKEN: &str = "bench-cold-start-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Prefetch,
    Lazy,
    Boto3,
    Caching,
    Null,
}

impl Variant {
    const ALL: [Variant; 5] = [Variant::Prefetch, Variant::Lazy, Variant::Boto3, Variant::Caching, Variant::Null];

    fn label(self) -> &'static str {
        match self {
            Variant::Prefetch => "lambda-secrets-cache, prefetch (config.yaml)",
            Variant::Lazy => "lambda-secrets-cache, lazy (no config)",
            Variant::Boto3 => "boto3 get_secret_value in the handler",
            Variant::Caching => "aws-secretsmanager-caching in the handler",
            Variant::Null => "null extension, no read (floor)",
        }
    }

    fn read_with(self) -> &'static str {
        match self {
            Variant::Prefetch | Variant::Lazy => "extension",
            Variant::Boto3 => "boto3",
            Variant::Caching => "caching",
            Variant::Null => "none",
        }
    }

    fn ours(self) -> bool {
        matches!(self, Variant::Prefetch | Variant::Lazy)
    }
}

/// One environment's figures (ms).
#[derive(Debug, Clone, Default)]
struct Sample {
    init: f64,
    first_secret: f64,
    first_read: f64,
    first_cache: String,
    warm_read: f64,
    post_runtime: Vec<f64>,
    calls: usize,
}

pub async fn run(extension: &Path, null: &Path, rounds: usize, warm: usize, latency: Duration) -> anyhow::Result<String> {
    let moto = Moto::start().context("starting moto")?;
    let proxy = FaultProxy::start(moto.addr).await?;
    crate::fakes::aws::AwsJson::new(moto.addr)
        .create_secret(SECRET, r#"{"username":"app","password":"bench-not-a-real-password"}"#)
        .await?;
    proxy.inject(Fault::always(FaultKind::Delay(latency)));
    let handler = crate::workspace_root().join("bench/functions/cold_start.handler");
    let handler = Handler::parse(handler.to_str().context("the workspace path is UTF-8")?, None)?;
    let config = std::env::temp_dir().join(format!("lsc-bench-cold-start-{}.yaml", std::process::id()));
    std::fs::write(&config, format!("secrets:\n  - id: {SECRET}\n"))?;

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); Variant::ALL.len()];
    for round in 0..rounds {
        for k in 0..Variant::ALL.len() {
            let i = (k + round) % Variant::ALL.len();
            let variant = Variant::ALL[i];
            let before = proxy.total_calls();
            let mut sample = environment(variant, extension, null, &handler, &proxy, &config, warm).await?;
            sample.calls = proxy.total_calls() - before;
            samples[i].push(sample);
        }
    }
    let _ = std::fs::remove_file(&config);
    Ok(table(&samples, rounds, warm, latency))
}

/// One cold start, then `warm` invocations; the environment is frozen between them.
async fn environment(
    variant: Variant,
    extension: &Path,
    null: &Path,
    handler: &Handler,
    proxy: &FaultProxy,
    config: &Path,
    warm: usize,
) -> anyhow::Result<Sample> {
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
    for (k, v) in [
        ("AWS_SESSION_TOKEN", TOKEN),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info"),
        ("BENCH_READ_WITH", variant.read_with()),
        ("BENCH_SECRET_ID", SECRET),
    ] {
        env.push((k.into(), v.into()));
    }
    if variant == Variant::Prefetch {
        env.push(("SECRETS_CACHE_CONFIG".into(), config.display().to_string()));
    }
    let (command, port) = if variant.ours() {
        // A port known beforehand, as Lambda's 2773 is: the runtime starts at registration,
        // not at our `listening` line.
        let port = crate::harness::free_port()?;
        env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT");
        env.push(("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".into(), port.to_string()));
        (vec![extension.display().to_string()], ExtensionPort::Fixed(port))
    } else {
        let null = null.display().to_string();
        (vec![null, "--name".into(), "null".into()], ExtensionPort::None)
    };
    let mut local = LocalFunction::start(Setup {
        options: Options {
            function_name: "bench-cold-start".into(),
            timeout: Duration::from_secs(10),
            ..Options::default()
        },
        function: Function::Handler(handler.clone()),
        extension: command,
        env,
        port,
        record_reads: false,
        freeze: true,
    })
    .await?;
    if local.init.failed() {
        bail!("{variant:?}: Init failed\n{}", local.output());
    }
    let mut sample = Sample {
        init: ms(local.init.duration),
        ..Sample::default()
    };
    let mut warm_reads = Vec::new();
    for n in 0..=warm {
        let invoked = local.invoke("{}").await?;
        let answer: Value = match &invoked.outcome.response {
            Ok(body) => serde_json::from_str(body)?,
            Err(e) => bail!("{variant:?}: invocation failed: {e}\n{}", local.output()),
        };
        let read = answer["read_ms"].as_f64().context("read_ms")?;
        if n == 0 {
            sample.first_secret = answer["at_ms"].as_f64().context("at_ms")? - local.started_epoch_ms();
            sample.first_read = read;
            sample.first_cache = answer["cache"].as_str().unwrap_or("-").to_string();
        } else {
            warm_reads.push(read);
        }
        sample.post_runtime.push(ms(invoked.outcome.extensions_overhead));
    }
    sample.warm_read = percentile(&mut warm_reads, 50.0);
    let _ = local.shutdown(Duration::from_millis(500)).await;
    Ok(sample)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    percentile(&mut v, 50.0)
}

fn table(samples: &[Vec<Sample>], rounds: usize, warm: usize, latency: Duration) -> String {
    let mut out = format!(
        "AWS's Python runtime client (awslambdaric) runs bench/functions/cold_start.py under the fake platform; every AWS call is held {} ms at the proxy in front of moto. Per environment: a cold start, then {warm} warm invocations, frozen (SIGSTOP) between invocations. Medians of {rounds} rounds, variants interleaved. \"First secret\" is from the environment's start (the extension exec'd) to the handler holding the value on its first invocation; reads are timed in the handler (Python, `time.perf_counter`).\n\n",
        latency.as_millis()
    );
    out.push_str("| variant | Init ms | env start → first secret ms | first read ms (cache) | warm read ms | post-runtime p50 / max ms | AWS calls |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    let mut first_secret = Vec::new();
    for (variant, s) in Variant::ALL.iter().zip(samples) {
        let mut caches: Vec<&str> = s.iter().map(|x| x.first_cache.as_str()).collect();
        caches.sort_unstable();
        caches.dedup();
        let mut post: Vec<f64> = s.iter().flat_map(|x| x.post_runtime.iter().copied()).collect();
        let post_p50 = percentile(&mut post, 50.0);
        let post_max = post.iter().copied().fold(0.0, f64::max);
        let secret = median(s.iter().map(|x| x.first_secret));
        first_secret.push(secret);
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.2} ({}) | {:.2} | {:.2} / {:.2} | {} |\n",
            variant.label(),
            median(s.iter().map(|x| x.init)),
            secret,
            median(s.iter().map(|x| x.first_read)),
            caches.join(", "),
            median(s.iter().map(|x| x.warm_read)),
            post_p50,
            post_max,
            s.iter().map(|x| x.calls).max().unwrap_or(0)
        ));
    }
    let prefetch = &samples[0];
    let first_read = median(prefetch.iter().map(|x| x.first_read));
    let all_hits = prefetch.iter().all(|x| x.first_cache == "hit");
    let lead = first_secret[2] - first_secret[0];
    let modelled = ms(latency);
    out.push_str(&format!(
        "\nTargets: with prefetch the handler's first read is a hit ({}) and costs ≤ 2 ms ({first_read:.2} ms: {}); time to first secret beats boto3 in the handler by ≥ the modelled latency ({lead:.1} ms ahead, latency {modelled:.0} ms: {}).\n",
        if all_hits { "every round: met" } else { "NOT every round" },
        if first_read <= 2.0 { "met" } else { "NOT met" },
        if lead >= modelled { "met" } else { "NOT met" },
    ));
    out
}
