//! Threads fed through one queue: the compile pool, the module loader and the index loader are
//! each a few of them, so that such work never runs on a serving core.

use std::thread::JoinHandle;

use crossbeam_channel::Sender;

/// `n` threads that each take jobs from one queue and hand them to the same function. Dropping
/// it lets queued jobs finish, then joins the threads.
pub(crate) struct JobThreads<J> {
    jobs: Option<Sender<J>>,
    threads: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static> JobThreads<J> {
    /// Starts `n` threads (at least one) named `name-0`, `name-1`, …, each running `work` on
    /// the jobs it takes.
    pub(crate) fn start(
        n: usize,
        name: &str,
        work: impl Fn(J) + Clone + Send + 'static,
    ) -> std::io::Result<JobThreads<J>> {
        let (tx, rx) = crossbeam_channel::unbounded::<J>();
        let threads = (0..n.max(1))
            .map(|i| {
                let (rx, work) = (rx.clone(), work.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || rx.into_iter().for_each(work))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(JobThreads {
            jobs: Some(tx),
            threads,
        })
    }

    /// Queues `job`. It can fail only once every thread is gone (a panic in `work`); the job is
    /// then dropped with its reply channel, which tells the waiting side.
    pub(crate) fn send(&self, job: J) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }
}

impl<J> Drop for JobThreads<J> {
    fn drop(&mut self) {
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
