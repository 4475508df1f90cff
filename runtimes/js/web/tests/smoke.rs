use rquickjs::{Context, Runtime};

#[test]
fn installs() {
    let rt = Runtime::new().unwrap();
    let ctx = Context::full(&rt).unwrap();
    ctx.with(|ctx| {
        if let Err(e) = tenantry_js_web::install(&ctx) {
            let ex = ctx.catch();
            panic!("{e}: {:?}", ex);
        }
        let r: rquickjs::Result<String> = ctx.eval(r#"
            const h = new Headers({A: "1"}); h.append("a", "2");
            const u = new URL("https://ex.com/a?b=1#c"); u.searchParams.append("x", "y z");
            JSON.stringify([h.get("a"), u.href, [...h], new TextDecoder().decode(new TextEncoder().encode("hé")), btoa("hi"), atob("aGk="), new Response("x").headers.get("content-type")])
        "#);
        match r {
            Ok(s) => println!("{s}"),
            Err(e) => panic!("{e}: {:?}", ctx.catch()),
        }
    });
}
