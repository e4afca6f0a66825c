//! OTLP out, checked number by number: a scripted workload under the fake platform with known
//! hits, misses, stale serves and failures, exported to the in-repo receiver after each
//! invocation. Also: a collector that is down or slow costs at most the export timeout.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use lsc_devtools::otlp::OtlpReceiver;
use lsc_devtools::platform::Options;
use lsc_devtools::proxy::{Fault, FaultKind};

const INIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exported_metrics_equal_the_truth() {
    let aws = aws();
    let (a, b, c, missing) = (unique("otlp-a"), unique("otlp-b"), unique("otlp-c"), unique("otlp-missing"));
    for id in [&a, &b, &c] {
        aws.create_secret(id, "otlp-value-not-secret").await.unwrap();
    }
    let receiver = OtlpReceiver::start().await.unwrap();
    let endpoint = receiver.endpoint();
    let yaml = format!("secrets:\n  - id: {a}\n    ttl: 1s\n  - id: {b}\n");
    let lambda = start_lambda(
        Options {
            function_name: "otlp-fn".into(),
            ..Options::default()
        },
        Some(&yaml),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=payments"),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "300"),
        ],
    )
    .await;
    lambda.platform.wait_init(INIT).await.unwrap();

    // 1: two prefetched hits, one miss, one permanent error.
    let (_, reads) = lambda
        .invoke(&[secret_path(&a), secret_path(&b), secret_path(&c), secret_path(&missing)])
        .await;
    let codes: Vec<u16> = reads.iter().map(|r| r.0).collect();
    assert_eq!(&codes[..3], &[200, 200, 200]);
    assert!(codes[3] >= 400, "{reads:?}");
    // 2: two hits.
    lambda.invoke(&[secret_path(&b), secret_path(&c)]).await;
    // 3: `a` (TTL 1 s) has expired and its refresh hangs past the 300 ms budget: served stale.
    lambda.platform.freeze_between_invokes(vec![lambda.ext.pid()]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    lambda.proxy.inject(
        Fault::always(FaultKind::Delay(Duration::from_secs(2)))
            .on("GetSecretValue")
            .times(1),
    );
    let (_, reads) = lambda.invoke(&[secret_path(&a), secret_path(&b)]).await;
    assert_eq!(reads, vec![(200, "stale".to_string()), (200, "hit".to_string())]);
    lambda.platform.thaw();
    // 4: the function fails (no cache reads).
    let failed = lambda.platform.invoke("not a list of paths").await.unwrap();
    assert_eq!(failed.status, "error");

    let total = |name: &str| receiver.sum_by(name, "").values().sum::<u64>();
    assert_eq!(total("faas.invocations"), 4, "platform.start of each invocation");
    assert_eq!(total("faas.errors"), 1);
    assert_eq!(total("faas.timeouts"), 0);
    assert_eq!(total("faas.coldstarts"), 1, "the first report carries initDurationMs");
    assert_eq!(receiver.histogram_count("faas.init_duration", &[]), 1);
    assert_eq!(
        receiver.histogram_count("faas.invoke_duration", &[]),
        3,
        "a report arrives during the next invocation, so the last one is not exported yet"
    );

    let truth: BTreeMap<String, u64> = [("error", 1), ("hit", 5), ("miss", 1), ("stale", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(receiver.sum_by("secrets_cache.requests", "cache.result"), truth);
    assert_eq!(receiver.histogram_count("secrets_cache.request.duration", &[]), 8);
    assert_eq!(
        receiver.histogram_count("secrets_cache.staleness", &[("source", "secretsmanager")]),
        7,
        "one per value served"
    );
    let upstream = lambda.proxy.total_calls() as u64;
    assert_eq!(
        upstream,
        4,
        "prefetch batch, c, missing, a's hung refresh: {:?}",
        lambda.proxy.counts()
    );
    assert_eq!(receiver.histogram_count("secrets_cache.fetch.duration", &[]), upstream);
    assert_eq!(
        receiver.histogram_count(
            "secrets_cache.fetch.duration",
            &[("outcome", "error"), ("error.type", "TimeoutError")]
        ),
        1
    );
    assert_eq!(
        receiver.histogram_count(
            "secrets_cache.fetch.duration",
            &[("rpc.method", "BatchGetSecretValue"), ("outcome", "ok")]
        ),
        1
    );
    let refreshes = receiver.sum_by("secrets_cache.refreshes", "trigger");
    assert_eq!(refreshes.get("prefetch"), Some(&2));
    // c, missing, and a's refresh: started by INVOKE (ahead) or by the read, whichever came first.
    let later = refreshes.get("ahead").unwrap_or(&0) + refreshes.get("expired").unwrap_or(&0);
    assert_eq!(later, 3, "{refreshes:?}");
    assert_eq!(receiver.unit("secrets_cache.request.duration").as_deref(), Some("s"));
    assert_eq!(
        receiver.gauge_last("secrets_cache.entries", ("source", "secretsmanager")),
        Some(3.0),
        "a, b, c"
    );
    assert!(receiver.gauge_last("secrets_cache.bytes", ("", "")).is_some_and(|b| b > 0.0));

    let resource = receiver.resource();
    assert_eq!(resource.get("service.name").map(String::as_str), Some("otlp-fn"));
    assert_eq!(resource.get("faas.name").map(String::as_str), Some("otlp-fn"));
    assert_eq!(resource.get("cloud.platform").map(String::as_str), Some("aws_lambda"));
    assert_eq!(resource.get("cloud.provider").map(String::as_str), Some("aws"));
    assert_eq!(resource.get("faas.max_memory").map(String::as_str), Some("134217728"));
    assert!(resource.contains_key("faas.instance"));
    assert_eq!(
        resource.get("deployment.environment").map(String::as_str),
        Some("test"),
        "OTEL_RESOURCE_ATTRIBUTES"
    );

    // /status carries the same numbers.
    let status = lambda.ext.get("/status").await.unwrap().json();
    for item in status["metrics"]["requests"].as_array().unwrap() {
        let result = item["cache.result"].as_str().unwrap();
        assert_eq!(item["count"].as_u64(), truth.get(result).copied(), "{result}");
    }
    assert!(
        status["otlp"]["exports"].as_u64().unwrap() >= 3,
        "one export per invocation at least"
    );
    assert_eq!(status["otlp"]["failures"], 0);

    // Nothing secret crossed the wire or reached a log line (debug logging is on).
    assert!(!receiver.dump().contains("otlp-value-not-secret"));
    let logs = lambda.ext.logs();
    assert!(logs.len() > 10);
    assert!(logs.iter().all(|l| !l.contains("otlp-value-not-secret")));
}

#[tokio::test]
async fn a_down_or_slow_collector_costs_at_most_the_export_timeout() {
    // Each export is bounded by OTEL_EXPORTER_OTLP_TIMEOUT (300 ms): the hold after the
    // function's response stays well under a second, and every invocation completes.
    async fn invocations_stay_bounded(endpoint: &str) -> serde_json::Value {
        let lambda = start_lambda(
            Options::default(),
            None,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), ("OTEL_EXPORTER_OTLP_TIMEOUT", "300")],
        )
        .await;
        lambda.platform.wait_init(INIT).await.unwrap();
        for _ in 0..3 {
            let (outcome, _) = lambda.invoke(&[]).await;
            assert!(!outcome.extensions_timed_out);
            assert!(outcome.extensions_overhead < Duration::from_millis(1000), "{outcome:?}");
        }
        lambda.ext.get("/status").await.unwrap().json()
    }

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let status = invocations_stay_bounded(&format!("http://{closed}")).await;
    assert!(status["otlp"]["failures"].as_u64().unwrap() >= 3, "{status}");

    let receiver = OtlpReceiver::start().await.unwrap();
    receiver.set_delay(Some(Duration::from_secs(5)));
    let status = invocations_stay_bounded(&receiver.endpoint()).await;
    assert!(status["otlp"]["failures"].as_u64().unwrap() >= 3, "timed out: {status}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_join_the_invocation_trace() {
    let id = unique("otlp-span");
    aws().create_secret(&id, "span-value-not-secret").await.unwrap();
    let receiver = OtlpReceiver::start().await.unwrap();
    let endpoint = receiver.endpoint();
    // The handler starts 20 ms after INVOKE, as a real runtime's does, so the extension knows
    // the invocation when the read arrives.
    let options = Options {
        runtime_delay: Duration::from_millis(20),
        ..Options::default()
    };
    let lambda = start_lambda(options, None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    let (outcome, reads) = lambda.invoke(&[secret_path(&id)]).await;
    assert_eq!(reads, vec![(200, "miss".to_string())]);

    // Root=1-<8>-<24>: the OTel trace id is the two groups together.
    let root = outcome
        .trace
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("Root=1-")
        .replace('-', "");
    let spans = receiver.spans();
    let server = spans.iter().find(|s| s.kind == 2).expect("a SERVER span per read");
    let client = spans.iter().find(|s| s.kind == 3).expect("a CLIENT span per AWS call");
    assert_eq!(hex(&server.trace_id), root, "the function's X-Ray trace");
    assert_eq!(hex(&client.trace_id), root);
    assert_eq!(client.parent_span_id, server.span_id, "the AWS call is a child of the read");
    let attr = |s: &lsc_devtools::otlp::proto::tonic::trace::v1::Span, k: &str| lsc_devtools::otlp::attr(&s.attributes, k);
    assert_eq!(attr(server, "faas.invocation_id").as_deref(), Some(outcome.request_id.as_str()));
    assert_eq!(attr(server, "faas.coldstart").as_deref(), Some("true"));
    assert_eq!(attr(server, "cache.result").as_deref(), Some("miss"));
    assert_eq!(attr(client, "rpc.system").as_deref(), Some("aws-api"));
    assert_eq!(attr(client, "rpc.service").as_deref(), Some("SecretsManager"));
    assert_eq!(attr(client, "rpc.method").as_deref(), Some("GetSecretValue"));
    assert!(attr(client, "aws.request_id").is_some_and(|v| !v.is_empty()), "{client:?}");

    // A read that carries its own traceparent is parented there instead.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = lsc_devtools::client::get(
        lambda.ext.addr,
        &secret_path(&id),
        &[("X-Aws-Parameters-Secrets-Token", TOKEN), ("traceparent", traceparent)],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    lambda.invoke(&[]).await; // the flush after it exports the span
    let spans = receiver.spans();
    let own = spans
        .iter()
        .find(|s| hex(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736")
        .expect("a span in the caller's trace");
    assert_eq!(hex(&own.parent_span_id), "00f067aa0ba902b7");
    assert!(!receiver.dump().contains("span-value-not-secret"));
}
