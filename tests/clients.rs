//! The function's side: the Python and Node.js clients, loaded from the layer zip's own layout
//! (`packaging/layer.py`, mounted as Lambda mounts a layer: `python/` and
//! `nodejs/node_modules/` on the runtime's paths), run by AWS's runtime interface clients
//! (awslambdaric, aws-lambda-ric) against the extension and moto: every function, the error
//! types, the Powertools providers with the real Powertools packages, and reads on the kept-alive
//! connection after a freeze longer than 10 s. The clients' own unit tests (wire, retry, every
//! error mapping) are `clients/python/tests` and `clients/node/test`, run by `make test`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use lsc_devtools::fakes::platform::Options;
use lsc_devtools::fakes::proxy::{Fault, FaultKind, FaultProxy};
use lsc_devtools::local::command::Layer;
use lsc_devtools::local::function::{ExtensionPort, Function, Handler, LocalFunction, Runtime, Setup};
use serde_json::{Value, json};

use common::TOKEN;

/// The layer zip built from this checkout's clients (the binary inside is not used: the
/// extension under test runs as `common::bin()`).
fn layer() -> Layer {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let zip = std::env::temp_dir().join(common::unique("clients-layer") + ".zip");
    let made = std::process::Command::new("python3")
        .arg(root.join("packaging/layer.py"))
        .args([
            "--arch",
            "x86_64",
            "--max-glibc",
            "9.99",
            env!("CARGO_BIN_EXE_lambda-secrets-cache"),
        ])
        .arg(&zip)
        .env("LAYER_COMPRESSION", "store")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let layer = Layer::mount(&zip).unwrap();
    let _ = std::fs::remove_file(&zip);
    layer
}

/// Powertools for the Node.js handler, as a second layer (`make node-ric` installs it): the
/// Python one is in `.venv`.
fn powertools_layer(dir: &std::path::Path) -> std::path::PathBuf {
    let modules = lsc_devtools::workspace_root().join("devtools/runtimes/node/node_modules");
    let layer = dir.join("powertools");
    std::fs::create_dir_all(layer.join("nodejs")).unwrap();
    std::os::unix::fs::symlink(modules, layer.join("nodejs/node_modules")).unwrap();
    layer
}

struct Run {
    proxy: FaultProxy,
    local: LocalFunction,
    event: Value,
    _layer: Layer,
}

async fn start(runtime: Runtime) -> Run {
    let aws = common::aws();
    let secret = common::unique("client/plain");
    let json = common::unique("client/json");
    let binary = common::unique("client/binary");
    let parameter = format!("/{}", common::unique("client/flags"));
    aws.create_secret(&secret, "plain-text-value").await.unwrap();
    aws.create_secret(&json, r#"{"username":"app","password":"not-a-real-password"}"#)
        .await
        .unwrap();
    // Six bytes: 00 01 02 03 fe ff.
    aws.create_binary_secret(&binary, "AAECA/7/").await.unwrap();
    aws.put_parameter(&parameter, "feature-x=on", "String").await.unwrap();
    let proxy = FaultProxy::start(lsc_devtools::fakes::moto::Moto::shared().addr).await.unwrap();
    let mut env = lsc_devtools::harness::extension::base_env(&proxy.endpoint(), TOKEN);
    env.push(("AWS_SESSION_TOKEN".into(), "the-session-token".into()));
    env.push(("SECRETS_MANAGER_TIMEOUT_MILLIS".into(), "1500".into()));
    let layer = layer();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/functions");
    let mut handler = Handler::parse(&format!("{}/client_handler.handler", dir.display()), Some(runtime)).unwrap();
    handler.layers.push(layer.dir.clone());
    if runtime == Runtime::Node {
        handler.layers.push(powertools_layer(&layer.dir));
    }
    let local = LocalFunction::start(Setup {
        options: Options {
            timeout: Duration::from_secs(30),
            ..Options::default()
        },
        function: Function::Handler(handler),
        extension: vec![common::bin().display().to_string()],
        env,
        port: ExtensionPort::Logged,
        record_reads: false,
        freeze: true,
    })
    .await
    .unwrap();
    assert!(!local.init.failed(), "{:?}\n{}", local.init.errors, local.output());
    let event = json!({
        "secret": secret, "json": json, "binary": binary, "parameter": parameter,
        "missing": common::unique("client/missing"),
    });
    Run {
        proxy,
        local,
        event,
        _layer: layer,
    }
}

async fn invoke(run: &mut Run, event: &Value) -> BTreeMap<String, Value> {
    let invoked = run.local.invoke(&event.to_string()).await.unwrap();
    let body = invoked
        .outcome
        .response
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}\n{}", run.local.output()));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn error(kind: &str, status: u16, code: &str) -> Value {
    json!({"error": kind, "status": status, "code": code})
}

async fn every_function_and_error(runtime: Runtime) {
    let mut run = start(runtime).await;
    let event = run.event.clone();
    let out = invoke(&mut run, &event).await;
    let str_of = |n: usize| json!({"ok": {"type": "str", "length": n}});
    let expected: BTreeMap<&str, Value> = [
        (
            "get_secret",
            json!({"ok": ["ARN", "CreatedDate", "Name", "ResultMetadata", "SecretBinary", "SecretString", "VersionId", "VersionStages"]}),
        ),
        ("get_secret_string", str_of(16)),
        ("get_secret_json", json!({"ok": ["password", "username"]})),
        ("get_secret_binary", json!({"ok": {"type": "bytes", "length": 6}})),
        ("get_parameter_value", str_of(12)),
        ("refresh", str_of(16)),
        ("version_stage", str_of(16)),
        ("not_found", error("NotFound", 404, "ResourceNotFoundException")),
        ("parameter_not_found", error("NotFound", 400, "ParameterNotFound")),
        ("bad_request", error("BadRequest", 400, "InvalidRequest")),
        ("token_rejected", error("TokenRejected", 403, "InvalidToken")),
        ("not_binary", error("NotAString", 200, "SecretString")),
        ("powertools_secret", json!({"ok": ["password", "username"]})),
        ("powertools_parameter", str_of(12)),
    ]
    .into_iter()
    .collect();
    for (name, want) in &expected {
        assert_eq!(out.get(*name), Some(want), "{runtime:?} {name}: {out:?}");
    }
    assert!(out["get_parameter"]["ok"].as_array().unwrap().contains(&json!("Value")), "{out:?}");
    let not_json = &out["not_json"]["error"];
    assert!(not_json == "ValueError" || not_json == "SyntaxError", "{out:?}");
    assert_eq!(out["powertools_not_found"]["error"], "GetParameterError", "{out:?}");
    assert_eq!(
        out["powertools_not_found"]["cause"], "NotFound",
        "Powertools keeps ours as the cause: {out:?}"
    );
    assert!(!run.local.output().contains("not-a-real-password"));

    // Errors AWS causes, one invocation each, on a secret not cached yet.
    for (fault, kind, status, code) in [
        (
            FaultKind::Status {
                status: 400,
                code: "AccessDeniedException".into(),
            },
            "AccessDenied",
            400,
            "AccessDeniedException",
        ),
        (
            FaultKind::Status {
                status: 400,
                code: "ThrottlingException".into(),
            },
            "Throttled",
            429,
            "ThrottlingException",
        ),
        (FaultKind::Reset, "UpstreamUnavailable", 502, "ConnectionError"),
        (FaultKind::Delay(Duration::from_secs(3)), "UpstreamTimeout", 504, "TimeoutError"),
    ] {
        run.proxy.inject(Fault::always(fault).on("GetSecretValue"));
        let fresh = common::unique("client/uncached");
        let event = json!({"only": ["get_secret"], "secret": fresh, "json": "", "binary": "", "parameter": "", "missing": ""});
        let out = invoke(&mut run, &event).await;
        run.proxy.clear_faults();
        assert_eq!(out["get_secret"], error(kind, status, code), "{runtime:?} {code}");
    }

    // Frozen 11 s (longer than any idle timeout of a kept-alive connection), then the same
    // client reads again on its connection: every read answers.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let only = json!(["get_secret_string", "get_parameter_value", "powertools_parameter"]);
    let mut event = run.event.clone();
    event["only"] = only;
    let out = invoke(&mut run, &event).await;
    assert!(out.values().all(|v| v.get("ok").is_some()), "{runtime:?} after the freeze: {out:?}");
    let exit = run.local.shutdown(Duration::from_secs(2)).await.unwrap();
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

#[tokio::test]
async fn the_python_client_under_awslambdaric() {
    every_function_and_error(Runtime::Python).await;
}

#[tokio::test]
async fn the_node_client_under_aws_lambda_ric() {
    let ric = lsc_devtools::local::function::node_ric();
    assert!(
        ric.exists(),
        "{} is missing: `make node-ric` installs it (make test does)",
        ric.display()
    );
    every_function_and_error(Runtime::Node).await;
}
