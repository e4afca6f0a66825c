//! Runs `moto_server` from the project's virtualenv on 127.0.0.1 with an ephemeral port.
//!
//! The server is started under a small shell watchdog that kills it when our stdin pipe
//! closes, so a moto shared by a whole test binary (held in a static, never dropped) still
//! goes away when the test process exits.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

/// `LSC_MOTO_SERVER`, else `.venv/bin/moto_server` in the workspace.
pub fn moto_server_path() -> PathBuf {
    std::env::var_os("LSC_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join(".venv/bin/moto_server"))
}

impl Moto {
    pub fn start() -> anyhow::Result<Moto> {
        let bin = moto_server_path();
        if !bin.exists() {
            bail!("{} not found: run `make venv` (or `make test`, which does it)", bin.display());
        }
        let script = r#""$0" -H 127.0.0.1 -p 0 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid 2>/dev/null"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && let Some(rest) = line.split("Running on http://").nth(1) {
                    let _ = tx.send(rest.trim().to_string());
                    sent = true;
                }
                // keep draining so moto never blocks on a full pipe
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    break addr
                        .parse::<SocketAddr>()
                        .with_context(|| format!("moto printed an odd address {addr:?}"))?;
                }
                Err(_) if Instant::now() > deadline => bail!("moto_server did not start within 60 s"),
                Err(_) => {
                    if let Some(status) = child.try_wait()? {
                        bail!("moto_server exited early: {status}");
                    }
                }
            }
        };
        Ok(Moto { addr, child })
    }

    /// One moto for the whole test binary; tests use distinct names instead of resets.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(|| Moto::start().expect("moto_server must start"))
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // the watchdog kills moto
        let _ = self.child.wait();
    }
}
