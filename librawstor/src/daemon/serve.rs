//! The connection loop both servers run, a thread per connection: frames
//! are read through the codec ([`FrameReader`]); the first request must
//! be `Hello`; fast requests are answered on the connection's thread and
//! their replies gathered into one send while more requests wait; slow
//! ones go to a worker pool (at most [`Serving::queue_size`] at once, then
//! the connection stops reading and TCP pushes back on the client), and
//! their replies come back out of order.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::pool::Pool;
use crate::wire::{self, Decoded, Frame, FrameReader, Header, Offer, Opcode, ReadError};

use super::{Buffers, Reply, reply::Replier};

/// Bytes of inline replies gathered before they are sent regardless.
const REPLY_BATCH: usize = 256 << 10;
/// Bytes read from the socket at once.
const READ_BUFFER: usize = 128 << 10;

/// One request, framed and checked, after the handshake.
pub struct Request {
    /// Its known opcode.
    pub op: Opcode,
    /// Its header.
    pub header: Header,
    /// Its payload, checked against the header.
    pub payload: Vec<u8>,
    /// For a write of whole 4 KiB blocks: their crc32s.
    pub block_crcs: Option<Vec<u32>>,
}

/// What a server does with requests; [`serve`] does the rest.
pub trait Service: Send + Sync + 'static {
    /// What the server offers in the handshake.
    fn offer(&self) -> Offer;
    /// Whether `request` is answered on the connection's thread, in
    /// order (otherwise by a worker, when there are workers).
    fn inline(&self, request: &Request) -> bool;
    /// Answers `request` of the client session `session`.
    fn answer(&self, session: u64, request: &Request) -> Reply;
    /// Where payload buffers come from and go back to.
    fn buffers(&self) -> &Buffers;
}

/// How connections are served.
#[derive(Clone)]
pub struct Serving {
    /// Threads for the requests that are not answered inline (none:
    /// every request is).
    pub workers: Option<Arc<Pool>>,
    /// Requests of one connection at the workers at once.
    pub queue_size: usize,
    /// A connection silent this long (or stuck mid-frame) is closed.
    pub idle_timeout: Option<Duration>,
}

/// Serves one connection until it closes, fails or breaks the protocol
/// (or the server ends its reading); returns once every request handed
/// to a worker is answered.
pub fn serve<S: Service>(service: &Arc<S>, stream: TcpStream, serving: &Serving) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(serving.idle_timeout);
    let replier = match stream.try_clone() {
        Ok(clone) => Arc::new(Replier::new(clone)),
        Err(e) => {
            crate::log::warn(&format!("cannot clone a connection: {e}"));
            return;
        }
    };
    let mut connection = Connection {
        service: Arc::clone(service),
        serving,
        reader: FrameReader::new(stream, READ_BUFFER),
        replier,
        session: None,
        batch: Vec::with_capacity(REPLY_BATCH),
    };
    while connection.next() {}
    connection.send_batch();
    connection.replier.wait_idle();
}

/// One connection's state on its thread.
struct Connection<'a, S> {
    service: Arc<S>,
    serving: &'a Serving,
    reader: FrameReader<TcpStream>,
    replier: Arc<Replier>,
    /// The client's session, once it said `Hello`.
    session: Option<u64>,
    /// Encoded replies of inline requests, sent once no received request
    /// is left to run: at depth, one send for many replies.
    batch: Vec<u8>,
}

impl<S: Service> Connection<'_, S> {
    /// Reads and handles one frame; whether the connection goes on.
    fn next(&mut self) -> bool {
        if !self.batch.is_empty()
            && (!self.reader.has_buffered() || self.batch.len() >= REPLY_BATCH)
        {
            self.send_batch();
        }
        let buffers = self.service.buffers();
        match self.reader.next_frame(|len| buffers.take(len)) {
            Ok(Some(Decoded::Frame(frame))) => self.request(frame),
            Ok(Some(Decoded::Bad(header, err))) => {
                self.reply(Reply::error(&header, err.errno(), &err.to_string()));
                true
            }
            // Closed, between frames or in the middle of one (nothing of
            // a cut frame is applied).
            Ok(None) | Err(ReadError::Io(_)) => false,
            Err(ReadError::Wire(err)) => {
                // The stream can no longer be framed: say why, then close.
                self.fail(Reply::error(
                    &Header::default(),
                    err.errno(),
                    &err.to_string(),
                ))
            }
        }
    }

    /// Handles one good frame; whether the connection goes on.
    fn request(&mut self, frame: Frame) -> bool {
        let header = frame.header;
        if header.is_reply() {
            self.reply(Reply::error(
                &header,
                libc::EINVAL,
                "a reply sent as a request",
            ));
            return true;
        }
        let Some(op) = header.op() else {
            let message = format!("unknown opcode {}", header.opcode);
            self.reply(Reply::error(&header, libc::EOPNOTSUPP, &message));
            return true;
        };
        if op == Opcode::Hello {
            return self.hello(&header, &frame.payload);
        }
        let Some(session) = self.session else {
            let message = "the first request on a connection must be Hello";
            return self.fail(Reply::error(&header, libc::EPROTO, message));
        };
        let request = Request {
            op,
            header,
            payload: frame.payload,
            block_crcs: frame.block_crcs,
        };
        match &self.serving.workers {
            Some(workers) if !self.service.inline(&request) => {
                self.hand_off(workers, session, request);
            }
            _ => {
                let reply = self.service.answer(session, &request);
                self.service.buffers().give(request.payload);
                self.reply(reply);
            }
        }
        true
    }

    /// The handshake: a session on success; a bad `Hello` closes.
    fn hello(&mut self, header: &Header, payload: &[u8]) -> bool {
        match wire::accept_hello(payload, &self.service.offer()) {
            Ok((welcome, session)) => {
                self.session = Some(session);
                self.reply(Reply::ok(header, welcome.encode()));
                true
            }
            Err(e) => self.fail(Reply::error(header, e.errno(), &format!("bad Hello: {e}"))),
        }
    }

    /// Gives `request` to a worker, which sends its reply.
    fn hand_off(&self, workers: &Pool, session: u64, request: Request) {
        self.replier.begin(self.serving.queue_size);
        let service = Arc::clone(&self.service);
        let replier = Arc::clone(&self.replier);
        workers.run(move || {
            let reply = service.answer(session, &request);
            service.buffers().give(request.payload);
            replier.send(&reply);
            replier.end();
            service.buffers().give(reply.payload);
        });
    }

    /// Gathers an inline reply.
    fn reply(&mut self, reply: Reply) {
        self.batch.extend_from_slice(&reply.header.encode());
        self.batch.extend_from_slice(&reply.payload);
        self.service.buffers().give(reply.payload);
    }

    /// Sends the gathered replies, then `reply`; the connection ends.
    fn fail(&mut self, reply: Reply) -> bool {
        self.send_batch();
        self.replier.send(&reply);
        false
    }

    fn send_batch(&mut self) {
        if !self.batch.is_empty() {
            self.replier.send_bytes(&self.batch);
            self.batch.clear();
        }
    }
}
