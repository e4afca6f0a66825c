//! A Telemetry API delivery body through the tolerant parser: any bytes give the events it
//! could read plus a count of what it could not, never a panic.

#![no_main]

use lambda_secrets_cache::lambda::telemetry_api::event::parse_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let (events, _malformed) = parse_batch(body);
    if serde_json::from_slice::<serde_json::Value>(body).is_err() {
        assert!(events.is_empty(), "events from a body that is not JSON");
    }
});
