//! The null extension: registers for INVOKE and SHUTDOWN and calls `/event/next` again the
//! moment an event arrives, doing nothing else, with nothing but the standard library (no
//! async runtime, no logging set-up). That is what the peers (the AWS Parameters and Secrets
//! extension, the Secrets Manager Agent's wrapper) do after an invocation, so its start-up and
//! post-runtime duration are the floor an extension can reach on this machine. The benchmarks
//! run it beside ours. `lsc-null-extension [--name NAME]` (default: its file name), with
//! `AWS_LAMBDA_RUNTIME_API` set.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

/// One exchange on a fresh connection (`Connection: close`): status, head, body.
fn request(api: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(api)?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

fn run() -> Result<(), String> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set".to_string())?;
    let args: Vec<String> = std::env::args().collect();
    let name = match args.as_slice() {
        [_, flag, name] if flag == "--name" => name.clone(),
        [exe] => exe.rsplit('/').next().unwrap_or(exe).to_string(),
        _ => return Err("usage: lsc-null-extension [--name NAME]".into()),
    };
    let (status, head, body) = request(
        &api,
        "POST",
        "/2020-01-01/extension/register",
        &[("Lambda-Extension-Name", &name), ("Content-Type", "application/json")],
        r#"{"events":["INVOKE","SHUTDOWN"]}"#,
    )
    .map_err(|e| format!("register: {e}"))?;
    let id = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("lambda-extension-identifier"))
        .map(|(_, v)| v.trim().to_string())
        .filter(|_| status == 200)
        .ok_or_else(|| format!("register answered {status}: {body}"))?;
    loop {
        let (status, _, body) = request(
            &api,
            "GET",
            "/2020-01-01/extension/event/next",
            &[("Lambda-Extension-Identifier", &id)],
            "",
        )
        .map_err(|e| format!("next: {e}"))?;
        if status != 200 {
            return Err(format!("next answered {status}: {body}"));
        }
        if body.contains("\"SHUTDOWN\"") {
            return Ok(());
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lsc-null-extension: {e}");
            ExitCode::FAILURE
        }
    }
}
