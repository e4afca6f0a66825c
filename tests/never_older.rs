//! Never an older value (SECURITY.md): once a value was served, no reader gets an older one,
//! whatever order overlapping fetches answer in and across an eviction, and an answer's ARN
//! becomes an alias only when it is the ARN of its Name. Each interleaving is scripted at the
//! proxy (a call held before it reaches moto, or with moto's answer held), then a rotation
//! under 64 readers with random upstream delays checks every read against every other.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lsc_devtools::fakes::proxy::{Answer, Fault, FaultKind};
use lsc_devtools::harness::client;
use serde_json::json;

/// What a secret or parameter read served: its value.
fn value(r: &client::Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    body["SecretString"]
        .as_str()
        .or_else(|| body["Parameter"]["Value"].as_str())
        .unwrap_or_else(|| panic!("no value in {body}"))
        .to_string()
}

/// Issue 22, item 1. A refreshNow held before it reaches upstream; 200 ms later a second one
/// reads OLD at once and its answer is held; rotate; release the first (it reads NEW and
/// serves it), then the second: OLD must not replace NEW.
async fn overlapping_refreshes(h: &Harness, path: &str, op: &str, rotate: impl std::future::Future<Output = ()>) {
    assert_eq!(value(&h.ext.get(path).await.unwrap()), "OLD");
    let refresh = format!("{path}&refreshNow=true");
    let (fault, first) = Fault::hold(op, false);
    h.proxy.inject(fault);
    let first_read = spawn_get(h.ext.addr, refresh.clone());
    first.reached().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fault, second) = Fault::hold(op, true);
    h.proxy.inject(fault);
    let second_read = spawn_get(h.ext.addr, refresh);
    second.reached().await;
    rotate.await;
    first.open();
    assert_eq!(value(&first_read.await.unwrap()), "NEW");
    second.open();
    assert_eq!(value(&second_read.await.unwrap()), "NEW", "the late OLD answer is not served");
    let r = h.ext.get(path).await.unwrap();
    assert_eq!((r.header("x-cache"), value(&r).as_str()), (Some("hit"), "NEW"));
}

#[tokio::test]
async fn a_secret_never_goes_back_when_overlapping_refreshes_answer_out_of_order() {
    let h = start(&[]).await;
    let name = unique("order-secret");
    h.aws.create_secret(&name, "OLD").await.unwrap();
    let rotate = async {
        h.aws.put_secret_value(&name, "NEW").await.unwrap();
    };
    overlapping_refreshes(&h, &secret_path(&name), "GetSecretValue", rotate).await;
}

#[tokio::test]
async fn a_parameter_never_goes_back_when_overlapping_refreshes_answer_out_of_order() {
    let h = start(&[]).await;
    let name = format!("/{}", unique("order-parameter"));
    h.aws.put_parameter(&name, "OLD", "String").await.unwrap();
    let rotate = async {
        h.aws.put_parameter(&name, "NEW", "String").await.unwrap();
    };
    overlapping_refreshes(&h, &parameter_path(&name, ""), "GetParameter", rotate).await;
}

#[tokio::test]
async fn an_eviction_never_lets_a_late_older_answer_back_in() {
    // Issue 22, item 2: capacity 2. A read of x whose upstream answer (OLD) is held; rotate;
    // refreshNow serves NEW; three other reads evict it; the held answer lands.
    let h = start(&[("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "2")]).await;
    let x = unique("evicted");
    let created = h.aws.create_secret(&x, "OLD").await.unwrap();
    let arn = created["ARN"].as_str().unwrap().to_string();
    let others: Vec<String> = (0..3).map(|_| unique("evicting")).collect();
    for o in &others {
        h.aws.create_secret(o, "other").await.unwrap();
    }
    let (fault, held) = Fault::hold("GetSecretValue", true);
    h.proxy.inject(fault);
    let late = spawn_get(h.ext.addr, secret_path(&x));
    held.reached().await;
    h.aws.put_secret_value(&x, "NEW").await.unwrap();
    let fresh = h.ext.get(&format!("{}&refreshNow=true", secret_path(&x))).await.unwrap();
    assert_eq!(value(&fresh), "NEW");
    for o in &others {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(value(&h.ext.get(&secret_path(o)).await.unwrap()), "other");
    }
    let status = status(&h.ext).await;
    let ids: Vec<&str> = status["cache"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&x.as_str()), "NEW was evicted: {ids:?}");
    held.open();
    assert_eq!(value(&late.await.unwrap()), "NEW", "the late reader never gets OLD");
    for path in [secret_path(&x), secret_path(&arn), format!("/v1/{}", encode(&arn))] {
        assert_eq!(value(&h.ext.get(&path).await.unwrap()), "NEW", "{path}");
    }
}

#[tokio::test]
async fn an_arn_that_is_not_the_arn_of_the_answers_name_never_becomes_an_alias() {
    // Issue 22, item 3: GetSecretValue for `a` answered with Name a and the ARN of b; then
    // reads of b's ARN must reach upstream and get b's value.
    let h = start(&[]).await;
    let (a, b) = (unique("posing-a"), unique("posing-b"));
    let a_created = h.aws.create_secret(&a, "value-of-a").await.unwrap();
    let b_arn = h.aws.create_secret(&b, "value-of-b").await.unwrap()["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    let posing = json!({"ARN": b_arn, "Name": a, "VersionId": a_created["VersionId"], "SecretString": "value-of-a",
                        "VersionStages": ["AWSCURRENT"], "CreatedDate": 1_700_000_000.5});
    h.proxy.inject(
        Fault::always(FaultKind::Answer(Answer::json(200, posing.to_string())))
            .on("GetSecretValue")
            .times(1),
    );
    let r = h.ext.get(&secret_path(&a)).await.unwrap();
    assert_eq!((r.status, r.json()["__type"].as_str()), (502, Some("InvalidUpstreamResponse")));
    h.proxy.reset_counts();
    for path in [secret_path(&b_arn), format!("/v1/{}", encode(&b_arn))] {
        let r = h.ext.get(&path).await.unwrap();
        assert_eq!(value(&r), "value-of-b", "{path}");
    }
    assert!(h.proxy.calls("GetSecretValue") >= 1, "b's ARN was never an alias of a");
}

#[tokio::test]
async fn a_parameter_answer_with_another_parameters_arn_is_refused() {
    let h = start(&[]).await;
    let (a, b) = (format!("/{}", unique("posing-a")), format!("/{}", unique("posing-b")));
    h.aws.put_parameter(&a, "value-of-a", "String").await.unwrap();
    h.aws.put_parameter(&b, "value-of-b", "String").await.unwrap();
    let b_arn = format!("arn:aws:ssm:us-east-1:123456789012:parameter{b}");
    let posing = json!({"Parameter": {"Name": a, "ARN": b_arn, "Type": "String", "Value": "value-of-a",
                                      "Version": 1, "DataType": "text", "LastModifiedDate": 1_700_000_000.5}});
    h.proxy.inject(
        Fault::always(FaultKind::Answer(Answer::json(200, posing.to_string())))
            .on("GetParameter")
            .times(1),
    );
    let r = h.ext.get(&parameter_path(&a, "")).await.unwrap();
    assert_eq!((r.status, r.json()["__type"].as_str()), (502, Some("InvalidUpstreamResponse")));
    let r = h.ext.get(&parameter_path(&b_arn, "")).await.unwrap();
    assert_eq!(value(&r), "value-of-b");
}

#[tokio::test]
async fn a_filter_page_with_a_foreign_arn_installs_nothing_under_it() {
    let (a, b) = (unique("filter-posing-a"), unique("filter-posing-b"));
    let aws = aws();
    let a_created = aws.create_secret(&a, "value-of-a").await.unwrap();
    let b_arn = aws.create_secret(&b, "value-of-b").await.unwrap()["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    let page = json!({"SecretValues": [{"ARN": b_arn, "Name": a, "VersionId": a_created["VersionId"],
                       "SecretString": "value-of-a", "VersionStages": ["AWSCURRENT"], "CreatedDate": 1_700_000_000.5}],
                      "Errors": []});
    let config = config_file(&format!("secrets:\n  - filter: {{name: {a}}}\n"));
    let faults = vec![Fault::always(FaultKind::Answer(Answer::json(200, page.to_string()))).on("BatchGetSecretValue")];
    let h = start_with_faults(&[("SECRETS_CACHE_CONFIG", config.to_str().unwrap())], faults).await;
    let r = h.ext.get(&secret_path(&b_arn)).await.unwrap();
    assert_eq!(value(&r), "value-of-b");
    assert_eq!(r.header("x-cache"), Some("miss"), "nothing was cached under b's ARN");
    let _ = std::fs::remove_file(config);
}

/// One read as the test saw it: sent and answered on the test's clock, and the generation.
struct Observed {
    reader: usize,
    sent: Instant,
    answered: Instant,
    generation: u64,
}

/// Every read that was sent after another one was answered got that one's generation or a
/// later one. Returns how many reads broke that.
fn newer_than_everything_answered_before(reads: &mut [Observed]) -> Vec<String> {
    let mut answered: Vec<(Instant, u64)> = reads.iter().map(|r| (r.answered, r.generation)).collect();
    answered.sort();
    reads.sort_by_key(|r| r.sent);
    let (mut i, mut newest) = (0, 0);
    let mut broken = Vec::new();
    for r in reads.iter() {
        while i < answered.len() && answered[i].0 < r.sent {
            newest = newest.max(answered[i].1);
            i += 1;
        }
        if r.generation < newest {
            broken.push(format!(
                "reader {} got generation {} after {newest} was served",
                r.reader, r.generation
            ));
        }
    }
    broken
}

#[tokio::test]
async fn rotation_under_64_readers_never_serves_an_older_generation() {
    // Issue 22's stress run: a secret and a parameter rotated every 150 ms for 4 s, TTL 1 s,
    // 64 readers (10 % refreshNow), every upstream call delayed at random before and after it
    // reads, so fetches overlap and answer out of order.
    let h = start(&[("SECRETS_MANAGER_TTL", "1"), ("SSM_PARAMETER_STORE_TTL", "1")]).await;
    let secret = unique("stress-secret");
    let parameter = format!("/{}", unique("stress-parameter"));
    h.aws.create_secret(&secret, "gen-0").await.unwrap();
    h.aws.put_parameter(&parameter, "gen-0", "String").await.unwrap();
    let jitter = FaultKind::Jitter {
        before: Duration::from_millis(40),
        after: Duration::from_millis(40),
    };
    for op in ["GetSecretValue", "GetParameter"] {
        h.proxy.inject(Fault::always(jitter.clone()).on(op));
    }
    let until = Instant::now() + Duration::from_secs(4);
    let rotator = {
        let (aws, secret, parameter) = (h.aws.clone(), secret.clone(), parameter.clone());
        tokio::spawn(async move {
            let mut generation = 0;
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(150)).await;
                generation += 1;
                aws.put_secret_value(&secret, &format!("gen-{generation}")).await.unwrap();
                aws.put_parameter(&parameter, &format!("gen-{generation}"), "String").await.unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..64)
        .map(|reader| {
            let addr = h.ext.addr;
            let paths = [secret_path(&secret), parameter_path(&parameter, "")];
            tokio::spawn(async move {
                let mut seen: [Vec<Observed>; 2] = Default::default();
                let mut n = reader as u64;
                while Instant::now() < until {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let item = (n >> 33) as usize % 2;
                    let refresh = (n >> 40).is_multiple_of(10);
                    let path = if refresh {
                        format!("{}&refreshNow=true", paths[item])
                    } else {
                        paths[item].clone()
                    };
                    let sent = Instant::now();
                    let r = client::get(addr, &path, &[TOKEN_HEADER]).await.expect("the extension answers");
                    let answered = Instant::now();
                    let generation = value(&r).trim_start_matches("gen-").parse().unwrap();
                    seen[item].push(Observed {
                        reader,
                        sent,
                        answered,
                        generation,
                    });
                }
                seen
            })
        })
        .collect();
    let mut by_item: [Vec<Observed>; 2] = Default::default();
    for r in readers {
        let [s, p] = r.await.unwrap();
        by_item[0].extend(s);
        by_item[1].extend(p);
    }
    rotator.await.unwrap();
    for (item, reads) in ["secret", "parameter"].iter().zip(by_item.iter_mut()) {
        let generations: std::collections::BTreeSet<u64> = reads.iter().map(|r| r.generation).collect();
        assert!(reads.len() > 200, "{item}: only {} reads", reads.len());
        assert!(generations.len() > 5, "{item}: rotations were seen ({generations:?})");
        let broken = newer_than_everything_answered_before(reads);
        eprintln!(
            "{item}: {} reads, {} generations seen, {} went back",
            reads.len(),
            generations.len(),
            broken.len()
        );
        assert!(
            broken.is_empty(),
            "{item}: {} of {} reads went back: {:?}",
            broken.len(),
            reads.len(),
            &broken[..broken.len().min(5)]
        );
        // Each reader's own sequence, too (implied by the above; said apart for the report).
        reads.sort_by_key(|r| (r.reader, r.sent));
        for pair in reads.windows(2) {
            if pair[0].reader == pair[1].reader {
                assert!(
                    pair[1].generation >= pair[0].generation,
                    "{item}: reader {} went back",
                    pair[0].reader
                );
            }
        }
    }
}
