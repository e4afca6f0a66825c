//! The cached-read hot path without sockets: query parsing, the snapshot lookup, and a whole
//! request through `Server::handle` (routing, token check, lookup, response assembly).
//! `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use lambda_secrets_cache::cache::{Cache, SystemClock};
use lambda_secrets_cache::config::{ByService, CacheConfig, HttpConfig, PrefetchList, Token};
use lambda_secrets_cache::counters::Counters;
use lambda_secrets_cache::http::{Hooks, Server, route};
use lambda_secrets_cache::key::{Key, KeyRef, SelectorKind};
use lambda_secrets_cache::upstream::{BoxFuture, Fetch, FetchError, Fetched};

/// Answers every fetch with a fixed 4 KiB body (only the first read of each key fetches).
struct Fixed(Bytes);

impl Fetch for Fixed {
    fn fetch<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        let body = self.0.clone();
        let name = key.id.to_string();
        Box::pin(async move {
            Ok(Fetched {
                body,
                name: Some(name),
                arn: None,
                revision: lambda_secrets_cache::upstream::Revision {
                    version: Some("v1".into()),
                    rank: Some(1),
                },
            })
        })
    }
}

fn policy() -> CacheConfig {
    let both = |d| ByService { secrets: d, ssm: d };
    CacheConfig {
        enabled: true,
        capacity: 1000,
        ttl: both(std::time::Duration::from_secs(3600)),
        read_timeout: both(std::time::Duration::from_secs(3)),
        max_stale: std::time::Duration::from_secs(900),
        refresh_ahead: 0.8,
        prefetch_deadline: std::time::Duration::from_secs(6),
        prefetch: PrefetchList::default(),
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let counters = Arc::new(Counters::new());
    let cache = Cache::new(
        Arc::new(Fixed(Bytes::from(vec![b'x'; 4096]))),
        &policy(),
        counters.clone(),
        Arc::new(SystemClock),
    );
    // 100 entries, so the lookup is not a one-element map.
    rt.block_on(async {
        for i in 0..100 {
            let id = format!("prod/service-{i}/credentials");
            cache.get(KeyRef::secret(&id, SelectorKind::Default, ""), false).await.unwrap();
        }
    });

    c.bench_function("parse query: secretId + versionStage", |b| {
        b.iter(|| route::secret(black_box(Some("secretId=prod%2Fservice-42%2Fcredentials&versionStage=AWSCURRENT"))).is_ok())
    });
    c.bench_function("parse query: parameter name + withDecryption", |b| {
        b.iter(|| route::parameter(black_box(Some("name=%2Fprod%2Fapp%2Fflags&withDecryption=true"))).is_ok())
    });
    c.bench_function("cache hit: snapshot lookup (4 KiB entry)", |b| {
        b.iter(|| {
            rt.block_on(cache.get(
                black_box(KeyRef::secret("prod/service-42/credentials", SelectorKind::Default, "")),
                false,
            ))
            .unwrap()
            .age_secs
        })
    });

    let token = Token {
        value: zeroize::Zeroizing::new("bench-token".to_string()),
        variable: "AWS_TOKEN",
    };
    let http = HttpConfig {
        port: 0,
        token,
        max_inbound_connections: std::num::NonZeroUsize::new(800).unwrap(),
    };
    let server = Server::new(cache.clone(), counters, &http, Hooks::default(), Default::default());
    c.bench_function("whole request: route + token + hit + response (4 KiB)", |b| {
        b.iter(|| {
            let req = http::Request::get("/secretsmanager/get?secretId=prod%2Fservice-42%2Fcredentials")
                .header("X-Aws-Parameters-Secrets-Token", "bench-token")
                .body(())
                .unwrap();
            let response = rt.block_on(server.handle(black_box(req)));
            assert_eq!(response.status(), 200);
            response
        })
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
