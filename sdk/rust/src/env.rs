//! The Worker's environment bindings (`plain_text`, `json`, `secret_text`).
//!
//! A Worker sees only its own bindings. Values are read on each call; a `json` binding's value is
//! its JSON text, for a parser of your choice.

use crate::buf::read_value;
use crate::error::Error;
use crate::sys;

/// First-attempt buffer size for a binding's value.
const VALUE_FIRST: usize = 256;
/// First-attempt buffer size for the list of binding names.
const NAMES_FIRST: usize = 256;

/// The kind of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// `plain_text`: a string from the configuration.
    PlainText,
    /// `json`: JSON text.
    Json,
    /// `secret_text`: a string that is never shown back by the platform.
    SecretText,
    /// `service`: another Worker of this namespace, called with [`crate::fetch::service`]; the
    /// value is its name.
    Service,
    /// `dispatch_namespace`: a namespace of user Workers (platform Workers only), called with
    /// [`crate::fetch::dispatch_namespace`]; the value is the namespace's name.
    DispatchNamespace,
    /// `kv_namespace`: a KV namespace, used with [`crate::kv::namespace`]; the value is its id.
    KvNamespace,
    /// A kind code this version of the SDK does not know.
    Other(i32),
}

impl Kind {
    fn from_code(code: i32) -> Kind {
        match code {
            sys::KIND_PLAIN_TEXT => Kind::PlainText,
            sys::KIND_JSON => Kind::Json,
            sys::KIND_SECRET_TEXT => Kind::SecretText,
            sys::KIND_SERVICE => Kind::Service,
            sys::KIND_DISPATCH_NAMESPACE => Kind::DispatchNamespace,
            sys::KIND_KV_NAMESPACE => Kind::KvNamespace,
            other => Kind::Other(other),
        }
    }

    /// The configuration's name for the kind: `plain_text`, `json`, `secret_text` (`unknown` for
    /// [`Kind::Other`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PlainText => "plain_text",
            Kind::Json => "json",
            Kind::SecretText => "secret_text",
            Kind::Service => "service",
            Kind::DispatchNamespace => "dispatch_namespace",
            Kind::KvNamespace => "kv_namespace",
            Kind::Other(_) => "unknown",
        }
    }
}

/// The value of the binding `name`, or `None` if the Worker has no such binding.
pub fn var(name: &str) -> Option<String> {
    try_var(name).ok()
}

/// The value of the binding `name`, or the host's error ([`Error::NotFound`] if absent).
pub fn try_var(name: &str) -> Result<String, Error> {
    // SAFETY: `name` is a live `&str`; `read_value` passes `cap` writable bytes it owns.
    let bytes = read_value(VALUE_FIRST, |ptr, cap| unsafe {
        sys::env_get(name.as_ptr(), name.len(), ptr, cap)
    })?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// The names of the Worker's bindings, in declaration order (empty if it has none or the host
/// refused the call, as off wasm32).
pub fn names() -> Vec<String> {
    try_names().unwrap_or_default()
}

/// The names of the Worker's bindings, or the host's error.
pub fn try_names() -> Result<Vec<String>, Error> {
    // SAFETY: `read_value` passes a pointer to `cap` writable bytes it owns.
    let bytes = read_value(NAMES_FIRST, |ptr, cap| unsafe { sys::env_list(ptr, cap) })?;
    Ok(split_names(&bytes))
}

/// Splits `env_list`'s answer: names joined by `\n`; the empty string is no names.
fn split_names(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == b'\n')
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect()
}

/// The kind of the binding `name`, or `None` if the Worker has no such binding.
pub fn kind(name: &str) -> Option<Kind> {
    // SAFETY: `name` is a live `&str` the host only reads.
    let code = unsafe { sys::env_kind(name.as_ptr(), name.len()) };
    (code > 0).then(|| Kind::from_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_newlines() {
        assert!(split_names(b"").is_empty());
        assert_eq!(split_names(b"GREETING"), ["GREETING"]);
        assert_eq!(split_names(b"A\nB\nc_d"), ["A", "B", "c_d"]);
    }

    #[test]
    fn off_wasm_names_are_empty() {
        if cfg!(target_arch = "wasm32") {
            return;
        }
        assert!(names().is_empty());
        assert_eq!(try_names(), Err(Error::Unsupported));
    }
}
