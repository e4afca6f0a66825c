//! `lsc-dev bench-runtime`: the extension on tokio's current-thread runtime against the
//! work-stealing one (`SECRETS_CACHE_WORKER_THREADS` 1 and 2), in the same run: the tail at one
//! connection (the three servers interleaved in blocks, nginx as the reference, several rounds),
//! req/s at 16 and 64 connections, memory, threads and start-up.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::http::{LUA, Nginx, Sample, interleaved, median, wrk};
use super::percentile;
use crate::aws::AwsJson;
use crate::extension::{Extension, base_env};
use crate::moto::Moto;
use crate::proxy::FaultProxy;

const TOKEN: &str = "bench-token";
const PATH: &str = "/secretsmanager/get?secretId=bench%2Fruntime";
const FLAVOURS: [(&str, &str); 2] = [("current-thread", "1"), ("multi-thread, 2 workers", "2")];

/// `Threads:` of `/proc/PID/status`.
fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Threads:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

pub async fn run(bin: &Path, rounds: usize, runs: usize, seconds: u64) -> anyhow::Result<String> {
    let moto = Moto::start()?;
    AwsJson::new(moto.addr).create_secret("bench/runtime", &"s".repeat(4096)).await?;
    let proxy = FaultProxy::start(moto.addr).await?;
    let dir = std::env::temp_dir().join(format!("lsc-bench-runtime-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("www"))?;
    std::fs::write(dir.join("config.yaml"), "secrets:\n  - id: bench/runtime\n")?;
    let script = dir.join("report.lua");
    std::fs::write(&script, LUA)?;
    let env = |threads: &str| {
        let mut env = base_env(&proxy.endpoint(), TOKEN);
        env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
        env.extend(
            [
                ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info"),
                ("SECRETS_CACHE_CONFIG", dir.join("config.yaml").to_str().unwrap_or_default()),
                ("SECRETS_MANAGER_TTL", "86400"),
                ("SECRETS_CACHE_WORKER_THREADS", threads),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env
    };

    // Start-up: exec → listening, median of 5 starts of each, taking turns.
    let mut startup: [Vec<f64>; 2] = Default::default();
    for _ in 0..5 {
        for (i, (_, threads)) in FLAVOURS.iter().enumerate() {
            let started = Instant::now();
            let ext = Extension::start(bin, &["serve"], &env(threads)).await?;
            startup[i].push(started.elapsed().as_secs_f64() * 1000.0);
            drop(ext);
        }
    }

    let mut exts = Vec::new();
    for (_, threads) in FLAVOURS {
        let ext = Extension::start(bin, &["serve"], &env(threads)).await?;
        ext.wait_log("prefetch finished", Duration::from_secs(10)).await?;
        exts.push(ext);
    }
    let body = exts[0].get(PATH).await?.body;
    std::fs::write(dir.join("www/runtime.json"), &body)?;
    let nginx = Nginx::start(&dir).await?;
    let idle: Vec<(u64, u64)> = exts.iter().map(|e| (e.rss_kb(), threads(e.pid()))).collect();

    // One connection: the three servers interleaved, `rounds` times; each round's p99.
    let header = format!("X-Aws-Parameters-Secrets-Token: {TOKEN}");
    let mut targets: Vec<super::http::Target> = exts.iter().map(|e| (e.addr, PATH.to_string(), Some(header.clone()))).collect();
    targets.push((nginx.addr(), "/runtime.json".into(), None));
    let requests = 20_000;
    let mut p99: [Vec<f64>; 3] = Default::default();
    let mut p50: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        let t = targets.clone();
        let lat = tokio::task::spawn_blocking(move || interleaved(&t, requests)).await??;
        for (i, mut v) in lat.into_iter().enumerate() {
            p99[i].push(percentile(&mut v, 99.0));
            p50[i].push(percentile(&mut v, 50.0));
        }
    }

    // Throughput at 16 and 64 connections, taking turns run by run.
    let mut rps: [[Vec<Sample>; 2]; 2] = Default::default();
    let mut load: Vec<(u64, u64)> = vec![(0, 0); 2];
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
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);

    let nginx_p99 = percentile(&mut p99[2], 50.0);
    let mut out = format!(
        "The async runtime, 4 KiB secret, both processes running side by side. One connection: the two \
         extensions and nginx interleaved in blocks of 200 requests, {requests} requests each per round, \
         {rounds} rounds; the median over rounds of each round's p50 and p99 (nginx p99 {nginx_p99:.3} ms). \
         req/s: wrk, {runs} runs of {seconds} s each, taking turns, median.\n\n\
         | runtime | c1 p50 / p99 ms | c1 p99 / nginx's | c16 req/s | c64 req/s | RSS idle / under load MB | threads idle / under load | exec → listening ms |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for (i, (name, _)) in FLAVOURS.iter().enumerate() {
        let (e16, e64) = (median(std::mem::take(&mut rps[0][i])), median(std::mem::take(&mut rps[1][i])));
        let ext_p99 = percentile(&mut p99[i], 50.0);
        out.push_str(&format!(
            "| {name} | {:.3} / {ext_p99:.3} | {:.2} | {:.0} | {:.0} | {:.1} / {:.1} | {} / {} | {:.1} |\n",
            percentile(&mut p50[i], 50.0),
            ext_p99 / nginx_p99,
            e16.rps,
            e64.rps,
            idle[i].0 as f64 / 1024.0,
            load[i].0 as f64 / 1024.0,
            idle[i].1,
            load[i].1,
            percentile(&mut startup[i], 50.0),
        ));
    }
    Ok(out)
}
