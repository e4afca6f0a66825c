//! Bad input changes nothing and gets a clear answer. Property tests (proptest, fixed seeds so
//! CI is repeatable) over the parsers in-process, and a fuzz-style loop of raw request bytes
//! and telemetry payloads against the running extension: no crash, no hang, a 4xx (or a
//! closed connection for bytes that are not HTTP), and the next good read still works.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use lambda_secrets_cache::config::file;
use lambda_secrets_cache::http::route;
use lambda_secrets_cache::lambda::telemetry_api::parse_batch;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, RngSeed, TestRunner};

fn config(cases: u32, seed: u64) -> PropConfig {
    PropConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..PropConfig::default()
    }
}

/// Panics with the failure, the shrunk input cut to 2000 characters (a failing case may be
/// megabytes).
fn check<T: std::fmt::Debug>(result: Result<(), proptest::test_runner::TestError<T>>) {
    if let Err(e) = result {
        panic!("{}", e.to_string().chars().take(2000).collect::<String>());
    }
}

// ---------------------------------------------------------------- query strings

const QUERY_KEYS: &[&str] = &[
    "secretId",
    "versionId",
    "versionStage",
    "refreshNow",
    "name",
    "version",
    "label",
    "withDecryption",
    "SecretId",
    "",
    "secretId[]",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9/_+.:-]{0,40}",
        "(%[0-9a-fA-F]{0,2}|%|[^&=]){0,12}",
        any::<String>(),
        Just("%FF%FE%00".to_string()),
        Just("a".repeat(5000)),
        Just("true".to_string()),
        Just("1".to_string()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec((prop::sample::select(QUERY_KEYS), fragment(), prop::bool::ANY), 0..6).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v, eq)| if eq { format!("{k}={v}") } else { format!("{k}{v}") })
                .collect::<Vec<_>>()
                .join("&")
        }),
    ]
}

#[test]
fn query_parsers_answer_every_string_without_panicking() {
    let mut runner = TestRunner::new(config(4000, 0x5ec7));
    check(runner.run(&(query(), fragment()), |(q, path)| {
        for result in [
            route::secret(Some(&q)),
            route::parameter(Some(&q)),
            route::secret_path(&path, Some(&q)),
        ] {
            if let Err(e) = result {
                prop_assert_eq!(e.status().as_u16(), 400, "{}", e);
                prop_assert!(e.to_string().len() < 600, "error messages stay short: {}", e);
            }
        }
        Ok(())
    }));
}

// ---------------------------------------------------------------- config files

const CONFIG_KEYS: &[&str] = &[
    "secrets",
    "parameters",
    "ttl",
    "id",
    "name",
    "path",
    "required",
    "versionStage",
    "versionId",
    "recursive",
    "withDecryption",
    "label",
    "version",
    "secret",
    "",
];

fn yaml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("".to_string()),
        Just("5m".to_string()),
        Just("-1s".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[a, b".to_string()),
        Just("&anchor x".to_string()),
        Just("*anchor".to_string()),
        Just("\"unterminated".to_string()),
        Just("18446744073709551616".to_string()),
        "[a-zA-Z0-9/ :_.-]{0,20}",
        any::<String>().prop_map(|s| s.replace('\n', " ")),
    ]
}

fn yaml_file() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec((0usize..4, prop::bool::ANY, prop::sample::select(CONFIG_KEYS), yaml_value()), 0..14).prop_map(|lines| {
            lines
                .into_iter()
                .map(|(indent, item, key, value)| format!("{}{}{key}: {value}\n", "  ".repeat(indent), if item { "- " } else { "" }))
                .collect()
        }),
    ]
}

#[test]
fn config_parser_reports_positions_for_every_file() {
    let mut runner = TestRunner::new(config(3000, 0xc0f1));
    check(runner.run(&yaml_file(), |text| {
        if let Err(problems) = file::parse(&text) {
            prop_assert!(!problems.is_empty());
            let lines = text.lines().count() + 1;
            for p in &problems {
                prop_assert!(p.line >= 1 && p.line <= lines && p.column >= 1, "{:?} in {:?}", p, text);
                prop_assert!(!p.message.is_empty());
            }
            let mut sorted = problems.clone();
            sorted.sort_by_key(|p| (p.line, p.column));
            prop_assert_eq!(sorted, problems, "in file order");
        }
        Ok(())
    }));
}

#[test]
fn hostile_config_files_are_refused_quickly() {
    // Deep nesting, an alias bomb, a file over the 1 MiB limit, many entries: each answered
    // quickly, none crashes.
    let deep = format!("secrets: {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n",
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char
        ));
    }
    bomb.push_str("secrets: *l\n");
    let huge = format!("secrets:\n  - id: {}\n", "x".repeat(8 << 20));
    let many = format!("secrets:\n{}", (0..20_000).map(|i| format!("  - id: s{i}\n")).collect::<String>());
    for (what, text, accepted) in [
        ("deep nesting", deep, false),
        ("alias bomb", bomb, false),
        ("an 8 MiB scalar", huge, false),
        ("20000 entries", many, true),
    ] {
        let started = std::time::Instant::now();
        let result = file::parse(&text);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{what}: {took:?}");
        match result {
            Ok(ref c) => eprintln!("{what}: accepted ({} secrets) in {took:?}", c.secrets.len()),
            Err(ref problems) => eprintln!("{what}: refused in {took:?}: {}", problems[0]),
        }
        assert_eq!(result.is_ok(), accepted, "{what}");
    }
}

// ---------------------------------------------------------------- telemetry payloads

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "platform.start",
            "platform.runtimeDone",
            "platform.report",
            "platform.initReport",
            "platform.initStart",
            "platform.restoreStart",
            "function",
            "platform.fromTheFuture",
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["type", "record", "requestId", "status", "metrics", "durationMs", "time", "x"]),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

#[test]
fn telemetry_batches_of_any_shape_are_parsed_element_by_element() {
    let mut runner = TestRunner::new(config(3000, 0x7e1e));
    check(runner.run(&json_value(), |value| {
        let body = serde_json::to_vec(&value).unwrap();
        let (events, malformed) = parse_batch(&body);
        match &value {
            serde_json::Value::Array(items) => prop_assert!(events.len() + malformed <= items.len()),
            _ => prop_assert_eq!((events.len(), malformed), (0, 1)),
        }
        Ok(())
    }));
    check(runner.run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
        let _ = parse_batch(&bytes);
        Ok(())
    }));
}

// ---------------------------------------------------------------- raw requests to the server

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("GET".to_string()),
        1 => prop::sample::select(vec!["POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PRI", "G\0T", "get"]).prop_map(str::to_string),
        1 => "[A-Z]{1,12}",
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => query().prop_map(|q| format!("/secretsmanager/get?{q}")),
        2 => query().prop_map(|q| format!("/systemsmanager/parameters/get?{q}")),
        2 => (fragment(), query()).prop_map(|(p, q)| format!("/v1/{p}?{q}")),
        1 => prop::sample::select(vec![
            "/status", "/ping", "*", "http://169.254.169.254/latest", "//", "/..%2f..%2fetc%2fpasswd", "/secretsmanager/get/",
            "/secretsmanager/get?secretId=bad/secret", "/%00", "/secretsmanager/get#frag",
        ])
        .prop_map(str::to_string),
        1 => "[ -~]{0,80}",
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    let token = prop_oneof![Just(TOKEN.to_string()), Just(String::new()), "[ -~]{0,40}"];
    prop_oneof![
        4 => token.prop_map(|t| ("X-Aws-Parameters-Secrets-Token".to_string(), t)),
        1 => Just(("Host".to_string(), "localhost".to_string())),
        1 => prop_oneof![Just("0"), Just("-1"), Just("5"), Just("99999999999999999999"), Just("1, 2")]
            .prop_map(|v| ("Content-Length".to_string(), v.to_string())),
        1 => Just(("Transfer-Encoding".to_string(), "chunked".to_string())),
        1 => Just(("X-Forwarded-For".to_string(), "10.0.0.1".to_string())),
        1 => Just(("Connection".to_string(), "Upgrade".to_string())),
        1 => Just(("Upgrade".to_string(), "h2c".to_string())),
        1 => "[ -~]{0,80}".prop_map(|v| ("traceparent".to_string(), v)),
        1 => "[ -~]{0,80}".prop_map(|v| ("X-Amzn-Trace-Id".to_string(), v)),
        1 => ("[!-9;-~]{1,20}", "[ -~]{0,60}"),
        1 => Just(("X-Big".to_string(), "b".repeat(20 * 1024))),
    ]
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let version = prop_oneof![
        6 => Just("HTTP/1.1"),
        1 => Just("HTTP/1.0"),
        1 => Just("HTTP/2.0"),
        1 => Just("HTTP/0.9"),
        1 => Just(""),
        1 => Just("HTTP/1.1 trailing"),
    ];
    let built = (
        method(),
        target(),
        version,
        prop::collection::vec(header(), 0..70),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(m, t, v, headers, body)| {
            let mut out = format!("{m} {t} {v}\r\n").into_bytes();
            for (k, val) in headers {
                out.extend_from_slice(format!("{k}: {val}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            out
        });
    let valid = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nX-Aws-Parameters-Secrets-Token: {TOKEN}\r\n\r\n",
        secret_path("fuzz/known")
    );
    let mutated = (prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)).prop_map(move |edits| {
        let mut bytes = valid.clone().into_bytes();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        bytes
    });
    prop_oneof![
        6 => built,
        3 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => Just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
    ]
}

/// Sends `bytes` and returns the status of the first response, or None when the server
/// closed without answering (which it may do for bytes that are not HTTP). A request the
/// server is still waiting on after 150 ms gets its write side closed, which must end it.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Option<u16>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    // The server may refuse and close before reading everything: a failed write is fine.
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut half_closed = false;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if half_closed {
                    return Err("no answer and no close within 15 s of the end of the request (a hang)".into());
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                half_closed = true;
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    let head = String::from_utf8_lossy(&out[..out.len().min(64)]).to_string();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    Ok(Some(status))
}

/// The first 300 characters of a request, for failure messages.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(300).collect()
}

#[tokio::test]
async fn raw_requests_of_any_shape_get_a_4xx_or_a_close_and_change_nothing() {
    let h = start(&[("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info")]).await;
    h.aws.create_secret("fuzz/known", "known-value").await.ok();
    let known = h.ext.get(&secret_path("fuzz/known")).await.unwrap();
    assert_eq!(known.json()["SecretString"], "known-value");
    let addr = h.ext.addr;
    let seen = tokio::task::spawn_blocking(move || {
        let seen = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
        let mut runner = TestRunner::new(config(1500, 0xf0221));
        let n = std::cell::Cell::new(0usize);
        check(runner.run(&request(), |bytes| {
            let status = exchange(addr, &bytes).map_err(|e| TestCaseError::fail(format!("{e} for {:?}", shown(&bytes))))?;
            *seen
                .borrow_mut()
                .entry(status.map_or("closed".to_string(), |s| s.to_string()))
                .or_default() += 1;
            if let Some(s) = status {
                prop_assert!(s < 500 || s == 505, "{} for {:?}", s, shown(&bytes));
            }
            n.set(n.get() + 1);
            if n.get().is_multiple_of(100) {
                let ping = exchange(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").map_err(TestCaseError::fail)?;
                prop_assert_eq!(ping, Some(200));
            }
            Ok(())
        }));
        seen.into_inner()
    })
    .await
    .unwrap();
    eprintln!("statuses over 1500 raw requests: {seen:?}");
    assert!(
        seen.get("400").copied().unwrap_or(0) > 100,
        "most are refused as bad requests: {seen:?}"
    );
    let after = h.ext.get(&secret_path("fuzz/known")).await.unwrap();
    assert_eq!((after.status, after.json()["SecretString"].as_str()), (200, Some("known-value")));
    let status = status(&h.ext).await;
    let ids: Vec<&str> = status["cache"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert!(ids.len() < 50, "refused requests add no entries: {ids:?}");
}

// ---------------------------------------------------------------- telemetry deliveries

#[tokio::test]
async fn hostile_telemetry_deliveries_are_answered_and_the_lifecycle_goes_on() {
    let name = unique("fuzz-telemetry");
    aws().create_secret(&name, "v").await.unwrap();
    // The Telemetry API is subscribed only with an exporter; `end` makes `/next` wait for
    // runtimeDone, so the lifecycle's use of it is checked too.
    let receiver = lsc_devtools::fakes::otlp::OtlpReceiver::start().await.unwrap();
    let endpoint = receiver.endpoint();
    let lambda = start_lambda(
        lsc_devtools::fakes::platform::Options::default(),
        Some(&format!("secrets:\n  - id: {name}\n")),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("SECRETS_CACHE_FLUSH", "end")],
    )
    .await;
    lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    let subscribe = lambda.platform.requests_to("/2022-07-01/telemetry");
    let body: serde_json::Value = serde_json::from_slice(&subscribe[0].body).unwrap();
    let uri = body["destination"]["URI"].as_str().unwrap().to_string();
    let rest = uri.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let listener: SocketAddr = host.parse().unwrap();
    let path = format!("/{path}");

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let wrong_types = serde_json::to_vec(
        &(0..10_000)
            .map(|i| serde_json::json!({"type": i, "record": {"requestId": [i], "status": {"x": 1}, "metrics": "fast"}}))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let unknown_request = br#"[{"time":"2026-01-01T00:00:00.000Z","type":"platform.runtimeDone","record":{"requestId":"not-a-real-request","status":"success"}}]"#.to_vec();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated JSON", b"[{\"type\":".to_vec()),
        ("null", b"null".to_vec()),
        ("an object, not an array", br#"{"type":"platform.start"}"#.to_vec()),
        ("numbers", b"[1,2,3]".to_vec()),
        ("100000-deep nesting", deep.into_bytes()),
        ("10000 elements of wrong types", wrong_types),
        ("runtimeDone for an unknown request", unknown_request),
        ("invalid UTF-8", vec![b'[', b'"', 0xff, 0xfe, b'"', b']']),
        ("5 MiB", vec![b' '; 5 << 20]),
    ];
    let mut answers = Vec::new();
    for (what, body) in bodies {
        let r = lsc_devtools::harness::client::request(listener, "POST", &path, &[("Content-Type", "application/json")], body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        answers.push((what, r.status));
    }
    for (what, status) in &answers {
        let expected = if *what == "5 MiB" { 413 } else { 200 };
        assert_eq!(*status, expected, "{what}: {answers:?}");
    }
    // The extension is still in step with the platform: reads hit, `/next` waits for the
    // real runtimeDone each time.
    for _ in 0..2 {
        let (_, reads) = lambda.invoke(&[secret_path(&name)]).await;
        assert_eq!(reads, vec![(200, "hit".to_string())]);
    }
    let status = status(&lambda.ext).await;
    assert_eq!(status["lifecycle"]["next_released_by"]["runtime_done"], 2, "{status}");
    assert!(status["lifecycle"]["telemetry_in"]["malformed"].as_u64().unwrap() >= 5, "{status}");
}
