//! Shared test helpers: building the example Workers, starting a real node on port 0, and a
//! small raw HTTP/1.1 client over std sockets (every read bounded by a timeout).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use tenantry::config::Config;
use tenantry::serve::Node;

/// Every socket read in a test gives up after this long, so a bug shows as a failure, not a hang.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds `examples/workers` to wasm32-wasip1 once per test run and returns the output folder.
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1", "--manifest-path"])
            .arg(root.join("examples/workers/Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join("target/guests"))
            .status()
            .expect("running cargo to build the example Workers");
        assert!(status.success(), "building examples/workers failed (is the wasm32-wasip1 target installed? run scripts/setup.sh)");
        root.join("target/guests/wasm32-wasip1/release")
    })
}

/// The path of an example Worker's module, e.g. `guest("hello")`.
pub fn guest(name: &str) -> PathBuf {
    let path = guests_dir().join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A node started from config text in a fresh temporary data directory.
pub struct TestNode {
    pub node: Option<Node>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node from `body` (config without `data_dir` and `[server]`, which this adds:
    /// 127.0.0.1 port 0, 2 threads, the given driver).
    pub fn start_with_driver(body: &str, driver: &str) -> TestNode {
        js_engine_ready();
        let dir = tempfile::tempdir().unwrap();
        let node = start_in(dir.path(), body, driver)
            .unwrap_or_else(|e| panic!("node failed to start: {e:#}"));
        let addr = node.local_addr();
        TestNode {
            node: Some(node),
            addr,
            dir,
        }
    }

    pub fn start(body: &str) -> TestNode {
        Self::start_with_driver(body, "auto")
    }

    /// Stops the node and starts a new one on the same data directory and config.
    pub fn restart(&mut self, body: &str) {
        if let Some(node) = self.node.take() {
            node.shutdown();
        }
        let node = start_in(self.dir.path(), body, "auto").unwrap();
        self.addr = node.local_addr();
        self.node = Some(node);
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown();
        }
    }
}

/// Prepares the JavaScript engine once per test process, in `target/test-js-engine` (kept between
/// runs: its file name carries the engine's and the wasmtime configuration's hashes), before any
/// test node needs it: every node's store then links that file instead of spending seconds of
/// Cranelift inside a request with a client timeout.
pub fn js_engine_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = repo_root().join("target/test-js-engine");
        std::fs::create_dir_all(&dir).unwrap();
        let module = dir.join("ready.mjs");
        std::fs::write(
            &module,
            "export default { fetch() { return new Response('ready'); } };",
        )
        .unwrap();
        let body = format!(
            "[[namespace]]\nname = \"warm\"\n[[worker]]\nnamespace = \"warm\"\nname = \"ready\"\nmodule = \"{}\"\n",
            module.display()
        );
        // Deploying the file prepares the engine (or finds it from an earlier run).
        let node = start_in(&dir, &body, "auto").expect("the JavaScript engine prepares");
        node.shutdown();
    });
}

/// The config text a test node runs with.
pub fn config_text(body: &str, driver: &str) -> String {
    format!(
        "data_dir = \"data\"\n[server]\nlisten = \"127.0.0.1:0\"\nthreads = 2\ndriver = \"{driver}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntokens = [\"test-token\"]\n\
         legacy_keys = [{{ email = \"ops@example.test\", key = \"legacy-key\" }}]\n\
         [engine]\nmax_instances = 64\n{body}"
    )
}

fn start_in(dir: &Path, body: &str, driver: &str) -> anyhow::Result<Node> {
    let path = dir.join("tenantry.toml");
    let text = config_text(body, driver);
    std::fs::write(&path, &text)?;
    let config = Config::parse(&text, &path)?;
    Node::start(&config)
}

/// A `[[worker]]` table for an example guest.
pub fn worker(ns: &str, name: &str, guest_name: &str, extra: &str) -> String {
    format!(
        "[[worker]]\nnamespace = \"{ns}\"\nname = \"{name}\"\nmodule = \"{}\"\n{extra}\n",
        guest(guest_name).display()
    )
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The first response in `buf` (Content-Length framed; `head` = true for a HEAD request's
/// response), taken out of it; `None` until `buf` holds all of it.
pub fn take_response(buf: &mut Vec<u8>, head: bool) -> Result<Option<Resp>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = parsed.parse(buf).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let status = parsed.code.unwrap();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
    let len = if head { 0 } else { len };
    if buf.len() < n + len {
        return Ok(None);
    }
    let body = buf[n..n + len].to_vec();
    buf.drain(..n + len);
    Ok(Some(Resp {
        status,
        headers,
        body,
    }))
}

/// A connection that can send raw bytes and read responses one by one.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Another handle on the same socket, e.g. to write from a second thread.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().unwrap()
    }

    /// Reads one response (Content-Length framed; `head` = true for a HEAD request's response).
    pub fn read_response(&mut self, head: bool) -> Resp {
        loop {
            if let Some(resp) = take_response(&mut self.buf, head).unwrap() {
                return resp;
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        // A read with a timeout is not restarted after a signal (e.g. the whole machine being
        // paused and resumed): read again.
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => break read.expect("reading a response"),
            }
        };
        assert!(
            n > 0,
            "connection closed before a full response; got {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Reads until the server closes the connection; returns whatever was left.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut rest).unwrap();
        rest
    }
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut conn = Conn::open(addr);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    conn.send(&bytes);
    conn.read_response(method == "HEAD")
}

pub fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    request(addr, "GET", host, path, &[], b"")
}

/// A `multipart/form-data` upload as Cloudflare's API takes it: a `metadata` part (JSON text) and
/// one module part named `module_name`. Returns the Content-Type and the body.
pub fn multipart(metadata: &str, module_name: &str, module: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----tenantry-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
         Content-Type: application/json\r\n\r\n{metadata}\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"{module_name}\"; filename=\"{module_name}\"\r\n\
         Content-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(module);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A `[[worker]]` table for a guest written as WAT in a test: compiled to `dir/{name}.wasm`.
pub fn wat_worker(dir: &Path, ns: &str, name: &str, wat: &str, extra: &str) -> String {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_str(wat).expect("test WAT parses")).unwrap();
    format!(
        "[[worker]]\nnamespace = \"{ns}\"\nname = \"{name}\"\nmodule = \"{}\"\n{extra}\n",
        path.display()
    )
}

/// Reads one HTTP/1.1 request (head lines without CRLF, and its `Content-Length` body) for the
/// tests' local upstreams; `None` when the client closed or sent a short body.
pub fn read_upstream_request(
    reader: &mut std::io::BufReader<TcpStream>,
) -> Option<(Vec<String>, Vec<u8>)> {
    use std::io::BufRead;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let length = head
        .iter()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}
