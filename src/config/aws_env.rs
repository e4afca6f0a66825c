//! What the AWS SDK will find in the environment for the Region and the credentials, as
//! `check` reports it. The SDK resolves both itself (after `/register`, `upstream::clients`),
//! also from a profile and from the container or instance endpoints; this only reads
//! variables, so it can say where the answer will come from, or that it must come from
//! elsewhere (and which error a read gets if it does not: `MissingRegion`,
//! `MissingCredentials`).

use super::env::Collector;

const REGION: &[&str] = &["AWS_REGION", "AWS_DEFAULT_REGION"];

/// Credential sources the SDK reads from variables, in its order.
const CREDENTIALS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"),
    ("AWS_PROFILE", ""),
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsEnvironment {
    /// The Region and the variable it is in.
    pub region: Option<(&'static str, String)>,
    /// The first variable a credentials source is named by.
    pub credentials: Option<&'static str>,
}

impl AwsEnvironment {
    pub(super) fn load(c: &Collector<'_>) -> AwsEnvironment {
        let region = REGION.iter().find_map(|name| c.var(name).map(|r| (*name, r)));
        let credentials = CREDENTIALS
            .iter()
            .find(|(first, second)| c.var(first).is_some() && (second.is_empty() || c.var(second).is_some()))
            .map(|(first, _)| *first);
        AwsEnvironment { region, credentials }
    }

    pub fn describe_region(&self) -> String {
        match &self.region {
            Some((name, region)) => format!("{} ({name})", crate::escape::escaped(region)),
            None => "none in AWS_REGION or AWS_DEFAULT_REGION: unless the profile names one, reads fail with 500 MissingRegion".into(),
        }
    }

    pub fn describe_credentials(&self) -> String {
        match self.credentials {
            Some(name) => format!("from {name}"),
            None => "none in the environment: the SDK tries the profile and the instance endpoint; without any, reads fail with 500 MissingCredentials".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> AwsEnvironment {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        AwsEnvironment::load(&Collector::new(&env))
    }

    #[test]
    fn empty_variables_are_absent_as_the_sdk_takes_them() {
        // AWS's emulator with no keys of its own: every variable present, all empty.
        let none = read(&[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_REGION", ""),
        ]);
        assert_eq!(none, AwsEnvironment::default());
        assert!(none.describe_region().contains("MissingRegion"));
        assert!(none.describe_credentials().contains("MissingCredentials"));
    }

    #[test]
    fn where_each_comes_from() {
        let env = read(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ]);
        assert_eq!(env.describe_region(), "eu-west-1 (AWS_DEFAULT_REGION)");
        assert_eq!(env.describe_credentials(), "from AWS_ACCESS_KEY_ID");
        let half = read(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://x")]);
        assert_eq!(
            half.credentials,
            Some("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            "a key id alone is no source"
        );
    }
}
