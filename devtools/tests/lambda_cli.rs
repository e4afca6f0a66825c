//! `lsc-dev lambda --handler …` as a user runs it: the example Python handler under
//! awslambdaric beside the extension binary, against moto, in one command.

use std::process::Command;

use lsc_devtools::fakes::aws::AwsJson;
use lsc_devtools::fakes::moto::Moto;

#[tokio::test(flavor = "multi_thread")]
async fn one_command_runs_a_handler_beside_the_extension() {
    let extension = lsc_devtools::harness::extension::binary("debug");
    assert!(
        extension.exists(),
        "{} is built by `cargo build --workspace --bins` (make test)",
        extension.display()
    );
    let moto = Moto::start().unwrap();
    let aws = AwsJson::new(moto.addr);
    aws.create_secret("prod/db/credentials", r#"{"username":"app","password":"cli-not-a-real-password"}"#)
        .await
        .unwrap();
    aws.put_parameter("/prod/app/flags", "feature-x=on", "String").await.unwrap();
    let handler = lsc_devtools::workspace_root().join("config-examples/functions/python_handler.handler");
    let out = Command::new(env!("CARGO_BIN_EXE_lsc-dev"))
        .args(["lambda", "--invocations", "2", "--pause-ms", "50", "--freeze", "--handler"])
        .arg(&handler)
        .arg("--")
        .arg(&extension)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", format!("http://{}", moto.addr))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        (count("START RequestId: "), count("END RequestId: "), count("REPORT RequestId: ")),
        (2, 2, 2),
        "{stdout}"
    );
    let reports: Vec<&&str> = lines.iter().filter(|l| l.starts_with("REPORT")).collect();
    assert!(
        reports[0].contains("\tInit Duration: ") && !reports[1].contains("Init Duration"),
        "{stdout}"
    );
    for report in &reports {
        for field in [
            "Duration: ",
            "Billed Duration: ",
            "Memory Size: 128 MB",
            "Max Memory Used: ",
            "PostRuntimeExtensionsDuration: ",
        ] {
            assert!(report.contains(field), "{field} in {report}");
        }
    }
    // The reads through the recorder: misses on the first invocation, hits on the second.
    let reads: Vec<&&str> = lines.iter().filter(|l| l.trim_start().starts_with("read: GET ")).collect();
    assert_eq!(reads.len(), 4, "{stdout}");
    assert!(reads[0].contains("-> 200 miss") && reads[1].contains("-> 200 miss"), "{stdout}");
    assert!(reads[2].contains("-> 200 hit") && reads[3].contains("-> 200 hit"), "{stdout}");
    assert!(stdout.contains("SHUTDOWN: extension exited with exit status: 0"), "{stdout}");
    assert!(!stdout.contains("cli-not-a-real-password"), "never a value");
}
