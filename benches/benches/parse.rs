//! The request-head parser on typical requests: a bare GET, a browser-like GET with a dozen
//! headers, and a chunked body through the incremental decoder.
//!
//! `cargo bench -p tenantry-benches --bench parse`

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tenantry_ingress::chunked::ChunkedDecoder;
use tenantry_ingress::{Parsed, ServerLimits, parse_head};

const SMALL: &[u8] = b"GET /hello HTTP/1.1\r\nHost: alice.example.test\r\n\r\n";
const BROWSER: &[u8] = b"GET /static/app.js?v=1234 HTTP/1.1\r\n\
Host: alice.example.test\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://alice.example.test/\r\n\
Connection: keep-alive\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-None-Match: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n\r\n";

fn bench(c: &mut Criterion) {
    let limits = ServerLimits::default();
    let mut group = c.benchmark_group("parse_head");
    for (name, raw) in [("small_get", SMALL), ("browser_get", BROWSER)] {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| match parse_head(black_box(raw), &limits) {
                Ok(Parsed::Complete(head)) => head.len,
                other => panic!("{other:?}"),
            })
        });
    }
    group.finish();

    let mut chunked = Vec::new();
    for _ in 0..16 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'x'; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(chunked.len() as u64));
    group.bench_function("16x1KiB", |b| {
        let mut out = BytesMut::with_capacity(16 << 10);
        b.iter(|| {
            out.clear();
            let mut d = ChunkedDecoder::new(1 << 20, 1 << 10);
            let p = d.decode(black_box(&chunked), &mut out).unwrap();
            assert!(p.done);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
