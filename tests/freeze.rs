//! Lambda freezes the environment between invocations; timers do not run meanwhile, but the
//! clock does, so every timeout that was pending fires at the thaw. A request that reached an
//! open connection must be answered: here a function keeps one connection alive across
//! freezes longer than every timeout the extension has (its request timeout is 10 s) and
//! sends its next request the moment its invocation starts, or 50 ms after.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use lsc_devtools::fakes::platform::{Options, runtime};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

#[tokio::test]
async fn a_kept_alive_connection_is_answered_after_a_freeze_longer_than_every_timeout() {
    let name = unique("freeze-keepalive");
    aws().create_secret(&name, "kept").await.unwrap();
    let mut lambda = spawn_lambda(Options::default(), None, &[]).await;
    lambda.ext.wait_listening().await.unwrap();
    let addr = lambda.ext.addr;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nX-Aws-Parameters-Secrets-Token: {TOKEN}\r\n\r\n",
        secret_path(&name)
    );
    // The function's one connection, opened at its first read and reused after that, as
    // Node.js's default agent and requests.Session do.
    let connection: Arc<Mutex<Option<TcpStream>>> = Arc::default();
    let handler = runtime::handler(move |inv: runtime::Invocation| {
        let (connection, request) = (connection.clone(), request.clone());
        async move {
            let wait_ms: u64 = inv.payload.parse().map_err(|e| format!("{e}"))?;
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            let mut held = connection.lock().await;
            if held.is_none() {
                *held = Some(TcpStream::connect(addr).await.map_err(|e| e.to_string())?);
            }
            let answer = exchange(held.as_mut().expect("connected above"), &request).await;
            Ok(answer.lines().next().unwrap_or("").to_string())
        }
    });
    runtime::spawn(&lambda.platform, None, handler);
    lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    lambda.platform.freeze_between_invokes(vec![lambda.ext.pid()]);

    let first = lambda.platform.invoke("0").await.unwrap();
    assert_eq!(first.response, Ok("HTTP/1.1 200 OK".to_string()));
    for wait_ms in ["0", "50"] {
        tokio::time::sleep(Duration::from_millis(11_000)).await;
        let after_freeze = lambda.platform.invoke(wait_ms).await.unwrap();
        assert_eq!(
            after_freeze.response,
            Ok("HTTP/1.1 200 OK".to_string()),
            "request sent {wait_ms} ms into the invocation after an 11 s freeze\n{}",
            lambda.ext.logs().join("\n")
        );
    }
    lambda.platform.thaw();
    lambda.shutdown_exits_in_time(Duration::from_secs(2)).await;
}
