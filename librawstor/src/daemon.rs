//! For the servers (rawstor-ost, rawstor-mdt): SIGTERM and SIGINT become
//! a readable pipe that an accept loop polls next to its listener.

use std::collections::HashMap;
use std::io;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::unistd::pipe2;

/// Write end of the self-pipe the signal handler writes to.
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = WAKE_WRITE.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe (nix's wrapper is not known
    // to be); the buffer is one valid byte.
    unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
}

/// A pipe that turns readable on SIGTERM or SIGINT.
pub struct StopSignal {
    read: OwnedFd,
}

impl StopSignal {
    /// Installs the handlers (once per process) and ignores SIGPIPE: a
    /// vanished client is an EPIPE, not a death.
    pub fn install() -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // The write end stays open for the life of the process: a handler
        // may run at any time.
        WAKE_WRITE.store(write.into_raw_fd(), Ordering::Relaxed);
        let wake = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        for (signal, action) in [
            (Signal::SIGTERM, &wake),
            (Signal::SIGINT, &wake),
            (Signal::SIGPIPE, &ignore),
        ] {
            // SAFETY: the handler only calls write(2), which is
            // async-signal-safe; SIG_IGN runs nothing.
            unsafe { sigaction(signal, action) }?;
        }
        Ok(Self { read })
    }

    /// The pipe's read end, readable once a signal arrived.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

/// What [`wait_for_connection`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Woken {
    /// The listener has a connection to accept.
    Connection,
    /// A stop signal arrived.
    Stop,
    /// Neither, within the timeout (or EINTR).
    Idle,
}

/// Waits up to `timeout_ms` for a connection on `listener` or a stop signal.
pub fn wait_for_connection(listener: &impl AsFd, stop: &StopSignal, timeout_ms: u16) -> Woken {
    let mut fds = [
        PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        PollFd::new(stop.read.as_fd(), PollFlags::POLLIN),
    ];
    let ready = poll(&mut fds, timeout_ms).unwrap_or(0);
    let woken = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
    if woken(&fds[1]) {
        Woken::Stop
    } else if ready > 0 && woken(&fds[0]) {
        Woken::Connection
    } else {
        Woken::Idle
    }
}

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

/// A server's start: binds `bind`, installs the stop signal, and prints
/// `listening on HOST:PORT` on stdout, the line scripts wait for. A
/// failure is printed as `program: ...` and comes back as the exit code
/// (69: cannot listen, 71: an OS error).
pub fn listen(
    program: &str,
    bind: &str,
) -> Result<(TcpListener, StopSignal, SocketAddr), ExitCode> {
    let listener = TcpListener::bind(bind).map_err(|e| {
        eprintln!("{program}: cannot listen on {bind}: {e}");
        ExitCode::from(69)
    })?;
    // Connections accepted from it inherit it, and replies to reads
    // carry most of the bytes.
    crate::sys::avoid_pacing(&listener);
    let os_error = |what: &str, e: io::Error| {
        eprintln!("{program}: {what}: {e}");
        ExitCode::from(71)
    };
    let stop = StopSignal::install().map_err(|e| os_error("pipe", e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| os_error("local address", e))?;
    println!("listening on {bound}");
    Ok((listener, stop, bound))
}

/// Ends a program whose arguments did not parse, from the argument
/// parser's rendered message: `--help` and `--version` (`to_stdout`)
/// print it on stdout and exit 0; a usage error is one line on stderr,
/// exit 2.
pub fn usage_exit(program: &str, rendered: &str, to_stdout: bool) -> ExitCode {
    if to_stdout {
        print!("{rendered}");
        return ExitCode::SUCCESS;
    }
    eprintln!("{program}: {} (see {program} --help)", usage_line(rendered));
    ExitCode::from(2)
}

/// A usage error as one line, from an argument parser's rendered
/// message (clap's, in the CLI and both servers): its first paragraph,
/// without the "error: " it starts with and the usage block after it.
pub fn usage_line(rendered: &str) -> String {
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    message.join(" ").trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_error_is_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  --bind <BIND>\n\nUsage: rawstor-ost --bind <BIND> <LOCATION>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(rendered),
            "the following required arguments were not provided: --bind <BIND>"
        );
        assert_eq!(usage_line("error: bad\n"), "bad");
    }
}
