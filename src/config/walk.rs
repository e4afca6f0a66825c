//! The walk over the config file's YAML nodes: every entry checked, every problem collected
//! with its line and column, and the typed items of `file` built from what is valid.

use std::borrow::Cow;
use std::time::Duration;

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::duration;
use super::file::{
    FILTER_KEYS, FileProblem, FilterItem, MAX_FILTER_VALUE, MAX_FILTER_VALUES, ParameterItem, ParameterTarget, PrefetchList, SecretFilter,
    SecretItem, SecretVersion, check_ttl,
};

type Node<'a> = MarkedYaml<'a>;

pub(super) struct Walk<'t> {
    pub(super) problems: Vec<FileProblem>,
    /// The file's text: a scalar YAML reads as a number is used as written.
    text: &'t str,
}

const ROOT_KEYS: &[&str] = &["ttl", "secrets", "parameters"];
const SECRET_KEYS: &[&str] = &["id", "filter", "versionStage", "versionId", "ttl", "required", "roleArn"];
const PARAMETER_KEYS: &[&str] = &["name", "path", "withDecryption", "ttl", "required", "roleArn"];

/// A `secrets` entry: one secret by id, or every secret a filter matches.
enum SecretEntry {
    Item(SecretItem),
    Filter(FilterItem),
}

impl<'t> Walk<'t> {
    pub(super) fn new(text: &'t str) -> Walk<'t> {
        Walk {
            problems: Vec::new(),
            text,
        }
    }

    /// `node` as written in the file (its span, from character positions).
    fn written(&self, node: &Node<'_>) -> &'t str {
        let byte = |chars: usize| self.text.char_indices().nth(chars).map_or(self.text.len(), |(b, _)| b);
        let (start, end) = (byte(node.span.start.index()), byte(node.span.end.index()));
        self.text.get(start..end).unwrap_or("").trim_end()
    }

    pub(super) fn problem(&mut self, node: &Node<'_>, message: String) {
        self.problems.push(FileProblem {
            line: node.span.start.line(),
            column: node.span.start.col() + 1,
            message,
        });
    }

    pub(super) fn root(&mut self, root: &Node<'_>) -> PrefetchList {
        let mut config = PrefetchList::default();
        if matches!(root.data, YamlData::Value(Scalar::Null)) {
            return config;
        }
        let Some(entries) = self.mapping(root, "the top level") else {
            return config;
        };
        for (key, value) in entries {
            match key {
                "ttl" => config.ttl = self.duration(value, "ttl"),
                "secrets" => {
                    for item in self.sequence(value, "secrets") {
                        match self.secret(item) {
                            Some(SecretEntry::Item(s)) => config.secrets.push(s),
                            Some(SecretEntry::Filter(f)) => config.secret_filters.push(f),
                            None => {}
                        }
                    }
                }
                "parameters" => {
                    for item in self.sequence(value, "parameters") {
                        if let Some(p) = self.parameter(item) {
                            config.parameters.push(p);
                        }
                    }
                }
                _ => unreachable!("mapping() filters unknown keys"),
            }
        }
        config
    }

    fn secret(&mut self, node: &Node<'_>) -> Option<SecretEntry> {
        let entries = self.mapping_with(node, "a secrets entry", SECRET_KEYS)?;
        let (mut id, mut filter) = (None, None);
        let (mut stage, mut version_id) = (None, None);
        let (mut ttl, mut required, mut role, mut ok) = (None, false, Some(String::new()), true);
        for (key, value) in &entries {
            match *key {
                "id" => id = Some((self.text(value, "id"), *value)),
                "filter" => filter = Some((self.filter(value), *value)),
                "versionStage" => stage = Some((self.text(value, "versionStage"), *value)),
                "versionId" => version_id = Some((self.text(value, "versionId"), *value)),
                "ttl" => ttl = self.duration(value, "ttl"),
                "required" => required = self.boolean(value, "required").unwrap_or(false),
                "roleArn" => role = self.role(value),
                _ => unreachable!(),
            }
        }
        if let Some((filters, at)) = filter {
            if id.is_some() {
                self.problem(at, "give `id` or `filter`, not both".into());
                return None;
            }
            if let Some((_, at)) = stage.or(version_id) {
                self.problem(
                    at,
                    "a `filter` entry reads each match's AWSCURRENT version; `versionStage` and `versionId` go with `id`".into(),
                );
                return None;
            }
            return Some(SecretEntry::Filter(FilterItem {
                filters: filters?,
                ttl,
                required,
                role: role?,
            }));
        }
        let id = match id {
            Some((id, _)) => id,
            None => {
                self.problem(node, "secrets entry has no `id` (a secret name or ARN) or `filter`".into());
                ok = false;
                None
            }
        };
        let version = match (stage, version_id) {
            (Some(_), Some((_, at))) => {
                self.problem(at, "give `versionStage` or `versionId`, not both".into());
                ok = false;
                SecretVersion::Current
            }
            (Some((Some(stage), _)), None) if stage == "AWSCURRENT" => SecretVersion::Current,
            (Some((Some(stage), _)), None) => SecretVersion::Stage(stage),
            (None, Some((Some(id), _))) => SecretVersion::Id(id),
            _ => SecretVersion::Current,
        };
        Some(SecretEntry::Item(SecretItem {
            id: id?,
            version,
            ttl,
            required,
            role: role?,
        }))
        .filter(|_| ok)
    }

    /// A `filter` mapping: keys from `FILTER_KEYS`, each with a string or a list of strings.
    fn filter(&mut self, node: &Node<'_>) -> Option<Vec<SecretFilter>> {
        let entries = self.mapping_with(node, "a filter", FILTER_KEYS)?;
        if entries.is_empty() {
            self.problem(node, format!("a filter needs at least one of {}", FILTER_KEYS.join(", ")));
            return None;
        }
        let mut filters = Vec::with_capacity(entries.len());
        let mut ok = true;
        for (key, value) in entries {
            let key = FILTER_KEYS
                .iter()
                .copied()
                .find(|k| *k == key)
                .expect("mapping_with keeps allowed keys");
            let nodes: Vec<&Node<'_>> = match &value.data {
                YamlData::Sequence(items) => items.iter().collect(),
                _ => vec![value],
            };
            if nodes.is_empty() || nodes.len() > MAX_FILTER_VALUES {
                self.problem(
                    value,
                    format!("filter `{key}` takes 1 to {MAX_FILTER_VALUES} values, got {}", nodes.len()),
                );
                ok = false;
                continue;
            }
            let mut values = Vec::with_capacity(nodes.len());
            for n in nodes {
                match self.text(n, key) {
                    Some(v) if v.len() > MAX_FILTER_VALUE => {
                        self.problem(n, format!("filter `{key}`: a value is at most {MAX_FILTER_VALUE} characters"));
                        ok = false;
                    }
                    Some(v) => values.push(v),
                    None => ok = false,
                }
            }
            filters.push(SecretFilter { key, values });
        }
        Some(filters).filter(|_| ok)
    }

    /// `roleArn`: an IAM role ARN.
    fn role(&mut self, node: &Node<'_>) -> Option<String> {
        let arn = self.text(node, "roleArn")?;
        match super::role::check_role_arn(&arn) {
            Ok(()) => Some(arn),
            Err(why) => {
                self.problem(node, format!("`roleArn` \"{}\" {why}", crate::escape::escaped(&arn)));
                None
            }
        }
    }

    fn parameter(&mut self, node: &Node<'_>) -> Option<ParameterItem> {
        let entries = self.mapping_with(node, "a parameters entry", PARAMETER_KEYS)?;
        let (mut name, mut path) = (None, None);
        let (mut with_decryption, mut ttl, mut required) = (false, None, false);
        let mut role = Some(String::new());
        for (key, value) in &entries {
            match *key {
                "name" => name = Some((self.text(value, "name"), *value)),
                "path" => path = Some((self.text(value, "path"), *value)),
                "withDecryption" => with_decryption = self.boolean(value, "withDecryption").unwrap_or(false),
                "ttl" => ttl = self.duration(value, "ttl"),
                "required" => required = self.boolean(value, "required").unwrap_or(false),
                "roleArn" => role = self.role(value),
                _ => unreachable!(),
            }
        }
        let target = match (name, path) {
            (Some(_), Some((_, at))) => {
                self.problem(at, "give `name` or `path`, not both".into());
                return None;
            }
            (None, None) => {
                self.problem(node, "parameters entry has neither `name` nor `path`".into());
                return None;
            }
            (Some((name, _)), None) => ParameterTarget::Name(name?),
            (None, Some((path, at))) => {
                let path = path?;
                if !path.starts_with('/') {
                    self.problem(at, format!("`path` must start with `/`, got \"{}\"", crate::escape::escaped(&path)));
                    return None;
                }
                ParameterTarget::Path(path)
            }
        };
        Some(ParameterItem {
            target,
            with_decryption,
            ttl,
            required,
            role: role?,
        })
    }

    fn mapping<'n, 'a>(&mut self, node: &'n Node<'a>, what: &str) -> Option<Vec<(&'n str, &'n Node<'a>)>> {
        self.mapping_with(node, what, ROOT_KEYS)
    }

    /// The entries of a mapping whose keys are all in `allowed`; unknown keys are reported
    /// and left out so the rest of the entry is still checked.
    fn mapping_with<'n, 'a>(&mut self, node: &'n Node<'a>, what: &str, allowed: &[&str]) -> Option<Vec<(&'n str, &'n Node<'a>)>> {
        let YamlData::Mapping(map) = &node.data else {
            self.problem(
                node,
                format!("{what} must be a mapping of keys ({}), got {}", allowed.join(", "), kind(node)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (key, value) in map {
            match &key.data {
                YamlData::Value(Scalar::String(k)) if allowed.contains(&k.as_ref()) => {
                    let k: &'n str = match k {
                        Cow::Borrowed(b) => b,
                        Cow::Owned(o) => o.as_str(),
                    };
                    out.push((k, value));
                }
                YamlData::Value(Scalar::String(k)) => {
                    let hint = suggestion(k, allowed);
                    let k = crate::escape::escaped(k);
                    self.problem(key, format!("unknown key `{k}` in {what}{hint} (allowed: {})", allowed.join(", ")));
                }
                _ => self.problem(key, format!("keys in {what} must be strings, got {}", kind(key))),
            }
        }
        Some(out)
    }

    fn sequence<'n, 'a>(&mut self, node: &'n Node<'a>, what: &str) -> &'n [Node<'a>] {
        match &node.data {
            YamlData::Sequence(items) => items,
            YamlData::Value(Scalar::Null) => &[],
            _ => {
                self.problem(node, format!("`{what}` must be a list, got {}", kind(node)));
                &[]
            }
        }
    }

    fn text(&mut self, node: &Node<'_>, what: &str) -> Option<String> {
        let text = match &node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            // Names like `2024`, `007`, `0x1F`, `+12` or `1e3` are legal; YAML reads them as
            // numbers (7, 31, 12, 1000.0). The name is what the file says.
            YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) => self.written(node).to_string(),
            _ => {
                self.problem(node, format!("`{what}` must be a string, got {}", kind(node)));
                return None;
            }
        };
        if text.trim().is_empty() {
            self.problem(node, format!("`{what}` must not be empty"));
            return None;
        }
        Some(text)
    }

    fn boolean(&mut self, node: &Node<'_>, what: &str) -> Option<bool> {
        match &node.data {
            YamlData::Value(Scalar::Boolean(b)) => Some(*b),
            _ => {
                self.problem(node, format!("`{what}` must be true or false, got {}", kind(node)));
                None
            }
        }
    }

    fn duration(&mut self, node: &Node<'_>, what: &str) -> Option<Duration> {
        let parsed = match &node.data {
            YamlData::Value(Scalar::Integer(i)) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
            YamlData::Value(Scalar::String(s)) => duration::parse(s),
            _ => Err(format!("must be a duration such as 30s, 5m or 1h, got {}", kind(node))),
        };
        match parsed.and_then(check_ttl) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(node, format!("`{what}`: {e}"));
                None
            }
        }
    }
}

fn kind(node: &Node<'_>) -> String {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing (null)".into(),
        YamlData::Value(Scalar::Boolean(b)) => format!("the boolean {b}"),
        YamlData::Value(Scalar::Integer(i)) => format!("the number {i}"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("the number {f}"),
        YamlData::Value(Scalar::String(s)) => format!("the string {s:?}"),
        YamlData::Sequence(_) => "a list".into(),
        YamlData::Mapping(_) => "a mapping".into(),
        _ => "an unsupported YAML value".into(),
    }
}

/// "did you mean" for near-miss keys such as `versionstage` or `with_decryption`.
fn suggestion(key: &str, allowed: &[&str]) -> String {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    allowed
        .iter()
        .find(|a| norm(a) == norm(key))
        .map(|a| format!(" (did you mean `{a}`?)"))
        .unwrap_or_default()
}
