//! Developer commands for lambda-secrets-cache. `lsc-dev demo --extension PATH` runs the demo.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["demo"] => run_demo(lsc_devtools::extension::binary("release")),
        ["demo", "--extension", path] => run_demo(PathBuf::from(path)),
        _ => {
            eprintln!("usage: lsc-dev demo [--extension PATH]");
            std::process::exit(2);
        }
    }
}

fn run_demo(bin: PathBuf) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(lsc_devtools::demo::run(&bin))
}
