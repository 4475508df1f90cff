//! The compile pool: a few threads that run Cranelift for uploads, fed through a channel, so
//! compiling never runs on a serving core.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::artifacts::{ArtifactError, ArtifactId, ArtifactStore};

type Job = (Vec<u8>, Sender<Result<ArtifactId, ArtifactError>>);

/// A pool of compile threads. Dropping it lets queued jobs finish, then stops the threads.
pub struct Compiler {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Compiler {
    /// Starts `threads` compile threads (at least one) storing into `artifacts`.
    pub fn new(artifacts: ArtifactStore, threads: usize) -> Compiler {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let artifacts = artifacts.clone();
                std::thread::Builder::new()
                    .name(format!("tenantry-compile-{i}"))
                    .spawn(move || {
                        for (wasm, reply) in rx {
                            let result =
                                std::panic::catch_unwind(AssertUnwindSafe(|| artifacts.put(&wasm)))
                                    .unwrap_or_else(|panic| {
                                        let what = panic
                                            .downcast_ref::<&str>()
                                            .map(|s| s.to_string())
                                            .or_else(|| panic.downcast_ref::<String>().cloned())
                                            .unwrap_or_else(|| "a panic".into());
                                        Err(ArtifactError::Internal(what))
                                    });
                            let _ = reply.send(result);
                        }
                    })
                    .expect("spawning a compile thread")
            })
            .collect();
        Compiler {
            jobs: Some(tx),
            threads,
        }
    }

    /// Queues an upload; the result arrives on the returned channel.
    pub fn submit(&self, wasm: Vec<u8>) -> Receiver<Result<ArtifactId, ArtifactError>> {
        let (reply, result) = crossbeam_channel::bounded(1);
        if let Some(jobs) = &self.jobs {
            // The threads only stop when `jobs` is dropped, so this cannot fail while `self` lives.
            let _ = jobs.send((wasm, reply));
        }
        result
    }

    /// Compiles and stores an upload, blocking until done.
    pub fn compile(&self, wasm: Vec<u8>) -> Result<ArtifactId, ArtifactError> {
        self.submit(wasm)
            .recv()
            .unwrap_or_else(|_| Err(ArtifactError::Internal("the compile pool stopped".into())))
    }
}

impl Drop for Compiler {
    fn drop(&mut self) {
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
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
            .map(|rx| rx.recv().unwrap().unwrap())
            .collect();
        assert!(ids.iter().all(|id| store.contains(id)));
        let bad = compiler.compile(b"(module (func (export \"x\")))".to_vec());
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("missing export"), "{message}");
    }
}
