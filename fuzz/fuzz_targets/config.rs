//! A config file and environment values through the whole configuration load (`Config::load`:
//! env parsing, durations, YAML walk, validation). Any input is a config or a list of
//! problems, never a panic; every file problem carries a line and a column (1-based).
//!
//! Input: the first line is `NAME=value` pairs separated by `;`, the rest is config.yaml.

#![no_main]

use std::collections::HashMap;

use lambda_secrets_cache::config::{Config, ConfigError, Env, file};
use libfuzzer_sys::fuzz_target;

struct MapEnv(HashMap<String, String>);

impl Env for MapEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fuzz_target!(|input: &str| {
    let (vars, yaml) = input.split_once('\n').unwrap_or((input, ""));
    let mut env: HashMap<String, String> = vars
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.entry("AWS_TOKEN".into()).or_insert_with(|| "token".into());
    env.insert("SECRETS_CACHE_CONFIG".into(), "/fuzz/config.yaml".into());
    let text = yaml.to_string();
    let read = move |_: &std::path::Path| Ok(Some(text.clone()));
    match Config::load(&MapEnv(env), &read) {
        Ok(config) => {
            let _ = config.describe();
        }
        Err(ConfigError { problems }) => assert!(!problems.is_empty(), "an error lists its problems"),
    }
    if let Err(problems) = file::parse(yaml) {
        assert!(!problems.is_empty());
        for p in &problems {
            assert!(p.line >= 1 && p.column >= 1, "{p}");
        }
    }
});
