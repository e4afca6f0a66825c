//! Upstream answer → the response body the function receives, rendered once per fetch so a
//! cache hit is a reference-count increment. Shapes and keys are those of the AWS Parameters
//! and Secrets Lambda Extension (README, "HTTP API"). The buffers holding values are sized exactly, so no
//! reallocation leaves a copy behind, and they are zeroised when the last reference drops.

use base64::Engine;
use bytes::Bytes;
use serde::Serialize;
use zeroize::{Zeroize, Zeroizing};

/// Owner of a rendered body; wiped when the last `Bytes` pointing at it is dropped.
struct SecretBytes(Vec<u8>);

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Serialises `value` into a zeroising, exactly-sized buffer.
fn to_secret_bytes<T: Serialize>(value: &T) -> Bytes {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("serialising plain strings cannot fail");
    let mut buf = Vec::with_capacity(counter.0);
    serde_json::to_writer(&mut buf, value).expect("serialising plain strings cannot fail");
    debug_assert_eq!(buf.len(), buf.capacity());
    Bytes::from_owner(SecretBytes(buf))
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretBody<'a> {
    #[serde(rename = "ARN")]
    arn: Option<&'a str>,
    created_date: Option<String>,
    name: Option<&'a str>,
    secret_binary: Option<&'a str>,
    secret_string: Option<&'a str>,
    version_id: Option<&'a str>,
    version_stages: &'a [String],
    result_metadata: Empty,
}

/// The parts of GetSecretValue / BatchGetSecretValue's answer the body is made of.
pub struct SecretParts<'a> {
    pub arn: Option<&'a str>,
    pub name: Option<&'a str>,
    pub version_id: Option<&'a str>,
    pub secret_string: Option<&'a str>,
    pub secret_binary: Option<&'a [u8]>,
    pub version_stages: &'a [String],
    pub created_date: Option<&'a aws_smithy_types::DateTime>,
}

pub fn secret(parts: &SecretParts<'_>) -> Bytes {
    let binary = parts
        .secret_binary
        .map(|b| Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(b)));
    to_secret_bytes(&SecretBody {
        arn: parts.arn,
        created_date: parts.created_date.map(iso8601_millis),
        name: parts.name,
        secret_binary: binary.as_deref().map(String::as_str),
        secret_string: parts.secret_string,
        version_id: parts.version_id,
        version_stages: parts.version_stages,
        result_metadata: Empty {},
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ParameterBody<'a> {
    parameter: ParameterFields<'a>,
    result_metadata: Empty,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ParameterFields<'a> {
    #[serde(rename = "ARN")]
    arn: Option<&'a str>,
    data_type: Option<&'a str>,
    last_modified_date: Option<String>,
    name: Option<&'a str>,
    selector: Option<&'a str>,
    source_result: Option<&'a str>,
    #[serde(rename = "Type")]
    kind: Option<&'a str>,
    value: Option<&'a str>,
    version: i64,
}

/// `value` is passed apart: the caller holds it in a buffer it wipes.
pub fn parameter(p: &aws_sdk_ssm::types::Parameter, value: Option<&str>) -> Bytes {
    to_secret_bytes(&ParameterBody {
        parameter: ParameterFields {
            arn: p.arn(),
            data_type: p.data_type(),
            last_modified_date: p.last_modified_date().map(iso8601_millis),
            name: p.name(),
            selector: p.selector(),
            source_result: p.source_result(),
            kind: p.r#type().map(|t| t.as_str()),
            value,
            version: p.version(),
        },
        result_metadata: Empty {},
    })
}

/// `2022-11-16T08:22:40.499Z`: UTC, always with milliseconds, as the AWS extension writes it.
pub fn iso8601_millis(t: &aws_smithy_types::DateTime) -> String {
    let secs = t.secs();
    let millis = t.subsec_nanos() / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::DateTime;

    #[test]
    fn dates_match_the_aws_extension_format() {
        assert_eq!(
            iso8601_millis(&DateTime::from_millis(1_668_586_960_499)),
            "2022-11-16T08:22:40.499Z"
        );
        assert_eq!(iso8601_millis(&DateTime::from_secs(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_millis(&DateTime::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn secret_body_has_every_key_with_nulls() {
        let stages = vec!["AWSCURRENT".to_string()];
        let body = secret(&SecretParts {
            arn: Some("arn:x"),
            name: Some("n"),
            version_id: Some("v1"),
            secret_string: Some("s\"q"),
            secret_binary: None,
            version_stages: &stages,
            created_date: Some(&DateTime::from_millis(1_668_586_960_499)),
        });
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"ARN":"arn:x","CreatedDate":"2022-11-16T08:22:40.499Z","Name":"n","SecretBinary":null,"SecretString":"s\"q","VersionId":"v1","VersionStages":["AWSCURRENT"],"ResultMetadata":{}}"#
        );
    }

    #[test]
    fn binary_is_base64() {
        let body = secret(&SecretParts {
            arn: None,
            name: None,
            version_id: None,
            secret_string: None,
            secret_binary: Some(&[0, 255, 1]),
            version_stages: &[],
            created_date: None,
        });
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["SecretBinary"], "AP8B");
        assert_eq!(v["SecretString"], serde_json::Value::Null);
    }

    #[test]
    fn parameter_body_shape() {
        let p = aws_sdk_ssm::types::Parameter::builder()
            .name("/a")
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .value("v")
            .version(3)
            .arn("arn:p")
            .data_type("text")
            .last_modified_date(DateTime::from_secs(0))
            .build();
        assert_eq!(
            std::str::from_utf8(&parameter(&p, p.value())).unwrap(),
            r#"{"Parameter":{"ARN":"arn:p","DataType":"text","LastModifiedDate":"1970-01-01T00:00:00.000Z","Name":"/a","Selector":null,"SourceResult":null,"Type":"SecureString","Value":"v","Version":3},"ResultMetadata":{}}"#
        );
    }
}
