//! The shared pieces of the accept loop: which connections are served,
//! how many, how they end, and the refusal of one over the limit.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{StopSignal, Woken, wait_for_connection};

/// The connections a server serves, a thread each: accepted by
/// [`Connections::accept_loop`] up to a limit, ended by
/// [`Connections::stop`] (no more reading: requests in flight finish and
/// are answered) or [`Connections::abort`].
pub struct Connections {
    /// A clone of each live connection, to end it.
    streams: Mutex<HashMap<u64, TcpStream>>,
    next: AtomicU64,
    max: usize,
    stopping: AtomicBool,
}

impl Connections {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            streams: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            max,
            stopping: AtomicBool::new(false),
        })
    }

    /// Whether the server is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Stops accepting and ends every connection's reading.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        for stream in self.streams.lock().values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
    }

    /// Closes every connection outright (replies in flight are lost).
    pub fn abort(&self) {
        for stream in self.streams.lock().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections from `listener` until a stop signal or
    /// [`Connections::stop`]; each is served by `serve` on a thread of its
    /// own (`{name}-{id}`); one over the limit is refused ([`refuse`]).
    /// Returns the threads still running.
    pub fn accept_loop(
        self: &Arc<Self>,
        name: &str,
        listener: &TcpListener,
        stop: &StopSignal,
        serve: impl Fn(TcpStream) + Clone + Send + 'static,
    ) -> Vec<JoinHandle<()>> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        while !self.stopping() {
            match wait_for_connection(listener, stop, ACCEPT_POLL_MS) {
                Woken::Stop => {
                    self.stopping.store(true, Ordering::Release);
                    break;
                }
                Woken::Idle => {
                    threads.retain(|t| !t.is_finished());
                    continue;
                }
                Woken::Connection => {}
            }
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) => {
                    crate::log::warn(&format!("{name}: accept: {e}"));
                    std::thread::sleep(ACCEPT_PAUSE);
                    continue;
                }
            };
            threads.retain(|t| !t.is_finished());
            if self.streams.lock().len() >= self.max {
                refuse(stream, &format!("too many connections to this {name}"));
                continue;
            }
            if let Some(thread) = self.serve_one(name, stream, serve.clone()) {
                threads.push(thread);
            }
        }
        threads
    }

    /// Tracks `stream` and serves it on a thread of its own.
    fn serve_one(
        self: &Arc<Self>,
        name: &str,
        stream: TcpStream,
        serve: impl FnOnce(TcpStream) + Send + 'static,
    ) -> Option<JoinHandle<()>> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        match stream.try_clone() {
            Ok(clone) => self.streams.lock().insert(id, clone),
            Err(e) => {
                crate::log::warn(&format!("{name}: cannot track a connection: {e}"));
                return None;
            }
        };
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-{id}"))
            .spawn(move || {
                serve(stream);
                me.streams.lock().remove(&id);
            });
        match spawned {
            Ok(thread) => Some(thread),
            Err(e) => {
                crate::log::warn(&format!("{name}: cannot start a connection thread: {e}"));
                self.streams.lock().remove(&id);
                None
            }
        }
    }
}

/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// Longest wait for a connection before the accept loop looks at its
/// threads and the stop flag again.
const ACCEPT_POLL_MS: u16 = 1000;
/// How long a refused connection's requests are read and dropped after
/// the refusal, so that closing it does not reset the reply away.
const REFUSE_LINGER: Duration = Duration::from_secs(1);

/// Refuses a connection over a server's limit: an `EBUSY` error reply
/// saying `why` (request id 0, as for any refusal before the handshake),
/// then the connection closes once the client has read it (its requests
/// are drained for at most [`REFUSE_LINGER`] on a thread of its own).
pub fn refuse(mut stream: TcpStream, why: &str) {
    let payload = crate::wire::error_message(why);
    let header = crate::wire::Header::default()
        .reply(-libc::EBUSY)
        .with_payload(payload);
    let mut frame = header.encode().to_vec();
    frame.extend_from_slice(payload);
    let _ = stream.write_all(&frame);
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(REFUSE_LINGER));
    let _ = std::thread::Builder::new()
        .name("refuse".into())
        .spawn(move || {
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        });
}

/// Waits for connection threads until `deadline`; returns whether all
/// ended.
pub fn join_until(threads: Vec<JoinHandle<()>>, deadline: Instant) -> bool {
    for thread in threads {
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(JOIN_POLL);
        }
        let _ = thread.join();
    }
    true
}

/// How often [`join_until`] looks at a thread that has not ended.
const JOIN_POLL: Duration = Duration::from_millis(5);
