//! A request target (path and query string) through the router and the query parsers, as the
//! server sees it: any input is a typed read or a 4xx, never a panic. A read names a non-empty
//! id, and re-parsing gives the same answer (the parsers are pure).

#![no_main]

use lambda_secrets_cache::http::route::{self, Endpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|target: &str| {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let endpoint = match route::endpoint(path) {
        None | Some(Endpoint::Ping | Endpoint::Status) => return,
        Some(e) => e,
    };
    let parse = || match endpoint {
        Endpoint::Secret => route::secret(query),
        Endpoint::Parameter => route::parameter(query),
        Endpoint::SecretPath(id) => route::secret_path(id, query),
        Endpoint::Ping | Endpoint::Status => unreachable!("returned above"),
    };
    let (read, again) = (parse(), parse());
    match (read, again) {
        (Ok(read), Ok(again)) => {
            assert!(!read.id.is_empty(), "a read names an id: {target:?}");
            assert_eq!(read, again);
            let _ = read.key();
        }
        (Err(e), Err(again)) => {
            let status = e.into_response().status();
            assert!(status.is_client_error(), "{status} for {target:?}");
            assert_eq!(status, again.into_response().status());
        }
        (a, b) => panic!("the same target parsed two ways: {a:?} / {b:?}"),
    }
});
