//! End to end with a real collector: the extension under the fake platform exports to rotel
//! (at the start of an invocation and at SHUTDOWN, the default policy), and rotel's debug
//! output shows our metric names, attributes and the X-Ray trace id.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::platform::Options;
use lsc_devtools::fakes::rotel::Rotel;

#[tokio::test]
async fn rotel_receives_metrics_and_spans_in_the_function_trace() {
    let id = unique("rotel");
    aws().create_secret(&id, "rotel-value-not-secret").await.unwrap();
    let rotel = Rotel::start().await.expect("rotel starts (make venv installs it)");
    let yaml = format!("secrets:\n  - id: {id}\n    required: true\n");
    let mut lambda = start_lambda(
        Options {
            function_name: "rotel-fn".into(),
            runtime_delay: Duration::from_millis(20),
            ..Options::default()
        },
        Some(&yaml),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &rotel.endpoint)],
    )
    .await;
    lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    let (first, reads) = lambda.invoke(&[secret_path(&id), secret_path(&unique("rotel-missing"))]).await;
    assert_eq!(reads[0], (200, "hit".to_string()));
    lambda.invoke(&[secret_path(&id)]).await;
    lambda.shutdown_exits_in_time(Duration::from_millis(2000)).await;

    let trace_id = first.otel_trace_id();
    let out = rotel
        .wait_for(
            &[
                "secrets_cache.requests",
                "secrets_cache.request.duration",
                "secrets_cache.staleness",
                "secrets_cache.fetch.duration",
                "secrets_cache.refreshes",
                "faas.invocations",
                "faas.init_duration",
                "cache.result: Str(hit)",
                "cache.result: Str(error)",
                "source: Str(secretsmanager)",
                "rpc.method: Str(GetSecretValue)",
                "error.type: Str(ResourceNotFoundException)",
                "cloud.platform: Str(aws_lambda)",
                "service.name: Str(rotel-fn)",
                "rpc.system: Str(aws-api)",
                "faas.invocation_id",
                &trace_id,
            ],
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    assert!(out.contains("AGGREGATION_TEMPORALITY_DELTA"), "delta by default");
    assert!(!out.contains("rotel-value-not-secret"), "no secret value reaches the collector");
}

#[tokio::test]
async fn rotel_receives_over_grpc_too() {
    let id = unique("rotel-grpc");
    aws().create_secret(&id, "rotel-grpc-value-not-secret").await.unwrap();
    let rotel = Rotel::start().await.expect("rotel starts");
    let mut lambda = start_lambda(
        Options {
            function_name: "rotel-grpc-fn".into(),
            ..Options::default()
        },
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &rotel.grpc_endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    )
    .await;
    lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    let (_, reads) = lambda.invoke(&[secret_path(&id)]).await;
    assert_eq!(reads, vec![(200, "miss".to_string())]);
    lambda.invoke(&[]).await;
    let status = status(&lambda.ext).await;
    assert_eq!(status["otlp"]["failures"], 0, "{status}");
    lambda.shutdown_exits_in_time(Duration::from_millis(2000)).await;
    let out = rotel
        .wait_for(
            &[
                "service.name: Str(rotel-grpc-fn)",
                "secrets_cache.requests",
                "cache.result: Str(miss)",
                "rpc.method: Str(GetSecretValue)",
            ],
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    assert!(!out.contains("rotel-grpc-value-not-secret"));
}
