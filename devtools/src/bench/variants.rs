//! Variants of the extension side by side in the same run: `lsc-dev bench-runtime` (tokio's
//! current-thread runtime against the work-stealing one, `SECRETS_CACHE_WORKER_THREADS` 1 and
//! 2) and `lsc-dev bench-builds` (binaries built differently, e.g. zig-linked against the
//! host's glibc). For each: the tail at one connection (every variant and nginx interleaved in
//! blocks, several rounds), req/s at 16 and 64 connections, memory, threads, start-up and size.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::http::{LUA, Nginx, Sample, median, wrk};
use super::percentile;
use super::probe::{Placement, Target, interleaved};
use crate::fakes::aws::AwsJson;
use crate::fakes::moto::Moto;
use crate::fakes::proxy::FaultProxy;
use crate::harness::extension::{Extension, base_env};

const TOKEN: &str = "bench-token";
const PATH: &str = "/secretsmanager/get?secretId=bench%2Fruntime";

/// One extension to measure: its binary and what it gets beyond the common environment.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub bin: PathBuf,
    pub env: Vec<(String, String)>,
}

/// `bin` on the current-thread runtime and on the multi-thread one.
pub fn runtimes(bin: &Path) -> Vec<Variant> {
    [("current-thread", "1"), ("multi-thread, 2 workers", "2")]
        .map(|(name, threads)| Variant {
            name: name.into(),
            bin: bin.to_path_buf(),
            env: vec![("SECRETS_CACHE_WORKER_THREADS".into(), threads.into())],
        })
        .to_vec()
}

/// `Threads:` of `/proc/PID/status`.
fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Threads:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Per variant, in order: what was measured.
struct Measured {
    /// exec → listening, ms, one per start.
    startup: Vec<Vec<f64>>,
    /// (RSS KiB, threads) idle and the most seen under load.
    idle: Vec<(u64, u64)>,
    load: Vec<(u64, u64)>,
    /// [placement][variant, then nginx] → each round's p50 and p99.
    p50: Vec<Vec<Vec<f64>>>,
    p99: Vec<Vec<Vec<f64>>>,
    /// [16 connections, 64][variant] → each run.
    rps: [Vec<Vec<Sample>>; 2],
}

pub async fn run(variants: &[Variant], rounds: usize, runs: usize, seconds: u64) -> anyhow::Result<String> {
    if variants.len() < 2 {
        bail!("compare at least two variants");
    }
    let moto = Moto::start()?;
    AwsJson::new(moto.addr).create_secret("bench/runtime", &"s".repeat(4096)).await?;
    let proxy = FaultProxy::start(moto.addr).await?;
    let dir = std::env::temp_dir().join(format!("lsc-bench-runtime-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("www"))?;
    std::fs::write(dir.join("config.yaml"), "secrets:\n  - id: bench/runtime\n")?;
    std::fs::write(dir.join("report.lua"), LUA)?;
    let env = |v: &Variant| {
        let mut env = base_env(&proxy.endpoint(), TOKEN);
        env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
        env.extend(
            [
                ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info"),
                ("SECRETS_CACHE_CONFIG", dir.join("config.yaml").to_str().unwrap_or_default()),
                ("SECRETS_MANAGER_TTL", "86400"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env.retain(|(k, _)| !v.env.iter().any(|(name, _)| name == k));
        env.extend(v.env.iter().cloned());
        env
    };
    let measured = measure(variants, &env, &dir, rounds, runs, seconds).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report(variants, measured?, rounds, runs, seconds))
}

/// Start-up, then every variant and nginx serving the same bytes side by side: the paired
/// one-connection probe per placement, and wrk at 16 and 64 connections, taking turns.
async fn measure(
    variants: &[Variant],
    env: &dyn Fn(&Variant) -> Vec<(String, String)>,
    dir: &std::path::Path,
    rounds: usize,
    runs: usize,
    seconds: u64,
) -> anyhow::Result<Measured> {
    let n = variants.len();
    // Start-up: exec → listening, median of 5 starts of each, taking turns.
    let mut startup: Vec<Vec<f64>> = vec![Vec::new(); n];
    for _ in 0..5 {
        for (i, v) in variants.iter().enumerate() {
            let started = Instant::now();
            let ext = Extension::start(&v.bin, &["serve"], &env(v)).await?;
            startup[i].push(started.elapsed().as_secs_f64() * 1000.0);
            drop(ext);
        }
    }

    let mut exts = Vec::new();
    for v in variants {
        let ext = Extension::start(&v.bin, &["serve"], &env(v)).await?;
        ext.wait_log("prefetch finished", Duration::from_secs(10)).await?;
        exts.push(ext);
    }
    let body = exts[0].get(PATH).await?.body;
    for (v, ext) in variants.iter().zip(&exts) {
        if ext.get(PATH).await?.body != body {
            bail!("{} answers different bytes", v.name);
        }
    }
    std::fs::write(dir.join("www/runtime.json"), &body)?;
    let nginx = Nginx::start(dir).await?;
    let idle: Vec<(u64, u64)> = exts.iter().map(|e| (e.rss_kb(), threads(e.pid()))).collect();

    // One connection: every variant and nginx interleaved, `rounds` times for each placement;
    // each round's p50 and p99.
    let header = format!("X-Aws-Parameters-Secrets-Token: {TOKEN}");
    let mut targets: Vec<Target> = exts
        .iter()
        .map(|e| Target {
            addr: e.addr,
            path: PATH.to_string(),
            header: Some(header.clone()),
            pids: vec![e.pid()],
        })
        .collect();
    targets.push(Target {
        addr: nginx.addr(),
        path: "/runtime.json".into(),
        header: None,
        pids: vec![nginx.pid()],
    });
    let placements = Placement::available();
    let mut p50 = vec![vec![Vec::new(); n + 1]; placements.len()];
    let mut p99 = p50.clone();
    for (k, &placement) in placements.iter().enumerate() {
        for round in 0..rounds {
            // Each round starts the blocks at the next variant, so no variant always goes first.
            let order: Vec<usize> = (0..n).map(|j| (j + round) % n).chain([n]).collect();
            let t: Vec<Target> = order.iter().map(|&i| targets[i].clone()).collect();
            let lat = tokio::task::spawn_blocking(move || interleaved(&t, REQUESTS, placement)).await??;
            for (slot, mut v) in lat.into_iter().enumerate() {
                p50[k][order[slot]].push(percentile(&mut v, 50.0));
                p99[k][order[slot]].push(percentile(&mut v, 99.0));
            }
        }
    }

    // Throughput at 16 and 64 connections, taking turns run by run.
    let script = dir.join("report.lua");
    let mut rps: [Vec<Vec<Sample>>; 2] = [vec![Vec::new(); n], vec![Vec::new(); n]];
    let mut load: Vec<(u64, u64)> = vec![(0, 0); n];
    for (c, conns) in [16usize, 64].into_iter().enumerate() {
        for _ in 0..runs {
            for (i, ext) in exts.iter().enumerate() {
                let s = wrk(&format!("http://{}{PATH}", ext.addr), Some(&header), conns, seconds, &script)?;
                if s.errors > 0 {
                    bail!("{} errors at {conns} connections", s.errors);
                }
                rps[c][i].push(s);
                load[i] = (load[i].0.max(ext.rss_kb()), load[i].1.max(threads(ext.pid())));
            }
        }
    }
    Ok(Measured {
        startup,
        idle,
        load,
        p50,
        p99,
        rps,
    })
}

/// Requests per variant per round of the one-connection probe.
const REQUESTS: usize = 20_000;

/// The Markdown table of `measure`'s figures.
fn report(variants: &[Variant], mut m: Measured, rounds: usize, runs: usize, seconds: u64) -> String {
    let (n, requests) = (variants.len(), REQUESTS);
    let placements = Placement::available();
    let (p50, p99, rps, startup, idle, load) = (&mut m.p50, &mut m.p99, &mut m.rps, &mut m.startup, &m.idle, &m.load);
    let median_of = |v: &mut Vec<f64>| percentile(v, 50.0);
    let nginx_p99: Vec<f64> = (0..placements.len()).map(|k| median_of(&mut p99[k][n])).collect();
    let labels: Vec<&str> = placements.iter().map(|p| p.label()).collect();
    let mut out = format!(
        "4 KiB secret, every variant running side by side. One connection: the {n} extensions and \
         nginx interleaved in blocks of 200 requests, {requests} requests each per round, {rounds} \
         rounds per placement ({}; the client and servers pinned, see devtools/src/bench/probe.rs), \
         each round starting at the next variant; the median over rounds of each round's p50 and p99 \
         (nginx p99 {} ms). req/s: wrk, {runs} runs of {seconds} s each, taking turns, median. \
         Start-up: exec → listening, median of 5 starts each, taking turns.\n\n\
         | variant | {} | c1 p99 / nginx's | c16 req/s | c64 req/s | RSS idle / under load MB | threads idle / under load | exec → listening ms | binary MB |\n\
         |---|{}---|---|---|---|---|---|---|\n",
        labels.join(", then "),
        nginx_p99.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" / "),
        labels
            .iter()
            .map(|l| format!("c1 p50 / p99 ms, {l}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(labels.len()),
    );
    for (i, v) in variants.iter().enumerate() {
        let size = std::fs::metadata(&v.bin).map(|m| m.len()).unwrap_or(0);
        let (e16, e64) = (median(std::mem::take(&mut rps[0][i])), median(std::mem::take(&mut rps[1][i])));
        let mut c1 = Vec::new();
        let mut ratios = Vec::new();
        for k in 0..placements.len() {
            let ext_p99 = median_of(&mut p99[k][i]);
            c1.push(format!("{:.3} / {ext_p99:.3}", median_of(&mut p50[k][i])));
            ratios.push(format!("{:.2}", ext_p99 / nginx_p99[k]));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} / {:.1} | {} / {} | {:.1} | {:.1} |\n",
            v.name,
            c1.join(" | "),
            ratios.join(" / "),
            e16.rps,
            e64.rps,
            idle[i].0 as f64 / 1024.0,
            load[i].0 as f64 / 1024.0,
            idle[i].1,
            load[i].1,
            percentile(&mut startup[i], 50.0),
            size as f64 / 1_048_576.0,
        ));
    }
    out
}
