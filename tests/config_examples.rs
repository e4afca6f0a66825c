//! Everything in `config-examples/` is checked with the product itself: config files with
//! `check`, the SAM and Terraform environments by running `check` on their variables, the
//! collector config's metric names against the ones the code emits, the function snippets with
//! their languages' own syntax checkers.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, TOKEN};
use lambda_secrets_cache::telemetry::names;
use saphyr::LoadableYamlNode;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples")
}

/// `lambda-secrets-cache check --config FILE` with `env` (and a token): exit status, output.
fn check(config: &Path, env: &BTreeMap<String, String>) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .env_clear()
        .env("AWS_TOKEN", TOKEN)
        .envs(env)
        .output()
        .expect("the binary runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

const NOT_PREFETCH_LISTS: [&str; 2] = ["sam-template.yaml", "otel-collector.yaml"];

fn prefetch_lists() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !NOT_PREFETCH_LISTS.iter().any(|n| p.ends_with(n)))
        .collect();
    files.sort();
    files
}

#[test]
fn every_config_file_passes_check() {
    let files = prefetch_lists();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let (ok, out) = check(&file, &BTreeMap::new());
        assert!(ok, "{}:\n{out}", file.display());
        assert!(out.contains("configuration is valid"));
    }
}

/// `NAME: "value"` (SAM) or `NAME = "value"` (Terraform) for the variables this product or
/// the OTel SDK reads.
fn environment(text: &str) -> BTreeMap<String, String> {
    let prefixes = [
        "PARAMETERS_SECRETS_EXTENSION_",
        "SECRETS_MANAGER_",
        "SSM_PARAMETER_STORE_",
        "SECRETS_CACHE_",
        "CACHE_EXTENSION_",
        "OTEL_",
    ];
    let mut env = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((name, value)) = line.split_once(':').or_else(|| line.split_once('=')) else {
            continue;
        };
        let name = name.trim();
        if prefixes.iter().any(|p| name.starts_with(p)) && name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            env.insert(name.to_string(), value.trim().trim_matches('"').to_string());
        }
    }
    env
}

#[test]
fn the_sam_and_terraform_environments_are_valid_settings() {
    for (file, at_least) in [("sam-template.yaml", 8), ("terraform.tf", 6)] {
        let text = std::fs::read_to_string(examples().join(file)).unwrap();
        let mut env = environment(&text);
        assert!(env.len() >= at_least, "{file}: {env:?}");
        // The config path names the function package; check it against an example instead.
        assert_eq!(env.remove("SECRETS_CACHE_CONFIG").as_deref(), Some("/var/task/config.yaml"));
        let (ok, out) = check(&examples().join("few-secrets.yaml"), &env);
        assert!(ok, "{file}: {env:?}\n{out}");
        assert!(
            text.contains("secretsmanager:BatchGetSecretValue"),
            "{file}: prefetch needs the batch permission"
        );
    }
}

#[test]
fn the_collector_config_names_only_metrics_we_emit() {
    let text = std::fs::read_to_string(examples().join("otel-collector.yaml")).unwrap();
    let docs = saphyr::Yaml::load_from_str(&text).expect("valid YAML");
    let doc = &docs[0];
    let mut selected = Vec::new();
    for decl in doc["exporters"]["awsemf"]["metric_declarations"]
        .as_vec()
        .expect("metric declarations")
    {
        for name in decl["metric_name_selectors"].as_vec().expect("selectors") {
            selected.push(name.as_str().expect("a name").to_string());
        }
    }
    for name in &selected {
        assert!(names::find(name).is_some(), "{name} is not a metric this extension emits");
    }
    for spec in names::ALL {
        assert!(
            selected.iter().any(|s| s == spec.name),
            "{} is not exported to CloudWatch",
            spec.name
        );
    }
    // Every component a pipeline uses is defined.
    let service = &doc["service"]["pipelines"];
    for (_, pipeline) in service.as_mapping().expect("pipelines") {
        for (kind, section) in [("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")] {
            for component in pipeline[kind].as_vec().into_iter().flatten() {
                let name = component.as_str().unwrap();
                assert!(!doc[section][name].is_badvalue(), "{kind} {name} is used but not defined");
            }
        }
    }
    assert_eq!(
        doc["receivers"]["otlp"]["protocols"]["http"]["endpoint"].as_str(),
        Some("localhost:4318")
    );
}

#[test]
fn the_function_snippets_are_valid_code_that_calls_our_api() {
    let dir = examples().join("functions");
    let py = dir.join("python_handler.py");
    // compile() in memory: py_compile would write __pycache__ into the source tree.
    let status = Command::new("python3")
        .args(["-c", "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')"])
        .arg(&py)
        .status()
        .unwrap();
    assert!(status.success(), "python snippet compiles");
    let js = dir.join("node_handler.mjs");
    if let Ok(status) = Command::new("node").arg("--check").arg(&js).status() {
        assert!(status.success(), "node snippet parses");
    }
    for (file, route) in [
        ("python_handler.py", "/secretsmanager/get"),
        ("node_handler.mjs", "/systemsmanager/parameters/get"),
        ("rust_handler.rs", "/secretsmanager/get"),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains(route) && text.contains("X-Aws-Parameters-Secrets-Token"), "{file}");
        assert!(text.contains("X-Amzn-Trace-Id"), "{file} passes the trace along");
    }
}
