//! The trusted root certificates of the AWS clients, loaded after `/register` (`Aws::connect`)
//! so no cold start waits for them, and chosen by measurement (`benches/roots.rs`,
//! `bench/NOTES.md`): for AWS's own endpoints, the five roots they chain to, compiled in
//! (15 µs, nothing read); otherwise one bundle file read once. The SDK's default reads the
//! bundle and then every file of the certificate directories (on Debian 146 more files, each
//! certificate twice). A file's certificates are checked the way rustls will take them: the
//! SDK aborts on one it cannot parse, so a damaged bundle costs that certificate, never the
//! process.

use std::path::{Path, PathBuf};

use aws_smithy_http_client::tls::TrustStore;
use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::TrustRoots;
use crate::config::trust::SYSTEM_BUNDLES;

/// Amazon Root CA 1–4 and Starfield Services Root Certificate Authority G2, in PEM.
pub const AMAZON_ROOTS: &[u8] = include_bytes!("amazon-roots.pem");

/// The roots as loaded: what the SDK gets, and what `check` and the log say about them.
pub struct Roots {
    pub store: TrustStore,
    /// The file read (`None`: compiled in, or the SDK's own loading from `SSL_CERT_FILE`/
    /// `SSL_CERT_DIR` or the system's directories).
    pub file: Option<PathBuf>,
    /// Certificates taken (0: the SDK's own loading, which does not say).
    pub taken: usize,
    /// Certificates in `file` rustls cannot use as a root (left out).
    pub rejected: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("cannot read the CA bundle {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the CA bundle {path} holds no certificate rustls can use ({rejected} rejected)")]
    Empty { path: PathBuf, rejected: usize },
}

/// Reads the roots `trust` names. Blocking file I/O: run it off the async threads. An error
/// leaves the clients with no roots at all: HTTPS calls fail, plain-HTTP endpoints work.
pub fn load(trust: &TrustRoots) -> Result<Roots, RootsError> {
    let path = match trust {
        TrustRoots::Amazon => {
            return Ok(Roots {
                store: TrustStore::empty().with_pem_certificate(AMAZON_ROOTS),
                file: None,
                taken: 5,
                rejected: 0,
            });
        }
        TrustRoots::CaBundle(path) => path.clone(),
        TrustRoots::OpenSsl => return Ok(sdk_default()),
        TrustRoots::System { .. } => match SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
            Some(p) => p.to_path_buf(),
            None => return Ok(sdk_default()),
        },
    };
    let pem = std::fs::read(&path).map_err(|source| RootsError::Read {
        path: path.clone(),
        source,
    })?;
    let (usable, rejected) = usable(&pem);
    if usable.is_empty() {
        return Err(RootsError::Empty { path, rejected });
    }
    let taken = usable.len();
    Ok(Roots {
        store: TrustStore::empty().with_pem_certificate(to_pem(&usable)),
        file: Some(path),
        taken,
        rejected,
    })
}

/// The SDK's own loading (rustls-native-certs: `SSL_CERT_FILE`/`SSL_CERT_DIR`, else the
/// system's bundle and directories), which skips what it cannot parse.
fn sdk_default() -> Roots {
    Roots {
        store: TrustStore::default(),
        file: None,
        taken: 0,
        rejected: 0,
    }
}

/// The certificates of a PEM text rustls can take as roots, and how many it cannot.
fn usable(pem: &[u8]) -> (Vec<CertificateDer<'static>>, usize) {
    let (mut usable, mut rejected) = (Vec::new(), 0);
    for cert in CertificateDer::pem_slice_iter(pem) {
        match cert {
            Ok(der) if webpki::anchor_from_trusted_cert(&der).is_ok() => usable.push(der),
            _ => rejected += 1,
        }
    }
    (usable, rejected)
}

fn to_pem(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    let mut out = String::new();
    for der in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system_bundle() -> Option<Vec<u8>> {
        SYSTEM_BUNDLES.iter().find_map(|p| std::fs::read(p).ok())
    }

    #[test]
    fn the_compiled_in_roots_are_the_five_amazon_roots_rustls_takes() {
        let (usable, rejected) = usable(AMAZON_ROOTS);
        assert_eq!((usable.len(), rejected), (5, 0));
        let text = std::str::from_utf8(AMAZON_ROOTS).unwrap();
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
        ] {
            assert!(text.contains(&format!("CN = {name}\n")), "{name}");
        }
        let loaded = load(&TrustRoots::Amazon).unwrap();
        assert_eq!((loaded.taken, loaded.file), (5, None));
    }

    #[test]
    fn a_damaged_certificate_is_left_out_and_the_rest_kept() {
        let Some(bundle) = system_bundle() else { return };
        let (good, rejected) = usable(&bundle);
        assert!(good.len() > 50, "{} roots in the system bundle", good.len());
        assert_eq!(rejected, 0);
        let text = String::from_utf8(bundle).unwrap();
        // A certificate whose body is valid base64 but not a certificate.
        let damaged =
            format!("-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n{text}# a trailing comment\n");
        let (kept, rejected) = usable(damaged.as_bytes());
        assert_eq!((kept.len(), rejected), (good.len(), 1));
    }

    #[test]
    fn what_is_handed_on_reads_back_as_the_same_certificates() {
        let Some(bundle) = system_bundle() else { return };
        let (good, _) = usable(&bundle);
        let (again, rejected) = usable(&to_pem(&good));
        assert_eq!(rejected, 0);
        assert!(good.iter().zip(&again).all(|(a, b)| a.as_ref() == b.as_ref()) && good.len() == again.len());
    }

    #[test]
    fn a_bundle_with_nothing_usable_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("lsc-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bundle.pem");
        std::fs::write(&path, "just text\n").unwrap();
        let err = load(&TrustRoots::CaBundle(path.clone())).err().expect("an error");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        let missing = load(&TrustRoots::CaBundle(dir.join("missing.pem"))).err().expect("an error");
        assert!(matches!(missing, RootsError::Read { .. }), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
