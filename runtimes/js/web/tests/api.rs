//! Behaviour that workerd cannot be asked about (the engine's internal entry points, the
//! prelude's own guarantees) or that needs more than one snippet to show.

mod common;

use common::js_with_cases;

fn check(js: &common::Js, expr: &str, want: &str) {
    assert_eq!(js.run(expr), want, "for {expr}");
}

#[test]
fn engine_builds_the_incoming_request() {
    let js = js_with_cases();
    let make = r#"__tenantry_web.newRequest("post", "http://Example.com/a b?x=1",
        ["Content-Type", "text/plain", "X-Many", "1", "x-many", "2"], "body é", { colo: "LHR" })"#;
    check(
        &js,
        &format!(
            "(async () => {{ const r = {make}; return [r.method, r.url, [...r.headers], r.cf, await r.text()]; }})()"
        ),
        r#"["post","http://example.com/a%20b?x=1",[["content-type","text/plain"],["x-many","1, 2"]],{"colo":"LHR"},"body é"]"#,
    );
    // Incoming headers are immutable, as workerd gives them.
    check(
        &js,
        &format!("{make}.headers.set('a', 'b')"),
        "throws TypeError",
    );
    // Bytes and stream bodies, and none.
    check(
        &js,
        r#"__tenantry_web.newRequest("PUT", "https://x/", [], new Uint8Array([104, 105])).text()"#,
        r#""hi""#,
    );
    check(
        &js,
        r#"__tenantry_web.newRequest("PUT", "https://x/", [], new ReadableStream({ start(c) { c.enqueue(new Uint8Array([111, 107])); c.close(); } })).text()"#,
        r#""ok""#,
    );
    check(
        &js,
        r#"__tenantry_web.newRequest("GET", "https://x/", [], null).body"#,
        "null",
    );
    // The URL is normalised when first read, not when the request is made (a Worker that never
    // reads it pays nothing); one that does not parse (a host never gives one) stays as given.
    check(
        &js,
        r#"(() => { const r = __tenantry_web.newRequest("GET", "HTTP://A.test", [], null); return [r.url, r.clone().url, new Request(r).url]; })()"#,
        r#"["http://a.test/","http://a.test/","http://a.test/"]"#,
    );
    check(
        &js,
        r#"__tenantry_web.newRequest("GET", "::", [], null).url"#,
        r#""::""#,
    );
    // The host's header block as it comes (`name: value` lines), split on first use.
    check(
        &js,
        r#"[...__tenantry_web.newRequest("GET", "https://x/", "Host: x\nX-A:  1 \r\nbad line\nx-a:2\n", null).headers]"#,
        r#"[["host","x"],["x-a","1, 2"]]"#,
    );
}

#[test]
fn engine_reads_the_response() {
    let js = js_with_cases();
    // A string body stays a string (no UTF-8 round trip); headers come as the flat list.
    check(
        &js,
        r#"__tenantry_web.responseParts(new Response("hé", { status: 201, statusText: "Made", headers: { "X-A": "1" } }))"#,
        r#"[201,"Made",["x-a","1","X-A","content-type","text/plain;charset=UTF-8","Content-Type"],"hé"]"#,
    );
    // The names keep the case first written (set replaces in place), as workerd sends them.
    check(
        &js,
        r#"(() => { const r = new Response(null, { headers: [["X-A", "1"], ["b", "2"], ["Set-Cookie", "c=1"], ["B", "3"]] });
            r.headers.set("x-a", "9"); r.headers.delete("b"); r.headers.append("Set-cookie", "d=2");
            return __tenantry_web.responseParts(r)[2]; })()"#,
        r#"["x-a","9","X-A","set-cookie","c=1","Set-Cookie","set-cookie","d=2","Set-cookie"]"#,
    );
    check(
        &js,
        r#"__tenantry_web.responseParts(new Response(new Uint8Array([1, 2])))[3]"#,
        r#"{"Uint8Array":["1","2"]}"#,
    );
    check(
        &js,
        r#"__tenantry_web.responseParts(new Response(null))[3]"#,
        "null",
    );
    // A body stream made from known bytes is unwrapped without reading it.
    check(
        &js,
        r#"(() => { const r = new Response("ab"); r.body; return __tenantry_web.responseParts(r)[3]; })()"#,
        r#"{"Uint8Array":["97","98"]}"#,
    );
    // A Worker's stream is handed over as is, and readAllBytes collects it.
    check(
        &js,
        r#"(async () => {
            const s = new ReadableStream({ start(c) { c.enqueue(new Uint8Array([1])); c.enqueue(new Uint8Array([2, 3])); c.close(); } });
            const body = __tenantry_web.responseParts(new Response(s))[3];
            return [body === s, await __tenantry_web.readAllBytes(body)];
        })()"#,
        r#"[true,{"Uint8Array":["1","2","3"]}]"#,
    );
    check(
        &js,
        r#"__tenantry_web.readAllBytes(new ReadableStream({ start(c) { c.enqueue("text"); c.close(); } }))"#,
        "throws TypeError",
    );
    // The body is used once read; a second read, or something that is not a Response, throws.
    check(
        &js,
        r#"(() => { const r = new Response("x"); __tenantry_web.responseParts(r); return [r.bodyUsed, __tenantry_web.responseParts(r)]; })()"#,
        "throws TypeError",
    );
    check(
        &js,
        r#"__tenantry_web.responseParts({ status: 200 })"#,
        "throws TypeError",
    );
    check(
        &js,
        r#"[__tenantry_web.isResponse(new Response()), __tenantry_web.isResponse({}), __tenantry_web.isResponse(null)]"#,
        "[true,false,false]",
    );
}

/// A byte source over `chunks`, counting its reads in `source.reads`.
const SOURCE: &str = r#"const source = (chunks) => ({ reads: 0, read() { this.reads++; return chunks.length ? new Uint8Array(chunks.shift()) : null; } });"#;

#[test]
fn engine_builds_a_fetched_response_over_a_byte_source() {
    let js = js_with_cases();
    let run = |body: &str| format!("(async () => {{ {SOURCE} {body} }})()");
    // As `new Response(body, { status, headers })` makes it: headers mutable, no content type.
    check(
        &js,
        &run(
            r#"const r = __tenantry_web.newResponse(201, ["x-a", "1", "X-A", "x-a", "2", "x-a"], source([[104], [105]]), "http://a.test/p#f");
            r.headers.set("b", "3");
            return [r.status, r.statusText, [...r.headers], r.url, r.redirected, r.bodyUsed, await r.text(), r.bodyUsed];"#,
        ),
        r#"[201,"",[["b","3"],["x-a","1, 2"]],"http://a.test/p",false,false,"hi",true]"#,
    );
    check(
        &js,
        &run(r#"const r = __tenantry_web.newResponse(200, [], null); return [r.url, r.body];"#),
        r#"["",null]"#,
    );
    check(
        &js,
        &run(r#"return __tenantry_web.newResponse(101, [], null);"#),
        "throws RangeError",
    );
    check(
        &js,
        &run(r#"return __tenantry_web.newResponse(204, [], source([]));"#),
        "throws TypeError",
    );
    // Untouched, the source itself comes back, unread; also through `new Response(r.body, r)`.
    check(
        &js,
        &run(
            r#"const s = source([[1]]); const r = __tenantry_web.newResponse(200, [], s);
            const again = new Response(r.body, r); const parts = __tenantry_web.responseParts(again);
            return [parts[3] === s, s.reads, r.bodyUsed];"#,
        ),
        "[true,0,true]",
    );
    check(
        &js,
        &run(
            r#"const s = source([[1]]); return [__tenantry_web.responseParts(__tenantry_web.newResponse(200, [], s))[3] === s, s.reads];"#,
        ),
        "[true,0]",
    );
    // Read: a stream pulls it only when read, chunk by chunk; readAllBytes takes a source too.
    check(
        &js,
        &run(
            r#"const s = source([[1], [2, 3]]); const r = __tenantry_web.newResponse(200, [], s);
            const body = r.body; const before = s.reads; const chunks = [];
            for await (const c of body) chunks.push([...c]);
            return [before, chunks, await __tenantry_web.readAllBytes(source([[4], [5]]))];"#,
        ),
        r#"[0,[[1],[2,3]],{"Uint8Array":["4","5"]}]"#,
    );
    // A source that throws rejects the read with its error; clone() tees it.
    check(
        &js,
        &run(
            r#"const r = __tenantry_web.newResponse(200, [], { read() { throw new TypeError("gone"); } });
            return await r.text();"#,
        ),
        "throws TypeError",
    );
    check(
        &js,
        &run(
            r#"const r = __tenantry_web.newResponse(200, [], source([[111, 107]]));
            const c = r.clone(); return [await r.text(), await c.text()];"#,
        ),
        r#"["ok","ok"]"#,
    );
}

#[test]
fn a_consumed_body_reads_as_an_empty_disturbed_stream() {
    let js = js_with_cases();
    check(
        &js,
        r#"(async () => { const r = new Response("x"); await r.text(); const b = r.body; return [b instanceof ReadableStream, r.bodyUsed]; })()"#,
        "[true,true]",
    );
}

#[test]
fn internals_cannot_be_replaced_or_enumerated() {
    let js = js_with_cases();
    check(
        &js,
        r#"(() => { try { globalThis.__tenantry_web = 1; } catch {} return [typeof __tenantry_web, Object.keys(globalThis).includes("__tenantry_web")]; })()"#,
        r#"["object",false]"#,
    );
    // Only the engine's functions are reachable there, and they cannot be swapped.
    check(
        &js,
        r#"(() => { try { __tenantry_web.newRequest = 1; } catch {} return [Object.getOwnPropertyNames(__tenantry_web), typeof __tenantry_web.newRequest]; })()"#,
        r#"[["newRequest","responseParts","isResponse","readAllBytes","setResponseUrl","newResponse"],"function"]"#,
    );
    // Globals are not enumerable, like Web IDL interfaces; instances carry no visible state.
    check(
        &js,
        r#"[Object.keys(globalThis).filter((k) => ["Headers", "Request", "Response", "URL", "TextEncoder", "atob"].includes(k)),
            Object.getOwnPropertyNames(new Headers({ a: "1" })), Object.getOwnPropertySymbols(new Response("x")),
            Object.getOwnPropertyNames(new URL("https://x/"))]"#,
        "[[],[],[],[]]",
    );
}

#[test]
fn unsupported_features_throw_errors_that_name_them() {
    let js = js_with_cases();
    for (expr, name) in [
        ("new TransformStream()", "TransformStream"),
        ("new WritableStream()", "WritableStream"),
        ("new CompressionStream('gzip')", "CompressionStream"),
        ("new ReadableStream().pipeTo({})", "ReadableStream.pipeTo"),
        ("new ReadableStream().getReader({ mode: 'byob' })", "byob"),
        ("URL.createObjectURL()", "URL.createObjectURL"),
        (
            "crypto.subtle.encrypt({ name: 'AES-GCM' }, null, new Uint8Array())",
            "crypto.subtle.encrypt",
        ),
        ("crypto.subtle.digest('SHA-3', new Uint8Array())", "SHA-3"),
        (
            "crypto.subtle.importKey('spki', new Uint8Array(1), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])",
            "spki",
        ),
        ("new TextDecoder('latin1')", "latin1"),
    ] {
        let got = js.run(&format!(
            "(async () => {{ try {{ await {expr}; return 'no error'; }} catch (e) {{ return e.message; }} }})()"
        ));
        assert!(
            got.contains(name),
            "{expr} gave {got}, which does not name {name}"
        );
    }
}

#[test]
fn text_decoder_streams_every_split() {
    let js = js_with_cases();
    // Every way of cutting a mixed text in two decodes to the whole, with and without fatal.
    check(
        &js,
        r#"(() => {
            const bytes = new TextEncoder().encode("aé€😀z");
            const whole = new TextDecoder().decode(bytes);
            const bad = [];
            for (const fatal of [false, true]) {
                for (let i = 0; i <= bytes.length; i++) {
                    for (let j = i; j <= bytes.length; j++) {
                        const d = new TextDecoder("utf-8", { fatal });
                        const s = d.decode(bytes.subarray(0, i), { stream: true }) +
                            d.decode(bytes.subarray(i, j), { stream: true }) + d.decode(bytes.subarray(j));
                        if (s !== whole) bad.push([fatal, i, j, s]);
                    }
                }
            }
            return bad;
        })()"#,
        "[]",
    );
    // An incomplete sequence at the end of a stream is an error when fatal.
    check(
        &js,
        r#"(() => { const d = new TextDecoder("utf-8", { fatal: true }); d.decode(new Uint8Array([0xe2]), { stream: true }); return d.decode(); })()"#,
        "throws TypeError",
    );
    // A BOM split across chunks is still stripped, once.
    check(
        &js,
        r#"(() => { const d = new TextDecoder(); return d.decode(new Uint8Array([0xef, 0xbb]), { stream: true }) + d.decode(new Uint8Array([0xbf, 0xef, 0xbb, 0xbf, 0x61])); })()"#,
        "\"\u{feff}a\"",
    );
}

#[test]
fn usv_strings_are_made_well_formed() {
    let js = js_with_cases();
    check(
        &js,
        r#"new URL("https://x/\ud800").pathname"#,
        r#""/%EF%BF%BD""#,
    );
    check(
        &js,
        r#"new URLSearchParams({ "\udc00": "1" }).toString()"#,
        r#""%EF%BF%BD=1""#,
    );
    check(&js, r#"new Response("\ud800").text()"#, "\"\u{fffd}\"");
    check(
        &js,
        r#"btoa("\ud800")"#,
        "throws DOMException:InvalidCharacterError",
    );
}

#[test]
fn encode_into_stops_before_a_character_that_does_not_fit() {
    let js = js_with_cases();
    check(
        &js,
        r#"(() => { const d = new Uint8Array(4); return [new TextEncoder().encodeInto("ab€", d), d]; })()"#,
        r#"[{"read":2,"written":2},{"Uint8Array":["97","98","0","0"]}]"#,
    );
    check(
        &js,
        r#"(() => { const b = new Uint8Array(6); const d = b.subarray(2, 5); new TextEncoder().encodeInto("x€", d); return b; })()"#,
        r#"{"Uint8Array":["0","0","120","0","0","0"]}"#,
    );
}

#[test]
fn hmac_matches_rfc_4231() {
    let js = js_with_cases();
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    check(
        &js,
        r#"(async () => {
            const enc = (s) => new TextEncoder().encode(s);
            const out = [];
            for (const hash of ["SHA-256", "SHA-384", "SHA-512"]) {
                const k = await crypto.subtle.importKey("raw", enc("Jefe"), { name: "HMAC", hash }, false, ["sign"]);
                const sig = new Uint8Array(await crypto.subtle.sign("HMAC", k, enc("what do ya want for nothing?")));
                out.push([...sig.slice(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(""));
            }
            return out;
        })()"#,
        r#"["5bdcc146","af45d2e3","164b7a7b"]"#,
    );
}

#[test]
fn random_values_differ_and_fill_views_in_place() {
    let js = js_with_cases();
    check(
        &js,
        r#"(() => {
            const a = crypto.getRandomValues(new Uint32Array(8)), b = crypto.getRandomValues(new Uint32Array(8));
            const buf = new Uint8Array(64); crypto.getRandomValues(buf.subarray(16, 32));
            return [a.join() !== b.join(), buf.subarray(0, 16).every((x) => x === 0), buf.subarray(32).every((x) => x === 0)];
        })()"#,
        "[true,true,true]",
    );
}

#[test]
fn headers_of_a_request_copy_are_independent() {
    let js = js_with_cases();
    check(
        &js,
        r#"(() => { const a = new Request("https://x/", { headers: { a: "1" } }); const b = a.clone(); b.headers.set("a", "2");
            const c = new Request(a); c.headers.set("a", "3"); return [a.headers.get("a"), b.headers.get("a"), c.headers.get("a")]; })()"#,
        r#"["1","2","3"]"#,
    );
}

#[test]
fn header_name_validation_survives_the_name_cache() {
    let js = js_with_cases();
    // Many distinct names (past the cache's bound) and long ones: each still validated, each
    // still found case-insensitively.
    check(
        &js,
        r#"(() => {
            const h = new Headers();
            for (let i = 0; i < 600; i++) h.append("X-Name-" + i, String(i));
            const long = "X-" + "a".repeat(200);
            h.set(long, "v");
            let bad = 0;
            for (const name of ["a b", "x\u00e9", "(x)"]) { try { h.get(name); } catch { bad++; } }
            return [h.get("x-name-0"), h.get("X-NAME-599"), h.get(long.toLowerCase()), bad, [...h].length];
        })()"#,
        r#"["0","599","v",3,601]"#,
    );
}
