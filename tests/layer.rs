//! The layer zip's layout (built from the debug binary here; `make layer` uses the zig-linked
//! release builds with the same script), and the script's refusal of binaries that would not
//! start on every Lambda of an architecture.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

/// The host build: linked against this machine's glibc, so above the layers' floor.
const BIN: &str = env!("CARGO_BIN_EXE_lambda-secrets-cache");

fn layer_py(args: &[&str], out: &Path) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("python3")
        .arg(root.join("packaging/layer.py"))
        .args(args)
        .arg(out)
        .env("LAYER_COMPRESSION", "store")
        .output()
        .expect("python3 runs")
}

#[test]
fn the_layer_holds_the_extension_executable_and_the_clients() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target").join(format!("test-layer-{}.zip", std::process::id()));
    let made = layer_py(&["--arch", "x86_64", "--max-glibc", "9.99", BIN], &out);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    // Read the zip with unzip -Z (zipinfo): names and Unix modes.
    let listing = Command::new("unzip").arg("-Z").arg(&out).output();
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    // Parse the central directory ourselves, so the test needs no unzip on the machine.
    let entries = central_directory(&bytes);
    let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "extensions/lambda-secrets-cache",
            "python/lambda_secrets_cache.py",
            "nodejs/node_modules/lambda-secrets-cache/package.json",
            "nodejs/node_modules/lambda-secrets-cache/index.cjs",
            "nodejs/node_modules/lambda-secrets-cache/index.mjs",
            "nodejs/node_modules/lambda-secrets-cache/index.d.ts",
        ],
        "where Lambda's runtimes look for a layer's code"
    );
    for (name, mode, size) in &entries[1..] {
        assert_eq!(mode & 0o777, 0o644, "{name}: {mode:o}");
        let source = name
            .replace("python/", "clients/python/")
            .replace("nodejs/node_modules/lambda-secrets-cache/", "clients/node/");
        assert_eq!(*size as u64, std::fs::metadata(root.join(&source)).unwrap().len(), "{name}");
    }
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

/// The highest `GLIBC_x.y` objdump finds, to cross-check the script's own ELF reading.
fn objdump_glibc(bin: &str) -> Option<String> {
    let out = Command::new("objdump").arg("-T").arg(bin).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("GLIBC_")
        .skip(1)
        .filter_map(|s| {
            let v: String = s.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let parts: Vec<u32> = v.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
            Some((parts, v))
        })
        .max()
        .map(|(_, v)| v)
}

#[test]
fn the_layer_script_refuses_binaries_that_would_not_start() {
    let out = std::env::temp_dir().join(format!("refused-layer-{}.zip", std::process::id()));
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // The host build needs this machine's glibc, above Amazon Linux 2's 2.26.
    let too_new = layer_py(&["--arch", "x86_64", BIN], &out);
    assert!(!too_new.status.success());
    let host = objdump_glibc(BIN);
    if let Some(v) = &host {
        assert!(
            stderr(&too_new).contains(&format!("needs GLIBC_{v}, above 2.26")),
            "{}",
            stderr(&too_new)
        );
    } else {
        assert!(stderr(&too_new).contains("above 2.26"), "{}", stderr(&too_new));
    }
    // Wrong architecture, and not an executable at all.
    let wrong_arch = layer_py(&["--arch", "arm64", "--max-glibc", "9.99", BIN], &out);
    assert!(
        stderr(&wrong_arch).contains("built for x86_64, not arm64"),
        "{}",
        stderr(&wrong_arch)
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/layer.py");
    let not_elf = layer_py(&["--arch", "x86_64", script], &out);
    assert!(stderr(&not_elf).contains("not an ELF file"), "{}", stderr(&not_elf));
    assert!(!out.exists(), "nothing is written for a refused binary");

    // What it accepts it describes; the glibc version agrees with objdump's.
    let ok = layer_py(&["--arch", "x86_64", "--max-glibc", "9.99", BIN], &out);
    let text = String::from_utf8_lossy(&ok.stdout);
    let _ = std::fs::remove_file(&out);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(text.contains("x86_64") && text.contains("libc.so.6"), "{text}");
    if let Some(v) = host {
        assert!(text.contains(&format!("highest GLIBC_{v} ")), "{text}");
    }
}
