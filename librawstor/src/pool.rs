//! Worker threads for operations that block on several servers in turn
//! (an erasure-coded read-modify-write waits for reads, then encodes, then
//! writes). The event loop thread only completes I/O; it never waits.

use std::thread;

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking jobs in order; they end when the pool
/// is dropped and the jobs queued before have run.
pub(crate) struct Pool {
    jobs: Option<Sender<Job>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Pool {
    pub(crate) fn new(threads: usize, name: &str) -> Result<Self> {
        let (jobs, queued) = crossbeam_channel::unbounded::<Job>();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let queued: Receiver<Job> = queued.clone();
            let handle = thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    for job in queued {
                        job();
                    }
                })
                .map_err(|e| Error::io("cannot start a worker thread", e))?;
            handles.push(handle);
        }
        Ok(Self {
            jobs: Some(jobs),
            threads: handles,
        })
    }

    /// Runs `job` on a worker thread.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(jobs) = &self.jobs {
            // The workers hold the receiver for as long as the pool lives.
            let _ = jobs.send(Box::new(job));
        }
    }
}

/// The threads an erasure-coded object hands blocking work to.
#[derive(Clone)]
pub(crate) struct Workers {
    /// Operations that wait on shards in turn (rebuilds, the read-modify-
    /// writes that cannot start at once).
    pub(crate) pool: Arc<Pool>,
    /// Recording in the MDT the shards a write missed: threads of their
    /// own, so that it never waits behind a worker that waits for the
    /// stripes the write being settled still holds.
    pub(crate) settle: Arc<Pool>,
}

impl Workers {
    /// One thread of each, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self {
            pool: Arc::new(Pool::new(1, "test-pool").expect("a thread")),
            settle: Arc::new(Pool::new(1, "test-settle").expect("a thread")),
        }
    }
}

impl Drop for Pool {
    /// Lets the queued jobs run, then joins the threads (all but the
    /// current one: a job may drop the last reference to the pool).
    fn drop(&mut self) {
        self.jobs = None;
        let me = thread::current().id();
        for handle in self.threads.drain(..) {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_job() {
        let pool = Pool::new(2, "test-pool").unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..10u64 {
            let tx = tx.clone();
            pool.run(move || tx.send(i).unwrap());
        }
        let mut got: Vec<u64> = (0..10).map(|_| rx.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }
}
