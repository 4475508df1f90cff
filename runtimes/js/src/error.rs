//! What a thrown value says: for the log (`Uncaught Error: boom` + stack) and for the upload's
//! `400` (`worker.js:3:14: SyntaxError: unexpected token`).

use rquickjs::{Ctx, Value};

/// A caught exception, read once into Rust strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thrown {
    /// `Error`, `TypeError`, …; empty when a non-Error value was thrown.
    pub name: String,
    /// The message, or the thrown value formatted when it is not an Error.
    pub message: String,
    /// QuickJS's stack: lines `    at f (file:line:col)`, or `    at file:line:col` for a parse error.
    pub stack: String,
}

impl Thrown {
    /// Takes the pending exception of `ctx`.
    pub fn catch(ctx: &Ctx<'_>) -> Thrown {
        Thrown::from_value(&ctx.catch())
    }

    /// Reads a thrown (or rejection) value.
    pub fn from_value(value: &Value<'_>) -> Thrown {
        let Some(obj) = value.as_object() else {
            return Thrown {
                message: plain(value),
                ..Thrown::default()
            };
        };
        let get = |key: &str| -> String {
            obj.get::<_, Option<rquickjs::Coerced<String>>>(key)
                .ok()
                .flatten()
                .map(|c| c.0)
                .unwrap_or_default()
        };
        let name = get("name");
        if name.is_empty() {
            return Thrown {
                message: plain(value),
                ..Thrown::default()
            };
        }
        Thrown {
            name,
            message: get("message"),
            stack: get("stack"),
        }
    }

    /// `Name: message` (or just the message for a non-Error value).
    pub fn text(&self) -> String {
        if self.name.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.name, self.message)
        }
    }

    /// The first `file:line:col` of the stack, if any.
    pub fn location(&self) -> Option<Location<'_>> {
        self.stack.lines().find_map(Location::from_frame)
    }
}

/// A source position from a stack frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    pub file: &'a str,
    pub line: u32,
    pub col: u32,
}

impl<'a> Location<'a> {
    /// Parses `    at f (file:1:2)` or `    at file:1:2`; `None` for `<native>` frames and the like.
    fn from_frame(frame: &'a str) -> Option<Location<'a>> {
        let frame = frame.trim().strip_prefix("at ")?;
        let place = match frame.rfind('(') {
            Some(open) if frame.ends_with(')') => &frame[open + 1..frame.len() - 1],
            _ => frame,
        };
        let (rest, col) = place.rsplit_once(':')?;
        let (file, line) = rest.rsplit_once(':')?;
        Some(Location {
            file,
            line: line.parse().ok()?,
            col: col.parse().ok()?,
        })
    }
}

/// The upload error for a thrown value: `file:line:col: Name: message`, or `file: Name: message`
/// when the stack has no position (then `file` is the module that was being compiled).
pub fn compile_message(thrown: &Thrown, file: &str) -> String {
    match thrown.location() {
        Some(at) => format!("{}:{}:{}: {}", at.file, at.line, at.col, thrown.text()),
        None => format!("{file}: {}", thrown.text()),
    }
}

/// The log line for an exception nobody caught: `Uncaught Error: boom` then the stack.
pub fn uncaught(thrown: &Thrown, prefix: &str) -> String {
    let stack = thrown.stack.trim_end();
    if stack.is_empty() {
        format!("{prefix} {}", thrown.text())
    } else {
        format!("{prefix} {}\n{stack}", thrown.text())
    }
}

/// A non-Error thrown value as text (`throw "x"` logs `Uncaught x`).
fn plain(value: &Value<'_>) -> String {
    if let Some(s) = value.as_string() {
        return s.to_string().unwrap_or_default();
    }
    let ctx = value.ctx();
    match ctx.json_stringify(value.clone()) {
        Ok(Some(s)) => s.to_string().unwrap_or_default(),
        _ => rquickjs::Coerced::<String>::from_js(ctx, value.clone())
            .map(|c| c.0)
            .unwrap_or_else(|_| "(a value that cannot be shown)".to_string()),
    }
}

use rquickjs::FromJs;

#[cfg(test)]
mod tests {
    use super::*;

    fn thrown(stack: &str) -> Thrown {
        Thrown {
            name: "SyntaxError".into(),
            message: "unexpected token".into(),
            stack: stack.into(),
        }
    }

    #[test]
    fn locations_come_from_the_first_frame_with_one() {
        let t = thrown("    at worker.js:3:14\n");
        assert_eq!(
            compile_message(&t, "x.js"),
            "worker.js:3:14: SyntaxError: unexpected token"
        );
        let t = thrown("    at <native>\n    at fetch (lib/util.js:10:5)\n    at x.js:1:1\n");
        let at = t.location().unwrap();
        assert_eq!((at.file, at.line, at.col), ("lib/util.js", 10, 5));
        let t = thrown("");
        assert_eq!(
            compile_message(&t, "x.js"),
            "x.js: SyntaxError: unexpected token"
        );
    }
}
