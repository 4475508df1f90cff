//! The process-wide wasmtime engine: Cranelift, pooling allocator with copy-on-write memory
//! images, fuel, epoch interruption and a bounded wasm stack; and, for code just uploaded, a
//! second engine that compiles with Winch (the baseline tier, see [`Tier`]).

use std::hash::Hasher;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Enabled, InstanceAllocationStrategy, Linker, Module, OptLevel, PoolingAllocationConfig,
    Strategy,
};

use crate::host::HostState;

/// Settings of the engine; every Worker on the node shares them.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instance slots in the pooling allocator, for all cores together. Each slot reserves
    /// `memory_reservation` bytes of address space (not memory): 1000 slots of 4 GiB fit easily
    /// in 47-bit user space, and `vm.max_map_count` (65530) bounds loaded modules, not slots.
    /// Default: 1000.
    pub max_instances: u32,
    /// The largest memory limit any Worker may have; a Worker's own limit is enforced below it per
    /// store. Default: 128 MiB.
    pub max_memory_bytes: u64,
    /// Maximum wasm stack in bytes; deeper recursion traps with a stack overflow. Default: 512 KiB.
    pub max_wasm_stack: usize,
    /// How often the epoch ticks: the granularity of wall-clock deadlines and of cooperative
    /// yielding of a running guest to other tasks on its core. Default: 250 µs. A core reaps
    /// I/O completions only every few task polls, so a request on a core with CPU-bound guests
    /// waits several slices: with 1 ms slices another tenant's hello had a p99 of 69 ms beside a
    /// 4×-overloaded 5 ms Worker, with 250 µs 7.5 ms, at the same throughput of the hog
    /// (`benches/fairshare.sh`, docs/performance.md).
    pub epoch_tick: Duration,
    /// Bytes of each freed slot's linear memory reset in place and kept resident for the next
    /// instance instead of being returned to the kernel, which saves a page fault (and the
    /// `madvise` and TLB flush that cause it) per touched page on the next request. With the
    /// kernel's `PAGEMAP_SCAN` (Linux 6.7+, used automatically) only pages the guest dirtied are
    /// reset, wherever they lie; older kernels reset the lowest `keep_resident_bytes` with
    /// `memset` on every request, so lower this there. Default: 1 MiB, which covers the stack,
    /// data and first heap pages a Rust guest touches (docs/performance.md).
    pub keep_resident_bytes: usize,
    /// Find the pages a guest dirtied with `PAGEMAP_SCAN` (Linux 6.7+; ignored elsewhere) instead
    /// of resetting the lowest `keep_resident_bytes` wholesale. The ioctl costs ~2 µs per
    /// request whatever the guest touched; a wholesale `memset` costs ~1 µs per 100 KiB. So for
    /// a fleet of small guests (e.g. Rust built with a 64 KiB stack: 128 KiB of memory) turning
    /// this off and setting `keep_resident_bytes` to their memory size is ~7% faster; for 1 MiB+
    /// guests keep it on. Default: on (docs/performance.md has the measurements).
    pub pagemap_scan: bool,
    /// Modules kept mapped by the process-wide module cache (least recently used evicted first).
    /// Each mapped module costs a few kernel mappings (VMAs) and the kernel allows a process
    /// `vm.max_map_count` (65530 by default) in all, so this bounds the node however many Workers
    /// are requested; re-mapping an evicted module costs tens of µs, off the serving thread.
    /// The start-up check (`tenantry_loader::MappingBudget`) counts it together with the per-core
    /// pools and the instance slots (docs/design.md). Default: 2048 here; `tenantry serve`
    /// sizes it from the kernel's limit when its config does not set it
    /// (`tenantry_loader::MappingBudget::auto_loaded_modules`: ~11k at the default limit).
    pub max_loaded_modules: usize,
    /// Namespace indexes kept mapped by the process-wide index cache (least recently used
    /// evicted first; `tenantry_loader::IndexCache`). Each costs one kernel mapping, so this
    /// bounds the node however many namespaces it holds (one mapping per namespace ran out of
    /// `vm.max_map_count` near 63k namespaces); a publish maps its new index at once, and an
    /// evicted, idle namespace is mapped and validated again off the serving thread at its next
    /// request (~17 µs for a one-script index in a debug build, 5 ms for 100k scripts:
    /// docs/design.md "Namespaces at scale"). Counted in the start-up check
    /// (`tenantry_loader::MappingBudget`, docs/design.md). Default: 4096.
    pub max_mapped_indexes: usize,
    /// Changes a namespace's delta (`tenantry_loader::delta`) holds before they are merged
    /// into a new base index. A publish appends one record and reads the delta back, and every
    /// open index keeps its records decoded, so this bounds the publish's read and the memory
    /// per index; a merge rewrites every script of the namespace (~5 s at 1M Workers, off the
    /// publish path). Default: 1024.
    pub index_merge_records: usize,
    /// Idle instances that reuse-mode Workers (`WorkerSpec::reuse_instances`) may keep, for all
    /// cores together. Each pins a pool slot that no other Worker can get while it idles, so
    /// past this cap a finished instance is dropped instead of kept, and a core that runs out of
    /// slots drops its own idle instances first (`WorkerPool::evict_idle`). `None`: a quarter of
    /// `max_instances`, which leaves three quarters of the pool to requests in flight.
    pub max_idle_instances: Option<u32>,
    /// Compile uploads with Winch first ([`Tier::Baseline`]): a never-seen ~1 MB Rust module is
    /// routable after ~0.1 s instead of the ~1.2 s Cranelift takes on one core, and runs
    /// 1.1–1.2× slower until the Cranelift artifact, compiled in the background, takes over
    /// (docs/design.md "Two compiler tiers"). Costs a second pooling allocator of
    /// [`EngineSettings::baseline_slots`] slots (address space and mappings, counted by the
    /// start-up mapping check) and one more compile per upload. Default: on.
    pub baseline_compile: bool,
}

/// The baseline tier's pool has this fraction of [`EngineSettings::max_instances`] slots: it
/// serves only Workers uploaded in the last second or so, while their optimised code compiles.
pub const BASELINE_SLOT_DIVISOR: u32 = 4;

impl EngineSettings {
    /// Instance slots of the baseline tier's pool: a quarter of `max_instances` (at least one),
    /// none when [`EngineSettings::baseline_compile`] is off.
    pub fn baseline_slots(&self) -> u32 {
        if self.baseline_compile {
            self.max_instances.div_ceil(BASELINE_SLOT_DIVISOR).max(1)
        } else {
            0
        }
    }

    /// [`EngineSettings::max_idle_instances`], its default applied.
    pub fn idle_cap(&self) -> usize {
        self.max_idle_instances.unwrap_or(self.max_instances / 4) as usize
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: 1000,
            max_memory_bytes: 128 << 20,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_micros(250),
            keep_resident_bytes: 1 << 20,
            pagemap_scan: true,
            max_loaded_modules: 2048,
            max_mapped_indexes: 4096,
            index_merge_records: 1024,
            max_idle_instances: None,
            baseline_compile: true,
        }
    }
}

/// Which compiler made a module's code.
///
/// Uploads are compiled twice when [`EngineSettings::baseline_compile`] is on: first by Winch,
/// a single-pass compiler (~10× faster to compile, code 1.1–1.2× slower), so that the Worker is
/// routable at once; then by Cranelift in the background, whose artifact replaces the first as
/// a new index generation. Both engines have the same limits (fuel, epochs, memory, stack), so
/// a Worker faults alike on either; only speed differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Winch: fast to compile, served until the optimised code is ready.
    Baseline,
    /// Cranelift at `OptLevel::Speed`: what serves in the steady state.
    Optimised,
}

impl Tier {
    /// `"baseline"` or `"optimised"`, as the admin API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimised => "optimised",
        }
    }
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the wasm engine: {0}")]
pub struct EngineError(String);

/// Why an upload could not be compiled into an artifact.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompileError {
    /// Not a WebAssembly module (or WAT text), or it failed validation; the validator's message.
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// The module imports something the Worker ABI does not provide.
    #[error("module imports {} outside the Worker ABI: {}", if .0.len() == 1 { "a function" } else { "functions" }, .0.join(", "))]
    UnknownImports(Vec<String>),
    /// A required export is missing or has the wrong type.
    #[error("{0}")]
    BadExport(String),
    /// The module asks more of the compiler than an upload may (see [`MAX_FUNCTION_BODY_BYTES`]
    /// and [`MAX_FUNCTIONS`]).
    #[error("{0}")]
    TooComplex(String),
    /// The baseline tier is off (or could not compile this module): compile it optimised.
    #[error("the baseline compiler is not available: {0}")]
    NoBaseline(String),
}

/// The largest function body an upload may contain. Cranelift's memory and time grow with the
/// size of the function it compiles (register allocation is superlinear in the worst case), so
/// this bounds what one hostile upload can make a compile thread use; compilers emit far
/// smaller functions (a Rust hello world's largest is ~20 KiB). docs/design.md has the numbers.
pub const MAX_FUNCTION_BODY_BYTES: usize = 1 << 20;
/// The most functions an upload may define (each costs compile time and artifact space).
pub const MAX_FUNCTIONS: u32 = 100_000;

/// Checks the compile budget of a module before Cranelift sees it: the number of functions and
/// the size of each body. Malformed modules pass here and get the validator's message later.
fn check_compile_budget(wasm: &[u8]) -> Result<(), CompileError> {
    use wasmparser::{Parser, Payload};
    let mut index = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::CodeSectionStart { count, .. }) if count > MAX_FUNCTIONS => {
                return Err(CompileError::TooComplex(format!(
                    "module defines {count} functions, more than the limit of {MAX_FUNCTIONS}"
                )));
            }
            Ok(Payload::CodeSectionEntry(body)) => {
                let size = body.range().len();
                if size > MAX_FUNCTION_BODY_BYTES {
                    return Err(CompileError::TooComplex(format!(
                        "function body #{index} is {size} bytes, more than the limit of \
                         {MAX_FUNCTION_BODY_BYTES} bytes per function"
                    )));
                }
                index += 1;
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Validates and compiles a module (binary or WAT text) with `engine`, checking it against the
/// Worker ABI and the compile budget.
fn compile_with(engine: &wasmtime::Engine, wasm: &[u8]) -> Result<Module, CompileError> {
    let wasm = wat::parse_bytes(wasm).map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
    check_compile_budget(&wasm)?;
    let module = Module::new(engine, &wasm).map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
    crate::abi::check_module(&module)?;
    Ok(module)
}

/// Why a compiled artifact could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The artifact was built by another engine version or configuration.
    #[error("artifact {path} is incompatible with this engine: {message}")]
    Incompatible { path: String, message: String },
    #[error("cannot load artifact {path}: {message}")]
    Io { path: String, message: String },
}

/// The process-wide engine. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    wasmtime: wasmtime::Engine,
    settings: EngineSettings,
    compat_hash: String,
    /// Every host function of the Worker ABI, defined once per engine and shared by all Workers
    /// (defining them costs a type registration each; sharing makes a Worker load a lookup).
    linker: Linker<HostState>,
    /// The Winch engine of [`Tier::Baseline`], when [`EngineSettings::baseline_compile`] is on.
    baseline: Option<Baseline>,
    /// Idle reuse-mode instances on every core together (see [`EngineSettings::idle_cap`]).
    idle: AtomicUsize,
    /// Ticks left at the full rate (see [`Engine::start_epoch_ticker`]): set whenever a guest
    /// yields at a tick, counted down by the ticker.
    fast_ticks: AtomicU32,
}

/// The second engine: Winch-compiled code needs an engine configured for Winch (wasmtime checks
/// it when loading an artifact), so it has its own pool, linker and compatibility hash.
struct Baseline {
    wasmtime: wasmtime::Engine,
    compat_hash: String,
    linker: Linker<HostState>,
}

/// The wasmtime configuration both tiers share: every limit a Worker has is set here, so a
/// Worker hits the same fuel, epoch, memory and stack limits whichever compiler made its code.
fn config(settings: &EngineSettings, strategy: Strategy, slots: u32) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .total_stacks(slots)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(settings.max_memory_bytes as usize)
        .linear_memory_keep_resident(settings.keep_resident_bytes)
        .table_keep_resident(settings.keep_resident_bytes)
        .max_unused_warm_slots(slots)
        .pagemap_scan(if settings.pagemap_scan {
            Enabled::Auto
        } else {
            Enabled::No
        });

    let mut config = Config::new();
    config
        .strategy(strategy)
        .cranelift_opt_level(OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        // No `.eh_frame` registered with the system unwinder per module: glibc's libgcc keeps
        // registrations in a list, so mapping or unmapping a module cost O(modules mapped) —
        // 60% of the loader threads' time with 11k modules mapped (docs/performance.md).
        // Wasmtime walks wasm frames itself (traps, backtraces) and catches a host function's
        // panic before it would unwind through them, so nothing here needs it.
        .native_unwind_info(false)
        .max_wasm_stack(settings.max_wasm_stack)
        // The async fiber stack must hold the wasm stack plus host frames.
        .async_stack_size(settings.max_wasm_stack + (1 << 20));
    config
}

/// Builds one tier's engine, its compatibility hash and its linker.
fn build(
    settings: &EngineSettings,
    strategy: Strategy,
    slots: u32,
) -> Result<(wasmtime::Engine, String, Linker<HostState>), EngineError> {
    let wasmtime = wasmtime::Engine::new(&config(settings, strategy, slots))
        .map_err(|e| EngineError(format!("{e:#}")))?;
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&wasmtime.precompile_compatibility_hash(), &mut hasher);
    let compat_hash = hex::encode(&hasher.0.finalize()[..8]);
    let linker = crate::host::base_linker(&wasmtime)
        .map_err(|e| EngineError(format!("cannot define the host API: {e:#}")))?;
    Ok((wasmtime, compat_hash, linker))
}

impl Engine {
    pub fn new(settings: &EngineSettings) -> Result<Engine, EngineError> {
        let (wasmtime, compat_hash, linker) =
            build(settings, Strategy::Cranelift, settings.max_instances)?;
        let baseline = if settings.baseline_compile {
            let (wasmtime, compat_hash, linker) =
                build(settings, Strategy::Winch, settings.baseline_slots())?;
            Some(Baseline {
                wasmtime,
                compat_hash,
                linker,
            })
        } else {
            None
        };

        Ok(Engine {
            inner: Arc::new(Inner {
                wasmtime,
                settings: settings.clone(),
                compat_hash,
                linker,
                baseline,
                idle: AtomicUsize::new(0),
                fast_ticks: AtomicU32::new(0),
            }),
        })
    }

    /// The wasmtime engine underneath.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasmtime
    }

    /// The linker holding the Worker ABI's host functions for `module`: the baseline engine's
    /// for Winch code, else the optimised one's.
    pub(crate) fn linker_of(&self, module: &Module) -> &Linker<HostState> {
        match &self.inner.baseline {
            Some(b) if wasmtime::Engine::same(module.engine(), &b.wasmtime) => &b.linker,
            _ => &self.inner.linker,
        }
    }

    /// The tier whose compiler made `module`.
    pub fn tier_of(&self, module: &Module) -> Tier {
        match &self.inner.baseline {
            Some(b) if wasmtime::Engine::same(module.engine(), &b.wasmtime) => Tier::Baseline,
            _ => Tier::Optimised,
        }
    }

    /// Whether uploads are compiled by the baseline tier first.
    pub fn has_baseline(&self) -> bool {
        self.inner.baseline.is_some()
    }

    /// The compatibility hash of `tier`'s engine (see [`Engine::compat_hash`]); `None` for the
    /// baseline tier when it is off.
    pub fn tier_compat_hash(&self, tier: Tier) -> Option<&str> {
        match tier {
            Tier::Optimised => Some(&self.inner.compat_hash),
            Tier::Baseline => self.inner.baseline.as_ref().map(|b| b.compat_hash.as_str()),
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// Idle reuse-mode instances kept on every core together.
    pub fn idle_instances(&self) -> usize {
        self.inner.idle.load(Ordering::Relaxed)
    }

    /// Counts one more idle instance against the cap; `None` when the cap is reached (the
    /// instance is then dropped rather than kept). The count falls when the token is dropped.
    pub(crate) fn hold_idle(&self) -> Option<IdleToken> {
        let cap = self.inner.settings.idle_cap();
        self.inner
            .idle
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| IdleToken(self.inner.clone()))
    }

    /// 16 hex digits identifying the wasmtime version and every setting that changes compiled
    /// code. Artifacts are stored under it, and an index records it, so that a new engine
    /// recompiles from the kept originals instead of loading stale code.
    pub fn compat_hash(&self) -> &str {
        &self.inner.compat_hash
    }

    /// Validates and compiles a module (binary or WAT text) into `.cwasm` bytes, checking its
    /// imports and exports against the Worker ABI. Cranelift runs here: call it from a compile
    /// thread, never from a serving core.
    pub fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, CompileError> {
        self.compile(wasm)?
            .serialize()
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))
    }

    /// Validates and compiles a module (binary or WAT text) in memory, checking it against the
    /// Worker ABI like [`Engine::precompile`]. For tests and benchmarks; serving loads artifacts.
    pub fn compile(&self, wasm: &[u8]) -> Result<Module, CompileError> {
        compile_with(&self.inner.wasmtime, wasm)
    }

    /// [`Engine::precompile`] with Winch: ~10× faster, for [`Tier::Baseline`]. Fails with
    /// [`CompileError::NoBaseline`] when the tier is off or Winch cannot compile the module
    /// (the caller then compiles it optimised, which gives the authoritative verdict).
    pub fn precompile_baseline(&self, wasm: &[u8]) -> Result<Vec<u8>, CompileError> {
        self.compile_baseline(wasm)?
            .serialize()
            .map_err(|e| CompileError::NoBaseline(format!("{e:#}")))
    }

    /// [`Engine::compile`] with Winch ([`Tier::Baseline`]); for tests and benchmarks.
    pub fn compile_baseline(&self, wasm: &[u8]) -> Result<Module, CompileError> {
        let baseline = self
            .inner
            .baseline
            .as_ref()
            .ok_or_else(|| CompileError::NoBaseline("baseline_compile is off".into()))?;
        compile_with(&baseline.wasmtime, wasm)
    }

    /// Compiles the JavaScript engine (`runtimes/js`, pre-initialised) into `.cwasm` bytes. Like
    /// [`Engine::precompile`], but the engine may import `tenantry:js/v1`, which uploads may not,
    /// and its size is not held to an upload's compile budget (it ships with the node).
    pub fn precompile_js_engine(&self, wasm: &[u8]) -> Result<Vec<u8>, CompileError> {
        let module = Module::new(&self.inner.wasmtime, wasm)
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        crate::abi::check_js_engine(&module)?;
        module
            .serialize()
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))
    }

    /// Loads a `.cwasm` artifact of `tier` by mapping it into memory.
    ///
    /// # Safety
    /// The file must have been written by [`Engine::precompile`] (or, for [`Tier::Baseline`],
    /// [`Engine::precompile_baseline`]) of a compatible engine (wasmtime runs its code without
    /// re-validating it) and must not change while the returned module, or any instance of it,
    /// is alive: it is mapped, not read.
    pub unsafe fn load_artifact(&self, path: &Path, tier: Tier) -> Result<Module, LoadError> {
        let engine = match (tier, &self.inner.baseline) {
            (Tier::Optimised, _) => &self.inner.wasmtime,
            (Tier::Baseline, Some(b)) => &b.wasmtime,
            (Tier::Baseline, None) => {
                return Err(LoadError::Incompatible {
                    path: path.display().to_string(),
                    message: "a baseline artifact, and baseline_compile is off".into(),
                });
            }
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { Module::deserialize_file(engine, path) }.map_err(|e| {
            let message = format!("{e:#}");
            let path = path.display().to_string();
            if message.contains("compatible") || message.contains("version") {
                LoadError::Incompatible { path, message }
            } else {
                LoadError::Io { path, message }
            }
        })
    }

    /// Starts the thread that advances the epoch; it stops when the last clone of this engine is
    /// dropped.
    ///
    /// It ticks every `epoch_tick` while guests need slicing — for [`FAST_TICKS`] ticks after any
    /// guest last yielded at a tick ([`Engine::guest_yielded`]) — and [`IDLE_TICK_FACTOR`] times
    /// less often otherwise. Each tick wakes the ticker on a CPU that a serving thread shares
    /// (on a busy node every CPU serves), and a tick that finds only short requests does nothing:
    /// they run on past it (`MIN_BRIEF_SLICE` in `invoke`). Under a JavaScript hello at ~48k
    /// requests/s the 4 000 wake-ups a second cost ~5% of the serving core (the ticker's own
    /// context switches, `perf`, docs/performance.md). A guest that runs long is still met by a
    /// tick within `IDLE_TICK_FACTOR × epoch_tick` (1 ms by default) — the granularity of
    /// wall-clock limits while nothing else runs long — and from its first yield on, every
    /// CPU-bound guest is sliced at `epoch_tick` as before.
    pub fn start_epoch_ticker(&self) {
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("tenantry-epoch".into())
            .spawn(move || {
                wake_on_time();
                // Ticks are due at fixed times, so the time the thread takes to wake and run
                // does not stretch every tick (a late tick is not made up for).
                let mut due = Instant::now();
                while let Some(inner) = weak.upgrade() {
                    inner.wasmtime.increment_epoch();
                    if let Some(baseline) = &inner.baseline {
                        baseline.wasmtime.increment_epoch();
                    }
                    due += inner.next_tick_in();
                    drop(inner);
                    let now = Instant::now();
                    match due.checked_duration_since(now) {
                        Some(pause) => std::thread::sleep(pause),
                        None => due = now,
                    }
                }
            })
            .expect("spawning the epoch thread");
    }

    /// A guest yielded at a tick (it had run a slice): keep ticking at the full rate for a while.
    pub(crate) fn guest_yielded(&self) {
        self.inner.fast_ticks.store(FAST_TICKS, Ordering::Relaxed);
    }
}

impl Inner {
    /// The time from one tick to the next: `epoch_tick` while guests need slicing, else
    /// [`IDLE_TICK_FACTOR`] times that (see [`Engine::start_epoch_ticker`]).
    fn next_tick_in(&self) -> Duration {
        let tick = self.settings.epoch_tick;
        let fast = self
            .fast_ticks
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if fast { tick } else { tick * IDLE_TICK_FACTOR }
    }
}

/// Ticks at the full rate after a guest last yielded: 200 × 250 µs = 50 ms by default.
pub(crate) const FAST_TICKS: u32 = 200;

/// How much less often the epoch ticks while no guest has yielded for [`FAST_TICKS`] ticks.
pub(crate) const IDLE_TICK_FACTOR: u32 = 4;

/// Makes the calling thread (the epoch ticker) wake when its sleep ends, not whenever the CPU
/// it shares with a busy serving thread next gets round to it.
///
/// - **Timer slack**: the kernel may delay a sleeping thread's wake-up by its slack (50 µs by
///   default) to batch wake-ups: a fifth of a 250 µs tick.
/// - **Scheduler slice**: Linux's EEVDF scheduler may let a running thread go on before a woken
///   one of equal weight runs, unless the woken one asked for a shorter slice (Linux 6.12+,
///   `sched_attr.sched_runtime`, no privileges needed). Older kernels refuse the call and keep
///   their own wake-up preemption.
///
/// Measured with the node pinned to one CPU and a guest spinning on it (`benches/fairshare.sh`'s
/// hog, docs/performance.md): 3.1k ticks per second before (a 320 µs slice for a 250 µs tick),
/// 3.7k with this, 4.0k with the fixed due times of [`Engine::start_epoch_ticker`] as well.
fn wake_on_time() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only this thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, TICKER_TIMER_SLACK_NS) };
    // `struct sched_attr` (SCHED_ATTR_SIZE_VER1), which the libc crate does not define.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: 0,
        priority: 0,
        runtime: TICKER_SLICE_NS,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr(0, attr, 0) reads one `sched_attr` of the size it states from a live
    // local and changes only the calling thread's scheduling; a refusal (older kernel) is harmless.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
}

/// The epoch thread's timer slack: how late the kernel may wake it, in nanoseconds.
const TICKER_TIMER_SLACK_NS: libc::c_ulong = 1_000;

/// The epoch thread's scheduler slice (the shortest Linux allows): it runs a few µs per tick.
const TICKER_SLICE_NS: u64 = 100_000;

/// One idle instance counted against [`EngineSettings::idle_cap`] while it lives.
pub(crate) struct IdleToken(Arc<Inner>);

impl Drop for IdleToken {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Feeds `Hash` output into SHA-256, so the compatibility hash is stable across processes (unlike
/// `DefaultHasher`, whose keys may change between Rust releases).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticker_slows_down_until_a_guest_yields_and_for_a_while_after() {
        let engine = crate::test_support::small_engine(2);
        let tick = engine.inner.settings.epoch_tick;
        let idle = tick * IDLE_TICK_FACTOR;
        assert!(idle > tick);
        assert_eq!(engine.inner.next_tick_in(), idle);
        engine.guest_yielded();
        for _ in 0..FAST_TICKS {
            assert_eq!(engine.inner.next_tick_in(), tick);
        }
        assert_eq!(engine.inner.next_tick_in(), idle);
        // Every yield starts the count again.
        engine.guest_yielded();
        assert_eq!(engine.inner.next_tick_in(), tick);
        engine.guest_yielded();
        for _ in 0..FAST_TICKS {
            assert_eq!(engine.inner.next_tick_in(), tick);
        }
        assert_eq!(engine.inner.next_tick_in(), idle);
    }
}
