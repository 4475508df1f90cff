//! A platform dispatch Worker (deployed as a `[[platform_worker]]` with a `dispatch_namespace`
//! binding `CUSTOMERS`). It picks the customer Worker for each request, in this order:
//!
//! 1. the `x-customer` header;
//! 2. a path of the form `/w/<name>/rest`, forwarded as `/rest`;
//! 3. the first label of the host (`alice.example.test` → `alice`).
//!
//! Per-call limits come from `x-cpu-ms`, `x-memory-mb`, `x-wall-ms` and `x-subrequests` request
//! headers (a real platform would take them from the customer's plan). `x-binding` picks another
//! `dispatch_namespace` binding than `CUSTOMERS`, and `x-outbound-customer` is passed to its
//! outbound Worker as the `customer` parameter. The customer's response
//! is forwarded with `x-dispatched-by: tenantry-dispatcher` added; a missing Worker gets `404`,
//! a Worker over a limit `503` with the limit named, anything else `502`. Routing headers
//! (`x-customer`, `x-cpu-ms`, …) are removed before the customer sees the request.

use tenantry_sdk::fetch::{self, CallLimits, FetchError, OutgoingRequest};
use tenantry_sdk::{Error, Request, Response};

const CONTROL_HEADERS: [&str; 7] = [
    "x-customer",
    "x-cpu-ms",
    "x-memory-mb",
    "x-wall-ms",
    "x-subrequests",
    "x-binding",
    "x-outbound-customer",
];

fn number(req: &Request, name: &str) -> u32 {
    req.header(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn text(status: u16, body: String) -> Response {
    Response::with_status(status)
        .header("content-type", "text/plain")
        .body(body)
}

fn handle(req: Request) -> Result<Response, Error> {
    let url = req.url();
    let after_scheme = url.trim_start_matches("http://");
    let (host, path) = after_scheme.split_at(after_scheme.find('/').unwrap_or(after_scheme.len()));
    let mut out = OutgoingRequest::from_incoming(&req)?;
    let name = if let Some(name) = req.header("x-customer") {
        name
    } else if let Some(rest) = path.strip_prefix("/w/") {
        let (name, rest) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let rest = if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        };
        out = out.url(&rest)?;
        name.to_string()
    } else {
        host.split(['.', ':'])
            .next()
            .unwrap_or_default()
            .to_string()
    };
    for h in CONTROL_HEADERS {
        out = out.remove_header(h)?;
    }
    let limits = CallLimits {
        cpu_ms: number(&req, "x-cpu-ms"),
        memory_mb: number(&req, "x-memory-mb"),
        wall_ms: number(&req, "x-wall-ms"),
        subrequests: number(&req, "x-subrequests"),
    };
    let binding = req
        .header("x-binding")
        .unwrap_or_else(|| "CUSTOMERS".into());
    let mut worker = fetch::dispatch_namespace(&binding)
        .get(&name)
        .limits(limits);
    if let Some(customer) = req.header("x-outbound-customer") {
        worker = worker.outbound_param("customer", &customer);
    }
    match worker.fetch(&out) {
        Ok(resp) => {
            resp.forward()?;
            Ok(Response::new().header("x-dispatched-by", "tenantry-dispatcher"))
        }
        Err(FetchError::NotFound(_)) => Ok(text(404, format!("no Worker named `{name}`\n"))),
        Err(FetchError::Exceeded(why)) => Ok(text(503, format!("{name}: {why}\n"))),
        Err(e) => Ok(text(502, format!("{name}: {e}\n"))),
    }
}

tenantry_sdk::main!(handle);
