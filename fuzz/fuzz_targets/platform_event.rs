//! An Extensions API `/event/next` body and an X-Ray trace header through their parsers: an
//! event or an error, never a panic; a parsed trace header has a 32-hex trace id (16-hex
//! parent), as OpenTelemetry needs.

#![no_main]

use lambda_secrets_cache::lambda::event::parse;
use lambda_secrets_cache::lambda::XRayHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    if let Ok(header) = std::str::from_utf8(data)
        && let Some(x) = XRayHeader::parse(header)
    {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(hex(&x.trace_id, 32), "{header:?} → {x:?}");
        if let Some(p) = &x.parent_id {
            assert!(hex(p, 16), "{header:?} → {x:?}");
        }
    }
});
