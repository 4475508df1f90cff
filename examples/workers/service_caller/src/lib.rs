//! Calls the Worker behind its `BACKEND` service binding `?n=` times (default 1), forwarding
//! the incoming request, and answers with the bodies joined. A failed call ends it with `429`
//! (subrequest budget), `404` (no such Worker) or `502`, and the host's explanation.

use tenantry_sdk::fetch::{self, FetchError, OutgoingRequest};
use tenantry_sdk::{Error, Request, Response};

fn handle(req: Request) -> Result<Response, Error> {
    let n: usize = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(1);
    let backend = fetch::service("BACKEND");
    let mut body = Vec::new();
    for i in 0..n {
        let out = OutgoingRequest::from_incoming(&req)?;
        match backend.fetch(&out) {
            Ok(resp) => body.extend(resp.body()?),
            Err(e) => {
                let status = match &e {
                    FetchError::NotFound(_) => 404,
                    FetchError::Failed(Error::Limit, _) => 429,
                    _ => 502,
                };
                return Ok(Response::with_status(status).body(format!("call {}: {e}\n", i + 1)));
            }
        }
    }
    Ok(Response::ok().body(body))
}

tenantry_sdk::main!(handle);
