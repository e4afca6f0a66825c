//! The dashboards use exactly the metric names the code emits (after the OTLP → Prometheus
//! translation for Grafana; as emitted for CloudWatch EMF), and every PromQL query parses and
//! computes the expected values under `promtool test rules` with synthetic series.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use lambda_secrets_cache::telemetry::names::{self, Kind};
use serde_json::Value;

fn dashboard(which: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dashboards/{which}/lambda-secrets-cache.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON")
}

/// The Prometheus series names a metric becomes through the collector: dots to underscores,
/// the unit as a suffix (`s` → `_seconds`, `By` → `_bytes`; `{…}` units dropped), `_total`
/// for counters, `_bucket`/`_sum`/`_count` for histograms.
fn prometheus_series() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for spec in names::ALL {
        let mut base = spec.name.replace('.', "_");
        match spec.unit {
            "s" => base.push_str("_seconds"),
            "By" if !base.ends_with("_bytes") => base.push_str("_bytes"),
            _ => {}
        }
        match spec.kind {
            Kind::Counter => {
                out.insert(format!("{base}_total"));
            }
            Kind::Gauge => {
                out.insert(base);
            }
            Kind::Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{base}{suffix}"));
                }
            }
        }
    }
    out
}

/// Every PromQL expression of the Grafana dashboard: panel targets and variable queries.
fn grafana_queries() -> Vec<String> {
    let d = dashboard("grafana");
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            out.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"].as_str().and_then(|q| q.strip_prefix("label_values(")) {
            out.push(q.split(',').next().unwrap().to_string());
        }
    }
    out
}

/// Metric names in a PromQL expression: identifiers outside `{…}` matchers and `by (…)`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut cleaned = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    while let Some(i) = cleaned.find("by (") {
        let end = cleaned[i..].find(')').map_or(cleaned.len(), |e| i + e + 1);
        cleaned.replace_range(i..end, " ");
    }
    cleaned
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("secrets_cache_") || w.starts_with("faas_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn grafana_uses_only_names_we_emit_and_covers_them() {
    let known = prometheus_series();
    let mut used = BTreeSet::new();
    for q in grafana_queries() {
        for name in metric_names(&q) {
            assert!(known.contains(&name), "{name} (in `{q}`) is not a series this extension emits");
            used.insert(name);
        }
    }
    for spec in names::ALL {
        let base = spec.name.replace('.', "_");
        assert!(used.iter().any(|u| u.starts_with(&base)), "no Grafana panel shows {}", spec.name);
    }
    let d = dashboard("grafana");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"function") && vars.contains(&"region"), "{vars:?}");
}

#[test]
fn cloudwatch_uses_only_names_we_emit_and_covers_them() {
    let d = dashboard("cloudwatch");
    let mut used = BTreeSet::new();
    for widget in d["widgets"].as_array().unwrap() {
        for row in widget["properties"]["metrics"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            if row[0].is_object() {
                continue; // a metric-math expression
            }
            assert_eq!(row[0], "LambdaSecretsCache", "the namespace of config-examples/otel-collector.yaml");
            let name = row[1].as_str().unwrap();
            assert!(names::find(name).is_some(), "{name} is not a metric this extension emits");
            used.insert(name.to_string());
        }
    }
    for spec in names::ALL {
        assert!(used.contains(spec.name), "no CloudWatch widget shows {}", spec.name);
    }
}

fn promtool() -> PathBuf {
    match Command::new("promtool").arg("--version").output() {
        Ok(o) if o.status.success() => PathBuf::from("promtool"),
        _ => panic!("promtool not found: `make test` installs it (Debian package prometheus)"),
    }
}

#[test]
fn every_promql_query_runs_and_the_key_panels_compute_the_right_values() {
    let promtool = promtool();
    let dir = std::env::temp_dir().join(format!("lsc-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Each panel query becomes a recording rule, with the dashboard variables filled in.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut record_names = Vec::new();
    for (i, q) in grafana_queries().iter().enumerate().filter(|(_, q)| q.contains('(')) {
        let expr = q
            .replace("$function", ".*")
            .replace("$region", ".*")
            .replace("$__rate_interval", "5m");
        let name = format!("panel:q{i}");
        rules.push_str(&format!("      - record: {name}\n        expr: '{}'\n", expr.replace('\'', "''")));
        record_names.push((name, expr));
    }
    std::fs::write(dir.join("rules.yaml"), &rules).unwrap();
    let check = Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(dir.join("rules.yaml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}\n{rules}", String::from_utf8_lossy(&check.stdout));

    let find = |needle: &str| {
        record_names
            .iter()
            .find(|(_, e)| e.contains(needle))
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| panic!("no query with {needle}"))
    };
    let hit_ratio = find("/ sum(rate(secrets_cache_requests_total");
    let staleness_p50 = find("histogram_quantile(0.5, sum by (le) (rate(secrets_cache_staleness_seconds_bucket");
    let staleness_p99 = find("histogram_quantile(0.99, sum by (le) (rate(secrets_cache_staleness_seconds_bucket");
    // (Rounded to 0.001: float sums; `round` also drops the recording rule's name.)
    // Per minute: 90 hits and 10 misses (hit ratio 0.9); 100 values served, 50 at most 1 s
    // old, 40 more at most 5 s, the last 10 at most 15 s (p50 = 1 s; p99 = 5 + 0.9 × 10 = 14 s).
    let labels = r#"faas_name="orders",cloud_region="eu-west-1",source="secretsmanager""#;
    let tests = format!(
        r#"rule_files:
  - rules.yaml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'secrets_cache_requests_total{{{labels},cache_result="hit"}}'
        values: '0+90x20'
      - series: 'secrets_cache_requests_total{{{labels},cache_result="miss"}}'
        values: '0+10x20'
      - series: 'secrets_cache_staleness_seconds_bucket{{{labels},le="1"}}'
        values: '0+50x20'
      - series: 'secrets_cache_staleness_seconds_bucket{{{labels},le="5"}}'
        values: '0+90x20'
      - series: 'secrets_cache_staleness_seconds_bucket{{{labels},le="15"}}'
        values: '0+100x20'
      - series: 'secrets_cache_staleness_seconds_bucket{{{labels},le="+Inf"}}'
        values: '0+100x20'
    promql_expr_test:
      - expr: 'round({hit_ratio}, 0.001)'
        eval_time: 10m
        exp_samples:
          - value: 0.9
      - expr: 'round({staleness_p50}, 0.001)'
        eval_time: 10m
        exp_samples:
          - value: 1
      - expr: 'round({staleness_p99}, 0.001)'
        eval_time: 10m
        exp_samples:
          - value: 14
"#
    );
    std::fs::write(dir.join("tests.yaml"), tests).unwrap();
    let run = Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg("tests.yaml")
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
