//! The instance's event loop: one thread blocked in `mio::Poll`, woken by
//! a `mio::Waker` when work arrives. It runs the operations that must not
//! block a submitting thread (durability barriers today; the sockets of
//! `ost://` and `mdt://` register with the same `Poll`).

use std::thread::{JoinHandle, ThreadId};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Poll, Token, Waker};

use crate::error::{Error, Result};

const WAKE_TOKEN: Token = Token(0);
/// Events taken from one `poll` call.
const EVENTS_PER_POLL: usize = 256;

/// Work for the loop thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// A running event loop; dropping it stops the thread.
pub struct EventLoop {
    jobs: Sender<Option<Job>>,
    waker: Waker,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl EventLoop {
    /// Starts the loop thread.
    pub fn start() -> Result<Self> {
        let poll = Poll::new().map_err(|e| Error::io("cannot create the event loop", e))?;
        let waker = Waker::new(poll.registry(), WAKE_TOKEN)
            .map_err(|e| Error::io("cannot create the loop waker", e))?;
        let (jobs, queue) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("rawstor-loop".into())
            .spawn(move || run(poll, queue))
            .map_err(|e| Error::io("cannot start the event loop thread", e))?;
        Ok(Self {
            jobs,
            waker,
            thread_id: thread.thread().id(),
            thread: Some(thread),
        })
    }

    /// Runs `job` on the loop thread.
    pub fn execute(&self, job: Job) {
        self.jobs
            .send(Some(job))
            .expect("the loop thread lives as long as its handle");
        // A failed wake leaves the job queued; the next wake runs it.
        if let Err(e) = self.waker.wake() {
            crate::log::warn(&format!("cannot wake the event loop: {e}"));
        }
    }
}

fn run(mut poll: Poll, queue: Receiver<Option<Job>>) {
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                crate::log::warn(&format!("event loop poll failed: {e}"));
            }
        }
        while let Ok(job) = queue.try_recv() {
            let Some(job) = job else {
                return;
            };
            // A bug in one job must not stop the loop that every other
            // completion depends on.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                crate::log::warn("an event loop job panicked; the loop goes on");
            }
        }
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        let _ = self.jobs.send(None);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            // The last handle may be dropped by a job on the loop itself.
            if std::thread::current().id() != self.thread_id {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_on_its_thread_and_stops() {
        let event_loop = EventLoop::start().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        event_loop.execute(Box::new(move || {
            tx.send(std::thread::current().name().map(String::from))
                .unwrap()
        }));
        assert_eq!(rx.recv().unwrap().as_deref(), Some("rawstor-loop"));
        drop(event_loop);
    }
}
