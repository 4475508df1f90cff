//! Declarative routing (`tenantry_ingress::route::Router`) with 1000 routes of one shape: the
//! request matching the 1st route against the one matching the 1000th, and a request no route
//! matches. Three shapes: exact hosts, wildcard suffixes (`*.tenant-N.example.net`), and path
//! prefixes on one host (`/tN/`).
//!
//! `cargo bench -p tenantry-benches --bench route`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use tenantry_core::Request;
use tenantry_ingress::route::{HostPattern, Route, Router, ScriptSource};

const ROUTES: usize = 1000;

fn route(host: &str, prefix: Option<String>, i: usize) -> Route {
    Route {
        host: HostPattern::parse(host),
        path_prefix: prefix,
        header: None,
        namespace: "production".into(),
        script: ScriptSource::Fixed(format!("worker-{i}")),
    }
}

fn request(host: &str, target: &str) -> Request {
    Request {
        method: Bytes::from_static(b"GET"),
        host: Bytes::copy_from_slice(host.as_bytes()),
        target: Bytes::copy_from_slice(target.as_bytes()),
        headers: vec![
            (
                Bytes::from_static(b"user-agent"),
                Bytes::from_static(b"bench"),
            ),
            (Bytes::from_static(b"accept"), Bytes::from_static(b"*/*")),
        ],
        ..Request::default()
    }
}

/// A name, its 1000 routes, and the request that matches route N.
type Shape = (&'static str, Router, fn(usize) -> Request);

fn bench(c: &mut Criterion) {
    let shapes: [Shape; 3] = [
        (
            "exact_host",
            Router::new(
                (0..ROUTES)
                    .map(|i| route(&format!("tenant-{i}.example.com"), None, i))
                    .collect(),
            ),
            |i| request(&format!("tenant-{i}.example.com"), "/hello"),
        ),
        (
            "wildcard",
            Router::new(
                (0..ROUTES)
                    .map(|i| route(&format!("*.tenant-{i}.example.net"), None, i))
                    .collect(),
            ),
            |i| request(&format!("www.tenant-{i}.example.net"), "/hello"),
        ),
        (
            "path_prefix",
            Router::new(
                (0..ROUTES)
                    .map(|i| route("api.example.com", Some(format!("/t{i}/")), i))
                    .collect(),
            ),
            |i| request("api.example.com", &format!("/t{i}/hello?x=1")),
        ),
    ];
    let mut group = c.benchmark_group("route_1000");
    for (shape, router, request) in &shapes {
        for (label, req) in [
            ("1st", request(0)),
            ("1000th", request(ROUTES - 1)),
            ("none", request(ROUTES)),
        ] {
            let expected = (label != "none")
                .then(|| format!("worker-{}", if label == "1st" { 0 } else { ROUTES - 1 }));
            let found = router.route(&req).map(|t| t.script.into_owned());
            assert_eq!(found, expected, "{shape} {label}");
            group.bench_function(format!("{shape}/{label}"), |b| {
                b.iter(|| black_box(router.route(black_box(&req))).is_some())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
