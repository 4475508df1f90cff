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
            _ => return None,
        })
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
