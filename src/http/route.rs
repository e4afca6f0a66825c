//! Request line → what to do, as a pure function: path to endpoint, then the query string to a
//! typed request. Strict: unknown, repeated or conflicting parameters are a 400 naming them.

use std::borrow::Cow;

use super::error::ApiError;
use crate::key::{KeyRef, SelectorKind, Service, split_parameter_selector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Ping,
    Status,
    Secret,
    Parameter,
    /// `/v1/<secretId>`: the raw (still percent-encoded) id.
    SecretPath(&'a str),
}

pub fn endpoint(path: &str) -> Option<Endpoint<'_>> {
    match path {
        "/ping" => Some(Endpoint::Ping),
        "/status" => Some(Endpoint::Status),
        "/secretsmanager/get" | "/secretsmanager/get/" => Some(Endpoint::Secret),
        "/systemsmanager/parameters/get" | "/systemsmanager/parameters/get/" => Some(Endpoint::Parameter),
        _ => path.strip_prefix("/v1/").filter(|id| !id.is_empty()).map(Endpoint::SecretPath),
    }
}

/// A validated read request. Borrowed from the query string unless percent-decoding copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read<'a> {
    pub service: Service,
    pub id: Cow<'a, str>,
    pub kind: SelectorKind,
    pub selector: Cow<'a, str>,
    pub decrypt: bool,
    pub refresh_now: bool,
    /// `roleArn`: the IAM role to read through; empty for the function's own.
    pub role: Cow<'a, str>,
}

impl Read<'_> {
    pub fn key(&self) -> KeyRef<'_> {
        match self.service {
            Service::SecretsManager => KeyRef::secret(&self.id, self.kind, &self.selector).with_role(&self.role),
            Service::Ssm => KeyRef {
                service: Service::Ssm,
                id: &self.id,
                kind: self.kind,
                selector: &self.selector,
                decrypt: self.decrypt,
                role: &self.role,
            },
        }
    }
}

const SECRET_PARAMS: &[&str] = &["secretId", "versionId", "versionStage", "refreshNow", "roleArn"];
const SECRET_PATH_PARAMS: &[&str] = &["versionId", "versionStage", "refreshNow", "roleArn"];
const PARAMETER_PARAMS: &[&str] = &["name", "version", "label", "withDecryption", "refreshNow", "roleArn"];

/// Query pairs, decoded, each key at most once and all from `allowed`.
struct Query<'a> {
    allowed: &'static [&'static str],
    /// One slot per allowed key: no allocation per request.
    values: [Option<Cow<'a, str>>; MAX_PARAMS],
}

/// The most keys any route allows.
const MAX_PARAMS: usize = 6;

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>, allowed: &'static [&'static str]) -> Result<Query<'a>, ApiError> {
        debug_assert!(allowed.len() <= MAX_PARAMS);
        let mut values: [Option<Cow<'a, str>>; MAX_PARAMS] = Default::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let Some(slot) = allowed.iter().position(|a| *a == k) else {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {:?} (allowed: {})",
                    truncate(&k),
                    allowed.join(", ")
                )));
            };
            if values[slot].replace(v).is_some() {
                return Err(ApiError::BadRequest(format!("query parameter {k} given more than once")));
            }
        }
        Ok(Query { allowed, values })
    }

    fn take(&mut self, key: &str) -> Option<Cow<'a, str>> {
        let slot = self.allowed.iter().position(|a| *a == key)?;
        self.values[slot].take()
    }

    fn flag(&mut self, key: &str) -> Result<bool, ApiError> {
        match self.take(key) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(v) => Err(ApiError::BadRequest(format!("{key} must be true or false, got {:?}", truncate(&v)))),
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn required<'a>(value: Option<Cow<'a, str>>, name: &str) -> Result<Cow<'a, str>, ApiError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::BadRequest(format!("query parameter {name} is required"))),
    }
}

/// `roleArn`, checked to be an IAM role ARN; empty when absent.
fn role<'a>(q: &mut Query<'a>) -> Result<Cow<'a, str>, ApiError> {
    match q.take("roleArn") {
        None => Ok(Cow::Borrowed("")),
        Some(arn) => match crate::config::role::check_role_arn(&arn) {
            Ok(()) => Ok(arn),
            Err(why) => Err(ApiError::BadRequest(format!("roleArn {:?}: {why}", truncate(&arn)))),
        },
    }
}

fn secret_version<'a>(q: &mut Query<'a>) -> Result<(SelectorKind, Cow<'a, str>), ApiError> {
    match (q.take("versionId"), q.take("versionStage")) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest("give versionId or versionStage, not both".into())),
        (Some(id), None) => Ok((SelectorKind::VersionId, required(Some(id), "versionId")?)),
        (None, Some(stage)) => Ok((SelectorKind::VersionStage, required(Some(stage), "versionStage")?)),
        (None, None) => Ok((SelectorKind::Default, Cow::Borrowed(""))),
    }
}

pub fn secret(query: Option<&str>) -> Result<Read<'_>, ApiError> {
    let mut q = Query::parse(query, SECRET_PARAMS)?;
    let id = required(q.take("secretId"), "secretId")?;
    secret_read(id, q)
}

pub fn secret_path<'a>(raw_id: &'a str, query: Option<&'a str>) -> Result<Read<'a>, ApiError> {
    let id = percent_encoding::percent_decode_str(raw_id)
        .decode_utf8()
        .map_err(|_| ApiError::BadRequest("secret id in the path is not valid UTF-8".into()))?;
    secret_read(id, Query::parse(query, SECRET_PATH_PARAMS)?)
}

/// A Secrets Manager read of `id` with the version selector and `refreshNow` left in `q`.
fn secret_read<'a>(id: Cow<'a, str>, mut q: Query<'a>) -> Result<Read<'a>, ApiError> {
    let (kind, selector) = secret_version(&mut q)?;
    let refresh_now = q.flag("refreshNow")?;
    let role = role(&mut q)?;
    Ok(Read {
        service: Service::SecretsManager,
        id,
        kind,
        selector,
        decrypt: false,
        refresh_now,
        role,
    })
}

pub fn parameter(query: Option<&str>) -> Result<Read<'_>, ApiError> {
    let mut q = Query::parse(query, PARAMETER_PARAMS)?;
    let name = required(q.take("name"), "name")?;
    let decrypt = q.flag("withDecryption")?;
    let refresh_now = q.flag("refreshNow")?;
    let role = role(&mut q)?;
    let explicit = match (q.take("version"), q.take("label")) {
        (Some(_), Some(_)) => return Err(ApiError::BadRequest("give version or label, not both".into())),
        (Some(v), None) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Some((SelectorKind::Version, v)),
        (Some(v), None) => {
            return Err(ApiError::BadRequest(format!(
                "version must be a positive whole number, got {:?}",
                truncate(&v)
            )));
        }
        (None, Some(l)) => Some((SelectorKind::Label, required(Some(l), "label")?)),
        (None, None) => None,
    };
    // The name may carry the selector itself (`/a/b:3`); it must not carry two.
    let (kind, id, selector) = match name {
        Cow::Borrowed(n) => {
            let (id, kind, sel) = split_parameter_selector(n);
            (kind, Cow::Borrowed(id), Cow::Borrowed(sel))
        }
        Cow::Owned(n) => {
            let (id, kind, sel) = split_parameter_selector(&n);
            (kind, Cow::Owned(id.to_string()), Cow::Owned(sel.to_string()))
        }
    };
    let (kind, selector) = match (kind, explicit) {
        (SelectorKind::Default, Some((k, s))) => (k, s),
        (_, Some(_)) => {
            return Err(ApiError::BadRequest(
                "the name already carries a :version or :label selector".into(),
            ));
        }
        (k, None) => (k, selector),
    };
    if id.is_empty() {
        return Err(ApiError::BadRequest("query parameter name is required".into()));
    }
    Ok(Read {
        service: Service::Ssm,
        id,
        kind,
        selector,
        decrypt,
        refresh_now,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("/ping"), Some(Endpoint::Ping));
        assert_eq!(endpoint("/secretsmanager/get/"), Some(Endpoint::Secret));
        assert_eq!(endpoint("/systemsmanager/parameters/get"), Some(Endpoint::Parameter));
        assert_eq!(endpoint("/v1/prod/db"), Some(Endpoint::SecretPath("prod/db")));
        assert_eq!(endpoint("/v1/"), None);
        assert_eq!(endpoint("/secretsmanager"), None);
    }

    #[test]
    fn secret_queries() {
        let r = secret(Some("secretId=prod%2Fdb&versionStage=AWSPREVIOUS")).unwrap();
        assert_eq!(r.id, "prod/db");
        assert_eq!((r.kind, r.selector.as_ref()), (SelectorKind::VersionStage, "AWSPREVIOUS"));
        let r = secret(Some("secretId=a&refreshNow=TRUE")).unwrap();
        assert!(r.refresh_now);
        assert!(matches!(r.id, Cow::Borrowed(_)), "undecoded ids are not copied");
    }

    #[test]
    fn secret_query_errors_name_the_problem() {
        let err = |q| secret(Some(q)).unwrap_err().to_string();
        assert_eq!(secret(None).unwrap_err().to_string(), "query parameter secretId is required");
        assert_eq!(err("secretId="), "query parameter secretId is required");
        assert_eq!(
            err("secretId=a&versionId=1&versionStage=b"),
            "give versionId or versionStage, not both"
        );
        assert!(err("secretId=a&foo=1").starts_with("unknown query parameter \"foo\""));
        assert_eq!(err("secretId=a&secretId=b"), "query parameter secretId given more than once");
        assert_eq!(
            err("secretId=a&refreshNow=maybe"),
            "refreshNow must be true or false, got \"maybe\""
        );
    }

    #[test]
    fn role_arns_are_checked_and_keyed() {
        let arn = "arn:aws:iam::123456789012:role/team/reader";
        let r = secret(Some("secretId=a&roleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fteam%2Freader")).unwrap();
        assert_eq!(r.key().role, arn);
        assert_eq!(secret(Some("secretId=a")).unwrap().key().role, "");
        let p = parameter(Some("name=/a&roleArn=arn:aws:iam::123456789012:role/reader")).unwrap();
        assert_eq!(p.key().role, "arn:aws:iam::123456789012:role/reader");
        assert_eq!(
            secret_path("a", Some("roleArn=arn:aws:iam::123456789012:role/r"))
                .unwrap()
                .key()
                .role,
            "arn:aws:iam::123456789012:role/r"
        );
        for bad in [
            "x",
            "arn:aws:iam::12345:role/r",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::123456789012:user/u",
            "",
        ] {
            let err = secret(Some(&format!("secretId=a&roleArn={bad}"))).unwrap_err();
            assert!(err.to_string().starts_with("roleArn"), "{bad}: {err}");
        }
    }

    #[test]
    fn path_ids_are_percent_decoded() {
        let r = secret_path("prod%2Fdb", Some("versionId=v1")).unwrap();
        assert_eq!(r.id, "prod/db");
        assert_eq!(r.kind, SelectorKind::VersionId);
        assert!(secret_path("%ff", None).is_err());
        assert!(secret_path("a", Some("secretId=b")).is_err());
    }

    #[test]
    fn parameter_selectors_from_name_or_query() {
        let r = parameter(Some("name=/a/b:3&withDecryption=true")).unwrap();
        assert_eq!(
            (r.id.as_ref(), r.kind, r.selector.as_ref(), r.decrypt),
            ("/a/b", SelectorKind::Version, "3", true)
        );
        let r = parameter(Some("name=%2Fa%2Fb&label=prod")).unwrap();
        assert_eq!((r.id.as_ref(), r.kind, r.selector.as_ref()), ("/a/b", SelectorKind::Label, "prod"));
        assert_eq!(
            parameter(Some("name=/a:3&version=4")).unwrap_err().to_string(),
            "the name already carries a :version or :label selector"
        );
        assert_eq!(
            parameter(Some("name=/a&version=x")).unwrap_err().to_string(),
            "version must be a positive whole number, got \"x\""
        );
        assert_eq!(
            parameter(Some("name=/a&version=1&label=x")).unwrap_err().to_string(),
            "give version or label, not both"
        );
        assert_eq!(
            parameter(Some("name=/a&withDecryption=yes")).unwrap_err().to_string(),
            "withDecryption must be true or false, got \"yes\""
        );
    }
}
