//! OTLP out, checked number by number: a scripted workload under the fake platform with known
//! hits, misses, stale serves and failures, exported to the in-repo receiver at the start of
//! invocations and at SHUTDOWN. Also: a collector that is down or hung costs one export
//! timeout per back-off period, not one per invocation.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use lsc_devtools::fakes::otlp::OtlpReceiver;
use lsc_devtools::fakes::platform::Options;
use lsc_devtools::fakes::proxy::{Fault, FaultKind};

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
    // `required`: Init waits for the prefetch, so the first reads are hits.
    let yaml = format!("secrets:\n  - id: {a}\n    ttl: 1s\n    required: true\n  - id: {b}\n");
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

    // What /status says now; the collector gets the rest with the final export at SHUTDOWN.
    let status = status(&lambda.ext).await;
    assert_eq!(
        (
            status["otlp"]["exports"].as_u64(),
            status["otlp"]["failures"].as_u64(),
            status["otlp"]["spans_dropped"].as_u64()
        ),
        (Some(1), Some(0), Some(0)),
        "the default policy exported at the first invocation's start only (at most every 20 s): {}",
        status["otlp"]
    );
    let upstream = lambda.proxy.total_calls() as u64;
    let logs_before_shutdown = lambda.ext.logs();
    let mut lambda = lambda;
    lambda.shutdown_exits_in_time(Duration::from_millis(2000)).await;

    let total = |name: &str| receiver.sum_by(name, "").values().sum::<u64>();
    assert_eq!(total("faas.invocations"), 4, "platform.start of each invocation");
    assert_eq!(total("faas.errors"), 1);
    assert_eq!(total("faas.timeouts"), 0);
    assert_eq!(total("faas.coldstarts"), 1, "the first report carries initDurationMs");
    assert_eq!(receiver.histogram_count("faas.init_duration", &[]), 1);
    assert_eq!(
        receiver.histogram_count("faas.invoke_duration", &[]),
        4,
        "the last report arrives at SHUTDOWN, and the final export waits for it"
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
    assert_eq!(
        upstream,
        5,
        "the prefetch (a and b, one call each: fewer ids than upstream places), c, missing, a's hung refresh: {:?}\n{}",
        lambda.proxy.counts(),
        lambda.ext.logs().join("\n")
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
            &[("rpc.method", "GetSecretValue"), ("outcome", "ok")]
        ),
        3,
        "a, b, c"
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

    // /status carried the same numbers.
    for item in status["metrics"]["requests"].as_array().unwrap() {
        let result = item["cache.result"].as_str().unwrap();
        assert_eq!(item["count"].as_u64(), truth.get(result).copied(), "{result}");
    }

    // Nothing secret crossed the wire or reached a log line (debug logging is on).
    assert!(!receiver.dump().contains("otlp-value-not-secret"));
    assert!(logs_before_shutdown.len() > 10);
    assert!(lambda.ext.logs().iter().all(|l| !l.contains("otlp-value-not-secret")));
}

#[tokio::test]
async fn a_down_or_hung_collector_costs_one_timeout_per_back_off_period() {
    // An export at every invocation's start (`periodic:0`), each bounded by 300 ms. After the
    // first failure the next waits (2 s, doubling): ten quick invocations see one attempt, and
    // only that one can cost the function anything.
    async fn invocations_back_off(endpoint: &str) -> (serde_json::Value, Vec<Duration>) {
        let lambda = start_lambda(
            Options::default(),
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
                ("SECRETS_CACHE_FLUSH", "periodic:0"),
            ],
        )
        .await;
        lambda.platform.wait_init(INIT).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..10 {
            let (outcome, _) = lambda.invoke(&[]).await;
            assert!(!outcome.extensions_timed_out);
            held.push(outcome.extensions_overhead);
        }
        (status(&lambda.ext).await, held)
    }

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (status, held) = invocations_back_off(&format!("http://{closed}")).await;
    assert_eq!(
        (status["otlp"]["exports"].as_u64(), status["otlp"]["failures"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    assert!(held.iter().all(|d| *d < Duration::from_millis(300)), "{held:?}");

    let receiver = OtlpReceiver::start().await.unwrap();
    receiver.set_delay(Some(Duration::from_secs(30)));
    let (status, held) = invocations_back_off(&receiver.endpoint()).await;
    assert_eq!(
        (status["otlp"]["exports"].as_u64(), status["otlp"]["failures"].as_u64()),
        (Some(1), Some(1)),
        "one timed-out export in ten invocations: {status}"
    );
    let slow = held.iter().filter(|d| **d >= Duration::from_millis(100)).count();
    assert!(slow <= 1, "at most one invocation waited for the hung collector: {held:?}");
    assert!(
        held.iter().all(|d| *d < Duration::from_millis(1000)),
        "bounded by the timeout: {held:?}"
    );
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
    // An export at the start of every invocation: the next one carries this one's spans.
    let lambda = start_lambda(
        options,
        None,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("SECRETS_CACHE_FLUSH", "periodic:0")],
    )
    .await;
    lambda.platform.wait_init(INIT).await.unwrap();
    let (outcome, reads) = lambda.invoke(&[secret_path(&id)]).await;
    assert_eq!(reads, vec![(200, "miss".to_string())]);

    // A read that carries its own traceparent is parented there instead.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = lsc_devtools::harness::client::get(lambda.ext.addr, &secret_path(&id), &[TOKEN_HEADER, ("traceparent", traceparent)])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    lambda.invoke(&[]).await; // its start exports both

    // Root=1-<8>-<24>: the OTel trace id is the two groups together.
    let root = outcome
        .trace
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("Root=1-")
        .replace('-', "");
    let spans = receiver.spans();
    let in_trace = |kind: i32| spans.iter().find(|s| s.kind == kind && hex(&s.trace_id) == root);
    let server = in_trace(2).expect("a SERVER span per read, in the function's X-Ray trace");
    let client = in_trace(3).expect("a CLIENT span per AWS call, in the same trace");
    assert_eq!(client.parent_span_id, server.span_id, "the AWS call is a child of the read");
    let attr = |s: &lsc_devtools::fakes::otlp::proto::tonic::trace::v1::Span, k: &str| lsc_devtools::fakes::otlp::attr(&s.attributes, k);
    assert_eq!(attr(server, "faas.invocation_id").as_deref(), Some(outcome.request_id.as_str()));
    assert_eq!(attr(server, "faas.coldstart").as_deref(), Some("true"));
    assert_eq!(attr(server, "cache.result").as_deref(), Some("miss"));
    assert_eq!(attr(client, "rpc.system").as_deref(), Some("aws-api"));
    assert_eq!(attr(client, "rpc.service").as_deref(), Some("SecretsManager"));
    assert_eq!(attr(client, "rpc.method").as_deref(), Some("GetSecretValue"));
    assert!(attr(client, "aws.request_id").is_some_and(|v| !v.is_empty()), "{client:?}");

    let own = spans
        .iter()
        .find(|s| hex(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736")
        .expect("a span in the caller's trace");
    assert_eq!(hex(&own.parent_span_id), "00f067aa0ba902b7");
    assert!(!receiver.dump().contains("span-value-not-secret"));
}
