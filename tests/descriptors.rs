//! File descriptors under Lambda's limit (`RLIMIT_NOFILE` 1024): 1 100 connections that send
//! nothing must not starve the extension. Accepting pauses before the upstream calls run out
//! of descriptors, connections over the limit are answered 429 at once instead of being held,
//! and a miss still reaches AWS.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lsc_devtools::fakes::moto::Moto;
use lsc_devtools::fakes::proxy::FaultProxy;
use lsc_devtools::harness::extension::{Extension, base_env};
use tokio::net::TcpStream;

/// Descriptors the process holds now.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The extension in standalone mode with `RLIMIT_NOFILE` at `limit` (soft and hard) and
/// `extra` environment, in front of a proxy to moto.
async fn start_with_descriptors(limit: u32, extra: &[(&str, &str)]) -> (FaultProxy, Extension) {
    let proxy = FaultProxy::start(Moto::shared().addr).await.unwrap();
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
    env.push(("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL".into(), "info".into()));
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    let run = bin_command();
    let program: Vec<String> = std::iter::once(run.get_program())
        .chain(run.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let script = format!("ulimit -n {limit} && exec \"$@\" serve");
    let mut args = vec!["-c", script.as_str(), "sh"];
    args.extend(program.iter().map(String::as_str));
    let ext = Extension::start("sh".as_ref(), &args, &env).await.unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", ext.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&format!(" {limit} "))),
        "{limits}"
    );
    (proxy, ext)
}

#[tokio::test]
async fn idle_connections_above_the_descriptor_limit_do_not_starve_upstream_calls() {
    let name = unique("fd-miss");
    aws().create_secret(&name, "fd-value").await.unwrap();
    // Lambda's limit, soft and hard, as the extension sees it there.
    let (_proxy, ext) = start_with_descriptors(1024, &[]).await;

    // The function's own keep-alive connection, opened first.
    let mut function = TcpStream::connect(ext.addr).await.unwrap();
    let ping = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(exchange(&mut function, ping).await.starts_with("HTTP/1.1 200"));

    // 1 100 connections that send nothing.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(ext.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = open_descriptors(ext.pid());
    assert!(held <= 1024 - 32, "room is left for upstream calls: {held} descriptors open");

    // A miss still reaches AWS: its connection gets a descriptor.
    let read = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nX-Aws-Parameters-Secrets-Token: {TOKEN}\r\n\r\n",
        secret_path(&name)
    );
    let answer = exchange(&mut function, &read).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("fd-value"));

    // A new connection is answered at once (the limit is full of idle ones: 429), not after
    // the idle ones time out.
    let started = Instant::now();
    let mut late = TcpStream::connect(ext.addr).await.unwrap();
    let answer = exchange(&mut late, ping).await;
    assert!(answer.starts_with("HTTP/1.1 429") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1), "answered in {:?}", started.elapsed());

    let warnings = ext.logs().iter().filter(|l| l.contains("accept failed")).count();
    assert!(warnings <= 2, "{warnings} accept warnings:\n{}", ext.logs().join("\n"));
    drop(idle);
    // Once they are gone, new connections are served again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(ext.addr).await.unwrap();
    assert!(exchange(&mut again, ping).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_connection_limit_at_or_above_the_descriptor_budget_still_answers_429_at_once() {
    // Issue 22, item 6: SECRETS_CACHE_MAX_INBOUND_CONNECTIONS at or above RLIMIT_NOFILE - 64
    // (1 000 under a limit of 256 here): the served connections must leave descriptors to
    // refuse with, or nothing ever answers the connections over the limit.
    let (_proxy, ext) = start_with_descriptors(256, &[("SECRETS_CACHE_MAX_INBOUND_CONNECTIONS", "1000")]).await;
    let mut idle = Vec::new();
    for _ in 0..220 {
        idle.push(TcpStream::connect(ext.addr).await.unwrap());
    }
    // The connections past the limit are refused (each within a second) meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let mut late = TcpStream::connect(ext.addr).await.unwrap();
    let answer = exchange(&mut late, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1), "answered in {:?}", started.elapsed());
    drop(idle);
}
