//! The object storage target: serves one store over TCP.
//!
//! One thread per connection reads frames in order. Fast requests (reads
//! and writes up to [`INLINE_MAX`] that the page cache absorbs, stat) run
//! on that thread, which then writes the reply: one wake-up per request,
//! as in a blocking ping-pong. Slow requests (flush, FUA writes, large
//! I/O, discard, create, remove, resize, list, marks) go to a worker pool
//! so the connection keeps reading; their replies come back out of order.
//! Objects have no per-object lock here: requests on different objects
//! (or different ranges of one) run side by side.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use rawstor::Uuid;
use rawstor::daemon::{Connections, StopSignal};
use rawstor::error::Error;
use rawstor::store::{Store, StoreObject};
use rawstor::wire::{
    self, FLAG_FUA, FLAG_SHRINK, HEADER_LEN, Header, ListEntry, Marks, Opcode, Stat,
};

/// Reads and writes up to this size run on the connection's thread.
pub const INLINE_MAX: u64 = 256 << 10;
/// Bytes of inline replies gathered before they are sent regardless.
const REPLY_BATCH: usize = 256 << 10;
/// Results of mutations remembered for retried requests.
const DEDUP_ENTRIES: usize = 1 << 16;

/// What the server is told to do.
pub struct Config {
    /// Worker threads for slow requests.
    pub workers: usize,
    /// Requests of one connection in flight at once; beyond it the
    /// connection stops reading (TCP pushes back on the client).
    pub queue_size: usize,
    /// Connections served at once; more are refused with an error reply.
    pub max_connections: usize,
}

type Job = Box<dyn FnOnce() + Send>;

/// A reply to send.
struct Reply {
    header: Header,
    payload: Vec<u8>,
}

impl Reply {
    fn ok(request: &Header, payload: Vec<u8>) -> Self {
        Self {
            header: request.reply(0).with_payload(&payload),
            payload,
        }
    }

    fn error(request: &Header, errno: i32, message: &str) -> Self {
        let payload = wire::error_message(message).to_vec();
        Self {
            header: request.reply(-errno.abs()).with_payload(&payload),
            payload,
        }
    }

    fn from_result(request: &Header, result: Result<Vec<u8>, Error>) -> Self {
        match result {
            Ok(payload) => Self::ok(request, payload),
            Err(err) => Self::error(request, err.errno(), err.context()),
        }
    }
}

/// Remembered results of mutating requests, by (session, request id), so
/// that a request retried after a lost connection is answered, not run
/// twice.
struct Dedup {
    inner: Mutex<DedupInner>,
    finished: Condvar,
}

/// A remembered outcome: status and reply payload.
type Outcome = (i32, Vec<u8>);

#[derive(Default)]
struct DedupInner {
    /// `None` while the first attempt runs.
    results: HashMap<(u64, u64), Option<Outcome>>,
    order: VecDeque<(u64, u64)>,
}

impl Dedup {
    fn new() -> Self {
        Self {
            inner: Mutex::new(DedupInner::default()),
            finished: Condvar::new(),
        }
    }

    /// The remembered result of `key` (waiting while its first attempt
    /// runs), or `None`: the caller runs it and calls [`Dedup::finish`].
    fn begin(&self, key: (u64, u64)) -> Option<Outcome> {
        let mut inner = self.inner.lock();
        loop {
            match inner.results.get(&key) {
                Some(Some(result)) => return Some(result.clone()),
                Some(None) => self.finished.wait(&mut inner),
                None => break,
            }
        }
        inner.results.insert(key, None);
        inner.order.push_back(key);
        while inner.order.len() > DEDUP_ENTRIES {
            let oldest = inner.order.pop_front().expect("not empty");
            inner.results.remove(&oldest);
        }
        None
    }

    fn finish(&self, key: (u64, u64), status: i32, payload: &[u8]) {
        let mut inner = self.inner.lock();
        if let Some(slot) = inner.results.get_mut(&key) {
            *slot = Some((status, payload.to_vec()));
        }
        drop(inner);
        self.finished.notify_all();
    }
}

/// The sending half of a connection, shared with workers.
struct Replier {
    stream: Mutex<TcpStream>,
    /// Requests handed to workers and not yet answered.
    inflight: Mutex<usize>,
    changed: Condvar,
}

impl Replier {
    fn send(&self, reply: &Reply) {
        let head = reply.header.encode();
        let mut stream = self.stream.lock();
        // A failed send means the client went away; its reader sees that.
        let _ = write_all_vectored(&mut stream, &head, &reply.payload);
    }

    fn send_bytes(&self, bytes: &[u8]) {
        let mut stream = self.stream.lock();
        let _ = stream.write_all(bytes);
    }

    fn begin(&self, limit: usize) {
        let mut inflight = self.inflight.lock();
        while *inflight >= limit {
            self.changed.wait(&mut inflight);
        }
        *inflight += 1;
    }

    fn end(&self) {
        *self.inflight.lock() -= 1;
        self.changed.notify_all();
    }

    fn wait_idle(&self) {
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

/// A running server.
/// Request and reply buffers kept for reuse: a fresh 1 MiB buffer per
/// request costs a page fault per 4 KiB and a memset (a fifth of a
/// streaming write's server CPU, measured with perf).
#[derive(Default)]
struct Buffers {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Buffers {
    /// Buffers kept, at most.
    const KEPT: usize = 64;
    /// Smaller buffers are allocated afresh (cheap) and not kept.
    const MIN_BYTES: usize = 64 << 10;

    /// A buffer of `len` bytes (contents unspecified).
    fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = if len >= Self::MIN_BYTES {
            self.free.lock().pop().unwrap_or_default()
        } else {
            Vec::new()
        };
        // Only bytes beyond what the buffer held before are zeroed.
        buf.resize(len, 0);
        buf
    }

    /// Gives a buffer back.
    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() < Self::MIN_BYTES {
            return;
        }
        let mut free = self.free.lock();
        if free.len() < Self::KEPT {
            free.push(buf);
        }
    }
}

pub struct Server {
    store: Arc<Store>,
    buffers: Buffers,
    objects: Mutex<HashMap<Uuid, Arc<StoreObject>>>,
    dedup: Dedup,
    jobs: Sender<Job>,
    config: Config,
    /// The connections served, to end them on shutdown.
    connections: Arc<Connections>,
}

impl Server {
    /// A server of `store` with its worker threads started.
    pub fn new(store: Arc<Store>, config: Config) -> (Arc<Self>, Vec<JoinHandle<()>>) {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let server = Arc::new(Self {
            store,
            buffers: Buffers::default(),
            objects: Mutex::new(HashMap::new()),
            dedup: Dedup::new(),
            jobs,
            connections: Connections::new(config.max_connections),
            config,
        });
        let workers = (0..server.config.workers.max(1))
            .map(|i| {
                let queue: Receiver<Job> = queue.clone();
                std::thread::Builder::new()
                    .name(format!("ost-worker-{i}"))
                    .spawn(move || {
                        for job in queue {
                            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err()
                            {
                                eprintln!("rawstor-ost: a request handler panicked");
                            }
                        }
                    })
                    .expect("cannot start a worker thread")
            })
            .collect();
        (server, workers)
    }

    /// Serves connections from `listener` until [`Server::stop`] or a
    /// stop signal; returns the connection threads still running.
    pub fn accept_loop(
        self: &Arc<Self>,
        listener: &TcpListener,
        stop: &StopSignal,
    ) -> Vec<JoinHandle<()>> {
        let server = Arc::clone(self);
        self.connections
            .accept_loop("rawstor-ost", listener, stop, move |stream| {
                server.serve(stream)
            })
    }

    /// Stops accepting and ends every connection's reading: in-flight
    /// requests still finish and are answered.
    pub fn stop(&self) {
        self.connections.stop();
    }

    /// Closes every connection outright (in-flight replies are lost; the
    /// clients retry elsewhere or later).
    pub fn abort_connections(&self) {
        self.connections.abort();
    }

    /// Flushes every open object; returns how many failed.
    pub fn flush_all(&self) -> usize {
        let objects: Vec<_> = self.objects.lock().values().cloned().collect();
        let mut failed = 0;
        for object in objects {
            if let Err(e) = object.flush() {
                eprintln!("rawstor-ost: flush of {} failed: {e}", object.uuid());
                failed += 1;
            }
        }
        failed
    }

    fn serve(self: &Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let replier = match stream.try_clone() {
            Ok(clone) => Arc::new(Replier {
                stream: Mutex::new(clone),
                inflight: Mutex::new(0),
                changed: Condvar::new(),
            }),
            Err(e) => {
                eprintln!("rawstor-ost: cannot clone a connection: {e}");
                return;
            }
        };
        let mut reader = BufReader::with_capacity(128 << 10, stream);
        let mut session: Option<u64> = None;
        // Replies of inline requests, sent together once no received
        // request is left to run: at depth, one send for many replies.
        let mut batch: Vec<u8> = Vec::with_capacity(REPLY_BATCH);
        loop {
            if !batch.is_empty() && (reader.buffer().is_empty() || batch.len() >= REPLY_BATCH) {
                replier.send_bytes(&batch);
                batch.clear();
            }
            let mut head = [0u8; HEADER_LEN];
            match read_full(&mut reader, &mut head) {
                Ok(true) => {}
                Ok(false) | Err(_) => break, // closed, between frames or mid-frame
            }
            let header = match Header::decode(&head) {
                Ok(header) => header,
                Err(err) => {
                    // The stream can no longer be framed: say why, then close.
                    replier.send(&Reply::error(
                        &Header::default(),
                        err.errno(),
                        &err.to_string(),
                    ));
                    break;
                }
            };
            let mut payload = self.buffers.take(header.payload_len as usize);
            if read_full(&mut reader, &mut payload).ok() != Some(true) {
                break; // disconnected mid-frame: nothing of it is applied
            }
            let checked = if whole_blocks(&header) {
                header.check_payload_blocks(&payload).map(Some)
            } else {
                header.check_payload(&payload).map(|()| None)
            };
            let crcs = match checked {
                Ok(crcs) => crcs,
                Err(err) => {
                    replier.send(&Reply::error(&header, err.errno(), &err.to_string()));
                    continue;
                }
            };
            if header.is_reply() {
                replier.send(&Reply::error(
                    &header,
                    libc::EINVAL,
                    "a reply sent as a request",
                ));
                continue;
            }
            let Some(op) = header.op() else {
                let message = format!("unknown opcode {}", header.opcode);
                replier.send(&Reply::error(&header, libc::EOPNOTSUPP, &message));
                continue;
            };
            match (op, session) {
                (Opcode::Hello, _) => match self.hello(&header, &payload) {
                    Ok((reply, id)) => {
                        session = Some(id);
                        replier.send(&reply);
                    }
                    Err(reply) => {
                        replier.send(&reply);
                        break;
                    }
                },
                (_, None) => {
                    replier.send(&Reply::error(
                        &header,
                        libc::EPROTO,
                        "the first request on a connection must be Hello",
                    ));
                    break;
                }
                (op, Some(session)) if inline(op, &header) => {
                    let reply = self.execute(session, op, &header, &payload, crcs.as_deref());
                    self.buffers.give(payload);
                    batch.extend_from_slice(&reply.header.encode());
                    batch.extend_from_slice(&reply.payload);
                    self.buffers.give(reply.payload);
                }
                (op, Some(session)) => {
                    replier.begin(self.config.queue_size);
                    let server = Arc::clone(self);
                    let replier = Arc::clone(&replier);
                    let job: Job = Box::new(move || {
                        let reply = server.execute(session, op, &header, &payload, crcs.as_deref());
                        server.buffers.give(payload);
                        replier.send(&reply);
                        replier.end();
                        server.buffers.give(reply.payload);
                    });
                    if let Err(err) = self.jobs.send(job) {
                        (err.into_inner())();
                    }
                }
            }
        }
        if !batch.is_empty() {
            replier.send_bytes(&batch);
        }
        replier.wait_idle();
    }

    fn hello(&self, header: &Header, payload: &[u8]) -> Result<(Reply, u64), Reply> {
        let offer = wire::Offer {
            capabilities: wire::caps::DEDUP | wire::caps::MARKS,
            store_id: self.store.id(),
        };
        let (welcome, session) = wire::accept_hello(payload, &offer)
            .map_err(|e| Reply::error(header, e.errno(), &format!("bad Hello: {e}")))?;
        Ok((Reply::ok(header, welcome.encode()), session))
    }

    fn object(&self, uuid: Uuid) -> Result<Arc<StoreObject>, Error> {
        if let Some(object) = self.objects.lock().get(&uuid) {
            return Ok(Arc::clone(object));
        }
        let object = self.store.open_object(uuid)?;
        Ok(Arc::clone(
            self.objects.lock().entry(uuid).or_insert(object),
        ))
    }

    /// Runs one request; mutations go through the session's memory.
    /// `crcs` are the crc32s of the payload's 4 KiB blocks when it is a
    /// write of whole blocks.
    fn execute(
        &self,
        session: u64,
        op: Opcode,
        header: &Header,
        payload: &[u8],
        crcs: Option<&[u32]>,
    ) -> Reply {
        if !op.mutates() || session == 0 {
            return Reply::from_result(header, self.run(op, header, payload, crcs));
        }
        let key = (session, header.request_id);
        if let Some((status, message)) = self.dedup.begin(key) {
            let header = header.reply(status).with_payload(&message);
            return Reply {
                header,
                payload: message,
            };
        }
        let reply = Reply::from_result(header, self.run(op, header, payload, crcs));
        self.dedup.finish(key, reply.header.status, &reply.payload);
        reply
    }

    fn run(
        &self,
        op: Opcode,
        header: &Header,
        payload: &[u8],
        crcs: Option<&[u32]>,
    ) -> Result<Vec<u8>, Error> {
        let uuid = header.uuid();
        match op {
            Opcode::Hello => Err(Error::new(libc::EPROTO, "Hello was already done")),
            Opcode::Read => {
                if header.length > wire::MAX_IO {
                    return Err(Error::invalid(format!(
                        "read of {} bytes is over the limit {}",
                        header.length,
                        wire::MAX_IO
                    )));
                }
                let mut buf = self.buffers.take(header.length as usize);
                self.object(uuid)?.read(header.offset, &mut buf)?;
                Ok(buf)
            }
            Opcode::Write => {
                if header.length != payload.len() as u64 {
                    return Err(Error::invalid(format!(
                        "write length {} differs from its payload of {} bytes",
                        header.length,
                        payload.len()
                    )));
                }
                let object = self.object(uuid)?;
                let _admitted = object.admit(header.epoch)?;
                match crcs {
                    Some(crcs) => object.write_blocks(header.offset, payload, crcs)?,
                    None => object.write(header.offset, payload)?,
                }
                if header.flags & FLAG_FUA != 0 {
                    object.flush()?;
                }
                Ok(Vec::new())
            }
            Opcode::Flush => self.object(uuid)?.flush().map(|()| Vec::new()),
            Opcode::Discard | Opcode::WriteZeroes => {
                let object = self.object(uuid)?;
                let _admitted = object.admit(header.epoch)?;
                object.zero(header.offset, header.length)?;
                Ok(Vec::new())
            }
            Opcode::Create => {
                self.store
                    .create_object(uuid, header.length, header.offset)?;
                Ok(Vec::new())
            }
            Opcode::Stat => {
                let open = self.objects.lock().get(&uuid).cloned();
                let (info, marks) = match open {
                    Some(object) => (object.info(), object.marks()),
                    None => self.store.stat_object_marks(uuid)?,
                };
                Ok(Stat {
                    size: info.size,
                    chunk_size: info.chunk_size,
                    block_size: info.block_size,
                    marks,
                }
                .encode())
            }
            Opcode::Remove => {
                let open = self.objects.lock().remove(&uuid);
                if let Some(object) = open {
                    // Data written but not flushed is going away with it.
                    drop(object);
                }
                self.store.remove_object(uuid)?;
                Ok(Vec::new())
            }
            Opcode::Resize => {
                let shrink = header.flags & FLAG_SHRINK != 0;
                let object = self.object(uuid)?;
                let _admitted = object.admit(header.epoch)?;
                object.resize(header.length, shrink)?;
                Ok(Vec::new())
            }
            Opcode::List => {
                let after = (uuid != Uuid::from_bytes([0; 16])).then_some(uuid);
                let limit = header.length.clamp(1, wire::MAX_LIST) as usize;
                let entries: Vec<ListEntry> = self
                    .store
                    .list_objects(after, limit)?
                    .into_iter()
                    .map(|info| ListEntry {
                        uuid: info.uuid,
                        size: info.size,
                        chunk_size: info.chunk_size,
                    })
                    .collect();
                Ok(wire::encode_list(&entries))
            }
            Opcode::Extent => {
                let (data, length) = self.object(uuid)?.extent(header.offset, header.length)?;
                Ok(wire::Extent { data, length }.encode())
            }
            Opcode::OstRegister
            | Opcode::ClusterMap
            | Opcode::Place
            | Opcode::Lookup
            | Opcode::Forget
            | Opcode::Update
            | Opcode::Lease => Err(Error::new(
                libc::EOPNOTSUPP,
                format!("{op:?} is a rawstor-mdt request; this is a rawstor-ost"),
            )),
            Opcode::Mark => {
                let marks = Marks::decode(payload)
                    .map_err(|e| Error::invalid(format!("bad marks: {e}")))?;
                let replace = header.flags & wire::FLAG_REPLACE != 0;
                let object = self.object(uuid)?;
                let _admitted = object.admit(header.epoch)?;
                object.set_marks(&marks, replace)?;
                Ok(Vec::new())
            }
            Opcode::Fence => {
                if header.epoch == 0 {
                    return Err(Error::invalid("a fence needs a lease epoch"));
                }
                let fence = self.object(uuid)?.fence(header.epoch)?;
                Ok(fence.to_le_bytes().to_vec())
            }
        }
    }
}

/// Whether a frame is a write request of whole store blocks, whose
/// payload is checked by its blocks' crcs (which then seal them).
fn whole_blocks(header: &Header) -> bool {
    let block = rawstor::store::BLOCK_SIZE;
    header.op() == Some(Opcode::Write)
        && !header.is_reply()
        && header.payload_len > 0
        && u64::from(header.payload_len) == header.length
        && header.length % block == 0
        && header.offset % block == 0
}

/// Whether a request runs on the connection's own thread.
fn inline(op: Opcode, header: &Header) -> bool {
    match op {
        Opcode::Read => header.length <= INLINE_MAX,
        Opcode::Write => header.length <= INLINE_MAX && header.flags & FLAG_FUA == 0,
        Opcode::Stat | Opcode::Extent => true,
        _ => false,
    }
}

/// Fills `buf`; `Ok(false)` on a clean end of stream before its first
/// byte, an error on an end in the middle.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match reader.read(&mut buf[at..]) {
            Ok(0) if at == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Waits for connection threads until `deadline`; returns whether all ended.
pub fn join_until(threads: Vec<JoinHandle<()>>, deadline: Instant) -> bool {
    for thread in threads {
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = thread.join();
    }
    true
}
