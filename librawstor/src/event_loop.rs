//! The instance's event loop: one thread blocked in `mio::Poll`, woken by
//! a `mio::Waker` when work arrives. It runs the operations that must not
//! block a submitting thread (durability barriers of `file://`) and owns
//! the readiness of every `ost://` connection: sources register with a
//! [`Handler`] that is told when its socket is ready and asked for its
//! next deadline, so the loop sleeps exactly until something is due and
//! never polls when idle.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{JoinHandle, ThreadId};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use mio::event::Event;
use mio::{Events, Poll, Registry, Token, Waker};

use crate::error::{Error, Result};

const WAKE_TOKEN: Token = Token(0);

/// Events taken from one `poll` call.
const EVENTS_PER_POLL: usize = 256;
/// Jobs sent to the loop thread and not yet taken, at most: beyond it a
/// sending thread waits (the loop takes them all every round). Jobs the
/// loop thread gives itself never wait: they run later in the same round.
const LOOP_QUEUE: usize = 4096;

/// Work left for the end of the loop's current round.
type Deferred = Vec<Box<dyn FnOnce()>>;

thread_local! {
    /// On the loop thread while it handles a round (the events of one
    /// `poll`, then the queued jobs): what runs once the round is done.
    static ROUND: RefCell<Option<Deferred>> = const { RefCell::new(None) };
    /// Whether this is an event loop's thread.
    static LOOP_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// On the loop thread: jobs it gave itself, run in the current round
    /// (or the next: the loop is woken for them).
    static OWN_JOBS: RefCell<VecDeque<Job>> = const { RefCell::new(VecDeque::new()) };
}

/// Leaves `f` for the end of the loop's current round when called from
/// the loop thread inside one; anywhere else gives it back.
pub(crate) fn after_round(f: Box<dyn FnOnce()>) -> std::result::Result<(), Box<dyn FnOnce()>> {
    ROUND.with(|round| match round.borrow_mut().as_mut() {
        Some(deferred) => {
            deferred.push(f);
            Ok(())
        }
        None => Err(f),
    })
}

/// Whether this is an event loop's thread (which never waits).
pub(crate) fn on_loop_thread() -> bool {
    LOOP_THREAD.with(std::cell::Cell::get)
}

/// Whether this is the loop thread inside a round.
pub(crate) fn in_round() -> bool {
    ROUND.with(|round| round.borrow().is_some())
}

/// What a registered source does on the loop thread.
pub trait Handler: Send + Sync {
    /// Its socket is ready.
    fn ready(&self, registry: &Registry, event: &Event);
    /// Called after every wake-up: do what is due at `now`, return when
    /// to be called next (`None`: nothing pending).
    fn tick(&self, registry: &Registry, now: Instant) -> Option<Instant>;
}

/// The loop thread's state, lent to jobs.
pub struct LoopContext<'a> {
    /// Where sources register.
    pub registry: &'a Registry,
    handlers: &'a mut HashMap<Token, Arc<dyn Handler>>,
}

impl LoopContext<'_> {
    /// Makes `handler` receive events for `token` and ticks.
    pub fn add_handler(&mut self, token: Token, handler: Arc<dyn Handler>) {
        self.handlers.insert(token, handler);
    }
}

/// Work for the loop thread.
pub type Job = Box<dyn FnOnce(&mut LoopContext<'_>) + Send>;

/// A cloneable way to reach the loop from other threads (connections
/// keep one). It does not keep the loop running.
#[derive(Clone)]
pub struct LoopHandle {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
    registry: Arc<Registry>,
}

impl LoopHandle {
    /// The loop's registry, to change a source's interest from another
    /// thread.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs `job` on the loop thread (dropped if the loop has ended).
    /// Another thread waits while [`LOOP_QUEUE`] jobs are queued; the loop
    /// thread itself never waits.
    pub fn execute(&self, job: Job) {
        if on_loop_thread() {
            OWN_JOBS.with(|own| own.borrow_mut().push_back(job));
            self.wake();
        } else if self.jobs.send(job).is_ok() {
            self.wake();
        }
    }

    /// Makes the loop tick now (after a new deadline appeared).
    pub fn wake(&self) {
        // A failed wake leaves the job queued; the next wake runs it.
        if let Err(e) = self.waker.wake() {
            crate::log::warn(&format!("cannot wake the event loop: {e}"));
        }
    }
}

/// A running event loop; dropping it stops the thread.
pub struct EventLoop {
    jobs: Sender<Job>,
    /// Set when the loop is to end (after the round it is in).
    stopping: Arc<AtomicBool>,
    waker: Arc<Waker>,
    registry: Arc<Registry>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
    next_token: std::sync::atomic::AtomicUsize,
}

impl EventLoop {
    /// Starts the loop thread.
    pub fn start() -> Result<Self> {
        let poll = Poll::new().map_err(|e| Error::io("cannot create the event loop", e))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKE_TOKEN)
                .map_err(|e| Error::io("cannot create the loop waker", e))?,
        );
        let registry = Arc::new(
            poll.registry()
                .try_clone()
                .map_err(|e| Error::io("cannot clone the loop registry", e))?,
        );
        let (jobs, queue) = crossbeam_channel::bounded(LOOP_QUEUE);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let thread = std::thread::Builder::new()
            .name("rawstor-loop".into())
            .spawn(move || run(poll, &queue, &stop))
            .map_err(|e| Error::io("cannot start the event loop thread", e))?;
        Ok(Self {
            jobs,
            stopping,
            waker,
            registry,
            thread_id: thread.thread().id(),
            thread: Some(thread),
            next_token: std::sync::atomic::AtomicUsize::new(1),
        })
    }

    /// A token no other source of this loop uses.
    pub fn token(&self) -> Token {
        Token(
            self.next_token
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// A handle for other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle {
            jobs: self.jobs.clone(),
            waker: Arc::clone(&self.waker),
            registry: Arc::clone(&self.registry),
        }
    }
}

fn run(mut poll: Poll, queue: &Receiver<Job>, stopping: &AtomicBool) {
    LOOP_THREAD.with(|is| is.set(true));
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut handlers: HashMap<Token, Arc<dyn Handler>> = HashMap::new();
    let mut timeout = None;
    loop {
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                crate::log::warn(&format!("event loop poll failed: {e}"));
            }
        }
        ROUND.with(|round| *round.borrow_mut() = Some(Vec::new()));
        for event in events.iter() {
            if event.token() == WAKE_TOKEN {
                continue;
            }
            if let Some(handler) = handlers.get(&event.token()).cloned() {
                guarded(|| handler.ready(poll.registry(), event));
            }
        }
        loop {
            let mut own = || OWN_JOBS.with(|own| own.borrow_mut().pop_front());
            while let Some(job) = queue.try_recv().ok().or_else(&mut own) {
                let mut context = LoopContext {
                    registry: poll.registry(),
                    handlers: &mut handlers,
                };
                guarded(|| job(&mut context));
            }
            if stopping.load(Ordering::Acquire) {
                return;
            }
            // What the round left for its end; it may leave more.
            let deferred = ROUND
                .with(|round| round.borrow_mut().replace(Vec::new()))
                .unwrap_or_default();
            if deferred.is_empty() {
                break;
            }
            for f in deferred {
                guarded(f);
            }
        }
        ROUND.with(|round| *round.borrow_mut() = None);
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for handler in handlers.values() {
            let mut due = None;
            guarded(|| due = handler.tick(poll.registry(), now));
            if let Some(due) = due {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        timeout = next.map(|due| due.saturating_duration_since(Instant::now()));
    }
}

/// A bug in one job or handler must not stop the loop that every other
/// completion depends on.
fn guarded(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        crate::log::warn("an event loop job panicked; the loop goes on");
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
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
        event_loop.handle().execute(Box::new(move |_| {
            tx.send(std::thread::current().name().map(String::from))
                .unwrap()
        }));
        assert_eq!(rx.recv().unwrap().as_deref(), Some("rawstor-loop"));
        drop(event_loop);
    }

    #[test]
    fn work_left_for_the_round_runs_after_it_in_order() {
        assert!(!in_round(), "a test thread is not in a round");
        assert!(after_round(Box::new(|| {})).is_err());
        let event_loop = EventLoop::start().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        event_loop.handle().execute(Box::new(move |_| {
            for i in 0..2 {
                let tx = tx.clone();
                let left = after_round(Box::new(move || tx.send(("after", i)).unwrap()));
                assert!(left.is_ok());
            }
            tx.send(("job", usize::from(in_round()))).unwrap();
        }));
        let seen: Vec<_> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(seen, [("job", 1), ("after", 0), ("after", 1)]);
        drop(event_loop);
    }

    #[test]
    fn the_loop_gives_itself_jobs_without_waiting() {
        let event_loop = EventLoop::start().unwrap();
        let handle = event_loop.handle();
        let (tx, rx) = crossbeam_channel::unbounded();
        let inner = handle.clone();
        let jobs = LOOP_QUEUE + 10;
        handle.execute(Box::new(move |_| {
            // More than the queue holds: the loop never waits for itself.
            for i in 0..jobs {
                let tx = tx.clone();
                inner.execute(Box::new(move |_| tx.send(i).unwrap()));
            }
            // Nor from the end of its round.
            let last = Box::new(move |_: &mut LoopContext<'_>| tx.send(usize::MAX).unwrap());
            let left = after_round(Box::new(move || inner.execute(last)));
            assert!(left.is_ok());
        }));
        let wait = std::time::Duration::from_secs(10);
        let got: Vec<usize> = (0..=jobs).map(|_| rx.recv_timeout(wait).unwrap()).collect();
        assert_eq!(got[..jobs], (0..jobs).collect::<Vec<_>>());
        assert_eq!(got[jobs], usize::MAX);
        drop(event_loop);
    }
}
