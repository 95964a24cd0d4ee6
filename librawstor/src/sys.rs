//! Thin wrappers over the OS calls std does not cover: nix's where it has
//! them (fallocate, lseek SEEK_DATA/SEEK_HOLE, getrlimit, socket options,
//! sendmsg flags, eventfd, poll, kill), the getrandom crate for random
//! bytes, raw libc only for the shared memory map of the checksum files
//! (mmap, msync, munmap), which must stay a raw pointer. All `unsafe`
//! for system calls lives here.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, FcntlArg, OFlag, fallocate, fcntl};
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::eventfd::EfdFlags;
use nix::sys::resource::{Resource, getrlimit};
use nix::sys::signal::kill;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, connect, getsockopt, sendmsg,
    setsockopt, socket, sockopt,
};
use nix::unistd::{Pid, Whence, lseek};

/// Runs a libc call, turning `-1` into the thread's `errno`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every call site passes valid descriptors and pointers
        // to buffers that outlive the call; see the callers' comments.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Fills `buf` with random bytes from the kernel (the getrandom crate).
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("getrandom failed: {e}");
    }
}

/// A random u64.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Whether a process with `pid` exists (signal 0 probes, sends nothing).
pub fn process_exists(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e != Errno::ESRCH,
    }
}

/// Frees `len` bytes at `offset` of `file`; the range then reads as zeros.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mode = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    fallocate(file, mode, offset as libc::off_t, len as libc::off_t)?;
    Ok(())
}

/// Gives `file` disk blocks for `len` bytes at `offset` (holes only; the
/// bytes there do not change).
pub fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    fallocate(
        file,
        FallocateFlags::empty(),
        offset as libc::off_t,
        len as libc::off_t,
    )?;
    Ok(())
}

/// Where the first data at or after `offset` of `file` starts (`None`:
/// only a hole follows, up to the end of the file).
pub fn seek_data(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, offset, Whence::SeekData)
}

/// Where the first hole at or after `offset` of `file` starts (the end of
/// the file counts as one); `None` past the end.
pub fn seek_hole(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, offset, Whence::SeekHole)
}

fn seek(file: &File, offset: u64, whence: Whence) -> io::Result<Option<u64>> {
    match lseek(file, offset as libc::off_t, whence) {
        Ok(at) => Ok(Some(at as u64)),
        Err(Errno::ENXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Makes a directory entry (a rename or create inside `dir`) durable.
pub fn fsync_dir(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The soft limit on this process's open descriptors (`RLIMIT_NOFILE`),
/// `None` when unlimited.
pub fn nofile_soft_limit() -> io::Result<Option<u64>> {
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok((soft != libc::RLIM_INFINITY).then_some(soft))
}

/// The TCP congestion control of `socket` (`cubic`, `bbr`, ...).
pub fn congestion_control(socket: &impl AsFd) -> io::Result<String> {
    let name = getsockopt(socket, sockopt::TcpCongestion)?;
    Ok(name.to_string_lossy().trim_end_matches('\0').to_string())
}

/// Sets the TCP congestion control of `socket`.
pub fn set_congestion_control(socket: &impl AsFd, name: &str) -> io::Result<()> {
    setsockopt(socket, sockopt::TcpCongestion, &OsString::from(name))?;
    Ok(())
}

/// Keeps a storage connection's sends unpaced: when the system's default
/// congestion control is BBR, which (without an fq qdisc) arms a kernel
/// timer for every burst it sends, the socket gets `cubic`, or `reno`
/// where `cubic` is not permitted (both are on every Linux, and `reno` is
/// always allowed). On loopback, BBR's pacing cost 1 MiB writes a fifth
/// of their throughput (BENCHMARKS.md). Any other choice of the
/// administrator is kept. Returns the congestion control the socket ends
/// with; best effort, as the connection works with any.
///
/// It must be called before the connection is established: on a
/// listening socket (accepted connections inherit it) or through
/// [`connect_unpaced`]. BBR turns pacing on when a connection is
/// established, and a congestion control set afterwards keeps it on.
pub fn avoid_pacing(socket: &impl AsFd) -> Option<String> {
    let current = congestion_control(socket).ok()?;
    if !current.starts_with("bbr") {
        return Some(current);
    }
    for name in ["cubic", "reno"] {
        if set_congestion_control(socket, name).is_ok() {
            return Some(name.to_string());
        }
    }
    Some(current)
}

/// Sends `slices` on a socket; `EPIPE` when the peer has gone, never
/// SIGPIPE. The library runs inside programs that keep SIGPIPE's default
/// action (fio does), which would kill the whole process when a server
/// dies while a request is being sent.
pub fn send_vectored(socket: &impl AsRawFd, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        slices,
        &[],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(sent)
}

/// Sends all of `bytes` on a blocking socket ([`send_vectored`]); a send
/// timeout (`SO_SNDTIMEO`) is `TimedOut`.
pub fn send_all(socket: &impl AsRawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match send_vectored(socket, &[io::IoSlice::new(bytes)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::ErrorKind::TimedOut.into());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Connects to `addr` within `timeout`, with [`avoid_pacing`] applied
/// before the connection is established. A connection the peer refuses
/// or that does not answer in time is the OS error (`ECONNREFUSED`,
/// `ETIMEDOUT`, ...).
pub fn connect_unpaced(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let socket = socket(family, SockType::Stream, flags, None)?;
    avoid_pacing(&socket);
    match connect(socket.as_raw_fd(), &SockaddrStorage::from(*addr)) {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => wait_connected(&socket, timeout)?,
        Err(e) => return Err(e.into()),
    }
    let flags = OFlag::from_bits_truncate(fcntl(&socket, FcntlArg::F_GETFL)?);
    fcntl(&socket, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
    Ok(TcpStream::from(socket))
}

/// Waits for a non-blocking connect on `socket` to finish within
/// `timeout`.
fn wait_connected(socket: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
        }
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
        let ms = left.as_millis().clamp(1, u128::from(u16::MAX)) as u16;
        match poll(&mut fds, ms) {
            Ok(0) => {}
            Ok(_) => break,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match getsockopt(socket, sockopt::SocketError)? {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// A non-blocking eventfd: readable while its counter is non-zero.
pub struct EventFd {
    fd: nix::sys::eventfd::EventFd,
}

impl EventFd {
    /// A new eventfd with a zero counter.
    pub fn new() -> io::Result<Self> {
        let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        let fd = nix::sys::eventfd::EventFd::from_value_and_flags(0, flags)?;
        Ok(Self { fd })
    }

    /// Makes the eventfd readable.
    pub fn signal(&self) {
        // EAGAIN (counter saturated) still leaves the fd readable, which
        // is all a signal means.
        let _ = self.fd.write(1);
    }

    /// Makes the eventfd unreadable again (drains the counter).
    pub fn clear(&self) {
        // EAGAIN means already clear.
        let _ = self.fd.read();
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A shared, writable memory map of a whole file, viewed as 64-bit words.
///
/// Stores land in the page cache at once, so they survive the death of
/// the process; `sync` makes them durable.
pub struct MappedWords {
    ptr: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory accessed only through
// atomics; it may be used from any thread.
unsafe impl Send for MappedWords {}
// SAFETY: as above, all access goes through `AtomicU64`.
unsafe impl Sync for MappedWords {}

impl MappedWords {
    /// Maps the first `len` 64-bit words of `file`, which must be at
    /// least `len * 8` bytes long and must not shrink while mapped.
    pub fn map(file: &File, len: usize) -> io::Result<Self> {
        let file_len = file.metadata()?.len();
        let bytes = len.checked_mul(8).ok_or(io::ErrorKind::InvalidInput)?;
        if (file_len as usize) < bytes {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("checksum file holds {file_len} bytes, needs {bytes}"),
            ));
        }
        if len == 0 {
            return Ok(Self {
                ptr: NonNull::dangling(),
                len,
            });
        }
        // SAFETY: a fresh shared mapping of an open file; the kernel
        // chooses the address; the length was checked against the file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<AtomicU64>()).ok_or(io::ErrorKind::Other)?;
        Ok(Self { ptr, len })
    }

    /// The mapped words.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `len` page-aligned (thus 8-byte
        // aligned) words and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Writes dirty pages back and waits for them.
    pub fn sync(&self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        syscall!(msync(self.ptr.as_ptr().cast(), self.len * 8, libc::MS_SYNC))?;
        Ok(())
    }
}

impl Drop for MappedWords {
    fn drop(&mut self) {
        if self.len > 0 {
            // The region was mapped by `map` with this exact length.
            let _ = syscall!(munmap(self.ptr.as_ptr().cast(), self.len * 8));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_paced_connection_gets_an_unpaced_congestion_control() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!congestion_control(&stream).unwrap().is_empty());
        if set_congestion_control(&stream, "bbr").is_ok() {
            assert_eq!(congestion_control(&stream).unwrap(), "bbr");
            let chosen = avoid_pacing(&stream).unwrap();
            assert!(chosen == "cubic" || chosen == "reno", "{chosen}");
            assert_eq!(congestion_control(&stream).unwrap(), chosen);
        }
        // Anything else is left alone.
        set_congestion_control(&stream, "reno").unwrap();
        assert_eq!(avoid_pacing(&stream).as_deref(), Some("reno"));
        assert_eq!(congestion_control(&stream).unwrap(), "reno");
        assert!(set_congestion_control(&stream, "no-such-control").is_err());
    }

    #[test]
    fn accepted_connections_inherit_the_listeners_congestion_control() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_congestion_control(&listener, "reno").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = connect_unpaced(&addr, Duration::from_secs(5)).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(congestion_control(&accepted).unwrap(), "reno");
        assert!(!congestion_control(&client).unwrap().starts_with("bbr"));
        // The connected stream is blocking and carries bytes both ways.
        use std::io::{Read, Write};
        (&client).write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        (&accepted).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }

    /// Whether SIGPIPE is pending for this thread; takes it if so.
    fn took_sigpipe() -> bool {
        // SAFETY: sigset operations on a local set; sigtimedwait with a
        // zero timeout only takes a signal already pending.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE
        }
    }

    /// A connection whose peer closed it and then answered data with a
    /// reset: the next send fails with EPIPE.
    fn dead_connection() -> TcpStream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream =
            connect_unpaced(&listener.local_addr().unwrap(), Duration::from_secs(5)).unwrap();
        drop(listener.accept().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        send_vectored(&stream, &[io::IoSlice::new(b"after the peer's FIN")]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stream
    }

    #[test]
    fn sending_to_a_closed_connection_is_epipe_without_sigpipe() {
        // Blocked, SIGPIPE stays pending where it would have killed a
        // program with the default action (Rust test binaries ignore it).
        // SAFETY: a local signal set; this thread's mask only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let stream = dead_connection();
        let err = send_vectored(&stream, &[io::IoSlice::new(b"more")]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE), "{err}");
        let err = send_all(&stream, b"and more").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE), "{err}");
        assert!(!took_sigpipe(), "a send raised SIGPIPE");
        // What the test guards against: a plain send raises it.
        let stream = dead_connection();
        let bytes = b"more";
        // SAFETY: a valid socket and buffer.
        let sent = unsafe { libc::send(stream.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        assert_eq!(sent, -1);
        assert!(took_sigpipe(), "a plain send should raise SIGPIPE");
    }

    #[test]
    fn a_send_the_peer_does_not_take_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream =
            connect_unpaced(&listener.local_addr().unwrap(), Duration::from_secs(5)).unwrap();
        let (_unread, _) = listener.accept().unwrap();
        stream
            .set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // More than both sockets' buffers hold, and nobody reads.
        let err = send_all(&stream, &vec![0u8; 256 << 20]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }

    #[test]
    fn connects_over_ipv6_too() {
        // A host without IPv6 loopback has nothing to test here.
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            return;
        };
        let client =
            connect_unpaced(&listener.local_addr().unwrap(), Duration::from_secs(5)).unwrap();
        let (accepted, from) = listener.accept().unwrap();
        assert_eq!(from, client.local_addr().unwrap());
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
    }

    #[test]
    fn connecting_to_nothing_is_refused_and_to_a_full_backlog_times_out() {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let err = connect_unpaced(&addr, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
        // A listener that never accepts, with room for one connection
        // waiting: the SYNs after it are dropped, never answered.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        syscall!(listen(listener.as_raw_fd(), 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut waiting = Vec::new();
        let started = std::time::Instant::now();
        let err = loop {
            match connect_unpaced(&addr, Duration::from_millis(300)) {
                Ok(stream) => waiting.push(stream),
                Err(err) => break err,
            }
            assert!(waiting.len() < 8, "the backlog never filled");
        };
        assert_eq!(err.raw_os_error(), Some(libc::ETIMEDOUT), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn eventfd_readable_only_while_signalled() {
        let efd = EventFd::new().unwrap();
        let readable = |efd: &EventFd| {
            let mut pfd = libc::pollfd {
                fd: efd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            syscall!(poll(&mut pfd, 1, 0)).unwrap() == 1
        };
        assert!(!readable(&efd));
        efd.signal();
        efd.signal();
        assert!(readable(&efd));
        efd.clear();
        assert!(!readable(&efd));
    }

    #[test]
    fn mapped_words_reach_the_file() {
        let path = std::env::temp_dir().join(format!("rawstor-map-{}", random_u64()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(4096).unwrap();
        let map = MappedWords::map(&file, 512).unwrap();
        map.words()[3].store(0x1122_3344_5566_7788, Ordering::Release);
        map.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[24..32], &0x1122_3344_5566_7788u64.to_ne_bytes());
        assert!(MappedWords::map(&file, 513).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
