//! Runs rotel (`pip install rotel` puts `rotel-agent` inside the package in `.venv/`) as a real
//! OpenTelemetry collector on ephemeral loopback ports, with debug logging of everything it
//! receives, so end-to-end tests can read what a collector saw.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Rotel {
    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP/HTTP).
    pub endpoint: String,
    /// The same collector over OTLP/gRPC.
    pub grpc_endpoint: String,
    child: Child,
    output: crate::harness::process::Output,
}

/// `LSC_ROTEL_AGENT`, else the binary inside `.venv/lib/python3*/site-packages/rotel/`.
pub fn agent_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("LSC_ROTEL_AGENT") {
        return Ok(PathBuf::from(p));
    }
    let lib = crate::workspace_root().join(".venv").join("lib");
    for entry in std::fs::read_dir(&lib).with_context(|| format!("reading {} (run `make venv`)", lib.display()))? {
        let candidate = entry?.path().join("site-packages").join("rotel").join("rotel-agent");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!("rotel-agent not found under {} (run `make venv`)", lib.display())
}

impl Rotel {
    /// Starts the agent with the blackhole exporter and detailed debug logs of metrics and
    /// traces; returns once it accepts connections.
    pub async fn start() -> anyhow::Result<Rotel> {
        let (http, grpc) = (crate::harness::free_port()?, crate::harness::free_port()?);
        let mut child = Command::new(agent_path()?)
            .args(["start", "--exporter", "blackhole"])
            .args([
                "--debug-log",
                "metrics",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting rotel-agent")?;
        let output = crate::harness::process::capture_output(&mut child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", http)).await.is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("rotel-agent exited with {status}: {:?}", output.lines());
            }
            if Instant::now() > deadline {
                bail!("rotel-agent did not listen on {http} within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Rotel {
            endpoint: format!("http://127.0.0.1:{http}"),
            grpc_endpoint: format!("http://127.0.0.1:{grpc}"),
            child,
            output,
        })
    }

    /// Everything the agent printed so far.
    pub fn output(&self) -> String {
        self.output.lines().join("\n")
    }

    /// Waits until the output contains every one of `needles`.
    pub async fn wait_for(&self, needles: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if needles.iter().all(|n| out.contains(n)) {
                return Ok(out);
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = needles.iter().filter(|n| !out.contains(**n)).collect();
                bail!("rotel never printed {missing:?}; it printed:\n{out}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
