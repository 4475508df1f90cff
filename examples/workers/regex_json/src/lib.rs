//! Finds the words of a text that match a pattern and answers them as JSON.
//!
//! A `POST` body `{"pattern": "<regex>", "text": "<text>"}` chooses both; any other request uses
//! `\b\w*o\w*\b` over a built-in sentence. The answer is
//! `{"pattern": …, "matches": […], "build": "<NONCE>"}`, `400` with `{"error": …}` for a body
//! that is not that JSON or a pattern that does not compile.
//!
//! It exists for its size: regex (with Unicode tables) and serde_json make a ~1 MB module, the
//! size of a typical Rust Worker, so `benches/new-code.sh` can time how long a never-seen one
//! takes from upload to its first answer. The bench makes each upload new by rewriting the
//! digits of [`NONCE`] in the module's data.

use regex::Regex;
use serde::{Deserialize, Serialize};
use tenantry_sdk::{Error, Request, Response};

/// Rewritten byte for byte by `benches/new-code.sh` (same length, other digits), so each upload
/// has a new hash and is compiled afresh.
static NONCE: &[u8] = b"tenantry-new-code-nonce:0000000000000000";

const DEFAULT_PATTERN: &str = r"\b\w*o\w*\b";
const DEFAULT_TEXT: &str = "hello from tenantry, a worker of many workers";

#[derive(Deserialize)]
struct Query {
    pattern: String,
    text: String,
}

#[derive(Serialize)]
struct Answer<'a> {
    pattern: &'a str,
    matches: Vec<&'a str>,
    build: &'a str,
}

fn json(status: u16, value: &impl Serialize) -> Response {
    // Serialising these plain structs into memory cannot fail.
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::with_status(status)
        .header("content-type", "application/json")
        .body(body)
}

fn error(message: String) -> Response {
    json(400, &serde_json::json!({ "error": message }))
}

fn handle(req: Request) -> Result<Response, Error> {
    let body = req.body()?;
    let query = if req.method() == "POST" {
        match serde_json::from_slice::<Query>(&body) {
            Ok(query) => query,
            Err(e) => return Ok(error(format!("body: {e}"))),
        }
    } else {
        Query {
            pattern: DEFAULT_PATTERN.into(),
            text: DEFAULT_TEXT.into(),
        }
    };
    let re = match Regex::new(&query.pattern) {
        Ok(re) => re,
        Err(e) => return Ok(error(format!("pattern: {e}"))),
    };
    let build = std::str::from_utf8(NONCE).unwrap_or("");
    let answer = Answer {
        pattern: &query.pattern,
        matches: re.find_iter(&query.text).map(|m| m.as_str()).collect(),
        build,
    };
    Ok(json(200, &answer))
}

tenantry_sdk::main!(handle);
