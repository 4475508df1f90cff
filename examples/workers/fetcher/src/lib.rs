//! Fetches the URL in `?url=` (`?n=` times, default 1) and forwards the last response. With
//! `?via=service` it asks the Worker behind its `BACKEND` service binding to do it instead (which
//! gets the same query). With `?count=1` it reads the body in 64 KiB pieces instead and answers
//! `read <bytes> bytes`. A refused or failed fetch is `502` with the host's explanation; a spent
//! subrequest budget `429`.

use tenantry_sdk::fetch::{self, FetchError, OutgoingRequest};
use tenantry_sdk::{Error, Request, Response};

fn handle(req: Request) -> Result<Response, Error> {
    let n: usize = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(1);
    let via_service = req.query("via").as_deref() == Some("service");
    let Some(url) = req.query("url") else {
        return Ok(Response::with_status(400).body("give ?url=\n"));
    };
    let mut last = None;
    for i in 0..n {
        let result = if via_service {
            let mut forwarded = req.url();
            forwarded = forwarded.replace("via=service", "via=direct");
            fetch::service("BACKEND").fetch(&OutgoingRequest::new("GET", &forwarded)?)
        } else {
            fetch::fetch(&OutgoingRequest::new("GET", &url)?.header("x-from", "fetcher")?)
        };
        match result {
            Ok(resp) => last = Some(resp),
            Err(e) => {
                let status = match &e {
                    FetchError::Failed(Error::Limit, _) => 429,
                    _ => 502,
                };
                return Ok(Response::with_status(status).body(format!("fetch {}: {e}\n", i + 1)));
            }
        }
    }
    if req.query("count").is_some()
        && let Some(resp) = &last
    {
        let mut buf = vec![0; 64 << 10];
        let mut total = 0usize;
        loop {
            match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => {
                    let why = fetch::last_error();
                    return Ok(Response::with_status(502)
                        .body(format!("after {total} bytes: {why} ({e})\n")));
                }
            }
        }
        return Ok(Response::ok().body(format!("read {total} bytes\n")));
    }
    match last {
        Some(resp) => {
            resp.forward()?;
            Ok(Response::new())
        }
        None => Ok(Response::with_status(204)),
    }
}

tenantry_sdk::main!(handle);
