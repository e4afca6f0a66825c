//! The extension beside real functions: the example handlers in config-examples/functions run
//! by AWS's own runtime interface clients (`awslambdaric` for Python, `aws-lambda-ric` for
//! Node.js; `make test` installs both) under the fake platform, in Lambda's order. Each handler
//! reads a secret (prefetched from the config file) and a parameter (read lazily) through the
//! extension, before and after a frozen idle period, then the environment shuts down.

mod common;

use std::time::Duration;

use lsc_devtools::fakes::platform::{InitType, Options};
use lsc_devtools::fakes::proxy::FaultProxy;
use lsc_devtools::local::function::{ExtensionPort, Function, Handler, LocalFunction, Runtime, Setup};
use serde_json::Value;

use common::TOKEN;

struct Run {
    proxy: FaultProxy,
    local: LocalFunction,
    secret: String,
    parameter: String,
}

async fn start(runtime: Runtime) -> Run {
    start_as(runtime, InitType::OnDemand).await
}

async fn start_as(runtime: Runtime, init_type: InitType) -> Run {
    let aws = common::aws();
    let secret = common::unique("prod/db/credentials");
    let parameter = format!("/{}", common::unique("prod/app/flags"));
    aws.create_secret(&secret, r#"{"username":"app","password":"not-a-real-password"}"#)
        .await
        .unwrap();
    aws.put_parameter(&parameter, "feature-x=on", "String").await.unwrap();
    let proxy = FaultProxy::start(lsc_devtools::fakes::moto::Moto::shared().addr).await.unwrap();
    // Required: Init waits for it, so the first read is a hit however fast the runtime starts
    // (without it, a read that comes first joins the prefetch's call: a miss, no extra call).
    let config = common::config_file(&format!("secrets:\n  - id: {secret}\n    required: true\n"));
    let mut env = lsc_devtools::harness::extension::base_env(&proxy.endpoint(), TOKEN);
    env.push(("AWS_SESSION_TOKEN".into(), TOKEN.into()));
    env.push(("SECRETS_CACHE_CONFIG".into(), config.display().to_string()));
    let examples = lsc_devtools::workspace_root().join("config-examples/functions");
    let file = match runtime {
        Runtime::Python => "python_handler",
        Runtime::Node => "node_handler",
    };
    let handler = Handler::parse(&format!("{}/{file}.handler", examples.display()), Some(runtime)).unwrap();
    let local = LocalFunction::start(Setup {
        options: Options {
            timeout: Duration::from_secs(10),
            init_type,
            ..Options::default()
        },
        function: Function::Handler(handler),
        extension: vec![common::bin().display().to_string()],
        env,
        port: ExtensionPort::Logged,
        record_reads: true,
        freeze: true,
    })
    .await
    .unwrap();
    assert!(
        !local.init.failed(),
        "{:?} {:?}\n{}",
        local.init.errors,
        local.init.runtime_error,
        local.output()
    );
    Run {
        proxy,
        local,
        secret,
        parameter,
    }
}

/// Two invocations around a frozen second, then SHUTDOWN; returns each invocation's response
/// and the cache results the recorder saw (secret, parameter).
async fn invoke_twice(run: &mut Run, event: &Value) -> Vec<(Value, Vec<String>)> {
    let mut out = Vec::new();
    for i in 0..2 {
        if i == 1 {
            // Frozen (SIGSTOP) the whole time, as Lambda leaves an idle environment.
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        let invoked = run.local.invoke(&event.to_string()).await.unwrap();
        let body = invoked
            .outcome
            .response
            .as_ref()
            .unwrap_or_else(|e| panic!("invocation {i} failed: {e}\n{}", run.local.output()));
        let lines = invoked.lambda_lines();
        assert!(lines[0].starts_with("START RequestId: "), "{lines:?}");
        let report = lines.last().unwrap();
        assert!(report.starts_with("REPORT RequestId: "), "{report}");
        assert_eq!(report.contains("Init Duration: "), i == 0, "{report}");
        assert!(report.contains("Billed Duration: "), "{report}");
        let caches: Vec<String> = invoked.reads.iter().map(|r| r.cache.clone().unwrap_or_default()).collect();
        assert!(invoked.reads.iter().all(|r| r.status == Some(200)), "{:?}", invoked.reads);
        out.push((serde_json::from_str(body).unwrap(), caches));
    }
    let exit = run.local.shutdown(Duration::from_secs(2)).await.unwrap();
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{}", run.local.output());
    // The prefetch batch (the secret) and one GetParameter: the second invocation was all hits.
    assert_eq!(run.proxy.total_calls(), 2, "{:?}", run.proxy.counts());
    out
}

#[tokio::test]
async fn python_handler_under_awslambdaric() {
    let mut run = start(Runtime::Python).await;
    let event = serde_json::json!({"secrets": [run.secret], "parameters": [run.parameter]});
    let results = invoke_twice(&mut run, &event).await;
    for (i, (body, caches)) in results.iter().enumerate() {
        let reads = body["reads"].as_array().unwrap();
        assert_eq!(reads.len(), 2, "{body}");
        assert_eq!(reads[0]["fields"], serde_json::json!(["password", "username"]), "{body}");
        assert_eq!(reads[1]["length"], 12, "{body}");
        // The secret was prefetched during Init: a hit from the first read on.
        let expected = if i == 0 { ["hit", "miss"] } else { ["hit", "hit"] };
        assert_eq!(caches, &expected, "invocation {i}: {body}");
        assert_eq!(reads[0]["cache"], expected[0]);
        assert!(
            body["remaining_ms"].as_u64().unwrap() > 5000,
            "the deadline reached the context: {body}"
        );
    }
}

#[tokio::test]
async fn node_handler_under_aws_lambda_ric() {
    let ric = lsc_devtools::local::function::node_ric();
    assert!(
        ric.exists(),
        "{} is missing: `make node-ric` installs it (make test does)",
        ric.display()
    );
    let mut run = start(Runtime::Node).await;
    let event = serde_json::json!({"secret": run.secret, "parameter": run.parameter});
    let results = invoke_twice(&mut run, &event).await;
    for (i, (body, caches)) in results.iter().enumerate() {
        assert_eq!(body["secret"]["fields"], serde_json::json!(["password", "username"]), "{body}");
        assert_eq!(body["parameter"]["length"], 12, "{body}");
        let expected = if i == 0 { ["hit", "miss"] } else { ["hit", "hit"] };
        assert_eq!(caches, &expected, "invocation {i}: {body}");
        assert_eq!(body["parameter"]["cache"], expected[1]);
    }
}

/// SnapStart: awslambdaric ends its init on `restore/next` (the snapshot point) and resumes at
/// the restore; the extension prefetches only after it, so the function's first read joins
/// that prefetch.
#[tokio::test]
async fn python_handler_through_a_snapstart_restore() {
    let mut run = start_as(Runtime::Python, InitType::SnapStart).await;
    let platform = run.local.platform.clone();
    assert_eq!(platform.requests_to("/2018-06-01/runtime/restore/next").len(), 1);
    assert_eq!(run.proxy.total_calls(), 0, "nothing is fetched before the snapshot");
    let event = serde_json::json!({"secrets": [run.secret], "parameters": [run.parameter]});
    let invoked = run.local.invoke(&event.to_string()).await.unwrap();
    let body: Value = serde_json::from_str(invoked.outcome.response.as_ref().unwrap()).unwrap();
    let reads = body["reads"].as_array().unwrap();
    assert!(reads.iter().all(|r| r["status"] == 200), "{body}");
    assert_eq!(reads[0]["fields"], serde_json::json!(["password", "username"]), "{body}");
    let kinds: Vec<String> = platform
        .events()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "platform.restoreRuntimeDone"), "{kinds:?}");
    let exit = run.local.shutdown(Duration::from_secs(2)).await.unwrap();
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{}", run.local.output());
}
