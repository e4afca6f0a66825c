//! AWS throttling, as a fleet's burst meets it (issue 24), scripted at the proxy: a `required`
//! entry throttled at Init is waited out until the prefetch deadline; a throttled
//! BatchGetSecretValue hands its ids to GetSecretValue; few ids go one call each; a throttled
//! filter listing is retried; Parameter Store throttling is a 429 or the stale value, named
//! once in the log; throttled answers are counted by operation.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::platform::Options;
use lsc_devtools::fakes::proxy::Fault;

const INIT: Duration = Duration::from_secs(20);

fn throttled(op: &str) -> Fault {
    Fault::status(400, "ThrottlingException").on(op)
}

fn required_yaml(ids: &[String]) -> String {
    let mut yaml = String::from("secrets:\n");
    for id in ids {
        yaml.push_str(&format!("  - id: {id}\n    required: true\n"));
    }
    yaml
}

#[tokio::test]
async fn required_entries_throttled_at_init_are_waited_out_and_the_batch_falls_back() {
    // Five required secrets (a batch, above PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS'
    // three): the batch is throttled for good, GetSecretValue for its first six calls.
    let ids = seeded_secrets("thr-init", 5).await;
    let faults = vec![throttled("BatchGetSecretValue"), throttled("GetSecretValue").times(6)];
    let mut lambda = spawn_lambda_with_faults(Options::default(), Some(&required_yaml(&ids)), &[], faults).await;
    lambda.ext.wait_listening().await.unwrap();
    lambda.attach_reader(None);
    let init = lambda.platform.wait_init(INIT).await.unwrap();
    assert!(
        init.errors.is_empty(),
        "throttling is not a failure: {:?}\n{}",
        init.errors,
        lambda.ext.logs().join("\n")
    );
    assert_eq!(lambda.proxy.calls("BatchGetSecretValue"), 1, "a throttled batch is not retried");
    let (_, reads) = lambda.invoke(&ids.iter().map(|id| secret_path(id)).collect::<Vec<_>>()).await;
    assert!(reads.iter().all(|r| *r == (200, "hit".to_string())), "{reads:?}");
    let status = status(&lambda.ext).await;
    let throttled: u64 = status["metrics"]["throttled"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["operation"] == "BatchGetSecretValue" || t["operation"] == "GetSecretValue")
        .map(|t| t["count"].as_u64().unwrap())
        .sum();
    assert_eq!(throttled, 7, "every throttled answer counted: {status}");
    let gsv = lambda.proxy.calls("GetSecretValue");
    assert!((11..=20).contains(&gsv), "5 items, 6 throttled answers, no storm: {gsv}");
}

#[tokio::test]
async fn throttled_until_the_prefetch_deadline_init_fails_saying_so() {
    let ids = seeded_secrets("thr-deadline", 1).await;
    let faults = vec![throttled("GetSecretValue")];
    let extra = [("SECRETS_CACHE_PREFETCH_DEADLINE", "1s")];
    let lambda = spawn_lambda_with_faults(Options::default(), Some(&required_yaml(&ids)), &extra, faults).await;
    let init = lambda.platform.wait_init(INIT).await.unwrap();
    assert_eq!(init.errors.len(), 1, "{}", lambda.ext.logs().join("\n"));
    let error = &init.errors[0];
    assert_eq!(error.error_type, "Extension.PrefetchFailed");
    let message = error.body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("ThrottlingException") && message.contains("prefetch deadline"),
        "{message}"
    );
    let calls = lambda.proxy.calls("GetSecretValue");
    assert!((2..=30).contains(&calls), "backed off, not a storm: {calls} calls in 1 s");
}

#[tokio::test]
async fn a_permanent_error_still_fails_init_at_once() {
    let missing = unique("thr-missing");
    let lambda = spawn_lambda_with_faults(Options::default(), Some(&required_yaml(&[missing])), &[], Vec::new()).await;
    let init = lambda.platform.wait_init(INIT).await.unwrap();
    assert_eq!(init.errors.len(), 1);
    assert!(init.duration < Duration::from_secs(3), "not retried: {:?}", init.duration);
    assert_eq!(lambda.proxy.calls("GetSecretValue"), 1);
}

#[tokio::test]
async fn a_throttled_batch_hands_its_ids_to_get_secret_value_and_few_ids_skip_it() {
    let five = seeded_secrets("thr-five", 5).await;
    let config = config_file(&format!(
        "secrets:\n{}",
        five.iter().map(|id| format!("  - id: {id}\n")).collect::<String>()
    ));
    let h = start_with_faults(
        &[("SECRETS_CACHE_CONFIG", config.to_str().unwrap())],
        vec![throttled("BatchGetSecretValue")],
    )
    .await;
    h.ext.wait_log("prefetch finished", Duration::from_secs(10)).await.unwrap();
    assert_eq!((h.proxy.calls("BatchGetSecretValue"), h.proxy.calls("GetSecretValue")), (1, 5));
    for id in &five {
        assert_eq!(h.ext.get(&secret_path(id)).await.unwrap().header("x-cache"), Some("hit"), "{id}");
    }
    let _ = std::fs::remove_file(config);

    let three = seeded_secrets("thr-three", 3).await;
    let config = config_file(&format!(
        "secrets:\n{}",
        three.iter().map(|id| format!("  - id: {id}\n")).collect::<String>()
    ));
    let h = start(&[("SECRETS_CACHE_CONFIG", config.to_str().unwrap())]).await;
    h.ext.wait_log("prefetch finished", Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (h.proxy.calls("BatchGetSecretValue"), h.proxy.calls("GetSecretValue")),
        (0, 3),
        "as many ids as upstream places: one GetSecretValue each, at once"
    );
    let _ = std::fs::remove_file(config);
}

#[tokio::test]
async fn a_throttled_filter_listing_is_retried_until_it_answers() {
    let tag = unique("thr-tag");
    for i in 0..2 {
        aws()
            .call(
                "secretsmanager",
                "CreateSecret",
                serde_json::json!({"Name": unique(&format!("thr-flt-{i}")), "SecretString": "v", "Tags": [{"Key": "thr", "Value": tag}]}),
            )
            .await
            .unwrap();
    }
    let yaml = format!("secrets:\n  - filter: {{tag-value: {tag}}}\n    required: true\n");
    let faults = vec![throttled("BatchGetSecretValue").times(3)];
    let mut lambda = spawn_lambda_with_faults(Options::default(), Some(&yaml), &[], faults).await;
    lambda.ext.wait_listening().await.unwrap();
    lambda.attach_reader(None);
    let init = lambda.platform.wait_init(INIT).await.unwrap();
    assert!(init.errors.is_empty(), "{:?}", init.errors);
    assert_eq!(status(&lambda.ext).await["cache"]["entries"], 2);
}

#[tokio::test]
async fn parameter_store_throttling_is_429_or_stale_and_its_quota_is_named_once() {
    let h = start(&[("SSM_PARAMETER_STORE_TTL", "1")]).await;
    let (cold, warm) = (format!("/{}", unique("thr-cold")), format!("/{}", unique("thr-warm")));
    h.aws.put_parameter(&cold, "c", "String").await.unwrap();
    h.aws.put_parameter(&warm, "w", "String").await.unwrap();
    assert_eq!(h.ext.get(&parameter_path(&warm, "")).await.unwrap().status, 200);
    h.proxy.inject(throttled("GetParameter"));
    for _ in 0..2 {
        let r = h.ext.get(&parameter_path(&cold, "")).await.unwrap();
        assert_api_error(&r, 429, "ThrottlingException", &["\"c\""], "nothing cached");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = h.ext.get(&parameter_path(&warm, "")).await.unwrap();
    assert_eq!((r.status, r.header("x-cache")), (200, Some("stale")));
    let warnings = h.ext.logs().iter().filter(|l| l.contains("40 calls a second")).count();
    assert_eq!(warnings, 1, "{}", h.ext.logs().join("\n"));
    let status = status(&h.ext).await;
    let counted = status["metrics"]["throttled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["operation"] == "GetParameter")
        .map(|t| t["count"].as_u64().unwrap());
    assert_eq!(counted, Some(h.proxy.throttled("GetParameter") as u64));
    assert!(h.proxy.throttled("GetParameter") <= 9, "three attempts per read at most, as before");
}
