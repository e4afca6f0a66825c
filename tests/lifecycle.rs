//! Extension mode under the fake Lambda platform: register, subscribe (only with an exporter),
//! Init waiting for `required` entries only, `/next` as soon as the invocation's own work has
//! settled (before `platform.runtimeDone`, except with `SECRETS_CACHE_FLUSH=end`), SHUTDOWN,
//! init errors, SnapStart.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::otlp::OtlpReceiver;
use lsc_devtools::fakes::platform::{Faults, InitType, Options};
use lsc_devtools::fakes::proxy::{Fault, FaultKind};

const INIT: Duration = Duration::from_secs(20);

fn secrets_yaml(ids: &[String]) -> String {
    let mut yaml = String::from("secrets:\n");
    for id in ids {
        yaml.push_str(&format!("  - id: {id}\n"));
    }
    yaml
}

fn paths(ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| secret_path(id)).collect()
}

/// An OTLP receiver and the environment that exports to it (with `extra` on top).
async fn exporting(extra: &[(&'static str, &'static str)]) -> (OtlpReceiver, Vec<(&'static str, String)>) {
    let receiver = OtlpReceiver::start().await.unwrap();
    let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    (receiver, env)
}

fn refs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn registers_and_subscribes_with_the_documented_requests() {
    let (_receiver, env) = exporting(&[]).await;
    let lambda = start_lambda(Options::default(), None, &refs(&env)).await;
    let init = lambda.platform.wait_init(INIT).await.expect("init finishes");
    assert!(init.errors.is_empty());

    let register = lambda.platform.requests_to("/2020-01-01/extension/register");
    assert_eq!(register.len(), 1);
    let r = &register[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.header("Lambda-Extension-Name"),
        Some("lambda-secrets-cache"),
        "the executable's file name"
    );
    assert_eq!(
        r.header("Lambda-Extension-Accept-Feature"),
        None,
        "asks for nothing it does not use"
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.json(), serde_json::json!({"events": ["INVOKE", "SHUTDOWN"]}));

    let subscribe = lambda.platform.requests_to("/2022-07-01/telemetry");
    assert_eq!(subscribe.len(), 1, "an exporter is configured: subscribed");
    let s = &subscribe[0];
    assert_eq!(s.method, "PUT");
    assert_eq!(s.header("Content-Type"), Some("application/json"));
    let id = s.header("Lambda-Extension-Identifier").expect("identifier sent").to_string();
    let body = s.json();
    assert_eq!(body["schemaVersion"], "2022-12-13");
    assert_eq!(body["types"], serde_json::json!(["platform"]));
    assert_eq!(
        body["buffering"],
        serde_json::json!({"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25})
    );
    assert_eq!(body["destination"]["protocol"], "HTTP");
    let uri = body["destination"]["URI"].as_str().unwrap();
    assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with('/'), "{uri}");

    // Every later call carries the identifier register returned.
    let next = lambda.platform.requests_to("/2020-01-01/extension/event/next");
    assert!(!next.is_empty());
    assert!(next.iter().all(|r| r.header("Lambda-Extension-Identifier") == Some(id.as_str())));

    // Deliveries (initStart from before the subscription included) were all accepted.
    // A batch goes out `timeoutMs` after its first event and only while the environment runs:
    // a fast binary can finish both invocations first, so keep invoking until it has gone.
    lambda.invoke(&[]).await;
    lambda.invoke(&[]).await;
    let mut more = 0;
    while lambda
        .platform
        .wait_delivery_of("platform.initStart", Duration::from_millis(100))
        .await
        .is_err()
    {
        more += 1;
        assert!(more <= 10, "initStart never delivered");
        lambda.invoke(&[]).await;
    }
    let deliveries = lambda.platform.deliveries();
    assert!(deliveries.iter().all(|d| d.status == Some(200)), "{deliveries:?}");
    assert!(
        status(&lambda.ext).await["lifecycle"]["telemetry"]
            .as_str()
            .unwrap()
            .starts_with("subscribed")
    );
}

#[tokio::test]
async fn without_an_exporter_nothing_subscribes_and_next_comes_before_runtime_done() {
    // runtimeDone would reach a subscriber 200 ms after the response at the earliest.
    let options = Options {
        faults: Faults {
            telemetry_delay: Some(Duration::from_millis(200)),
            ..Faults::default()
        },
        ..Options::default()
    };
    let lambda = start_lambda(options, None, &[]).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    for _ in 0..3 {
        let (outcome, _) = lambda.invoke(&[]).await;
        let next = *lambda.platform.next_calls().last().unwrap();
        let responded = lambda.platform.responded_at(&outcome.request_id).unwrap();
        assert!(
            next < responded + Duration::from_millis(200),
            "/next at {next:?}, the response at {responded:?}"
        );
    }
    assert!(
        lambda.platform.requests_to("/2022-07-01/telemetry").is_empty(),
        "nothing consumes it"
    );
    let s = status(&lambda.ext).await;
    assert_eq!(s["lifecycle"]["telemetry"], "off (no OTLP exporter)");
    assert_eq!(s["lifecycle"]["next_released_by"]["work_settled"], 3);
}

#[tokio::test]
async fn with_an_exporter_next_still_comes_before_runtime_done_is_delivered() {
    let (receiver, env) = exporting(&[]).await;
    let options = Options {
        faults: Faults {
            telemetry_delay: Some(Duration::from_millis(200)),
            ..Faults::default()
        },
        ..Options::default()
    };
    let mut lambda = start_lambda(options, None, &refs(&env)).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (outcome, _) = lambda.invoke(&[]).await;
        let next = *lambda.platform.next_calls().last().unwrap();
        assert!(
            lambda
                .platform
                .deliveries()
                .iter()
                .filter(|d| d.carries("platform.runtimeDone", &outcome.request_id))
                .all(|d| d.at > next),
            "runtimeDone of {} was delivered before /next",
            outcome.request_id
        );
        ids.push((outcome.request_id, next));
    }
    lambda.shutdown_exits_in_time(Duration::from_millis(1500)).await;
    for (id, next) in ids {
        let delivered = lambda
            .platform
            .deliveries()
            .into_iter()
            .find(|d| d.carries("platform.runtimeDone", &id))
            .unwrap_or_else(|| panic!("runtimeDone of {id} delivered by SHUTDOWN"));
        assert!(delivered.at > next, "{id}: delivered at {:?}, /next at {next:?}", delivered.at);
    }
    assert_eq!(
        receiver.sum_by("faas.invocations", "").values().sum::<u64>(),
        3,
        "and the final export still counts them all"
    );
}

#[tokio::test]
async fn with_flush_end_next_waits_for_runtime_done() {
    let (_receiver, env) = exporting(&[("SECRETS_CACHE_FLUSH", "end")]).await;
    let options = Options {
        faults: Faults {
            telemetry_delay: Some(Duration::from_millis(200)),
            ..Faults::default()
        },
        ..Options::default()
    };
    let lambda = start_lambda(options, None, &refs(&env)).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    for _ in 0..3 {
        let (outcome, _) = lambda.invoke(&[]).await;
        assert!(!outcome.extensions_timed_out);
        let done = lambda
            .platform
            .deliveries()
            .into_iter()
            .find(|d| d.carries("platform.runtimeDone", &outcome.request_id))
            .expect("runtimeDone was delivered");
        let next = *lambda.platform.next_calls().last().unwrap();
        assert!(
            next >= done.at,
            "/next at {next:?} came before runtimeDone was delivered at {:?}",
            done.at
        );
    }
    let s = status(&lambda.ext).await;
    assert_eq!(s["lifecycle"]["invocations"], 3);
    assert_eq!(s["lifecycle"]["next_released_by"]["runtime_done"], 3);
}

#[tokio::test]
async fn init_waits_for_required_entries_only() {
    for required in [false, true] {
        // Four: more ids than upstream places, so one batch call.
        let ids = seeded_secrets("lc-init", 4).await;
        let mut yaml = secrets_yaml(&ids);
        if required {
            yaml.push_str("    required: true\n");
        }
        let mut lambda = spawn_lambda(Options::default(), Some(&yaml), &[]).await;
        lambda.proxy.inject(
            Fault::always(FaultKind::Delay(Duration::from_millis(800)))
                .on("BatchGetSecretValue")
                .times(1),
        );
        lambda.ext.wait_listening().await.unwrap();
        // Function init runs right after registration, while the prefetch is in flight.
        let init_reads = lambda.attach_reader(Some(vec![secret_path(&ids[1])]));
        let init = lambda.platform.wait_init(INIT).await.unwrap();
        assert!(init.errors.is_empty());

        let reads = init_reads.await.unwrap();
        assert_eq!(
            reads,
            vec![(200, "miss".to_string())],
            "joined the in-flight prefetch, no 'not ready'"
        );
        assert_eq!(lambda.proxy.calls("GetSecretValue"), 0, "the early read cost no call of its own");
        assert_eq!(lambda.proxy.calls("BatchGetSecretValue"), 1);

        let registered = lambda.platform.requests_to("/2020-01-01/extension/register")[0].at;
        let first_next = lambda.platform.next_calls()[0];
        if required {
            assert!(
                first_next >= registered + Duration::from_millis(800),
                "first /next at {first_next:?}, register at {registered:?}: it waits for the required entry"
            );
        } else {
            // The read above held the function's init for the 800 ms, so the order shows it:
            // the extension was on `/next` long before the prefetch answered.
            assert!(
                first_next < registered + Duration::from_millis(400),
                "first /next at {first_next:?}, register at {registered:?}: no entry is required"
            );
        }

        let (_, reads) = lambda.invoke(&paths(&ids)).await;
        assert!(reads.iter().all(|r| *r == (200, "hit".to_string())), "{reads:?}");
        assert_eq!(lambda.proxy.total_calls(), 1);
    }
}

#[tokio::test]
async fn twenty_five_configured_secrets_cost_two_batch_calls() {
    let ids = seeded_secrets("lc-25-", 25).await;
    let lambda = start_lambda(Options::default(), Some(&secrets_yaml(&ids)), &[]).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    for n in 0..2 {
        let (_, reads) = lambda.invoke(&paths(&ids)).await;
        assert_eq!(reads.len(), 25);
        // The first invocation may come before the prefetch has answered: its reads join it.
        let expected: &[&str] = if n == 0 { &["hit", "miss"] } else { &["hit"] };
        assert!(
            reads.iter().all(|(status, x)| *status == 200 && expected.contains(&x.as_str())),
            "{reads:?}"
        );
    }
    assert_eq!(lambda.proxy.calls("BatchGetSecretValue"), 2);
    assert_eq!(lambda.proxy.total_calls(), 2, "reads joined the prefetch, and hits cost nothing");
}

#[tokio::test]
async fn with_flush_end_and_no_runtime_done_next_is_released_at_the_deadline() {
    let (_receiver, env) = exporting(&[("SECRETS_CACHE_FLUSH", "end")]).await;
    let options = Options {
        timeout: Duration::from_millis(1500),
        faults: Faults {
            drop_runtime_done: true,
            ..Faults::default()
        },
        ..Options::default()
    };
    let lambda = start_lambda(options, None, &refs(&env)).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    let (outcome, _) = lambda.invoke(&[]).await;
    assert!(!outcome.extensions_timed_out, "released before the deadline");
    let held = outcome.function_duration + outcome.extensions_overhead;
    assert!(held <= Duration::from_millis(1500), "held {held:?}");
    assert!(
        held >= Duration::from_millis(1000),
        "telemetry works, so it waited for runtimeDone: {held:?}"
    );
    assert_eq!(status(&lambda.ext).await["lifecycle"]["next_released_by"]["deadline"], 1);
}

#[tokio::test]
async fn with_flush_end_and_telemetry_not_supported_next_is_not_held() {
    let (_receiver, mut env) = exporting(&[("SECRETS_CACHE_FLUSH", "end")]).await;
    // A wait far above what the invocations take: held at all, they would show it.
    env.push(("SECRETS_CACHE_RUNTIME_DONE_WAIT", "3s".into()));
    let options = Options {
        timeout: Duration::from_secs(10),
        faults: Faults {
            subscribe_status: Some(202),
            ..Faults::default()
        },
        ..Options::default()
    };
    let lambda = start_lambda(options, None, &refs(&env)).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    for _ in 0..2 {
        let (outcome, _) = lambda.invoke(&[]).await;
        assert!(
            outcome.extensions_overhead < Duration::from_secs(1),
            "AWS's emulator answers 202 NotSupported: no runtimeDone can come, nothing to hold for: {outcome:?}"
        );
    }
    assert!(lambda.platform.deliveries().is_empty());
    let s = status(&lambda.ext).await;
    assert_eq!(s["lifecycle"]["telemetry"], "not supported (202)");
    assert_eq!(s["lifecycle"]["next_released_by"]["no_telemetry"], 2);
    lambda
        .ext
        .wait_log("running without telemetry", Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_telemetry_types_and_event_types_are_accepted() {
    let ids = seeded_secrets("lc-unknown", 1).await;
    let options = Options {
        faults: Faults {
            unknown_events: true,
            ..Faults::default()
        },
        ..Options::default()
    };
    // `end` so that `/next` depends on finding runtimeDone among the unknown types.
    let (_receiver, env) = exporting(&[("SECRETS_CACHE_FLUSH", "end")]).await;
    let mut yaml = secrets_yaml(&ids);
    yaml.push_str("    required: true\n");
    let lambda = start_lambda(options, Some(&yaml), &refs(&env)).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    for _ in 0..2 {
        let (_, reads) = lambda.invoke(&paths(&ids)).await;
        assert_eq!(reads, vec![(200, "hit".to_string())]);
    }
    let deliveries = lambda.platform.deliveries();
    assert!(deliveries.iter().any(|d| d.types().contains(&"platform.fromTheFuture")));
    assert!(deliveries.iter().all(|d| d.status == Some(200)), "{deliveries:?}");
    let s = status(&lambda.ext).await;
    assert_eq!(
        s["lifecycle"]["next_released_by"]["runtime_done"], 2,
        "known events in the same batches still count"
    );
    let received = &s["lifecycle"]["telemetry_in"];
    assert!(received["unknown_types"].as_u64().unwrap() > 0, "{received}");
    assert_eq!(received["malformed"], 0);
    assert_eq!(received["dropped_queue_full"], 0);
    lambda
        .ext
        .wait_log("unknown event type ignored", Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn shutdown_exits_zero_within_its_deadline() {
    let ids = seeded_secrets("lc-shutdown", 2).await;
    let mut lambda = start_lambda(Options::default(), Some(&secrets_yaml(&ids)), &[]).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    lambda.invoke(&paths(&ids)).await;
    lambda.shutdown_exits_in_time(Duration::from_millis(500)).await;
    assert!(lambda.ext.logs().iter().any(|l| l.contains("shutdown") && l.contains("Spindown")));
}

#[tokio::test]
async fn an_invalid_config_is_reported_as_init_error() {
    let mut lambda = spawn_lambda(Options::default(), Some("secrets:\n  - idd: x\nttl: forever\n"), &[]).await;
    let init = lambda.platform.wait_init(INIT).await.unwrap();
    assert_eq!(init.errors.len(), 1, "{:?}", init.errors);
    let e = &init.errors[0];
    assert_eq!(e.error_type, "Extension.ConfigInvalid");
    assert_eq!(e.body["errorType"], "Extension.ConfigInvalid");
    let message = e.body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains(":2:") && message.contains(":3:"),
        "both problems with positions: {message}"
    );
    let exit = lambda.ext.wait_exit(Duration::from_secs(5)).await.unwrap().expect("exits");
    assert!(!exit.success());
}

#[tokio::test]
async fn a_required_secret_that_cannot_be_fetched_fails_init() {
    let ids = seeded_secrets("lc-required", 1).await;
    let missing = unique("lc-missing");
    let yaml = format!("secrets:\n  - id: {}\n  - id: {missing}\n    required: true\n", ids[0]);
    let mut lambda = spawn_lambda(Options::default(), Some(&yaml), &[]).await;
    let init = lambda.platform.wait_init(INIT).await.unwrap();
    assert_eq!(init.errors.len(), 1, "{:?}", init.errors);
    assert_eq!(init.errors[0].error_type, "Extension.PrefetchFailed");
    let message = init.errors[0].body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains(&missing) && message.contains("ResourceNotFoundException"),
        "{message}"
    );
    assert!(!message.contains(&ids[0]), "only the failed required entry is named");
    let exit = lambda.ext.wait_exit(Duration::from_secs(5)).await.unwrap().expect("exits");
    assert!(!exit.success());
}

#[tokio::test]
async fn an_error_on_next_makes_the_extension_exit() {
    let options = Options {
        timeout: Duration::from_secs(2),
        faults: Faults {
            next_status: Some((2, 500)),
            ..Faults::default()
        },
        ..Options::default()
    };
    let mut lambda = start_lambda(options, None, &[]).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    lambda.invoke(&[]).await;
    let exit = lambda.ext.wait_exit(Duration::from_secs(3)).await.unwrap().expect("exits promptly");
    assert!(!exit.success());
    assert!(
        lambda.platform.requests_to("/2020-01-01/extension/exit/error").is_empty(),
        "no calls after a 500"
    );
}

#[tokio::test]
async fn refresh_ahead_during_an_invoke_keeps_the_next_read_a_hit() {
    let ids = seeded_secrets("lc-ahead", 1).await;
    // Required: Init waits for it, so it is cached before the first freeze.
    let yaml = format!("secrets:\n  - id: {}\n    ttl: 3s\n    required: true\n", ids[0]);
    // Refresh-ahead at 0.8 × 3 s ± 10 %: between 2.16 s and 2.64 s after a fetch.
    let lambda = start_lambda(Options::default(), Some(&yaml), &[("SECRETS_CACHE_REFRESH_AHEAD", "0.8")]).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    // Frozen between invocations, as in Lambda: no timer can refresh anything meanwhile.
    lambda.platform.freeze_between_invokes(vec![lambda.ext.pid()]);
    let calls = || lambda.proxy.total_calls();
    assert_eq!(calls(), 1);

    tokio::time::sleep(Duration::from_millis(2700)).await;
    assert_eq!(calls(), 1, "nothing refreshes while frozen");
    let (_, reads) = lambda.invoke(&[]).await; // the function reads nothing; INVOKE alone refreshes
    assert!(reads.is_empty());
    assert_eq!(calls(), 2, "refreshed during the invoke, finished before /next");

    // 3.6 s after the prefetch: expired without the refresh, not yet due again with it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, reads) = lambda.invoke(&paths(&ids)).await;
    assert_eq!(reads, vec![(200, "hit".to_string())]);
    assert_eq!(calls(), 2, "the read waited on nothing upstream");
    lambda.platform.thaw();
    let s = status(&lambda.ext).await;
    let ahead: Vec<_> = s["metrics"]["refreshes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "ahead")
        .collect();
    assert_eq!(ahead.len(), 1, "{s}");
    assert_eq!((ahead[0]["ok"].as_u64(), ahead[0]["error"].as_u64()), (Some(1), Some(0)));
}

#[tokio::test]
async fn a_reset_upstream_connection_is_retried() {
    let ids = seeded_secrets("lc-reset", 2).await;
    let lambda = start_lambda(Options::default(), None, &[]).await;
    lambda.platform.wait_init(INIT).await.unwrap();
    let (_, reads) = lambda.invoke(&paths(&ids[..1])).await;
    assert_eq!(reads, vec![(200, "miss".to_string())]);
    // What a pooled connection looks like after a long freeze: the peer is gone.
    lambda.proxy.inject(Fault::always(FaultKind::Reset).on("GetSecretValue").times(1));
    let (_, reads) = lambda.invoke(&paths(&ids[1..])).await;
    assert_eq!(reads, vec![(200, "miss".to_string())]);
    assert_eq!(lambda.proxy.calls("GetSecretValue"), 3, "one reset, one retry");
}

#[tokio::test]
async fn snapstart_fetches_nothing_before_restore() {
    // Four: more ids than upstream places, so one batch call.
    let ids = seeded_secrets("lc-snap", 4).await;
    let options = Options {
        init_type: InitType::SnapStart,
        ..Options::default()
    };
    let lambda = start_lambda(
        options,
        Some(&secrets_yaml(&ids)),
        &[("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN), ("AWS_TOKEN", "")],
    )
    .await;
    lambda.platform.wait_init(INIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lambda.proxy.total_calls(), 0, "nothing fetched before the snapshot");
    lambda.ext.wait_log("prefetch deferred", Duration::from_secs(1)).await.unwrap();

    let (_, reads) = lambda.invoke(&paths(&ids)).await;
    assert!(reads.iter().all(|(status, _)| *status == 200), "{reads:?}");
    assert_eq!(
        lambda.proxy.calls("BatchGetSecretValue"),
        1,
        "prefetched on restore, reads joined it: {:?}\n{}",
        lambda.proxy.counts(),
        lambda.ext.logs().join("\n")
    );
    assert_eq!(lambda.proxy.calls("GetSecretValue"), 0);
    let s = status(&lambda.ext).await;
    assert_eq!(s["lifecycle"]["initialization_type"], "snap-start");
    let (_, reads) = lambda.invoke(&paths(&ids)).await;
    assert!(reads.iter().all(|r| *r == (200, "hit".to_string())), "{reads:?}");
}
