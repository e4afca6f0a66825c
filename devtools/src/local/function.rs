//! A function run locally as Lambda runs it: a user's handler file under AWS's own runtime
//! interface client (`awslambdaric` for Python, `aws-lambda-ric` for Node.js) or a scripted
//! handler, beside one external extension, under the fake platform in Lambda's order
//! (the extension registers, then the runtime starts; Init ends when both wait on `next`).
//! Each invocation comes back with what Lambda would print for it (START/END/REPORT and the
//! function's own output), its response, and the reads the function made from the extension.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;

use crate::fakes::platform::{FakeLambda, InitOutcome, InvokeOutcome, Options, runtime};
use crate::harness::extension::Extension;
use crate::harness::process::Process;
pub use crate::local::handler::{Handler, Runtime, node_ric};
use crate::local::reads::{Read, ReadRecorder};

/// What runs as the function.
pub enum Function {
    /// A handler file under AWS's runtime interface client, in its own process.
    Handler(Handler),
    /// A handler written here, run in this process; it is made with the address the function
    /// reaches the extension at.
    Scripted(Box<dyn FnOnce(Option<SocketAddr>) -> runtime::Handler + Send>),
}

/// Where the function reaches the extension.
#[derive(Debug, Clone, Copy)]
pub enum ExtensionPort {
    /// The port in the extension's `listening` log line (lambda-secrets-cache with port 0).
    Logged,
    Fixed(u16),
    /// The extension serves nothing to the function (a null extension).
    None,
}

pub struct Setup {
    pub options: Options,
    pub function: Function,
    /// The extension's program and arguments.
    pub extension: Vec<String>,
    /// The function's environment: the extension gets it as it is, the runtime with Lambda's
    /// runtime-only variables added.
    pub env: Vec<(String, String)>,
    pub port: ExtensionPort,
    /// Put a `ReadRecorder` between the function and the extension (one more loopback hop).
    pub record_reads: bool,
    /// SIGSTOP the extension and the runtime between invocations, as Lambda freezes them.
    pub freeze: bool,
}

/// One invocation as a user would see it.
pub struct Invoked {
    pub outcome: InvokeOutcome,
    /// What the runtime printed during the invocation.
    pub logs: Vec<String>,
    pub reads: Vec<Read>,
    /// The first invocation of the environment reports Init.
    pub init_duration: Option<Duration>,
    /// Peak resident memory of the runtime and the extension processes together.
    pub max_memory_mb: u64,
    pub memory_size_mb: u32,
}

impl Invoked {
    /// Duration as Lambda reports and bills it: the function plus the post-runtime time.
    pub fn duration(&self) -> Duration {
        self.outcome.function_duration + self.outcome.extensions_overhead
    }

    /// The lines Lambda writes to the function's log for this invocation.
    pub fn lambda_lines(&self) -> Vec<String> {
        let id = &self.outcome.request_id;
        let mut lines = vec![format!("START RequestId: {id} Version: $LATEST")];
        lines.extend(self.logs.iter().cloned());
        lines.push(format!("END RequestId: {id}"));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut report = format!(
            "REPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
            ms(self.duration()),
            self.duration().as_micros().div_ceil(1000),
            self.memory_size_mb,
            self.max_memory_mb
        );
        if let Some(init) = self.init_duration {
            report.push_str(&format!("\tInit Duration: {:.2} ms", ms(init)));
        }
        report.push_str(&format!(
            "\tPostRuntimeExtensionsDuration: {:.2} ms",
            ms(self.outcome.extensions_overhead)
        ));
        if self.outcome.status != "success" {
            report.push_str(&format!("\tStatus: {}", self.outcome.status));
        }
        lines.push(report);
        lines
    }
}

/// A running environment: the platform, the extension, the runtime.
pub struct LocalFunction {
    pub platform: FakeLambda,
    pub extension: Extension,
    pub runtime: Option<Process>,
    pub init: InitOutcome,
    /// When the environment started (the extension was executed), since the Unix epoch.
    pub started_at: SystemTime,
    /// Where the function reaches the extension (the recorder when there is one).
    pub function_addr: Option<SocketAddr>,
    recorder: Option<ReadRecorder>,
    logs_seen: usize,
    init_reported: bool,
}

impl LocalFunction {
    /// Starts the environment and runs Init. An Init that fails is returned as such (see
    /// `init.failed()`); a runtime or extension that dies or hangs first is an error carrying
    /// its output.
    pub async fn start(setup: Setup) -> anyhow::Result<LocalFunction> {
        let Setup {
            options,
            function,
            extension,
            env,
            port,
            record_reads,
            freeze,
        } = setup;
        let Some((program, args)) = extension.split_first() else {
            bail!("no extension to run");
        };
        let platform = FakeLambda::start(options.clone()).await?;
        let mut env = env;
        let mut lambda_env = platform.process_env();
        lambda_env.push(("SECRETS_CACHE_SANDBOX_HOST", "127.0.0.1".into()));
        for (k, v) in lambda_env {
            set(&mut env, k, &v, false);
        }
        let started_at = SystemTime::now();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut ext = Extension::spawn(program.as_ref(), &args, &env)?;
        let extension_addr = match port {
            ExtensionPort::Logged => Some(ext.wait_listening().await?),
            ExtensionPort::Fixed(p) => Some(SocketAddr::from(([127, 0, 0, 1], p))),
            ExtensionPort::None => None,
        };
        if let Err(e) = platform.registered(Duration::from_secs(30)).await {
            bail!("{e}; the extension wrote:\n{}", ext.logs().join("\n"));
        }
        // Runtime init starts once the extensions have registered.
        let recorder = match extension_addr {
            Some(addr) if record_reads => Some(ReadRecorder::start(addr).await?),
            _ => None,
        };
        let function_addr = recorder.as_ref().map(|r| r.addr).or(extension_addr);
        let mut runtime = match function {
            Function::Handler(handler) => {
                let mut runtime_env = env.clone();
                for (k, v) in handler.runtime_env() {
                    set(&mut runtime_env, &k, &v, true);
                }
                if let Some(addr) = function_addr {
                    set(
                        &mut runtime_env,
                        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
                        &addr.port().to_string(),
                        true,
                    );
                }
                Some(Process::spawn(handler.command()?, &runtime_env)?)
            }
            Function::Scripted(make) => {
                runtime::spawn(&platform, None, make(function_addr));
                None
            }
        };
        let init = wait_init(&platform, runtime.as_mut(), &ext).await?;
        if freeze && !init.failed() {
            let mut pids = vec![ext.pid()];
            pids.extend(runtime.as_ref().map(Process::pid));
            platform.freeze_between_invokes(pids);
        }
        Ok(LocalFunction {
            logs_seen: runtime.as_ref().map_or(0, Process::log_count),
            platform,
            extension: ext,
            runtime,
            init,
            started_at,
            function_addr,
            recorder,
            init_reported: false,
        })
    }

    /// What the runtime wrote during Init (Lambda prints it before the first START).
    pub fn init_logs(&self) -> Vec<String> {
        let logs = self.runtime.as_ref().map(Process::logs).unwrap_or_default();
        logs.into_iter().take(self.logs_seen).collect()
    }

    /// The runtime's and the extension's output so far, labelled.
    pub fn output(&self) -> String {
        output(self.runtime.as_ref(), &self.extension)
    }

    /// One invocation with `payload`.
    pub async fn invoke(&mut self, payload: &str) -> anyhow::Result<Invoked> {
        if self.init.failed() {
            bail!("Init failed; nothing to invoke");
        }
        if let Some(r) = &self.recorder {
            r.take();
        }
        let outcome = self.platform.invoke(payload).await?;
        // Output written just before the response may still be in the pipe.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let logs = self.runtime.as_ref().map(|r| r.logs_from(self.logs_seen)).unwrap_or_default();
        self.logs_seen += logs.len();
        let peak_kb = self.extension.process().peak_rss_kb() + self.runtime.as_ref().map_or(0, Process::peak_rss_kb);
        let init_duration = (!self.init_reported).then_some(self.init.duration);
        self.init_reported = true;
        Ok(Invoked {
            outcome,
            logs,
            reads: self.recorder.as_ref().map(ReadRecorder::take).unwrap_or_default(),
            init_duration,
            max_memory_mb: peak_kb.div_ceil(1024),
            memory_size_mb: self.platform.options().memory_mb,
        })
    }

    /// SHUTDOWN: the runtime is stopped (SIGKILL, as Lambda does once extensions are told),
    /// the extension gets `within` to exit. Returns its exit status, `None` if it was still
    /// running at the deadline. The reason is Lambda's `spindown`, or the emulator's.
    pub async fn shutdown(&mut self, within: Duration) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let reason = if self.platform.options().emulator {
            "SandboxTerminated"
        } else {
            "spindown"
        };
        let deadline = self.platform.shutdown(reason, within).await;
        if let Some(r) = self.runtime.as_mut() {
            r.signal("KILL");
            let _ = r.wait_exit(Duration::from_secs(1)).await;
        }
        self.extension.wait_exit(deadline.saturating_duration_since(Instant::now())).await
    }

    /// Milliseconds since the Unix epoch at which the environment started.
    pub fn started_epoch_ms(&self) -> f64 {
        self.started_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
    }
}

/// Init, or an error as soon as the runtime process exits without finishing it (the
/// platform's own wait bounds it at 60 s).
async fn wait_init(platform: &FakeLambda, mut runtime: Option<&mut Process>, extension: &Extension) -> anyhow::Result<InitOutcome> {
    let init = platform.wait_init(Duration::from_secs(60));
    tokio::pin!(init);
    loop {
        tokio::select! {
            outcome = &mut init => {
                return outcome.map_err(|e| anyhow::anyhow!("{e}\n{}", output(runtime.as_deref(), extension)));
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let exited = match runtime.as_deref_mut() {
                    Some(r) => r.try_wait()?,
                    None => None,
                };
                if let Some(status) = exited {
                    // A runtime that reported an init error exits next; give the platform a
                    // moment to see the report first.
                    if let Ok(Ok(outcome)) = tokio::time::timeout(Duration::from_millis(200), &mut init).await {
                        return Ok(outcome);
                    }
                    bail!("the runtime exited with {status} during Init\n{}", output(runtime.as_deref(), extension));
                }
            }
        }
    }
}

/// The runtime's and the extension's output so far, labelled.
fn output(runtime: Option<&Process>, extension: &Extension) -> String {
    let mut out = String::new();
    if let Some(r) = runtime {
        out.push_str("--- runtime output ---\n");
        out.push_str(&r.logs().join("\n"));
        out.push('\n');
    }
    out.push_str("--- extension output ---\n");
    out.push_str(&extension.logs().join("\n"));
    out
}

/// Sets `key` in `env` (replacing it when `replace`, else only when absent).
fn set(env: &mut Vec<(String, String)>, key: &str, value: &str, replace: bool) {
    if let Some(slot) = env.iter_mut().find(|(k, _)| k == key) {
        if replace {
            slot.1 = value.to_string();
        }
        return;
    }
    env.push((key.to_string(), value.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_look_like_lambdas() {
        let outcome = InvokeOutcome {
            request_id: "r-1".into(),
            trace: String::new(),
            response: Ok("{}".into()),
            status: "success",
            function_duration: Duration::from_micros(2_400),
            post_runtime: vec![("ext".into(), Duration::from_micros(100))],
            extensions_overhead: Duration::from_micros(100),
            extensions_timed_out: false,
        };
        let invoked = Invoked {
            outcome,
            logs: vec!["hello".into()],
            reads: Vec::new(),
            init_duration: Some(Duration::from_millis(120)),
            max_memory_mb: 40,
            memory_size_mb: 128,
        };
        let lines = invoked.lambda_lines();
        assert_eq!(lines[0], "START RequestId: r-1 Version: $LATEST");
        assert_eq!(lines[1], "hello");
        assert_eq!(lines[2], "END RequestId: r-1");
        assert_eq!(
            lines[3],
            "REPORT RequestId: r-1\tDuration: 2.50 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 120.00 ms\tPostRuntimeExtensionsDuration: 0.10 ms"
        );
    }
}
