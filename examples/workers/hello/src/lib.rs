//! The smallest Worker: `200`, `content-type: text/plain`, `x-worker: hello`, and the body
//! `hello from tenantry\n`.

use tenantry_sdk::{Request, Response};

fn handle(_req: Request) -> Response {
    Response::ok()
        .header("content-type", "text/plain")
        .header("x-worker", "hello")
        .body("hello from tenantry\n")
}

tenantry_sdk::main!(handle);
