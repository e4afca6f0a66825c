//! The fake platform's HTTP side: Extensions API, Telemetry API subscribe, Runtime API. Each
//! request is recorded; answers follow the runtime interface emulator's shapes.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::extensions::{Registered, Reply};
use super::records::new_uuid;
use super::{FakeLambda, Phase, Recorded, Reported};

type Answer = Response<Full<Bytes>>;

/// Serves until the runtime ends (the platform lives as long as its driver).
pub(super) fn serve(listener: TcpListener, platform: FakeLambda) {
    crate::serve_until_aborted("fake platform", listener, move || {
        let platform = platform.clone();
        hyper::service::service_fn(move |req| {
            let platform = platform.clone();
            async move { Ok::<_, Infallible>(handle(platform, req).await) }
        })
    });
}

async fn handle(platform: FakeLambda, req: http::Request<Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    {
        let mut inner = platform.lock();
        let at = inner.started.elapsed();
        inner.requests.push(Recorded {
            at,
            method: parts.method.to_string(),
            path: path.clone(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: body.clone(),
        });
    }
    let id = header("lambda-extension-identifier");
    let answer = match (&parts.method, path.as_str()) {
        (&Method::POST, "/2020-01-01/extension/register") => register(
            &platform,
            header("lambda-extension-name"),
            header("lambda-extension-accept-feature"),
            &body,
        ),
        (&Method::GET, "/2020-01-01/extension/event/next") => return next(&platform, id).await,
        (&Method::POST, "/2020-01-01/extension/init/error") => {
            report(&platform, "init", id, header("lambda-extension-function-error-type"), &body)
        }
        (&Method::POST, "/2020-01-01/extension/exit/error") => {
            report(&platform, "exit", id, header("lambda-extension-function-error-type"), &body)
        }
        (&Method::PUT, "/2022-07-01/telemetry") => subscribe(&platform, id, &body),
        (&Method::GET, "/2018-06-01/runtime/invocation/next") => return runtime_next(&platform).await,
        (&Method::GET, "/2018-06-01/runtime/restore/next") => return runtime_restore_next(&platform).await,
        (&Method::POST, "/2018-06-01/runtime/init/error") => {
            platform.lock().runtime_init_error = Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
            accepted()
        }
        (&Method::POST, p) if p.starts_with("/2018-06-01/runtime/invocation/") => runtime_result(&platform, p, body),
        _ => error(StatusCode::NOT_FOUND, "InvalidRequest", "no such route"),
    };
    platform.bump();
    answer
}

fn register(platform: &FakeLambda, name: Option<String>, features: Option<String>, body: &Bytes) -> Answer {
    let mut inner = platform.lock();
    if inner.phase != Phase::Init {
        return error(
            StatusCode::FORBIDDEN,
            "Extension.RegistrationClosed",
            "registration is only open during init",
        );
    }
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return error(
            StatusCode::FORBIDDEN,
            "Extension.InvalidExtensionName",
            "Lambda-Extension-Name is required",
        );
    };
    if inner.extensions.iter().any(|e| e.name == name) {
        return error(
            StatusCode::FORBIDDEN,
            "Extension.AlreadyRegistered",
            "an extension with this name is registered",
        );
    }
    if inner.extensions.len() >= 10 {
        return error(StatusCode::FORBIDDEN, "Extension.TooManyExtensions", "at most 10 extensions");
    }
    let events: Vec<String> = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v
            .get("events")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        Err(_) if body.is_empty() => Vec::new(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "InvalidRequest", "body is not JSON"),
    };
    if let Some(bad) = events.iter().find(|e| *e != "INVOKE" && *e != "SHUTDOWN") {
        return error(
            StatusCode::BAD_REQUEST,
            "Extension.InvalidEventType",
            &format!("{bad} is not INVOKE or SHUTDOWN"),
        );
    }
    let id = new_uuid();
    inner.emit("platform.extension", json!({"name": name, "state": "Ready", "events": events}));
    inner.extensions.push(Registered {
        id: id.clone(),
        name,
        events,
        pending: None,
        next_calls: Vec::new(),
        event_at: std::time::Duration::ZERO,
    });
    let o = &inner.options;
    let mut answer = json!({"functionName": o.function_name, "functionVersion": o.function_version, "handler": "index.handler"});
    if features.is_some_and(|f| f.split(',').any(|f| f.trim() == "accountId")) {
        answer["accountId"] = json!(o.account_id);
    }
    let mut response = json_response(StatusCode::OK, &answer);
    response.headers_mut().insert(
        "Lambda-Extension-Identifier",
        http::HeaderValue::from_str(&id).expect("a uuid is a valid header"),
    );
    response
}

async fn next(platform: &FakeLambda, id: Option<String>) -> Answer {
    let rx = {
        let mut inner = platform.lock();
        inner.next_count += 1;
        let count = inner.next_count;
        let fault = inner.options.faults.next_status;
        let at = inner.started.elapsed();
        let Some(ext) = inner.extensions.iter_mut().find(|e| Some(&e.id) == id.as_ref()) else {
            return unknown_identifier();
        };
        ext.next_calls.push(at);
        if let Some((n, status)) = fault
            && n == count
        {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "Extension.Fault", "scripted failure of next");
        }
        let (tx, rx) = oneshot::channel();
        ext.pending = Some(tx);
        rx
    };
    platform.bump();
    match rx.await {
        Ok(Reply::Event(event)) => json_response(StatusCode::OK, &event),
        // The platform replaced or dropped the call (shutdown of the fake).
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "Extension.Reset", "the platform is going away"),
    }
}

fn report(platform: &FakeLambda, kind: &'static str, id: Option<String>, error_type: Option<String>, body: &Bytes) -> Answer {
    let mut inner = platform.lock();
    let Some(name) = registered_name(&inner.extensions, id.as_deref()) else {
        return unknown_identifier();
    };
    let Some(error_type) = error_type else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Lambda-Extension-Function-Error-Type is required",
        );
    };
    let reported = Reported {
        kind,
        extension: name,
        error_type,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    };
    inner.errors.push(reported);
    accepted()
}

fn subscribe(platform: &FakeLambda, id: Option<String>, body: &Bytes) -> Answer {
    let mut inner = platform.lock();
    let Some(name) = registered_name(&inner.extensions, id.as_deref()) else {
        return unknown_identifier();
    };
    match inner.options.faults.subscribe_status {
        Some(202) => {
            return json_response(
                StatusCode::ACCEPTED,
                &json!({"errorType": "Telemetry.NotSupported", "errorMessage": "Telemetry API is not supported"}),
            );
        }
        Some(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "Telemetry.Fault", "scripted failure of subscribe");
        }
        None => {}
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return error(StatusCode::BAD_REQUEST, "ValidationError", "body is not JSON"),
    };
    let subscription = match super::telemetry::Subscription::validate(&request) {
        Ok(s) => s,
        Err(why) => return error(StatusCode::BAD_REQUEST, "ValidationError", &why),
    };
    inner.emit(
        "platform.telemetrySubscription",
        json!({"name": name, "state": "Subscribed", "types": subscription.types}),
    );
    drop(inner);
    tokio::spawn(super::telemetry::deliver(platform.clone(), subscription));
    let mut response = Response::new(Full::new(Bytes::from_static(b"OK")));
    *response.status_mut() = StatusCode::OK;
    response
}

/// Parks a runtime call in the slot `slot` picks until the platform answers it; `None` when
/// the environment is shutting down (then or while parked).
async fn park_runtime<T>(platform: &FakeLambda, slot: impl FnOnce(&mut super::Inner) -> &mut Option<oneshot::Sender<T>>) -> Option<T> {
    let rx = {
        let mut inner = platform.lock();
        if inner.phase == Phase::ShuttingDown {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        *slot(&mut inner) = Some(tx);
        rx
    };
    platform.bump();
    rx.await.ok()
}

fn shutting_down() -> Answer {
    error(StatusCode::GONE, "Runtime.ShuttingDown", "the environment is shutting down")
}

async fn runtime_next(platform: &FakeLambda) -> Answer {
    let Some(invoke) = park_runtime(platform, |i| &mut i.runtime_pending).await else {
        return shutting_down();
    };
    let mut response = Response::new(Full::new(invoke.payload));
    let h = response.headers_mut();
    let value = |s: &str| http::HeaderValue::from_str(s).unwrap_or(http::HeaderValue::from_static("?"));
    h.insert("Lambda-Runtime-Aws-Request-Id", value(&invoke.request_id));
    h.insert("Lambda-Runtime-Deadline-Ms", value(&invoke.deadline_ms.to_string()));
    h.insert("Lambda-Runtime-Invoked-Function-Arn", value(&invoke.function_arn));
    h.insert("Lambda-Runtime-Trace-Id", value(&invoke.trace));
    h.insert("Content-Type", http::HeaderValue::from_static("application/json"));
    response
}

/// SnapStart: the runtime's init is over and the snapshot may be taken; answered (empty) at
/// the restore.
async fn runtime_restore_next(platform: &FakeLambda) -> Answer {
    match park_runtime(platform, |i| &mut i.runtime_restore).await {
        Some(()) => Response::new(Full::new(Bytes::new())),
        None => shutting_down(),
    }
}

fn runtime_result(platform: &FakeLambda, path: &str, body: Bytes) -> Answer {
    let rest = path.trim_start_matches("/2018-06-01/runtime/invocation/");
    let (request_id, outcome) = match rest.rsplit_once('/') {
        Some((id, "response")) => (id, Ok(body)),
        Some((id, "error")) => (id, Err(body)),
        _ => return error(StatusCode::NOT_FOUND, "InvalidRequest", "no such route"),
    };
    let mut inner = platform.lock();
    let Some(tx) = inner.responses.remove(request_id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidStateTransition",
            "no invocation with this id is running",
        );
    };
    let at = inner.started.elapsed();
    inner.responded_at.insert(request_id.to_string(), at);
    drop(inner);
    let _ = tx.send(outcome);
    accepted()
}

/// The name of the extension with identifier `id`.
fn registered_name(extensions: &[Registered], id: Option<&str>) -> Option<String> {
    extensions.iter().find(|e| Some(e.id.as_str()) == id).map(|e| e.name.clone())
}

fn unknown_identifier() -> Answer {
    error(
        StatusCode::FORBIDDEN,
        "Extension.InvalidExtensionIdentifier",
        "unknown Lambda-Extension-Identifier",
    )
}

fn accepted() -> Answer {
    json_response(StatusCode::ACCEPTED, &json!({"status": "OK"}))
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Answer {
    json_response(status, &json!({"errorType": error_type, "errorMessage": message}))
}

fn json_response(status: StatusCode, value: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("Content-Type", http::HeaderValue::from_static("application/json"));
    response
}
