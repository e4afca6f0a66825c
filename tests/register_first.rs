//! Registration comes first (only the bound port and the config read before it); the AWS
//! clients are built afterwards, while the runtime starts. Here their build is held on purpose:
//! `AWS_CA_BUNDLE` names a FIFO the test writes only later, so reading the trust roots blocks.
//! While it is held the extension has registered and answers, a read from the function's init
//! and a `required` prefetch wait for the clients (no error, no call), and Init ends only once
//! the required entry is in.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::platform::Options;

const HOLD: Duration = Duration::from_millis(700);

fn fifo(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(unique(name));
    let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
    path
}

#[tokio::test]
async fn reads_and_the_required_prefetch_wait_for_clients_built_after_register() {
    let required = seeded_secrets("rf-required", 1).await;
    let lazy = seeded_secrets("rf-lazy", 1).await;
    let bundle = fifo("rf-bundle");
    let yaml = format!("secrets:\n  - id: {}\n    required: true\n", required[0]);
    let ca = bundle.to_str().unwrap().to_string();
    let mut lambda = spawn_lambda(Options::default(), Some(&yaml), &[("AWS_CA_BUNDLE", &ca)]).await;
    lambda.ext.wait_listening().await.unwrap();
    let init_reads = lambda.attach_reader(Some(vec![secret_path(&lazy[0])]));

    tokio::time::sleep(HOLD).await;
    assert_eq!(
        lambda.platform.requests_to("/2020-01-01/extension/register").len(),
        1,
        "registered before the clients exist"
    );
    let s = status(&lambda.ext).await;
    assert_eq!(s["cache"]["entries"], 0, "{s}");
    assert!(lambda.platform.next_calls().is_empty(), "Init waits for the required entry");
    assert_eq!(lambda.proxy.total_calls(), 0, "nothing can be called before the clients exist");

    let released_at = std::time::Instant::now();
    let writer = tokio::task::spawn_blocking(move || {
        std::fs::write(&bundle, include_bytes!("../src/upstream/amazon-roots.pem")).unwrap();
        std::fs::remove_file(&bundle).unwrap();
    });
    let init = lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    writer.await.unwrap();
    assert!(init.errors.is_empty(), "{:?}", init.errors);
    assert_eq!(
        init_reads.await.unwrap(),
        vec![(200, "miss".to_string())],
        "the early read waited for the clients"
    );
    let first_next = lambda.platform.next_calls()[0];
    let registered = lambda.platform.requests_to("/2020-01-01/extension/register")[0].at;
    assert!(
        first_next >= registered + HOLD,
        "first /next at {first_next:?}, register at {registered:?}: after the held clients"
    );
    assert!(released_at.elapsed() < Duration::from_secs(10));

    let (_, reads) = lambda.invoke(&[secret_path(&required[0]), secret_path(&lazy[0])]).await;
    assert_eq!(reads, vec![(200, "hit".to_string()), (200, "hit".to_string())]);
    assert_eq!(lambda.proxy.total_calls(), 2, "one call per secret");
}

/// A bundle that never comes (a FIFO nobody writes): a read waits `READY_WAIT` (5 s) for the
/// clients, then its own budget, and is a time-out; the extension goes on answering.
#[tokio::test]
async fn clients_that_never_come_are_a_timeout_after_the_ready_wait() {
    let lazy = seeded_secrets("rf-never", 1).await;
    let bundle = fifo("rf-never-bundle");
    let ca = bundle.to_str().unwrap().to_string();
    let lambda = start_lambda(
        Options {
            timeout: Duration::from_secs(30),
            ..Options::default()
        },
        None,
        &[
            ("AWS_CA_BUNDLE", &ca),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "500"),
            ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "500"),
        ],
    )
    .await;
    let init = lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    assert!(init.errors.is_empty(), "nothing required: Init does not wait for the clients");
    let started = std::time::Instant::now();
    let (_, reads) = lambda.invoke(&[secret_path(&lazy[0])]).await;
    assert_eq!(reads, vec![(504, "-".to_string())], "a time-out, not a hang");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(9), "{took:?}");
    assert_eq!(lambda.ext.get("/ping").await.unwrap().status, 200);
    let s = status(&lambda.ext).await;
    assert_eq!(s["cache"]["entries"], 0, "{s}");
    assert_eq!(lambda.proxy.total_calls(), 0);
    // Unblock the reader thread so the process can exit cleanly.
    let _ = std::fs::write(&bundle, b"");
    let _ = std::fs::remove_file(&bundle);
}
