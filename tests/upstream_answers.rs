//! What AWS, or something posing as it, may answer, and what the function then gets: the true
//! value, the stale true value, or an error with a real error status (4xx/5xx, JSON `__type`);
//! never another value and never a 1xx/2xx/3xx for an error. Replays every upstream case of
//! the adversarial pass (issue 14) through the fault-injecting proxy, then a property test over
//! generated answers.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::proxy::{Answer, Fault, FaultKind};
use lsc_devtools::harness::client;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, RngSeed, TestRunner};
use serde_json::json;

/// A secret in moto and what GetSecretValue answers for it.
struct Seeded {
    name: String,
    arn: String,
    version: String,
    value: String,
}

async fn seeded(prefix: &str) -> Seeded {
    let name = unique(prefix);
    let value = format!("true-value-{name}");
    let created = aws().create_secret(&name, &value).await.unwrap();
    Seeded {
        arn: created["ARN"].as_str().unwrap().to_string(),
        version: created["VersionId"].as_str().unwrap().to_string(),
        name,
        value,
    }
}

impl Seeded {
    /// A complete, valid GetSecretValue answer for this secret with `value`.
    fn answer(&self, value: &str) -> serde_json::Value {
        json!({"ARN": self.arn, "Name": self.name, "VersionId": self.version, "SecretString": value,
               "VersionStages": ["AWSCURRENT"], "CreatedDate": 1_700_000_000.5})
    }
}

fn once(answer: Answer) -> Fault {
    Fault::always(FaultKind::Answer(answer)).on("GetSecretValue").times(1)
}

/// For every attempt of one call: the SDK retries an answer it could not read (three attempts).
fn every_attempt(answer: Answer) -> Fault {
    Fault::always(FaultKind::Answer(answer)).on("GetSecretValue").times(3)
}

#[tokio::test]
async fn malformed_successes_are_502_never_cached_and_never_replace_a_good_entry() {
    let h = start(&[]).await;
    let s = seeded("answers").await;
    let other = seeded("answers-other").await;
    let mut no_value = s.answer("x");
    no_value.as_object_mut().unwrap().remove("SecretString");
    let mut both = s.answer(&s.value);
    both["SecretBinary"] = json!("AAAA");
    let mut number = s.answer("x");
    number["SecretString"] = json!(5);
    let mut bad_base64 = s.answer("x");
    bad_base64.as_object_mut().unwrap().remove("SecretString");
    bad_base64["SecretBinary"] = json!("@@not base64@@");
    let cases: Vec<(&str, u16, Vec<u8>)> = vec![
        ("200 {}", 200, b"{}".to_vec()),
        ("200 with an unknown shape", 200, br#"{"foo":[1,2,3]}"#.to_vec()),
        ("204", 204, Vec::new()),
        ("200 carrying an error", 200, br#"{"__type":"ResourceNotFoundException"}"#.to_vec()),
        ("200 without the value", 200, no_value.to_string().into_bytes()),
        ("200 with both values", 200, both.to_string().into_bytes()),
        ("200 not JSON", 200, b"\"not json\"".to_vec()),
        ("200 a JSON array", 200, b"[1,2,3]".to_vec()),
        ("200 SecretString of the wrong type", 200, number.to_string().into_bytes()),
        ("200 bad base64", 200, bad_base64.to_string().into_bytes()),
        ("200 invalid UTF-8", 200, vec![b'{', b'"', 0xff, 0xfe, b'"', b'}']),
        ("200 HTML", 200, b"<html><body>Gateway</body></html>".to_vec()),
        (
            "200 another secret's answer",
            200,
            other.answer(&other.value).to_string().into_bytes(),
        ),
    ];
    let path = secret_path(&s.name);
    let refresh = format!("{path}&refreshNow=true");
    for (case, status, body) in &cases {
        // Cold: nothing cached, so an error.
        h.proxy.clear_faults();
        h.proxy.inject(every_attempt(Answer::json(*status, body.clone())));
        let r = h.ext.get(&path).await.unwrap();
        assert_api_error(&r, 502, "InvalidUpstreamResponse", &[&other.value], case);
        assert!(!r.text().contains("raw:") && !r.text().contains("body:"), "{case}: {}", r.text());
    }
    // With a good entry cached: refreshNow gets the error, the entry stays.
    h.proxy.clear_faults();
    assert_eq!(h.ext.get(&path).await.unwrap().json()["SecretString"], s.value.as_str());
    h.proxy.clear_faults();
    for (case, status, body) in &cases {
        h.proxy.inject(every_attempt(Answer::json(*status, body.clone())));
        let r = h.ext.get(&refresh).await.unwrap();
        h.proxy.clear_faults();
        assert_api_error(&r, 502, "InvalidUpstreamResponse", &[&s.value, &other.value], case);
        let r = h.ext.get(&path).await.unwrap();
        assert_eq!(
            (r.status, r.header("x-cache"), r.json()["SecretString"].as_str()),
            (200, Some("hit"), Some(s.value.as_str())),
            "{case}: the good entry stays"
        );
    }
    let status = status(&h.ext).await;
    let upstream = status["metrics"]["upstream_calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["source"] == "secretsmanager")
        .unwrap()
        .clone();
    assert!(
        upstream["error"].as_u64().unwrap() >= 2 * cases.len() as u64,
        "each rejected answer is a failed call: {upstream}"
    );
}

#[tokio::test]
async fn an_expired_entry_is_served_stale_when_the_answer_is_invalid() {
    let h = start(&[("SECRETS_MANAGER_TTL", "1")]).await;
    let s = seeded("answers-stale").await;
    let path = secret_path(&s.name);
    assert_eq!(h.ext.get(&path).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.proxy.inject(once(Answer::json(200, b"{}".to_vec())));
    let r = h.ext.get(&path).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-cache"), r.json()["SecretString"].as_str()),
        (200, Some("stale"), Some(s.value.as_str()))
    );
}

#[tokio::test]
async fn statuses_that_are_not_errors_never_reach_the_function() {
    let h = start(&[]).await;
    let s = seeded("answers-status").await;
    let path = secret_path(&s.name);
    // (A 1xx other than 101 cannot be scripted: the proxy's HTTP server sends 500 instead.)
    for status in [101u16, 200, 201, 206, 300, 302, 304, 399, 600, 999] {
        h.proxy.clear_faults();
        h.proxy
            .inject(every_attempt(Answer::json(status, b"{\"__type\":\"Redirect\"}".to_vec())));
        // The read and a second request pipelined behind it on the same connection: both are
        // answered, the first with an error status.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nX-Aws-Parameters-Secrets-Token: {TOKEN}\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut stream = tokio::net::TcpStream::connect(h.ext.addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{status}: the pipelined request was never answered: {answer}"))
            .unwrap();
        let statuses: Vec<&str> = answer.match_indices("HTTP/1.1 ").map(|(i, _)| &answer[i + 9..i + 12]).collect();
        assert_eq!(statuses, ["502", "200"], "upstream {status}: {answer}");
        assert!(answer.contains("InvalidUpstreamResponse"), "upstream {status}: {answer}");
    }
}

#[tokio::test]
async fn parameter_answers_are_checked_too() {
    let h = start(&[]).await;
    let name = format!("/{}", unique("answers-param"));
    h.aws.put_parameter(&name, "param-true", "String").await.unwrap();
    let path = parameter_path(&name, "");
    let foreign = json!({"Parameter": {"Name": "/another/one", "Type": "String", "Value": "param-foreign", "Version": 1}});
    let no_value = json!({"Parameter": {"Name": name, "Type": "String", "Version": 1}});
    for (case, body) in [
        ("{}", "{}".to_string()),
        ("an empty parameter", r#"{"Parameter":{}}"#.to_string()),
        ("another parameter", foreign.to_string()),
        ("no value", no_value.to_string()),
        ("not JSON", "<html/>".to_string()),
    ] {
        h.proxy.clear_faults();
        h.proxy.inject(
            Fault::always(FaultKind::Answer(Answer::json(200, body)))
                .on("GetParameter")
                .times(3),
        );
        let r = h.ext.get(&path).await.unwrap();
        assert_api_error(&r, 502, "InvalidUpstreamResponse", &["param-foreign"], case);
    }
    h.proxy.clear_faults();
    let r = h.ext.get(&path).await.unwrap();
    assert_eq!(r.json()["Parameter"]["Value"], "param-true");
}

#[tokio::test]
async fn error_codes_and_messages_from_the_wire_are_sanitised() {
    let h = start(&[]).await;
    let s = seeded("answers-codes").await;
    let body = json!({"__type": "Bad\nCode\u{0}\u{1b}[31m", "message": "line one\nFORGED log line\u{0}"});
    h.proxy.inject(once(Answer::json(400, body.to_string())));
    let r = h.ext.get(&secret_path(&s.name)).await.unwrap();
    assert_api_error(&r, 400, "UnknownError", &[], "a code with control characters");
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(!message.chars().any(char::is_control), "{message:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let logs = h.ext.logs();
    assert!(
        logs.iter()
            .all(|l| !l.starts_with("Code") && !l.starts_with("FORGED") && !l.contains('\u{0}')),
        "no raw control characters reach the log:\n{}",
        logs.join("\n")
    );
}

#[tokio::test]
async fn oversized_answers_are_refused_without_holding_them() {
    let h = start(&[]).await;
    let s = seeded("answers-big").await;
    let path = secret_path(&s.name);
    // Over the value limit (128 KiB), inside the answer cap: read, then refused.
    h.proxy
        .inject(once(Answer::json(200, s.answer(&"v".repeat(200 * 1024)).to_string())));
    assert_api_error(&h.ext.get(&path).await.unwrap(), 502, "InvalidUpstreamResponse", &[], "200 KiB");
    // 20 MB: refused at the 4 MiB cap before it is all read.
    let before = h.ext.rss_kb();
    h.proxy
        .inject(every_attempt(Answer::json(200, s.answer(&"v".repeat(20 << 20)).to_string())));
    let r = h.ext.get(&path).await.unwrap();
    assert_api_error(&r, 502, "InvalidUpstreamResponse", &[], "20 MB");
    assert!(r.json()["message"].as_str().unwrap().contains("larger than"), "{}", r.text());
    let after = h.ext.rss_kb();
    assert!(after < before + 24 * 1024, "RSS {before} kB → {after} kB");
    h.proxy.clear_faults();
    assert_eq!(h.ext.get(&path).await.unwrap().json()["SecretString"], s.value.as_str());
}

/// Starts a read whose upstream answer (upstream as it is now) arrives 2 s late.
fn read_answered_late(h: &Harness, path: String) -> tokio::task::JoinHandle<anyhow::Result<client::Response>> {
    h.proxy.inject(
        Fault::always(FaultKind::DelayAnswer(Duration::from_secs(2)))
            .on("GetSecretValue")
            .times(1),
    );
    let addr = h.ext.addr;
    tokio::spawn(async move { client::get(addr, &path, &[TOKEN_HEADER]).await })
}

#[tokio::test]
async fn reads_by_name_and_arn_around_a_rotation_never_roll_back() {
    // Case 3: TTL 60; `r` read by name (V1); refreshNow by name while upstream's V1 answer is
    // delayed 2 s; PutSecretValue V2; refreshNow by ARN gets V2; then the delayed by-name
    // answer lands: reads by name and by ARN must stay at V2.
    let h = start(&[("SECRETS_MANAGER_TTL", "60")]).await;
    let s = seeded("answers-rotation").await;
    let (by_name, by_arn) = (secret_path(&s.name), secret_path(&s.arn));
    assert_eq!(h.ext.get(&by_name).await.unwrap().json()["SecretString"], s.value.as_str());
    let slow = read_answered_late(&h, format!("{by_name}&refreshNow=true"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.aws.put_secret_value(&s.name, "V2-value").await.unwrap();
    let fresh = h.ext.get(&format!("{by_arn}&refreshNow=true")).await.unwrap();
    assert_eq!(fresh.json()["SecretString"], "V2-value");
    let late = slow.await.unwrap().unwrap();
    assert_eq!(late.status, 200);
    assert_eq!(late.json()["SecretString"], "V2-value", "the caller gets the newer entry");
    for path in [&by_name, &by_arn] {
        let r = h.ext.get(path).await.unwrap();
        assert_eq!(
            (r.header("x-cache"), r.json()["SecretString"].as_str()),
            (Some("hit"), Some("V2-value")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn refresh_now_does_not_join_a_fetch_that_started_before_it() {
    // Case 4: a read's fetch is on its way back with V1 when the secret is rotated; a
    // refreshNow asked afterwards must fetch again and get V2.
    let h = start(&[]).await;
    let s = seeded("answers-join").await;
    let path = secret_path(&s.name);
    let first = read_answered_late(&h, path.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.aws.put_secret_value(&s.name, "V2-value").await.unwrap();
    let r = h.ext.get(&format!("{path}&refreshNow=true")).await.unwrap();
    assert_eq!(
        (r.header("x-cache"), r.json()["SecretString"].as_str()),
        (Some("refresh"), Some("V2-value"))
    );
    let first = first.await.unwrap().unwrap();
    let got = first.json()["SecretString"].as_str().unwrap().to_string();
    assert!(got == s.value || got == "V2-value", "V1 was current when it asked: {got}");
    let r = h.ext.get(&path).await.unwrap();
    assert_eq!(r.json()["SecretString"], "V2-value", "the late V1 did not replace V2");
    assert_eq!(h.proxy.calls("GetSecretValue"), 2);
}

// ---------------------------------------------------------------- generated answers

#[derive(Debug, Clone)]
enum Shape {
    Valid,
    Foreign,
    Empty,
    NoValue,
    BothValues,
    StringIsNumber,
    NameIsList,
    NoStage,
    OtherStage,
    Truncated(usize),
    Garbage(String),
    Oversized,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        4 => Just(Shape::Valid),
        1 => Just(Shape::Foreign),
        1 => Just(Shape::Empty),
        1 => Just(Shape::NoValue),
        1 => Just(Shape::BothValues),
        1 => Just(Shape::StringIsNumber),
        1 => Just(Shape::NameIsList),
        1 => Just(Shape::NoStage),
        1 => Just(Shape::OtherStage),
        1 => (1usize..200).prop_map(Shape::Truncated),
        1 => "[ -~]{0,40}".prop_map(Shape::Garbage),
        1 => Just(Shape::Oversized),
    ]
}

fn status_code() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => Just(200u16),
        4 => prop::sample::select(vec![
            101u16, 201, 204, 206, 299, 300, 301, 302, 304, 307, 399, 400, 403, 404, 409, 429, 500, 502, 503, 504, 599, 600,
            999,
        ]),
    ]
}

fn body(shape: &Shape, s: &Seeded, other: &Seeded) -> Vec<u8> {
    let mut v = s.answer(&s.value);
    match shape {
        Shape::Valid => {}
        Shape::Foreign => v = other.answer("FOREIGN-VALUE"),
        Shape::Empty => v = json!({}),
        Shape::NoValue => {
            v.as_object_mut().unwrap().remove("SecretString");
        }
        Shape::BothValues => v["SecretBinary"] = json!("AAAA"),
        Shape::StringIsNumber => v["SecretString"] = json!(12345),
        Shape::NameIsList => v["Name"] = json!([s.name]),
        Shape::NoStage => v["VersionStages"] = json!([]),
        Shape::OtherStage => v["VersionStages"] = json!(["AWSPREVIOUS"]),
        Shape::Truncated(n) => {
            let full = v.to_string().into_bytes();
            return full[..(*n).min(full.len() - 1)].to_vec();
        }
        Shape::Garbage(text) => return text.clone().into_bytes(),
        Shape::Oversized => v["SecretString"] = json!("o".repeat(200 * 1024)),
    }
    v.to_string().into_bytes()
}

#[tokio::test]
async fn every_generated_answer_gives_the_true_value_or_an_error() {
    let h = start(&[("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info")]).await;
    let s = seeded("answers-prop").await;
    let other = seeded("answers-prop-other").await;
    let path = secret_path(&s.name);
    assert_eq!(h.ext.get(&path).await.unwrap().json()["SecretString"], s.value.as_str());
    let runtime = tokio::runtime::Handle::current();
    let seen = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(PropConfig {
            cases: 150,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(0xa115_7e25),
            ..PropConfig::default()
        });
        let seen = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
        let result = runner.run(&(status_code(), shape()), |(status, shape)| {
            runtime.block_on(async {
                h.proxy.clear_faults();
                h.proxy.inject(once(Answer::json(status, body(&shape, &s, &other))));
                let case = format!("{status} {shape:?}");
                let r = h.ext.get(&format!("{path}&refreshNow=true")).await.unwrap();
                *seen.borrow_mut().entry(r.status).or_default() += 1;
                if r.status == 200 {
                    // The only 200 there can be: the true value, fetched now.
                    let json = r.json();
                    prop_assert_eq!(json["SecretString"].as_str(), Some(s.value.as_str()), "{}", case);
                    prop_assert_eq!(r.header("x-cache"), Some("refresh"), "{}", case);
                } else {
                    prop_assert!((400..=599).contains(&r.status), "{}: {}", case, r.text());
                    prop_assert!(r.json()["__type"].as_str().is_some_and(|t| !t.is_empty()), "{}", case);
                    prop_assert!(!r.text().contains("FOREIGN") && !r.text().contains(&s.value), "{}", case);
                }
                if status == 200 && matches!(shape, Shape::Valid) {
                    prop_assert_eq!(r.status, 200, "a valid answer is accepted: {}", case);
                }
                // Whatever happened, the cache still holds the true value.
                let after = h.ext.get(&path).await.unwrap();
                let json = after.json();
                prop_assert_eq!(json["SecretString"].as_str(), Some(s.value.as_str()), "after {}", case);
                Ok(())
            })
        });
        if let Err(e) = result {
            panic!("{}", e.to_string().chars().take(2000).collect::<String>());
        }
        seen.into_inner()
    })
    .await
    .unwrap();
    eprintln!("statuses the function saw over 150 generated answers: {seen:?}");
    assert!(seen.get(&200).copied().unwrap_or(0) > 10, "valid answers were accepted: {seen:?}");
    assert!(seen.get(&502).copied().unwrap_or(0) > 10, "invalid ones refused: {seen:?}");
}
