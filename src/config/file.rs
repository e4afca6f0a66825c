//! The prefetch list (`config.yaml`, SPEC §4): YAML text → typed items, with every problem
//! reported at once and each one pinned to a line and column of the file.
//!
//! The walk is hand-written over saphyr's position-marked nodes rather than serde, because serde
//! stops at the first error and the contract is "every problem listed at once".

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::duration;

/// What the file asks for. Built only when the whole file is valid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    /// Default TTL for both sources; environment variables win over it.
    pub ttl: Option<Duration>,
    pub secrets: Vec<SecretItem>,
    pub parameters: Vec<ParameterItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecretItem {
    /// Name, full ARN or partial ARN.
    pub id: String,
    pub version: SecretVersion,
    pub ttl: Option<Duration>,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretVersion {
    Current,
    Stage(String),
    Id(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParameterItem {
    pub target: ParameterTarget,
    pub with_decryption: bool,
    pub ttl: Option<Duration>,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterTarget {
    /// One parameter; may carry a `:version` or `:label` selector.
    Name(String),
    /// Every parameter under this path, recursively.
    Path(String),
}

/// One thing wrong with the file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

type Node<'a> = MarkedYaml<'a>;

/// A config file lists ids; one larger than this is a mistake (or something else entirely).
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// Reads the config file from disk, treating "not found" as absent. It is opened without
/// blocking (a FIFO would otherwise wait in `open` for a writer, forever), must be a regular
/// file (not a FIFO, device or directory), and at most `MAX_FILE_BYTES + 1` bytes are
/// ever read (`/dev/zero` or a huge file costs nothing).
pub fn read_file_from_disk(path: &std::path::Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else {
            "a device or socket"
        };
        return Err(std::io::Error::other(format!("{what}, not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!("larger than {} bytes (1 MiB)", MAX_FILE_BYTES)));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| std::io::Error::other("not UTF-8 text"))
}

/// Parses the whole file; on failure returns every problem found, in file order.
pub fn parse(text: &str) -> Result<FileConfig, Vec<FileProblem>> {
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![FileProblem {
            line: 1,
            column: 1,
            message: format!("the file is {} bytes; the limit is {MAX_FILE_BYTES} (1 MiB)", text.len()),
        }]);
    }
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            return Err(vec![FileProblem {
                line: e.marker().line(),
                column: e.marker().col() + 1,
                message: format!("invalid YAML: {}", e.info()),
            }]);
        }
    };
    let mut walk = Walk::default();
    let config = match docs.as_slice() {
        [] => FileConfig::default(),
        [root] => walk.root(root),
        [_, second, ..] => {
            walk.problem(second, "the file holds more than one YAML document; expected one".into());
            FileConfig::default()
        }
    };
    if walk.problems.is_empty() {
        Ok(config)
    } else {
        walk.problems.sort_by_key(|p| (p.line, p.column));
        Err(walk.problems)
    }
}

#[derive(Default)]
struct Walk {
    problems: Vec<FileProblem>,
}

const ROOT_KEYS: &[&str] = &["ttl", "secrets", "parameters"];
const SECRET_KEYS: &[&str] = &["id", "versionStage", "versionId", "ttl", "required"];
const PARAMETER_KEYS: &[&str] = &["name", "path", "withDecryption", "ttl", "required"];

impl Walk {
    fn problem(&mut self, node: &Node<'_>, message: String) {
        self.problems.push(FileProblem {
            line: node.span.start.line(),
            column: node.span.start.col() + 1,
            message,
        });
    }

    fn root(&mut self, root: &Node<'_>) -> FileConfig {
        let mut config = FileConfig::default();
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
                        if let Some(s) = self.secret(item) {
                            config.secrets.push(s);
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

    fn secret(&mut self, node: &Node<'_>) -> Option<SecretItem> {
        let entries = self.mapping_with(node, "a secrets entry", SECRET_KEYS)?;
        let mut id = None;
        let (mut stage, mut version_id) = (None, None);
        let (mut ttl, mut required, mut ok) = (None, false, true);
        for (key, value) in &entries {
            match *key {
                "id" => id = self.text(value, "id"),
                "versionStage" => stage = Some((self.text(value, "versionStage"), *value)),
                "versionId" => version_id = Some((self.text(value, "versionId"), *value)),
                "ttl" => ttl = self.duration(value, "ttl"),
                "required" => required = self.boolean(value, "required").unwrap_or(false),
                _ => unreachable!(),
            }
        }
        if id.is_none() && !entries.iter().any(|(k, _)| *k == "id") {
            self.problem(node, "secrets entry has no `id` (a secret name or ARN)".into());
            ok = false;
        }
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
        Some(SecretItem {
            id: id?,
            version,
            ttl,
            required,
        })
        .filter(|_| ok)
    }

    fn parameter(&mut self, node: &Node<'_>) -> Option<ParameterItem> {
        let entries = self.mapping_with(node, "a parameters entry", PARAMETER_KEYS)?;
        let (mut name, mut path) = (None, None);
        let (mut with_decryption, mut ttl, mut required) = (false, None, false);
        for (key, value) in &entries {
            match *key {
                "name" => name = Some((self.text(value, "name"), *value)),
                "path" => path = Some((self.text(value, "path"), *value)),
                "withDecryption" => with_decryption = self.boolean(value, "withDecryption").unwrap_or(false),
                "ttl" => ttl = self.duration(value, "ttl"),
                "required" => required = self.boolean(value, "required").unwrap_or(false),
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
            // Secret names like `2024` are legal; YAML reads them as numbers.
            YamlData::Value(Scalar::Integer(i)) => i.to_string(),
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

/// TTLs anywhere are bounded to one day: longer would keep a rotated secret too long.
pub fn check_ttl(d: Duration) -> Result<Duration, String> {
    if d > super::MAX_TTL {
        Err(format!("{} is above the maximum of 1d", duration::display(d)))
    } else {
        Ok(d)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let text = "ttl: 5m\nsecrets:\n  - id: prod/db/credentials\n    versionStage: AWSCURRENT\n    ttl: 1h\n    required: true\n  - id: arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf\n    versionId: abc\nparameters:\n  - name: /prod/app/flags\n    withDecryption: true\n  - path: /prod/app/\n";
        let c = parse(text).unwrap();
        assert_eq!(c.ttl, Some(Duration::from_secs(300)));
        assert_eq!(c.secrets.len(), 2);
        assert_eq!(c.secrets[0].version, SecretVersion::Current);
        assert_eq!(c.secrets[0].ttl, Some(Duration::from_secs(3600)));
        assert!(c.secrets[0].required);
        assert_eq!(c.secrets[1].version, SecretVersion::Id("abc".into()));
        assert_eq!(c.parameters[0].target, ParameterTarget::Name("/prod/app/flags".into()));
        assert!(c.parameters[0].with_decryption);
        assert_eq!(c.parameters[1].target, ParameterTarget::Path("/prod/app/".into()));
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_configs() {
        assert_eq!(parse("").unwrap(), FileConfig::default());
        assert_eq!(parse("# nothing\n").unwrap(), FileConfig::default());
        assert_eq!(parse("secrets:\n").unwrap(), FileConfig::default());
    }

    #[test]
    fn every_problem_is_listed_with_its_position() {
        let text = "ttl: 5x\nsecret:\n  - id: a\nsecrets:\n  - id: b\n    versionstage: AWSPREVIOUS\n  - ttl: 10s\n  - id: c\n    required: yes please\nparameters:\n  - name: /a\n    path: /b\n";
        let problems = parse(text).unwrap_err();
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 6, "{lines:#?}");
        assert!(
            lines[0].starts_with("line 1, column 6: `ttl`: invalid duration \"5x\""),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("line 2, column 1: unknown key `secret`"), "{}", lines[1]);
        assert!(
            lines[2].contains("line 6, column 5: unknown key `versionstage`") && lines[2].contains("did you mean `versionStage`"),
            "{}",
            lines[2]
        );
        assert!(lines[3].starts_with("line 7, column 5: secrets entry has no `id`"), "{}", lines[3]);
        assert!(
            lines[4].starts_with("line 9, column 15: `required` must be true or false, got the string \"yes please\""),
            "{}",
            lines[4]
        );
        assert!(
            lines[5].starts_with("line 12, column 11: give `name` or `path`, not both"),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let problems = parse("secrets: prod/db\nparameters:\n  - name: [a, b]\n").unwrap_err();
        assert_eq!(problems.len(), 2);
        assert_eq!(
            problems[0].to_string(),
            "line 1, column 10: `secrets` must be a list, got the string \"prod/db\""
        );
        assert_eq!(problems[1].to_string(), "line 3, column 11: `name` must be a string, got a list");
    }

    #[test]
    fn yaml_syntax_errors_have_a_position() {
        let problems = parse("secrets:\n  - id: a\n   bad: [\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.starts_with("invalid YAML"), "{}", problems[0]);
        assert!(problems[0].line >= 2, "{}", problems[0]);
    }

    #[test]
    fn ttl_above_a_day_is_rejected_and_path_must_be_absolute() {
        let problems = parse("ttl: 2d\nparameters:\n  - path: prod/\n").unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("above the maximum of 1d"));
        assert!(problems[1].message.contains("must start with `/`"));
    }

    #[test]
    fn duplicate_keys_are_a_yaml_error() {
        let problems = parse("ttl: 5m\nttl: 6m\n").unwrap_err();
        assert!(problems[0].message.contains("duplicated key"), "{}", problems[0]);
    }
}
