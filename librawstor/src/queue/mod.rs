//! Submission/completion queues, io_uring-like.
//!
//! A caller fills [`Sqe`]s, submits a batch and reaps [`Cqe`]s. A queue
//! holds at most `depth` operations between submit and reap; beyond that
//! `submit` says `EAGAIN`. [`Queue::eventfd`] is readable while
//! completions wait, for callers that sleep in `poll`/`epoll` (fio,
//! QEMU's AioContext).
//!
//! Where operations run is the object kind's choice
//! ([`crate::backend::Backend`]): `file://` reads and writes run on the
//! submitting thread, its durability barriers on the event loop thread;
//! requests to servers complete on the loop thread, or on a thread that
//! waits in [`Queue::reap`] for the replies of one connection.

pub mod entry;
pub mod opcode;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::backend::{Backend, Replies};
use crate::error::{Error, Result};
use crate::lent::RawBuf;
use crate::net::Connection;
use crate::object::Object;
use crate::remote::Finish;
use crate::sys::EventFd;
use crate::wire::Opcode;
pub use entry::{Cqe, Sqe};
use opcode::*;

struct Completions {
    ready: VecDeque<Cqe>,
    /// The library's message for each failed completion in `ready`, in
    /// the same order.
    messages: VecDeque<String>,
    /// Submitted and not yet reaped.
    outstanding: u32,
}

/// The messages of the failed completions the last `reap` returned
/// (`user_data`, message): at most the queue's depth.
type Reaped = Vec<(u64, std::ffi::CString)>;

/// The connections this queue's operations wait on.
enum Driver {
    None,
    One(Arc<Connection>),
    Many,
}

struct QueueShared {
    depth: u32,
    /// A thread waiting in `reap` for operations on a single `ost://`
    /// connection reads their replies itself.
    driver: Mutex<Driver>,
    /// This queue's thread reads its connection's replies itself (it has
    /// waited in `reap` before) and holds the connection's drive from
    /// the first submission to the last completion reaped, so that the
    /// loop thread never races it for a reply.
    holding: std::sync::atomic::AtomicBool,
    driving_mode: std::sync::atomic::AtomicBool,
    completions: Mutex<Completions>,
    /// See [`Reaped`].
    reaped: Mutex<Reaped>,
    /// Whether `reaped` may hold anything.
    has_reaped: std::sync::atomic::AtomicBool,
    completed: Condvar,
    /// Made on first request: callers that never poll pay no syscalls.
    eventfd: OnceLock<EventFd>,
}

impl QueueShared {
    fn complete(&self, user_data: u64, result: Result<u64>) {
        let mut completions = self.completions.lock();
        let result = match result {
            Ok(bytes) => bytes as i64,
            Err(err) => {
                completions.messages.push_back(err.to_string());
                -i64::from(err.errno())
            }
        };
        completions.ready.push_back(Cqe { user_data, result });
        if completions.ready.len() == 1 {
            if let Some(eventfd) = self.eventfd.get() {
                eventfd.signal();
            }
        }
        drop(completions);
        self.completed.notify_one();
    }
}

/// A submission/completion queue. Use one per thread; queues of one
/// instance are independent.
pub struct Queue {
    shared: Arc<QueueShared>,
}

impl Queue {
    pub(crate) fn new(depth: u32) -> Result<Self> {
        if depth == 0 || depth > RAWSTOR_QUEUE_DEPTH_MAX {
            return Err(Error::invalid(format!(
                "queue depth {depth}: must be 1 to {RAWSTOR_QUEUE_DEPTH_MAX}"
            )));
        }
        Ok(Self {
            shared: Arc::new(QueueShared {
                depth,
                driver: Mutex::new(Driver::None),
                holding: std::sync::atomic::AtomicBool::new(false),
                driving_mode: std::sync::atomic::AtomicBool::new(false),
                completions: Mutex::new(Completions {
                    ready: VecDeque::with_capacity(depth as usize),
                    messages: VecDeque::new(),
                    outstanding: 0,
                }),
                reaped: Mutex::new(Vec::new()),
                has_reaped: std::sync::atomic::AtomicBool::new(false),
                completed: Condvar::new(),
                eventfd: OnceLock::new(),
            }),
        })
    }

    /// The queue's depth.
    pub fn depth(&self) -> u32 {
        self.shared.depth
    }

    /// An eventfd that is readable while completions wait to be reaped.
    pub fn eventfd(&self) -> Result<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        if let Some(eventfd) = self.shared.eventfd.get() {
            return Ok(eventfd.as_raw_fd());
        }
        let completions = self.shared.completions.lock();
        let eventfd = match self.shared.eventfd.get() {
            Some(eventfd) => eventfd,
            None => {
                let eventfd = EventFd::new()
                    .map_err(|e| Error::io("cannot create the queue's eventfd", e))?;
                if !completions.ready.is_empty() {
                    eventfd.signal();
                }
                self.shared.eventfd.get_or_init(|| eventfd)
            }
        };
        Ok(eventfd.as_raw_fd())
    }

    /// Submits a batch; returns how many entries were accepted, in order.
    /// Fails with `EAGAIN` only when the queue is full and none was.
    /// An entry that is malformed is accepted and completes with an error.
    ///
    /// # Safety
    ///
    /// Each entry's object pointer must be null or point to an open
    /// [`Object`], and its buffer (or iovec array and the buffers it
    /// names) must be valid for `length` bytes, and not be touched by
    /// the caller, until its completion is reaped.
    pub unsafe fn submit(&self, sqes: &[Sqe]) -> Result<usize> {
        let mut accepted = 0;
        for sqe in sqes {
            {
                let mut completions = self.shared.completions.lock();
                if completions.outstanding >= self.shared.depth {
                    break;
                }
                completions.outstanding += 1;
            }
            // SAFETY: the caller's contract covers every accepted entry.
            unsafe { self.start(sqe) };
            accepted += 1;
        }
        if accepted == 0 && !sqes.is_empty() {
            return Err(Error::new(
                libc::EAGAIN,
                "queue is full: reap completions first",
            ));
        }
        Ok(accepted)
    }

    /// Starts one operation; its completion is queued now or later.
    ///
    /// # Safety
    ///
    /// As for [`Queue::submit`].
    unsafe fn start(&self, sqe: &Sqe) {
        // SAFETY: the caller guarantees the pointer is null or valid.
        let Some(object) = (unsafe { sqe.object.as_ref() }) else {
            return self.shared.complete(
                sqe.user_data,
                Err(Error::invalid("submission entry has no object")),
            );
        };
        // SAFETY: the caller lends the entry's iovec array, if any.
        if let Err(err) = unsafe { check_range(object, sqe) } {
            return self.shared.complete(sqe.user_data, Err(err));
        }
        let backend = &object.inner.backend;
        let replies = backend.replies();
        if matches!(replies, Replies::Inline) {
            // SAFETY: buffers are valid per the caller's contract.
            if let Some(result) = unsafe { try_inline(&**backend, sqe) } {
                return self.shared.complete(sqe.user_data, result);
            }
        }
        self.note_driver(replies);
        let inner = Arc::clone(&object.inner);
        let queue = Arc::clone(&self.shared);
        let user_data = sqe.user_data;
        inner.pending.fetch_add(1, Ordering::AcqRel);
        let finish: Finish = Box::new(move |result| {
            inner.pending.fetch_sub(1, Ordering::AcqRel);
            // The object is let go before the completion can be reaped:
            // a close and a remove after it must find it closed.
            drop(inner);
            queue.complete(user_data, result);
        });
        // SAFETY: buffers are valid per the caller's contract.
        unsafe { start_op(&**backend, sqe, finish) }
    }

    /// Notes who reads the replies of an operation about to start: a
    /// queue whose operations all wait on one connection reads them on
    /// its own thread in `reap`.
    fn note_driver(&self, replies: Replies<'_>) {
        let mut driver = self.shared.driver.lock();
        match (&*driver, replies) {
            (_, Replies::Inline) | (Driver::Many, _) => {}
            (Driver::None, Replies::One(c)) => *driver = Driver::One(Arc::clone(c)),
            (Driver::One(c), Replies::One(o)) if Arc::ptr_eq(c, o) => {
                // Take the drive before the request goes out: its reply
                // must not reach the loop thread first.
                if self.shared.driving_mode.load(Ordering::Relaxed)
                    && !self.shared.holding.swap(true, Ordering::AcqRel)
                {
                    c.drive_begin();
                }
            }
            _ => {
                self.release_drive(&driver);
                *driver = Driver::Many;
            }
        }
    }

    fn release_drive(&self, driver: &Driver) {
        if let Driver::One(c) = driver {
            if self.shared.holding.swap(false, Ordering::AcqRel) {
                c.drive_end();
            }
        }
    }

    /// Waits for `min` completions by reading the connection's replies on
    /// this thread: poll(2) on its socket and on the queue's eventfd (for
    /// completions that arrive another way), never spinning.
    fn wait_driving(&self, connection: &Connection, min: usize, deadline: Option<Instant>) {
        let Ok(eventfd) = self.eventfd() else {
            return;
        };
        let enough = || {
            let completions = self.shared.completions.lock();
            completions.ready.len() >= min.min(completions.outstanding as usize)
        };
        self.shared.driving_mode.store(true, Ordering::Relaxed);
        if !self.shared.holding.swap(true, Ordering::AcqRel) {
            connection.drive_begin();
        }
        while !enough() {
            let socket = connection.drain();
            if enough() {
                break;
            }
            // Capped so that a reconnection (a new socket) is noticed.
            let mut wait = Duration::from_millis(50);
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                wait = wait.min(left);
            }
            let mut fds = [
                libc::pollfd {
                    fd: eventfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: socket.unwrap_or(-1),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfds (a negative fd
            // is ignored by poll).
            unsafe { libc::poll(fds.as_mut_ptr(), 2, wait.as_millis().max(1) as i32) };
        }
    }

    /// Moves up to `out.len()` completions into `out`, first waiting until
    /// at least `min` are there (fewer if fewer are outstanding) or
    /// `timeout` passes (`None`: no limit). Returns how many were moved.
    pub fn reap(&self, out: &mut [Cqe], min: usize, timeout: Option<Duration>) -> usize {
        let deadline = timeout.map(|t| Instant::now() + t);
        let min = min.min(out.len());
        if min > 0 {
            let connection = match &*self.shared.driver.lock() {
                Driver::One(connection) => Some(Arc::clone(connection)),
                _ => None,
            };
            if let Some(connection) = connection {
                self.wait_driving(&connection, min, deadline);
            }
        }
        let mut completions = self.shared.completions.lock();
        let min = min.min(out.len()).min(completions.outstanding as usize);
        while completions.ready.len() < min {
            match deadline {
                None => self.shared.completed.wait(&mut completions),
                Some(deadline) => {
                    if self
                        .shared
                        .completed
                        .wait_until(&mut completions, deadline)
                        .timed_out()
                    {
                        break;
                    }
                }
            }
        }
        let count = out.len().min(completions.ready.len());
        // The messages of the last reap's failures go; a reap that had
        // none and has none takes no lock for them.
        if !completions.messages.is_empty() || self.shared.has_reaped.load(Ordering::Acquire) {
            self.shared.reaped.lock().clear();
            self.shared.has_reaped.store(false, Ordering::Release);
        }
        for slot in out.iter_mut().take(count) {
            *slot = completions.ready.pop_front().expect("counted");
            if slot.result < 0 {
                let message = completions.messages.pop_front().expect("one per failure");
                let message =
                    std::ffi::CString::new(message.replace('\0', " ")).expect("NULs replaced");
                self.shared.reaped.lock().push((slot.user_data, message));
                self.shared.has_reaped.store(true, Ordering::Release);
            }
        }
        debug_assert!(completions.messages.len() <= completions.ready.len());
        completions.outstanding -= count as u32;
        if completions.ready.is_empty() {
            if let Some(eventfd) = self.shared.eventfd.get() {
                eventfd.clear();
            }
        }
        let idle = completions.outstanding == 0;
        drop(completions);
        if idle && self.shared.holding.load(Ordering::Acquire) {
            // Nothing left in flight: the loop watches the socket again.
            self.release_drive(&self.shared.driver.lock());
        }
        count
    }

    /// Why the failed completion tagged `user_data` among those the last
    /// [`Queue::reap`] returned failed, as the library tells it (the
    /// completion itself carries only the errno): for callers that log
    /// it (fio, QEMU). `None` when that reap returned no such failure.
    pub fn error_message(&self, user_data: u64) -> Option<String> {
        self.error_with(user_data, |m| m.to_string_lossy().into_owned())
    }

    /// Runs `f` on the message [`Queue::error_message`] describes.
    pub(crate) fn error_with<R>(
        &self,
        user_data: u64,
        f: impl FnOnce(&std::ffi::CStr) -> R,
    ) -> Option<R> {
        let reaped = self.shared.reaped.lock();
        reaped
            .iter()
            .find(|(u, _)| *u == user_data)
            .map(|(_, m)| f(m))
    }

    /// Operations submitted and not yet reaped.
    pub fn outstanding(&self) -> u32 {
        self.shared.completions.lock().outstanding
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.release_drive(&self.shared.driver.lock());
    }
}

/// Checks the range an entry names against the object's size and the
/// limits, before anything is allocated or sent (see [`Object::check_io`]).
///
/// # Safety
///
/// A readv/writev entry's `addr` points to `iovcnt` iovecs.
unsafe fn check_range(object: &Object, sqe: &Sqe) -> Result<()> {
    let (what, len, data) = match sqe.opcode {
        RAWSTOR_OP_READ => ("read", sqe.length, true),
        RAWSTOR_OP_WRITE => ("write", sqe.length, true),
        RAWSTOR_OP_READV | RAWSTOR_OP_WRITEV => {
            // SAFETY: per the function's contract.
            let iovecs = unsafe { iovecs(sqe)? };
            let len = iovecs
                .iter()
                .fold(0u64, |sum, iov| sum.saturating_add(iov.iov_len as u64));
            let what = if sqe.opcode == RAWSTOR_OP_READV {
                "read"
            } else {
                "write"
            };
            (what, len, true)
        }
        RAWSTOR_OP_DISCARD => ("discard", sqe.length, false),
        RAWSTOR_OP_WRITE_ZEROES => ("write-zeroes", sqe.length, false),
        _ => return Ok(()),
    };
    object.check_io(what, sqe.offset, len, data)
}

/// Starts the operation an entry names; `finish` gets its outcome.
///
/// # Safety
///
/// The entry's buffers are valid for the lengths it names until `finish`
/// runs.
unsafe fn start_op(backend: &dyn Backend, sqe: &Sqe, finish: Finish) {
    let bufs = match sqe.opcode {
        RAWSTOR_OP_READ | RAWSTOR_OP_WRITE => {
            let Ok(len) = usize::try_from(sqe.length) else {
                return finish(Err(Error::invalid("length too large")));
            };
            if len > 0 && sqe.addr.is_null() {
                return finish(Err(Error::invalid("read/write entry has a null buffer")));
            }
            vec![RawBuf {
                ptr: sqe.addr.cast(),
                len,
            }]
        }
        RAWSTOR_OP_READV | RAWSTOR_OP_WRITEV => {
            // SAFETY: the caller lends the iovec array.
            match unsafe { iovecs(sqe) } {
                Ok(iovecs) => iovecs
                    .iter()
                    .map(|iov| RawBuf {
                        ptr: iov.iov_base.cast(),
                        len: iov.iov_len,
                    })
                    .collect(),
                Err(err) => return finish(Err(err)),
            }
        }
        _ => Vec::new(),
    };
    let fua = sqe.flags & RAWSTOR_SQE_FUA != 0;
    match sqe.opcode {
        RAWSTOR_OP_READ | RAWSTOR_OP_READV => backend.read(sqe.offset, &bufs, finish),
        RAWSTOR_OP_WRITE | RAWSTOR_OP_WRITEV => backend.write(sqe.offset, &bufs, fua, finish),
        RAWSTOR_OP_FLUSH => backend.simple(Opcode::Flush, 0, 0, finish),
        RAWSTOR_OP_DISCARD => backend.simple(Opcode::Discard, sqe.offset, sqe.length, finish),
        RAWSTOR_OP_WRITE_ZEROES => {
            backend.simple(Opcode::WriteZeroes, sqe.offset, sqe.length, finish)
        }
        other => finish(Err(Error::invalid(format!("unknown opcode {other}")))),
    }
}

/// Runs a read or a write without FUA on the caller's thread when the
/// kind can ([`Backend::read_inline`]); `None` otherwise.
///
/// # Safety
///
/// The entry's buffers are valid for the lengths it names.
unsafe fn try_inline(backend: &dyn Backend, sqe: &Sqe) -> Option<Result<u64>> {
    if sqe.flags & RAWSTOR_SQE_FUA != 0 {
        return None;
    }
    let one = |len: u64| -> Result<[RawBuf; 1]> {
        let len = usize::try_from(len).map_err(|_| Error::invalid("length too large"))?;
        if len > 0 && sqe.addr.is_null() {
            return Err(Error::invalid("read/write entry has a null buffer"));
        }
        Ok([RawBuf {
            ptr: sqe.addr.cast(),
            len,
        }])
    };
    match sqe.opcode {
        RAWSTOR_OP_READ => match one(sqe.length) {
            Ok(bufs) => backend.read_inline(sqe.offset, &bufs),
            Err(err) => Some(Err(err)),
        },
        RAWSTOR_OP_WRITE => match one(sqe.length) {
            Ok(bufs) => backend.write_inline(sqe.offset, &bufs),
            Err(err) => Some(Err(err)),
        },
        _ => None,
    }
}

/// # Safety
///
/// `sqe.addr` points to `sqe.iovcnt` iovecs.
unsafe fn iovecs(sqe: &Sqe) -> Result<&[libc::iovec]> {
    if sqe.iovcnt == 0 || sqe.iovcnt > RAWSTOR_IOV_MAX {
        return Err(Error::invalid(format!(
            "iovec count {}: must be 1 to {RAWSTOR_IOV_MAX}",
            sqe.iovcnt
        )));
    }
    if sqe.addr.is_null() {
        return Err(Error::invalid("readv/writev entry has a null iovec array"));
    }
    // SAFETY: the caller lends `iovcnt` iovecs at `addr`.
    let iovecs =
        unsafe { std::slice::from_raw_parts(sqe.addr.cast::<libc::iovec>(), sqe.iovcnt as usize) };
    if iovecs
        .iter()
        .any(|iov| iov.iov_base.is_null() && iov.iov_len > 0)
    {
        return Err(Error::invalid("an iovec has a null buffer"));
    }
    Ok(iovecs)
}
