//! Environment bindings handed to a Worker: resolved at deploy time, immutable afterwards.

use std::sync::Arc;

/// The kind of an environment binding, as in Cloudflare's upload metadata (`"type"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BindingKind {
    /// `plain_text`: a string.
    PlainText = 1,
    /// `json`: the JSON text of any value.
    Json = 2,
    /// `secret_text`: a string that no read API, log line or error message ever shows.
    SecretText = 3,
    /// `service`: another Worker of the same namespace, called without a network hop. The value
    /// is the target script's name.
    Service = 4,
    /// `dispatch_namespace`: a namespace of user Workers that a platform (dispatch) Worker may
    /// call by name. The value is the namespace's name. Only platform Workers may have one.
    DispatchNamespace = 5,
    /// `kv_namespace`: a KV namespace the Worker reads and writes with the `kv_*` calls. The
    /// value is the namespace's id.
    KvNamespace = 6,
}

impl BindingKind {
    /// The name used in config files and Cloudflare's API.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::PlainText => "plain_text",
            BindingKind::Json => "json",
            BindingKind::SecretText => "secret_text",
            BindingKind::Service => "service",
            BindingKind::DispatchNamespace => "dispatch_namespace",
            BindingKind::KvNamespace => "kv_namespace",
        }
    }

    /// Parses the name used in config files and Cloudflare's API.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "plain_text" => BindingKind::PlainText,
            "json" => BindingKind::Json,
            "secret_text" => BindingKind::SecretText,
            "service" => BindingKind::Service,
            "dispatch_namespace" => BindingKind::DispatchNamespace,
            "kv_namespace" => BindingKind::KvNamespace,
            _ => return None,
        })
    }

    /// Whether `env_get` hands the value to the guest (text kinds), rather than it naming a
    /// Worker or namespace the guest calls through.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            BindingKind::PlainText | BindingKind::Json | BindingKind::SecretText
        )
    }

    /// The code `env_kind` returns to the guest (docs/worker-abi.md).
    pub fn abi_code(self) -> i32 {
        self as i32
    }

    /// The inverse of `self as u8`, for on-disk forms.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => BindingKind::PlainText,
            2 => BindingKind::Json,
            3 => BindingKind::SecretText,
            4 => BindingKind::Service,
            5 => BindingKind::DispatchNamespace,
            6 => BindingKind::KvNamespace,
            _ => return None,
        })
    }
}

/// The value of a `dispatch_namespace` binding: the namespace, and optionally the outbound Worker
/// that sees every subrequest of the Workers called through it. Stored as JSON text in
/// [`Binding::value`], which is also what `env_get` returns for such a binding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSpec {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundSpec>,
}

/// Cloudflare's `outbound = { service, parameters }` of a dispatch namespace binding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSpec {
    /// A platform Worker.
    pub service: String,
    /// Names of the parameters a dispatcher may pass per call; the outbound Worker sees each
    /// as a `plain_text` binding (`json` for non-string values).
    #[serde(default)]
    pub parameters: Vec<String>,
}

impl DispatchSpec {
    pub fn parse(value: &str) -> Option<DispatchSpec> {
        serde_json::from_str(value).ok()
    }

    pub fn to_value(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }
}

/// One binding: a name the guest asks for, its kind and its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub kind: BindingKind,
    pub value: String,
}

impl std::fmt::Debug for Binding {
    // Secrets never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value: &dyn std::fmt::Debug = match self.kind {
            BindingKind::SecretText => &"<redacted>",
            _ => &self.value,
        };
        f.debug_struct("Binding")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("value", value)
            .finish()
    }
}

/// A Worker's bindings, shared by every request of one deployed version.
#[derive(Debug, Clone, Default)]
pub struct Bindings(Arc<[Binding]>);

impl Bindings {
    pub fn new(mut list: Vec<Binding>) -> Self {
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Bindings(list.into())
    }

    /// Looks a binding up by name (binary search: the list is sorted at construction).
    pub fn get(&self, name: &[u8]) -> Option<&Binding> {
        self.0
            .binary_search_by(|b| b.name.as_bytes().cmp(name))
            .ok()
            .map(|i| &self.0[i])
    }

    /// These bindings with `extra` added; an extra binding replaces one of the same name.
    pub fn with(&self, extra: &[Binding]) -> Bindings {
        let mut list: Vec<Binding> = self
            .0
            .iter()
            .filter(|b| !extra.iter().any(|e| e.name == b.name))
            .cloned()
            .collect();
        list.extend(extra.iter().cloned());
        Bindings::new(list)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
