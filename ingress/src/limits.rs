//! Every limit and timeout of the HTTP server, in one place. The config file can override the
//! ones in [`ServerLimits`] and [`Timeouts`]; the rest are fixed by the protocol code.

use std::time::Duration;

/// Most header fields one request may carry; more get `431`. Parsing uses a stack array of this
/// many slots (`httparse` needs them up front), so it bounds stack use too.
pub const MAX_HEADERS: usize = 128;

/// Default bound on the request line plus header fields; larger heads get `431`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 10;

/// Default bound on a request body (after de-chunking); larger bodies get `413`. The whole body is
/// buffered before the Worker runs (docs/design.md), so this bounds memory per connection.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// Longest request target accepted (`414` past it): Cloudflare's URL limit is 16 KiB, and a
/// Worker gets its URL copied into its memory on every `request_url`.
pub const MAX_REQUEST_TARGET_BYTES: usize = 16 << 10;

/// Longest chunk-size line (size, extensions, CRLF) accepted in a chunked body. Extensions are
/// ignored, so anything longer is only a way to make the server buffer bytes.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// Initial read buffer per connection; it grows up to the head and body limits as needed.
pub const READ_BUFFER_BYTES: usize = 8 << 10;

/// Responses are gathered into one buffer and written with one syscall when the body is at most
/// this long; longer bodies are written straight from their own buffer after the head.
pub const COALESCE_BODY_BYTES: usize = 16 << 10;

/// Pipelined responses are flushed once this many bytes are waiting, even if more requests are
/// already buffered, so a client that pipelines thousands of requests cannot grow the buffer.
pub const MAX_PENDING_WRITE_BYTES: usize = 256 << 10;

/// Default cap on client connections open at once on the whole node (split evenly between the
/// cores). Past it a core stops accepting until one of its connections closes; newcomers wait
/// in the kernel's backlog instead of failing `accept` at the descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default budget of request-body bytes the whole node buffers at once. Bodies are read whole
/// before the Worker runs, so without it 30 clients each sending a 16 MiB body hold ~490 MB;
/// past it a request gets `503` with `Retry-After` and its connection is closed.
pub const DEFAULT_MAX_BUFFERED_BODY_BYTES: usize = 256 << 20;

/// Chunked bodies reserve budget in steps of this many bytes as they grow.
pub const BODY_RESERVATION_STEP: usize = 64 << 10;

/// Size limits a config file may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Request line plus header fields, in bytes (`431` past it).
    pub max_header_bytes: usize,
    /// Request body after de-chunking, in bytes (`413` past it).
    pub max_body_bytes: usize,
    /// Client connections open at once on the node ([`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Request-body bytes buffered at once on the node ([`DEFAULT_MAX_BUFFERED_BODY_BYTES`]).
    pub max_buffered_body_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_buffered_body_bytes: DEFAULT_MAX_BUFFERED_BODY_BYTES,
        }
    }
}

/// How long the server waits for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the first byte of a request to the end of its head (`408` and close past it).
    pub header_read: Duration,
    /// Between two reads of a request body (`408` and close past it).
    pub body_read: Duration,
    /// From the first byte of a request to the end of its body, however the bytes trickle in
    /// (`408` and close past it): a client sending a byte just inside `body_read` cannot hold a
    /// connection and its buffer forever. Default 60 s.
    pub request_read: Duration,
    /// How long one write to a client may wait for it to read (close past it): a client that
    /// pipelines requests and never reads cannot hold its responses in memory forever.
    /// Default 30 s.
    pub write: Duration,
    /// How long a kept-alive connection may sit without a new request before it is closed.
    pub idle: Duration,
    /// On shutdown, how long requests already running may take before their core stops anyway.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            request_read: Duration::from_secs(60),
            write: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            drain: Duration::from_secs(30),
        }
    }
}
