//! The layer zip's layout (built from the debug binary here; `make layer` uses the release
//! one with the same script) and the glibc floor of the x86_64 gnu build.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::BIN;

#[test]
fn the_layer_holds_exactly_the_extension_executable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target").join(format!("test-layer-{}.zip", std::process::id()));
    let status = Command::new("python3")
        .arg(root.join("packaging/layer.py"))
        .arg(BIN)
        .arg(&out)
        .env("LAYER_COMPRESSION", "store")
        .status()
        .expect("python3 runs");
    assert!(status.success());
    // Read the zip with unzip -Z (zipinfo): names and Unix modes.
    let listing = Command::new("unzip").arg("-Z").arg(&out).output();
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    // Parse the central directory ourselves, so the test needs no unzip on the machine.
    let entries = central_directory(&bytes);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (name, mode, size) = &entries[0];
    assert_eq!(name, "extensions/lambda-secrets-cache");
    assert_eq!(mode & 0o777, 0o755, "executable by everyone: {mode:o}");
    assert_eq!(mode & 0o170000, 0o100000, "a regular file");
    assert_eq!(*size as u64, std::fs::metadata(BIN).unwrap().len());
    if let Ok(l) = listing {
        let text = String::from_utf8_lossy(&l.stdout);
        assert!(
            text.contains("-rwxr-xr-x") && text.contains("extensions/lambda-secrets-cache"),
            "{text}"
        );
    }
}

/// (name, unix mode, uncompressed size) of every central-directory entry.
fn central_directory(zip: &[u8]) -> Vec<(String, u32, u32)> {
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]);
    let eocd = (0..zip.len() - 21)
        .rev()
        .find(|&i| zip[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .expect("end of central directory");
    let (count, mut at) = (u16_at(eocd + 10), u32_at(eocd + 16) as usize);
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(zip[at..at + 4], [0x50, 0x4b, 0x01, 0x02], "central directory header");
        let size = u32_at(at + 24);
        let (name_len, extra_len, comment_len) = (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32));
        let mode = u32_at(at + 38) >> 16;
        let mut name = String::new();
        (&zip[at + 46..at + 46 + name_len]).read_to_string(&mut name).unwrap();
        out.push((name, mode, size));
        at += 46 + name_len + extra_len + comment_len;
    }
    out
}

#[test]
fn the_gnu_build_needs_at_most_glibc_2_34() {
    let Ok(out) = Command::new("objdump").arg("-T").arg(BIN).output() else {
        eprintln!("objdump not installed; skipping the glibc floor check");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let max = text
        .split("GLIBC_")
        .skip(1)
        .filter_map(|s| {
            let v: String = s.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            Some((parts.next()?, parts.next().unwrap_or(0)))
        })
        .max()
        .expect("a dynamically linked gnu binary references GLIBC symbols");
    // Amazon Linux 2023 (glibc 2.34) runs it; Amazon Linux 2 (2.26) needs the musl build.
    assert!(max <= (2, 34), "needs GLIBC_{}.{}", max.0, max.1);
}
