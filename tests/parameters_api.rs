//! Parameter Store routes of the README's "HTTP API" against moto, through the binary's HTTP API.

mod common;

use common::*;

#[tokio::test]
async fn parameter_response_has_the_aws_extension_shape() {
    let h = start(&[]).await;
    let name = format!("/{}/flags", unique("app"));
    h.aws.put_parameter(&name, "on", "String").await.unwrap();
    let r = h.ext.get(&parameter_path(&name, "")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cache"), Some("miss"));
    let v = r.json();
    let mut outer: Vec<&String> = v.as_object().unwrap().keys().collect();
    outer.sort();
    assert_eq!(outer, ["Parameter", "ResultMetadata"]);
    let mut inner: Vec<&String> = v["Parameter"].as_object().unwrap().keys().collect();
    inner.sort();
    assert_eq!(
        inner,
        [
            "ARN",
            "DataType",
            "LastModifiedDate",
            "Name",
            "Selector",
            "SourceResult",
            "Type",
            "Value",
            "Version"
        ]
    );
    let p = &v["Parameter"];
    assert_eq!(
        (p["Name"].as_str(), p["Value"].as_str(), p["Type"].as_str(), p["Version"].as_i64()),
        (Some(name.as_str()), Some("on"), Some("String"), Some(1))
    );
    assert!(p["LastModifiedDate"].as_str().unwrap().ends_with('Z'));
    // Trailing-slash form and the ARN reach the same entry.
    let again = h
        .ext
        .get(&format!("/systemsmanager/parameters/get/?name={}", encode(&name)))
        .await
        .unwrap();
    assert_eq!(again.header("x-cache"), Some("hit"));
    let arn = p["ARN"].as_str().unwrap();
    assert_eq!(h.ext.get(&parameter_path(arn, "")).await.unwrap().header("x-cache"), Some("hit"));
    assert_eq!(h.proxy.calls("GetParameter"), 1);
}

#[tokio::test]
async fn secure_strings_are_decrypted_only_on_request() {
    let h = start(&[]).await;
    let name = format!("/{}/password", unique("app"));
    h.aws.put_parameter(&name, "hunter2-plain", "SecureString").await.unwrap();
    let plain = h.ext.get(&parameter_path(&name, "&withDecryption=true")).await.unwrap().json();
    assert_eq!(
        (plain["Parameter"]["Value"].as_str(), plain["Parameter"]["Type"].as_str()),
        (Some("hunter2-plain"), Some("SecureString"))
    );
    let cipher = h.ext.get(&parameter_path(&name, "&withDecryption=false")).await.unwrap();
    assert_eq!(cipher.header("x-cache"), Some("miss"), "decryption is part of the cache key");
    assert_ne!(cipher.json()["Parameter"]["Value"], "hunter2-plain");
}

#[tokio::test]
async fn versions_and_labels() {
    let h = start(&[]).await;
    let name = format!("/{}/level", unique("app"));
    h.aws.put_parameter(&name, "v1", "String").await.unwrap();
    h.aws.put_parameter(&name, "v2", "String").await.unwrap();
    h.aws.label_parameter_version(&name, 1, "stable").await.unwrap();

    let latest = h.ext.get(&parameter_path(&name, "")).await.unwrap().json();
    assert_eq!(
        (latest["Parameter"]["Value"].as_str(), latest["Parameter"]["Version"].as_i64()),
        (Some("v2"), Some(2))
    );
    let v1 = h.ext.get(&parameter_path(&format!("{name}:1"), "")).await.unwrap().json();
    assert_eq!(
        (v1["Parameter"]["Value"].as_str(), v1["Parameter"]["Selector"].as_str()),
        (Some("v1"), Some(":1"))
    );
    let v1_query = h.ext.get(&parameter_path(&name, "&version=1")).await.unwrap();
    assert_eq!(v1_query.header("x-cache"), Some("hit"), "name:1 and version=1 are one entry");
    let labelled = h.ext.get(&parameter_path(&name, "&label=stable")).await.unwrap().json();
    assert_eq!(labelled["Parameter"]["Value"], "v1");
}

#[tokio::test]
async fn secrets_manager_references_resolve_through_parameter_store() {
    let h = start(&[]).await;
    let secret = unique("ref/secret");
    h.aws.create_secret(&secret, "referenced-value").await.unwrap();
    let name = format!("/aws/reference/secretsmanager/{secret}");
    let r = h.ext.get(&parameter_path(&name, "&withDecryption=true")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["Parameter"]["Value"], "referenced-value");
    assert_eq!(h.proxy.calls("GetParameter"), 1);
}
