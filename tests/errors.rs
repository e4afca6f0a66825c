//! Every row of the README's error table ("Errors"): status and `__type`, through the binary's HTTP API.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::proxy::{Fault, FaultKind};
use lsc_devtools::harness::client;

async fn expect(h: &Harness, path: &str, status: u16, kind: &str) {
    assert_api_error(&h.ext.get(path).await.unwrap(), status, kind, &[], path);
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let h = start(&[]).await;
    for path in [
        "/secretsmanager/get",
        "/secretsmanager/get?secretId=",
        "/secretsmanager/get?secretId=a&versionId=1&versionStage=AWSPREVIOUS",
        "/secretsmanager/get?secretId=a&bogus=1",
        "/secretsmanager/get?secretId=a&secretId=b",
        "/secretsmanager/get?secretId=a&refreshNow=perhaps",
        "/systemsmanager/parameters/get",
        "/systemsmanager/parameters/get?name=/a&version=x",
        "/systemsmanager/parameters/get?name=/a&version=1&label=b",
        "/systemsmanager/parameters/get?name=/a:1&label=b",
        "/systemsmanager/parameters/get?name=/a&withDecryption=maybe",
        "/v1/a?secretId=b",
        "/v1/%FF",
    ] {
        expect(&h, path, 400, "InvalidRequest").await;
    }
    assert_eq!(h.proxy.total_calls(), 0, "nothing invalid reaches AWS");
}

#[tokio::test]
async fn relayed_requests_are_400() {
    let h = start(&[]).await;
    for (header, value) in [
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("Forwarded", "for=10.0.0.1"),
        ("X-Real-IP", "10.0.0.1"),
        ("Via", "1.1 proxy"),
    ] {
        let r = client::get(h.ext.addr, &secret_path("a"), &[TOKEN_HEADER, (header, value)])
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.json()["__type"].as_str()),
            (400, Some("ForwardedRequestRejected")),
            "{header}"
        );
        assert!(
            r.json()["message"].as_str().unwrap().contains(&header.to_ascii_lowercase()),
            "{header}"
        );
    }
    // A request target in absolute form is how a client talks to a proxy.
    let raw = format!(
        "GET http://evil.example/secretsmanager/get?secretId=a HTTP/1.1\r\nHost: evil.example\r\nX-Aws-Parameters-Secrets-Token: {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(h.ext.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("absolute-form"), "{answer}");
    assert_eq!(h.proxy.total_calls(), 0, "nothing relayed reaches AWS");
}

#[tokio::test]
async fn missing_or_wrong_token_is_403_and_ping_needs_none() {
    let h = start(&[]).await;
    for headers in [
        vec![],
        vec![("X-Aws-Parameters-Secrets-Token", "wrong")],
        vec![("X-Aws-Parameters-Secrets-Token", "test-token-7f3")],
    ] {
        let r = client::get(h.ext.addr, &secret_path("a"), &headers).await.unwrap();
        assert_eq!((r.status, r.json()["__type"].as_str()), (403, Some("InvalidToken")), "{headers:?}");
    }
    let twice = client::get(h.ext.addr, &secret_path("a"), &[TOKEN_HEADER, TOKEN_HEADER])
        .await
        .unwrap();
    assert_eq!(twice.status, 403, "a repeated token header is refused");
    let ping = client::get(h.ext.addr, "/ping", &[]).await.unwrap();
    assert_eq!((ping.status, ping.text().as_str()), (200, "healthy"));
    assert_eq!(h.proxy.total_calls(), 0);
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let h = start(&[]).await;
    expect(&h, "/secretsmanager/list", 404, "NotFound").await;
    expect(&h, "/", 404, "NotFound").await;
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let r = client::request(h.ext.addr, method, &secret_path("a"), &[TOKEN_HEADER], Vec::new())
            .await
            .unwrap();
        assert_eq!(r.status, 405, "{method}");
    }
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let h = start(&[]).await;
    let big = "x".repeat(20 * 1024);
    let r = client::get(h.ext.addr, &secret_path("a"), &[TOKEN_HEADER, ("X-Padding", &big)]).await;
    // hyper answers 431 to a header section over the limit (or closes the connection).
    if let Ok(r) = r {
        assert_eq!(r.status, 431);
    }
    assert_eq!(
        client::get(h.ext.addr, "/ping", &[]).await.unwrap().status,
        200,
        "the server carries on"
    );
}

#[tokio::test]
async fn connections_over_the_limit_get_429() {
    let h = start(&[("SECRETS_CACHE_MAX_INBOUND_CONNECTIONS", "1")]).await;
    // Hold one keep-alive connection open.
    let stream = tokio::net::TcpStream::connect(h.ext.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/ping")
        .header("host", "x")
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    // hyper's client is one that fails on an answer that comes before its request.
    for _ in 0..20 {
        let r = client::get(h.ext.addr, "/ping", &[]).await.unwrap();
        assert_eq!((r.status, r.json()["__type"].as_str()), (429, Some("ConnectionLimitExceeded")));
    }
    // A client that sends nothing still gets its 429 and the close, within a second.
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(h.ext.addr).await.unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 429"), "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    drop(sender);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        client::get(h.ext.addr, "/ping", &[]).await.unwrap().status,
        200,
        "capacity comes back"
    );
}

#[tokio::test]
async fn aws_service_errors_keep_their_status_and_code() {
    let h = start(&[]).await;
    // The status is whatever the service answered (AWS says 400 here; moto says 404).
    let missing = unique("missing");
    let (status, _) = h
        .aws
        .call_status("secretsmanager", "GetSecretValue", serde_json::json!({"SecretId": missing}))
        .await
        .unwrap();
    expect(&h, &secret_path(&missing), status, "ResourceNotFoundException").await;
    let missing = format!("/{}", unique("missing"));
    let (status, _) = h
        .aws
        .call_status("ssm", "GetParameter", serde_json::json!({"Name": missing}))
        .await
        .unwrap();
    expect(&h, &parameter_path(&missing, ""), status, "ParameterNotFound").await;
    h.proxy
        .inject(Fault::status(400, "ResourceNotFoundException").on("GetSecretValue").times(1));
    expect(&h, &secret_path(&unique("gone")), 400, "ResourceNotFoundException").await;
    h.proxy
        .inject(Fault::status(400, "AccessDeniedException").on("GetSecretValue").times(1));
    expect(&h, &secret_path(&unique("denied")), 400, "AccessDeniedException").await;
    h.proxy
        .inject(Fault::status(400, "DecryptionFailure").on("GetSecretValue").times(1));
    expect(&h, &secret_path(&unique("kms")), 400, "DecryptionFailure").await;
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let h = start(&[
        ("AWS_ENDPOINT_URL", &format!("http://{closed}")),
        ("SECRETS_MANAGER_TIMEOUT_MILLIS", "2000"),
    ])
    .await;
    expect(&h, &secret_path("anything"), 502, "ConnectionError").await;
}

#[tokio::test]
async fn hung_upstream_is_504_within_the_budget() {
    let h = start(&[("SECRETS_MANAGER_TIMEOUT_MILLIS", "300")]).await;
    h.proxy.inject(Fault::always(FaultKind::Delay(Duration::from_secs(5))));
    let started = std::time::Instant::now();
    expect(&h, &secret_path(&unique("slow")), 504, "TimeoutError").await;
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}
