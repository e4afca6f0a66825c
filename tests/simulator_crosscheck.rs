//! The extension under a second, independent platform: the `lambda-simulator` crate. If our
//! fake platform and the extension agreed on a mistake, this is where it would show.

mod common;

use std::time::Duration;

use common::*;
use lambda_simulator::{InvocationStatus, ShutdownReason, Simulator};
use lsc_devtools::fakes::moto::Moto;
use lsc_devtools::fakes::proxy::FaultProxy;
use lsc_devtools::harness::extension::Extension;

#[tokio::test]
async fn the_extension_runs_under_lambda_simulator() {
    let aws = aws();
    // Four: more ids than upstream places, so the prefetch is one batch call.
    let ids: Vec<String> = (0..4).map(|i| unique(&format!("xcheck{i}"))).collect();
    for id in &ids {
        aws.create_secret(id, "crosscheck-value").await.unwrap();
    }
    let proxy = FaultProxy::start(Moto::shared().addr).await.unwrap();
    let simulator = Simulator::builder()
        .function_name("crosscheck")
        .invocation_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_millis(1500))
        .build()
        .await
        .expect("simulator starts");

    let config = config_file(&format!(
        "secrets:\n{}",
        ids.iter().map(|id| format!("  - id: {id}\n")).collect::<String>()
    ));
    // With an exporter the extension subscribes to the Telemetry API; `end` makes each `/next`
    // wait for the simulator's runtimeDone, so its telemetry is checked too.
    let receiver = lsc_devtools::fakes::otlp::OtlpReceiver::start().await.unwrap();
    let mut env = lsc_devtools::harness::extension::base_env(&proxy.endpoint(), TOKEN);
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("SECRETS_CACHE_FLUSH", "end".to_string()),
        // Lambda sets host:port without a scheme; the simulator's runtime_api_url() has one.
        ("AWS_LAMBDA_RUNTIME_API", simulator.addr().to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "crosscheck".to_string()),
        ("SECRETS_CACHE_SANDBOX_HOST", "127.0.0.1".to_string()),
        ("SECRETS_CACHE_CONFIG", config.display().to_string()),
    ] {
        env.push((k.to_string(), v));
    }
    let mut ext = Extension::spawn(&common::bin(), &[], &env).unwrap();
    let addr = ext.wait_listening().await.unwrap();
    simulator
        .wait_for(|| async { simulator.extension_count().await >= 1 }, Duration::from_secs(10))
        .await
        .expect("the extension registers");
    let registered = simulator.get_registered_extensions().await;
    assert_eq!(registered[0].name, "lambda-secrets-cache");
    tokio::spawn(lsc_devtools::fakes::platform::runtime::serve(simulator.addr(), reader(addr)));

    let paths: Vec<String> = ids.iter().map(|id| secret_path(id)).collect();
    for round in 0..3 {
        let request_id = simulator.enqueue_payload(serde_json::json!(paths)).await;
        let state = simulator
            .wait_for_invocation_complete(&request_id, Duration::from_secs(10))
            .await
            .expect("the invocation completes");
        assert_eq!(state.status, InvocationStatus::Success);
        let body = serde_json::to_string(&state.response.expect("a response").payload).unwrap();
        let reads: Reads = serde_json::from_str(&body).unwrap();
        if round == 0 {
            // lambda-simulator ends Init at the runtime's first `next` without waiting for the
            // extensions' (Lambda waits for both), so the first reads may join the prefetch.
            assert!(reads.iter().all(|(status, _)| *status == 200), "{reads:?}");
        } else {
            assert!(reads.iter().all(|r| *r == (200, "hit".to_string())), "{reads:?}");
        }
        simulator
            .wait_for_extensions_ready(&request_id, Duration::from_secs(10))
            .await
            .expect("the extension calls /next after the invocation");
    }
    assert_eq!(proxy.calls("BatchGetSecretValue"), 1);
    assert_eq!(proxy.total_calls(), 1, "early reads joined the prefetch instead of fetching");

    let status = status(&ext).await;
    let lifecycle = &status["lifecycle"];
    assert!(lifecycle["telemetry"].as_str().unwrap().starts_with("subscribed"), "{lifecycle}");
    assert_eq!(lifecycle["invocations"], 3);
    assert_eq!(
        lifecycle["next_released_by"]["runtime_done"], 3,
        "the simulator's runtimeDone reached the listener and matched the request: {lifecycle}"
    );

    simulator.graceful_shutdown(ShutdownReason::Spindown).await;
    let exit = ext.wait_exit(Duration::from_secs(3)).await.unwrap().expect("exits after SHUTDOWN");
    assert!(exit.success(), "{exit}");
    assert!(
        receiver.metric_exports() >= 3,
        "an export after each runtimeDone and at SHUTDOWN: {}",
        receiver.metric_exports()
    );
    let _ = std::fs::remove_file(config);
}
