//! Entries of the config file that load the same items, as `check` reports them. An item is
//! cached once, with one policy: a named entry's (`id`, `name`; the first if it is named
//! twice), else the first listing's in the file (`path`, `filter`) that loaded it. Filters
//! are matched by AWS, so two of them may overlap without the file saying so; `name`
//! filters match by prefix, which is checked here.

use super::file::{FilterItem, ParameterTarget, PrefetchList, SecretVersion};

impl PrefetchList {
    /// One line per pair of entries that load (or may load) the same items, saying whose
    /// policy those items take. Empty when no entries overlap.
    pub fn overlaps(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, a) in self.secrets.iter().enumerate() {
            for b in &self.secrets[i + 1..] {
                if a.id == b.id && a.version == b.version && a.role == b.role {
                    out.push(format!("secret {} is listed twice: the first entry's settings apply", a.id));
                }
            }
            let current = a.version == SecretVersion::Current;
            for f in self.secret_filters.iter().filter(|f| current && f.role == a.role) {
                if name_prefixes(f).any(|p| a.id.to_lowercase().starts_with(&p.to_lowercase())) {
                    out.push(format!("secret {} also matches {f}: the named entry's settings apply", a.id));
                }
            }
        }
        for (i, a) in self.secret_filters.iter().enumerate() {
            for b in self.secret_filters[i + 1..].iter().filter(|b| b.role == a.role) {
                out.push(format!(
                    "{a} and {b} may match the same secrets: such a secret takes one place, with the settings of {a}"
                ));
            }
        }
        let targets: Vec<_> = self.parameters.iter().map(|p| (&p.target, p.with_decryption, &p.role)).collect();
        for (i, &(a, decrypt, role)) in targets.iter().enumerate() {
            for &(b, _, _) in targets[i + 1..].iter().filter(|(_, d, r)| *d == decrypt && *r == role) {
                let line = match (a, b) {
                    (ParameterTarget::Name(x), ParameterTarget::Name(y)) if x == y => {
                        format!("parameter {x} is listed twice: the first entry's settings apply")
                    }
                    (ParameterTarget::Name(n), ParameterTarget::Path(p)) | (ParameterTarget::Path(p), ParameterTarget::Name(n))
                        if super::file::parameter_under(p, n) =>
                    {
                        format!("parameter {n} is also under path {p}: the named entry's settings apply")
                    }
                    (ParameterTarget::Path(x), ParameterTarget::Path(y))
                        if x == y || super::file::parameter_under(x, y) || super::file::parameter_under(y, x) =>
                    {
                        format!("paths {x} and {y} overlap: a parameter under both takes the settings of {x}")
                    }
                    _ => continue,
                };
                out.push(line);
            }
        }
        out
    }
}

/// The prefixes a filter's `name` key matches (negated values say nothing).
fn name_prefixes(f: &FilterItem) -> impl Iterator<Item = &str> {
    f.filters
        .iter()
        .filter(|k| k.key == "name")
        .flat_map(|k| k.values.iter().filter(|v| !v.starts_with('!')).map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::super::file::parse;

    #[test]
    fn entries_that_load_the_same_items_are_reported_with_who_wins() {
        let text = "secrets:\n  - id: prod/db\n  - id: prod/db\n  - filter: {name: Prod/}\n    ttl: 1h\n  - filter: {tag-key: app}\n  - filter: {tag-key: app}\n    roleArn: arn:aws:iam::123456789012:role/r\nparameters:\n  - name: /app/a\n  - path: /app\n  - path: /app/deep\n  - path: /application\n  - name: /app/b\n    withDecryption: true\n";
        let overlaps = parse(text).unwrap().overlaps();
        assert_eq!(
            overlaps,
            [
                "secret prod/db is listed twice: the first entry's settings apply",
                "secret prod/db also matches filter name=Prod/: the named entry's settings apply",
                "secret prod/db also matches filter name=Prod/: the named entry's settings apply",
                "filter name=Prod/ and filter tag-key=app may match the same secrets: such a secret takes one place, with the settings of filter name=Prod/",
                "parameter /app/a is also under path /app: the named entry's settings apply",
                "paths /app and /app/deep overlap: a parameter under both takes the settings of /app",
            ]
        );
        assert!(parse("secrets:\n  - id: a\n  - filter: {name: b}\n").unwrap().overlaps().is_empty());
    }
}
