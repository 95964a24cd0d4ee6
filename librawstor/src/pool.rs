//! Worker threads for operations that block on several servers in turn
//! (an erasure-coded read-modify-write waits for reads, then encodes, then
//! writes). The event loop thread only completes I/O; it never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use parking_lot::Mutex;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::remote::Finish;

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

/// Starts every operation, then waits for all of them; results are in
/// the order of `starts`. Buffers lent to the operations may be freed
/// once this returns: every completion has been received (a completion
/// dropped without a result counts as an I/O error). The waiting thread
/// is woken once, by the last completion, not once per operation.
pub(crate) fn wait_all<'a>(starts: Vec<Box<dyn FnOnce(Finish) + 'a>>) -> Vec<Result<u64>> {
    wait_all_with(starts, || {})
}

/// [`wait_all`], running `started` once every operation has been started
/// and before the wait.
pub(crate) fn wait_all_with<'a>(
    starts: Vec<Box<dyn FnOnce(Finish) + 'a>>,
    started: impl FnOnce(),
) -> Vec<Result<u64>> {
    let count = starts.len();
    let (done, all_done) = crossbeam_channel::bounded(1);
    let shared = Arc::new(Outcomes {
        results: Mutex::new((0..count).map(|_| None).collect()),
        left: AtomicUsize::new(count),
        done,
    });
    for (index, start) in starts.into_iter().enumerate() {
        let slot = Slot {
            shared: Arc::clone(&shared),
            index,
            result: None,
        };
        start(Box::new(move |result| slot.fill(result)));
    }
    started();
    if count > 0 {
        // Every slot sends before it is gone, so this cannot fail while
        // `shared` holds the sender; the result is checked below anyway.
        let _ = all_done.recv();
    }
    let results = std::mem::take(&mut *shared.results.lock());
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::new(libc::EIO, "the request was dropped"))))
        .collect()
}

/// What [`wait_all`]'s operations have returned so far.
struct Outcomes {
    results: Mutex<Vec<Option<Result<u64>>>>,
    left: AtomicUsize,
    done: Sender<()>,
}

/// One operation's place in [`Outcomes`]: filled when its completion runs,
/// or with an I/O error when the completion is dropped unrun.
struct Slot {
    shared: Arc<Outcomes>,
    index: usize,
    result: Option<Result<u64>>,
}

impl Slot {
    fn fill(mut self, result: Result<u64>) {
        self.result = Some(result);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let result = self
            .result
            .take()
            .unwrap_or_else(|| Err(Error::new(libc::EIO, "the request was dropped")));
        self.shared.results.lock()[self.index] = Some(result);
        if self.shared.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.shared.done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_and_collects_results_in_order() {
        let pool = Pool::new(2, "test-pool").unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..10u64 {
            let tx = tx.clone();
            pool.run(move || tx.send(i).unwrap());
        }
        let mut got: Vec<u64> = (0..10).map(|_| rx.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        let results = wait_all(vec![
            Box::new(|f: Finish| f(Ok(1))),
            Box::new(|f: Finish| drop(f)),
            Box::new(|f: Finish| f(Err(Error::invalid("no")))),
        ]);
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert_eq!(results[1].as_ref().unwrap_err().errno(), libc::EIO);
        assert_eq!(results[2].as_ref().unwrap_err().errno(), libc::EINVAL);
    }
}
