//! The load comparison's ceiling: a monoio + httparse responder that answers every request with
//! the same bytes the hello Worker produces through the full Tenantry path, without routing, an
//! index lookup or wasm. One thread; `benches/load.sh` pins it to the same CPU as the node.
//!
//! `raw-responder 127.0.0.1:18081` (driver from `TENANTRY_DRIVER`: `io_uring` (default) or `legacy`)

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use tenantry_ingress::{Driver, Runtime};

const BODY: &[u8] = b"hello from tenantry\n";

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into())
        .parse()
        .expect("usage: raw-responder ADDR");
    let driver = match std::env::var("TENANTRY_DRIVER").as_deref() {
        Ok("legacy") => Driver::Legacy,
        _ => Driver::IoUring,
    };
    let mut rt = Runtime::new(driver).expect("building the runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind_with_config(addr, &ListenerOpts::new()).expect("bind");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            monoio::spawn(serve(stream));
        }
    });
}

async fn serve(mut stream: TcpStream) {
    let mut buf = BytesMut::with_capacity(8192);
    let mut out = Vec::with_capacity(1024);
    loop {
        // Answer every complete request buffered, then write the batch at once.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    buf.advance(n);
                    respond(&mut out);
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() {
            let (res, o) = stream.write_all(out).await;
            out = o;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if buf.capacity() - buf.len() < 2048 {
            buf.reserve(8192);
        }
        let len = buf.len();
        let (res, slice) = stream.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
    }
}

/// The same response head and body as the full path's (status line, date, length, the hello
/// Worker's two headers).
fn respond(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ndate: ");
    // Cached per second, as the server does, so both pay the same for it.
    thread_local!(static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) });
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|date| {
        if date.0 != secs {
            *date = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(date.1.as_bytes());
    });
    out.extend_from_slice(
        b"\r\ncontent-length: 20\r\ncontent-type: text/plain\r\nx-worker: hello\r\n\r\n",
    );
    out.extend_from_slice(BODY);
}
