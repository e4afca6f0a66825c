//! Running things: child processes with captured output, the extension binary under test, and
//! a small HTTP client.

pub mod client;
pub mod extension;
pub mod process;
