//! Running things: child processes with captured output, the extension binary under test, and
//! a small HTTP client.

pub mod client;
pub mod extension;
pub mod process;

/// A loopback port nothing listens on now (bound and released: a program started next can
/// take it, as on Lambda where the port is fixed).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
