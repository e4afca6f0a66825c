//! The prefetch list (`config.yaml`, README "Config file"): YAML text → typed items, with every problem
//! reported at once and each one pinned to a line and column of the file.
//!
//! The walk (`walk.rs`) is hand-written over saphyr's position-marked nodes rather than serde,
//! because serde stops at the first error and the contract is "every problem listed at once".

use std::fmt;
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml};

use super::duration;

/// What the file asks for. Built only when the whole file is valid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefetchList {
    /// Default TTL for both sources; environment variables win over it.
    pub ttl: Option<Duration>,
    pub secrets: Vec<SecretItem>,
    /// Secrets chosen by `filter` instead of `id`: every match is prefetched.
    pub secret_filters: Vec<FilterItem>,
    pub parameters: Vec<ParameterItem>,
}

impl PrefetchList {
    /// The distinct roles entries name (`roleArn`), the function's own left out.
    pub fn roles(&self) -> Vec<&str> {
        let mut roles: Vec<&str> = self
            .secrets
            .iter()
            .map(|s| s.role.as_str())
            .chain(self.secret_filters.iter().map(|f| f.role.as_str()))
            .chain(self.parameters.iter().map(|p| p.role.as_str()))
            .filter(|r| !r.is_empty())
            .collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecretItem {
    /// Name, full ARN or partial ARN.
    pub id: String,
    pub version: SecretVersion,
    pub ttl: Option<Duration>,
    pub required: bool,
    /// `roleArn`: read through this IAM role; empty for the function's own.
    pub role: String,
}

/// `secrets: - filter: {tag-key: app, tag-value: shop}`: BatchGetSecretValue's `Filters`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterItem {
    pub filters: Vec<SecretFilter>,
    pub ttl: Option<Duration>,
    /// At least one secret must match, and every match must load, for Init to succeed.
    pub required: bool,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFilter {
    /// One of `FILTER_KEYS`.
    pub key: &'static str,
    /// Up to 10; a leading `!` negates, as in the API.
    pub values: Vec<String>,
}

impl fmt::Display for FilterItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("filter ")?;
        for (i, filter) in self.filters.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}={}", filter.key, filter.values.join("|"))?;
        }
        Ok(())
    }
}

/// The keys BatchGetSecretValue's `Filters` take (without `all`).
pub const FILTER_KEYS: &[&str] = &["name", "tag-key", "tag-value", "description", "primary-region", "owning-service"];
/// Values per filter key, and characters per value, as the API allows.
pub(super) const MAX_FILTER_VALUES: usize = 10;
pub(super) const MAX_FILTER_VALUE: usize = 512;

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
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterTarget {
    /// One parameter; may carry a `:version` or `:label` selector.
    Name(String),
    /// Every parameter under this path, recursively.
    Path(String),
}

/// Whether parameter `name` lies under `path` as GetParametersByPath reads it: by whole path
/// segments (`/prod/app` holds `/prod/app/x`, not `/prod/application/x`).
pub fn parameter_under(path: &str, name: &str) -> bool {
    name.strip_prefix(path)
        .is_some_and(|rest| path.ends_with('/') || rest.starts_with('/'))
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
pub fn parse(text: &str) -> Result<PrefetchList, Vec<FileProblem>> {
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
    let mut walk = super::walk::Walk::new(text);
    let config = match docs.as_slice() {
        [] => PrefetchList::default(),
        [root] => walk.root(root),
        [_, second, ..] => {
            walk.problem(second, "the file holds more than one YAML document; expected one".into());
            PrefetchList::default()
        }
    };
    if walk.problems.is_empty() {
        Ok(config)
    } else {
        walk.problems.sort_by_key(|p| (p.line, p.column));
        Err(walk.problems)
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
        assert_eq!(parse("").unwrap(), PrefetchList::default());
        assert_eq!(parse("# nothing\n").unwrap(), PrefetchList::default());
        assert_eq!(parse("secrets:\n").unwrap(), PrefetchList::default());
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
    fn names_yaml_reads_as_numbers_are_kept_as_written() {
        let text = "secrets:\n  - id: 007\n  - id: 0x1F\n    versionId: 0012\n  - id: +12\n  - id: 1e3 \n  - id: \"0x1F\"\n  - filter: {name: [0017, 2.50]}\nparameters:\n  - name: 0o17\n  - name: 2024\n";
        let c = parse(text).unwrap();
        let ids: Vec<&str> = c.secrets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["007", "0x1F", "+12", "1e3", "0x1F"]);
        assert_eq!(c.secrets[1].version, SecretVersion::Id("0012".into()));
        assert_eq!(c.secret_filters[0].filters[0].values, ["0017", "2.50"]);
        let names: Vec<&ParameterTarget> = c.parameters.iter().map(|p| &p.target).collect();
        assert_eq!(
            names,
            [&ParameterTarget::Name("0o17".into()), &ParameterTarget::Name("2024".into())]
        );
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
    fn filters_and_roles() {
        let text = "secrets:\n  - filter: {tag-key: app, tag-value: [shop, cart]}\n    required: true\n    ttl: 10m\n  - filter:\n      name: prod/\n    roleArn: arn:aws:iam::123456789012:role/reader\n  - id: x\n    roleArn: arn:aws:iam::123456789012:role/reader\nparameters:\n  - name: /a\n    roleArn: arn:aws:iam::123456789012:role/other\n";
        let c = parse(text).unwrap();
        assert_eq!(c.secret_filters.len(), 2);
        let f = &c.secret_filters[0];
        assert_eq!(
            f.filters,
            vec![
                SecretFilter {
                    key: "tag-key",
                    values: vec!["app".into()]
                },
                SecretFilter {
                    key: "tag-value",
                    values: vec!["shop".into(), "cart".into()]
                },
            ]
        );
        assert!(f.required);
        assert_eq!(f.ttl, Some(Duration::from_secs(600)));
        assert_eq!(f.role, "");
        assert_eq!(f.to_string(), "filter tag-key=app, tag-value=shop|cart");
        assert_eq!(c.secret_filters[1].role, "arn:aws:iam::123456789012:role/reader");
        assert_eq!(c.secrets[0].role, "arn:aws:iam::123456789012:role/reader");
        assert_eq!(c.parameters[0].role, "arn:aws:iam::123456789012:role/other");
    }

    #[test]
    fn filter_and_role_problems_have_positions() {
        let text = "secrets:\n  - filter: {tag-key: app, tags: x}\n  - filter: {}\n  - id: a\n    filter: {name: a}\n  - filter: {name: a}\n    versionStage: AWSPREVIOUS\n  - filter: {name: [a, 3, [b]]}\n  - id: b\n    roleArn: arn:aws:iam::1:role/r\nparameters:\n  - name: /a\n    roleArn: nope\n";
        let problems = parse(text).unwrap_err();
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 7, "{lines:#?}");
        assert!(
            lines[0].starts_with("line 2, column 28: unknown key `tags` in a filter"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("line 3, column 13: a filter needs at least one of name, tag-key"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("line 5, column 13: give `id` or `filter`, not both"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("line 7, column 19: a `filter` entry reads each match's AWSCURRENT"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("line 8, column 27: `name` must be a string, got a list"),
            "{}",
            lines[4]
        );
        assert!(
            lines[5].starts_with("line 10, column 14: `roleArn` \"arn:aws:iam::1:role/r\" does not name a 12-digit account"),
            "{}",
            lines[5]
        );
        assert!(
            lines[6].starts_with("line 13, column 14: `roleArn` \"nope\" is not an IAM role ARN"),
            "{}",
            lines[6]
        );
    }

    #[test]
    fn duplicate_keys_are_a_yaml_error() {
        let problems = parse("ttl: 5m\nttl: 6m\n").unwrap_err();
        assert!(problems[0].message.contains("duplicated key"), "{}", problems[0]);
    }
}
