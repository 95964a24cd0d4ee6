//! Objects on a `rawstor-ost`: operations become wire requests on the
//! instance's shared [`Connection`] to that server. Reads and writes over
//! [`wire::MAX_IO`] are split and complete when every piece has.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{Backend, Replies};
use crate::error::{Error, Result};
use crate::fan_in::{self, FanIn};
use crate::lent::{self, RawBuf};
use crate::mdt::{ClusterMap, Layout, ObjectRecord};
use crate::net::{Connection, Dest, Done, Payload, Request};
use crate::store::record::Record;
use crate::store::{BLOCK_SIZE, ObjectInfo};
use crate::uuid::Uuid;
use crate::wire::{self, Extent, FLAG_FUA, FLAG_SHRINK, ListEntry, Marks, Opcode, Stat};

/// Called once with an operation's outcome (bytes transferred).
pub(crate) type Finish = Box<dyn FnOnce(Result<u64>) + Send>;

/// Sends one request and waits for its outcome.
pub(crate) fn call(
    connection: &Connection,
    build: impl FnOnce(Done) -> Request,
) -> Result<Vec<u8>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    connection.submit(build(Box::new(move |result| {
        let _ = tx.send(result);
    })));
    rx.recv()
        .unwrap_or_else(|_| Err(Error::new(libc::EIO, "the request was dropped")))
}

/// Creates an object on the server.
pub(crate) fn create(
    connection: &Connection,
    uuid: Uuid,
    size: u64,
    chunk_size: u64,
) -> Result<()> {
    call(connection, |done| {
        Request::new(Opcode::Create, uuid, chunk_size, size, done)
    })
    .map(drop)
}

/// Describes an object on the server.
pub(crate) fn stat(connection: &Connection, uuid: Uuid) -> Result<Stat> {
    let payload = call(connection, |done| {
        Request::new(Opcode::Stat, uuid, 0, 0, done)
    })?;
    Stat::decode(&payload).map_err(|e| {
        Error::new(
            libc::EPROTO,
            format!("{}: stat reply: {e}", connection.name()),
        )
    })
}

/// A rawstor-mdt request whose reply is a record. `writer_epoch` is the
/// lease epoch of a writer's change, 0 for anything else.
fn mdt_call(
    connection: &Connection,
    op: Opcode,
    uuid: Uuid,
    offset: u64,
    length: u64,
    payload: Vec<u8>,
    writer_epoch: u64,
) -> Result<Record> {
    let reply = call(connection, |done| {
        let mut request = Request::new(op, uuid, offset, length, done);
        request.header.epoch = writer_epoch;
        if !payload.is_empty() {
            request.payload = Payload::Owned(payload);
        }
        request
    })?;
    Record::decode(&reply).map_err(|e| {
        Error::new(
            libc::EPROTO,
            format!("{}: {op:?} reply: {e}", connection.name()),
        )
    })
}

/// Asks the MDT to place and record a new object.
/// What a `Place` request says besides the layout.
pub(crate) struct Placing {
    /// Spread over pieces of this size (0: one piece).
    pub(crate) piece_size: u64,
    /// For a piece: its object.
    pub(crate) parent: Option<Uuid>,
}

pub(crate) fn mdt_place(
    connection: &Connection,
    uuid: Uuid,
    size: u64,
    chunk_size: u64,
    layout: Layout,
    placing: Placing,
) -> Result<ObjectRecord> {
    let mut request = Record::new();
    request.set("layout", layout);
    if placing.piece_size > 0 {
        request.set("piece_size", placing.piece_size);
    }
    if let Some(parent) = placing.parent {
        request.set("parent", parent);
    }
    let reply = mdt_call(
        connection,
        Opcode::Place,
        uuid,
        chunk_size,
        size,
        request.encode(),
        0,
    )?;
    ObjectRecord::from_record(&reply)
}

/// An object's record on the MDT.
pub(crate) fn mdt_lookup(connection: &Connection, uuid: Uuid) -> Result<ObjectRecord> {
    ObjectRecord::from_record(&mdt_call(
        connection,
        Opcode::Lookup,
        uuid,
        0,
        0,
        Vec::new(),
        0,
    )?)
}

/// Changes an object's record on the MDT; returns the new record. A
/// writer names its lease `epoch` (refused once another writer took the
/// lease); 0 for changes that are not a writer's.
pub(crate) fn mdt_update(
    connection: &Connection,
    uuid: Uuid,
    epoch: u64,
    change: &Record,
) -> Result<ObjectRecord> {
    ObjectRecord::from_record(&mdt_call(
        connection,
        Opcode::Update,
        uuid,
        0,
        0,
        change.encode(),
        epoch,
    )?)
}

/// Takes, renews, breaks or gives back an object's writer lease
/// (`flags`: [`crate::mdt::LEASE_BREAK`] and friends).
/// `epoch` is the lease's, for renewals; returns the record and the
/// lease's epoch.
pub(crate) fn mdt_lease(
    connection: &Connection,
    uuid: Uuid,
    flags: u64,
    epoch: u64,
) -> Result<(ObjectRecord, u64)> {
    let reply = mdt_call(connection, Opcode::Lease, uuid, flags, epoch, Vec::new(), 0)?;
    Ok((
        ObjectRecord::from_record(&reply)?,
        reply.get("lease_epoch")?,
    ))
}

/// Drops an object's record on the MDT.
pub(crate) fn mdt_forget(connection: &Connection, uuid: Uuid) -> Result<()> {
    call(connection, |done| {
        Request::new(Opcode::Forget, uuid, 0, 0, done)
    })
    .map(drop)
}

/// The MDT's cluster map.
pub(crate) fn mdt_cluster_map(connection: &Connection) -> Result<ClusterMap> {
    let nil = Uuid::from_bytes([0; 16]);
    ClusterMap::from_record(&mdt_call(
        connection,
        Opcode::ClusterMap,
        nil,
        0,
        0,
        Vec::new(),
        0,
    )?)
}

/// Removes an object on the server.
pub(crate) fn remove(connection: &Connection, uuid: Uuid) -> Result<()> {
    call(connection, |done| {
        Request::new(Opcode::Remove, uuid, 0, 0, done)
    })
    .map(drop)
}

/// One page of the server's objects after `after`.
pub(crate) fn list(
    connection: &Connection,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Vec<ListEntry>> {
    let after = after.unwrap_or(Uuid::from_bytes([0; 16]));
    let limit = (limit as u64).min(wire::MAX_LIST);
    let payload = call(connection, |done| {
        Request::new(Opcode::List, after, 0, limit, done)
    })?;
    wire::decode_list(&payload).map_err(|e| {
        Error::new(
            libc::EPROTO,
            format!("{}: list reply: {e}", connection.name()),
        )
    })
}

/// An open object on a `rawstor-ost`.
pub(crate) struct RemoteObject {
    connection: Arc<Connection>,
    uuid: Uuid,
    size: AtomicU64,
    chunk_size: u64,
    /// Mirror marks as of `open`.
    marks: Marks,
    /// The writer lease epoch its changes name (0: none).
    epoch: AtomicU64,
}

impl RemoteObject {
    /// Opens `uuid` on the server behind `connection`.
    pub(crate) fn open(connection: Arc<Connection>, uuid: Uuid) -> Result<Self> {
        let stat = stat(&connection, uuid)?;
        Ok(Self {
            connection,
            uuid,
            size: AtomicU64::new(stat.size),
            chunk_size: stat.chunk_size,
            marks: stat.marks,
            epoch: AtomicU64::new(0),
        })
    }

    /// A request on this object; a change names the writer's lease epoch.
    fn request(&self, op: Opcode, offset: u64, length: u64, done: Done) -> Request {
        let mut request = Request::new(op, self.uuid, offset, length, done);
        if op.mutates() {
            request.header.epoch = self.epoch.load(Ordering::Acquire);
        }
        request
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Sends `op` over `bufs` as requests of at most [`wire::MAX_IO`]
    /// bytes, each completed by `fill` with its piece; `finish` runs
    /// once all pieces have completed.
    fn split_io(
        &self,
        op: Opcode,
        offset: u64,
        bufs: &[RawBuf],
        finish: Finish,
        fill: impl Fn(&mut Request, Vec<RawBuf>),
    ) {
        let total = lent::total(bufs);
        if total == 0 {
            return finish(Ok(0));
        }
        let mut pieces = lent::split(bufs, wire::MAX_IO as usize);
        if pieces.len() == 1 {
            // The common case: one request, no fan-in.
            let piece = pieces.pop().expect("one piece");
            let done: Done = Box::new(move |result| finish(result.map(|_| total)));
            let mut request = self.request(op, offset, total, done);
            fill(&mut request, piece);
            return self.connection.submit(request);
        }
        let fan = FanIn::new(
            pieces.len(),
            Box::new(move |results| {
                let done = fan_in::first_error(results);
                debug_assert!(done.as_ref().map_or(true, |&n| n == total));
                finish(done)
            }),
        );
        let mut at = offset;
        for (k, piece) in pieces.into_iter().enumerate() {
            let len = lent::total(&piece);
            let part = fan.part(k);
            let done: Done = Box::new(move |result| part(result.map(|_| len)));
            let mut request = self.request(op, at, len, done);
            fill(&mut request, piece);
            self.connection.submit(request);
            at += len;
        }
    }
}

impl Backend for RemoteObject {
    fn info(&self) -> ObjectInfo {
        ObjectInfo {
            uuid: self.uuid,
            size: self.size(),
            chunk_size: self.chunk_size,
            block_size: BLOCK_SIZE,
        }
    }

    /// The size the server has now (another handle may have resized the
    /// object), kept as this handle's.
    fn refresh_size(&self) -> Result<u64> {
        let size = stat(&self.connection, self.uuid)?.size;
        self.size.store(size, Ordering::Release);
        Ok(size)
    }

    /// Reads into `bufs` (in order) at `offset`; `finish` gets the bytes.
    fn read(&self, offset: u64, bufs: &[RawBuf], finish: Finish) {
        self.split_io(Opcode::Read, offset, bufs, finish, |request, piece| {
            request.dest = Dest::Bufs(piece);
        });
    }

    /// [`RemoteObject::read`] that fails with `ETIMEDOUT` when the
    /// server has not answered `within` (the caller asks another copy).
    fn read_within(&self, offset: u64, bufs: &[RawBuf], within: Duration, finish: Finish) {
        self.split_io(Opcode::Read, offset, bufs, finish, |request, piece| {
            request.dest = Dest::Bufs(piece);
            request.within = Some(within);
        });
    }

    /// Writes `bufs` (in order, sent from where they are) at `offset`;
    /// with `fua`, durably.
    fn write(&self, offset: u64, bufs: &[RawBuf], fua: bool, finish: Finish) {
        self.split_io(Opcode::Write, offset, bufs, finish, |request, piece| {
            request.payload = Payload::Lent(piece);
            if fua {
                request.header.flags |= FLAG_FUA;
            }
        });
    }

    /// A request without data (flush, discard, write-zeroes).
    fn simple(&self, op: Opcode, offset: u64, length: u64, finish: Finish) {
        self.connection.submit(self.request(
            op,
            offset,
            length,
            Box::new(move |result| finish(result.map(|_| 0))),
        ));
    }

    fn resize(&self, size: u64, allow_shrink: bool) -> Result<()> {
        call(&self.connection, |done| {
            let mut request = self.request(Opcode::Resize, 0, size, done);
            if allow_shrink {
                request.header.flags |= FLAG_SHRINK;
            }
            request
        })?;
        self.size.store(size, Ordering::Release);
        Ok(())
    }

    /// Whether the `len` bytes at `offset` hold data, and for how many.
    /// A server without block status (an older rawstor-ost) answers
    /// `EOPNOTSUPP`: everything then counts as data, which is never wrong.
    fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)> {
        let payload = match call(&self.connection, |done| {
            Request::new(Opcode::Extent, self.uuid, offset, len, done)
        }) {
            Err(err) if err.errno() == libc::EOPNOTSUPP && offset + len <= self.size() => {
                return Ok((true, len));
            }
            result => result?,
        };
        match Extent::decode(&payload) {
            Ok(e) if e.length > 0 && e.length <= len => Ok((e.data, e.length)),
            Ok(e) => Err(Error::new(
                libc::EPROTO,
                format!(
                    "{}: block status reply of {} bytes for {len} asked",
                    self.connection.name(),
                    e.length
                ),
            )),
            Err(e) => Err(Error::new(
                libc::EPROTO,
                format!("{}: block status reply: {e}", self.connection.name()),
            )),
        }
    }

    /// Mirror marks as of `open`.
    fn marks(&self) -> Marks {
        self.marks.clone()
    }

    /// Records mirror marks on the server (merged unless `replace`).
    fn set_marks(&self, marks: &Marks, replace: bool, finish: Finish) {
        let payload = marks.encode();
        let mut request = self.request(
            Opcode::Mark,
            0,
            0,
            Box::new(move |result| finish(result.map(|_| 0))),
        );
        request.payload = Payload::Owned(payload);
        if replace {
            request.header.flags |= wire::FLAG_REPLACE;
        }
        self.connection.submit(request);
    }

    /// Raises the object's fence on the server to lease `epoch`, which
    /// this object's changes name from now on: changes naming an older
    /// epoch (another writer's, cut off from the MDT) are refused there.
    /// `ENOLCK` when a newer writer has fenced it already.
    fn fence(&self, epoch: u64, finish: Finish) {
        self.epoch.store(epoch, Ordering::Release);
        let (name, uuid) = (self.connection.name().to_string(), self.uuid);
        let done: Done = Box::new(move |result| {
            finish(result.and_then(|reply| fenced(&name, uuid, epoch, &reply).map(|()| 0)))
        });
        let mut request = Request::new(Opcode::Fence, self.uuid, 0, 0, done);
        request.header.epoch = epoch;
        self.connection.submit(request);
    }

    fn hurrier(&self) -> Option<crate::redundancy::straggler::Hurrier> {
        Some(crate::redundancy::straggler::Hurrier {
            connection: Arc::clone(&self.connection),
            object: self.uuid,
        })
    }

    fn replies(&self) -> Replies<'_> {
        Replies::One(&self.connection)
    }
}

/// What a Fence reply says for a writer with lease `epoch`: the fence the
/// server now has (8 bytes, little-endian) must not be above `epoch`.
/// `ENOLCK` when a newer writer fenced the object; `EPROTO` for a reply
/// that is not 8 bytes.
fn fenced(server: &str, uuid: Uuid, epoch: u64, reply: &[u8]) -> Result<()> {
    let fence = <[u8; 8]>::try_from(reply)
        .map(u64::from_le_bytes)
        .map_err(|_| {
            Error::new(
                libc::EPROTO,
                format!("{server}: fence reply of {} bytes", reply.len()),
            )
        })?;
    if fence > epoch {
        return Err(Error::new(
            libc::ENOLCK,
            format!(
                "{server}: object {uuid}: another writer took over (its lease epoch {fence}; this writer's {epoch})"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::EventLoop;
    use crate::wire::{self, Header, Stat, Welcome};
    use std::io::{Read, Write};

    /// A server that speaks the protocol but answers a Fence with
    /// `fence_reply` (status 0): a misbehaving or newer OST.
    fn misbehaving_server(fence_reply: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = [0u8; wire::HEADER_LEN];
            while stream.read_exact(&mut head).is_ok() {
                let header = Header::decode(&head).unwrap();
                let mut payload = vec![0u8; header.payload_len as usize];
                stream.read_exact(&mut payload).unwrap();
                let answer = match header.op() {
                    Some(Opcode::Hello) => Welcome {
                        version: wire::VERSION.into(),
                        capabilities: 0,
                        max_payload: wire::MAX_PAYLOAD,
                        store_id: Uuid::from_bytes([9; 16]),
                    }
                    .encode(),
                    Some(Opcode::Stat) => Stat {
                        size: 1 << 20,
                        chunk_size: 1 << 20,
                        block_size: 4096,
                        marks: Default::default(),
                    }
                    .encode(),
                    Some(Opcode::Fence) => fence_reply.clone(),
                    other => panic!("unexpected request {other:?}"),
                };
                let reply = header.reply(0).with_payload(&answer);
                stream.write_all(&reply.encode()).unwrap();
                stream.write_all(&answer).unwrap();
            }
        });
        (addr, server)
    }

    #[test]
    fn a_malformed_fence_reply_from_a_server_fails_the_fence() {
        for (reply, errno, says) in [
            (vec![1, 2, 3], libc::EPROTO, "fence reply of 3 bytes"),
            (vec![], libc::EPROTO, "fence reply of 0 bytes"),
            (
                9u64.to_le_bytes().to_vec(),
                libc::ENOLCK,
                "its lease epoch 9; this writer's 5",
            ),
            (5u64.to_le_bytes().to_vec(), 0, ""),
        ] {
            let (addr, server) = misbehaving_server(reply);
            let event_loop = EventLoop::start().unwrap();
            let timeout = std::time::Duration::from_secs(5);
            let connection = Connection::connect(
                "ost",
                &addr,
                timeout,
                1,
                7,
                event_loop.handle(),
                event_loop.token(),
            )
            .unwrap();
            let object = RemoteObject::open(Arc::clone(&connection), Uuid::now_v7()).unwrap();
            let (tx, rx) = crossbeam_channel::bounded(1);
            object.fence(5, Box::new(move |result| tx.send(result).unwrap()));
            let result = rx.recv_timeout(timeout).expect("the fence completes");
            match errno {
                0 => assert_eq!(result.unwrap(), 0),
                _ => {
                    let err = result.unwrap_err();
                    assert_eq!(err.errno(), errno, "{err}");
                    assert!(err.to_string().contains(says), "{err}");
                    // Which server said so.
                    assert!(err.to_string().contains(&format!("ost://{addr}")), "{err}");
                }
            }
            drop(object);
            drop(connection);
            drop(event_loop);
            let _ = server.join();
        }
    }

    #[test]
    fn a_fence_reply_is_eight_bytes_at_most_the_writers_epoch() {
        let uuid = Uuid::now_v7();
        let at = |fence: u64| fence.to_le_bytes();
        assert!(fenced("ost://a:1", uuid, 5, &at(5)).is_ok());
        assert!(fenced("ost://a:1", uuid, 5, &at(3)).is_ok());
        let newer = fenced("ost://a:1", uuid, 5, &at(7)).unwrap_err();
        assert_eq!(newer.errno(), libc::ENOLCK);
        assert!(
            newer
                .to_string()
                .contains("its lease epoch 7; this writer's 5")
        );
        for bad in [&[][..], &[1, 2, 3][..], &[0; 9][..]] {
            let err = fenced("ost://a:1", uuid, 5, bad).unwrap_err();
            assert_eq!(err.errno(), libc::EPROTO);
            assert!(
                err.to_string()
                    .contains(&format!("fence reply of {} bytes", bad.len()))
            );
        }
    }
}
