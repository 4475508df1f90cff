//! What the Web APIs cost per request, natively: one incoming `Request` built by the engine's
//! entry point, a hello handler, and the `Response` read back; plus the one-off `install`.
//!
//! cargo run --release --example cycle --manifest-path runtimes/js/web/Cargo.toml

use std::time::Instant;

use rquickjs::{Array, Context, Function, Object, Runtime, Value};

const ROUNDS: u32 = 100_000;

fn main() {
    let rt = Runtime::new().unwrap();
    let ctx = Context::full(&rt).unwrap();
    ctx.with(|ctx| {
        let start = Instant::now();
        tenantry_js_web::install(&ctx).unwrap();
        println!("install: {:?}", start.elapsed());

        let internals: Object = tenantry_js_web::internals(&ctx).unwrap();
        let new_request: Function = internals.get("newRequest").unwrap();
        let response_parts: Function = internals.get("responseParts").unwrap();
        let handler: Function = ctx
            .eval(r#"(request) => new Response("Hello from " + new URL(request.url).pathname)"#)
            .unwrap();
        let headers: Vec<&str> = vec![
            "host",
            "example.com",
            "user-agent",
            "bench",
            "accept",
            "*/*",
        ];

        let start = Instant::now();
        for _ in 0..ROUNDS {
            let request: Value = new_request
                .call((
                    "GET",
                    "http://example.com/hello",
                    headers.clone(),
                    Value::new_null(ctx.clone()),
                ))
                .unwrap();
            let response: Value = handler.call((request,)).unwrap();
            let parts: Array = response_parts.call((response,)).unwrap();
            let body: String = parts.get(3).unwrap();
            assert_eq!(body, "Hello from /hello");
        }
        let per = start.elapsed() / ROUNDS;
        println!("request -> handler -> response parts: {per:?} per round ({ROUNDS} rounds)");
    });
}
