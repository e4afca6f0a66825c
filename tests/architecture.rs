//! `src/` reads as the data flow: every `crate::` (and `super::` reaching the crate root) path
//! in non-test code names a module at or below the importing one in `LAYERS`, so no import
//! runs against the flow and the top-level modules have no cycle; only `telemetry` names the
//! OpenTelemetry crates; and no file of `src/` or `devtools/src/` carries more than
//! `MAX_LINES` lines of non-test code. Run alone: `cargo test --test architecture`.

use std::fs;
use std::path::{Path, PathBuf};

/// Bottom first. A module may use itself and anything before it.
const LAYERS: &[&str] = &[
    "escape",
    "config",
    "key",
    "accept",
    "lambda",
    "telemetry",
    "counters",
    "upstream",
    "cache",
    "http",
    "lifecycle",
    "app",
];

/// Files that wire everything (the crate root and the binary) are outside the layers.
const ROOTS: &[&str] = &["lib", "main"];

const MAX_LINES: usize = 450;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`: `cache/flight.rs` → `["cache", "flight"]`,
/// `cache/mod.rs` → `["cache"]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code before the file's `#[cfg(test)] mod tests` (or the whole file when it is a test
/// module itself: `tests.rs`, declared under `#[cfg(test)]`), without comments and strings.
fn non_test_code(rel: &Path, text: &str) -> String {
    if rel.file_name().is_some_and(|f| f == "tests.rs") {
        return String::new();
    }
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    strip_comments_and_strings(code)
}

fn strip_comments_and_strings(code: &str) -> String {
    let c: Vec<char> = code.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    // Skips to just past `end` (not escaped when `escapes`), keeping the newlines in between.
    let skip_to = |i: &mut usize, out: &mut String, end: &[char], escapes: bool| {
        while *i < c.len() {
            if escapes && c[*i] == '\\' {
                *i += 2;
                continue;
            }
            if c[*i..].starts_with(end) {
                *i += end.len();
                return;
            }
            if c[*i] == '\n' {
                out.push('\n');
            }
            *i += 1;
        }
    };
    while i < c.len() {
        let prev = if i == 0 { ' ' } else { c[i - 1] };
        if c[i..].starts_with(&['/', '/']) {
            skip_to(&mut i, &mut out, &['\n'], false);
            out.push('\n');
        } else if c[i..].starts_with(&['/', '*']) {
            i += 2;
            skip_to(&mut i, &mut out, &['*', '/'], false);
        } else if c[i] == 'r' && (!ident(prev) || prev == 'b') && matches!(c.get(i + 1), Some('#' | '"')) {
            let hashes = c[i + 1..].iter().take_while(|ch| **ch == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            i += hashes + 2;
            let end: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            skip_to(&mut i, &mut out, &end, false);
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            skip_to(&mut i, &mut out, &['"'], true);
            out.push_str("\"\"");
        } else if c[i] == '\'' && (c.get(i + 2) == Some(&'\'') || c.get(i + 1) == Some(&'\\')) {
            // A char literal ('"', '\'', '\n'); a lifetime has no closing quote.
            i += 1;
            skip_to(&mut i, &mut out, &['\''], true);
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The top-level module each path in `code` names: `crate::x…`, or `super::…` chains that
/// climb out of `module` to the crate root.
fn imported_top_modules(module: &[String], code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        assert!(
            !line.contains("crate::{"),
            "line {}: write `use crate::module::…` per module so this check can read it",
            n + 1
        );
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < line.len() {
            let rest = &line[i..];
            let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':');
            if boundary && rest.starts_with("crate::") {
                let name: String = rest["crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push((n + 1, name));
                i += "crate::".len();
            } else if boundary && rest.starts_with("super::") {
                let mut depth = 0;
                let mut tail = rest;
                while let Some(t) = tail.strip_prefix("super::") {
                    depth += 1;
                    tail = t;
                }
                if depth >= module.len() {
                    let name: String = tail.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    found.push((n + 1, name));
                }
                i += depth * "super::".len();
            } else {
                i += rest.chars().next().unwrap().len_utf8();
            }
        }
    }
    found
}

#[test]
fn imports_follow_the_data_flow_and_files_stay_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut seen_layers = std::collections::BTreeSet::new();
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let module = module_path(rel);
        let top = module[0].as_str();
        let text = fs::read_to_string(path).unwrap();
        let code = non_test_code(rel, &text);
        let lines = code.lines().count();
        if lines > MAX_LINES {
            wrong.push(format!("{}: {lines} lines of non-test code (at most {MAX_LINES})", rel.display()));
        }
        if ROOTS.contains(&top) {
            continue;
        }
        if top != "telemetry" && code.contains("opentelemetry") {
            wrong.push(format!("{}: names OpenTelemetry, which only `telemetry` does", rel.display()));
        }
        let Some(layer) = LAYERS.iter().position(|l| *l == top) else {
            wrong.push(format!("{}: module `{top}` is not in LAYERS", rel.display()));
            continue;
        };
        seen_layers.insert(top.to_string());
        for (line, dep) in imported_top_modules(&module, &code) {
            match LAYERS.iter().position(|l| *l == dep) {
                Some(d) if d <= layer => {}
                Some(_) => wrong.push(format!("{}:{line}: `{top}` uses `{dep}`, which is above it", rel.display())),
                None => wrong.push(format!("{}:{line}: `{top}` uses `crate::{dep}`, not a layer", rel.display())),
            }
        }
    }
    let missing: Vec<_> = LAYERS.iter().filter(|l| !seen_layers.contains(**l)).collect();
    assert!(missing.is_empty(), "LAYERS names modules that do not exist: {missing:?}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn devtools_files_stay_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("devtools/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let too_long: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap();
            let lines = non_test_code(rel, &fs::read_to_string(path).unwrap()).lines().count();
            (lines > MAX_LINES).then(|| {
                format!(
                    "devtools/src/{}: {lines} lines of non-test code (at most {MAX_LINES})",
                    rel.display()
                )
            })
        })
        .collect();
    assert!(too_long.is_empty(), "{}", too_long.join("\n"));
}

#[test]
fn the_check_sees_what_it_must() {
    let module = |p: &str| module_path(Path::new(p));
    assert_eq!(module("cache/flight.rs"), ["cache", "flight"]);
    assert_eq!(module("cache/mod.rs"), ["cache"]);
    assert_eq!(module("accept.rs"), ["accept"]);
    let code = strip_comments_and_strings(
        "use crate::cache::Cache; // crate::app\n/* crate::http */ let s = \"crate::lifecycle\\\"\";\n\
         fn f<'a>(q: char) -> crate::upstream::Fetched { let _ = ('\"', r#\"crate::app\"#); super::super::metrics::X; super::Sibling }\n",
    );
    let deps = imported_top_modules(&module("cache/flight.rs"), &code);
    assert_eq!(
        deps,
        [(1, "cache".to_string()), (3, "upstream".to_string()), (3, "metrics".to_string())]
    );
    assert!(imported_top_modules(&module("cache/flight.rs"), "super::Cache").is_empty());
    let test_module = "use crate::app::x;\n#[cfg(test)]\nmod tests {\n    use crate::app::y;\n}\n";
    assert_eq!(non_test_code(Path::new("cache/mod.rs"), test_module).lines().count(), 1);
    assert!(non_test_code(Path::new("cache/tests.rs"), "use crate::app::x;").is_empty());
}
