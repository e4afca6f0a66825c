//! `lsc-dev lambda`: any external extension run locally under the fake Lambda platform, with a
//! scripted function that reads paths from it, and what the platform saw printed per
//! invocation (status, durations, post-runtime, reads), then SHUTDOWN and the extension's logs.

use std::time::Duration;

use anyhow::bail;

use crate::extension::Extension;
use crate::platform::{FakeLambda, Faults, InitType, Options, runtime};

/// The options of `lsc-dev lambda`.
#[derive(Debug, Clone, clap::Args)]
pub struct LambdaArgs {
    /// Invocations to run.
    #[arg(long, default_value_t = 5)]
    pub invocations: usize,
    /// The function timeout: each INVOKE's deadline is this far ahead.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
    /// Idle time between invocations.
    #[arg(long, default_value_t = 200)]
    pub pause_ms: u64,
    /// A path the function GETs from 127.0.0.1:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT (default
    /// 2773) with $AWS_SESSION_TOKEN, each invocation (repeat for several).
    #[arg(long = "read", value_name = "PATH")]
    pub reads: Vec<String>,
    /// Start as SnapStart: a snapshot after Init, restored at the first invocation.
    #[arg(long)]
    pub snap_start: bool,
    /// SIGSTOP the extension between invocations, as Lambda freezes the environment.
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
    /// The extension to run and its arguments (after `--`). It gets this environment plus
    /// AWS_LAMBDA_RUNTIME_API, SECRETS_CACHE_SANDBOX_HOST=127.0.0.1 and the function's
    /// AWS_LAMBDA_* variables.
    #[arg(last = true, required = true, value_name = "EXTENSION")]
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

/// Runs `a.command` under the fake platform and prints what the platform saw.
pub async fn run(a: LambdaArgs) -> anyhow::Result<()> {
    let options = a.options();
    let platform = FakeLambda::start(options.clone()).await?;
    println!(
        "fake Lambda platform on {} ({})",
        platform.runtime_api(),
        options.init_type.as_str()
    );
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    for (k, v) in [
        ("AWS_LAMBDA_RUNTIME_API", platform.runtime_api()),
        ("SECRETS_CACHE_SANDBOX_HOST", "127.0.0.1".into()),
        ("AWS_LAMBDA_FUNCTION_NAME", options.function_name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", options.function_version.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", options.memory_mb.to_string()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", options.init_type.as_str().into()),
    ] {
        env.retain(|(name, _)| name != k);
        env.push((k.into(), v));
    }
    let port: u16 = std::env::var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2773);
    let token = std::env::var("AWS_SESSION_TOKEN").unwrap_or_default();
    let mut ext = Extension::spawn(
        a.command[0].as_ref(),
        &a.command[1..].iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    )?;

    let reads = a.reads.clone();
    let handler = runtime::handler(move |_inv: runtime::Invocation| {
        let reads = reads.clone();
        let token = token.clone();
        async move {
            let mut out = Vec::new();
            for path in &reads {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                match crate::client::get(addr, path, &[("X-Aws-Parameters-Secrets-Token", &token)]).await {
                    Ok(r) => out.push(format!("{} {}", r.status, r.header("x-cache").unwrap_or("-"))),
                    Err(e) => out.push(format!("error {e}")),
                }
            }
            Ok(out.join(", "))
        }
    });
    runtime::spawn(&platform, None, handler);
    let init = platform.wait_init(Duration::from_secs(15)).await;
    let outcome = match init {
        Ok(init) if init.errors.is_empty() => {
            println!("init: {:.1} ms", init.duration.as_secs_f64() * 1000.0);
            Ok(())
        }
        Ok(init) => Err(format!("init failed: {:?}", init.errors)),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = outcome {
        println!("{e}");
        print_logs(&ext);
        bail!("init did not succeed");
    }
    if a.freeze {
        platform.freeze_between_invokes(vec![ext.pid()]);
    }
    for i in 1..=a.invocations {
        let o = platform.invoke("{}").await?;
        println!(
            "invoke {i}: {} in {:.1} ms, /next {:.1} ms after the response{} | reads: {}",
            o.status,
            o.function_duration.as_secs_f64() * 1000.0,
            o.extensions_overhead.as_secs_f64() * 1000.0,
            if o.extensions_timed_out { " (deadline hit)" } else { "" },
            o.response.unwrap_or_else(|e| e)
        );
        tokio::time::sleep(Duration::from_millis(a.pause_ms)).await;
    }
    let deadline = platform.shutdown("spindown", Duration::from_millis(a.shutdown_ms)).await;
    match ext.wait_exit(deadline.saturating_duration_since(std::time::Instant::now())).await? {
        Some(status) => println!("SHUTDOWN: extension exited with {status}"),
        None => println!("SHUTDOWN: extension still running at the deadline (Lambda would SIGKILL it)"),
    }
    let deliveries = platform.deliveries();
    println!(
        "telemetry deliveries: {} ({} answered 200); errors reported: {:?}",
        deliveries.len(),
        deliveries.iter().filter(|d| d.status == Some(200)).count(),
        platform.errors()
    );
    print_logs(&ext);
    Ok(())
}

fn print_logs(ext: &Extension) {
    println!("--- extension output ---");
    for line in ext.logs() {
        println!("{line}");
    }
}
