//! A child process with a controlled environment whose every output line is captured: the
//! extension under test, a runtime interface client running a user's handler, a collector.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

pub struct Process {
    child: Child,
    output: Output,
}

/// Every line a child writes (stdout and stderr), and a signal at each new one: a wait for a
/// line wakes when it is written, not at the next poll (the start-up benchmarks measure it).
#[derive(Clone)]
pub struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    written: watch::Receiver<usize>,
}

impl Output {
    pub fn lines(&self) -> Vec<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `find` makes of the first line it accepts, checked as lines arrive; `None` once
    /// `timeout` has passed or the child closed its output without one.
    pub async fn wait_for<T>(&self, timeout: Duration, mut find: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut written = self.written.clone();
        let mut seen = 0;
        loop {
            written.borrow_and_update();
            {
                let lines = self.lock();
                if let Some(found) = lines[seen..].iter().find_map(|l| find(l)) {
                    return Some(found);
                }
                seen = lines.len();
            }
            match tokio::time::timeout_at(deadline, written.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }
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
        let output = capture_output(&mut child);
        Ok(Process { child, output })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line written so far, stdout and stderr.
    pub fn logs(&self) -> Vec<String> {
        self.output.lines()
    }

    /// The lines written after the first `from`.
    pub fn logs_from(&self, from: usize) -> Vec<String> {
        self.output.lock().get(from..).map(<[String]>::to_vec).unwrap_or_default()
    }

    /// How many lines have been written.
    pub fn log_count(&self) -> usize {
        self.output.lock().len()
    }

    pub fn output(&self) -> &Output {
        &self.output
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
pub fn capture_output(child: &mut Child) -> Output {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, written) = watch::channel(0);
    let tx = Arc::new(tx);
    for stream in [
        child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stdout.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let (lines, tx) = (lines.clone(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                tx.send_modify(|n| *n += 1);
            }
        });
    }
    Output { lines, written }
}
