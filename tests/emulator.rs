//! What `sam local invoke` gives the extension: AWS's Runtime Interface Emulator as the fake
//! platform presents it (`Options::emulator`: `test_function`, 3008 MB, the Telemetry API
//! answered `202 Telemetry.NotSupported`, no `AWS_LAMBDA_INITIALIZATION_TYPE`, SHUTDOWN
//! `SandboxTerminated`) with the credentials the emulator passes: long-term keys, so
//! `AWS_SESSION_TOKEN` is present and empty. The unchanged example handler runs under
//! awslambdaric and sends that empty variable as the token.
//!
//! Then what a user meets when the emulator has no region or no credentials: each is its own
//! code, in Init's error and in the function's error body.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::platform::Options;
use lsc_devtools::fakes::proxy::FaultProxy;
use lsc_devtools::local::function::{ExtensionPort, Function, Handler, LocalFunction, Runtime, Setup};
use serde_json::Value;

/// The environment the emulator passes with long-term keys, exporting OTLP to a closed port
/// with `SECRETS_CACHE_FLUSH=end`: the policy that would hold `/next` for a runtimeDone.
fn emulator_env(proxy: &FaultProxy, config: &std::path::Path) -> Vec<(String, String)> {
    let mut env = lsc_devtools::harness::extension::base_env(&proxy.endpoint(), "");
    env.retain(|(k, _)| k != "AWS_TOKEN");
    for (k, v) in [
        ("AWS_SESSION_TOKEN", String::new()),
        ("SECRETS_CACHE_CONFIG", config.display().to_string()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", lsc_devtools::harness::free_port().unwrap()),
        ),
        ("SECRETS_CACHE_FLUSH", "end".into()),
        // Far above what an invocation takes: a hold of any length would show.
        ("SECRETS_CACHE_RUNTIME_DONE_WAIT", "3s".into()),
    ] {
        env.push((k.into(), v));
    }
    env
}

#[tokio::test]
async fn the_example_handler_works_under_the_emulator_with_long_term_keys() {
    let aws = aws();
    let secret = unique("sam/db");
    let parameter = format!("/{}", unique("sam/flags"));
    aws.create_secret(&secret, r#"{"username":"app","password":"not-a-real-password"}"#)
        .await
        .unwrap();
    aws.put_parameter(&parameter, "feature-x=on", "String").await.unwrap();
    let proxy = FaultProxy::start(lsc_devtools::fakes::moto::Moto::shared().addr).await.unwrap();
    let config = config_file(&format!("secrets:\n  - id: {secret}\n    required: true\n"));
    let examples = lsc_devtools::workspace_root().join("config-examples/functions");
    let handler = Handler::parse(&format!("{}/python_handler.handler", examples.display()), Some(Runtime::Python)).unwrap();
    let mut local = LocalFunction::start(Setup {
        options: Options::emulator(),
        function: Function::Handler(handler),
        extension: vec![bin().display().to_string()],
        env: emulator_env(&proxy, &config),
        port: ExtensionPort::Logged,
        record_reads: false,
        freeze: true,
    })
    .await
    .unwrap();
    assert!(!local.init.failed(), "{:?}\n{}", local.init.errors, local.output());

    let event = serde_json::json!({"secrets": [secret], "parameters": [parameter]});
    for i in 0..3 {
        let invoked = local.invoke(&event.to_string()).await.unwrap();
        let body: Value = serde_json::from_str(
            invoked
                .outcome
                .response
                .as_ref()
                .unwrap_or_else(|e| panic!("{e}\n{}", local.output())),
        )
        .unwrap();
        let reads: Vec<(u64, &str)> = body["reads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["status"].as_u64().unwrap(), r["cache"].as_str().unwrap_or("-")))
            .collect();
        let expected = if i == 0 {
            [(200, "hit"), (200, "miss")]
        } else {
            [(200, "hit"), (200, "hit")]
        };
        assert_eq!(reads, expected, "invocation {i}: {body}\n{}", local.output());
        assert!(
            invoked.outcome.extensions_overhead < Duration::from_secs(1),
            "telemetry is not supported here: nothing to hold /next for ({:?})",
            invoked.outcome.extensions_overhead
        );
    }
    assert_eq!(
        local.platform.requests_to("/2022-07-01/telemetry").len(),
        1,
        "subscribed once, answered 202"
    );
    let exit = local.shutdown(Duration::from_secs(2)).await.unwrap();
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{}", local.output());
    assert_eq!(proxy.total_calls(), 2, "{:?}", proxy.counts());

    let logs = local.output();
    for needle in [
        "request token is empty",
        "Telemetry API not supported here (202)",
        r#""message":"prefetch finished","loaded":1,"failed":0"#,
        r#""reason":"SandboxTerminated""#,
    ] {
        assert!(logs.contains(needle), "{needle:?} not in the logs:\n{logs}");
    }
    assert!(!logs.contains(r#""loaded":0"#), "counts are true:\n{logs}");
    assert!(!logs.contains("not-a-real-password"));
}

/// With an empty token a request must still carry the header: none, or another value, is 403.
#[tokio::test]
async fn an_empty_token_still_needs_the_header() {
    let moto = lsc_devtools::fakes::moto::Moto::shared();
    let mut env = lsc_devtools::harness::extension::base_env(&format!("http://{}", moto.addr), "");
    env.retain(|(k, _)| k != "AWS_TOKEN");
    env.push(("AWS_SESSION_TOKEN".into(), String::new()));
    let ext = lsc_devtools::harness::extension::Extension::start(&bin(), &["serve"], &env)
        .await
        .unwrap();
    let path = secret_path(&unique("sam/none"));
    let get = |headers: &'static [(&'static str, &'static str)]| lsc_devtools::harness::client::get(ext.addr, &path, headers);
    assert_eq!(get(&[]).await.unwrap().status, 403, "no header");
    assert_eq!(
        get(&[("X-Aws-Parameters-Secrets-Token", "x")]).await.unwrap().status,
        403,
        "another value"
    );
    let empty = get(&[("X-Aws-Parameters-Secrets-Token", "")]).await.unwrap();
    assert_eq!(empty.status, 404, "the empty header is the token: {}", empty.text());
}

/// No region, no credentials: each its own code, in Init's error and in the read's body.
#[tokio::test]
async fn no_region_and_no_credentials_say_so() {
    for (case, unset, code) in [
        ("no region", &["AWS_REGION"][..], "MissingRegion"),
        (
            "no credentials",
            &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"][..],
            "MissingCredentials",
        ),
    ] {
        // Lazy reads: 500 with the code and the cause.
        let extra: Vec<(&str, &str)> = unset.iter().map(|k| (*k, "")).collect();
        let lambda = start_lambda(Options::emulator(), None, &extra).await;
        lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
        let r = lsc_devtools::harness::client::get(lambda.ext.addr, &secret_path("sam/any"), &[TOKEN_HEADER])
            .await
            .unwrap();
        assert_api_error(&r, 500, code, &[], case);
        assert_eq!(lambda.proxy.total_calls(), 0, "{case}: nothing was sent");

        // A required entry: Init fails naming the cause, not the network.
        let yaml = "secrets:\n  - id: sam/required\n    required: true\n";
        let lambda = spawn_lambda(Options::emulator(), Some(yaml), &extra).await;
        let init = lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
        let message = init
            .errors
            .iter()
            .map(|e| format!("{} {}", e.error_type, e.body))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(message.contains("Extension.PrefetchFailed"), "{case}: {message}");
        assert!(message.contains(code), "{case}: {message}");
        assert!(!message.contains("ConnectionError"), "{case}: {message}");
    }
}
