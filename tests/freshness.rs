//! TTL expiry, stale-if-error and permanent errors, end to end. The TTL is one second, so
//! these tests wait real time; the timing logic itself is unit-tested with an injected clock.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::proxy::Fault;

const SHORT_TTL: &[(&str, &str)] = &[("SECRETS_MANAGER_TTL", "1"), ("SECRETS_CACHE_REFRESH_INTERVAL", "1h")];

async fn past_expiry() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn expiry_picks_up_a_rotated_value() {
    let h = start(SHORT_TTL).await;
    let name = unique("rotating");
    h.aws.create_secret(&name, "before-rotation").await.unwrap();
    assert_eq!(
        h.ext.get(&secret_path(&name)).await.unwrap().json()["SecretString"],
        "before-rotation"
    );
    h.aws.put_secret_value(&name, "after-rotation").await.unwrap();
    assert_eq!(
        h.ext.get(&secret_path(&name)).await.unwrap().json()["SecretString"],
        "before-rotation",
        "still fresh"
    );
    past_expiry().await;
    let r = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!(
        (r.header("x-cache"), r.json()["SecretString"].as_str()),
        (Some("miss"), Some("after-rotation"))
    );
}

#[tokio::test]
async fn a_503_after_expiry_serves_the_old_value_marked_stale() {
    let h = start(SHORT_TTL).await;
    let name = unique("outage");
    h.aws.create_secret(&name, "last-known-good").await.unwrap();
    h.ext.get(&secret_path(&name)).await.unwrap();
    h.proxy.reset_counts();
    h.proxy.inject(Fault::status(503, "ServiceUnavailable").on("GetSecretValue"));
    past_expiry().await;
    let r = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.header("x-cache"), r.json()["SecretString"].as_str()),
        (Some("stale"), Some("last-known-good"))
    );
    assert!(r.header("age").unwrap().parse::<u64>().unwrap() >= 1);
    let calls = h.proxy.calls("GetSecretValue");
    assert!((1..=3).contains(&calls), "SDK retries stay bounded: {calls}");
    // While upstream is known to be failing, readers are not made to wait on it again.
    let again = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!(again.header("x-cache"), Some("stale"));
    assert_eq!(h.proxy.calls("GetSecretValue"), calls);
    let item = status_item(&status(&h.ext).await, &name);
    assert_eq!(
        (item["state"].as_str(), item["last_error"].as_str()),
        (Some("failing"), Some("ServiceUnavailable"))
    );
}

#[tokio::test]
async fn throttling_is_transient_too() {
    let h = start(SHORT_TTL).await;
    let name = unique("throttled");
    h.aws.create_secret(&name, "v").await.unwrap();
    h.ext.get(&secret_path(&name)).await.unwrap();
    h.proxy.inject(Fault::status(400, "ThrottlingException").on("GetSecretValue"));
    past_expiry().await;
    assert_eq!(h.ext.get(&secret_path(&name)).await.unwrap().header("x-cache"), Some("stale"));
}

#[tokio::test]
async fn a_permanent_error_after_expiry_is_returned() {
    let h = start(SHORT_TTL).await;
    let name = unique("revoked");
    h.aws.create_secret(&name, "v").await.unwrap();
    h.ext.get(&secret_path(&name)).await.unwrap();
    h.proxy.inject(Fault::status(400, "AccessDeniedException").on("GetSecretValue"));
    past_expiry().await;
    let r = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!((r.status, r.json()["__type"].as_str()), (400, Some("AccessDeniedException")));
}

#[tokio::test]
async fn stale_values_stop_at_max_stale() {
    let h = start(&[
        ("SECRETS_MANAGER_TTL", "1"),
        ("SECRETS_CACHE_MAX_STALE", "1s"),
        ("SECRETS_CACHE_REFRESH_INTERVAL", "1h"),
    ])
    .await;
    let name = unique("too-old");
    h.aws.create_secret(&name, "v").await.unwrap();
    h.ext.get(&secret_path(&name)).await.unwrap();
    h.proxy.inject(Fault::status(503, "ServiceUnavailable").on("GetSecretValue"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!((r.status, r.json()["__type"].as_str()), (503, Some("ServiceUnavailable")));
}
