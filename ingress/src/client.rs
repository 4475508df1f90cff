//! Subrequests: the HTTP/1.1 client behind a Worker's `fetch`, one per serving core.
//!
//! ```text
//!  fetch(req) ─ URL → host:port ─ resolve (cached; resolver threads, never the core) ─ egress policy
//!      ─ idle connection for that (address, TLS name), or connect (timeout) [─ TLS handshake]
//!      ─ write head + body
//!      ─ read head (httparse) ─ body by Content-Length, chunked, or to close, as the guest reads
//!      ─ keep-alive: at the body's end the connection goes back to this core's idle list, which
//!        closes connections idle for longer than MAX_IDLE_AGE
//! ```
//!
//! The egress policy is checked on the *resolved* address, so a name that resolves to a private
//! address is refused like the address itself: loopback, private (RFC 1918, ULA), link-local,
//! CGNAT, multicast, broadcast and unspecified addresses are unreachable unless the operator
//! allows a network in `[subrequests] allow`. `https://` runs over rustls ([`crate::client_tls`]):
//! the certificate is verified for the URL's host, and an idle TLS connection is only reused for
//! the same host name, so an http and an https connection to one address never mix, nor do two
//! names served by one address. Everything is bounded: the connect timeout (which covers the TLS
//! handshake too), the caller's deadline for the head and for each
//! body chunk, 64 KiB of response head. The body streams: the guest gets what came with the head
//! at once and pulls the rest chunk by chunk ([`Body`]), so a large download never sits whole in
//! memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector, TlsError};
use tenantry_core::{Request, Response};

use crate::chunked::ChunkedDecoder;
use crate::resolve::Resolver;

/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD_BYTES: usize = 64 << 10;
/// Response header fields accepted from an upstream.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Idle connections kept per upstream (address and TLS name), per core.
const MAX_IDLE_PER_ADDR: usize = 8;
/// Idle connections kept per core, to all upstreams together.
const MAX_IDLE_TOTAL: usize = 256;
/// An idle connection older than this is closed rather than reused (servers drop idle
/// keep-alive connections after a few seconds; reusing a closed one costs a failed write).
const MAX_IDLE_AGE: Duration = Duration::from_secs(4);

/// A network in CIDR form (`10.0.0.0/8`, `::1/128`, or a bare address for one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}`: not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u8) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        }
        let (net, width) = bits(self.addr);
        let (host, host_width) = bits(ip);
        if width != host_width {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == host & mask
    }
}

/// Where subrequests may go, how long they may take to connect, the node's resolver and its
/// TLS client configuration.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    /// Networks reachable even though they are not public.
    pub allow: Vec<Cidr>,
    /// Connecting, and for `https://` the TLS handshake too.
    pub connect_timeout: Duration,
    /// Shared by every core's client (clones share its threads and cache).
    pub resolver: Resolver,
    /// Trusted roots and the TLS session cache, shared by every core's client
    /// ([`crate::client_tls::client_config`]).
    pub tls: Arc<rustls::ClientConfig>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy {
            allow: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            resolver: Resolver::default(),
            tls: crate::client_tls::client_config(None)
                .expect("the bundled web PKI roots make a valid TLS configuration"),
        }
    }
}

/// Why an address is not public, or `None` if it is.
fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let seg0 = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg0 & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg0 & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn non_public_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else if v4.is_multicast() || v4.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

impl EgressPolicy {
    /// `Ok` if `ip` may be reached, else the reason.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let Some(what) = non_public(ip) else {
            return Ok(());
        };
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        Err(format!(
            "subrequest to {ip} refused: {what} addresses are not reachable from Workers \
             (an operator can allow a network in [subrequests] allow)"
        ))
    }
}

/// A failed subrequest, as the guest's `fetch_error` will read it.
type Failure = String;

/// Splits a request's `host` into name and port (`default_port` if none; `[v6]:port` allowed).
fn host_port(host: &[u8], default_port: u16) -> Result<(String, u16), Failure> {
    let host = std::str::from_utf8(host).map_err(|_| "the URL's host is not UTF-8".to_string())?;
    if host.is_empty() {
        return Err("the request has no host: set an absolute URL (http://host/path)".into());
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad host `{host}`"))?;
        (v6, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse()
            .map_err(|_| format!("bad port in host `{host}`"))?,
    };
    Ok((name.to_ascii_lowercase(), port))
}

/// Which idle connections can carry a request: those to the same address, and for TLS, verified
/// for the same host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: SocketAddr,
    /// The name the TLS certificate was verified for; `None` for plain http.
    tls: Option<Rc<str>>,
}

/// A connection to an upstream, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

impl Conn {
    async fn write_all(&mut self, out: Vec<u8>) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(out).await.0.map(drop),
            Conn::Tls(s) => s.write_all(out).await.0.map(drop),
        }
    }

    async fn read<T: IoBufMut>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }
}

/// One core's subrequest client: its policy and its idle keep-alive connections.
pub struct Client {
    policy: EgressPolicy,
    /// Verifies and resumes TLS sessions with the node's shared configuration.
    tls: TlsConnector,
    idle: RefCell<HashMap<PoolKey, Vec<(Conn, Instant)>>>,
    /// How long an idle connection is kept ([`MAX_IDLE_AGE`]).
    idle_age: Duration,
    /// Whether the task that closes expired idle connections runs.
    sweeping: std::cell::Cell<bool>,
}

impl Client {
    pub fn new(policy: EgressPolicy) -> Client {
        Client::with_idle_age(policy, MAX_IDLE_AGE)
    }

    /// A client keeping idle connections for `idle_age` (tests use a short one).
    pub fn with_idle_age(policy: EgressPolicy, idle_age: Duration) -> Client {
        Client {
            tls: TlsConnector::from(policy.tls.clone()),
            policy,
            idle: RefCell::new(HashMap::new()),
            idle_age,
            sweeping: std::cell::Cell::new(false),
        }
    }

    /// Idle connections kept, to any upstream.
    pub fn idle_connections(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }

    /// Sends `req` to the host it names and reads the response head (and whatever part of the
    /// body came with it) before `deadline`. The rest of the body, if any, is the returned
    /// [`Body`], which reads it chunk by chunk, also by `deadline`.
    pub async fn send(
        self: &Rc<Self>,
        req: Request,
        deadline: Instant,
    ) -> Result<(Response, Option<Body>), Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, self.exchange(req, deadline)).await {
            Ok(result) => result,
            Err(_) => Err("the subrequest did not finish before the Worker's deadline".into()),
        }
    }

    async fn exchange(
        self: &Rc<Self>,
        req: Request,
        deadline: Instant,
    ) -> Result<(Response, Option<Body>), Failure> {
        let (name, port) = host_port(&req.host, if req.secure { 443 } else { 80 })?;
        // Checked before any network traffic: a host no certificate can name fails at once.
        let tls_name = match req.secure {
            true => Some(crate::client_tls::server_name(&name)?),
            false => None,
        };
        let addrs = self.policy.resolver.resolve(&name, port).await?;
        let mut refusal = None;
        let addr = addrs.into_iter().find(|a| match self.policy.check(a.ip()) {
            Ok(()) => true,
            Err(why) => {
                refusal.get_or_insert(why);
                false
            }
        });
        let Some(addr) = addr else {
            return Err(refusal.unwrap_or_else(|| format!("`{name}` has no usable address")));
        };
        let key = PoolKey {
            addr,
            tls: tls_name.as_ref().map(|_| Rc::from(name.as_str())),
        };
        let head = request_head(&req);
        // A pooled connection may have been closed by the server meanwhile: on a failure before
        // any response byte, retry once on a fresh connection (only for requests that are safe
        // to repeat).
        if let Some(conn) = self.take_idle(&key) {
            match roundtrip(conn, &head, &req).await {
                Ok(exchange) => return Ok(self.finish(key, exchange, deadline)),
                Err(RoundTrip::BeforeResponse(_)) if idempotent(&req.method) => {}
                Err(e) => return Err(e.describe(addr)),
            }
        }
        let handshake = if req.secure {
            " (the TLS handshake included)"
        } else {
            ""
        };
        let connect = self.connect(addr, &name, tls_name);
        let conn = monoio::time::timeout(self.policy.connect_timeout, connect)
            .await
            .map_err(|_| {
                format!(
                    "connecting to {addr}{handshake} timed out after {} ms",
                    self.policy.connect_timeout.as_millis()
                )
            })??;
        match roundtrip(conn, &head, &req).await {
            Ok(exchange) => Ok(self.finish(key, exchange, deadline)),
            Err(e) => Err(e.describe(addr)),
        }
    }

    /// A new connection to `addr`; with `tls`, after a handshake verifying that name.
    async fn connect(
        &self,
        addr: SocketAddr,
        host: &str,
        tls: Option<rustls::pki_types::ServerName<'static>>,
    ) -> Result<Conn, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let Some(name) = tls else {
            return Ok(Conn::Plain(stream));
        };
        match self.tls.connect(name, stream).await {
            Ok(tls) => Ok(Conn::Tls(Box::new(tls))),
            Err(TlsError::Io(e)) => Err(crate::client_tls::handshake_failure(host, addr, &e)),
            Err(TlsError::Rustls(e)) => Err(crate::client_tls::handshake_failure(
                host,
                addr,
                &io::Error::other(e),
            )),
        }
    }

    fn finish(
        self: &Rc<Self>,
        key: PoolKey,
        exchange: Exchange,
        deadline: Instant,
    ) -> (Response, Option<Body>) {
        match exchange.rest {
            Rest::Done { reusable } => {
                if let Some(conn) = reusable {
                    self.put_idle(key, conn);
                }
                (exchange.response, None)
            }
            Rest::More {
                stream,
                buf,
                framing,
            } => {
                let body = Body {
                    client: self.clone(),
                    key,
                    stream: Some(stream),
                    buf,
                    framing,
                    deadline,
                };
                (exchange.response, Some(body))
            }
        }
    }

    fn put_idle(self: &Rc<Self>, key: PoolKey, conn: Conn) {
        {
            let mut idle = self.idle.borrow_mut();
            let total: usize = idle.values().map(Vec::len).sum();
            let list = idle.entry(key).or_default();
            if list.len() >= MAX_IDLE_PER_ADDR || total >= MAX_IDLE_TOTAL {
                return; // dropped: closed
            }
            list.push((conn, Instant::now()));
        }
        if !self.sweeping.replace(true) {
            // Connections to upstreams never asked again would otherwise stay open for good.
            let client = Rc::downgrade(self);
            let every = self.idle_age;
            monoio::spawn(async move {
                loop {
                    monoio::time::sleep(every).await;
                    let Some(client) = client.upgrade() else {
                        return;
                    };
                    if client.close_expired() == 0 {
                        client.sweeping.set(false);
                        return;
                    }
                }
            });
        }
    }

    /// Closes idle connections older than the idle age; returns how many are left.
    fn close_expired(&self) -> usize {
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            list.retain(|(_, since)| since.elapsed() < self.idle_age);
        }
        idle.retain(|_, list| !list.is_empty());
        idle.values().map(Vec::len).sum()
    }

    fn take_idle(&self, key: &PoolKey) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < self.idle_age {
                return Some(conn);
            }
        }
        None
    }
}

impl tenantry_core::nested::BodyStream for Body {
    fn next(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Bytes>, String>> + '_>>
    {
        Box::pin(Body::next(self))
    }
}

/// How the rest of a streamed response body is delimited.
enum Framing {
    /// This many bytes are still to come.
    Length(usize),
    Chunked(ChunkedDecoder),
    /// Until the server closes the connection.
    Close,
}

/// The rest of a subrequest's response body, read as the guest asks. At its end a reusable
/// connection goes back to its core's idle list; dropped earlier, the connection is closed.
pub struct Body {
    client: Rc<Client>,
    key: PoolKey,
    stream: Option<Conn>,
    /// Bytes read from the connection and not yet returned (or decoded).
    buf: BytesMut,
    framing: Framing,
    deadline: Instant,
}

impl Body {
    /// The next chunk, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, self.next_chunk()).await {
            Ok(result) => result.map_err(|e| e.describe(self.key.addr)),
            Err(_) => {
                Err("the subrequest's body did not arrive before the Worker's deadline".into())
            }
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, RoundTrip> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        match &mut self.framing {
            Framing::Length(0) => {}
            Framing::Length(left) => {
                if self.buf.is_empty()
                    && read_more(stream, &mut self.buf)
                        .await
                        .map_err(RoundTrip::Io)?
                        == 0
                {
                    return Err(RoundTrip::Bad(format!(
                        "connection closed with {left} body bytes still to come"
                    )));
                }
                let n = self.buf.len().min(*left);
                *left -= n;
                let chunk = self.buf.split_to(n).freeze();
                if *left == 0 {
                    self.end();
                }
                return Ok(Some(chunk));
            }
            Framing::Chunked(decoder) => loop {
                let mut out = BytesMut::new();
                let progress = decoder
                    .decode(&self.buf, &mut out)
                    .map_err(|e| RoundTrip::Bad(format!("bad chunked body: {e}")))?;
                let _ = self.buf.split_to(progress.consumed);
                if progress.done {
                    self.end();
                    return Ok((!out.is_empty()).then(|| out.freeze()));
                }
                if !out.is_empty() {
                    return Ok(Some(out.freeze()));
                }
                if read_more(stream, &mut self.buf)
                    .await
                    .map_err(RoundTrip::Io)?
                    == 0
                {
                    return Err(RoundTrip::Bad(
                        "connection closed inside a chunked body".into(),
                    ));
                }
            },
            Framing::Close => {
                // Over TLS, a server that closes without `close_notify` reads as UnexpectedEof.
                // Many servers do so; like browsers, a close-delimited body then simply ends
                // (framed bodies still fail if cut short: their length is known).
                let closed = |e: io::Error| match e.kind() {
                    io::ErrorKind::UnexpectedEof => Ok(0),
                    _ => Err(RoundTrip::Io(e)),
                };
                if self.buf.is_empty()
                    && read_more(stream, &mut self.buf).await.or_else(closed)? == 0
                {
                    self.stream = None;
                    return Ok(None);
                }
                return Ok(Some(self.buf.split().freeze()));
            }
        }
        self.end();
        Ok(None)
    }

    /// The body is complete: a connection with nothing left over can carry the next request.
    fn end(&mut self) {
        if let Some(stream) = self.stream.take()
            && self.buf.is_empty()
            && !matches!(self.framing, Framing::Close)
        {
            self.client.put_idle(self.key.clone(), stream);
        }
    }
}

fn idempotent(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE")
}

/// Fields the client frames itself, and hop-by-hop fields that never travel end to end.
fn hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authorization",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

fn request_head(req: &Request) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(&req.method);
    head.push(b' ');
    head.extend_from_slice(if req.target.is_empty() {
        b"/"
    } else {
        &req.target
    });
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(&req.host);
    head.extend_from_slice(b"\r\n");
    for (name, value) in &req.headers {
        if name.eq_ignore_ascii_case(b"host") || hop_by_hop(name) {
            continue;
        }
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    if !req.body.is_empty() || !matches!(&req.method[..], b"GET" | b"HEAD" | b"OPTIONS") {
        head.extend_from_slice(format!("content-length: {}\r\n", req.body.len()).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

enum RoundTrip {
    /// Failed before any response byte arrived (a stale pooled connection looks like this).
    BeforeResponse(io::Error),
    /// The upstream broke the protocol or a limit.
    Bad(String),
    Io(io::Error),
}

impl RoundTrip {
    fn describe(self, addr: SocketAddr) -> Failure {
        match self {
            RoundTrip::BeforeResponse(e) | RoundTrip::Io(e) => {
                format!("the subrequest to {addr} failed: {e}")
            }
            RoundTrip::Bad(why) => format!("bad response from {addr}: {why}"),
        }
    }
}

async fn read_more(stream: &mut Conn, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 << 10);
    }
    let len = buf.len();
    let owned = std::mem::take(buf);
    let (res, slice) = stream.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    res
}

/// A response head, and how its body continues.
struct Exchange {
    /// The head, with in `body` the part of the body that arrived with it.
    response: Response,
    rest: Rest,
}

enum Rest {
    /// The body is complete; the connection may carry another request.
    Done { reusable: Option<Conn> },
    /// More body is to come on the connection.
    More {
        stream: Conn,
        buf: BytesMut,
        framing: Framing,
    },
}

/// One request on `stream`, up to the response head and whatever body arrived with it.
async fn roundtrip(mut stream: Conn, head: &[u8], req: &Request) -> Result<Exchange, RoundTrip> {
    let mut out = Vec::with_capacity(head.len() + req.body.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&req.body);
    stream
        .write_all(out)
        .await
        .map_err(RoundTrip::BeforeResponse)?;

    let mut buf = BytesMut::with_capacity(16 << 10);
    let (status, headers, head_len) = loop {
        let n = read_more(&mut stream, &mut buf).await.map_err(|e| {
            if buf.is_empty() {
                RoundTrip::BeforeResponse(e)
            } else {
                RoundTrip::Io(e)
            }
        })?;
        if n == 0 {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed");
            return Err(if buf.is_empty() {
                RoundTrip::BeforeResponse(e)
            } else {
                RoundTrip::Io(e)
            });
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut parsed = httparse::Response::new(&mut fields);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = parsed.code.unwrap_or(0);
                let headers: Vec<(Bytes, Bytes)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            Bytes::copy_from_slice(h.name.as_bytes()),
                            Bytes::copy_from_slice(h.value),
                        )
                    })
                    .collect();
                // 1xx interim responses are skipped; the final one follows.
                if (100..200).contains(&status) && status != 101 {
                    let _ = buf.split_to(len);
                    continue;
                }
                break (status, headers, len);
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD_BYTES => {
                return Err(RoundTrip::Bad(format!(
                    "response head larger than {MAX_RESPONSE_HEAD_BYTES} bytes"
                )));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(RoundTrip::Bad(format!("malformed response head: {e}"))),
        }
    };
    let _ = buf.split_to(head_len);

    let field = |name: &[u8]| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let chunked = field(b"transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().ends_with(b"chunked"));
    let lengths = field(b"content-length");
    let close = field(b"connection")
        .iter()
        .any(|v| v.eq_ignore_ascii_case(b"close"));
    let no_body = req.method.as_ref() == b"HEAD" || status == 204 || status == 304 || status == 101;
    let headers = headers
        .into_iter()
        .filter(|(n, _)| !hop_by_hop(n))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Bytes::new(),
    };
    let done = |stream: Conn, reusable: bool| Rest::Done {
        reusable: reusable.then_some(stream),
    };

    let rest = if no_body {
        done(stream, !close && buf.is_empty())
    } else if chunked {
        // Whatever is complete in the buffer now is the first part of the body.
        let mut decoder = ChunkedDecoder::new(usize::MAX, MAX_RESPONSE_HEAD_BYTES);
        let mut body = BytesMut::new();
        let progress = decoder
            .decode(&buf, &mut body)
            .map_err(|e| RoundTrip::Bad(format!("bad chunked body: {e}")))?;
        let _ = buf.split_to(progress.consumed);
        response.body = body.freeze();
        if progress.done {
            done(stream, !close && buf.is_empty())
        } else {
            Rest::More {
                stream,
                buf,
                framing: Framing::Chunked(decoder),
            }
        }
    } else if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            return Err(RoundTrip::Bad("conflicting Content-Length fields".into()));
        }
        let len: usize = std::str::from_utf8(first)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| RoundTrip::Bad("invalid Content-Length".into()))?;
        let now = buf.len().min(len);
        response.body = buf.split_to(now).freeze();
        if now == len {
            done(stream, !close && buf.is_empty())
        } else {
            Rest::More {
                stream,
                buf,
                framing: Framing::Length(len - now),
            }
        }
    } else {
        // Delimited by the end of the connection.
        response.body = buf.split().freeze();
        Rest::More {
            stream,
            buf,
            framing: Framing::Close,
        }
    };
    Ok(Exchange { response, rest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_to_an_upstream_never_asked_again_are_closed() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            // The client closes the kept-alive connection once it has idled too long.
            let _ = closed_tx.send(stream.read(&mut buf).map(|n| n == 0).unwrap_or(true));
        });
        let policy = EgressPolicy {
            allow: vec![Cidr::parse("127.0.0.1").unwrap()],
            ..EgressPolicy::default()
        };
        let client = Rc::new(Client::with_idle_age(policy, Duration::from_millis(100)));
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(async {
                let req = Request {
                    method: Bytes::from_static(b"GET"),
                    host: Bytes::from(addr.to_string()),
                    target: Bytes::from_static(b"/"),
                    ..Request::default()
                };
                let deadline = Instant::now() + Duration::from_secs(20);
                let (response, rest) = client.send(req, deadline).await.unwrap();
                assert_eq!((response.status, &response.body[..]), (200, &b"ok"[..]));
                assert!(rest.is_none());
                assert_eq!(client.idle_connections(), 1);
                while client.idle_connections() > 0 {
                    assert!(
                        Instant::now() < deadline,
                        "the idle connection was never closed"
                    );
                    monoio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        assert!(closed_rx.recv_timeout(Duration::from_secs(20)).unwrap());
    }

    #[test]
    fn idle_connections_are_reused_only_for_the_same_scheme_and_tls_name() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = Rc::new(Client::new(EgressPolicy::default()));
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(async {
                let stream = TcpStream::connect(addr).await.unwrap();
                let plain = PoolKey { addr, tls: None };
                let tls = |name: &str| PoolKey {
                    addr,
                    tls: Some(Rc::from(name)),
                };
                client.put_idle(plain.clone(), Conn::Plain(stream));
                assert!(client.take_idle(&tls("a.test")).is_none());
                let conn = client
                    .take_idle(&plain)
                    .expect("the http connection is idle");
                // Filed under one TLS name, it is not found under another, nor as plain http.
                client.put_idle(tls("a.test"), conn);
                assert!(client.take_idle(&tls("b.test")).is_none());
                assert!(client.take_idle(&plain).is_none());
                assert!(client.take_idle(&tls("a.test")).is_some());
            });
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("fc00::/7")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        let p = EgressPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            let e = p.check(ip.parse().unwrap()).unwrap_err();
            assert!(e.contains("refused"), "{ip}: {e}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(p.check(ip.parse().unwrap()).is_ok(), "{ip}");
        }
        let allowed = EgressPolicy {
            allow: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            ..EgressPolicy::default()
        };
        assert!(allowed.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(allowed.check("10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(
            host_port(b"Example.com", 80).unwrap(),
            ("example.com".into(), 80)
        );
        assert_eq!(
            host_port(b"a.test:8080", 80).unwrap(),
            ("a.test".into(), 8080)
        );
        assert_eq!(host_port(b"[::1]:9000", 80).unwrap(), ("::1".into(), 9000));
        assert_eq!(host_port(b"[::1]", 443).unwrap(), ("::1".into(), 443));
        assert!(host_port(b"", 80).is_err());
        assert!(host_port(b"a.test:http", 80).is_err());
    }

    #[test]
    fn the_request_head_is_framed_by_the_client() {
        let req = Request {
            method: Bytes::from_static(b"POST"),
            host: Bytes::from_static(b"up.test:81"),
            target: Bytes::from_static(b"/x?y"),
            headers: vec![
                (Bytes::from_static(b"Host"), Bytes::from_static(b"other")),
                (
                    Bytes::from_static(b"Connection"),
                    Bytes::from_static(b"close"),
                ),
                (
                    Bytes::from_static(b"Transfer-Encoding"),
                    Bytes::from_static(b"chunked"),
                ),
                (Bytes::from_static(b"x-a"), Bytes::from_static(b"1")),
            ],
            body: Bytes::from_static(b"hello"),
            secure: false,
        };
        assert_eq!(
            String::from_utf8(request_head(&req)).unwrap(),
            "POST /x?y HTTP/1.1\r\nhost: up.test:81\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
        );
    }
}
