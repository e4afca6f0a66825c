//! Upstream faults through the loopback proxy in front of moto: throttling, 500, 503, answers
//! slower than the timeout, reset connections, and an upstream that is down for the whole run.
//! For each: what a read of a never-cached secret gets, what a read of an expired one gets
//! inside and past `SECRETS_CACHE_MAX_STALE`, that the value served is never a wrong one, that
//! the SDK's retries stay bounded (calls counted at the proxy), and that the cache recovers
//! once the fault clears.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lsc_devtools::fakes::proxy::{Fault, FaultKind};

struct Case {
    name: &'static str,
    fault: fn() -> Fault,
    /// What a read answers when there is no usable cached value: status and `__type`.
    status: u16,
    code: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "throttling",
        // AWS answers 400; the function gets 429 (the status says "slow down").
        fault: || Fault::status(400, "ThrottlingException"),
        status: 429,
        code: "ThrottlingException",
    },
    Case {
        name: "500",
        fault: || Fault::status(500, "InternalServiceError"),
        status: 500,
        code: "InternalServiceError",
    },
    Case {
        name: "503",
        fault: || Fault::status(503, "ServiceUnavailable"),
        status: 503,
        code: "ServiceUnavailable",
    },
    Case {
        name: "slower than the timeout",
        fault: || Fault::always(FaultKind::Delay(Duration::from_secs(5))),
        status: 504,
        code: "TimeoutError",
    },
    Case {
        name: "connection reset",
        fault: || Fault::always(FaultKind::Reset),
        status: 502,
        code: "ConnectionError",
    },
];

/// The SDK's standard retry mode makes at most 3 attempts per read.
const MAX_ATTEMPTS: usize = 3;

/// The case's documented error, with no value in the body.
fn assert_error(case: &Case, r: &lsc_devtools::harness::client::Response, value: &str) {
    assert_api_error(r, case.status, case.code, &[value], case.name);
}

/// One case, end to end; returns a line for the summary.
async fn run(case: &Case) -> String {
    let h = start(&[
        ("SECRETS_MANAGER_TTL", "1"),
        ("SECRETS_CACHE_MAX_STALE", "3s"),
        ("SECRETS_CACHE_REFRESH_INTERVAL", "1h"),
        ("SECRETS_MANAGER_TIMEOUT_MILLIS", "400"),
    ])
    .await;
    let cached = unique("fault-cached");
    let never = unique("fault-never");
    h.aws.create_secret(&cached, "value-one").await.unwrap();
    h.aws.create_secret(&never, "never-read").await.unwrap();
    // Set-up, not the case: under qemu (the arm64 layer run, five extensions starting at once)
    // the first call can outlast the 400 ms budget; the cases begin once a value is cached.
    let ready = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let r = h.ext.get(&secret_path(&cached)).await.unwrap();
        if r.status != 504 || Instant::now() > ready {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first.json()["SecretString"], "value-one", "{}", first.text());
    let fetched_at = Instant::now();
    // Rotated upstream while the fault hides it: the cache may serve the old value or, once
    // it can reach AWS again, the new one; never anything else.
    h.aws.put_secret_value(&cached, "value-two").await.unwrap();
    h.proxy.inject((case.fault)());
    h.proxy.reset_counts();

    // Never cached: a clear error at once, with a bounded number of attempts.
    let started = Instant::now();
    let r = h.ext.get(&secret_path(&never)).await.unwrap();
    let cold_time = started.elapsed();
    assert_error(case, &r, "never-read");
    let cold_calls = h.proxy.total_calls();
    assert!((1..=MAX_ATTEMPTS).contains(&cold_calls), "{}: {cold_calls} calls", case.name);
    assert!(cold_time < Duration::from_secs(3), "{}: {cold_time:?}", case.name);

    // Expired, inside max-stale: the last good value, marked stale.
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(fetched_at.elapsed())).await;
    h.proxy.reset_counts();
    let r = h.ext.get(&secret_path(&cached)).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-cache"), r.json()["SecretString"].as_str()),
        (200, Some("stale"), Some("value-one")),
        "{}",
        case.name
    );
    let stale_calls = h.proxy.total_calls();
    assert!((1..=MAX_ATTEMPTS).contains(&stale_calls), "{}: {stale_calls} calls", case.name);
    // Inside the back-off the next reads do not wait on upstream again.
    for _ in 0..5 {
        let r = h.ext.get(&secret_path(&cached)).await.unwrap();
        assert_eq!(
            (r.header("x-cache"), r.json()["SecretString"].as_str()),
            (Some("stale"), Some("value-one"))
        );
    }
    assert_eq!(h.proxy.total_calls(), stale_calls, "{}: back-off", case.name);

    // Past max-stale (counted from expiry: TTL 1 s + 3 s): the error, not the old value.
    tokio::time::sleep(Duration::from_millis(4200).saturating_sub(fetched_at.elapsed())).await;
    let r = h.ext.get(&secret_path(&cached)).await.unwrap();
    assert_error(case, &r, "value-one");
    let total_calls = h.proxy.total_calls();

    // The fault clears: the new value arrives once the back-off allows (refreshNow skips it).
    h.proxy.clear_faults();
    let r = h.ext.get(&format!("{}&refreshNow=true", secret_path(&cached))).await.unwrap();
    assert_eq!(
        (r.status, r.json()["SecretString"].as_str()),
        (200, Some("value-two")),
        "{}",
        case.name
    );
    let r = h.ext.get(&secret_path(&cached)).await.unwrap();
    assert_eq!(
        (r.header("x-cache"), r.json()["SecretString"].as_str()),
        (Some("hit"), Some("value-two"))
    );
    format!(
        "{:<24} cold: {} {} after {:>4} ms, {cold_calls} call(s); stale read: {stale_calls} call(s); total {total_calls} calls",
        case.name,
        case.status,
        case.code,
        cold_time.as_millis()
    )
}

#[tokio::test]
async fn each_fault_gives_stale_then_a_clear_error_never_a_wrong_value() {
    let tasks: Vec<_> = CASES.iter().map(|case| tokio::spawn(run(case))).collect();
    let mut lines = Vec::new();
    for task in tasks {
        lines.push(task.await.expect("the case passes"));
    }
    eprintln!("{}", lines.join("\n"));
}

#[tokio::test]
async fn upstream_down_for_the_whole_run_under_the_lambda_platform() {
    // Nothing listens on this port: every call is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let endpoint = format!("http://{closed}");
    let mut lambda = start_lambda(
        lsc_devtools::fakes::platform::Options::default(),
        Some("secrets:\n  - id: down/one\nparameters:\n  - path: /down/\n"),
        &[
            ("AWS_ENDPOINT_URL", &endpoint),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "500"),
            ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "500"),
        ],
    )
    .await;
    // A failed optional prefetch does not fail init.
    let init = lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    assert!(init.errors.is_empty(), "{:?}", init.errors);
    for _ in 0..3 {
        let started = Instant::now();
        let (_, reads) = lambda.invoke(&[secret_path("down/one"), parameter_path("/down/x", "")]).await;
        assert_eq!(
            reads,
            vec![(502, "-".to_string()), (502, "-".to_string())],
            "{}",
            lambda.ext.logs().join("\n")
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }
    let r = lambda.ext.get(&secret_path("down/one")).await.unwrap();
    assert_eq!(r.json()["__type"], "ConnectionError");
    assert_eq!(lambda.ext.get("/ping").await.unwrap().status, 200);
    lambda.shutdown_exits_in_time(Duration::from_millis(500)).await;
}
