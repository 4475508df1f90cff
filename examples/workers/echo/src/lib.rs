//! Describes the request it received, as plain text:
//!
//! ```text
//! <METHOD> <URL>
//! <name>: <value>        one line per request header, in the order received
//!
//! <the raw request body>
//! ```
//!
//! with `x-echo-length: <body bytes>`.

use std::io::Write;

use tenantry_sdk::{Error, Request, Response};

fn handle(req: Request) -> Result<Response, Error> {
    let body = req.body()?;
    let mut resp = Response::ok()
        .header("content-type", "text/plain")
        .header("x-echo-length", body.len().to_string());
    // Writing into the response's in-memory body cannot fail.
    let _ = writeln!(resp, "{} {}", req.method(), req.url());
    for (name, value) in req.headers() {
        let _ = writeln!(resp, "{name}: {value}");
    }
    let _ = resp.write_all(b"\n");
    let _ = resp.write_all(&body);
    Ok(resp)
}

tenantry_sdk::main!(handle);
