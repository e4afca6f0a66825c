//! The AWS clients' root certificates, three ways, on two layouts (`cargo bench --bench roots`):
//!
//! - **the SDK's default** (rustls-native-certs): the bundle file, then every file of the
//!   certificate directories, each certificate then taken by rustls;
//! - **one bundle file** (ours, `upstream::roots::load`): read once and checked, then parsed
//!   again by the SDK (both counted);
//! - **compiled-in Amazon roots** (ours for AWS's own endpoints): the five certificates they
//!   chain to (Amazon Root CA 1–4, Starfield Services Root G2), as the SDK parses them.
//!
//! Layouts: this machine's Debian one (`/etc/ssl/certs/ca-certificates.crt` beside one file per
//! certificate) and Amazon Linux 2023's, as Lambda's images have it, recreated in a temporary
//! directory: `certs/ca-bundle.crt` and `certs/ca-bundle.trust.crt` (OpenSSL's TRUSTED
//! CERTIFICATE form), with `/etc/ssl/certs` a link to the same directory.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use lambda_secrets_cache::config::TrustRoots;
use lambda_secrets_cache::upstream::roots;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

const DEBIAN_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const DEBIAN_DIR: &str = "/etc/ssl/certs";

/// What rustls does with each certificate it is given as a root.
fn take(certs: impl Iterator<Item = CertificateDer<'static>>) -> usize {
    certs.filter(|c| webpki::anchor_from_trusted_cert(c).is_ok()).count()
}

/// Amazon Linux 2023's layout under a temporary directory: the bundle (the same Mozilla set)
/// and the TRUSTED CERTIFICATE bundle `openssl x509 -addtrust` writes.
fn amazon_linux_layout() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("lsc-roots-al2023-{}", std::process::id()));
    let certs = dir.join("pki/tls/certs");
    std::fs::create_dir_all(&certs).ok()?;
    let bundle = std::fs::read_to_string(DEBIAN_BUNDLE).ok()?;
    std::fs::write(certs.join("ca-bundle.crt"), &bundle).ok()?;
    let mut trusted = String::new();
    for cert in bundle.split_inclusive("-----END CERTIFICATE-----\n") {
        let out = Command::new("openssl")
            .args(["x509", "-trustout", "-addtrust", "serverAuth"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("piped").write_all(cert.as_bytes())?;
                child.wait_with_output()
            })
            .ok()?;
        trusted.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    std::fs::write(certs.join("ca-bundle.trust.crt"), trusted).ok()?;
    Some(dir)
}

fn layout(c: &mut Criterion, name: &str, bundle: &Path, dir: &Path) {
    let mut group = c.benchmark_group(name);
    group.sample_size(30);
    group.bench_function("the SDK's default: bundle + directory", |b| {
        b.iter(|| {
            let found = rustls_native_certs::load_certs_from_paths(Some(bundle), Some(dir));
            black_box(take(found.certs.into_iter()))
        })
    });
    let trust = TrustRoots::CaBundle(bundle.to_path_buf());
    group.bench_function("one bundle file, checked, then the SDK's parse", |b| {
        b.iter(|| {
            let loaded = roots::load(&trust).expect("the bundle loads");
            // The SDK parses what it is handed once more: the same certificates from the file.
            let pem = std::fs::read(bundle).expect("readable");
            black_box((loaded.taken, take(CertificateDer::pem_slice_iter(&pem).flatten())))
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    if Path::new(DEBIAN_BUNDLE).is_file() {
        layout(c, "roots, Debian layout", Path::new(DEBIAN_BUNDLE), Path::new(DEBIAN_DIR));
    }
    if let Some(al) = amazon_linux_layout() {
        let certs = al.join("pki/tls/certs");
        layout(c, "roots, Amazon Linux layout", &certs.join("ca-bundle.crt"), &certs);
        let _ = std::fs::remove_dir_all(&al);
    }
    c.bench_function("roots, compiled-in Amazon roots (5, the SDK's parse)", |b| {
        b.iter(|| black_box(take(CertificateDer::pem_slice_iter(roots::AMAZON_ROOTS).flatten())))
    });
}

criterion_group!(roots_benches, benches);
criterion_main!(roots_benches);
