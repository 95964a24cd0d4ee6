//! Worker threads for operations that block: in the client, those that
//! wait on several servers in turn (an erasure-coded read-modify-write
//! waits for reads, then encodes, then writes; the event loop thread only
//! completes I/O and never waits); in the servers, the slow requests.
//!
//! Every pool's queue is bounded. A thread that may wait for room does
//! ([`Pool::run`]); the event loop thread and the pool's own workers never
//! wait for it (the loop delivers the completions the workers wait for, and
//! a worker waiting for its own pool could wait for itself): their job is
//! refused when the queue is full, and its operation fails with `EAGAIN`
//! ([`Pool::run_or`]).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::remote::Finish;

use crate::error::{Error, Result};

/// Work for a worker.
pub type Job = Box<dyn FnOnce() + Send>;

/// Numbers the pools, so that a worker knows its own.
static NEXT_POOL: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// On a worker: its pool's number (0 elsewhere).
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

/// A fixed set of threads taking jobs in order from a queue of at most
/// a given number; they end when the pool is dropped and the jobs queued
/// before have run.
pub struct Pool {
    jobs: Option<Sender<Job>>,
    threads: Vec<thread::JoinHandle<()>>,
    id: usize,
    queue: usize,
}

impl Pool {
    /// `threads` workers named `{name}-{i}`, taking jobs from a queue of
    /// at most `queue`.
    pub fn new(threads: usize, name: &str, queue: usize) -> Result<Self> {
        assert!(threads > 0 && queue > 0, "a pool has threads and room");
        let (jobs, queued) = crossbeam_channel::bounded::<Job>(queue);
        let id = NEXT_POOL.fetch_add(1, Ordering::Relaxed);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let queued: Receiver<Job> = queued.clone();
            let handle = thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    WORKER_OF.with(|of| of.set(id));
                    for job in queued {
                        // A bug in one job must not take a worker away.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            crate::log::warn("a worker's job panicked; the worker goes on");
                        }
                    }
                })
                .map_err(|e| Error::io("cannot start a worker thread", e))?;
            handles.push(handle);
        }
        Ok(Self {
            jobs: Some(jobs),
            threads: handles,
            id,
            queue,
        })
    }

    /// Whether this thread must not wait for room in this pool.
    fn must_not_wait(&self) -> bool {
        crate::event_loop::on_loop_thread() || WORKER_OF.with(Cell::get) == self.id
    }

    /// Runs `job` on a worker thread, first waiting while the queue is
    /// full: only on threads that may wait (see [`Pool::run_or`]).
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        assert!(
            !self.must_not_wait(),
            "the loop thread and workers never wait for room"
        );
        if let Some(jobs) = &self.jobs {
            // The workers hold the receiver for as long as the pool lives.
            let _ = jobs.send(Box::new(job));
        }
    }

    /// Runs `job(finish)` on a worker thread; refused (see
    /// [`Pool::run_or`]), `finish` gets the error.
    pub(crate) fn run_finishing(&self, finish: Finish, job: impl FnOnce(Finish) + Send + 'static) {
        let slot = Arc::new(Mutex::new(Some(finish)));
        let taken = Arc::clone(&slot);
        self.run_or(
            move || {
                if let Some(finish) = taken.lock().take() {
                    job(finish)
                }
            },
            move |err| {
                if let Some(finish) = slot.lock().take() {
                    finish(Err(err))
                }
            },
        );
    }

    /// Runs `job` on a worker thread; on the loop thread or one of this
    /// pool's workers, when the queue is full, runs `refused` instead,
    /// here and now, with the error its operation fails with. Elsewhere
    /// waits for room as [`Pool::run`].
    pub(crate) fn run_or(&self, job: impl FnOnce() + Send + 'static, refused: impl FnOnce(Error)) {
        let Some(jobs) = &self.jobs else {
            return refused(Error::new(libc::ESHUTDOWN, "the worker pool has stopped"));
        };
        if !self.must_not_wait() {
            let _ = jobs.send(Box::new(job));
            return;
        }
        if jobs.try_send(Box::new(job)).is_err() {
            refused(Error::new(
                libc::EAGAIN,
                format!(
                    "{} operations already wait for a worker thread; try again",
                    self.queue
                ),
            ));
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
            pool: Arc::new(Pool::new(1, "test-pool", 64).expect("a thread")),
            settle: Arc::new(Pool::new(1, "test-settle", 64).expect("a thread")),
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
        let pool = Pool::new(2, "test-pool", 4).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..10u64 {
            let tx = tx.clone();
            pool.run(move || tx.send(i).unwrap());
        }
        let mut got: Vec<u64> = (0..10).map(|_| rx.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_worker_is_refused_when_its_own_queue_is_full() {
        let pool = Arc::new(Pool::new(1, "test-pool", 1).unwrap());
        let (release, held) = crossbeam_channel::bounded::<()>(0);
        let (tx, rx) = crossbeam_channel::unbounded();
        let me = Arc::clone(&pool);
        pool.run(move || {
            // The queue takes one job; the second is refused, not waited
            // for (this worker is the only one that could make room).
            for i in 0..2 {
                let tx = tx.clone();
                let refusals = tx.clone();
                me.run_or(
                    move || tx.send(Ok(i)).unwrap(),
                    move |err| refusals.send(Err(err.errno())).unwrap(),
                );
            }
            held.recv().unwrap();
        });
        assert_eq!(rx.recv().unwrap(), Err(libc::EAGAIN));
        release.send(()).unwrap();
        assert_eq!(rx.recv().unwrap(), Ok(0));
    }
}
