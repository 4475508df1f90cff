//! The control plane: every change to what is deployed goes through here — compile off the serving
//! cores, publish the namespace's next index generation durably, then make it visible to every
//! core. Changes are serialised by one lock (compiling happens before it is taken), so concurrent
//! changes to one namespace never lose each other's updates.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tenantry_loader::kv::{KvError, KvStore, NamespaceSecrets};

use crate::certificates::CertificateStore;
use crate::plane::{Plane, Snapshot};
use tenantry_core::{Limits, Tier};
use tenantry_ingress::route::{Route, Router};
use tenantry_loader::{
    ArtifactError, ArtifactId, Compiler, DeltaRecord, Index, IndexData, ScriptEntry, Store,
    StoreError,
};

/// Why a control-plane operation failed; the admin API maps each to a status and message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("namespace `{0}` not found")]
    NamespaceNotFound(String),
    #[error("namespace `{0}` already exists")]
    NamespaceExists(String),
    #[error("script `{0}` not found")]
    ScriptNotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the secret store failed: {0}")]
    Secrets(String),
}

/// What the admin API shows of a namespace, kept per namespace so that listing reads no index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSummary {
    pub name: String,
    pub id: String,
    pub created_on: i64,
    /// The latest of the namespace's creation and its scripts' modifications.
    pub modified_on: i64,
    pub script_count: usize,
}

impl NamespaceSummary {
    /// The summary of `index`, from the summary its base stores and its delta keeps current
    /// ([`Index::summary`]): O(1), no script is read, so a start with
    /// 1M Workers neither walks nor pages in every one. (A delete leaves `modified_on`: the
    /// namespace was modified no earlier than before.)
    pub fn of(index: &Index) -> NamespaceSummary {
        NamespaceSummary {
            name: index.namespace().to_string(),
            id: index.namespace_id().to_string(),
            created_on: index.created_on(),
            modified_on: index.modified_on(),
            script_count: index.len(),
        }
    }
}

/// A script published with baseline (Winch) code whose optimised code is still to be compiled
/// and swapped in (`[engine] baseline_compile`, docs/design.md "Two compiler tiers").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unoptimised {
    pub namespace: String,
    pub script: String,
    pub artifact: ArtifactId,
}

/// Deploys into a data directory and keeps the data plane's snapshot current.
pub struct Control {
    store: Store,
    compiler: Compiler,
    plane: Arc<Plane>,
    routes: Vec<Route>,
    default_limits: Limits,
    /// Serialises read-modify-publish of indexes and snapshot swaps.
    lock: Mutex<()>,
    /// The node's KV namespaces (the admin API manages them; Workers reach them on the plane).
    kv: KvStore,
    /// The user namespaces by name (the platform's left out), changed with the snapshot: listing
    /// and getting a namespace read this, not the indexes (mapping every index to list them
    /// failed past ~31.7k namespaces, issue 13).
    catalog: Mutex<BTreeMap<String, NamespaceSummary>>,
    /// The data plane's TLS certificates, when it has a TLS listener.
    certificates: Option<Arc<CertificateStore>>,
    /// The optimiser thread ([`Control::start_optimiser`]), while it runs.
    optimiser: Mutex<Option<Optimiser>>,
}

/// The thread that swaps optimised code in, and how to feed and stop it.
struct Optimiser {
    jobs: crossbeam_channel::Sender<Unoptimised>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Control {
    /// A control plane over `store` and `plane`; `catalog` is the one
    /// [`Control::snapshot_of`] built with the plane's first snapshot, and `compiler` compiles
    /// into `store`'s artifacts.
    pub fn new(
        store: Store,
        compiler: Compiler,
        plane: Arc<Plane>,
        routes: Vec<Route>,
        default_limits: Limits,
        kv: KvStore,
        catalog: BTreeMap<String, NamespaceSummary>,
    ) -> Control {
        Control {
            store,
            compiler,
            plane,
            routes,
            default_limits,
            lock: Mutex::new(()),
            kv,
            catalog: Mutex::new(catalog),
            certificates: None,
            optimiser: Mutex::new(None),
        }
    }

    /// Lets the admin API manage the data plane's TLS certificates.
    pub fn with_certificates(mut self, certificates: Option<Arc<CertificateStore>>) -> Control {
        self.certificates = certificates;
        self
    }

    /// The data plane's TLS certificates; `None` when `[server.tls]` is not configured.
    pub fn certificates(&self) -> Option<&CertificateStore> {
        self.certificates.as_deref()
    }

    /// The node's KV store.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Builds the snapshot of every namespace in `store` (recompiling for this engine if needed)
    /// and the catalog of user namespaces. Indexes are opened one at a time and handed to the
    /// store's bounded [`tenantry_loader::IndexCache`], so a start with many namespaces never
    /// holds a mapping for each: the cache keeps the last `max_mapped_indexes`.
    pub fn snapshot_of(
        store: &Store,
        kv: &KvStore,
        routes: &[Route],
        default_limits: Limits,
    ) -> anyhow::Result<(
        Snapshot,
        BTreeMap<String, NamespaceSummary>,
        Vec<Unoptimised>,
    )> {
        let mut unoptimised = Vec::new();
        let mut namespaces = imbl::HashMap::new();
        let mut secrets = imbl::HashMap::new();
        let mut catalog = BTreeMap::new();
        let mut all_secrets = kv.all_secrets()?;
        for name in store.namespaces()? {
            let Some(index) = store.open_index(&name)? else {
                continue;
            };
            let mut baseline = Vec::new();
            let index = store.ensure_compiled_listing(index, &mut baseline)?;
            unoptimised.extend(baseline.into_iter().map(|(script, artifact)| Unoptimised {
                namespace: name.clone(),
                script,
                artifact,
            }));
            if !name.starts_with('_') {
                catalog.insert(name.clone(), NamespaceSummary::of(&index));
            }
            let own = all_secrets.remove(&name).unwrap_or_default();
            secrets.insert(name.clone(), Arc::new(own));
            namespaces.insert(name, store.indexes().insert(index));
        }
        let snapshot = Snapshot {
            router: Router::new(routes.to_vec()),
            namespaces,
            default_limits,
            secrets,
        };
        Ok((snapshot, catalog, unoptimised))
    }

    /// Compiles and stores a module on the compile pool (blocking the calling thread, which is
    /// never a serving core).
    pub fn compile(&self, wasm: Vec<u8>) -> Result<ArtifactId, ControlError> {
        Ok(self.compiler.compile(wasm)?)
    }

    /// Compiles and stores an upload with the baseline tier when it is on (`[engine]
    /// baseline_compile`): the tier says whether the script published with it must then be
    /// handed to [`Control::optimise_later`].
    pub fn compile_upload(&self, wasm: Vec<u8>) -> Result<(ArtifactId, Tier), ControlError> {
        Ok(self.compiler.compile_baseline(wasm)?)
    }

    /// Starts the thread that compiles baseline scripts' optimised code and republishes them
    /// with it, beginning with `unoptimised` (what a previous run left: see
    /// [`Control::snapshot_of`]). [`Control::stop_optimiser`] stops it.
    ///
    /// The thread holds the control plane only while it republishes, not while Cranelift runs,
    /// so that a node can stop (and its data directory be opened again) without waiting for a
    /// compile to be useful.
    pub fn start_optimiser(self: &Arc<Self>, unoptimised: Vec<Unoptimised>) -> anyhow::Result<()> {
        let mut optimiser = self.optimiser_lock();
        if optimiser.is_some() {
            anyhow::bail!("the optimiser is running already");
        }
        let (jobs, queue) = crossbeam_channel::unbounded::<Unoptimised>();
        for job in unoptimised {
            let _ = jobs.send(job);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let control = Arc::downgrade(self);
        let artifacts = self.store.artifacts().clone();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tenantry-optimise".into())
            .spawn(move || {
                for job in queue {
                    if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = artifacts.optimise(&job.artifact) {
                        tracing::error!(artifact = %job.artifact, "compiling the optimised code: {e}");
                        continue;
                    }
                    let Some(control) = control.upgrade() else {
                        return;
                    };
                    control.republish_optimised(&job);
                }
            })?;
        *optimiser = Some(Optimiser { jobs, stop, thread });
        Ok(())
    }

    /// Stops the optimiser thread, waiting for the job it is on (at most one compile). Queued
    /// jobs are left: their baseline artifacts tell the next start to do them.
    pub fn stop_optimiser(&self) {
        let optimiser = self.optimiser_lock().take();
        if let Some(Optimiser { jobs, stop, thread }) = optimiser {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            drop(jobs);
            let _ = thread.join();
        }
    }

    fn optimiser_lock(&self) -> std::sync::MutexGuard<'_, Option<Optimiser>> {
        self.optimiser.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Has script `script` of `ns`, just published with the baseline code of `artifact`,
    /// republished with its optimised code once that is compiled (in the background).
    pub fn optimise_later(&self, ns: &str, script: &str, artifact: ArtifactId) {
        let job = Unoptimised {
            namespace: ns.to_string(),
            script: script.to_string(),
            artifact,
        };
        let job = match &*self.optimiser_lock() {
            Some(optimiser) => match optimiser.jobs.send(job) {
                Ok(()) => return,
                Err(unsent) => unsent.into_inner(),
            },
            None => job,
        };
        // No optimiser thread (stopped, or a control plane built without one): do it on this
        // thread rather than leave the script on the baseline tier until the next start.
        match self.store.artifacts().optimise(&job.artifact) {
            Ok(()) => self.republish_optimised(&job),
            Err(e) => {
                tracing::error!(artifact = %job.artifact, "compiling the optimised code: {e}")
            }
        }
    }

    /// Publishes `job`'s script with its optimised code (compiled already) as the next
    /// generation of its namespace, if the script still runs that artifact's baseline code, then
    /// removes the baseline artifact. A failure leaves the script on its baseline code
    /// (logged); the next start tries again.
    fn republish_optimised(&self, job: &Unoptimised) {
        let artifacts = self.store.artifacts();
        let (ns, name) = (job.namespace.as_str(), job.script.as_str());
        let republished = self.edit(ns, |scripts, _| {
            if let Some(e) = scripts.get_mut(name)
                && e.artifact == *job.artifact.as_bytes()
            {
                e.etag = etag(ns, e, Tier::Optimised);
            }
            Ok(())
        });
        match republished {
            // Deleted meanwhile: nothing to swap.
            Ok(()) | Err(ControlError::NamespaceNotFound(_)) => {}
            Err(e) => {
                tracing::error!(
                    namespace = ns,
                    script = name,
                    "publishing the optimised code: {e}"
                );
                return;
            }
        }
        if let Err(e) = artifacts.drop_baseline(&job.artifact) {
            tracing::warn!(artifact = %job.artifact, "removing the baseline artifact: {e}");
        }
    }

    /// The current index of `ns`.
    /// The platform namespace is reachable (the admin API's account-level scripts); other names
    /// starting with `_` cannot exist.
    pub fn index(&self, ns: &str) -> Result<Index, ControlError> {
        if ns != tenantry_loader::PLATFORM_NAMESPACE && tenantry_loader::valid_name(ns).is_err() {
            return Err(ControlError::NamespaceNotFound(ns.to_string()));
        }
        // The index the data plane serves, from the process-wide cache: an admin read maps and
        // validates it only if the cache evicted it (opening it from disk for every read cost
        // 4.4 ms per get-script at 100k Workers, 50 ms at 1M).
        let not_found = || ControlError::NamespaceNotFound(ns.to_string());
        let key = self
            .plane
            .load()
            .namespaces
            .get(ns)
            .cloned()
            .ok_or_else(not_found)?;
        self.store
            .indexes()
            .load(&key)
            .map_err(StoreError::from)?
            .ok_or_else(not_found)
    }

    /// Up to `limit` user namespaces named after `cursor`, in name order, how many there are in
    /// all, and whether more follow the page: O(log n + limit), no index is read.
    pub fn namespaces(&self, cursor: &str, limit: usize) -> (Vec<NamespaceSummary>, usize, bool) {
        let catalog = self.catalog();
        let mut page: Vec<NamespaceSummary> = catalog
            .range::<str, _>((Bound::Excluded(cursor), Bound::Unbounded))
            .take(limit.saturating_add(1))
            .map(|(_, summary)| summary.clone())
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, catalog.len(), more)
    }

    /// The user namespace `ns`, as listed.
    pub fn namespace(&self, ns: &str) -> Result<NamespaceSummary, ControlError> {
        self.catalog()
            .get(ns)
            .cloned()
            .ok_or_else(|| ControlError::NamespaceNotFound(ns.to_string()))
    }

    pub fn create_namespace(&self, ns: &str) -> Result<NamespaceSummary, ControlError> {
        tenantry_loader::valid_name(ns)
            .and_then(|()| {
                if ns.starts_with('_') {
                    Err("names starting with `_` are reserved for the platform")
                } else {
                    Ok(())
                }
            })
            .map_err(|reason| {
                ControlError::Invalid(format!("invalid namespace name `{ns}`: {reason}"))
            })?;
        let _guard = self.guard();
        let index = match self
            .store
            .create_namespace(ns, &IndexData::new(ns, now_ms()))
        {
            Ok(index) => index,
            Err(StoreError::NamespaceExists(ns)) => return Err(ControlError::NamespaceExists(ns)),
            Err(e) => return Err(e.into()),
        };
        let summary = NamespaceSummary::of(&index);
        self.swap(ns, Some(index), None);
        Ok(summary)
    }

    /// Creates the platform Workers' namespace if it does not exist yet.
    pub fn ensure_platform(&self) -> Result<(), ControlError> {
        let ns = tenantry_loader::PLATFORM_NAMESPACE;
        let _guard = self.guard();
        if !self.store.has_namespace(ns)? {
            let index = self
                .store
                .create_namespace(ns, &IndexData::new(ns, now_ms()))?;
            self.swap(ns, Some(index), None);
        }
        Ok(())
    }

    pub fn delete_namespace(&self, ns: &str) -> Result<(), ControlError> {
        let _guard = self.guard();
        self.index(ns)?;
        self.store.delete_namespace(ns)?;
        if let Err(e) = self.kv.delete_secrets(ns) {
            tracing::warn!("deleting the secrets of namespace `{ns}`: {e}");
        }
        self.swap(ns, None, None);
        Ok(())
    }

    /// Applies `edit` to the namespace's scripts and publishes what it changed as the next
    /// generation, visible to every core when this returns. `edit`'s error aborts without
    /// publishing; an edit that changes nothing publishes nothing. Only the changed scripts are
    /// read, sealed, tagged and written (one delta record): the cost does not grow with the
    /// namespace.
    pub fn edit<T>(
        &self,
        ns: &str,
        edit: impl FnOnce(&mut ScriptsEdit<'_>, i64) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let _guard = self.guard();
        let current = self.index(ns)?;
        let mut scripts = ScriptsEdit::new(&current);
        let out = edit(&mut scripts, now_ms())?;
        let mut change = scripts.into_change();
        if change.upserts.is_empty() && change.deletes.is_empty() {
            return Ok(out);
        }
        // secret_text values go to the secret store; the index keeps tokens.
        self.kv
            .seal_scripts(ns, change.upserts.iter_mut())
            .map_err(|e| ControlError::Secrets(e.to_string()))?;
        for entry in &mut change.upserts {
            let tier = self
                .store
                .artifacts()
                .tier(&ArtifactId::from_bytes(entry.artifact));
            entry.etag = etag(ns, entry, tier);
        }
        let index = self.store.publish_change(&current, &change)?;
        let changed: Vec<&str> = change
            .upserts
            .iter()
            .map(|e| e.name.as_str())
            .chain(change.deletes.iter().map(String::as_str))
            .collect();
        self.swap(ns, Some(index), Some(&changed));
        // Only now may the secret versions the old index named go: see `KvStore::seal_secrets`.
        let touched = change
            .upserts
            .iter()
            .map(|e| (e.name.as_str(), Some(e)))
            .chain(change.deletes.iter().map(|d| (d.as_str(), None)));
        if let Err(e) = self.kv.prune_scripts(ns, touched) {
            tracing::warn!(
                "removing old secret versions of `{ns}`: {e} (retried at the script's next change)"
            );
        }
        Ok(out)
    }

    /// Edits one existing script.
    pub fn edit_script<T>(
        &self,
        ns: &str,
        name: &str,
        edit: impl FnOnce(&mut ScriptEntry, i64) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        self.edit(ns, |scripts, now| {
            let entry = scripts
                .get_mut(name)
                .ok_or_else(|| ControlError::ScriptNotFound(name.to_string()))?;
            let out = edit(entry, now)?;
            entry.modified_on = now;
            Ok(out)
        })
    }

    /// Replaces the plane's snapshot with one where `ns` is `index` (or gone): O(log n) in the
    /// number of namespaces. The new index goes into the index cache first, so every core finds
    /// it mapped as soon as it sees the snapshot; the generation it replaces leaves the cache
    /// (requests still holding it keep it until they end). With `changed`, only those scripts
    /// changed: only their secrets are read again, so a publish costs O(its scripts' secrets),
    /// not O(the namespace's).
    fn swap(&self, ns: &str, index: Option<Index>, changed: Option<&[&str]>) {
        if !ns.starts_with('_') {
            let mut catalog = self.catalog();
            match &index {
                Some(index) => catalog.insert(ns.to_string(), NamespaceSummary::of(index)),
                None => catalog.remove(ns),
            };
        }
        self.publish_snapshot(ns, index, changed);
    }

    /// Publishes the plane's next snapshot with `ns` as `index` (or gone); the catalog is the
    /// caller's. The namespace's secrets are read again: all of them, or only those of the
    /// scripts `changed`.
    fn publish_snapshot(&self, ns: &str, index: Option<Index>, changed: Option<&[&str]>) {
        let current = self.plane.load();
        let mut namespaces = current.namespaces.clone();
        let mut secrets = current.secrets.clone();
        let indexes = self.store.indexes();
        let replaced = match index {
            Some(index) => {
                let key = indexes.insert(index);
                match self.secrets_after(ns, secrets.get(ns), changed) {
                    Ok(s) => {
                        secrets.insert(ns.to_string(), Arc::new(s));
                    }
                    Err(e) => tracing::error!("reading the secrets of `{ns}`: {e}"),
                }
                namespaces
                    .insert(ns.to_string(), key.clone())
                    .filter(|old| *old != key)
            }
            None => {
                secrets.remove(ns);
                namespaces.remove(ns)
            }
        };
        self.plane.publish(Snapshot {
            router: Router::new(self.routes.clone()),
            namespaces,
            default_limits: self.default_limits,
            secrets,
        });
        if let Some(old) = replaced {
            indexes.remove(&old);
        }
    }

    /// The secrets of `ns` after a publish: `before` (the current snapshot's) with the scripts
    /// `changed` read again from the store, or all of them read when `changed` is `None` or
    /// there is nothing before. Every version the store holds is read, old ones too: requests
    /// that started on the previous generation may still name them (a rotated value stays in
    /// memory until its script's next change, not the namespace's).
    fn secrets_after(
        &self,
        ns: &str,
        before: Option<&Arc<NamespaceSecrets>>,
        changed: Option<&[&str]>,
    ) -> Result<NamespaceSecrets, KvError> {
        let (Some(before), Some(changed)) = (before, changed) else {
            return self.kv.secrets(ns);
        };
        let mut secrets = (**before).clone();
        for &script in changed {
            let own = self.kv.script_secrets(ns, script)?;
            if own.is_empty() {
                secrets.remove(script);
            } else {
                secrets.insert(script.to_string(), Arc::new(own));
            }
        }
        Ok(secrets)
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NamespaceSummary>> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The scripts of one namespace as an edit sees them: reads go to the index (only the scripts
/// the edit touches are copied out of the archive), changes are collected into the delta record
/// [`Control::edit`] publishes.
pub struct ScriptsEdit<'a> {
    index: &'a Index,
    /// Each touched script as it now stands (`None`: deleted).
    changed: BTreeMap<String, Option<ScriptEntry>>,
}

impl<'a> ScriptsEdit<'a> {
    fn new(index: &'a Index) -> ScriptsEdit<'a> {
        ScriptsEdit {
            index,
            changed: BTreeMap::new(),
        }
    }

    /// The script called `name`, as this edit left it so far.
    pub fn get(&mut self, name: &str) -> Option<&ScriptEntry> {
        self.get_mut(name).map(|e| &*e)
    }

    /// The script called `name`, to change in place (it is published whole).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ScriptEntry> {
        if !self.changed.contains_key(name) {
            let archived = self.index.get(name)?;
            let entry = rkyv::deserialize::<ScriptEntry, rkyv::rancor::Error>(archived)
                .expect("deserializing a validated archive cannot fail");
            self.changed.insert(name.to_string(), Some(entry));
        }
        self.changed.get_mut(name).and_then(Option::as_mut)
    }

    /// Adds or replaces a script.
    pub fn insert(&mut self, entry: ScriptEntry) {
        self.changed.insert(entry.name.clone(), Some(entry));
    }

    /// Removes the script called `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let existed = self.get(name).is_some();
        if existed {
            self.changed.insert(name.to_string(), None);
        }
        existed
    }

    /// Removes every script `keep` refuses (given its tags); how many. Reads every script: a
    /// bulk change.
    pub fn retain(&mut self, keep: impl Fn(&[&str]) -> bool) -> usize {
        let mut doomed: Vec<String> = self
            .index
            .scripts()
            .filter(|e| !self.changed.contains_key(e.name.as_str()))
            .filter(|e| !keep(&e.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>()))
            .map(|e| e.name.to_string())
            .collect();
        doomed.extend(self.changed.iter().filter_map(|(name, e)| {
            let tags: Vec<&str> = e.as_ref()?.tags.iter().map(String::as_str).collect();
            (!keep(&tags)).then(|| name.clone())
        }));
        for name in &doomed {
            self.changed.insert(name.clone(), None);
        }
        doomed.len()
    }

    /// The change to publish: what was touched, minus reads that changed nothing and deletes
    /// of scripts that never existed.
    fn into_change(self) -> DeltaRecord {
        let mut change = DeltaRecord::default();
        for (name, entry) in self.changed {
            let before = self.index.get(&name);
            match entry {
                Some(entry) => {
                    let same = before.is_some_and(|b| {
                        rkyv::deserialize::<ScriptEntry, rkyv::rancor::Error>(b)
                            .is_ok_and(|b| b == entry)
                    });
                    if !same {
                        change.upserts.push(entry);
                    }
                }
                None if before.is_some() => change.deletes.push(name),
                None => {}
            }
        }
        change
    }
}

/// A version tag of one deployed script: changes whenever anything the data plane uses changes,
/// and differs between scripts, so per-core pools can key Workers by it. The compiler tier is
/// such a thing: when a script's optimised code replaces its baseline code, its etag changes,
/// so every core loads it anew (an optimised script's etag is what it was before there were
/// tiers).
pub fn etag(namespace: &str, e: &ScriptEntry, tier: Tier) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [namespace.as_bytes(), e.name.as_bytes(), &e.artifact] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    for b in &e.bindings {
        h.update([b.kind]);
        for part in [b.name.as_bytes(), b.value.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    let l = &e.limits;
    h.update(format!(
        "{:?}{:?}{:?}{:?}{}",
        l.cpu_ms, l.wall_ms, l.memory_bytes, l.subrequests, e.reuse_instances
    ));
    if tier == Tier::Baseline {
        h.update(b"baseline tier");
    }
    hex::encode(&h.finalize()[..16])
}

/// The tier the data plane runs `e` with, as its etag says (see [`etag`]).
pub fn tier_of(namespace: &str, e: &ScriptEntry) -> Tier {
    if e.etag == etag(namespace, e, Tier::Baseline) {
        Tier::Baseline
    } else {
        Tier::Optimised
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
