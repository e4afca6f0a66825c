//! `lsc-dev bench-clients`: what one cached read costs a function, each way of reading, Python
//! and Node.js, in one process per language and one run (bench/functions/client_reads.py and
//! .mjs, against the release extension in front of moto; AWS calls held `latency` at the
//! proxy). Then the clients' default settings across freezes: a Python and a Node.js handler
//! (awslambdaric, aws-lambda-ric) read once per invocation, frozen (SIGSTOP) longer than 10 s
//! in between, and every failed read is counted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::{machine, percentile};
use crate::fakes::aws::AwsJson;
use crate::fakes::moto::Moto;
use crate::fakes::platform::Options;
use crate::fakes::proxy::{Fault, FaultKind, FaultProxy};
use crate::harness::extension::{Extension, base_env};
use crate::local::function::{ExtensionPort, Function, Handler, LocalFunction, Runtime, Setup};

const SECRET: &str = "bench/clients/db";
const TOKEN: &str = "bench-clients-token";

pub struct Plan {
    pub reads: usize,
    pub rounds: usize,
    pub latency: Duration,
    pub freeze_cycles: usize,
    pub frozen: Duration,
}

pub async fn run(extension: &Path, plan: Plan) -> anyhow::Result<String> {
    let moto = Moto::start().context("starting moto")?;
    let proxy = FaultProxy::start(moto.addr).await?;
    AwsJson::new(moto.addr)
        .create_secret(SECRET, r#"{"username":"app","password":"bench-not-a-real-password"}"#)
        .await?;
    proxy.inject(Fault::always(FaultKind::Delay(plan.latency)));
    let mut env = base_env(&proxy.endpoint(), TOKEN);
    env.push(("AWS_SESSION_TOKEN".into(), TOKEN.into()));
    let ext = Extension::start(extension, &["serve"], &env).await?;
    let root = crate::workspace_root();
    let modules = node_modules(&root)?;
    for (k, v) in [
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", ext.addr.port().to_string()),
        ("SECRET", SECRET.into()),
        // boto3 reads the region from here.
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("READS", plan.reads.to_string()),
        ("ROUNDS", plan.rounds.to_string()),
        ("AWS_READS", "20".into()),
        ("PYTHONPATH", root.join("clients/python").display().to_string()),
        (
            "NODE_PATH",
            modules.display().to_string() + ":" + &root.join("devtools/runtimes/node/node_modules").display().to_string(),
        ),
    ] {
        env.push((k.into(), v));
    }
    let python = measure(
        root.join(".venv/bin/python").as_os_str(),
        &root.join("bench/functions/client_reads.py"),
        &env,
    )?;
    let node = measure("node".as_ref(), &root.join("bench/functions/client_reads.mjs"), &env)?;
    let mut out = format!(
        "A cached read from a function's own code, each way, p50/p90/p99 in µs: {} reads per variant and round, {} rounds \
         interleaved, one process per language; the extension (release) on loopback, AWS (moto) {} ms away through a proxy. {}.\n\n",
        plan.reads,
        plan.rounds,
        plan.latency.as_millis(),
        machine()
    );
    out.push_str(&table("Python 3.11", &python, "urllib.request"));
    out.push_str(&table("Node.js 20", &node, "http.get (global agent)"));
    out.push_str(&targets(&python));
    if plan.freeze_cycles > 0 {
        let (py, js) = tokio::join!(
            freezes(Runtime::Python, extension, &proxy, &modules, &plan),
            freezes(Runtime::Node, extension, &proxy, &modules, &plan)
        );
        out.push_str(&format!(
            "\nAcross {} freezes of {} s each (one read per invocation, default settings): Python {} failed reads, Node.js {} (target: 0).\n",
            plan.freeze_cycles,
            plan.frozen.as_secs(),
            py?,
            js?
        ));
    }
    let _ = std::fs::remove_dir_all(modules.parent().unwrap_or(&modules));
    Ok(out)
}

/// A `node_modules` holding the client (a link to clients/node), as the layer puts it.
fn node_modules(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("lsc-bench-clients-{}/node_modules", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("lambda-secrets-cache");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(root.join("clients/node"), link)?;
    Ok(dir)
}

fn measure(program: &std::ffi::OsStr, script: &Path, env: &[(String, String)]) -> anyhow::Result<Vec<(String, Vec<f64>)>> {
    let output = std::process::Command::new(program)
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let parsed: serde_json::Map<String, Value> = serde_json::from_slice(&output.stdout).context("the script prints JSON")?;
    Ok(parsed
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default(),
            )
        })
        .collect())
}

fn p50(samples: &[(String, Vec<f64>)], name: &str) -> f64 {
    samples
        .iter()
        .find(|(n, _)| n == name)
        .map_or(f64::NAN, |(_, v)| percentile(&mut v.clone(), 50.0))
}

fn table(language: &str, samples: &[(String, Vec<f64>)], baseline: &str) -> String {
    let base = p50(samples, baseline);
    let mut out = format!("| {language} | p50 µs | p90 µs | p99 µs | p50 / {baseline} |\n|---|---|---|---|---|\n");
    for (name, v) in samples {
        let mut v = v.clone();
        let (a, b, c) = (percentile(&mut v, 50.0), percentile(&mut v, 90.0), percentile(&mut v, 99.0));
        out.push_str(&format!("| {name} | {a:.0} | {b:.0} | {c:.0} | {:.2} |\n", a / base));
    }
    out.push('\n');
    out
}

fn targets(python: &[(String, Vec<f64>)]) -> String {
    let client = p50(python, "client");
    let urllib = client / p50(python, "urllib.request");
    let caching = client / p50(python, "aws-secretsmanager-caching");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    format!(
        "Targets (Python): the client's p50 ≤ 0.65× urllib.request: {urllib:.2}× ({}); within 1.5× aws-secretsmanager-caching: {caching:.2}× ({}).\n",
        verdict(urllib <= 0.65),
        verdict(caching <= 1.5)
    )
}

/// Failed reads across `plan.freeze_cycles` freezes of `plan.frozen`, one read per invocation.
async fn freezes(runtime: Runtime, extension: &Path, proxy: &FaultProxy, modules: &Path, plan: &Plan) -> anyhow::Result<usize> {
    let root = crate::workspace_root();
    let mut handler = Handler::parse(
        root.join("bench/functions/client_freeze.handler").to_str().context("UTF-8 path")?,
        Some(runtime),
    )?;
    // As the layer lays them out: python/ and nodejs/node_modules/.
    let layer = modules
        .parent()
        .context("a temporary directory")?
        .join(format!("layer-{runtime:?}"));
    std::fs::create_dir_all(layer.join("nodejs"))?;
    let _ = std::fs::remove_file(layer.join("python"));
    let _ = std::fs::remove_file(layer.join("nodejs/node_modules"));
    std::os::unix::fs::symlink(root.join("clients/python"), layer.join("python"))?;
    std::os::unix::fs::symlink(modules, layer.join("nodejs/node_modules"))?;
    handler.layers.push(layer);
    let env = base_env(&proxy.endpoint(), TOKEN);
    let mut local = LocalFunction::start(Setup {
        options: Options {
            timeout: Duration::from_secs(10),
            ..Options::default()
        },
        function: Function::Handler(handler),
        extension: vec![extension.display().to_string()],
        env,
        port: ExtensionPort::Logged,
        record_reads: false,
        freeze: true,
    })
    .await?;
    let event = serde_json::json!({ "secret": SECRET }).to_string();
    let mut failed = 0;
    for i in 0..=plan.freeze_cycles {
        if i > 0 {
            tokio::time::sleep(plan.frozen).await;
        }
        let invoked = local.invoke(&event).await?;
        let ok = invoked
            .outcome
            .response
            .as_ref()
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            .is_some_and(|v| v.get("ok").is_some());
        failed += usize::from(!ok);
    }
    let _ = local.shutdown(Duration::from_secs(2)).await;
    Ok(failed)
}
