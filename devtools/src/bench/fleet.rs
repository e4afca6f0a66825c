//! `lsc-dev bench-fleet`: a fleet's burst against AWS's per-account quotas. N environments
//! (the real binary in extension mode, each under its own fake platform with a scripted
//! function) start within a window, each with `required` secrets in its config file, all
//! reaching moto through one quota proxy (token buckets per operation, AWS's throttling
//! answers), each through its own counting proxy in front of it (its calls per operation).
//! Reported per burst: Init failures, failed reads, Init time, time to all secrets, calls per
//! environment, throttled answers; then how far apart the environments refresh later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::percentile;
use crate::fakes::aws::AwsJson;
use crate::fakes::moto::Moto;
use crate::fakes::platform::Options;
use crate::fakes::proxy::FaultProxy;
use crate::fakes::quota::Quota;
use crate::harness::extension::base_env;
use crate::local::command::scripted;
use crate::local::function::{ExtensionPort, Function, LocalFunction, Setup};

const TOKEN: &str = "fleet-token";

/// One burst: its name, the quotas the shared proxy enforces, and environment on top.
pub struct Burst {
    pub name: String,
    pub quotas: Vec<Quota>,
    pub env: Vec<(String, String)>,
}

/// What one environment saw.
struct Environment {
    init: Duration,
    init_error: Option<String>,
    /// From its start to its function holding every secret (none when Init failed).
    to_all: Option<Duration>,
    failed_reads: usize,
    calls: BTreeMap<String, usize>,
    /// Kept running for the refresh phase.
    local: Option<LocalFunction>,
    proxy: FaultProxy,
}

/// The shared set-up: moto with the secrets, the quota proxy, the config file.
struct Fleet {
    _moto: Moto,
    quota_proxy: FaultProxy,
    config: PathBuf,
    paths: Vec<String>,
}

impl Fleet {
    async fn new(secrets: usize) -> anyhow::Result<Fleet> {
        let moto = Moto::start()?;
        let aws = AwsJson::new(moto.addr);
        let quota_proxy = FaultProxy::start(moto.addr).await?;
        let mut yaml = String::from("secrets:\n");
        let mut paths = Vec::new();
        for i in 0..secrets {
            let id = format!("fleet/secret-{i}");
            aws.create_secret(&id, &format!("value-{i}")).await?;
            yaml.push_str(&format!("  - id: {id}\n    required: true\n"));
            paths.push(format!("/secretsmanager/get?secretId=fleet%2Fsecret-{i}"));
        }
        let config = std::env::temp_dir().join(format!("lsc-fleet-{}.yaml", std::process::id()));
        std::fs::write(&config, yaml)?;
        Ok(Fleet {
            _moto: moto,
            quota_proxy,
            config,
            paths,
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// One environment started at `at`: its own counting proxy in front of the quota proxy, the
/// extension, a function reading every secret once Init is over.
async fn environment(
    i: usize,
    bin: &Path,
    fleet: &Fleet,
    extra: &[(String, String)],
    at: tokio::time::Instant,
) -> anyhow::Result<Environment> {
    tokio::time::sleep_until(at).await;
    let proxy = FaultProxy::start(fleet.quota_proxy.addr).await?;
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
    // Info: the harness finds the port in the `listening` line.
    env.push(("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL".into(), "info".into()));
    env.push(("SECRETS_CACHE_CONFIG".into(), fleet.config.display().to_string()));
    env.extend(extra.iter().cloned());
    let started = Instant::now();
    let paths = fleet.paths.clone();
    let mut local = LocalFunction::start(Setup {
        options: Options {
            function_name: format!("fleet-{i}"),
            timeout: Duration::from_secs(30),
            ..Options::default()
        },
        function: Function::Scripted(Box::new(move |addr| scripted(addr, paths, TOKEN.into()))),
        extension: vec![bin.display().to_string()],
        env,
        port: ExtensionPort::Logged,
        record_reads: false,
        freeze: false,
    })
    .await?;
    let init = started.elapsed();
    if local.init.failed() {
        let error = local.init.errors.first().map(|e| e.body["errorMessage"].to_string());
        let _ = local.shutdown(Duration::from_secs(1)).await;
        return Ok(Environment {
            init,
            init_error: Some(error.unwrap_or_else(|| "the runtime failed".into())),
            to_all: None,
            failed_reads: 0,
            calls: proxy.counts().into_iter().collect(),
            local: None,
            proxy,
        });
    }
    let invoked = local.invoke("{}").await?;
    let answer = invoked.outcome.response.unwrap_or_else(|e| e);
    let failed_reads = answer.split(", ").filter(|r| !r.starts_with("200")).count();
    Ok(Environment {
        init,
        init_error: None,
        to_all: Some(started.elapsed()),
        failed_reads,
        calls: proxy.counts().into_iter().collect(),
        local: Some(local),
        proxy,
    })
}

/// `n` environments started evenly over `window`.
async fn burst(bin: &Path, fleet: &Fleet, b: &Burst, n: usize, window: Duration) -> anyhow::Result<Vec<Environment>> {
    fleet.quota_proxy.set_quotas(b.quotas.clone());
    fleet.quota_proxy.reset_counts();
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let step = window / n.max(1) as u32;
    let runs = (0..n).map(|i| environment(i, bin, fleet, &b.env, start + step * i as u32));
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| b.name.clone())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One row of the burst table.
fn row(b: &Burst, envs: &[Environment], fleet: &Fleet) -> String {
    let n = envs.len();
    let failures = envs.iter().filter(|e| e.init_error.is_some()).count();
    let failed_reads: usize = envs.iter().map(|e| e.failed_reads).sum();
    let mut init: Vec<f64> = envs.iter().map(|e| ms(e.init)).collect();
    let mut to_all: Vec<f64> = envs.iter().filter_map(|e| e.to_all).map(ms).collect();
    let calls_per_env = |op: &str| envs.iter().map(|e| e.calls.get(op).copied().unwrap_or(0)).sum::<usize>() as f64 / n as f64;
    let most = |op: &str| envs.iter().map(|e| e.calls.get(op).copied().unwrap_or(0)).max().unwrap_or(0);
    let throttled: Vec<String> = ["BatchGetSecretValue", "GetSecretValue"]
        .iter()
        .map(|op| format!("{}", fleet.quota_proxy.throttled(op)))
        .collect();
    let to_all_text = if to_all.is_empty() {
        "—".to_string()
    } else {
        format!(
            "{:.0} / {:.0} / {:.0}",
            percentile(&mut to_all, 50.0),
            percentile(&mut to_all, 99.0),
            percentile(&mut to_all, 100.0)
        )
    };
    format!(
        "| {} | {failures} of {n} | {failed_reads} | {:.0} / {:.0} | {to_all_text} | {:.2} ({}) / {:.2} ({}) | {} |\n",
        b.name,
        percentile(&mut init, 50.0),
        percentile(&mut init, 99.0),
        calls_per_env("BatchGetSecretValue"),
        most("BatchGetSecretValue"),
        calls_per_env("GetSecretValue"),
        most("GetSecretValue"),
        throttled.join(" / "),
    )
}

/// Later: every environment invoked once a second; their refresh calls, counted by whole
/// second since the burst began. Environments started together must not
/// refresh together.
async fn refresh_spread(envs: &mut [Environment], began: Instant, until: Duration) -> anyhow::Result<String> {
    let marks: Vec<usize> = envs.iter().map(|e| e.proxy.timed_calls().len()).collect();
    while began.elapsed() < until {
        let invokes = envs.iter_mut().filter_map(|e| e.local.as_mut()).map(|l| l.invoke("{}"));
        futures_util::future::join_all(invokes).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let mut by_second: BTreeMap<u64, usize> = BTreeMap::new();
    for (e, mark) in envs.iter().zip(marks) {
        for (at, _) in e.proxy.timed_calls().into_iter().skip(mark) {
            *by_second.entry(at.duration_since(began).as_secs()).or_default() += 1;
        }
    }
    let spread: Vec<String> = by_second.iter().map(|(s, n)| format!("{s} s: {n}")).collect();
    Ok(spread.join(", "))
}

/// The bursts of `make bench`, at `scale` of AWS's quotas.
pub fn bursts(scale: f64) -> Vec<Burst> {
    // TTL 30 s: the refresh phase sees refresh-ahead (at 24 s ± 2.4 s) within the run.
    let env = |pairs: &[(&str, &str)]| {
        std::iter::once(&("SECRETS_MANAGER_TTL", "30"))
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut exhausted = Quota::aws(scale);
    exhausted[1].per_second = 20.0;
    vec![
        Burst {
            name: "no quotas".into(),
            quotas: Vec::new(),
            env: env(&[]),
        },
        Burst {
            name: format!("AWS quotas × {scale} (batch first: 5 ids > 3 upstream places)"),
            quotas: Quota::aws(scale),
            env: env(&[]),
        },
        Burst {
            name: format!("AWS quotas × {scale}, one GetSecretValue each (5 upstream places)"),
            quotas: Quota::aws(scale),
            env: env(&[("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "5")]),
        },
        Burst {
            name: format!("AWS quotas × {scale}, GetSecretValue at 20/s too"),
            quotas: exhausted,
            env: env(&[]),
        },
    ]
}

/// `lsc-dev bench-fleet`: every burst, then the refresh spread of one, as Markdown.
pub async fn run(bin: &Path, environments: usize, window: Duration, secrets: usize, scale: f64) -> anyhow::Result<String> {
    let fleet = Fleet::new(secrets).await?;
    let mut table = format!(
        "{environments} environments started evenly over {} ms, each the release binary in extension mode under its own \
         fake platform with {secrets} secrets `required: true` in its config file, then one invocation reading them all; \
         AWS's quotas enforced at one proxy in front of moto (BatchGetSecretValue 100/s, GetSecretValue 10 000/s, \
         Parameter Store 40/s, scaled). {}.\n\n\
         | burst | Init failures | failed reads | Init p50 / p99 ms | time to all secrets p50 / p99 / max ms | calls per environment, BatchGetSecretValue (most) / GetSecretValue (most) | throttled answers, Batch / GetSecretValue |\n\
         |---|---|---|---|---|---|---|\n",
        window.as_millis(),
        super::machine()
    );
    let mut spread = String::new();
    for b in bursts(scale) {
        let began = Instant::now();
        let mut envs = burst(bin, &fleet, &b, environments, window).await?;
        table.push_str(&row(&b, &envs, &fleet));
        if b.name.starts_with("AWS quotas") && spread.is_empty() {
            spread = refresh_spread(&mut envs, began, Duration::from_secs(29)).await?;
        }
        for e in &mut envs {
            if let Some(local) = e.local.as_mut() {
                let _ = local.shutdown(Duration::from_secs(1)).await;
            }
        }
    }
    table.push_str(&format!(
        "\nRefresh-ahead afterwards (the second burst, TTL 30 s: refresh-ahead at 0.8 × TTL ± 10 %, every environment invoked once a second, 5 secrets each with its own jitter): refresh calls by whole second since the burst began: {spread}.\n"
    ));
    Ok(table)
}
