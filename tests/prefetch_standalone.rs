//! Standalone mode prefetches the config file's entries with the batch APIs.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn twenty_five_secrets_cost_two_batch_calls_and_then_hit() {
    let aws = aws();
    let prefix = unique("pre");
    let mut yaml = String::from("secrets:\n");
    for i in 0..25 {
        let name = format!("{prefix}/s{i}");
        aws.create_secret(&name, &format!("value-{i}")).await.unwrap();
        yaml.push_str(&format!("  - id: {name}\n"));
    }
    let path_root = format!("/{prefix}/");
    aws.put_parameter(&format!("{path_root}a"), "pa", "String").await.unwrap();
    aws.put_parameter(&format!("{path_root}nested/b"), "pb", "SecureString")
        .await
        .unwrap();
    aws.put_parameter(&format!("/{prefix}-single"), "single", "String").await.unwrap();
    yaml.push_str(&format!(
        "parameters:\n  - path: {path_root}\n    withDecryption: true\n  - name: /{prefix}-single\n"
    ));
    let dir = std::env::temp_dir().join(unique("cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::write(&file, yaml).unwrap();

    let h = start(&[("SECRETS_CACHE_CONFIG", file.to_str().unwrap())]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !h.ext.logs().iter().any(|l| l.contains("prefetch finished")) {
        assert!(std::time::Instant::now() < deadline, "prefetch did not finish: {:#?}", h.ext.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(h.proxy.calls("BatchGetSecretValue"), 2, "{:?}", h.proxy.counts());
    assert_eq!(h.proxy.calls("GetSecretValue"), 0);
    h.proxy.reset_counts();
    for i in 0..25 {
        let r = h.ext.get(&secret_path(&format!("{prefix}/s{i}"))).await.unwrap();
        assert_eq!(
            (r.header("x-cache"), r.json()["SecretString"].as_str()),
            (Some("hit"), Some(format!("value-{i}").as_str()))
        );
    }
    let nested = h
        .ext
        .get(&parameter_path(&format!("{path_root}nested/b"), "&withDecryption=true"))
        .await
        .unwrap();
    assert_eq!(
        (nested.header("x-cache"), nested.json()["Parameter"]["Value"].as_str()),
        (Some("hit"), Some("pb"))
    );
    let single = h.ext.get(&parameter_path(&format!("/{prefix}-single"), "")).await.unwrap();
    assert_eq!(single.header("x-cache"), Some("hit"));
    assert_eq!(h.proxy.total_calls(), 0, "{:?}", h.proxy.counts());
}
