//! Secrets Manager routes of the README's "HTTP API" against moto, through the binary's HTTP API.

mod common;

use common::*;

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn is_iso_millis(s: &str) -> bool {
    // 2022-11-16T08:22:40.499Z
    let b = s.as_bytes();
    b.len() == 24 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z' && s[20..23].bytes().all(|c| c.is_ascii_digit())
}

#[tokio::test]
async fn secret_response_has_the_aws_extension_shape() {
    let h = start(&[]).await;
    let name = unique("app/db");
    let created = h.aws.create_secret(&name, r#"{"user":"u","password":"p1"}"#).await.unwrap();

    let r = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-cache"), Some("miss"));
    assert_eq!(r.header("age"), Some("0"));
    let v = r.json();
    assert_eq!(
        keys(&v),
        [
            "ARN",
            "CreatedDate",
            "Name",
            "ResultMetadata",
            "SecretBinary",
            "SecretString",
            "VersionId",
            "VersionStages"
        ]
    );
    assert_eq!(v["Name"], name.as_str());
    assert_eq!(v["ARN"], created["ARN"]);
    assert_eq!(v["VersionId"], created["VersionId"]);
    assert_eq!(v["SecretString"], r#"{"user":"u","password":"p1"}"#);
    assert_eq!(v["SecretBinary"], serde_json::Value::Null);
    assert_eq!(v["VersionStages"], serde_json::json!(["AWSCURRENT"]));
    assert_eq!(v["ResultMetadata"], serde_json::json!({}));
    assert!(is_iso_millis(v["CreatedDate"].as_str().unwrap()), "{}", v["CreatedDate"]);

    let again = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!(again.header("x-cache"), Some("hit"));
    assert_eq!(again.body, r.body, "a hit serves the same bytes");
    assert_eq!(h.proxy.calls("GetSecretValue"), 1);
}

#[tokio::test]
async fn binary_secrets_are_base64() {
    let h = start(&[]).await;
    let name = unique("bin");
    h.aws.create_binary_secret(&name, "AAEC/w==").await.unwrap();
    let v = h.ext.get(&secret_path(&name)).await.unwrap().json();
    assert_eq!(v["SecretBinary"], "AAEC/w==");
    assert_eq!(v["SecretString"], serde_json::Value::Null);
}

#[tokio::test]
async fn version_stages_and_ids_after_a_rotation() {
    let h = start(&[]).await;
    let name = unique("rotated");
    let v1 = h.aws.create_secret(&name, "one").await.unwrap();
    let v2 = h.aws.put_secret_value(&name, "two").await.unwrap();

    let current = h.ext.get(&secret_path(&name)).await.unwrap().json();
    assert_eq!(
        (current["SecretString"].as_str(), current["VersionId"].clone()),
        (Some("two"), v2["VersionId"].clone())
    );
    let previous = h
        .ext
        .get(&format!("{}&versionStage=AWSPREVIOUS", secret_path(&name)))
        .await
        .unwrap()
        .json();
    assert_eq!(previous["SecretString"], "one");
    assert!(previous["VersionStages"].as_array().unwrap().contains(&"AWSPREVIOUS".into()));
    let by_id = h
        .ext
        .get(&format!("{}&versionId={}", secret_path(&name), v1["VersionId"].as_str().unwrap()))
        .await
        .unwrap()
        .json();
    assert_eq!(by_id["SecretString"], "one");
    // AWSCURRENT spelled out is the same entry as no selector.
    let explicit = h.ext.get(&format!("{}&versionStage=AWSCURRENT", secret_path(&name))).await.unwrap();
    assert_eq!(explicit.header("x-cache"), Some("hit"));
}

#[tokio::test]
async fn path_route_serves_the_same_entry() {
    let h = start(&[]).await;
    let name = unique("team/service/key");
    h.aws.create_secret(&name, "value-path").await.unwrap();
    let r = h.ext.get(&format!("/v1/{}", encode(&name))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "value-path");
    let raw_slashes = h.ext.get(&format!("/v1/{name}")).await.unwrap();
    assert_eq!(raw_slashes.header("x-cache"), Some("hit"));
    let via_query = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!(via_query.header("x-cache"), Some("hit"));
    assert_eq!(h.proxy.calls("GetSecretValue"), 1);
}

#[tokio::test]
async fn a_read_by_arn_after_a_read_by_name_makes_no_upstream_call() {
    let h = start(&[]).await;
    let name = unique("aliased");
    h.aws.create_secret(&name, "v").await.unwrap();
    let arn = h.ext.get(&secret_path(&name)).await.unwrap().json()["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    let by_arn = h.ext.get(&secret_path(&arn)).await.unwrap();
    assert_eq!(by_arn.status, 200);
    assert_eq!(by_arn.header("x-cache"), Some("hit"));
    assert_eq!(h.proxy.calls("GetSecretValue"), 1);
}

#[tokio::test]
async fn thirty_two_concurrent_first_reads_make_one_upstream_call() {
    let h = start(&[]).await;
    let name = unique("hot");
    h.aws.create_secret(&name, "v").await.unwrap();
    // Slow the upstream so all 32 requests are in flight together.
    h.proxy.inject(lsc_devtools::fakes::proxy::Fault::always(
        lsc_devtools::fakes::proxy::FaultKind::Delay(std::time::Duration::from_millis(300)),
    ));
    for r in concurrent_gets(h.ext.addr, &secret_path(&name), 32).await {
        assert_eq!((r.status, r.header("x-cache")), (200, Some("miss")));
    }
    assert_eq!(h.proxy.calls("GetSecretValue"), 1, "{:?}", h.proxy.counts());
}

#[tokio::test]
async fn refresh_now_bypasses_the_cache() {
    let h = start(&[]).await;
    let name = unique("refresh");
    h.aws.create_secret(&name, "one").await.unwrap();
    h.ext.get(&secret_path(&name)).await.unwrap();
    h.aws.put_secret_value(&name, "two").await.unwrap();
    assert_eq!(h.ext.get(&secret_path(&name)).await.unwrap().json()["SecretString"], "one");
    let r = h.ext.get(&format!("{}&refreshNow=true", secret_path(&name))).await.unwrap();
    assert_eq!(
        (r.header("x-cache"), r.json()["SecretString"].as_str()),
        (Some("refresh"), Some("two"))
    );
    let after = h.ext.get(&secret_path(&name)).await.unwrap();
    assert_eq!(
        (after.header("x-cache"), after.json()["SecretString"].as_str()),
        (Some("hit"), Some("two"))
    );
    assert_eq!(h.proxy.calls("GetSecretValue"), 2);
}

#[tokio::test]
async fn status_reports_entries_without_values() {
    let h = start(&[]).await;
    let name = unique("status");
    h.aws.create_secret(&name, "status-secret-value-91").await.unwrap();
    h.ext.get(&secret_path(&name)).await.unwrap();
    h.ext.get(&secret_path(&name)).await.unwrap();
    let r = h.ext.get("/status").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("status-secret-value-91"));
    let v = r.json();
    let item = status_item(&v, &name);
    assert_eq!(
        (item["hits"].as_u64(), item["misses"].as_u64(), item["state"].as_str()),
        (Some(1), Some(1), Some("fresh"))
    );
    assert_eq!(item["ttl_seconds"], 300);
    assert_eq!(v["metrics"]["requests_total"], 2);
    assert_eq!(v["metrics"]["hit_ratio"], 0.5);
    let status_without_token = lsc_devtools::harness::client::get(h.ext.addr, "/status", &[]).await.unwrap();
    assert_eq!(status_without_token.status, 403);
}
