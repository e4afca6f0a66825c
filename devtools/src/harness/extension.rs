//! Runs the lambda-secrets-cache binary as a child process with a controlled environment,
//! captures every log line it writes, and finds the address it listens on.
//!
//! The binary under test can be replaced without touching files: `LSC_EXTENSION_BIN` names
//! another build (the arm64 layer binary, say) and `LSC_EXTENSION_RUNNER` a command it runs
//! under (`qemu-aarch64-static -L /usr/aarch64-linux-gnu`, split on spaces). The runner wraps
//! only that binary; `make layer-test` uses both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::harness::process::Process;

/// Replaces the binary the tests start.
pub const BIN_VAR: &str = "LSC_EXTENSION_BIN";
/// A command prefix the replacement runs under (an emulator).
pub const RUNNER_VAR: &str = "LSC_EXTENSION_RUNNER";

/// The binary to test: `LSC_EXTENSION_BIN` when set, else `built`.
pub fn under_test(built: &Path) -> PathBuf {
    std::env::var_os(BIN_VAR).map_or_else(|| built.to_path_buf(), PathBuf::from)
}

/// The runner's words when one is set for `bin`: only the `LSC_EXTENSION_BIN` binary runs
/// under it.
fn runner_for(bin: &Path) -> Option<Vec<String>> {
    let replaced = std::env::var_os(BIN_VAR)?;
    let words: Vec<String> = std::env::var(RUNNER_VAR).ok()?.split_whitespace().map(str::to_string).collect();
    (Path::new(&replaced) == bin && !words.is_empty()).then_some(words)
}

/// Whether the binary under test runs under an emulator: memory and timing figures are not
/// the binary's own there, and tests that assert them skip.
pub fn emulated() -> bool {
    std::env::var_os(BIN_VAR).is_some() && std::env::var(RUNNER_VAR).is_ok_and(|r| !r.trim().is_empty())
}

/// A `Command` that runs `bin`, under the runner when `bin` is the replacement.
pub fn command(bin: &Path) -> Command {
    match runner_for(bin) {
        Some(words) => {
            let mut cmd = Command::new(&words[0]);
            cmd.args(&words[1..]).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

pub struct Extension {
    pub addr: SocketAddr,
    pub token: String,
    process: Process,
}

/// Settings every run gets: fake credentials, a region, our endpoint, port 0, no IMDS.
pub fn base_env(aws_endpoint: &str, token: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", aws_endpoint),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_TOKEN", token),
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "0"),
        ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Finds `addr=IP:PORT` (text logs) or `"addr":"IP:PORT"` (JSON logs) in a `listening` line.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let rest = line.split("addr=").nth(1).or_else(|| line.split("\"addr\":\"").nth(1))?;
    rest.split(|c: char| c.is_whitespace() || c == '"').next()?.parse().ok()
}

impl Extension {
    /// Starts `bin args…` with exactly `env` (plus PATH) and waits until it listens.
    pub async fn start(bin: &Path, args: &[&str], env: &[(String, String)]) -> anyhow::Result<Extension> {
        let mut ext = Extension::spawn(bin, args, env)?;
        ext.wait_listening().await?;
        Ok(ext)
    }

    /// Starts the process without waiting for anything (`addr` is unset until `wait_listening`).
    pub fn spawn(bin: &Path, args: &[&str], env: &[(String, String)]) -> anyhow::Result<Extension> {
        let mut cmd = command(bin);
        cmd.args(args);
        Extension::spawn_command(cmd, env)
    }

    /// As `spawn`, for a command built by the caller (a binary under a runner of its choice).
    pub fn spawn_command(cmd: Command, env: &[(String, String)]) -> anyhow::Result<Extension> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let process = Process::spawn(cmd, env).with_context(|| format!("starting {program}"))?;
        // The product's order (SnapStart aside, which tests set the token for explicitly).
        let token = lambda_secrets_cache::config::TOKEN_VARIABLES
            .iter()
            .find_map(|name| env.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok(Extension {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            token,
            process,
        })
    }

    /// Waits for the `listening` log line and records the address.
    pub async fn wait_listening(&mut self) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Wakes at the line; the exit check runs between waits.
            let output = self.process.output().clone();
            if let Some(addr) = output.wait_for(Duration::from_millis(50), listening_addr).await {
                self.addr = addr;
                return Ok(addr);
            }
            if let Some(status) = self.process.try_wait()? {
                tokio::time::sleep(Duration::from_millis(50)).await;
                bail!("extension exited with {status} before listening:\n{}", self.logs().join("\n"));
            }
            if Instant::now() > deadline {
                bail!("extension did not listen within 30 s:\n{}", self.logs().join("\n"));
            }
        }
    }

    /// The exit status once the process ends, or `None` if it still runs after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        self.process.wait_exit(timeout).await
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        match self
            .process
            .output()
            .wait_for(timeout, |l| l.contains(needle).then(|| l.to_string()))
            .await
        {
            Some(line) => Ok(line),
            None => bail!("no log line with {needle:?} within {timeout:?}:\n{}", self.logs().join("\n")),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The process itself (logs since a point, peak memory, signals).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Resident set size in kB (`VmRSS` of `/proc/PID/status`); 0 once the process is gone.
    pub fn rss_kb(&self) -> u64 {
        self.process.rss_kb()
    }

    /// Every line written so far, stdout and stderr.
    pub fn logs(&self) -> Vec<String> {
        self.process.logs()
    }

    /// GET with the right token.
    pub async fn get(&self, path: &str) -> anyhow::Result<crate::harness::client::Response> {
        crate::harness::client::get(self.addr, path, &[("X-Aws-Parameters-Secrets-Token", &self.token)]).await
    }

    /// SIGTERM, then wait (SIGKILL after 5 s).
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.process.stop(Duration::from_secs(5)).await
    }
}

/// The release or debug build of the extension next to this workspace's target directory.
pub fn binary(profile: &str) -> PathBuf {
    crate::workspace_root().join("target").join(profile).join("lambda-secrets-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_in_text_and_json_logs() {
        let text = "2026-11-21T10:00:00.000Z  INFO listening addr=127.0.0.1:41234 mode=\"standalone\"";
        assert_eq!(listening_addr(text), Some("127.0.0.1:41234".parse().unwrap()));
        let json = r#"{"timestamp":"x","level":"INFO","message":"listening","addr":"127.0.0.1:2773"}"#;
        assert_eq!(listening_addr(json), Some("127.0.0.1:2773".parse().unwrap()));
        assert_eq!(listening_addr("nothing here"), None);
    }
}
