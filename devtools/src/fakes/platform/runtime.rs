//! A scripted runtime for the fake platform: a real client of the Runtime API that waits for
//! extensions to register (runtime init starts after them, as in Lambda), runs an init hook,
//! then serves invocations with a handler, posting each result as a response or an error.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::FakeLambda;

/// What the handler gets for one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub deadline_ms: u64,
    pub trace: String,
    pub payload: String,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type Handler = Arc<dyn Fn(Invocation) -> BoxFuture<Result<String, String>> + Send + Sync>;

/// Makes a `Handler` from an async closure.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Invocation) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, String>> + Send + 'static,
{
    Arc::new(move |inv| Box::pin(f(inv)))
}

/// Runs the runtime loop until the platform shuts down. `init` is the function's init code
/// (it may read secrets: extensions are registered by then).
pub fn spawn(platform: &FakeLambda, init: Option<BoxFuture<()>>, handler: Handler) -> tokio::task::JoinHandle<()> {
    let platform = platform.clone();
    tokio::spawn(async move {
        if platform.registered(Duration::from_secs(60)).await.is_err() {
            return;
        }
        if let Some(init) = init {
            init.await;
        }
        serve(platform.addr, handler).await;
    })
}

/// The invocation loop against any Runtime API at `addr` (this platform, or another one);
/// returns when `next` fails or the platform refuses it.
pub async fn serve(addr: SocketAddr, handler: Handler) {
    loop {
        let Ok(next) = crate::harness::client::get(addr, "/2018-06-01/runtime/invocation/next", &[]).await else {
            return;
        };
        if next.status != 200 {
            return;
        }
        let invocation = Invocation {
            request_id: next.header("lambda-runtime-aws-request-id").unwrap_or_default().to_string(),
            deadline_ms: next.header("lambda-runtime-deadline-ms").and_then(|v| v.parse().ok()).unwrap_or(0),
            trace: next.header("lambda-runtime-trace-id").unwrap_or_default().to_string(),
            payload: next.text(),
        };
        let id = invocation.request_id.clone();
        let (path, body, headers) = match handler(invocation).await {
            Ok(body) => (format!("/2018-06-01/runtime/invocation/{id}/response"), body, vec![]),
            Err(message) => (
                format!("/2018-06-01/runtime/invocation/{id}/error"),
                serde_json::json!({"errorMessage": message, "errorType": "Function.Error", "stackTrace": []}).to_string(),
                vec![("Lambda-Runtime-Function-Error-Type", "Function.Error")],
            ),
        };
        let headers: Vec<(&str, &str)> = headers;
        if crate::harness::client::request(addr, "POST", &path, &headers, body.into_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}
