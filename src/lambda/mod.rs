//! The Lambda platform's APIs, and no policy: the Extensions API client (register, next,
//! init/exit error, the Telemetry API subscription), its events, and the Telemetry API
//! listener with the platform events it receives. What to do with them is `lifecycle`'s.

pub mod client;
pub mod event;
pub mod telemetry_api;
pub mod xray;

pub use client::{ExtensionsApi, PlatformError, Registration, Subscription};
pub use event::{Event, Invoke, Shutdown, ShutdownReason};
pub use xray::XRayHeader;
