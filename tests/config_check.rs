//! `lambda-secrets-cache check`: every problem at once, with file positions; exit 0/1.

mod common;

use common::*;

fn check(yaml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = std::env::temp_dir().join(unique("check"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = bin_command()
        .args(["check", "--config", file.to_str().unwrap()])
        .env_clear()
        .env("AWS_TOKEN", "t")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace(file.to_str().unwrap(), "config.yaml");
    (out.status.code().unwrap(), text)
}

#[test]
fn a_valid_file_prints_the_resolved_settings() {
    let (code, out) = check(
        "ttl: 10m\nsecrets:\n  - id: prod/db\n    required: true\nparameters:\n  - path: /prod/app/\n",
        &[("SSM_PARAMETER_STORE_TTL", "60")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration is valid"));
    assert!(out.contains("secrets manager:        ttl 10m"), "{out}");
    assert!(out.contains("parameter store:        ttl 1m"), "{out}");
    assert!(out.contains("secret    prod/db required"), "{out}");
    assert!(out.contains("path      /prod/app/ (recursive)"), "{out}");
    assert!(out.contains("token from:             AWS_TOKEN"));
}

#[test]
fn the_emulators_environment_is_valid_and_says_what_will_be_missing() {
    // What AWS's emulator gives an extension: credentials variables present and empty.
    let (code, out) = check(
        "secrets:\n  - id: a\n",
        &[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("region:                 eu-west-1 (AWS_REGION)"), "{out}");
    assert!(out.contains("credentials:            none in the environment"), "{out}");
    assert!(out.contains("MissingCredentials"), "{out}");
    let empty_token = bin_command()
        .args(["check"])
        .env_clear()
        .envs([("AWS_SESSION_TOKEN", ""), ("SECRETS_CACHE_CONFIG", "")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&empty_token.stdout);
    assert!(empty_token.status.success(), "an empty AWS_SESSION_TOKEN is a token: {text}");
    assert!(text.contains("token from:             AWS_SESSION_TOKEN (set but empty"), "{text}");
    assert!(text.contains("region:                 none in AWS_REGION"), "{text}");
}

#[test]
fn unknown_key() {
    let (code, out) = check("secrets:\n  - id: a\n    stage: AWSPREVIOUS\n", &[]);
    assert_eq!(code, 1);
    assert!(out.contains("config.yaml:3:5: unknown key `stage` in a secrets entry"), "{out}");
}

#[test]
fn wrong_type() {
    let (code, out) = check("parameters:\n  - name: /a\n    withDecryption: \"yes\"\n", &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("config.yaml:3:21: `withDecryption` must be true or false, got the string \"yes\""),
        "{out}"
    );
}

#[test]
fn bad_duration() {
    let (code, out) = check("ttl: 5 minutes\n", &[]);
    assert_eq!(code, 1);
    assert!(out.contains("config.yaml:1:6: `ttl`: invalid duration \"5 minutes\""), "{out}");
}

#[test]
fn bad_yaml() {
    let (code, out) = check("secrets:\n  - id: \"unterminated\n", &[]);
    assert_eq!(code, 1);
    assert!(out.contains("config.yaml:") && out.contains("invalid YAML"), "{out}");
}

#[test]
fn all_problems_at_once_including_the_environment() {
    let yaml = "tll: 5m\nsecrets:\n  - versionStage: AWSPREVIOUS\n  - id: b\n    ttl: 2d\nparameters:\n  - name: /x\n    path: /y/\n";
    let (code, out) = check(
        yaml,
        &[("SECRETS_MANAGER_TTL", "soon"), ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "99999")],
    );
    assert_eq!(code, 1);
    for needle in [
        "invalid configuration (6 problems)",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT: 99999 is out of range",
        "SECRETS_MANAGER_TTL: \"soon\" is not a whole number",
        "config.yaml:1:1: unknown key `tll`",
        "config.yaml:3:5: secrets entry has no `id`",
        "config.yaml:5:10: `ttl`: 2d is above the maximum of 1d",
        "config.yaml:8:11: give `name` or `path`, not both",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn version_prints() {
    let out = bin_command().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lambda-secrets-cache "));
}

#[test]
fn a_fifo_a_device_or_a_directory_as_config_is_a_clear_error_at_once() {
    let dir = std::env::temp_dir().join(format!("lsc-check-special-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("config.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (path, why) in [
        (fifo.to_str().unwrap(), "a FIFO, not a regular file"),
        ("/dev/zero", "not a regular file"),
        (dir.to_str().unwrap(), "a directory, not a regular file"),
    ] {
        let started = std::time::Instant::now();
        let out = bin_command()
            .args(["check", "--config", path])
            .env_clear()
            .env("AWS_TOKEN", "t")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{path}: {text}");
        assert!(text.contains(why), "{path}: {text}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{path}: no hang");
    }
    // `serve` with the FIFO: a config error and exit, not a hang in open().
    let mut child = bin_command()
        .arg("serve")
        .env_clear()
        .env("AWS_TOKEN", "t")
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "0")
        .env("SECRETS_CACHE_CONFIG", &fifo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "serve hung on a FIFO config");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn numeric_looking_names_are_checked_and_read_as_written() {
    // Issue 22, item 9: `007` was read as the secret `7`, `0x1F` as `31`.
    let (code, out) = check(
        "secrets:\n  - id: 007\n  - id: 0x1F\n    versionId: +12\nparameters:\n  - name: 0o17\n",
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("secret    007\n"), "{out}");
    assert!(out.contains("secret    0x1F versionId=+12\n"), "{out}");
    assert!(out.contains("parameter 0o17\n"), "{out}");
}

#[test]
fn overlapping_entries_are_reported_with_the_one_that_wins() {
    // Issue 22, item 10.
    let (code, out) = check(
        "secrets:\n  - filter: {tag-key: app}\n    ttl: 1h\n  - filter: {tag-value: shop}\n",
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("overlap   filter tag-key=app and filter tag-value=shop may match the same secrets: such a secret takes one place, with the settings of filter tag-key=app"),
        "{out}"
    );
}
