//! Oracles shared by the fuzz targets (`fuzz/`) and the unit tests: each takes arbitrary bytes,
//! runs the parser or decoder, and panics if an invariant breaks.

use bytes::BytesMut;

use crate::chunked::ChunkedDecoder;
use crate::limits::ServerLimits;
use crate::parse::{BodyFraming, Parsed, parse_head};

/// `parse_head` never panics; a complete head lies within the input, its ranges are in bounds,
/// and a prefix that ends before the head never parses as complete.
pub fn check_parse_head(data: &[u8]) {
    let limits = ServerLimits {
        max_header_bytes: 4096,
        max_body_bytes: 1 << 20,
        ..ServerLimits::default()
    };
    let Ok(Parsed::Complete(head)) = parse_head(data, &limits) else {
        return;
    };
    assert!(head.len <= data.len() && head.len <= limits.max_header_bytes);
    let in_head = |r: &std::ops::Range<usize>| r.start <= r.end && r.end <= head.len;
    assert!(in_head(&head.method) && in_head(&head.target) && in_head(&head.host));
    assert!(head.headers.iter().all(|(n, v)| in_head(n) && in_head(v)));
    if let BodyFraming::Length(n) = head.framing {
        assert!(n <= limits.max_body_bytes as u64);
    }
    // A few prefixes (all of them would make the fuzzer quadratic).
    for cut in [0, head.len / 2, head.len.saturating_sub(1)] {
        if cut < head.len {
            assert!(!matches!(
                parse_head(&data[..cut], &limits),
                Ok(Parsed::Complete(_))
            ));
        }
    }
}

/// The chunked decoder never panics, never emits more than its limit, and gives the same result
/// whether the input arrives at once or split at `split`.
pub fn check_chunked(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = decode(data, data.len());
    let pieces = decode(data, usize::from(split).max(1));
    assert_eq!(whole, pieces);
    if let Ok((body, consumed)) = whole {
        // `usize::MAX` marks a body still incomplete at the end of the input.
        assert!(body.len() <= 4096 && (consumed <= data.len() || consumed == usize::MAX));
    }
}

type Decoded = Result<(Vec<u8>, usize), crate::parse::ParseError>;

fn decode(data: &[u8], step: usize) -> Decoded {
    let mut d = ChunkedDecoder::new(4096, 512);
    let mut out = BytesMut::new();
    let (mut pos, mut end) = (0, 0);
    loop {
        end = (end + step).min(data.len());
        let p = d.decode(&data[pos..end], &mut out)?;
        pos += p.consumed;
        if p.done || end == data.len() {
            return Ok((out.to_vec(), if p.done { pos } else { usize::MAX }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed corpus of the fuzz targets, checked on every test run.
    const SEEDS: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"\x00\xff\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    ];

    #[test]
    fn oracles_hold_on_the_seed_corpus_and_its_mutations() {
        for seed in SEEDS {
            check_parse_head(seed);
            for i in 0..seed.len() {
                let mut m = seed.to_vec();
                m[i] ^= 0x20;
                check_parse_head(&m);
                m.truncate(i);
                check_parse_head(&m);
            }
        }
        // Found by the first long run: a split byte and nothing else (an empty, incomplete body).
        check_chunked(b"\n");
        check_chunked(b"\x01");
        for split in [1u8, 2, 3, 7, 255] {
            let mut input = vec![split];
            input.extend_from_slice(b"5\r\nhello\r\n3;e\r\nabc\r\n0\r\nT: 1\r\n\r\nrest");
            check_chunked(&input);
            for i in 1..input.len() {
                let mut m = input.clone();
                m[i] = b'\r';
                check_chunked(&m);
            }
        }
    }
}
