//! Replies and the sending half of a connection, shared by the
//! connection's thread and the workers that answer its slow requests.

use std::io::{self, IoSlice, Write};
use std::net::TcpStream;

use parking_lot::{Condvar, Mutex};

use crate::error::Error;
use crate::wire::{self, Header};

/// A reply to send.
pub struct Reply {
    /// Its header (status, payload length and crc set).
    pub header: Header,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Reply {
    /// A success carrying `payload`.
    pub fn ok(request: &Header, payload: Vec<u8>) -> Self {
        Self::with_status(request, 0, payload)
    }

    /// An error: `-errno` and `message` as the payload.
    pub fn error(request: &Header, errno: i32, message: &str) -> Self {
        let payload = wire::error_message(message).to_vec();
        Self::with_status(request, -errno.abs(), payload)
    }

    /// A status (0 or a negative errno) and its payload, as remembered.
    pub fn with_status(request: &Header, status: i32, payload: Vec<u8>) -> Self {
        Self {
            header: request.reply(status).with_payload(&payload),
            payload,
        }
    }

    /// The reply to what a request did.
    pub fn from_result(request: &Header, result: Result<Vec<u8>, Error>) -> Self {
        match result {
            Ok(payload) => Self::ok(request, payload),
            Err(err) => Self::error(request, err.errno(), err.context()),
        }
    }
}

/// The sending half of a connection.
pub(super) struct Replier {
    stream: Mutex<TcpStream>,
    /// Requests handed to workers and not yet answered.
    inflight: Mutex<usize>,
    changed: Condvar,
}

impl Replier {
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream: Mutex::new(stream),
            inflight: Mutex::new(0),
            changed: Condvar::new(),
        }
    }

    /// Sends one reply. A failed send means the client went away; the
    /// connection's reading sees that.
    pub(super) fn send(&self, reply: &Reply) {
        let head = reply.header.encode();
        let mut stream = self.stream.lock();
        let _ = write_all_vectored(&mut stream, &head, &reply.payload);
    }

    /// Sends replies already encoded one after another.
    pub(super) fn send_bytes(&self, bytes: &[u8]) {
        let mut stream = self.stream.lock();
        let _ = stream.write_all(bytes);
    }

    /// Counts a request handed to a worker, first waiting while `limit`
    /// are.
    pub(super) fn begin(&self, limit: usize) {
        let mut inflight = self.inflight.lock();
        while *inflight >= limit {
            self.changed.wait(&mut inflight);
        }
        *inflight += 1;
    }

    /// A worker's request was answered.
    pub(super) fn end(&self) {
        let mut inflight = self.inflight.lock();
        assert!(*inflight > 0, "an answer for a request handed out");
        *inflight -= 1;
        drop(inflight);
        self.changed.notify_all();
    }

    /// Waits until every request handed to a worker is answered.
    pub(super) fn wait_idle(&self) {
        let mut inflight = self.inflight.lock();
        while *inflight > 0 {
            self.changed.wait(&mut inflight);
        }
    }
}

fn write_all_vectored(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let n = stream.write_vectored(&[IoSlice::new(head), IoSlice::new(body)])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    Ok(())
}
