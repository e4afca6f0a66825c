//! `lsc-dev bench-startup`: what the extension adds to every cold start, against a std-only
//! null extension (`lsc-null-extension`) under the same fake Extensions API, starts
//! interleaved. Lambda starts the runtime only once every extension has registered, so
//! exec → `/register` is added to every Init; Init ends at the last extension's first
//! `/next`. Measured: exec → `/register`, exec → `listening` (ours; from its log line's
//! timestamp), exec → first `/next`, with no config file, with optional entries, with one
//! `required` entry (moto behind the proxy: one real round trip).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::percentile;
use crate::fakes::aws::AwsJson;
use crate::fakes::moto::Moto;
use crate::fakes::platform::{FakeLambda, Options};
use crate::fakes::proxy::FaultProxy;
use crate::harness::extension::{Extension, base_env};

/// One way to start: a name, the binary, its config file (none: no file).
struct Variant<'a> {
    name: &'static str,
    bin: &'a Path,
    config: Option<&'static str>,
    ours: bool,
}

/// One start's figures, in ms since exec.
#[derive(Default)]
struct Start {
    register: f64,
    listening: Option<f64>,
    first_next: f64,
}

/// Milliseconds since the Unix epoch of a log line's `"timestamp":"2026-12-04T06:35:20.054085Z"`.
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split("\"timestamp\":\"").nth(1)?.split('"').next()?;
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (y, m, day) = (d[0], d[1], d[2]);
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    Some(secs as f64 * 1000.0 + frac * 1000.0)
}

fn epoch_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `bin`, under `runner` (its words) when there is one.
fn command(runner: &[String], bin: &Path) -> std::process::Command {
    match runner.split_first() {
        Some((program, args)) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args).arg(bin);
            cmd
        }
        None => std::process::Command::new(bin),
    }
}

async fn start(v: &Variant<'_>, runner: &[String], proxy: &FaultProxy, dir: &Path) -> anyhow::Result<Start> {
    let platform = FakeLambda::start(Options::default()).await?;
    let mut env = base_env(&proxy.endpoint(), "startup-token");
    env.retain(|(k, _)| k != "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL");
    env.push(("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL".into(), "info".into()));
    env.extend(platform.process_env().into_iter().map(|(k, v)| (k.to_string(), v)));
    env.push(("SECRETS_CACHE_SANDBOX_HOST".into(), "127.0.0.1".into()));
    // No config: the default path (`/var/task/config.yaml`), absent here, is nothing to prefetch.
    if let Some(yaml) = v.config {
        let config = dir.join(format!("{}.yaml", v.name.replace(' ', "-")));
        std::fs::write(&config, yaml)?;
        env.push(("SECRETS_CACHE_CONFIG".into(), config.display().to_string()));
    }
    let exec_at = platform.elapsed();
    let exec_wall = SystemTime::now();
    let mut ext = Extension::spawn_command(command(runner, v.bin), &env)?;
    platform.registered(Duration::from_secs(10)).await?;
    let waiting = tokio::time::Instant::now();
    let next = loop {
        if let Some(r) = platform.requests_to("/2020-01-01/extension/event/next").first() {
            break r.at;
        }
        anyhow::ensure!(
            waiting.elapsed() < Duration::from_secs(10),
            "{}: no /event/next within 10 s of /register",
            v.name
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let register = platform.requests_to("/2020-01-01/extension/register")[0].at;
    let listening = if v.ours {
        let line = ext.wait_log("listening", Duration::from_secs(5)).await?;
        log_time(&line).map(|t| t - epoch_ms(exec_wall))
    } else {
        None
    };
    let since = |at: Duration| (at.saturating_sub(exec_at)).as_secs_f64() * 1000.0;
    platform.shutdown("spindown", Duration::from_secs(2)).await;
    let _ = ext.wait_exit(Duration::from_secs(3)).await;
    Ok(Start {
        register: since(register),
        listening,
        first_next: since(next),
    })
}

/// `rounds` interleaved starts of each variant, every binary under `runner` (its words: an
/// emulator for another architecture's builds, or none); the medians.
pub async fn run(ours: &Path, null: &Path, runner: &[String], rounds: usize) -> anyhow::Result<String> {
    let moto = Moto::start()?;
    let aws = AwsJson::new(moto.addr);
    for i in 0..3 {
        aws.create_secret(&format!("startup/s{i}"), "v").await?;
    }
    let proxy = FaultProxy::start(moto.addr).await?;
    let dir = std::env::temp_dir().join(format!("lsc-bench-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let optional = "secrets:\n  - id: startup/s0\n  - id: startup/s1\n  - id: startup/s2\n";
    let required = "secrets:\n  - id: startup/s0\n    required: true\n";
    let variants = [
        Variant {
            name: "null extension (std only)",
            bin: null,
            config: None,
            ours: false,
        },
        Variant {
            name: "ours, no config file",
            bin: ours,
            config: None,
            ours: true,
        },
        Variant {
            name: "ours, 3 optional secrets",
            bin: ours,
            config: Some(optional),
            ours: true,
        },
        Variant {
            name: "ours, 1 required secret",
            bin: ours,
            config: Some(required),
            ours: true,
        },
    ];
    let mut starts: Vec<Vec<Start>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..variants.len() {
            // Each round starts at the next variant: none always goes first.
            let i = (k + round) % variants.len();
            starts[i].push(start(&variants[i], runner, &proxy, &dir).await?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let med = |mut v: Vec<f64>| percentile(&mut v, 50.0);
    let mut out = format!(
        "exec → each point at a fake Extensions API on loopback, medians of {rounds} starts per variant, variants interleaved \
         (each round in another order); the differences are medians of each round's own difference to the null extension, \
         a std-only Rust binary (`lsc-null-extension`) that registers, then calls `/next`. {}.\n\n\
         | variant | exec → /register ms | exec → listening ms | exec → first /next ms | /register, ours − null ms | first /next, ours − null ms |\n|---|---|---|---|---|---|\n",
        super::machine()
    );
    let null = &starts[0];
    for (v, s) in variants.iter().zip(&starts) {
        let register = med(s.iter().map(|s| s.register).collect());
        let next = med(s.iter().map(|s| s.first_next).collect());
        let listening: Vec<f64> = s.iter().filter_map(|s| s.listening).collect();
        let listening = if listening.is_empty() {
            "—".to_string()
        } else {
            format!("{:.2}", med(listening))
        };
        let register_diff = med(s.iter().zip(null).map(|(o, n)| o.register - n.register).collect());
        let next_diff = med(s.iter().zip(null).map(|(o, n)| o.first_next - n.first_next).collect());
        out.push_str(&format!(
            "| {} | {register:.2} | {listening} | {next:.2} | {register_diff:+.2} | {next_diff:+.2} |\n",
            v.name
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_are_read_to_the_microsecond() {
        let line = r#"{"timestamp":"2026-12-04T06:35:20.054085Z","level":"INFO","message":"listening"}"#;
        let expected = epoch_ms(UNIX_EPOCH + Duration::from_micros(1_796_366_120_054_085));
        assert!((log_time(line).unwrap() - expected).abs() < 0.001);
    }
}
