//! A null extension: registers for INVOKE and SHUTDOWN and calls `/event/next` again the moment
//! an event arrives, doing nothing else. That is what the peers (the AWS Parameters and Secrets
//! extension, the Secrets Manager Agent's wrapper) do after an invocation, so its post-runtime
//! duration is the floor an extension can reach on this machine. `lsc-dev null-extension`.

use std::net::SocketAddr;

use anyhow::{Context, bail};

use crate::harness::client;

/// Runs against the Extensions API at `runtime_api` (`host:port`) until SHUTDOWN.
pub async fn run(runtime_api: &str, name: &str) -> anyhow::Result<()> {
    let addr: SocketAddr = runtime_api
        .parse()
        .with_context(|| format!("AWS_LAMBDA_RUNTIME_API {runtime_api:?} is not an address"))?;
    let registered = client::request(
        addr,
        "POST",
        "/2020-01-01/extension/register",
        &[("Lambda-Extension-Name", name), ("Content-Type", "application/json")],
        br#"{"events":["INVOKE","SHUTDOWN"]}"#.to_vec(),
    )
    .await?;
    let id = match registered.header("lambda-extension-identifier") {
        Some(id) if registered.status == 200 => id.to_string(),
        _ => bail!("register answered {}: {}", registered.status, registered.text()),
    };
    loop {
        let event = client::get(addr, "/2020-01-01/extension/event/next", &[("Lambda-Extension-Identifier", &id)]).await?;
        if event.status != 200 {
            bail!("next answered {}", event.status);
        }
        if event.json()["eventType"] == "SHUTDOWN" {
            return Ok(());
        }
    }
}
