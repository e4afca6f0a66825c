//! Everything in `config-examples/` is checked with the product itself: config files with
//! `check`, the SAM and Terraform environments by running `check` on their variables, the
//! collector config's metric names against the ones the code emits, the function snippets with
//! their languages' own syntax checkers.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TOKEN, bin_command};
use lambda_secrets_cache::telemetry::names;
use saphyr::LoadableYamlNode;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples")
}

/// `lambda-secrets-cache check --config FILE` with `env` (and a token): exit status, output.
fn check(config: &Path, env: &BTreeMap<String, String>) -> (bool, String) {
    let out = bin_command()
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

/// Lambda's runtimes by operating system (AWS Lambda Developer Guide, "Lambda runtimes").
const AL2_RUNTIMES: [&str; 7] = [
    "provided.al2",
    "java8.al2",
    "java11",
    "java17",
    "python3.10",
    "python3.11",
    "nodejs18.x",
];
const AL2023_RUNTIMES: [&str; 14] = [
    "provided.al2023",
    "python3.12",
    "python3.13",
    "python3.14",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "java21",
    "java25",
    "dotnet8",
    "dotnet10",
    "ruby3.3",
    "ruby3.4",
    "java8.al2023",
];

/// What a layer example declares: its architectures, runtimes and the zip it publishes.
#[derive(Debug, PartialEq)]
struct LayerDecl {
    architectures: Vec<String>,
    runtimes: Vec<String>,
    zip: String,
}

fn check_layers(file: &str, layers: &[LayerDecl]) {
    let mut archs: Vec<&str> = layers.iter().flat_map(|l| l.architectures.iter().map(String::as_str)).collect();
    archs.sort();
    assert_eq!(archs, ["arm64", "x86_64"], "{file}: one layer per architecture");
    for layer in layers {
        let arch = &layer.architectures[0];
        assert!(
            layer.zip.ends_with(&format!("target/lambda-secrets-cache-layer-{arch}.zip")),
            "{file}: the {arch} layer publishes {}",
            layer.zip
        );
        assert!(layer.runtimes.len() <= 15, "{file}: Lambda takes at most 15 compatible runtimes");
        for r in &layer.runtimes {
            assert!(
                AL2_RUNTIMES.contains(&r.as_str()) || AL2023_RUNTIMES.contains(&r.as_str()),
                "{file}: {r} is not a Lambda runtime we know"
            );
        }
        assert!(
            layer.runtimes.iter().any(|r| AL2_RUNTIMES.contains(&r.as_str())),
            "{file}: an AL2 runtime"
        );
        assert!(
            layer.runtimes.iter().any(|r| AL2023_RUNTIMES.contains(&r.as_str())),
            "{file}: an AL2023 runtime"
        );
    }
    assert_eq!(layers[0].runtimes, layers[1].runtimes, "{file}: the same runtimes on both");
}

#[test]
fn the_sam_template_publishes_both_layers_and_the_function_takes_its_own() {
    let text = std::fs::read_to_string(examples().join("sam-template.yaml")).unwrap();
    let docs = saphyr::Yaml::load_from_str(&text).expect("valid YAML");
    let resources = docs[0]["Resources"].as_mapping().expect("Resources");
    let strings = |node: &saphyr::Yaml| -> Vec<String> {
        node.as_vec()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let mut layers = Vec::new();
    let mut names = Vec::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() == Some("AWS::Serverless::LayerVersion") {
            let p = &resource["Properties"];
            layers.push(LayerDecl {
                architectures: strings(&p["CompatibleArchitectures"]),
                runtimes: strings(&p["CompatibleRuntimes"]),
                zip: p["ContentUri"].as_str().unwrap_or_default().to_string(),
            });
            names.push((name.as_str().unwrap().to_string(), strings(&p["CompatibleArchitectures"])));
        }
    }
    check_layers("sam-template.yaml", &layers);
    // The function attaches the layer of its own architecture: arm64 → the arm64 layer.
    let arm = names.iter().find(|(_, a)| a == &["arm64"]).unwrap().0.clone();
    let x86 = names.iter().find(|(_, a)| a == &["x86_64"]).unwrap().0.clone();
    assert!(
        text.contains("Architectures: [!Ref Architecture]")
            && text.contains("IsArm64: !Equals [!Ref Architecture, arm64]")
            && text.contains(&format!("!If [IsArm64, !Ref {arm}, !Ref {x86}]")),
        "the function picks its layer by its architecture"
    );
}

#[test]
fn the_terraform_example_publishes_both_layers_and_the_function_takes_its_own() {
    let text = std::fs::read_to_string(examples().join("terraform.tf")).unwrap();
    let list = |after: &str| -> Vec<String> {
        let start = text.find(after).unwrap_or_else(|| panic!("{after}")) + after.len();
        let body = &text[start..start + text[start..].find(']').unwrap()];
        body.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let runtimes = list("secrets_cache_runtimes = [");
    let archs = list("for_each                 = toset([");
    let zip = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("filename                 = \""))
        .expect("the layer's filename")
        .trim_end_matches('"');
    let layers: Vec<LayerDecl> = archs
        .iter()
        .map(|a| LayerDecl {
            architectures: vec![a.clone()],
            runtimes: runtimes.clone(),
            zip: zip.replace("${each.key}", a),
        })
        .collect();
    check_layers("terraform.tf", &layers);
    assert!(text.contains("compatible_architectures = [each.key]"));
    assert!(text.contains("compatible_runtimes      = local.secrets_cache_runtimes"));
    assert!(text.contains("architectures = [var.architecture]"));
    assert!(text.contains("layers        = [aws_lambda_layer_version.secrets_cache[var.architecture].arn]"));
}

/// The IAM snippets the README points to are policy documents naming the calls the extension
/// makes for prefetch by filter and for roles.
#[test]
fn the_iam_snippets_are_policies_for_what_the_extension_calls() {
    let dir = examples().join("iam");
    let mut actions = Vec::new();
    for name in [
        "filter-prefetch.json",
        "assume-role.json",
        "reader-role-trust.json",
        "reader-role.json",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(doc["Version"], "2012-10-17", "{name}");
        for statement in doc["Statement"].as_array().unwrap() {
            assert_eq!(statement["Effect"], "Allow", "{name}");
            match &statement["Action"] {
                serde_json::Value::String(a) => actions.push(a.clone()),
                serde_json::Value::Array(list) => actions.extend(list.iter().map(|a| a.as_str().unwrap().to_string())),
                other => panic!("{name}: Action {other}"),
            }
        }
    }
    for needed in [
        "secretsmanager:BatchGetSecretValue",
        "secretsmanager:GetSecretValue",
        "sts:AssumeRole",
        "ssm:GetParametersByPath",
    ] {
        assert!(actions.iter().any(|a| a == needed), "{needed} in {actions:?}");
    }
}
