//! Developer commands for lambda-secrets-cache.
//!
//! `lsc-dev demo [--extension PATH]` runs the demo. `lsc-dev lambda [options] -- EXTENSION
//! [ARGS…]` runs any external extension under the fake Lambda platform and prints what the
//! platform saw; see `usage()`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use lsc_devtools::extension::Extension;
use lsc_devtools::platform::{FakeLambda, Faults, InitType, Options, runtime};

fn usage() -> &'static str {
    "usage: lsc-dev demo [--extension PATH]
       lsc-dev bench-post-runtime [--extension PATH [--invocations N]]
       lsc-dev bench-runtime [--extension PATH [ROUNDS RUNS SECONDS]]
       lsc-dev null-extension [--name NAME]
       lsc-dev bench-http [--extension PATH [RUNS SECONDS]]
       lsc-dev lambda [--invocations N] [--timeout-ms MS] [--pause-ms MS] [--read PATH]...
                      [--snap-start] [--freeze] [--subscribe-status CODE] [--drop-runtime-done]
                      [--unknown-events] [--shutdown-ms MS] -- EXTENSION [ARGS...]

lambda: starts the fake platform, runs EXTENSION with this environment plus
AWS_LAMBDA_RUNTIME_API and SECRETS_CACHE_SANDBOX_HOST=127.0.0.1, a function that GETs each
--read path from 127.0.0.1:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT (default 2773) with
$AWS_SESSION_TOKEN, N invocations --pause-ms apart (frozen with SIGSTOP when --freeze),
then SHUTDOWN with --shutdown-ms (default 2000) to exit."
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.first().map(String::as_str) {
        Some("demo") => {
            let bin = match &args[1..] {
                [] => lsc_devtools::extension::binary("release"),
                [flag, path] if flag == "--extension" => PathBuf::from(path),
                _ => bail!("{}", usage()),
            };
            runtime.block_on(lsc_devtools::demo::run(&bin))
        }
        Some("lambda") => runtime.block_on(lambda(&args[1..])),
        Some("bench-http") => {
            let (bin, runs, seconds) = match &args[1..] {
                [] => (lsc_devtools::extension::binary("release"), 3, 5),
                [flag, path] if flag == "--extension" => (PathBuf::from(path), 3, 5),
                [flag, path, r, s] if flag == "--extension" => (PathBuf::from(path), r.parse()?, s.parse()?),
                _ => bail!("{}", usage()),
            };
            let report = runtime.block_on(lsc_devtools::bench::http::run(&bin, runs, seconds))?;
            println!("{report}");
            Ok(())
        }
        Some("bench-post-runtime") => {
            let (bin, n) = match &args[1..] {
                [] => (lsc_devtools::extension::binary("release"), 200),
                [flag, path] if flag == "--extension" => (PathBuf::from(path), 200),
                [flag, path, n_flag, n] if flag == "--extension" && n_flag == "--invocations" => (PathBuf::from(path), n.parse()?),
                _ => bail!("{}", usage()),
            };
            let null = std::env::current_exe()?;
            let report = runtime.block_on(lsc_devtools::bench::post_runtime::run(&bin, &null, n))?;
            println!("{report}");
            Ok(())
        }
        Some("bench-runtime") => {
            let (bin, rounds, runs, seconds) = match &args[1..] {
                [] => (lsc_devtools::extension::binary("release"), 5, 3, 5),
                [flag, path] if flag == "--extension" => (PathBuf::from(path), 5, 3, 5),
                [flag, path, rounds, runs, s] if flag == "--extension" => (PathBuf::from(path), rounds.parse()?, runs.parse()?, s.parse()?),
                _ => bail!("{}", usage()),
            };
            let report = runtime.block_on(lsc_devtools::bench::runtime::run(&bin, rounds, runs, seconds))?;
            println!("{report}");
            Ok(())
        }
        Some("null-extension") => {
            let name = match &args[1..] {
                [] => "null-extension",
                [flag, name] if flag == "--name" => name.as_str(),
                _ => bail!("{}", usage()),
            };
            let api = std::env::var("AWS_LAMBDA_RUNTIME_API").context("AWS_LAMBDA_RUNTIME_API is not set")?;
            runtime.block_on(lsc_devtools::null_extension::run(&api, name))
        }
        _ => {
            eprintln!("{}", usage());
            std::process::exit(2);
        }
    }
}

struct LambdaArgs {
    options: Options,
    invocations: usize,
    pause: Duration,
    reads: Vec<String>,
    freeze: bool,
    shutdown: Duration,
    command: Vec<String>,
}

fn parse(args: &[String]) -> anyhow::Result<LambdaArgs> {
    let mut a = LambdaArgs {
        options: Options::default(),
        invocations: 5,
        pause: Duration::from_millis(200),
        reads: Vec::new(),
        freeze: false,
        shutdown: Duration::from_millis(2000),
        command: Vec::new(),
    };
    let mut faults = Faults::default();
    let mut it = args.iter();
    let number = |v: Option<&String>, flag: &str| -> anyhow::Result<u64> {
        v.with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag} needs a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--invocations" => a.invocations = number(it.next(), arg)? as usize,
            "--timeout-ms" => a.options.timeout = Duration::from_millis(number(it.next(), arg)?),
            "--pause-ms" => a.pause = Duration::from_millis(number(it.next(), arg)?),
            "--shutdown-ms" => a.shutdown = Duration::from_millis(number(it.next(), arg)?),
            "--read" => a.reads.push(it.next().context("--read needs a path")?.clone()),
            "--snap-start" => a.options.init_type = InitType::SnapStart,
            "--freeze" => a.freeze = true,
            "--subscribe-status" => faults.subscribe_status = Some(number(it.next(), arg)? as u16),
            "--drop-runtime-done" => faults.drop_runtime_done = true,
            "--unknown-events" => faults.unknown_events = true,
            "--" => {
                a.command = it.by_ref().cloned().collect();
            }
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    if a.command.is_empty() {
        bail!("no extension command given\n{}", usage());
    }
    a.options.faults = faults;
    Ok(a)
}

async fn lambda(args: &[String]) -> anyhow::Result<()> {
    let a = parse(args)?;
    let platform = FakeLambda::start(a.options.clone()).await?;
    println!(
        "fake Lambda platform on {} ({})",
        platform.runtime_api(),
        a.options.init_type.as_str()
    );
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    for (k, v) in [
        ("AWS_LAMBDA_RUNTIME_API", platform.runtime_api()),
        ("SECRETS_CACHE_SANDBOX_HOST", "127.0.0.1".into()),
        ("AWS_LAMBDA_FUNCTION_NAME", a.options.function_name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", a.options.function_version.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", a.options.memory_mb.to_string()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", a.options.init_type.as_str().into()),
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
                match lsc_devtools::client::get(addr, path, &[("X-Aws-Parameters-Secrets-Token", &token)]).await {
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
        tokio::time::sleep(a.pause).await;
    }
    let deadline = platform.shutdown("spindown", a.shutdown).await;
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
