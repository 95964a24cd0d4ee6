//! What both servers (rawstor-ost, rawstor-mdt) share: the start
//! ([`listen`], usage errors), SIGTERM and SIGINT as a readable pipe that
//! the accept loop polls next to its listener, the accept loop
//! ([`Connections`]) and the connection loop ([`serve`]: framing through
//! the codec, the handshake, replies, hand-off to workers). A server
//! brings only its [`Service`]: what each request does.

mod buffers;
mod connections;
mod reply;
mod serve;

pub use buffers::Buffers;
pub use connections::{Connections, join_until, refuse};
pub use reply::Reply;
pub use serve::{Request, Service, Serving, serve};

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

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

/// This machine's name (the OST's default failure domain);
/// "localhost" when it has none that reads as text.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
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

    #[test]
    fn the_hostname_is_the_kernels() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname(), kernel.trim());
    }
}
