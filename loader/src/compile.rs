//! The compile pool: a few threads that run Cranelift (or Winch, for the baseline tier) for
//! uploads, fed through a channel, so compiling never runs on a serving core.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use tenantry_core::Tier;

use crate::artifacts::{ArtifactError, ArtifactId, ArtifactStore};
use crate::jobs::JobThreads;

type Compiled = Result<(ArtifactId, Tier), ArtifactError>;

/// An upload, the tier to compile it for first, and where the result goes.
type Job = (Vec<u8>, Tier, Sender<Compiled>);

/// How long [`Compiler::compile`] waits by default. A Rust or C Worker of a few MiB compiles in
/// well under a second on one core; a minute means a pathological module or a saturated pool.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

/// A pool of compile threads. Dropping it lets queued jobs finish, then stops the threads.
pub struct Compiler {
    jobs: JobThreads<Job>,
    timeout: Duration,
}

impl Compiler {
    /// Starts `threads` compile threads (at least one) storing into `artifacts`.
    pub fn new(artifacts: ArtifactStore, threads: usize) -> Compiler {
        let compile = move |(wasm, tier, reply): Job| {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| match tier {
                Tier::Optimised => artifacts.put(&wasm).map(|id| (id, Tier::Optimised)),
                Tier::Baseline => artifacts.put_baseline(&wasm),
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                Err(ArtifactError::Internal(what))
            });
            let _ = reply.send(result);
        };
        Compiler {
            jobs: JobThreads::start(threads, "tenantry-compile", compile)
                .expect("spawning a compile thread"),
            timeout: DEFAULT_COMPILE_TIMEOUT,
        }
    }

    /// Sets how long [`Compiler::compile`] waits for a result (queueing included).
    pub fn with_timeout(mut self, timeout: Duration) -> Compiler {
        self.timeout = timeout;
        self
    }

    /// Queues an upload, compiled optimised; the result arrives on the returned channel.
    pub fn submit(&self, wasm: Vec<u8>) -> Receiver<Compiled> {
        self.submit_for(wasm, Tier::Optimised)
    }

    fn submit_for(&self, wasm: Vec<u8>, tier: Tier) -> Receiver<Compiled> {
        let (reply, result) = crossbeam_channel::bounded(1);
        self.jobs.send((wasm, tier, reply));
        result
    }

    /// Compiles and stores an upload optimised, blocking until done or until the timeout
    /// passes, which fails with [`ArtifactError::Timeout`].
    pub fn compile(&self, wasm: Vec<u8>) -> Result<ArtifactId, ArtifactError> {
        self.compile_for(wasm, Tier::Optimised).map(|(id, _)| id)
    }

    /// Like [`Compiler::compile`], but with the baseline tier when it is on
    /// ([`ArtifactStore::put_baseline`]): the tier says whether the optimised artifact is still
    /// to be made.
    pub fn compile_baseline(&self, wasm: Vec<u8>) -> Compiled {
        self.compile_for(wasm, Tier::Baseline)
    }

    fn compile_for(&self, wasm: Vec<u8>, tier: Tier) -> Compiled {
        use crossbeam_channel::RecvTimeoutError;
        let started = std::time::Instant::now();
        match self.submit_for(wasm, tier).recv_timeout(self.timeout) {
            // A result that came in just as the wait ended is late all the same: the limit
            // holds whichever thread the scheduler ran first.
            Ok(_) if started.elapsed() > self.timeout => Err(ArtifactError::Timeout(self.timeout)),
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ArtifactError::Timeout(self.timeout)),
            Err(RecvTimeoutError::Disconnected) => {
                Err(ArtifactError::Internal("the compile pool stopped".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_core::{Engine, EngineSettings};

    #[test]
    fn compiles_many_uploads_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(&EngineSettings {
            max_instances: 4,
            ..Default::default()
        })
        .unwrap();
        let store = ArtifactStore::open(dir.path(), engine).unwrap();
        let compiler = Compiler::new(store.clone(), 2);
        let pending: Vec<_> = (0..6)
            .map(|i| {
                let wat = format!(
                    r#"(module (memory (export "memory") 1)
                    (func (export "tenantry_fetch") (result i32) i32.const {i}))"#
                );
                compiler.submit(wat.into_bytes())
            })
            .collect();
        let ids: Vec<_> = pending
            .into_iter()
            .map(|rx| rx.recv().unwrap().unwrap().0)
            .collect();
        assert!(ids.iter().all(|id| store.contains(id)));
        let bad = compiler.compile(b"(module (func (export \"x\")))".to_vec());
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("missing export"), "{message}");
    }

    fn store() -> (tempfile::TempDir, ArtifactStore) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(&EngineSettings {
            max_instances: 4,
            ..Default::default()
        })
        .unwrap();
        let store = ArtifactStore::open(dir.path(), engine).unwrap();
        (dir, store)
    }

    #[test]
    fn a_compile_past_the_timeout_fails_with_the_limit() {
        let (_dir, store) = store();
        let compiler = Compiler::new(store, 1).with_timeout(Duration::from_nanos(1));
        let wat = r#"(module (memory (export "memory") 1)
            (func (export "tenantry_fetch") (result i32) i32.const 7))"#;
        let err = compiler.compile(wat.as_bytes().to_vec()).unwrap_err();
        assert!(matches!(err, ArtifactError::Timeout(_)), "{err}");
        assert!(
            err.to_string().contains("took longer than the limit"),
            "{err}"
        );
    }

    #[test]
    fn an_oversized_function_is_refused_before_cranelift_runs() {
        let (_dir, store) = store();
        let compiler = Compiler::new(store.clone(), 1);
        let nops = "nop ".repeat(tenantry_core::MAX_FUNCTION_BODY_BYTES + 1);
        let wat = format!(
            r#"(module (memory (export "memory") 1)
            (func (export "tenantry_fetch") (result i32) {nops} i32.const 7))"#
        );
        let err = compiler.compile(wat.into_bytes()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("function body #0") && message.contains("per function"),
            "{message}"
        );
    }
}
