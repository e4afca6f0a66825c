//! Platform-side faults under the fake Lambda platform: a refused Telemetry API subscription,
//! a collector that is down or hung during a 500 ms SHUTDOWN, and SIGTERM in both modes.
//! (A 500 on `/next` is in `lifecycle.rs`.)

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::otlp::OtlpReceiver;
use lsc_devtools::fakes::platform::{Faults, Options};

const INIT: Duration = Duration::from_secs(20);

async fn seeded(prefix: &str) -> String {
    seeded_secrets(prefix, 1).await.remove(0)
}

#[tokio::test]
async fn a_refused_subscription_leaves_a_working_cache_without_telemetry() {
    for status in [400u16, 500] {
        let name = seeded("lf-refused").await;
        let options = Options {
            faults: Faults {
                subscribe_status: Some(status),
                ..Faults::default()
            },
            ..Options::default()
        };
        // Only an exporter subscribes; `end` would wait for runtimeDone if telemetry worked.
        let receiver = OtlpReceiver::start().await.unwrap();
        let endpoint = receiver.endpoint();
        let lambda = start_lambda(
            options,
            Some(&format!("secrets:\n  - id: {name}\n    required: true\n")),
            &[
                ("SECRETS_CACHE_RUNTIME_DONE_WAIT", "200ms"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("SECRETS_CACHE_FLUSH", "end"),
            ],
        )
        .await;
        let init = lambda.platform.wait_init(INIT).await.unwrap();
        assert!(init.errors.is_empty(), "{status}: {:?}", init.errors);
        for _ in 0..2 {
            let (outcome, reads) = lambda.invoke(&[secret_path(&name)]).await;
            assert_eq!(reads, vec![(200, "hit".to_string())], "{status}");
            assert!(outcome.extensions_overhead < Duration::from_secs(1), "{status}: {outcome:?}");
        }
        let s = common::status(&lambda.ext).await;
        assert_eq!(s["lifecycle"]["telemetry"], "subscription failed", "{status}");
        assert_eq!(s["lifecycle"]["next_released_by"]["no_telemetry"], 2, "{status}: {s}");
        lambda
            .ext
            .wait_log("subscription failed; running without telemetry", Duration::from_secs(1))
            .await
            .unwrap();
    }
}

/// SHUTDOWN with a 500 ms deadline while the collector is `collector`: exit 0 in time.
async fn shutdown_with_collector(endpoint: String) -> Duration {
    let name = seeded("lf-collector").await;
    let mut lambda = start_lambda(
        Options::default(),
        Some(&format!("secrets:\n  - id: {name}\n")),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("SECRETS_CACHE_FLUSH", "end"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
        ],
    )
    .await;
    lambda.platform.wait_init(INIT).await.unwrap();
    let (_, reads) = lambda.invoke(&[secret_path(&name)]).await;
    assert_eq!(reads[0].0, 200);
    lambda.shutdown_exits_in_time(Duration::from_millis(500)).await
}

#[tokio::test]
async fn a_down_collector_does_not_delay_shutdown_past_its_deadline() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let took = shutdown_with_collector(format!("http://{closed}")).await;
    eprintln!("collector down: exit {took:?} after SHUTDOWN");
}

#[tokio::test]
async fn a_hung_collector_does_not_delay_shutdown_past_its_deadline() {
    let receiver = OtlpReceiver::start().await.unwrap();
    receiver.set_delay(Some(Duration::from_secs(30)));
    let took = shutdown_with_collector(receiver.endpoint()).await;
    eprintln!("collector hung: exit {took:?} after SHUTDOWN");
}

fn sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn sigterm_in_extension_mode_exits_zero_and_exports_what_it_has() {
    let name = seeded("lf-sigterm").await;
    let receiver = OtlpReceiver::start().await.unwrap();
    let endpoint = receiver.endpoint();
    let mut lambda = start_lambda(
        Options::default(),
        Some(&format!("secrets:\n  - id: {name}\n")),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("SECRETS_CACHE_FLUSH", "periodic:60000"),
        ],
    )
    .await;
    lambda.platform.wait_init(INIT).await.unwrap();
    lambda.invoke(&[secret_path(&name), secret_path(&name)]).await;
    // Between invocations the extension is parked in `/next`; the signal ends it there.
    sigterm(lambda.ext.pid());
    let status = lambda
        .ext
        .wait_exit(Duration::from_secs(3))
        .await
        .unwrap()
        .expect("exits within 3 s of SIGTERM");
    assert!(status.success(), "{status}");
    let logs = lambda.ext.logs().join("\n");
    assert!(logs.contains("SIGTERM"), "{logs}");
    let requests = receiver.sum_by("secrets_cache.requests", "cache.result");
    assert_eq!(requests.values().sum::<u64>(), 2, "the last export carried the reads: {requests:?}");
}

#[tokio::test]
async fn sigterm_answers_a_read_still_waiting_on_aws() {
    let h = start(&[]).await;
    let name = unique("lf-inflight");
    h.aws.create_secret(&name, "v").await.unwrap();
    h.proxy.inject(
        lsc_devtools::fakes::proxy::Fault::always(lsc_devtools::fakes::proxy::FaultKind::Delay(Duration::from_secs(5)))
            .on("GetSecretValue"),
    );
    let addr = h.ext.addr;
    let path = secret_path(&name);
    let read = tokio::spawn(async move { lsc_devtools::harness::client::get(addr, &path, &[TOKEN_HEADER]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ext = h.ext;
    sigterm(ext.pid());
    let r = read.await.unwrap().expect("answered, not cut off");
    assert_eq!((r.status, r.json()["__type"].as_str()), (504, Some("ShuttingDown")), "{}", r.text());
    let status = ext.wait_exit(Duration::from_secs(3)).await.unwrap().expect("exits");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn sigterm_in_standalone_mode_drains_and_exits_zero() {
    let h = start(&[]).await;
    let name = unique("lf-standalone");
    h.aws.create_secret(&name, "v").await.unwrap();
    assert_eq!(h.ext.get(&secret_path(&name)).await.unwrap().status, 200);
    let mut ext = h.ext;
    sigterm(ext.pid());
    let status = ext
        .wait_exit(Duration::from_secs(3))
        .await
        .unwrap()
        .expect("exits within 3 s of SIGTERM");
    assert!(status.success(), "{status}");
    assert!(ext.logs().join("\n").contains("SIGTERM"));
}
