//! Times JS snippets in a context with the Web APIs (development aid).
//! cargo run --release --example pieces -- '<js returning a string>'
use rquickjs::{Context, Runtime};
fn main() {
    let rt = Runtime::new().unwrap();
    let ctx = Context::full(&rt).unwrap();
    let src = std::env::args().nth(1).unwrap_or_default();
    ctx.with(|ctx| {
        tenantry_js_web::install(&ctx).unwrap();
        let prelude = r#"
            const I = __tenantry_web;
            const h = ["host", "example.com", "user-agent", "bench", "accept", "*/*"];
            const best = (name, f) => { let b = Infinity; for (let k = 0; k < 5; k++) { const t = Date.now(); for (let i = 0; i < 200000; i++) f(); b = Math.min(b, Date.now() - t); } return name + ": " + (b * 1000 / 200000).toFixed(3) + "us"; };
        "#;
        let out: String = ctx.eval(format!("{prelude}\n{src}")).unwrap();
        println!("{out}");
    });
}
