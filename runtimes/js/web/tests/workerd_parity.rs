//! Every case of tests/cases.js gives here what Cloudflare's workerd gave for it
//! (tests/workerd-expected.json, recorded by tests/workerd/record.sh), except the known
//! differences listed below with their reason (README.md repeats them).

mod common;

/// Cases whose answer knowingly differs from workerd's, and why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "importKey unsupported algorithm rejects",
    "only HMAC keys exist here: AES, RSA, ECDSA, Ed25519 ... reject with NotSupportedError",
)];

#[test]
fn cases_match_workerd() {
    let js = common::js_with_cases();
    let expected = include_str!("workerd-expected.json");
    js.with(|ctx| {
        ctx.globals().set("__expected", expected).unwrap();
        let known: Vec<&str> = KNOWN_DIFFERENCES.iter().map(|(n, _)| *n).collect();
        ctx.globals().set("__known", known).unwrap();
    });
    let report = js.settle(
        r#"(async () => {
            const expected = JSON.parse(__expected);
            const got = await runCases();
            const lines = [];
            for (const name of Object.keys(got)) {
                if (!(name in expected)) lines.push(`not recorded in workerd: ${name}`);
                else if (__known.includes(name)) {
                    if (got[name] === expected[name]) lines.push(`listed as a difference but matches: ${name}`);
                } else if (got[name] !== expected[name]) {
                    lines.push(`${name}\n    workerd: ${expected[name]}\n    here:    ${got[name]}`);
                }
            }
            for (const name of Object.keys(expected)) if (!(name in got)) lines.push(`case gone: ${name}`);
            return lines.join("\n");
        })()"#,
    );
    assert!(report.is_empty(), "differences from workerd:\n{report}");
}
