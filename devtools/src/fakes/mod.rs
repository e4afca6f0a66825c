//! Stand-ins for what the extension talks to, each a real server on loopback (or a real
//! program, launched): the Lambda platform, moto and a client to seed it, the AWS proxy, the
//! OTLP receiver, the rotel collector.

pub mod aws;
pub mod moto;
pub mod otlp;
pub mod platform;
pub mod proxy;
pub mod quota;
pub mod rotel;
