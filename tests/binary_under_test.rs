//! The process the tests start is the binary they mean: the one cargo built, or the
//! `LSC_EXTENSION_BIN` replacement under `LSC_EXTENSION_RUNNER` (`make layer-test` runs the
//! arm64 layer binary under qemu this way). Reads `/proc/PID/exe` and `/proc/PID/cmdline`.

mod common;

use common::*;

#[tokio::test]
async fn the_started_process_is_the_binary_under_test() {
    let h = start(&[]).await;
    let pid = h.ext.pid();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let bin = bin().canonicalize().unwrap();
    if lsc_devtools::harness::extension::emulated() {
        // The emulator is the process; the binary is its argument.
        let runner = std::env::var(lsc_devtools::harness::extension::RUNNER_VAR).unwrap();
        let program = runner.split_whitespace().next().unwrap();
        assert!(exe.ends_with(program.rsplit('/').next().unwrap()), "{exe:?} runs {args:?}");
        assert!(
            args.iter()
                .any(|a| std::path::Path::new(a).canonicalize().ok().as_ref() == Some(&bin)),
            "{args:?} names {bin:?}"
        );
    } else {
        assert_eq!(exe, bin, "{args:?}");
    }
    // And it serves: a read through it works.
    let name = unique("under-test");
    h.aws.create_secret(&name, "v").await.unwrap();
    let r = h.ext.get(&format!("/secretsmanager/get?secretId={name}")).await.unwrap();
    assert_eq!(r.status, 200);
}
