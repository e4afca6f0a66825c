//! A function run locally as Lambda runs it: a user's handler file under AWS's own runtime
//! interface client (`awslambdaric` for Python, `aws-lambda-ric` for Node.js) or a scripted
//! handler, beside one external extension, under the fake platform in Lambda's order
//! (the extension registers, then the runtime starts; Init ends when both wait on `next`).
//! Each invocation comes back with what Lambda would print for it (START/END/REPORT and the
//! function's own output), its response, and the reads the function made from the extension.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::fakes::platform::{FakeLambda, InitOutcome, InvokeOutcome, Options, runtime};
use crate::harness::extension::Extension;
use crate::harness::process::Process;
use crate::local::reads::{Read, ReadRecorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    Python,
    Node,
}

impl Runtime {
    /// File extensions a handler module may have, in the order they are tried.
    fn extensions(self) -> &'static [&'static str] {
        match self {
            Runtime::Python => &["py"],
            Runtime::Node => &["mjs", "js", "cjs"],
        }
    }

    fn of_file(path: &Path) -> Option<Runtime> {
        let ext = path.extension()?.to_str()?;
        [Runtime::Python, Runtime::Node].into_iter().find(|r| r.extensions().contains(&ext))
    }

    /// `AWS_EXECUTION_ENV` as Lambda sets it for this runtime (the versions installed here).
    fn execution_env(self) -> &'static str {
        match self {
            Runtime::Python => "AWS_Lambda_python3.11",
            Runtime::Node => "AWS_Lambda_nodejs20.x",
        }
    }
}

/// A handler as Lambda names one (`module.function`), with the directory it lives in.
#[derive(Debug, Clone)]
pub struct Handler {
    pub runtime: Runtime,
    /// `LAMBDA_TASK_ROOT`: the directory of the handler's file.
    pub task_root: PathBuf,
    /// `_HANDLER`: `module.function`.
    pub name: String,
    /// Layers, each a directory laid out as Lambda extracts one to `/opt`: their `python/` and
    /// `nodejs/node_modules/` are on the runtime's paths, in order.
    pub layers: Vec<PathBuf>,
}

impl Handler {
    /// `path/to/module.function` (or `path/to/module.py.function`): the file is `module` with
    /// the runtime's extension, the function is what follows the last dot. The runtime comes
    /// from the file's extension unless given.
    pub fn parse(spec: &str, runtime: Option<Runtime>) -> anyhow::Result<Handler> {
        let Some((file, function)) = spec.rsplit_once('.').filter(|(f, func)| !f.is_empty() && !func.is_empty()) else {
            bail!("--handler {spec:?}: expected FILE.function, like functions/app.handler");
        };
        if function.contains('/') {
            bail!("--handler {spec:?}: expected FILE.function, like functions/app.handler");
        }
        let given = PathBuf::from(file);
        let candidates: Vec<PathBuf> = if Runtime::of_file(&given).is_some() {
            vec![given.clone()]
        } else {
            let runtimes = runtime.map_or_else(|| vec![Runtime::Python, Runtime::Node], |r| vec![r]);
            runtimes
                .iter()
                .flat_map(|r| r.extensions().iter().map(|ext| given.with_extension(ext)))
                .collect()
        };
        let Some(path) = candidates.into_iter().find(|p| p.is_file()) else {
            bail!("--handler {spec:?}: no handler file {file}(.py|.mjs|.js|.cjs)");
        };
        let detected = Runtime::of_file(&path).context("a handler file has a known extension")?;
        let runtime = runtime.unwrap_or(detected);
        if runtime != detected {
            bail!("--handler {spec:?}: {} is not a {runtime:?} file", path.display());
        }
        let task_root = std::fs::canonicalize(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("the handler file name is UTF-8")?;
        Ok(Handler {
            runtime,
            task_root,
            name: format!("{module}.{function}"),
            layers: Vec::new(),
        })
    }

    /// The runtime interface client's command line.
    fn command(&self) -> anyhow::Result<std::process::Command> {
        let root = crate::workspace_root();
        let mut cmd = match self.runtime {
            Runtime::Python => {
                let python = root.join(".venv/bin/python");
                if !python.exists() {
                    bail!("{} not found: `make venv` installs awslambdaric", python.display());
                }
                let mut cmd = std::process::Command::new(python);
                cmd.args(["-m", "awslambdaric", &self.name]);
                cmd
            }
            Runtime::Node => {
                let ric = node_ric();
                if !ric.exists() {
                    bail!("{} not found: `make node-ric` installs aws-lambda-ric", ric.display());
                }
                let mut cmd = std::process::Command::new("node");
                cmd.arg(ric).arg(&self.name);
                cmd
            }
        };
        cmd.current_dir(&self.task_root);
        Ok(cmd)
    }

    /// Variables Lambda gives the runtime but not extensions (ARCHITECTURE.md, "The Lambda platform").
    fn runtime_env(&self) -> Vec<(String, String)> {
        let root = self.task_root.to_string_lossy().into_owned();
        let mut env = vec![
            ("_HANDLER".to_string(), self.name.clone()),
            ("LAMBDA_TASK_ROOT".into(), root.clone()),
            ("LAMBDA_RUNTIME_DIR".into(), root.clone()),
            ("AWS_EXECUTION_ENV".into(), self.runtime.execution_env().into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME".into(), "/aws/lambda/local".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME".into(), "local".into()),
        ];
        let under = |dir: &'static str| self.layers.iter().map(move |l| l.join(dir).to_string_lossy().into_owned());
        match self.runtime {
            // Lambda's Python runtimes: the task root, then each layer's `python/`.
            Runtime::Python => {
                let path: Vec<String> = std::iter::once(root).chain(under("python")).collect();
                env.push(("PYTHONPATH".into(), path.join(":")));
                env.push(("PYTHONUNBUFFERED".into(), "1".into()));
            }
            // Lambda's Node.js runtimes: `NODE_PATH` holds each layer's `nodejs/node_modules`.
            Runtime::Node => {
                let path: Vec<String> = under("nodejs/node_modules").collect();
                if !path.is_empty() {
                    env.push(("NODE_PATH".into(), path.join(":")));
                }
            }
        }
        env
    }
}

/// Where AWS's Node.js runtime interface client is installed (`make node-ric`).
pub fn node_ric() -> PathBuf {
    crate::workspace_root().join("devtools/runtimes/node/node_modules/aws-lambda-ric/bin/index.mjs")
}

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
    fn handler_specs_resolve_to_files() {
        let examples = crate::workspace_root().join("config-examples/functions");
        let py = Handler::parse(&format!("{}/python_handler.handler", examples.display()), None).unwrap();
        assert_eq!((py.runtime, py.name.as_str()), (Runtime::Python, "python_handler.handler"));
        assert_eq!(py.task_root, examples.canonicalize().unwrap());
        let explicit = Handler::parse(&format!("{}/python_handler.py.handler", examples.display()), None).unwrap();
        assert_eq!(explicit.name, "python_handler.handler");
        let node = Handler::parse(&format!("{}/node_handler.handler", examples.display()), None).unwrap();
        assert_eq!((node.runtime, node.name.as_str()), (Runtime::Node, "node_handler.handler"));
        for bad in ["nodot", "x.", ".handler", "missing/file.handler", "a.b/c"] {
            assert!(Handler::parse(bad, None).is_err(), "{bad}");
        }
        let wrong = Handler::parse(&format!("{}/node_handler.handler", examples.display()), Some(Runtime::Python));
        assert!(wrong.is_err());
    }

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
