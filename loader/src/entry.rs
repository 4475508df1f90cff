//! Turning an archived script entry into what the execution core needs.

use tenantry_core::{Binding, BindingKind, Bindings, Limits};

use crate::artifacts::ArtifactId;
use crate::index::ArchivedScriptEntry;

/// The artifact a script runs.
pub fn artifact_id(entry: &ArchivedScriptEntry) -> ArtifactId {
    ArtifactId::from_bytes(entry.artifact)
}

/// A script's bindings. Kinds this build does not know are skipped with a warning (an index
/// written by a newer version); the warning names the binding, never its value.
pub fn bindings(entry: &ArchivedScriptEntry) -> Bindings {
    let list = entry
        .bindings
        .iter()
        .filter_map(|b| match BindingKind::from_u8(b.kind) {
            Some(kind) => Some(Binding {
                name: b.name.to_string(),
                kind,
                value: b.value.to_string(),
            }),
            None => {
                tracing::warn!(
                    script = entry.name.as_str(),
                    binding = b.name.as_str(),
                    kind = b.kind,
                    "skipping a binding of unknown kind"
                );
                None
            }
        })
        .collect();
    Bindings::new(list)
}

/// A script's limits: its own where set, `defaults` elsewhere.
pub fn limits(entry: &ArchivedScriptEntry, defaults: Limits) -> Limits {
    let l = &entry.limits;
    Limits {
        cpu_ms: l.cpu_ms.as_ref().map_or(defaults.cpu_ms, |v| v.to_native()),
        wall_ms: l
            .wall_ms
            .as_ref()
            .map_or(defaults.wall_ms, |v| v.to_native()),
        memory_bytes: l
            .memory_bytes
            .as_ref()
            .map_or(defaults.memory_bytes, |v| v.to_native()),
        subrequests: l
            .subrequests
            .as_ref()
            .map_or(defaults.subrequests, |v| v.to_native()),
    }
}
