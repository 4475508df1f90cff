//! A platform outbound Worker: every subrequest of a customer Worker dispatched through a
//! `dispatch_namespace` binding with `outbound = { service = "outbound", parameters =
//! ["customer"] }` arrives here first, with the dispatcher's `customer` parameter as a binding.
//!
//! - a URL containing `/blocked` → `403`, answered here;
//! - a URL containing `/answer` → `200` answered here, never reaching the network;
//! - anything else is forwarded for real with `x-customer: <customer>` added, and the upstream's
//!   response comes back with `x-outbound: seen`.

use tenantry_sdk::fetch::{self, OutgoingRequest};
use tenantry_sdk::{Error, Request, Response, env};

fn handle(req: Request) -> Result<Response, Error> {
    let customer = env::var("customer").unwrap_or_else(|| "unknown".into());
    let url = req.url();
    if url.contains("/blocked") {
        return Ok(Response::with_status(403).body(format!("blocked by outbound for {customer}\n")));
    }
    if url.contains("/answer") {
        return Ok(Response::ok().body(format!("answered by outbound for {customer}\n")));
    }
    let out = OutgoingRequest::from_incoming(&req)?.header("x-customer", &customer)?;
    match fetch::fetch(&out) {
        Ok(resp) => {
            resp.forward()?;
            Ok(Response::new().header("x-outbound", "seen"))
        }
        Err(e) => Ok(Response::with_status(502).body(format!("outbound: {e}\n"))),
    }
}

tenantry_sdk::main!(handle);
