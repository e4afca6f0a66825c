//! A child process with a controlled environment whose every output line is captured: the
//! extension under test, a runtime interface client running a user's handler, a collector.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct Process {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `cmd` with exactly `env` (plus PATH), stdin closed, stdout and stderr captured.
    pub fn spawn(mut cmd: Command, env: &[(String, String)]) -> anyhow::Result<Process> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {program}"))?;
        let logs = capture_output(&mut child);
        Ok(Process { child, logs })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line written so far, stdout and stderr.
    pub fn logs(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// The lines written after the first `from`.
    pub fn logs_from(&self, from: usize) -> Vec<String> {
        self.lock().get(from..).map(<[String]>::to_vec).unwrap_or_default()
    }

    /// How many lines have been written.
    pub fn log_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resident set size in kB (`VmRSS`); 0 once the process is gone.
    pub fn rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS:")
    }

    /// The largest resident set size so far in kB (`VmHWM`); 0 once the process is gone.
    pub fn peak_rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM:")
    }

    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The exit status once the process ends, or `None` if it still runs after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the log readers drain the pipes.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, …).
    pub fn signal(&self, signal: &str) {
        signal_pid(self.pid(), signal);
    }

    /// SIGTERM, then wait (SIGKILL after `grace`).
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.signal("TERM");
        if let Some(status) = self.wait_exit(grace).await? {
            return Ok(status);
        }
        let _ = self.child.kill();
        Ok(self.child.wait()?)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Collects every line the child writes to stdout and stderr (reader threads end with it).
pub fn capture_output(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stdout.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
    }
    lines
}
