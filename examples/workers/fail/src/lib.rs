//! Fails on purpose: the handler returns `Err`, the SDK logs it and `tenantry_fetch` returns
//! non-zero (`tenantry_sdk::EXIT_HANDLER_ERROR`), and the client gets `500`.

use tenantry_sdk::{Request, Response};

fn handle(_req: Request) -> Result<Response, &'static str> {
    Err("this Worker always fails")
}

tenantry_sdk::main!(handle);
