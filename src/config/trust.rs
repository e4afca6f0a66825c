//! Where the AWS clients' trusted root certificates come from. Only the choice is made here,
//! from the environment (no file is read: this runs before `/register`); `upstream::roots`
//! reads what it names after registering.

use std::path::PathBuf;

use super::env::Collector;

/// The system's bundle files, by layout, in the order tried: one file read once, never a
/// directory of one file per certificate.
pub const SYSTEM_BUNDLES: &[&str] = &[
    // Amazon Linux 2 and 2023 (every Lambda runtime), Fedora, RHEL.
    "/etc/pki/tls/certs/ca-bundle.crt",
    // Debian, Ubuntu, Alpine with ca-certificates.
    "/etc/ssl/certs/ca-certificates.crt",
    // openSUSE, SLES.
    "/etc/ssl/ca-bundle.pem",
    // Alpine without ca-certificates, BSDs.
    "/etc/ssl/cert.pem",
];

/// Endpoints other than AWS's own. One over plain HTTP needs no roots (moto, LocalStack on
/// `http://`): only the others may present a certificate from another authority.
const ENDPOINTS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_STS",
];

/// A proxy may present its own certificate.
const PROXIES: &[&str] = &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// AWS's own endpoints (or plain-HTTP stand-ins) in the commercial and GovCloud
    /// partitions, no proxy, no CA of the user's: the five roots AWS's endpoints chain to
    /// (Amazon Root CA 1–4, Starfield Services Root G2), compiled in. Nothing is read.
    Amazon,
    /// `AWS_CA_BUNDLE`: this PEM file instead of the system's roots, as the AWS CLI and the
    /// other AWS SDKs take it (the Rust SDK alone ignores it).
    CaBundle(PathBuf),
    /// `SSL_CERT_FILE` and/or `SSL_CERT_DIR`: only those, as OpenSSL takes them.
    OpenSsl,
    /// Anything else (`reason`): the first of `SYSTEM_BUNDLES` that exists, else every
    /// certificate the system keeps.
    System { reason: String },
}

impl TrustRoots {
    pub(super) fn load(c: &mut Collector<'_>) -> TrustRoots {
        if let Some(path) = c.var("AWS_CA_BUNDLE") {
            return TrustRoots::CaBundle(PathBuf::from(path));
        }
        if c.var("SSL_CERT_FILE").is_some() || c.var("SSL_CERT_DIR").is_some() {
            return TrustRoots::OpenSsl;
        }
        let tls_endpoint = |v: &&&str| c.var(v).is_some_and(|url| !url.to_ascii_lowercase().starts_with("http://"));
        let set = |v: &&&str| c.var(v).is_some();
        if let Some(var) = ENDPOINTS.iter().find(tls_endpoint).or_else(|| PROXIES.iter().find(set)) {
            return TrustRoots::System {
                reason: format!("{var} is set"),
            };
        }
        match c.var("AWS_REGION").or_else(|| c.var("AWS_DEFAULT_REGION")) {
            None => TrustRoots::System {
                reason: "no AWS_REGION".into(),
            },
            // China's and the isolated partitions have their own certificate authorities.
            Some(region) if region.starts_with("cn-") || region.contains("-iso") => TrustRoots::System {
                reason: format!("{region} is outside the aws and aws-us-gov partitions"),
            },
            Some(_) => TrustRoots::Amazon,
        }
    }

    /// As `check` prints it.
    pub fn describe(&self) -> String {
        match self {
            TrustRoots::Amazon => "the 5 Amazon roots AWS endpoints chain to (compiled in)".into(),
            TrustRoots::CaBundle(path) => format!("{} (AWS_CA_BUNDLE)", path.display()),
            TrustRoots::OpenSsl => "SSL_CERT_FILE / SSL_CERT_DIR".into(),
            TrustRoots::System { reason } => format!("the system's bundle file ({reason})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn choose(vars: &[(&str, &str)]) -> TrustRoots {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        TrustRoots::load(&mut Collector::new(&env))
    }

    #[test]
    fn amazon_roots_only_for_aws_endpoints_in_the_partitions_they_serve() {
        assert_eq!(choose(&[("AWS_REGION", "eu-west-1")]), TrustRoots::Amazon);
        assert_eq!(choose(&[("AWS_DEFAULT_REGION", "us-gov-west-1")]), TrustRoots::Amazon);
        for (var, value) in [
            ("AWS_ENDPOINT_URL", "https://localhost.localstack.cloud:4566"),
            ("AWS_ENDPOINT_URL_STS", "sts.internal:443"),
            ("AWS_ENDPOINT_URL_SSM", "https://ssm.internal"),
            ("HTTPS_PROXY", "http://proxy:3128"),
        ] {
            assert!(matches!(choose(&[("AWS_REGION", "eu-west-1"), (var, value)]), TrustRoots::System { reason } if reason.contains(var)));
        }
        // A plain-HTTP stand-in presents no certificate.
        assert_eq!(
            choose(&[("AWS_REGION", "eu-west-1"), ("AWS_ENDPOINT_URL", "HTTP://127.0.0.1:5000")]),
            TrustRoots::Amazon
        );
        for region in ["cn-north-1", "us-iso-east-1", "us-isob-east-1"] {
            assert!(matches!(choose(&[("AWS_REGION", region)]), TrustRoots::System { .. }), "{region}");
        }
        assert!(matches!(choose(&[]), TrustRoots::System { .. }));
    }

    #[test]
    fn the_users_own_roots_win() {
        let bundle = ("AWS_CA_BUNDLE", "/opt/ca.pem");
        assert_eq!(
            choose(&[("AWS_REGION", "eu-west-1"), bundle, ("SSL_CERT_FILE", "/x.pem")]),
            TrustRoots::CaBundle("/opt/ca.pem".into())
        );
        assert_eq!(
            choose(&[("AWS_REGION", "eu-west-1"), ("SSL_CERT_DIR", "/certs")]),
            TrustRoots::OpenSsl
        );
    }
}
