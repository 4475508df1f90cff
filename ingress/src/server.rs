//! The thread-per-core HTTP/1.1 server.
//!
//! Each serving thread runs its own monoio runtime, its own `SO_REUSEPORT` listener (the kernel
//! spreads connections across them) and its own [`Handler`], so a request never leaves the core
//! that accepted it. A connection is one task: read a head, read its body, call the handler, queue
//! the response; queued responses go out in one write when the client has nothing more buffered,
//! which makes pipelining cost one syscall per batch.
//!
//! With [`ServerConfig::tls`] every core also listens for TLS; such a connection first completes
//! its handshake (bounded by [`TlsListener::handshake_timeout`]), then runs the very same
//! connection code over the TLS stream: `Conn` is generic over its stream, so both share every
//! framing rule, limit and timeout, and the plain path is compiled exactly as before.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use tenantry_core::{Request, Response};

use crate::chunked::ChunkedDecoder;
use crate::limits::{
    BODY_RESERVATION_STEP, COALESCE_BODY_BYTES, MAX_PENDING_WRITE_BYTES, READ_BUFFER_BYTES,
    ServerLimits, Timeouts,
};
use crate::parse::{BodyFraming, Head, ParseError, Parsed, parse_head};
use crate::runtime::{Driver, Runtime};
use crate::tls::{TlsListener, TlsStream};

/// Answers requests on one core. Created on that core's thread by the factory given to [`start`],
/// so it may hold `Rc`s and per-core caches.
pub trait Handler: 'static {
    fn call(&self, req: Request) -> impl Future<Output = Response>;

    /// The response for a request the server refused before it reached [`Handler::call`]
    /// (malformed, too large, too slow). Plain text unless the handler speaks another format.
    fn error_response(&self, status: u16, message: &str) -> Response {
        Response::text(status, message.to_string())
    }

    /// Looks at a request's head (`buf` holds it; see [`Head::header`]) before its body is read.
    /// A response returned here is sent at once and the connection closed without reading the
    /// body: for checks such as authentication, so that an unauthenticated client cannot make
    /// the server buffer a body. The default admits every request.
    fn check_head(&self, _head: &Head, _buf: &[u8]) -> Option<Response> {
        None
    }
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The listening address; port 0 picks a free port (every core then shares it).
    pub addr: SocketAddr,
    /// Serving threads, one runtime and listener each.
    pub threads: usize,
    pub driver: Driver,
    pub limits: ServerLimits,
    pub timeouts: Timeouts,
    /// A TLS listener beside the plain one, on every core and with the same handler; `None`
    /// serves plain HTTP only.
    pub tls: Option<TlsListener>,
}

impl Default for ServerConfig {
    /// `127.0.0.1:8080`, one thread per available CPU, io_uring with fallback, default limits.
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            driver: Driver::Auto,
            limits: ServerLimits::default(),
            timeouts: Timeouts::default(),
            tls: None,
        }
    }
}

/// A running server. Dropping it shuts it down and waits for its threads.
pub struct ServerHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    drivers: Vec<&'static str>,
    stopping: Arc<AtomicBool>,
    listeners: Vec<RawFd>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address every core listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address every core accepts TLS on, if [`ServerConfig::tls`] asked for it.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The driver each core runs (`"io_uring"` or `"legacy"`).
    pub fn drivers(&self) -> &[&'static str] {
        &self.drivers
    }

    /// Stops accepting connections. Requests in flight finish (up to [`Timeouts::drain`]); idle
    /// kept-alive connections are closed. Returns at once; [`ServerHandle::join`] waits.
    pub fn shutdown(&self) {
        if !self.stopping.swap(true, Ordering::AcqRel) {
            for &fd in &self.listeners {
                crate::sys::shutdown_listener(fd);
            }
        }
    }

    /// Shuts down (if not yet) and waits for every core to finish.
    pub fn join(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shutdown();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a serving thread panicked");
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What a core thread reports once it listens (or failed to).
struct Listening {
    addr: SocketAddr,
    fd: RawFd,
    /// The TLS listener's address and descriptor, if any.
    tls: Option<(SocketAddr, RawFd)>,
    driver: &'static str,
}

type Ready = io::Result<Listening>;

/// Starts `config.threads` serving threads. `make_handler(i)` runs on thread `i` to create its
/// handler. Returns once every thread listens; a bind error on any of them stops the others.
pub fn start<H, F>(config: ServerConfig, make_handler: F) -> io::Result<ServerHandle>
where
    H: Handler,
    F: Fn(usize) -> H + Send + Sync + 'static,
{
    let make_handler = Arc::new(make_handler);
    let threads = config.threads.max(1);
    let shared = Arc::new(Shared {
        body_budget: BodyBudget {
            used: AtomicUsize::new(0),
            limit: config.limits.max_buffered_body_bytes,
        },
        connections_per_core: config.limits.max_connections.div_ceil(threads).max(1),
    });
    // One rustls configuration (and so one session-ticket key) for every core.
    let tls_config = match &config.tls {
        None => None,
        Some(tls) => Some(tls.certificates.server_config().map_err(io::Error::other)?),
    };
    let mut handle = ServerHandle {
        local_addr: config.addr,
        tls_addr: config.tls.as_ref().map(|t| t.addr),
        drivers: Vec::new(),
        stopping: Arc::new(AtomicBool::new(false)),
        listeners: Vec::new(),
        threads: Vec::new(),
    };
    for core in 0..threads {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
        let mut core_config = config.clone();
        // The first core resolves port 0; the others bind the port it got.
        core_config.addr = handle.local_addr;
        if let (Some(tls), Some(addr)) = (&mut core_config.tls, handle.tls_addr) {
            tls.addr = addr;
        }
        let make_handler = make_handler.clone();
        let stopping = handle.stopping.clone();
        let shared = shared.clone();
        let tls_config = tls_config.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tenantry-core-{core}"))
            .spawn(move || {
                run_core(
                    core,
                    core_config,
                    tls_config,
                    &*make_handler,
                    stopping,
                    shared,
                    ready_tx,
                )
            })?;
        handle.threads.push(thread);
        match ready_rx.recv() {
            Ok(Ok(listening)) => {
                handle.local_addr = listening.addr;
                handle.listeners.push(listening.fd);
                if let Some((addr, fd)) = listening.tls {
                    handle.tls_addr = Some(addr);
                    handle.listeners.push(fd);
                }
                handle.drivers.push(listening.driver);
            }
            Ok(Err(e)) => return Err(e), // dropping `handle` stops the cores already started
            Err(_) => return Err(io::Error::other("a serving thread died while starting")),
        }
    }
    Ok(handle)
}

fn run_core<H: Handler>(
    core: usize,
    config: ServerConfig,
    tls_config: Option<Arc<rustls::ServerConfig>>,
    make_handler: &(dyn Fn(usize) -> H + Send + Sync),
    stopping: Arc<AtomicBool>,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<Ready>,
) {
    let mut rt = match Runtime::new(config.driver) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let driver = rt.driver_name();
    rt.block_on(async move {
        let bind = |addr| {
            let opts = ListenerOpts::new().reuse_port(true).reuse_addr(true);
            TcpListener::bind_with_config(addr, &opts).and_then(|l| Ok((l.local_addr()?, l)))
        };
        let tls = match (&config.tls, tls_config) {
            (Some(tls), Some(tls_config)) => match bind(tls.addr) {
                Ok(bound) => Some((bound, tls, tls_config)),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            },
            _ => None,
        };
        let listener = match bind(config.addr) {
            Ok((addr, l)) => {
                let _ = ready.send(Ok(Listening {
                    addr,
                    fd: l.as_raw_fd(),
                    tls: tls.as_ref().map(|((addr, l), _, _)| (*addr, l.as_raw_fd())),
                    driver,
                }));
                l
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let handler = Rc::new(make_handler(core));
        let state = Rc::new(CoreState::new(config.limits, config.timeouts, shared));
        tracing::debug!(core, driver, tls = tls.is_some(), "serving");
        let plain = accept_loop(&listener, &handler, &state, &stopping, None);
        match &tls {
            None => plain.await,
            Some(((_, tls_listener), settings, tls_config)) => {
                let accept = Rc::new(TlsAccept {
                    acceptor: monoio_rustls::TlsAcceptor::from(tls_config.clone()),
                    timeout: settings.handshake_timeout,
                });
                let secure = accept_loop(tls_listener, &handler, &state, &stopping, Some(&accept));
                monoio::join!(plain, secure);
            }
        }
        state.stop();
        let deadline = Instant::now() + config.timeouts.drain;
        while state.active.get() > 0 && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(listener);
        drop(tls);
    });
}

/// How a core's TLS listener turns a TCP connection into a TLS one.
struct TlsAccept {
    acceptor: monoio_rustls::TlsAcceptor,
    timeout: Duration,
}

async fn accept_loop<H: Handler>(
    listener: &TcpListener,
    handler: &Rc<H>,
    state: &Rc<CoreState>,
    stopping: &AtomicBool,
    tls: Option<&Rc<TlsAccept>>,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut failures = 0u64;
    let mut reported: Option<Instant> = None;
    loop {
        // Back-pressure: at its share of the connection cap a core stops accepting until one of
        // its connections closes; newcomers wait in the kernel's backlog.
        while state.active.get() >= state.shared.connections_per_core {
            if stopping.load(Ordering::Acquire) {
                return;
            }
            // Bounded, so a shutdown is noticed even if no connection closes.
            let _ = monoio::time::timeout(ACCEPT_BACKOFF_MAX, SlotFree(state)).await;
        }
        match listener.accept().await {
            Ok((stream, _)) => {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                backoff = ACCEPT_BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                // Counted before the task first runs, so the cap check above sees it.
                let active = Active::new(state.clone());
                match tls {
                    None => {
                        monoio::spawn(connection(stream, handler.clone(), active));
                    }
                    Some(tls) => {
                        monoio::spawn(tls_connection(stream, tls.clone(), handler.clone(), active));
                    }
                }
            }
            Err(e) => {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                // EMFILE and friends pass: back off (doubling, bounded) rather than spin, and
                // say so at most once per interval rather than once per failure.
                failures += 1;
                if reported.is_none_or(|at| at.elapsed() >= ACCEPT_REPORT_INTERVAL) {
                    tracing::warn!("accept failed ({failures} times since the last report): {e}");
                    failures = 0;
                    reported = Some(Instant::now());
                }
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// First pause after a failed `accept`; doubled on each further failure up to
/// [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Failed accepts are logged at most once per this interval (with a count).
const ACCEPT_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// State every core shares: the node-wide budgets.
struct Shared {
    body_budget: BodyBudget,
    /// This core's share of [`ServerLimits::max_connections`].
    connections_per_core: usize,
}

/// Request-body bytes buffered on the node, against [`ServerLimits::max_buffered_body_bytes`].
/// One atomic add per request that has a body; requests without one never touch it.
struct BodyBudget {
    used: AtomicUsize,
    limit: usize,
}

impl BodyBudget {
    fn try_reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Body bytes a request holds against the node's budget until it is answered. A request without
/// a body never touches the budget (nor clones its `Arc`).
#[derive(Default)]
struct Reserved {
    /// Set once something is reserved.
    shared: Option<Arc<Shared>>,
    bytes: usize,
}

impl Reserved {
    /// Grows the reservation to `bytes`; `false` (and nothing more reserved) if the budget is
    /// spent.
    fn grow_to(&mut self, shared: &Arc<Shared>, bytes: usize) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        if !shared.body_budget.try_reserve(bytes - self.bytes) {
            return false;
        }
        self.shared.get_or_insert_with(|| shared.clone());
        self.bytes = bytes;
        true
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.body_budget.release(self.bytes);
        }
    }
}

fn budget_spent() -> Closed {
    Closed::With(
        503,
        "the server is buffering too many request bodies; try again\n".into(),
    )
}

/// Per-core state shared by its connections.
struct CoreState {
    limits: ServerLimits,
    timeouts: Timeouts,
    shared: Arc<Shared>,
    /// Connections open on this core.
    active: Cell<usize>,
    /// The accept loop, waiting for a connection to close (at the connection cap).
    slot_waiter: RefCell<Option<Waker>>,
    stopped: Cell<bool>,
    /// Connections waiting for a next request, woken to close on shutdown.
    idle: RefCell<HashMap<u64, Waker>>,
    next_id: Cell<u64>,
    /// The `Date` value, re-formatted once per second (RFC 9110 §6.6.1 wants one per response).
    date: RefCell<(u64, String)>,
}

impl CoreState {
    fn new(limits: ServerLimits, timeouts: Timeouts, shared: Arc<Shared>) -> CoreState {
        CoreState {
            limits,
            timeouts,
            shared,
            active: Cell::new(0),
            slot_waiter: RefCell::new(None),
            stopped: Cell::new(false),
            idle: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            date: RefCell::new((0, String::new())),
        }
    }

    fn stop(&self) {
        self.stopped.set(true);
        for (_, waker) in self.idle.borrow_mut().drain() {
            waker.wake();
        }
    }

    fn write_date(&self, out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut date = self.date.borrow_mut();
        if date.0 != secs || date.1.is_empty() {
            *date = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(date.1.as_bytes());
    }
}

/// Resolves when the core stops; while pending, its connection counts as idle.
struct Stopped<'a> {
    state: &'a CoreState,
    id: u64,
}

impl Future for Stopped<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.stopped.get() {
            return Poll::Ready(());
        }
        self.state
            .idle
            .borrow_mut()
            .insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.state.idle.borrow_mut().remove(&self.id);
    }
}

/// Counts a connection as active for as long as it lives.
struct Active(Rc<CoreState>);

impl Active {
    fn new(state: Rc<CoreState>) -> Active {
        state.active.set(state.active.get() + 1);
        Active(state)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        if let Some(waker) = self.0.slot_waiter.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// Resolves when the core has room for another connection.
struct SlotFree<'a>(&'a CoreState);

impl Future for SlotFree<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.active.get() < self.0.shared.connections_per_core {
            return Poll::Ready(());
        }
        *self.0.slot_waiter.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Why a connection ended early.
enum Closed {
    /// The peer went away or a read failed: nothing more to send.
    Quietly,
    /// Answer with this status and message, then close.
    With(u16, String),
}

impl From<ParseError> for Closed {
    fn from(e: ParseError) -> Self {
        Closed::With(e.status(), format!("{e}\n"))
    }
}

struct Conn<S> {
    stream: S,
    /// Bytes received and not yet consumed by a request.
    buf: BytesMut,
    /// Responses waiting to be written.
    out: Vec<u8>,
    state: Rc<CoreState>,
    id: u64,
    /// When the request being read began to arrive (for [`Timeouts::request_read`]).
    request_started: Instant,
}

/// Completes a TLS handshake (within its timeout, or until the core stops), then serves the
/// connection like a plain one. A failed handshake closes it: rustls has already sent the alert.
async fn tls_connection<H: Handler>(
    stream: TcpStream,
    tls: Rc<TlsAccept>,
    handler: Rc<H>,
    active: Active,
) {
    let state = active.0.clone();
    let id = state.next_id.get();
    state.next_id.set(id + 1);
    // No request is in flight during a handshake: on shutdown it is abandoned like an idle
    // connection.
    let stopped = Stopped { state: &state, id };
    let handshake = monoio::time::timeout(tls.timeout, tls.acceptor.accept(stream));
    let stream = monoio::select! {
        r = handshake => match r {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        _ = stopped => return,
    };
    connection(TlsStream::new(stream), handler, active).await;
}

async fn connection<S, H>(stream: S, handler: Rc<H>, _active: Active)
where
    S: AsyncReadRent + AsyncWriteRent,
    H: Handler,
{
    let state = _active.0.clone();
    let id = state.next_id.get();
    state.next_id.set(id + 1);
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
        out: Vec::with_capacity(1024),
        state,
        id,
        request_started: Instant::now(),
    };
    if let Err(Closed::With(status, message)) = conn.serve(&*handler).await {
        let mut response = handler.error_response(status, &message);
        if status == 503 {
            response.headers.push((
                bytes::Bytes::from_static(b"retry-after"),
                bytes::Bytes::from_static(b"1"),
            ));
        }
        conn.queue_response(&response, false, false, 1);
        let _ = conn.flush().await;
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> Conn<S> {
    async fn serve<H: Handler>(&mut self, handler: &H) -> Result<(), Closed> {
        loop {
            let Some(head) = self.read_head().await? else {
                return Ok(());
            };
            if let Some(response) = handler.check_head(&head, &self.buf) {
                // The body is never read, so the connection cannot go on.
                self.queue_response(&response, head.is_head, false, head.minor_version);
                self.flush().await?;
                return Ok(());
            }
            if head.expect_continue
                && head.framing != BodyFraming::Length(0)
                && self.buf.len() == head.len
            {
                // RFC 9110 §10.1.1: the client waits for this before sending the body.
                self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                self.flush().await?;
            }
            let (req, reserved) = self.read_request(&head).await?;
            let response = handler.call(req).await;
            drop(reserved);
            let keep_alive = head.keep_alive && !self.state.stopped.get();
            self.queue_response(&response, head.is_head, keep_alive, head.minor_version);
            if response.body.len() > COALESCE_BODY_BYTES
                && !head.is_head
                && has_body(response.status)
            {
                self.flush().await?;
                let write = self.stream.write_all(response.body);
                match monoio::time::timeout(self.state.timeouts.write, write).await {
                    Ok((Ok(_), _)) => {}
                    _ => return Err(Closed::Quietly),
                }
            }
            if !keep_alive {
                self.flush().await?;
                return Ok(());
            }
            if self.out.len() > MAX_PENDING_WRITE_BYTES {
                self.flush().await?;
            }
        }
    }

    /// Reads until a whole head is buffered. `None` when the client closed (or went idle too long,
    /// or the core is stopping) between requests.
    async fn read_head(&mut self) -> Result<Option<Head>, Closed> {
        // A pipelined request has begun already.
        let mut started = (!self.buf.is_empty()).then(Instant::now);
        loop {
            if !self.buf.is_empty()
                && let Parsed::Complete(head) = parse_head(&self.buf, &self.state.limits)?
            {
                self.request_started = started.unwrap_or_else(Instant::now);
                return Ok(Some(head));
            }
            // Nothing more to parse: send what is queued before waiting for the client.
            self.flush().await?;
            // A timed-out read keeps the buffer it was given: decide what a timeout means now.
            let idle = self.buf.is_empty();
            let read = if idle {
                let timeout = self.state.timeouts.idle;
                let stopped = Stopped {
                    state: &self.state,
                    id: self.id,
                };
                monoio::select! {
                    r = monoio::time::timeout(timeout, read_more(&mut self.stream, &mut self.buf)) => r,
                    _ = stopped => return Ok(None),
                }
            } else {
                let started = *started.get_or_insert_with(Instant::now);
                let timeouts = &self.state.timeouts;
                let left = timeouts
                    .header_read
                    .min(timeouts.request_read)
                    .saturating_sub(started.elapsed());
                monoio::time::timeout(left, read_more(&mut self.stream, &mut self.buf)).await
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {
                    started.get_or_insert_with(Instant::now);
                }
                Err(_) if idle => return Ok(None),
                Err(_) => {
                    return Err(Closed::With(
                        408,
                        "timed out reading the request head\n".into(),
                    ));
                }
            }
        }
    }

    /// Reads the body of `head` and builds the request, leaving any pipelined bytes buffered.
    /// The body's bytes are reserved against the node's budget until the returned guard drops.
    async fn read_request(&mut self, head: &Head) -> Result<(Request, Reserved), Closed> {
        let mut reserved = Reserved::default();
        // An `Rc` clone (this core's state), so the budget can be reached while `self` reads.
        let state = self.state.clone();
        let shared = &state.shared;
        match head.framing {
            BodyFraming::Length(n) => {
                if !reserved.grow_to(shared, n as usize) {
                    return Err(budget_spent());
                }
                let total = head.len + n as usize;
                self.buf.reserve(total.saturating_sub(self.buf.len()));
                while self.buf.len() < total {
                    self.read_body_bytes().await?;
                }
                // Head and body share one allocation; every field is a slice of it.
                let message = self.buf.split_to(total).freeze();
                let body = message.slice(head.len..);
                Ok((head.to_request(&message, body), reserved))
            }
            BodyFraming::Chunked => {
                let message = self.buf.split_to(head.len).freeze();
                let limits = self.state.limits;
                let mut decoder =
                    ChunkedDecoder::new(limits.max_body_bytes, limits.max_header_bytes);
                let mut body = BytesMut::new();
                loop {
                    let progress = decoder.decode(&self.buf, &mut body)?;
                    self.buf.advance(progress.consumed);
                    if body.len() > reserved.bytes
                        && !reserved
                            .grow_to(shared, body.len().next_multiple_of(BODY_RESERVATION_STEP))
                    {
                        return Err(budget_spent());
                    }
                    if progress.done {
                        break;
                    }
                    self.read_body_bytes().await?;
                }
                Ok((head.to_request(&message, body.freeze()), reserved))
            }
        }
    }

    async fn read_body_bytes(&mut self) -> Result<(), Closed> {
        let timeouts = &self.state.timeouts;
        let left = timeouts
            .request_read
            .saturating_sub(self.request_started.elapsed());
        let timeout = timeouts.body_read.min(left);
        match monoio::time::timeout(timeout, read_more(&mut self.stream, &mut self.buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Err(Closed::Quietly),
            Ok(Ok(_)) => Ok(()),
            Err(_) => Err(Closed::With(
                408,
                "timed out reading the request body\n".into(),
            )),
        }
    }

    /// Serialises a response head (and a short body) into the write queue.
    fn queue_response(&mut self, r: &Response, is_head: bool, keep_alive: bool, minor: u8) {
        let out = &mut self.out;
        // Workers can only produce final statuses (`tenantry_core::is_final_status`); this
        // keeps any other handler from writing an interim one as the answer, which would
        // desynchronise the connection.
        let status = if tenantry_core::is_final_status(r.status) {
            r.status
        } else {
            500
        };
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa3(status).as_slice());
        out.push(b' ');
        out.extend_from_slice(reason(status).as_bytes());
        out.extend_from_slice(b"\r\ndate: ");
        self.state.write_date(out);
        let with_body = has_body(status);
        if with_body {
            out.extend_from_slice(b"\r\ncontent-length: ");
            out.extend_from_slice(r.body.len().to_string().as_bytes());
        }
        if !keep_alive {
            out.extend_from_slice(b"\r\nconnection: close");
        } else if minor == 0 {
            out.extend_from_slice(b"\r\nconnection: keep-alive");
        }
        for (name, value) in &r.headers {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n\r\n");
        if with_body && !is_head && r.body.len() <= COALESCE_BODY_BYTES {
            out.extend_from_slice(&r.body);
        }
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let write = self.stream.write_all(out);
        // A client that does not read is dropped (its buffer with it) once the write deadline
        // passes.
        let Ok((res, mut out)) = monoio::time::timeout(self.state.timeouts.write, write).await
        else {
            return Err(Closed::Quietly);
        };
        out.clear();
        self.out = out;
        res.map(|_| ()).map_err(|_| Closed::Quietly)
    }
}

/// Reads whatever the socket has into the spare capacity of `buf`, growing it when full.
async fn read_more<S: AsyncReadRent>(stream: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 4 {
        buf.reserve(READ_BUFFER_BYTES);
    }
    let len = buf.len();
    let owned = std::mem::take(buf);
    let (res, slice) = stream.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    res
}

/// RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content.
fn has_body(status: u16) -> bool {
    !(status < 200 || status == 204 || status == 304)
}

fn itoa3(status: u16) -> [u8; 3] {
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

/// Reason phrases for common statuses; others get an empty one (RFC 9112 §4 allows it).
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
