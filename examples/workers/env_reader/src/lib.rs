//! Returns the binding named by the query parameter `name` (`/?name=GREETING`) as the body, with
//! `x-binding-kind: plain_text | json | secret_text`; `404` and `no binding <name>` if the Worker
//! has no such binding. Without `?name=` it answers `env_reader` and reveals nothing.

use tenantry_sdk::{Request, Response, env};

fn handle(req: Request) -> Response {
    let text = |resp: Response| resp.header("content-type", "text/plain");
    let Some(name) = req.query("name") else {
        return text(Response::ok()).body("env_reader\n");
    };
    // Ask for the value only if the binding exists.
    let binding = env::kind(&name).and_then(|kind| env::var(&name).map(|value| (kind, value)));
    match binding {
        Some((kind, value)) => {
            let content_type = match kind {
                env::Kind::Json => "application/json",
                _ => "text/plain",
            };
            Response::ok()
                .header("content-type", content_type)
                .header("x-binding-kind", kind.as_str())
                .body(value)
        }
        None => text(Response::with_status(404)).body(format!("no binding {name}")),
    }
}

tenantry_sdk::main!(handle);
