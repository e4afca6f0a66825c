//! Shared vocabulary: the identity of one upstream item (which service, which id, which
//! version, read through which IAM role). The upstream fetches by it, the cache is keyed by it,
//! metrics are labelled by its service, and a request builds a borrowed `KeyRef` so a lookup
//! allocates nothing.

use std::fmt;
use std::hash::{Hash, Hasher};

pub use crate::config::Service;

/// How the version is chosen. Secrets Manager uses `VersionId`/`VersionStage`, Parameter Store
/// `Version`/`Label`; `Default` is AWSCURRENT or the latest version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorKind {
    Default,
    VersionId,
    VersionStage,
    Version,
    Label,
}

/// Owned key, stored in the snapshot map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub service: Service,
    pub id: Box<str>,
    pub kind: SelectorKind,
    /// The selector's value; empty for `Default`.
    pub selector: Box<str>,
    /// Parameter Store `withDecryption`; always false for Secrets Manager.
    pub decrypt: bool,
    /// The IAM role the item is read through (`roleArn`); empty for the function's own. Each
    /// role is its own namespace: the same id through two roles is two entries.
    pub role: Box<str>,
}

/// Borrowed key, built per request from the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRef<'a> {
    pub service: Service,
    pub id: &'a str,
    pub kind: SelectorKind,
    pub selector: &'a str,
    pub decrypt: bool,
    /// Empty for the function's own role.
    pub role: &'a str,
}

impl Key {
    pub fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            service: self.service,
            id: &self.id,
            kind: self.kind,
            selector: &self.selector,
            decrypt: self.decrypt,
            role: &self.role,
        }
    }

    /// The same item read through `role` (empty: the function's own).
    pub fn with_role(self, role: &str) -> Key {
        Key { role: role.into(), ..self }
    }

    pub fn secret(id: &str, kind: SelectorKind, selector: &str) -> Key {
        KeyRef::secret(id, kind, selector).to_owned()
    }

    pub fn parameter(name: &str, decrypt: bool) -> Key {
        KeyRef::parameter(name, decrypt).to_owned()
    }

    /// The same item under another id (its ARN or its name).
    pub fn with_id(&self, id: &str) -> Key {
        Key {
            id: id.into(),
            ..self.clone()
        }
    }

    /// The name Parameter Store's GetParameter/GetParameters take: `name[:selector]`.
    pub fn ssm_name(&self) -> String {
        match self.kind {
            SelectorKind::Version | SelectorKind::Label => format!("{}:{}", self.id, self.selector),
            _ => self.id.to_string(),
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.as_ref()
    }
}

impl<'a> KeyRef<'a> {
    /// A Secrets Manager key; `versionStage=AWSCURRENT` is the same item as no selector.
    pub fn secret(id: &'a str, kind: SelectorKind, selector: &'a str) -> KeyRef<'a> {
        let (kind, selector) = match kind {
            SelectorKind::VersionStage if selector == "AWSCURRENT" => (SelectorKind::Default, ""),
            SelectorKind::Default => (SelectorKind::Default, ""),
            other => (other, selector),
        };
        KeyRef {
            service: Service::SecretsManager,
            id,
            kind,
            selector,
            decrypt: false,
            role: "",
        }
    }

    /// A Parameter Store key from a name that may carry `:version` or `:label` (also on ARNs).
    pub fn parameter(name: &'a str, decrypt: bool) -> KeyRef<'a> {
        let (id, kind, selector) = split_parameter_selector(name);
        KeyRef {
            service: Service::Ssm,
            id,
            kind,
            selector,
            decrypt,
            role: "",
        }
    }

    /// The same item read through `role` (empty: the function's own).
    pub fn with_role(self, role: &'a str) -> KeyRef<'a> {
        KeyRef { role, ..self }
    }

    pub fn to_owned(self) -> Key {
        Key {
            service: self.service,
            id: self.id.into(),
            kind: self.kind,
            selector: self.selector.into(),
            decrypt: self.decrypt,
            role: self.role.into(),
        }
    }
}

/// Splits `name:3` / `name:label` / `arn:aws:ssm:r:a:parameter/name:3` into name and selector.
/// Parameter names cannot contain `:`, so the selector is whatever follows the name's last `:`.
pub fn split_parameter_selector(name: &str) -> (&str, SelectorKind, &str) {
    let name_start = if name.starts_with("arn:") {
        // arn:partition:ssm:region:account:parameter/...: the name starts after the fifth colon.
        match name.match_indices(':').nth(4) {
            Some((i, _)) => i + 1,
            None => return (name, SelectorKind::Default, ""),
        }
    } else {
        0
    };
    match name[name_start..].rfind(':') {
        Some(i) => {
            let (id, sel) = (&name[..name_start + i], &name[name_start + i + 1..]);
            let kind = if !sel.is_empty() && sel.bytes().all(|b| b.is_ascii_digit()) {
                SelectorKind::Version
            } else {
                SelectorKind::Label
            };
            (id, kind, sel)
        }
        None => (name, SelectorKind::Default, ""),
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl fmt::Display for KeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)?;
        match self.kind {
            SelectorKind::Default => {}
            SelectorKind::VersionId => write!(f, " (versionId={})", self.selector)?,
            SelectorKind::VersionStage => write!(f, " (versionStage={})", self.selector)?,
            SelectorKind::Version | SelectorKind::Label => write!(f, ":{}", self.selector)?,
        }
        if self.decrypt {
            f.write_str(" (withDecryption)")?;
        }
        if !self.role.is_empty() {
            write!(f, " (role {})", self.role)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn parameter_selectors_split_on_names_and_arns() {
        assert_eq!(split_parameter_selector("/a/b"), ("/a/b", SelectorKind::Default, ""));
        assert_eq!(split_parameter_selector("/a/b:3"), ("/a/b", SelectorKind::Version, "3"));
        assert_eq!(split_parameter_selector("/a/b:prod"), ("/a/b", SelectorKind::Label, "prod"));
        let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/a/b";
        assert_eq!(split_parameter_selector(arn), (arn, SelectorKind::Default, ""));
        let with = "arn:aws:ssm:us-east-1:123456789012:parameter/a/b:7";
        assert_eq!(split_parameter_selector(with), (arn, SelectorKind::Version, "7"));
    }

    #[test]
    fn awscurrent_is_the_default_selector() {
        assert_eq!(
            KeyRef::secret("x", SelectorKind::VersionStage, "AWSCURRENT"),
            KeyRef::secret("x", SelectorKind::Default, "")
        );
        assert_ne!(
            KeyRef::secret("x", SelectorKind::VersionStage, "AWSPREVIOUS"),
            KeyRef::secret("x", SelectorKind::Default, "")
        );
    }

    #[test]
    fn borrowed_and_owned_keys_hash_alike() {
        let s = hashbrown::DefaultHashBuilder::default();
        let owned = Key::parameter("/a:3", true);
        let borrowed = KeyRef::parameter("/a:3", true);
        assert_eq!(s.hash_one(&owned), s.hash_one(borrowed));
        let mut map = hashbrown::HashMap::new();
        map.insert(owned, 1);
        assert_eq!(map.get(&borrowed), Some(&1));
        assert_eq!(map.get(&KeyRef::parameter("/a:3", false)), None);
        let role = "arn:aws:iam::123456789012:role/reader";
        assert_eq!(map.get(&KeyRef::parameter("/a:3", true).with_role(role)), None);
        map.insert(Key::parameter("/a:3", true).with_role(role), 2);
        assert_eq!(map.get(&KeyRef::parameter("/a:3", true).with_role(role)), Some(&2));
        assert_eq!(map.get(&borrowed), Some(&1));
    }
}
