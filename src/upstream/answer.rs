//! AWS answers → `Fetched`, only when they are what was asked for. An answer names the
//! requested secret or parameter, carries exactly one value of the documented type, and stays
//! within AWS's documented sizes (with a margin); the version it carries is the one a version
//! selector asked for. Anything else is an upstream fault (`FetchError::Invalid`: 502, the
//! stale value inside max-stale): it never reaches the cache. The value buffers are wiped
//! whatever the outcome, and no message here ever quotes one.

use aws_smithy_types::{Blob, DateTime};
use zeroize::{Zeroize, Zeroizing};

use super::render;
use super::{FetchError, Fetched, Revision};
use crate::key::{Key, SelectorKind};

/// `SecretString`, or `SecretBinary` decoded: AWS allows 64 KiB.
pub const MAX_SECRET_VALUE: usize = 128 * 1024;
/// A parameter's `Value`: 8 KiB in the advanced tier; an undecrypted SecureString is
/// ciphertext in base64, larger than its plaintext.
pub const MAX_PARAMETER_VALUE: usize = 32 * 1024;
/// A whole answer as read off the wire: a batch of 20 secrets of 64 KiB (base64 for binary)
/// with their metadata fits well inside.
pub const MAX_ANSWER: usize = 4 << 20;
/// Names and ARNs (a secret name is at most 512 characters, a parameter name 2 048).
const MAX_ID: usize = 2048;
/// Version ids (32–64 characters), stages, labels, types.
const MAX_TOKEN: usize = 256;
/// Staging labels on one version (AWS allows 20).
const MAX_STAGES: usize = 32;

const REFERENCE_PREFIX: &str = "/aws/reference/secretsmanager/";

/// The parts of GetSecretValue / BatchGetSecretValue's answer we use. Dropping it wipes the
/// value.
pub struct Secret {
    pub arn: Option<String>,
    pub name: Option<String>,
    pub version_id: Option<String>,
    pub secret_string: Option<String>,
    pub secret_binary: Option<Blob>,
    pub version_stages: Option<Vec<String>>,
    pub created_date: Option<DateTime>,
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.secret_string.zeroize();
        if let Some(blob) = self.secret_binary.take() {
            blob.into_inner().zeroize();
        }
    }
}

fn invalid(what: impl Into<String>) -> FetchError {
    FetchError::Invalid(what.into())
}

/// A present, non-empty field of at most `max` bytes without control characters.
fn field<'a>(value: Option<&'a str>, name: &str, max: usize) -> Result<&'a str, FetchError> {
    match value {
        None | Some("") => Err(invalid(format!("the answer has no {name}"))),
        Some(v) if v.len() > max => Err(invalid(format!("the answer's {name} is longer than {max} bytes"))),
        Some(v) if v.chars().any(char::is_control) => Err(invalid(format!("the answer's {name} has control characters"))),
        Some(v) => Ok(v),
    }
}

/// A batch result or an answer belongs to a requested secret id if the id is its name, its
/// ARN, or a partial ARN (the ARN without the six random characters Secrets Manager appends).
pub fn secret_matches(id: &str, name: Option<&str>, arn: Option<&str>) -> bool {
    Some(id) == name
        || Some(id) == arn
        || arn.is_some_and(|a| a.strip_prefix(id).is_some_and(|rest| rest.len() == 7 && rest.starts_with('-')))
}

/// Whether `arn` is the ARN of the secret named `name`: `arn:<partition>:secretsmanager:
/// <region>:<account>:secret:<name>-<6 characters>`. An answer whose ARN names another secret
/// would make that ARN an alias of this value.
pub fn secret_arn_names(arn: &str, name: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let ["arn", partition, "secretsmanager", region, account, "secret", rest] = parts[..] else {
        return false;
    };
    let suffix = rest.strip_prefix(name).and_then(|r| r.strip_prefix('-'));
    !partition.is_empty()
        && !region.is_empty()
        && !account.is_empty()
        && suffix.is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `arn` is the ARN of the parameter named `name`: `arn:<partition>:ssm:<region>:
/// <account>:parameter/<name without its leading slash>`.
fn parameter_arn_names(arn: &str, name: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "ssm", region, account, resource] = parts[..] else {
        return false;
    };
    !partition.is_empty()
        && !region.is_empty()
        && !account.is_empty()
        && resource.strip_prefix("parameter/") == Some(name.strip_prefix('/').unwrap_or(name))
}

/// Validates a secret answer for `key` and renders the body the function will receive.
pub fn secret(key: &Key, mut answer: Secret) -> Result<Fetched, FetchError> {
    let name = field(answer.name.as_deref(), "Name", MAX_ID)?;
    let arn = field(answer.arn.as_deref(), "ARN", MAX_ID)?;
    let version_id = field(answer.version_id.as_deref(), "VersionId", MAX_TOKEN)?;
    if !secret_arn_names(arn, name) {
        return Err(invalid("the answer's ARN is not the ARN of its Name"));
    }
    if !secret_matches(&key.id, Some(name), Some(arn)) {
        return Err(invalid("the answer is for another secret than the one requested"));
    }
    let stages = answer.version_stages.as_deref().unwrap_or_default();
    if stages.len() > MAX_STAGES {
        return Err(invalid("the answer has too many VersionStages"));
    }
    for stage in stages {
        field(Some(stage), "VersionStages entry", MAX_TOKEN)?;
    }
    let wanted_stage = match key.kind {
        SelectorKind::VersionId if version_id != &*key.selector => {
            return Err(invalid("the answer is for another version than the one requested"));
        }
        SelectorKind::VersionId => None,
        SelectorKind::VersionStage => Some(&*key.selector),
        _ => Some("AWSCURRENT"),
    };
    if let Some(stage) = wanted_stage
        && !stages.iter().any(|s| s == stage)
    {
        return Err(invalid(format!("the answer's version does not carry the stage {stage}")));
    }
    let binary = answer.secret_binary.as_ref().map(Blob::as_ref);
    let size = match (answer.secret_string.as_deref(), binary) {
        (Some(s), None) => s.len(),
        (None, Some(b)) => b.len(),
        (None, None) => return Err(invalid("the answer carries neither SecretString nor SecretBinary")),
        (Some(_), Some(_)) => return Err(invalid("the answer carries both SecretString and SecretBinary")),
    };
    if size > MAX_SECRET_VALUE {
        return Err(invalid(format!("the answer's value is larger than {MAX_SECRET_VALUE} bytes")));
    }
    let body = render::secret(&render::SecretParts {
        arn: Some(arn),
        name: Some(name),
        version_id: Some(version_id),
        secret_string: answer.secret_string.as_deref(),
        secret_binary: binary,
        version_stages: stages,
        created_date: answer.created_date.as_ref(),
    });
    let rank = answer.created_date.and_then(|d| d.to_millis().ok());
    Ok(Fetched {
        body,
        name: answer.name.take(),
        arn: answer.arn.take(),
        revision: Revision {
            version: answer.version_id.take(),
            rank,
        },
    })
}

/// Which parameters an answer may be for.
#[derive(Clone, Copy)]
pub enum Wanted<'a> {
    /// GetParameter / GetParameters: this key (a name or an ARN, maybe with a selector).
    Key(&'a Key),
    /// GetParametersByPath: anything under this path.
    Under(&'a str),
}

/// Validates a parameter answer and renders the body the function will receive. The SDK's
/// copy of the value is wiped whatever the outcome.
///
/// A reference to a secret (`/aws/reference/secretsmanager/<id>`) is found by the reference
/// only: AWS gives it the secret's ARN and `Version` 0 whatever the secret's version, and
/// local stand-ins name it after the secret, so neither id is an alias in Parameter Store's
/// namespace, and nothing in it orders two answers.
pub fn parameter(wanted: Wanted<'_>, mut p: aws_sdk_ssm::types::Parameter) -> Result<Fetched, FetchError> {
    let value = Zeroizing::new(p.value.take());
    let name = field(p.name(), "Name", MAX_ID)?;
    let reference = match wanted {
        Wanted::Key(key) => key.id.strip_prefix(REFERENCE_PREFIX),
        Wanted::Under(_) => None,
    };
    if let Some(arn) = p.arn() {
        field(Some(arn), "ARN", MAX_ID)?;
        let names_it = match reference {
            Some(secret) => secret_arn_names(arn, secret) || secret_matches(secret, None, Some(arn)) || parameter_arn_names(arn, name),
            None => parameter_arn_names(arn, name),
        };
        if !names_it {
            return Err(invalid("the answer's ARN is not the ARN of its Name"));
        }
    }
    {
        use aws_sdk_ssm::types::ParameterType;
        if !matches!(
            p.r#type(),
            Some(ParameterType::String | ParameterType::StringList | ParameterType::SecureString)
        ) {
            return Err(invalid("the answer has no known Type"));
        }
    }
    if p.version() < 0 {
        return Err(invalid("the answer's Version is negative"));
    }
    for (text, what) in [(p.data_type(), "DataType"), (p.selector(), "Selector")] {
        if text.is_some() {
            field(text, what, MAX_TOKEN)?;
        }
    }
    match wanted {
        Wanted::Key(key) => {
            if !parameter_matches(&key.id, name, p.arn()) {
                return Err(invalid("the answer is for another parameter than the one requested"));
            }
            if key.kind == SelectorKind::Version && key.selector.parse::<i64>().ok() != Some(p.version()) {
                return Err(invalid("the answer is for another version than the one requested"));
            }
        }
        Wanted::Under(path) => {
            if !crate::config::file::parameter_under(path, name) {
                return Err(invalid("the answer holds a parameter outside the requested path"));
            }
        }
    }
    match value.as_deref() {
        None => return Err(invalid("the answer carries no Value")),
        Some(v) if v.len() > MAX_PARAMETER_VALUE => {
            return Err(invalid(format!("the answer's value is larger than {MAX_PARAMETER_VALUE} bytes")));
        }
        Some(_) => {}
    }
    let body = render::parameter(&p, value.as_deref());
    if let (Some(_), Wanted::Key(key)) = (reference, wanted) {
        return Ok(Fetched {
            body,
            name: Some(key.id.to_string()),
            arn: None,
            revision: Revision::default(),
        });
    }
    Ok(Fetched {
        body,
        name: p.name,
        arn: p.arn,
        revision: Revision {
            version: Some(p.version.to_string()),
            rank: Some(p.version),
        },
    })
}

/// A parameter answer belongs to the requested id if the id is its name or its ARN. For a
/// reference to a secret (`/aws/reference/secretsmanager/<id>`), AWS names the answer after
/// the reference and gives the secret's ARN; local stand-ins name it after the secret.
fn parameter_matches(id: &str, name: &str, arn: Option<&str>) -> bool {
    if id == name || Some(id) == arn {
        return true;
    }
    id.strip_prefix(REFERENCE_PREFIX)
        .is_some_and(|secret| secret == name || secret_matches(secret, Some(name), arn))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";

    fn answer() -> Secret {
        Secret {
            arn: Some(ARN.into()),
            name: Some("prod/db".into()),
            version_id: Some("v1".into()),
            secret_string: Some("s3cr3t".into()),
            secret_binary: None,
            version_stages: Some(vec!["AWSCURRENT".into()]),
            created_date: None,
        }
    }

    fn key(id: &str) -> Key {
        Key::secret(id, SelectorKind::Default, "")
    }

    fn rejected(r: Result<Fetched, FetchError>) -> String {
        match r {
            Err(FetchError::Invalid(why)) => why,
            other => panic!("not rejected as invalid: {other:?}"),
        }
    }

    #[test]
    fn batch_results_match_names_arns_and_partial_arns() {
        assert!(secret_matches("prod/db", Some("prod/db"), Some(ARN)));
        assert!(secret_matches(ARN, Some("prod/db"), Some(ARN)));
        assert!(secret_matches(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db",
            Some("prod/db"),
            Some(ARN)
        ));
        assert!(!secret_matches("prod", Some("prod/db"), Some(ARN)));
        assert!(!secret_matches(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod",
            Some("prod/db"),
            Some(ARN)
        ));
    }

    #[test]
    fn a_complete_answer_for_the_requested_id_is_accepted() {
        for id in ["prod/db", ARN, "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db"] {
            let f = secret(&key(id), answer()).unwrap();
            assert_eq!((f.name.as_deref(), f.arn.as_deref()), (Some("prod/db"), Some(ARN)));
        }
        let stage = Key::secret("prod/db", SelectorKind::VersionStage, "AWSPREVIOUS");
        let mut a = answer();
        a.version_stages = Some(vec!["AWSPREVIOUS".into()]);
        assert!(secret(&stage, a).is_ok());
        let pinned = Key::secret("prod/db", SelectorKind::VersionId, "v1");
        let mut a = answer();
        a.version_stages = None;
        assert!(secret(&pinned, a).is_ok(), "a pinned version needs no stage");
    }

    #[test]
    fn empty_foreign_and_ambiguous_answers_are_rejected() {
        let empty = Secret {
            arn: None,
            name: None,
            version_id: None,
            secret_string: None,
            secret_binary: None,
            version_stages: None,
            created_date: None,
        };
        assert!(rejected(secret(&key("prod/db"), empty)).contains("no Name"));
        assert!(rejected(secret(&key("other"), answer())).contains("another secret"));
        let mut a = answer();
        a.secret_string = None;
        assert!(rejected(secret(&key("prod/db"), a)).contains("neither"));
        let mut a = answer();
        a.secret_binary = Some(Blob::new(vec![1]));
        assert!(rejected(secret(&key("prod/db"), a)).contains("both"));
        let mut a = answer();
        a.version_stages = Some(vec!["AWSPREVIOUS".into()]);
        assert!(rejected(secret(&key("prod/db"), a)).contains("AWSCURRENT"));
        let pinned = Key::secret("prod/db", SelectorKind::VersionId, "v2");
        assert!(rejected(secret(&pinned, answer())).contains("another version"));
        let mut a = answer();
        a.secret_string = Some("x".repeat(MAX_SECRET_VALUE + 1));
        assert!(rejected(secret(&key("prod/db"), a)).contains("larger"));
        let mut a = answer();
        a.name = Some("prod/db\n".into());
        assert!(rejected(secret(&key("prod/db"), a)).contains("control"));
    }

    fn parameter_answer(name: &str, version: i64) -> aws_sdk_ssm::types::Parameter {
        aws_sdk_ssm::types::Parameter::builder()
            .name(name)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .value("v")
            .version(version)
            .arn(format!(
                "arn:aws:ssm:us-east-1:123456789012:parameter/{}",
                name.strip_prefix('/').unwrap_or(name)
            ))
            .build()
    }

    #[test]
    fn parameters_are_checked_against_the_key_or_the_path() {
        let k = Key::parameter("/a/b", false);
        assert!(parameter(Wanted::Key(&k), parameter_answer("/a/b", 1)).is_ok());
        let by_arn = Key::parameter("arn:aws:ssm:us-east-1:123456789012:parameter/a/b", false);
        assert!(parameter(Wanted::Key(&by_arn), parameter_answer("/a/b", 1)).is_ok());
        assert!(rejected(parameter(Wanted::Key(&k), parameter_answer("/a/c", 1))).contains("another parameter"));
        let v3 = Key::parameter("/a/b:3", false);
        assert!(parameter(Wanted::Key(&v3), parameter_answer("/a/b", 3)).is_ok());
        assert!(rejected(parameter(Wanted::Key(&v3), parameter_answer("/a/b", 4))).contains("another version"));
        assert!(parameter(Wanted::Under("/a/"), parameter_answer("/a/b", 1)).is_ok());
        assert!(parameter(Wanted::Under("/a"), parameter_answer("/a/b", 1)).is_ok());
        assert!(rejected(parameter(Wanted::Under("/a"), parameter_answer("/ab", 1))).contains("outside"));
        let reference = Key::parameter("/aws/reference/secretsmanager/prod/db", true);
        assert!(
            parameter(
                Wanted::Key(&reference),
                parameter_answer("/aws/reference/secretsmanager/prod/db", 0)
            )
            .is_ok()
        );
        assert!(parameter(Wanted::Key(&reference), parameter_answer("prod/db", 0)).is_ok());
        let mut no_value = parameter_answer("/a/b", 1);
        no_value.value = None;
        assert!(rejected(parameter(Wanted::Key(&k), no_value)).contains("no Value"));
        let mut huge = parameter_answer("/a/b", 1);
        huge.value = Some("x".repeat(MAX_PARAMETER_VALUE + 1));
        assert!(rejected(parameter(Wanted::Key(&k), huge)).contains("larger"));
        let mut untyped = parameter_answer("/a/b", 1);
        untyped.r#type = None;
        assert!(rejected(parameter(Wanted::Key(&k), untyped)).contains("Type"));
    }

    #[test]
    fn an_arn_is_accepted_only_as_the_arn_of_the_answers_name() {
        assert!(secret_arn_names(ARN, "prod/db"));
        for (arn, name) in [
            (ARN, "prod"),
            (ARN, "prod/d"),
            ("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdE", "prod/db"),
            ("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db", "prod/db"),
            ("arn:aws:ssm:us-east-1:123456789012:secret:prod/db-AbCdEf", "prod/db"),
            ("arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf", "prod/db"),
        ] {
            assert!(!secret_arn_names(arn, name), "{arn} for {name}");
        }
        // Asked for `prod/db` (or for the ARN it names), answered with the ARN of another
        // secret: that ARN must never become an alias of this value.
        let mut a = answer();
        a.arn = Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:other-XyZ123".into());
        assert!(rejected(secret(&key("prod/db"), a)).contains("ARN"));
        let mut a = answer();
        a.arn = Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:other-XyZ123".into());
        let by_arn = key("arn:aws:secretsmanager:us-east-1:123456789012:secret:other-XyZ123");
        assert!(rejected(secret(&by_arn, a)).contains("ARN"));

        let k = Key::parameter("/a/b", false);
        let mut p = parameter_answer("/a/b", 1);
        p.arn = Some("arn:aws:ssm:us-east-1:123456789012:parameter/a/c".into());
        assert!(rejected(parameter(Wanted::Key(&k), p)).contains("ARN"));
        let mut p = parameter_answer("/a/b", 1);
        p.arn = Some("arn:aws:ssm:us-east-1:123456789012:parameter/a/c".into());
        assert!(rejected(parameter(Wanted::Under("/a"), p)).contains("ARN"));
        let plain = Key::parameter("flags", false);
        assert!(parameter(Wanted::Key(&plain), parameter_answer("flags", 1)).is_ok());
    }

    #[test]
    fn a_reference_to_a_secret_is_found_by_the_reference_only_and_carries_no_order() {
        let reference = Key::parameter("/aws/reference/secretsmanager/prod/db", true);
        let mut p = parameter_answer("/aws/reference/secretsmanager/prod/db", 0);
        p.arn = Some(ARN.into());
        let f = parameter(Wanted::Key(&reference), p).unwrap();
        assert_eq!(f.name.as_deref(), Some("/aws/reference/secretsmanager/prod/db"));
        assert_eq!(f.arn, None, "the secret's ARN is no parameter's id");
        assert_eq!(f.revision, Revision::default(), "Version 0 says nothing of the secret's version");
        // Named after the secret (moto): `prod/db` would otherwise alias a parameter of that name.
        let f = parameter(Wanted::Key(&reference), parameter_answer("prod/db", 0)).unwrap();
        assert_eq!(f.name.as_deref(), Some("/aws/reference/secretsmanager/prod/db"));
        let mut p = parameter_answer("/aws/reference/secretsmanager/prod/db", 0);
        p.arn = Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf".into());
        assert!(rejected(parameter(Wanted::Key(&reference), p)).contains("ARN"));
    }

    #[test]
    fn revisions_name_and_order_values() {
        let mut a = answer();
        a.created_date = Some(DateTime::from_millis(1_700_000_000_123));
        let f = secret(&key("prod/db"), a).unwrap();
        assert_eq!(
            f.revision,
            Revision {
                version: Some("v1".into()),
                rank: Some(1_700_000_000_123)
            }
        );
        let f = parameter(Wanted::Key(&Key::parameter("/a/b", false)), parameter_answer("/a/b", 7)).unwrap();
        assert_eq!(
            f.revision,
            Revision {
                version: Some("7".into()),
                rank: Some(7)
            }
        );
    }
}
