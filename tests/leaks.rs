//! Secret values never leave the function's reads. One workload touches everything the
//! extension does (prefetch, every read route, versions and labels, binary secrets, SecureString
//! parameters, references, refreshNow, every error class, upstream faults with stale serving,
//! telemetry to an OTLP receiver at debug log level, SHUTDOWN), then every captured log line,
//! exported byte, error body, `/status` body and platform request is scanned for every value,
//! and so is every file created or changed under /tmp and the working directory meanwhile.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use lsc_devtools::fakes::otlp::OtlpReceiver;
use lsc_devtools::fakes::platform::Options;
use lsc_devtools::fakes::proxy::{Fault, FaultKind};

/// Every regular file under `root` changed at or after `since` (skipping what cannot be read).
fn changed_files(root: &Path, since: SystemTime, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() {
            changed_files(&path, since, out);
        } else if kind.is_file()
            && let Ok(meta) = entry.metadata()
            && meta.modified().is_ok_and(|m| m >= since)
            && meta.len() < 64 << 20
        {
            out.push(path);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_secret_value_reaches_logs_telemetry_errors_status_or_disk() {
    let started_at = SystemTime::now() - Duration::from_secs(1);
    let u = unique("leak");
    let canary = |what: &str| format!("CANARY{}{}", what, u.replace('-', "X"));
    let aws = aws();
    let receiver = OtlpReceiver::start().await.unwrap();

    // Upstream data: each value a distinct canary.
    let (s_main, s_binary, s_fault) = (format!("{u}/main"), format!("{u}/binary"), format!("{u}/fault"));
    let path = format!("/{u}/params/");
    let (p_secure, p_plain, p_labelled) = (format!("{path}secure"), format!("{path}plain"), format!("/{u}/labelled"));
    let values = [
        canary("previous"),
        canary("current"),
        canary("binary"),
        canary("fault"),
        canary("secure"),
        canary("plain"),
        canary("labelone"),
        canary("labeltwo"),
    ];
    use base64::Engine as _;
    let binary_b64 = base64::engine::general_purpose::STANDARD.encode(values[2].as_bytes());
    aws.create_secret(&s_main, &values[0]).await.unwrap();
    aws.put_secret_value(&s_main, &values[1]).await.unwrap();
    aws.create_binary_secret(&s_binary, &binary_b64).await.unwrap();
    aws.create_secret(&s_fault, &values[3]).await.unwrap();
    aws.put_parameter(&p_secure, &values[4], "SecureString").await.unwrap();
    aws.put_parameter(&p_plain, &values[5], "String").await.unwrap();
    aws.put_parameter(&p_labelled, &values[6], "String").await.unwrap();
    aws.label_parameter_version(&p_labelled, 1, "blue").await.unwrap();
    aws.put_parameter(&p_labelled, &values[7], "String").await.unwrap();
    let mut needles: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
    needles.push(binary_b64.clone().into_bytes());

    let yaml = format!(
        "secrets:\n  - id: {s_main}\n  - id: {s_fault}\n  - id: {s_binary}\nparameters:\n  - path: {path}\n    withDecryption: true\n"
    );
    let endpoint = receiver.endpoint();
    let mut lambda = start_lambda(
        Options::default(),
        Some(&yaml),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("SECRETS_CACHE_FLUSH", "end"),
            ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug"),
            ("SECRETS_MANAGER_TTL", "1"),
            ("SSM_PARAMETER_STORE_TTL", "1"),
            ("SECRETS_CACHE_MAX_STALE", "60s"),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "400"),
        ],
    )
    .await;
    lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();

    // The function's reads: every route and selector.
    let mut reads = vec![
        secret_path(&s_main),
        format!("{}&versionStage=AWSPREVIOUS", secret_path(&s_main)),
        format!("/v1/{}", encode(&s_main)),
        secret_path(&s_binary),
        secret_path(&s_fault),
        parameter_path(&p_secure, "&withDecryption=true"),
        parameter_path(&p_secure, ""),
        parameter_path(&p_plain, ""),
        parameter_path(&p_labelled, "&label=blue"),
        parameter_path(&p_labelled, "&version=2"),
        parameter_path(&format!("/aws/reference/secretsmanager/{s_main}"), "&withDecryption=true"),
        format!("{}&refreshNow=true", secret_path(&s_main)),
    ];
    let arn = lambda.ext.get(&secret_path(&s_main)).await.unwrap().json()["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    reads.push(secret_path(&arn));
    let (_, got) = lambda.invoke(&reads).await;
    assert!(got.iter().all(|(s, _)| *s == 200), "{got:?}");

    // Every error class, with bodies kept for the scan.
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let addr = lambda.ext.addr;
    let with_token = [TOKEN_HEADER];
    for (method, p, headers) in [
        ("GET", secret_path(&s_main), vec![("X-Aws-Parameters-Secrets-Token", "wrong")]),
        ("GET", secret_path(&s_main), vec![]),
        ("GET", secret_path(&s_main), vec![TOKEN_HEADER, ("X-Forwarded-For", "1.2.3.4")]),
        ("POST", secret_path(&s_main), with_token.to_vec()),
        (
            "GET",
            format!("{}&versionId=nope&versionStage=AWSCURRENT", secret_path(&s_main)),
            with_token.to_vec(),
        ),
        (
            "GET",
            format!("{}&versionId=00000000-0000-0000-0000-000000000000", secret_path(&s_main)),
            with_token.to_vec(),
        ),
        ("GET", secret_path(&format!("{u}/missing")), with_token.to_vec()),
        ("GET", parameter_path(&p_labelled, "&label=nope"), with_token.to_vec()),
        ("GET", "/nowhere".to_string(), with_token.to_vec()),
        ("GET", "/status".to_string(), with_token.to_vec()),
    ] {
        let r = lsc_devtools::harness::client::request(addr, method, &p, &headers, Vec::new())
            .await
            .unwrap();
        bodies.push(r.body.to_vec());
    }

    // Upstream faults: stale serving, then errors with nothing cached to fall back on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for fault in [
        Fault::status(503, "ServiceUnavailable"),
        Fault::status(400, "ThrottlingException"),
        Fault::always(FaultKind::Reset),
        Fault::always(FaultKind::Delay(Duration::from_secs(2))),
    ] {
        lambda.proxy.clear_faults();
        lambda.proxy.inject(fault);
        let (_, got) = lambda.invoke(&[secret_path(&s_fault), parameter_path(&p_plain, "")]).await;
        assert!(got.iter().all(|(s, _)| *s == 200), "stale values served: {got:?}");
        for p in [
            format!("{}&refreshNow=true", secret_path(&s_fault)),
            secret_path(&format!("{u}/never")),
        ] {
            let r = lsc_devtools::harness::client::get(addr, &p, &with_token).await.unwrap();
            assert_ne!(r.status, 200, "{}", r.text());
            bodies.push(r.body.to_vec());
        }
    }
    lambda.proxy.clear_faults();
    bodies.push(
        lsc_devtools::harness::client::get(addr, "/status", &with_token)
            .await
            .unwrap()
            .body
            .to_vec(),
    );
    let control = lsc_devtools::harness::client::get(addr, &secret_path(&s_main), &with_token)
        .await
        .unwrap()
        .body
        .to_vec();

    // Files the extension holds open: sockets, pipes and devices only.
    let pid = lambda.ext.pid();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        let t = target.display().to_string();
        assert!(
            t.starts_with("socket:") || t.starts_with("pipe:") || t.starts_with("anon_inode:") || t.starts_with("/dev/"),
            "fd {} is {t}",
            fd.file_name().to_string_lossy()
        );
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!((fields[4], fields[5]), ("0", "0"), "no core dumps, soft and hard limit: {core}");

    lambda.shutdown_exits_in_time(Duration::from_millis(1000)).await;

    // The scan.
    let logs = lambda.ext.logs();
    assert!(
        logs.iter().any(|l| l.contains("DEBUG")),
        "debug logging was on: {} lines",
        logs.len()
    );
    let exported = receiver.raw_bodies();
    assert!(
        !receiver.spans().is_empty() && receiver.metric_exports() > 0,
        "telemetry was exported"
    );
    let platform: Vec<Vec<u8>> = lambda.platform.requests().into_iter().map(|r| r.body.to_vec()).collect();
    let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
    sources.extend(logs.iter().map(|l| ("log line".to_string(), l.clone().into_bytes())));
    sources.extend(exported.iter().map(|b| ("OTLP export".to_string(), b.to_vec())));
    sources.push(("OTLP decoded".to_string(), receiver.dump().into_bytes()));
    sources.extend(bodies.iter().map(|b| ("error or status body".to_string(), b.clone())));
    sources.extend(platform.into_iter().map(|b| ("request to the platform".to_string(), b)));
    let mut files = Vec::new();
    changed_files(Path::new("/tmp"), started_at, &mut files);
    changed_files(&std::env::current_dir().unwrap(), started_at, &mut files);
    let files_scanned = files.len();
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            sources.push((format!("file {}", f.display()), bytes));
        }
    }
    // The scan finds a value where one legitimately is: the function's read.
    assert!(find(&control, needles[1].as_slice()), "positive control");
    let mut found = Vec::new();
    for (what, bytes) in &sources {
        for n in &needles {
            if find(bytes, n) {
                found.push(format!("{} in {what}", String::from_utf8_lossy(n)));
            }
        }
    }
    eprintln!(
        "scanned {} log lines, {} OTLP bodies ({} spans), {} error/status bodies, {} platform requests, {} changed files for {} values",
        logs.len(),
        exported.len(),
        receiver.spans().len(),
        bodies.len(),
        lambda.platform.requests().len(),
        files_scanned,
        needles.len()
    );
    assert!(found.is_empty(), "secret values leaked:\n{}", found.join("\n"));
}
