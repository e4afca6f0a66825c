//! Entry point: parse arguments, build the `Config`, hand over to `app`.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lambda_secrets_cache::app;
use lambda_secrets_cache::config::{self, Config, Env, LogLevel, ProcessEnv, read_file_from_disk};
use lambda_secrets_cache::upstream::roots;

const USAGE: &str = "usage: lambda-secrets-cache [serve | check [--config PATH] | --version | --help]

  (no command)  extension mode when AWS_LAMBDA_RUNTIME_API is set, else standalone
  serve         standalone: the same HTTP API, refresh and export on timers
  check         validate environment and config file, print the resolved settings
  --version     print the version";

enum Command {
    Run,
    Serve,
    Check(Option<PathBuf>),
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    match args {
        [] => Ok(Command::Run),
        [cmd] if cmd == "serve" => Ok(Command::Serve),
        [cmd] if cmd == "check" => Ok(Command::Check(None)),
        [cmd, flag, path] if cmd == "check" && flag == "--config" => Ok(Command::Check(Some(PathBuf::from(path)))),
        [flag] if flag == "--version" || flag == "-V" => Ok(Command::Version),
        [flag] if flag == "--help" || flag == "-h" => Ok(Command::Help),
        other => Err(format!("unrecognised arguments: {}", other.join(" "))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    match command {
        Command::Version => {
            let _ = writeln!(out, "lambda-secrets-cache {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help => {
            let _ = writeln!(out, "{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Check(path) => match Config::load_with_path(&ProcessEnv, &read_file_from_disk, path) {
            Ok(config) => match roots::load(&config.upstream.trust) {
                Ok(loaded) => {
                    let _ = write!(out, "configuration is valid\n{}", config.describe());
                    if let Some(file) = loaded.file {
                        let _ = writeln!(out, "{:<24}{} certificates from {}", "", loaded.taken, file.display());
                    }
                    if loaded.rejected > 0 {
                        let _ = writeln!(out, "{:<24}{} certificates rustls cannot use were left out", "", loaded.rejected);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let _ = writeln!(out, "{e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                let _ = writeln!(out, "{e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => run(None),
        Command::Run => run(ProcessEnv.get("AWS_LAMBDA_RUNTIME_API")),
    }
}

/// Standalone (`runtime_api` is `None`) or extension mode.
fn run(runtime_api: Option<String>) -> ExitCode {
    // The function-facing socket first: nothing about the config file can delay it.
    let bound = config::http_port(&ProcessEnv).map(app::bind);
    let config = Config::load(&ProcessEnv, &read_file_from_disk);
    let level = config.as_ref().map_or(LogLevel::Info, |c| c.process.log_level);
    init_logging(level, runtime_api.is_some() || ProcessEnv.get("AWS_LAMBDA_FUNCTION_NAME").is_some());
    forbid_core_dumps();
    match run_mode(config, runtime_api, bound) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_mode(config: Result<Config, config::ConfigError>, runtime_api: Option<String>, bound: Option<app::Bound>) -> anyhow::Result<()> {
    let threads = config.as_ref().map_or(1, |c| c.process.worker_threads.get());
    let mut builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = builder.enable_all().build().context("cannot start the async runtime")?;
    match runtime_api {
        // Config errors are reported to the platform (init/error) in extension mode.
        Some(api) => runtime.block_on(app::extension(config, bound, &api, &extension_name()))?,
        None => runtime.block_on(app::standalone(config?, bound))?,
    }
    Ok(())
}

/// This process's memory holds secret values, and `panic = "abort"` ends a panic with SIGABRT:
/// no core dump may copy that memory to disk. Soft and hard limit both, so nothing re-raises it.
fn forbid_core_dumps() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %e, "cannot set the core file size limit to 0");
    }
}

/// The platform knows an external extension by its file name in /opt/extensions.
fn extension_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "lambda-secrets-cache".into())
}

/// Logs go to stderr (stdout stays for command output); JSON inside Lambda, text elsewhere.
fn init_logging(level: LogLevel, json: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let ours = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::None => LevelFilter::OFF,
    };
    // Our events at the configured level, our dependencies' warnings and errors. (A fixed
    // target list: no directive parsing before `/register`.)
    let filter = Targets::new()
        .with_target("lambda_secrets_cache", ours)
        .with_default(LevelFilter::WARN);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    if json {
        tracing_subscriber::registry()
            .with(fmt.json().flatten_event(true).with_filter(filter))
            .init();
    } else {
        tracing_subscriber::registry().with(fmt.with_ansi(false).with_filter(filter)).init();
    }
}
