//! Opening a connection: the socket (unpaced, see
//! [`crate::sys::avoid_pacing`]) and the handshake, blocking up to a
//! timeout per step, on the connector's thread.

use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use mio::net::TcpStream;

use crate::error::{Error, Result};
use crate::wire::{self, HEADER_LEN, Header, Hello, Welcome};

/// An I/O error's words beyond its errno (whose text `Error` appends).
pub(super) fn detail(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(_) => String::new(),
        None => format!(": {e}"),
    }
}

/// Connects and shakes hands, blocking up to `timeout` per step.
pub(super) fn connect_blocking(
    name: &str,
    addr: &str,
    session: u64,
    timeout: Duration,
) -> Result<(TcpStream, Welcome)> {
    let fail = |errno: i32, what: String| Error::new(errno, format!("{name}: {what}"));
    let stream = open(addr, timeout).map_err(|(errno, what)| fail(errno, what))?;
    let io_fail = |e: io::Error, what: &str| {
        let (errno, what) = io_failure(e, what);
        fail(errno, what)
    };
    let setup = |stream: &std::net::TcpStream, timeout: Option<Duration>| {
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)
    };
    stream
        .set_nodelay(true)
        .and_then(|()| setup(&stream, Some(timeout)))
        .map_err(|e| io_fail(e, "setsockopt"))?;
    let welcome = handshake(&stream, session).map_err(|(errno, what)| fail(errno, what))?;
    stream
        .set_nonblocking(true)
        .map_err(|e| io_fail(e, "fcntl"))?;
    setup(&stream, None).map_err(|e| io_fail(e, "setsockopt"))?;
    Ok((TcpStream::from_std(stream), welcome))
}

/// A connected socket to the first address of `addr` that answers;
/// (errno, why) otherwise.
fn open(addr: &str, timeout: Duration) -> std::result::Result<std::net::TcpStream, (i32, String)> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| (libc::EHOSTUNREACH, format!("cannot resolve: {e}")))?
        .collect();
    let mut last = None;
    for sa in &addrs {
        match crate::sys::connect_unpaced(sa, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable));
    Err((
        e.raw_os_error().unwrap_or(libc::ECONNREFUSED),
        format!("cannot connect{}", detail(&e)),
    ))
}

/// Sends this client's Hello on `stream` (blocking, with its timeouts
/// set) and reads the server's Welcome; (errno, why) otherwise.
fn handshake(
    mut stream: &std::net::TcpStream,
    session: u64,
) -> std::result::Result<Welcome, (i32, String)> {
    let hello = Hello::new(wire::caps::DEDUP | wire::caps::MARKS, session).frame(0);
    // A server that refuses the connection says why before it closes, so
    // a failed send still reads the reply that may be waiting.
    let sent = crate::sys::send_all(stream, &hello);
    let mut head = [0u8; HEADER_LEN];
    if let Err(e) = stream.read_exact(&mut head) {
        return Err(match sent {
            Err(send) => io_failure(send, "handshake"),
            Ok(()) => io_failure(e, "no handshake reply (is it a rawstor-ost?)"),
        });
    }
    let bad = |e: wire::WireError| (libc::EPROTO, format!("handshake: {e}"));
    let reply = Header::decode(&head).map_err(bad)?;
    let mut payload = vec![0u8; reply.payload_len as usize];
    stream
        .read_exact(&mut payload)
        .map_err(|e| io_failure(e, "handshake"))?;
    reply.check_payload(&payload).map_err(bad)?;
    wire::welcomed(reply.status, &payload)
}

/// An I/O error of the step `what` as (errno, why): a timeout is
/// `ETIMEDOUT`, a peer that closed the connection `ECONNRESET`.
fn io_failure(e: io::Error, what: &str) -> (i32, String) {
    let errno = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        io::ErrorKind::UnexpectedEof => libc::ECONNRESET,
        _ => e.raw_os_error().unwrap_or(libc::EIO),
    };
    let detail = match e.kind() {
        io::ErrorKind::UnexpectedEof => ": the peer closed the connection".to_string(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => String::new(),
        _ => detail(&e),
    };
    (errno, format!("{what}{detail}"))
}
