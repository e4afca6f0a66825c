//! Developer commands for lambda-secrets-cache: `lsc-dev --help` lists them, and
//! `lsc-dev <command> --help` explains each.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lsc_devtools::bench::variants;
use lsc_devtools::local::command::LambdaArgs;

#[derive(Parser)]
#[command(name = "lsc-dev", version, about = "Developer commands for lambda-secrets-cache")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Extension mode under the fake Lambda platform against moto, through the counting proxy,
    /// beside the example Python handler under awslambdaric, in phases, with a summary (what
    /// `make demo` runs).
    Demo {
        /// The extension binary (default: target/release/lambda-secrets-cache).
        #[arg(long)]
        extension: Option<PathBuf>,
    },
    /// Runs any external extension under the fake Lambda platform beside your own handler
    /// (`--handler app.handler`, under AWS's runtime interface client) or a scripted function,
    /// and prints what Lambda would (START/END/REPORT), the response and the cache reads.
    Lambda(LambdaArgs),
    /// Cached reads against nginx serving the same bytes (wrk and a paired probe), start-up,
    /// RSS, binary size, upstream calls; Markdown on stdout.
    BenchHttp {
        #[arg(long)]
        extension: Option<PathBuf>,
        /// wrk runs per figure (5 at one connection).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds per wrk run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// The current-thread runtime against the multi-thread one, in the same run.
    BenchRuntime {
        #[arg(long)]
        extension: Option<PathBuf>,
        #[command(flatten)]
        rounds: Rounds,
    },
    /// Two or more builds of the extension side by side in the same run (e.g. the zig-linked
    /// layer binary against a plain `cargo build --release`).
    BenchBuilds {
        /// A build to measure, as NAME=PATH (repeat; at least two).
        #[arg(long = "build", value_name = "NAME=PATH", value_parser = parse_build, required = true)]
        builds: Vec<(String, PathBuf)>,
        #[command(flatten)]
        rounds: Rounds,
    },
    /// What one cached read costs a function's own code, each way of reading (the clients,
    /// urllib/requests/http.get/fetch, the AWS SDKs straight to AWS, in-process caching),
    /// Python and Node.js; then failed reads across freezes longer than 10 s.
    BenchClients {
        #[arg(long)]
        extension: Option<PathBuf>,
        /// Reads per variant and round.
        #[arg(long, default_value_t = 2000)]
        reads: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Milliseconds each AWS call is held at the proxy.
        #[arg(long, default_value_t = 40)]
        latency_ms: u64,
        /// Freezes (each `--frozen-s` long) between single reads; 0 skips.
        #[arg(long, default_value_t = 20)]
        freeze_cycles: usize,
        #[arg(long, default_value_t = 11)]
        frozen_s: u64,
    },
    /// What the extension adds to each invocation (post-runtime duration), against the null
    /// extension in the same environment, for each setting.
    BenchPostRuntime {
        #[arg(long)]
        extension: Option<PathBuf>,
        /// Invocations per setting.
        #[arg(long, default_value_t = 200)]
        invocations: usize,
    },
    /// What a real Python function sees from a cold start on (awslambdaric under the fake
    /// platform, AWS latency injected): the extension with and without prefetch against boto3
    /// and aws-secretsmanager-caching in the handler, and a null extension.
    BenchColdStart {
        #[arg(long)]
        extension: Option<PathBuf>,
        /// Rounds; every variant runs once per round, interleaved.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Warm invocations after each cold start.
        #[arg(long, default_value_t = 10)]
        warm: usize,
        /// How long the proxy holds every AWS call, in ms.
        #[arg(long, default_value_t = 40)]
        latency_ms: u64,
    },
    /// A fleet's burst of cold starts against AWS's per-account quotas (scaled), with and
    /// without them, and how far apart the environments refresh afterwards.
    BenchFleet {
        #[arg(long)]
        extension: Option<PathBuf>,
        /// Environments in the burst.
        #[arg(long, default_value_t = 40)]
        environments: usize,
        /// The window they start in, ms.
        #[arg(long, default_value_t = 1000)]
        window_ms: u64,
        /// Secrets `required: true` in each environment's config file.
        #[arg(long, default_value_t = 5)]
        secrets: usize,
        /// AWS's quotas are multiplied by this.
        #[arg(long, default_value_t = 0.1)]
        scale: f64,
    },
    /// What the extension adds to every cold start: exec → /register, → listening, → first
    /// /next, against the std-only null extension, starts interleaved.
    BenchStartup {
        #[arg(long)]
        extension: Option<PathBuf>,
        /// The null extension (default: lsc-null-extension beside lsc-dev; another build for
        /// another architecture, run under LSC_EXTENSION_RUNNER as ours is).
        #[arg(long)]
        null: Option<PathBuf>,
        /// A command both binaries run under (`qemu-aarch64-static -L /usr/aarch64-linux-gnu`).
        #[arg(long)]
        runner: Option<String>,
        /// Starts per variant.
        #[arg(long, default_value_t = 15)]
        rounds: usize,
    },
}

/// How long the side-by-side comparisons run.
#[derive(clap::Args)]
struct Rounds {
    /// Rounds of the one-connection probe, every variant interleaved with nginx.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// wrk runs per figure at 16 and 64 connections.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

fn parse_build(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text.split_once('=').ok_or("expected NAME=PATH")?;
    if !std::path::Path::new(path).is_file() {
        return Err(format!("{path} is not a file"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

fn release(extension: Option<PathBuf>) -> PathBuf {
    extension.unwrap_or_else(|| lsc_devtools::harness::extension::binary("release"))
}

/// The std-only null extension the benchmarks run beside ours: built with lsc-dev, beside it.
fn null_extension() -> anyhow::Result<PathBuf> {
    let null = std::env::current_exe()?.with_file_name("lsc-null-extension");
    anyhow::ensure!(
        null.is_file(),
        "{} is missing: cargo build --release -p lsc-null-extension",
        null.display()
    );
    Ok(null)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = match cli.command {
        Command::Demo { extension } => return runtime.block_on(lsc_devtools::demo::run(&release(extension))),
        Command::Lambda(args) => return runtime.block_on(lsc_devtools::local::command::run(args)),
        Command::BenchHttp { extension, runs, seconds } => {
            runtime.block_on(lsc_devtools::bench::http::run(&release(extension), runs, seconds))?
        }
        Command::BenchRuntime { extension, rounds: r } => {
            let variants = variants::runtimes(&release(extension));
            runtime.block_on(variants::run(&variants, r.rounds, r.runs, r.seconds))?
        }
        Command::BenchBuilds { builds, rounds: r } => {
            let variants: Vec<_> = builds
                .into_iter()
                .map(|(name, bin)| variants::Variant {
                    name,
                    bin,
                    env: Vec::new(),
                })
                .collect();
            runtime.block_on(variants::run(&variants, r.rounds, r.runs, r.seconds))?
        }
        Command::BenchColdStart {
            extension,
            rounds,
            warm,
            latency_ms,
        } => {
            let latency = std::time::Duration::from_millis(latency_ms);
            runtime.block_on(lsc_devtools::bench::cold_start::run(
                &release(extension),
                &null_extension()?,
                rounds,
                warm,
                latency,
            ))?
        }
        Command::BenchFleet {
            extension,
            environments,
            window_ms,
            secrets,
            scale,
        } => runtime.block_on(lsc_devtools::bench::fleet::run(
            &release(extension),
            environments,
            std::time::Duration::from_millis(window_ms),
            secrets,
            scale,
        ))?,
        Command::BenchStartup {
            extension,
            null,
            runner,
            rounds,
        } => {
            let null = match null {
                Some(null) => null,
                None => null_extension()?,
            };
            let runner: Vec<String> = runner.iter().flat_map(|r| r.split_whitespace().map(str::to_string)).collect();
            runtime.block_on(lsc_devtools::bench::startup::run(&release(extension), &null, &runner, rounds))?
        }
        Command::BenchClients {
            extension,
            reads,
            rounds,
            latency_ms,
            freeze_cycles,
            frozen_s,
        } => runtime.block_on(lsc_devtools::bench::clients::run(
            &release(extension),
            lsc_devtools::bench::clients::Plan {
                reads,
                rounds,
                latency: std::time::Duration::from_millis(latency_ms),
                freeze_cycles,
                frozen: std::time::Duration::from_secs(frozen_s),
            },
        ))?,
        Command::BenchPostRuntime { extension, invocations } => runtime.block_on(lsc_devtools::bench::post_runtime::run(
            &release(extension),
            &null_extension()?,
            invocations,
        ))?,
    };
    println!("{report}");
    Ok(())
}
