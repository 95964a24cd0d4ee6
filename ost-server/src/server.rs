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
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use rawstor::Uuid;
use rawstor::daemon::{Buffers, Connections, Reply, Request, Service, Serving, StopSignal};
use rawstor::error::{Error, Result};
use rawstor::pool::Pool;
use rawstor::store::{BLOCK_SIZE, Store, StoreObject};
use rawstor::wire::{self, FLAG_FUA, FLAG_SHRINK, Header, ListEntry, Marks, Offer, Opcode, Stat};

/// Reads and writes up to this size run on the connection's thread.
pub const INLINE_MAX: u64 = 256 << 10;
/// Slow requests waiting for a worker, per worker; beyond them a
/// connection waits to hand its next one over.
const QUEUED_PER_WORKER: usize = 256;
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

/// A running server.
pub struct Server {
    store: Arc<Store>,
    buffers: Buffers,
    objects: Mutex<HashMap<Uuid, Arc<StoreObject>>>,
    dedup: Dedup,
    serving: Serving,
    /// The connections served, to end them on shutdown.
    connections: Arc<Connections>,
}

// The frame reader checks whole-block writes by the store's blocks.
const _: () = assert!(BLOCK_SIZE as usize == wire::CRC_BLOCK);

impl Server {
    /// A server of `store` with its worker threads started.
    pub fn new(store: Arc<Store>, config: &Config) -> Result<Arc<Self>> {
        let threads = config.workers.max(1);
        let workers = Pool::new(threads, "ost-worker", threads * QUEUED_PER_WORKER)?;
        Ok(Arc::new(Self {
            store,
            buffers: Buffers::default(),
            objects: Mutex::new(HashMap::new()),
            dedup: Dedup::new(),
            serving: Serving {
                workers: Some(Arc::new(workers)),
                queue_size: config.queue_size,
                idle_timeout: None,
            },
            connections: Connections::new(config.max_connections),
        }))
    }

    /// Serves connections from `listener` until [`Server::stop`] or a
    /// stop signal; returns the connection threads still running.
    pub fn accept_loop(
        self: &Arc<Self>,
        listener: &TcpListener,
        stop: &StopSignal,
    ) -> Vec<std::thread::JoinHandle<()>> {
        let server = Arc::clone(self);
        self.connections
            .accept_loop("rawstor-ost", listener, stop, move |stream: TcpStream| {
                rawstor::daemon::serve(&server, stream, &server.serving)
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

    fn object(&self, uuid: Uuid) -> Result<Arc<StoreObject>> {
        if let Some(object) = self.objects.lock().get(&uuid) {
            return Ok(Arc::clone(object));
        }
        let object = self.store.open_object(uuid)?;
        Ok(Arc::clone(
            self.objects.lock().entry(uuid).or_insert(object),
        ))
    }

    /// Runs one request.
    fn run(&self, request: &Request) -> Result<Vec<u8>> {
        let header = &request.header;
        let uuid = header.uuid();
        match request.op {
            Opcode::Hello => Err(Error::new(libc::EPROTO, "Hello was already done")),
            Opcode::Read => self.read(header),
            Opcode::Write => self.write(request),
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
            Opcode::Stat => self.stat(uuid),
            Opcode::Remove => {
                // Data written but not flushed goes away with the object.
                drop(self.objects.lock().remove(&uuid));
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
            Opcode::List => self.list(header),
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
                format!(
                    "{:?} is a rawstor-mdt request; this is a rawstor-ost",
                    request.op
                ),
            )),
            Opcode::Mark => self.mark(request),
            Opcode::Fence => {
                if header.epoch == 0 {
                    return Err(Error::invalid("a fence needs a lease epoch"));
                }
                let fence = self.object(uuid)?.fence(header.epoch)?;
                Ok(fence.to_le_bytes().to_vec())
            }
        }
    }

    fn read(&self, header: &Header) -> Result<Vec<u8>> {
        if header.length > wire::MAX_IO {
            return Err(Error::invalid(format!(
                "read of {} bytes is over the limit {}",
                header.length,
                wire::MAX_IO
            )));
        }
        let mut buf = self.buffers.take(header.length as usize);
        self.object(header.uuid())?.read(header.offset, &mut buf)?;
        Ok(buf)
    }

    fn write(&self, request: &Request) -> Result<Vec<u8>> {
        let (header, payload) = (&request.header, &request.payload);
        if header.length != payload.len() as u64 {
            return Err(Error::invalid(format!(
                "write length {} differs from its payload of {} bytes",
                header.length,
                payload.len()
            )));
        }
        let object = self.object(header.uuid())?;
        let _admitted = object.admit(header.epoch)?;
        match &request.block_crcs {
            Some(crcs) => object.write_blocks(header.offset, payload, crcs)?,
            None => object.write(header.offset, payload)?,
        }
        if header.flags & FLAG_FUA != 0 {
            object.flush()?;
        }
        Ok(Vec::new())
    }

    fn stat(&self, uuid: Uuid) -> Result<Vec<u8>> {
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

    fn list(&self, header: &Header) -> Result<Vec<u8>> {
        let uuid = header.uuid();
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

    fn mark(&self, request: &Request) -> Result<Vec<u8>> {
        let header = &request.header;
        let marks = Marks::decode(&request.payload)
            .map_err(|e| Error::invalid(format!("bad marks: {e}")))?;
        let replace = header.flags & wire::FLAG_REPLACE != 0;
        let object = self.object(header.uuid())?;
        let _admitted = object.admit(header.epoch)?;
        object.set_marks(&marks, replace)?;
        Ok(Vec::new())
    }
}

impl Service for Server {
    fn offer(&self) -> Offer {
        Offer {
            capabilities: wire::caps::DEDUP | wire::caps::MARKS,
            store_id: self.store.id(),
        }
    }

    /// Reads and writes up to [`INLINE_MAX`] that the page cache
    /// absorbs, stat and extent: answered on the connection's thread.
    fn inline(&self, request: &Request) -> bool {
        let header = &request.header;
        match request.op {
            Opcode::Read => header.length <= INLINE_MAX,
            Opcode::Write => header.length <= INLINE_MAX && header.flags & FLAG_FUA == 0,
            Opcode::Stat | Opcode::Extent => true,
            _ => false,
        }
    }

    /// Mutations of a session are remembered: a retried one is answered,
    /// not run twice.
    fn answer(&self, session: u64, request: &Request) -> Reply {
        let header = &request.header;
        if !request.op.mutates() || session == 0 {
            return Reply::from_result(header, self.run(request));
        }
        let key = (session, header.request_id);
        if let Some((status, payload)) = self.dedup.begin(key) {
            return Reply::with_status(header, status, payload);
        }
        let reply = Reply::from_result(header, self.run(request));
        self.dedup.finish(key, reply.header.status, &reply.payload);
        reply
    }

    fn buffers(&self) -> &Buffers {
        &self.buffers
    }
}
