//! `lsc-dev lambda`: any external extension run locally under the fake Lambda platform beside
//! a function: the user's own handler under AWS's runtime interface client (`--handler`), or a
//! scripted one that GETs paths from the extension (`--read`). Per invocation it prints what
//! Lambda prints (START, the function's output, END, REPORT), the response and the cache reads
//! the function made; then SHUTDOWN and the extension's logs.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::fakes::platform::{Faults, InitType, Options, runtime};
use crate::local::function::{ExtensionPort, Function, Handler, Invoked, LocalFunction, Runtime, Setup};

/// The options of `lsc-dev lambda`.
#[derive(Debug, Clone, clap::Args)]
pub struct LambdaArgs {
    /// The function's handler as Lambda names it, with its directory: `path/to/app.handler`
    /// runs `handler` of `path/to/app.py` (or `.mjs`/`.js`/`.cjs`) under AWS's runtime
    /// interface client. Without it, a scripted function makes the `--read` requests.
    #[arg(long, value_name = "FILE.function")]
    pub handler: Option<String>,
    /// The handler's runtime (default: from the file's extension).
    #[arg(long, value_enum)]
    pub runtime: Option<Runtime>,
    /// A JSON file with the event every invocation gets (default `{}`).
    #[arg(long, value_name = "FILE.json")]
    pub event: Option<std::path::PathBuf>,
    /// Invocations to run.
    #[arg(long, default_value_t = 5)]
    pub invocations: usize,
    /// The function timeout: each INVOKE's deadline is this far ahead.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
    /// Idle time between invocations.
    #[arg(long, default_value_t = 200)]
    pub pause_ms: u64,
    /// The scripted function (no `--handler`): a path it GETs from the extension with
    /// $AWS_SESSION_TOKEN, each invocation (repeat for several).
    #[arg(long = "read", value_name = "PATH")]
    pub reads: Vec<String>,
    /// Start as SnapStart: a snapshot after Init, restored at the first invocation.
    #[arg(long)]
    pub snap_start: bool,
    /// SIGSTOP the extension and the runtime between invocations, as Lambda freezes them.
    #[arg(long)]
    pub freeze: bool,
    /// Answer the Telemetry API subscription with this status (202: "not supported").
    #[arg(long, value_name = "CODE")]
    pub subscribe_status: Option<u16>,
    /// Never emit platform.runtimeDone.
    #[arg(long)]
    pub drop_runtime_done: bool,
    /// Mix telemetry types and an INVOKE-time event type from the future into what is sent.
    #[arg(long)]
    pub unknown_events: bool,
    /// The SHUTDOWN deadline.
    #[arg(long, default_value_t = 2000)]
    pub shutdown_ms: u64,
    /// A layer zip, mounted as Lambda mounts one at /opt: its `extensions/` executable is the
    /// extension (unless one is given after `--`), its `python/` and `nodejs/node_modules/`
    /// are on the handler's paths.
    #[arg(long, value_name = "ZIP")]
    pub layer: Option<std::path::PathBuf>,
    /// The extension to run and its arguments (after `--`). It gets this environment (the
    /// function's) plus AWS_LAMBDA_RUNTIME_API, SECRETS_CACHE_SANDBOX_HOST=127.0.0.1 and the
    /// function's AWS_LAMBDA_* variables; the function reaches it on
    /// $PARAMETERS_SECRETS_EXTENSION_HTTP_PORT (default 2773) through a recorder.
    #[arg(last = true, required_unless_present = "layer", value_name = "EXTENSION")]
    pub command: Vec<String>,
}

impl LambdaArgs {
    fn options(&self) -> Options {
        Options {
            timeout: Duration::from_millis(self.timeout_ms),
            init_type: if self.snap_start { InitType::SnapStart } else { InitType::OnDemand },
            faults: Faults {
                subscribe_status: self.subscribe_status,
                drop_runtime_done: self.drop_runtime_done,
                unknown_events: self.unknown_events,
                ..Faults::default()
            },
            ..Options::default()
        }
    }
}

/// A layer zip extracted as Lambda extracts one to `/opt` (file modes kept: `unzip`), into a
/// temporary directory removed afterwards.
pub struct Layer {
    pub dir: std::path::PathBuf,
}

impl Layer {
    pub fn mount(zip: &std::path::Path) -> anyhow::Result<Layer> {
        // One directory per mount: tests mount layers concurrently in one process.
        static MOUNTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MOUNTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lsc-layer-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let status = std::process::Command::new("unzip")
            .args(["-q", "-o"])
            .arg(zip)
            .arg("-d")
            .arg(&dir)
            .status()
            .context("running unzip (Debian package unzip)")?;
        if !status.success() {
            bail!("unzip {} failed: {status}", zip.display());
        }
        Ok(Layer { dir })
    }

    /// The layer's one external extension (`extensions/NAME`), as Lambda starts it.
    pub fn extension(&self) -> anyhow::Result<String> {
        let found: Vec<_> = std::fs::read_dir(self.dir.join("extensions"))
            .context("the layer has no extensions/ directory")?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        match found.as_slice() {
            [one] => Ok(one.display().to_string()),
            _ => bail!("the layer has {} files in extensions/; name the one to run after --", found.len()),
        }
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `a.command` and the function under the fake platform and prints what Lambda would.
pub async fn run(a: LambdaArgs) -> anyhow::Result<()> {
    let payload = match &a.event {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<serde_json::Value>(&text).with_context(|| format!("{} is not JSON", path.display()))?;
            text
        }
        None => "{}".to_string(),
    };
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if !env.iter().any(|(k, _)| k == "AWS_SESSION_TOKEN") {
        // Lambda always sets it; the function sends it to the extension.
        env.push(("AWS_SESSION_TOKEN".into(), "local-session-token".into()));
    }
    let token = env
        .iter()
        .find(|(k, _)| k == "AWS_SESSION_TOKEN")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let port = match env.iter().find(|(k, _)| k == "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT") {
        Some((_, p)) if p == "0" => ExtensionPort::Logged,
        Some((_, p)) => ExtensionPort::Fixed(p.parse().context("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT is not a port")?),
        None => ExtensionPort::Fixed(2773),
    };
    let layer = match &a.layer {
        Some(zip) => Some(Layer::mount(zip)?),
        None => None,
    };
    let command = match (&layer, a.command.is_empty()) {
        (Some(layer), true) => vec![layer.extension()?],
        _ => a.command.clone(),
    };
    let function = match &a.handler {
        Some(spec) => {
            if !a.reads.is_empty() {
                bail!("--read is for the scripted function; a --handler makes its own reads");
            }
            let mut handler = Handler::parse(spec, a.runtime)?;
            handler.layers.extend(layer.iter().map(|l| l.dir.clone()));
            Function::Handler(handler)
        }
        None => {
            let reads = a.reads.clone();
            Function::Scripted(Box::new(move |addr| scripted(addr, reads, token)))
        }
    };
    let options = a.options();
    match &function {
        Function::Handler(h) => println!("function: {} ({:?}) in {}", h.name, h.runtime, h.task_root.display()),
        Function::Scripted(_) => println!("function: scripted, reads {:?}", a.reads),
    }
    let mut local = LocalFunction::start(Setup {
        options: options.clone(),
        function,
        extension: command.clone(),
        env,
        port,
        record_reads: true,
        freeze: a.freeze,
    })
    .await?;
    println!(
        "INIT_START fake Lambda platform on {} ({}), extension {}",
        local.platform.runtime_api(),
        options.init_type.as_str(),
        command[0]
    );
    if local.init.failed() {
        println!("INIT failed after {:.2} ms", local.init.duration.as_secs_f64() * 1000.0);
        for e in &local.init.errors {
            println!("  extension {}: {} {}", e.extension, e.error_type, e.body);
        }
        if let Some(e) = &local.init.runtime_error {
            println!("  runtime: {e}");
        }
        println!("{}", local.output());
        bail!("Init did not succeed");
    }
    for line in local.init_logs() {
        println!("{line}");
    }
    for _ in 0..a.invocations {
        let invoked = local.invoke(&payload).await?;
        print_invocation(&invoked);
        tokio::time::sleep(Duration::from_millis(a.pause_ms)).await;
    }
    match local.shutdown(Duration::from_millis(a.shutdown_ms)).await? {
        Some(status) => println!("SHUTDOWN: extension exited with {status}"),
        None => println!("SHUTDOWN: extension still running at the deadline (Lambda would SIGKILL it)"),
    }
    let deliveries = local.platform.deliveries();
    println!(
        "telemetry deliveries: {} ({} answered 200); errors reported: {:?}",
        deliveries.len(),
        deliveries.iter().filter(|d| d.status == Some(200)).count(),
        local.platform.errors()
    );
    println!("--- extension output ---");
    for line in local.extension.logs() {
        println!("{line}");
    }
    Ok(())
}

/// Lambda's lines for one invocation, then the response and the reads.
pub fn print_invocation(invoked: &Invoked) {
    for line in invoked.lambda_lines() {
        println!("{line}");
    }
    match &invoked.outcome.response {
        Ok(body) => println!("  response: {body}"),
        Err(body) => println!("  error: {body}"),
    }
    if invoked.reads.is_empty() {
        println!("  reads: none");
    }
    for read in &invoked.reads {
        println!("  read: {read}");
    }
}

/// A function that GETs `reads` from the extension at `addr` with `token`, answering with
/// each read's status and `X-Cache` (`200 hit, 200 miss`).
pub fn scripted(addr: Option<std::net::SocketAddr>, reads: Vec<String>, token: String) -> runtime::Handler {
    runtime::handler(move |_inv: runtime::Invocation| {
        let reads = reads.clone();
        let token = token.clone();
        async move {
            let addr = addr.ok_or("the extension serves nothing to read")?;
            let mut out = Vec::new();
            for path in &reads {
                match crate::harness::client::get(addr, path, &[("X-Aws-Parameters-Secrets-Token", &token)]).await {
                    Ok(r) => out.push(format!("{} {}", r.status, r.header("x-cache").unwrap_or("-"))),
                    Err(e) => out.push(format!("error {e}")),
                }
            }
            Ok(out.join(", "))
        }
    })
}
