//! A closed-loop HTTP/1.1 load generator that reports latency *per status*, which wrk cannot:
//! the fair-share benchmark (`benches/fairshare.sh`) needs the latency of the requests a node
//! admitted (200) apart from the ones it shed at once (503).
//!
//! `loadgen ADDR HOST PATH CONNECTIONS SECONDS [RATE]`: CONNECTIONS keep-alive connections on
//! one thread, each sending `GET PATH` with `Host: HOST` as soon as the previous response
//! arrived, or, with RATE (requests/s, all connections together), no sooner than its next slot
//! of a fixed schedule (0: none): an offered load that does not grow when the server answers fast (e.g.
//! with `503`). Latency is measured from the send. Prints, per status: the count, the rate, and
//! p50 / p99 / max latency, and the first body of a status other than 200.
//!
//! `loadgen ... SECONDS RATE FROM-TO` counts only the requests sent between FROM and TO seconds
//! after the start (the window in which another load generator measures, e.g. the fair-share
//! benchmark's victim), so that the time before and after it does not blur the figures.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use tenantry_ingress::{Driver, Runtime};

/// Latencies by status, and the first body seen of each status other than 200 (what a `503`
/// says tells admission's shedding from a CPU-limit answer).
#[derive(Default)]
struct Recorded {
    latencies: BTreeMap<u16, Vec<Duration>>,
    first_body: BTreeMap<u16, String>,
}

type Samples = Rc<RefCell<Recorded>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, host, path, conns, secs, rate) = match &args[..] {
        [_, a, h, p, c, s] => (a, h, p, c, s, None),
        [_, a, h, p, c, s, r] => (a, h, p, c, s, Some(r)),
        [_, a, h, p, c, s, r, _] => (a, h, p, c, s, Some(r)),
        _ => {
            eprintln!("usage: loadgen ADDR HOST PATH CONNECTIONS SECONDS [RATE [FROM-TO]]");
            std::process::exit(2);
        }
    };
    // RATE 0: no schedule, as without one.
    let rate: Option<f64> = rate
        .map(|r| r.parse().expect("RATE is requests/s"))
        .filter(|&r| r > 0.0);
    let addr: SocketAddr = addr.parse().expect("ADDR is host:port");
    let conns: usize = conns.parse().expect("CONNECTIONS is a number");
    let secs: f64 = secs
        .trim_end_matches('s')
        .parse()
        .expect("SECONDS is a number");
    let window = match args.get(7) {
        Some(w) => {
            let (from, to) = w
                .split_once('-')
                .expect("FROM-TO is two numbers of seconds");
            let from: f64 = from.parse().expect("FROM is a number of seconds");
            let to: f64 = to.parse().expect("TO is a number of seconds");
            (Duration::from_secs_f64(from), Duration::from_secs_f64(to))
        }
        None => (Duration::ZERO, Duration::from_secs_f64(secs)),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let samples: Samples = Rc::default();
    let errors = Rc::new(RefCell::new(0u64));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    // Each connection's interval between sends; connections start staggered across it.
    let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
    let mut rt = Runtime::new(Driver::Auto).expect("building the runtime");
    rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|i| {
                let (request, samples, errors) = (request.clone(), samples.clone(), errors.clone());
                let pace = interval.map(|every| Pace {
                    next: start + every.mul_f64(i as f64 / conns as f64),
                    every,
                });
                monoio::spawn(async move {
                    let mut pace = pace;
                    while Instant::now() < until {
                        let run = Run {
                            addr,
                            until,
                            window: (start + window.0, start + window.1),
                        };
                        if drive(&run, &request, &samples, &mut pace).await.is_err() {
                            *errors.borrow_mut() += 1;
                            monoio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
    let Recorded {
        latencies,
        first_body,
    } = std::mem::take(&mut *samples.borrow_mut());
    for (status, mut lat) in latencies {
        lat.sort_unstable();
        let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "status {status}: {} requests ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            lat.len() as f64 / (window.1 - window.0).as_secs_f64(),
            ms(at(0.50)),
            ms(at(0.99)),
            ms(*lat.last().expect("at least one")),
        );
        if let Some(body) = first_body.get(&status) {
            println!("status {status}: first body {body:?}");
        }
    }
    println!("connection errors: {}", errors.borrow());
}

/// A connection's send schedule under a fixed offered rate.
struct Pace {
    next: Instant,
    every: Duration,
}

/// Where and until when to send, and which sends count.
struct Run {
    addr: SocketAddr,
    until: Instant,
    /// Requests sent in `[from, to)` are recorded.
    window: (Instant, Instant),
}

/// Sends requests on one connection until `run.until` or until it fails.
async fn drive(
    run: &Run,
    request: &[u8],
    samples: &Samples,
    pace: &mut Option<Pace>,
) -> std::io::Result<()> {
    let until = run.until;
    let mut stream = TcpStream::connect(run.addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while Instant::now() < until {
        if let Some(pace) = pace {
            let now = Instant::now();
            if pace.next > now {
                monoio::time::sleep(pace.next - now).await;
            }
            // A slot missed while a response was late is skipped, not sent in a burst.
            pace.next = pace.next.max(Instant::now() - pace.every) + pace.every;
        }
        let sent = Instant::now();
        let counted = sent >= run.window.0 && sent < run.window.1;
        let (res, _) = stream.write_all(request.to_vec()).await;
        res?;
        let status = loop {
            if let Some((status, head, len)) = parse(&buf)? {
                if status != 200 && counted {
                    let body = String::from_utf8_lossy(&buf[head..len]);
                    let body: String = body.trim_end().chars().take(200).collect();
                    samples
                        .borrow_mut()
                        .first_body
                        .entry(status)
                        .or_insert(body);
                }
                buf.advance(len);
                break status;
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            let len = buf.len();
            let (res, slice) = stream.read(std::mem::take(&mut buf).slice_mut(len..)).await;
            buf = slice.into_inner();
            if res? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        };
        if counted {
            samples
                .borrow_mut()
                .latencies
                .entry(status)
                .or_default()
                .push(sent.elapsed());
        }
    }
    Ok(())
}

/// A complete response at the start of `buf`: its status, the length of its head, and its whole
/// length (head + Content-Length body).
fn parse(buf: &[u8]) -> std::io::Result<Option<(u16, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let body = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    let status = resp.code.unwrap_or(0);
    Ok((buf.len() >= head + body).then_some((status, head, head + body)))
}
