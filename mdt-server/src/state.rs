//! What the MDT knows, and the control files it keeps it in:
//!
//! | file (in every copy directory) | content |
//! |---|---|
//! | `mdt-id` | the MDT's UUID (clients check it on reconnect) |
//! | `cluster-map` | registered OSTs: id, address, failure domain |
//! | `objects/<uuid>` | an object's size, chunk size, layout, placement |
//!
//! Every write goes to every copy (atomic replace, fsync) before the
//! request is answered. Capacity, usage and liveness come from heartbeats
//! and live in memory only: OSTs heartbeat every second, so a restarted
//! MDT knows them again within seconds.
//!
//! Writer leases live in memory too. A restarted MDT has forgotten them,
//! so for one lease lifetime it grants only renewals (writers that held a
//! lease take it back) and tells new writers to retry: no second writer
//! slips in while the first one's renewal is on its way.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rawstor::Uuid;
use rawstor::error::{Error, Result};
use rawstor::mdt::{self, ClusterMap, Layout, ObjectRecord, OstEntry};
use rawstor::store::WORK_DIR;
use rawstor::store::control;
use rawstor::store::record::Record;
use rawstor::wire::{self, Header, ListEntry, Opcode};

const ID_FILE: &str = "mdt-id";
const MAP_FILE: &str = "cluster-map";
const OBJECTS_DIR: &str = "objects";
/// Pieces one object may be cut into: one record each.
const MAX_PIECES: u64 = 1 << 20;

/// An OST and when it last heartbeated.
struct Member {
    entry: OstEntry,
    last_seen: Option<Instant>,
}

struct MapState {
    version: u64,
    members: Vec<Member>,
}

pub struct Mdt {
    copies: Vec<PathBuf>,
    id: Uuid,
    heartbeat_timeout: Duration,
    map: Mutex<MapState>,
    /// Serialises object record changes (create, update, forget).
    objects: Mutex<()>,
    /// Writer leases: object → (client session, expiry).
    leases: Mutex<HashMap<Uuid, (u64, Instant)>>,
    /// Per object, how many times its lease went to a new writer (kept
    /// in its record as `lease_epoch`, so that epochs only grow across
    /// restarts: the OSTs fence writers by them): a renewal names the
    /// epoch it was granted in, and is refused once another writer took
    /// the lease since (even if it gave it back).
    epochs: Mutex<HashMap<Uuid, u64>>,
    started: Instant,
    /// Objects created since the start: nobody held their lease before.
    born: Mutex<std::collections::HashSet<Uuid>>,
}

impl Mdt {
    /// Opens (creating when missing) the records in `copies`.
    pub fn open(copies: Vec<PathBuf>, heartbeat_timeout: Duration) -> Result<Self> {
        for copy in &copies {
            for dir in [copy.join(WORK_DIR), copy.join(OBJECTS_DIR)] {
                fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
            }
        }
        let id = match control::read(&copies, ID_FILE, |_| Ok(()))?.best {
            Some((_, record)) => record.get("id")?,
            None => {
                let id = Uuid::now_v7();
                let mut record = Record::new();
                record.set("id", id);
                control::write(&copies, ID_FILE, 1, &record)?;
                id
            }
        };
        let (version, members) = match control::read(&copies, MAP_FILE, |_| Ok(()))?.best {
            Some((version, record)) => {
                let map = ClusterMap::from_record(&record)?;
                let members = map
                    .osts
                    .into_iter()
                    .map(|entry| Member {
                        entry,
                        last_seen: None,
                    })
                    .collect();
                (version, members)
            }
            None => (0, Vec::new()),
        };
        Ok(Self {
            copies,
            id,
            heartbeat_timeout,
            map: Mutex::new(MapState { version, members }),
            objects: Mutex::new(()),
            leases: Mutex::new(HashMap::new()),
            epochs: Mutex::new(HashMap::new()),
            started: Instant::now(),
            born: Mutex::new(std::collections::HashSet::new()),
        })
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Answers one request (after Hello).
    /// Answers one request (after Hello) of the client `session`.
    pub fn handle(
        &self,
        session: u64,
        op: Opcode,
        header: &Header,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        match op {
            Opcode::OstRegister => self.register(payload).map(|()| Vec::new()),
            Opcode::ClusterMap => Ok(self.cluster_map().to_record().encode()),
            Opcode::Place => self.place(session, header, payload),
            Opcode::Lookup => Ok(self.lookup(header.uuid())?.to_record().encode()),
            Opcode::Forget => self.forget(header.uuid()).map(|()| Vec::new()),
            Opcode::List => {
                let uuid = header.uuid();
                let after = (uuid != Uuid::from_bytes([0; 16])).then_some(uuid);
                let limit = header.length.clamp(1, wire::MAX_LIST) as usize;
                Ok(wire::encode_list(&self.list(after, limit)?))
            }
            Opcode::Update => Ok(self.update(header.uuid(), header.epoch, payload)?.encode()),
            Opcode::Lease => {
                let (record, epoch) =
                    self.lease(session, header.uuid(), header.offset, header.length)?;
                let mut reply = record.to_record();
                reply.set("lease_epoch", epoch);
                Ok(reply.encode())
            }
            Opcode::Hello => Err(Error::new(libc::EPROTO, "Hello was already done")),
            Opcode::Read
            | Opcode::Write
            | Opcode::Flush
            | Opcode::Discard
            | Opcode::WriteZeroes
            | Opcode::Create
            | Opcode::Stat
            | Opcode::Remove
            | Opcode::Resize
            | Opcode::Mark
            | Opcode::Extent
            | Opcode::Fence => Err(Error::new(
                libc::EOPNOTSUPP,
                format!("{op:?} is a rawstor-ost request; this is a rawstor-mdt"),
            )),
        }
    }

    /// The map with liveness as of now.
    pub fn cluster_map(&self) -> ClusterMap {
        let state = self.map.lock();
        let now = Instant::now();
        ClusterMap {
            version: state.version,
            osts: state
                .members
                .iter()
                .map(|m| OstEntry {
                    up: m
                        .last_seen
                        .is_some_and(|t| now.duration_since(t) < self.heartbeat_timeout),
                    ..m.entry.clone()
                })
                .collect(),
        }
    }

    /// A registration or heartbeat. The map file changes only when an OST
    /// is new or moved (address, failure domain).
    fn register(&self, payload: &[u8]) -> Result<()> {
        let entry = OstEntry::take(&Record::decode(payload)?, "")?;
        if entry.addr.is_empty() || entry.domain.is_empty() {
            return Err(Error::invalid(
                "an OST registers with an address and a failure domain",
            ));
        }
        let mut state = self.map.lock();
        let holder = state
            .members
            .iter()
            .find(|m| m.entry.id == entry.id && m.entry.addr != entry.addr)
            .filter(|m| {
                m.last_seen
                    .is_some_and(|t| t.elapsed() < self.heartbeat_timeout)
            })
            .map(|m| m.entry.addr.clone());
        if let Some(old) = holder {
            // An OST restarted on a new port, or a second OST with the
            // same store id (a copied store): the first is gone when
            // nothing answers at its address any more. Asked without the
            // lock, as the answer may take a moment.
            drop(state);
            if answers(&old) {
                return Err(Error::new(
                    libc::EEXIST,
                    format!(
                        "OST {} is up at {old}: another OST with the same id cannot join at {} (a copy of its store?); an OST restarted on a new address takes its place once nothing answers at {old}",
                        entry.id, entry.addr
                    ),
                ));
            }
            state = self.map.lock();
        }
        let changed = match state.members.iter_mut().find(|m| m.entry.id == entry.id) {
            Some(member) => {
                let moved = member.entry.addr != entry.addr || member.entry.domain != entry.domain;
                member.entry = entry;
                member.last_seen = Some(Instant::now());
                moved
            }
            None => {
                eprintln!(
                    "rawstor-mdt: OST {} joins at {} ({})",
                    entry.id, entry.addr, entry.domain
                );
                state.members.push(Member {
                    entry,
                    last_seen: Some(Instant::now()),
                });
                true
            }
        };
        if changed {
            let map = ClusterMap {
                version: state.version + 1,
                osts: state.members.iter().map(|m| m.entry.clone()).collect(),
            };
            control::write(&self.copies, MAP_FILE, map.version, &map.to_record())?;
            state.version = map.version;
        }
        Ok(())
    }

    /// Places a new object and records it. The same request resent (same
    /// session and request id, after a lost reply) gets the same record;
    /// any other request for an existing UUID gets EEXIST.
    fn place(&self, session: u64, header: &Header, payload: &[u8]) -> Result<Vec<u8>> {
        let uuid = header.uuid();
        let request = Record::decode(payload)?;
        let layout: Layout = request
            .get_str("layout")
            .ok_or_else(|| Error::invalid("Place without a layout"))?
            .parse()?;
        let creator = format!("{session:016x}.{:016x}", header.request_id);
        let _serial = self.objects.lock();
        let rel = object_file(uuid);
        if let Some((_, existing)) = control::read(&self.copies, &rel, |_| Ok(()))?.best {
            if session != 0 && existing.get_str("creator") == Some(creator.as_str()) {
                let mut record = ObjectRecord::from_record(&existing)?;
                self.refresh_addresses(&mut record);
                return Ok(record_with_creator(&record, &creator).encode());
            }
            return Err(Error::new(
                libc::EEXIST,
                format!("object {uuid} already exists"),
            ));
        }
        let (piece_size, parent) = pieces_of(&request, header.length)?;
        // An object over pieces has no OSTs of its own: its pieces do.
        let placement = match piece_size {
            0 => mdt::place(&self.cluster_map(), layout, header.length, uuid)?,
            _ => Vec::new(),
        };
        let record = ObjectRecord {
            uuid,
            size: header.length,
            chunk_size: header.offset,
            layout,
            placement,
            stale: Vec::new(),
            dirty: Vec::new(),
            piece_size,
            parent,
        };
        let encoded = record_with_creator(&record, &creator);
        if let Err(err) = control::write(&self.copies, &rel, 1, &encoded) {
            // No half-written record: it would outlive the failed create.
            self.unlink_record(uuid);
            return Err(err);
        }
        self.born.lock().insert(uuid);
        Ok(encoded.encode())
    }

    /// An object's record, with each OST's current address.
    fn lookup(&self, uuid: Uuid) -> Result<ObjectRecord> {
        // Under the lock: reading rewrites damaged copies, which must not
        // bring back a record that a concurrent forget removed.
        let (_, record) = {
            let _serial = self.objects.lock();
            self.stored(uuid)?
        };
        let mut record = ObjectRecord::from_record(&record)?;
        self.refresh_addresses(&mut record);
        Ok(record)
    }

    /// One page of the objects, by UUID, after `after`: their records'
    /// sizes and chunk sizes (an ec object's size is its data's).
    fn list(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<ListEntry>> {
        let mut uuids = BTreeSet::new();
        let mut readable = false;
        for copy in &self.copies {
            let Ok(dir) = fs::read_dir(copy.join(OBJECTS_DIR)) else {
                continue;
            };
            readable = true;
            // Names that are not UUIDs are replacements in progress.
            uuids.extend(
                dir.flatten()
                    .filter_map(|e| rawstor::uuid::parse(e.file_name().to_str()?).ok())
                    .filter(|&u| after.is_none_or(|a| u > a)),
            );
        }
        if !readable {
            return Err(Error::new(
                libc::EIO,
                "no copy of the MDT's object directory can be read",
            ));
        }
        let mut entries = Vec::new();
        for uuid in uuids {
            if entries.len() == limit {
                break;
            }
            match self.lookup(uuid) {
                // Pieces are listed through their object.
                Ok(record) if record.parent.is_some() => {}
                Ok(record) => entries.push(ListEntry {
                    uuid,
                    size: record.size,
                    chunk_size: record.chunk_size,
                }),
                // Removed meanwhile.
                Err(err) if err.errno() == libc::ENOENT => {}
                Err(err) => return Err(err),
            }
        }
        Ok(entries)
    }

    /// Each OST's address as the map has it now (an OST that restarted
    /// elsewhere keeps its id).
    fn refresh_addresses(&self, record: &mut ObjectRecord) {
        let state = self.map.lock();
        for placed in &mut record.placement {
            if let Some(member) = state.members.iter().find(|m| m.entry.id == placed.ost) {
                placed.addr.clone_from(&member.entry.addr);
            }
        }
    }

    /// Applies a change to an object's record and returns the new one.
    /// Changes an object's record. A change from a writer names its lease
    /// `epoch` (0: not a writer's), and is refused once another writer
    /// has taken the lease.
    fn update(&self, uuid: Uuid, epoch: u64, payload: &[u8]) -> Result<Record> {
        let change = Record::decode(payload)?;
        // A bad number here is the client's mistake, not a corrupt record.
        let numbers = |key: &str| {
            mdt::parse_numbers::<u64>(change.get_str(key).unwrap_or(""))
                .map_err(|e| Error::invalid(format!("bad Update {key}: {}", e.context())))
        };
        let _serial = self.objects.lock();
        let (version, mut stored) = self.stored(uuid)?;
        let granted = lease_epoch(&stored)?;
        if epoch != 0 && epoch != granted {
            return Err(Error::new(
                libc::EBUSY,
                format!(
                    "object {uuid}: another writer took the lease since (its epoch {granted}, this writer's {epoch})"
                ),
            ));
        }
        let mut record = ObjectRecord::from_record(&stored)?;
        let width = record.placement.len();
        let shard = |i: u64| -> Result<usize> {
            usize::try_from(i)
                .ok()
                .filter(|&i| i < width)
                .ok_or_else(|| Error::invalid(format!("object {uuid} has no shard {i}")))
        };
        for i in numbers("stale_add")? {
            let i = shard(i)?;
            if !record.stale.contains(&i) {
                eprintln!("rawstor-mdt: object {uuid}: shard {i} is stale");
                record.stale.push(i);
            }
        }
        for i in numbers("repaired")? {
            let i = shard(i)?;
            record.stale.retain(|&s| s != i);
        }
        if let Some(i) = change.get_str("replace") {
            let i = shard(
                i.parse()
                    .map_err(|_| Error::invalid("bad shard to replace"))?,
            )?;
            let replacement = mdt::replacement(&self.cluster_map(), &record, i)?;
            eprintln!(
                "rawstor-mdt: object {uuid}: shard {i} moves from OST {} to OST {}",
                record.placement[i].ost, replacement.ost
            );
            record.placement[i] = replacement;
            if !record.stale.contains(&i) {
                record.stale.push(i);
            }
        }
        record.dirty.extend(numbers("dirty_add")?);
        let clear = numbers("dirty_clear")?;
        record.dirty.retain(|r| !clear.contains(r));
        record.dirty.sort_unstable();
        record.dirty.dedup();
        record.stale.sort_unstable();
        if change.get_str("size").is_some() {
            record.size = change.get("size")?;
        }
        stored = with_kept_fields(&record, &stored);
        control::write(&self.copies, &object_file(uuid), version + 1, &stored)?;
        self.refresh_addresses(&mut record);
        Ok(record.to_record())
    }

    /// Takes, renews, breaks or gives back the writer lease of an object
    /// for the client `session` (a renewal names the `epoch` it holds);
    /// returns the object's record and the lease's epoch.
    /// Whether `session` may take the lease of `uuid` that `holder` has
    /// (if anyone): another holder's lease only with `LEASE_BREAK`; a
    /// free one, in the first lease period after a restart, only by a
    /// renewal or for an object created since (leases held before the
    /// restart are being renewed).
    fn may_take(
        &self,
        uuid: Uuid,
        session: u64,
        holder: Option<u64>,
        flags: u64,
        now: Instant,
    ) -> Result<()> {
        match holder {
            Some(other) if other != session => {
                if flags & mdt::LEASE_BREAK == 0 {
                    return Err(Error::new(
                        libc::EBUSY,
                        format!(
                            "object {uuid} has a writer (client {other:016x}); a second writer must break its lease"
                        ),
                    ));
                }
                eprintln!(
                    "rawstor-mdt: object {uuid}: client {session:016x} breaks the lease of client {other:016x}"
                );
            }
            Some(_) => {}
            None => {
                let ttl = Duration::from_millis(mdt::LEASE_TTL_MS);
                let up = now.duration_since(self.started);
                let new_object = self.born.lock().contains(&uuid);
                if up < ttl && flags & mdt::LEASE_RENEW == 0 && !new_object {
                    return Err(Error::new(
                        libc::EAGAIN,
                        format!(
                            "rawstor-mdt restarted {} ms ago: leases held before it are being renewed; new writers may start in {} ms",
                            up.as_millis(),
                            (ttl - up).as_millis()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn lease(
        &self,
        session: u64,
        uuid: Uuid,
        flags: u64,
        epoch: u64,
    ) -> Result<(ObjectRecord, u64)> {
        let record = self.lookup(uuid)?;
        let now = Instant::now();
        let ttl = Duration::from_millis(mdt::LEASE_TTL_MS);
        let mut leases = self.leases.lock();
        let holder = leases
            .get(&uuid)
            .filter(|(_, expires)| *expires > now)
            .map(|(s, _)| *s);
        let mut epochs = self.epochs.lock();
        let current = match epochs.get(&uuid) {
            Some(&epoch) => Some(epoch),
            None => Some(self.granted_epoch(uuid)?).filter(|&e| e > 0),
        };
        if flags & mdt::LEASE_RELEASE != 0 {
            if holder == Some(session) {
                leases.remove(&uuid);
            }
            return Ok((record, current.unwrap_or(0)));
        }
        if flags & mdt::LEASE_RENEW != 0 && current.is_some_and(|c| c != epoch) {
            return Err(Error::new(
                libc::EBUSY,
                format!("object {uuid}: another writer took the lease since"),
            ));
        }
        self.may_take(uuid, session, holder, flags, now)?;
        let epoch = match (holder, current) {
            (Some(h), Some(c)) if h == session => c,
            // A renewal keeps its epoch (any other was refused above),
            // after a restart too.
            (_, Some(c)) if flags & mdt::LEASE_RENEW != 0 => c,
            // A record from before epochs were kept: the MDT adopts the
            // renewing writer's.
            (_, None) if flags & mdt::LEASE_RENEW != 0 => epoch,
            (_, c) => {
                let next = c.unwrap_or(0) + 1;
                self.record_epoch(uuid, next)?;
                next
            }
        };
        epochs.insert(uuid, epoch);
        leases.insert(uuid, (session, now + ttl));
        Ok((record, epoch))
    }

    /// The lease epoch stored in an object's record.
    fn granted_epoch(&self, uuid: Uuid) -> Result<u64> {
        let _serial = self.objects.lock();
        lease_epoch(&self.stored(uuid)?.1)
    }

    /// Stores a newly granted lease epoch in the object's record, before
    /// the grant is answered.
    fn record_epoch(&self, uuid: Uuid, epoch: u64) -> Result<()> {
        let _serial = self.objects.lock();
        let (version, mut stored) = self.stored(uuid)?;
        stored.set("lease_epoch", epoch);
        control::write(&self.copies, &object_file(uuid), version + 1, &stored)
    }

    /// An object's record as stored, and its version (under `objects`).
    fn stored(&self, uuid: Uuid) -> Result<(u64, Record)> {
        control::read(&self.copies, &object_file(uuid), |_| Ok(()))?
            .best
            .ok_or_else(|| Error::new(libc::ENOENT, format!("object {uuid} does not exist")))
    }

    fn forget(&self, uuid: Uuid) -> Result<()> {
        self.leases.lock().remove(&uuid);
        self.epochs.lock().remove(&uuid);
        let _serial = self.objects.lock();
        if !self.unlink_record(uuid) {
            return Err(Error::new(
                libc::ENOENT,
                format!("object {uuid} does not exist"),
            ));
        }
        Ok(())
    }

    /// Removes every copy of an object's record, syncing each directory;
    /// whether any copy was there.
    fn unlink_record(&self, uuid: Uuid) -> bool {
        let rel = object_file(uuid);
        let mut found = false;
        for copy in &self.copies {
            if fs::remove_file(copy.join(&rel)).is_ok() {
                found = true;
                let _ = fs::File::open(copy.join(OBJECTS_DIR)).and_then(|d| d.sync_all());
            }
        }
        found
    }
}

fn object_file(uuid: Uuid) -> String {
    format!("{OBJECTS_DIR}/{uuid}")
}

/// An object's record with who created it (session and request id), so a
/// resent Place is told apart from a second create of the same UUID.
/// The lease epoch an object's stored record was last granted in (0:
/// never, or before epochs were kept).
fn lease_epoch(stored: &Record) -> Result<u64> {
    match stored.get_str("lease_epoch") {
        Some(_) => stored.get("lease_epoch"),
        None => Ok(0),
    }
}

/// `record` to store in place of `stored`, keeping what only the stored
/// copy has (its creator, its lease epoch).
fn with_kept_fields(record: &ObjectRecord, stored: &Record) -> Record {
    let mut encoded = record.to_record();
    for key in ["creator", "lease_epoch"] {
        if let Some(value) = stored.get_str(key) {
            encoded.set(key, value);
        }
    }
    encoded
}

/// A `Place` request's piece size (0: none) and parent, checked.
fn pieces_of(request: &Record, size: u64) -> Result<(u64, Option<Uuid>)> {
    let piece_size: u64 = match request.get_str("piece_size") {
        Some(_) => request.get("piece_size")?,
        None => 0,
    };
    if piece_size % mdt::PIECE_UNIT != 0 {
        return Err(Error::invalid(format!(
            "piece size {piece_size}: a whole number of MiB"
        )));
    }
    if piece_size > 0 && size.div_ceil(piece_size) > MAX_PIECES {
        return Err(Error::invalid(format!(
            "{} pieces of {piece_size} bytes: at most {MAX_PIECES} per object (use larger pieces)",
            size.div_ceil(piece_size)
        )));
    }
    let parent = match request.get_str("parent") {
        Some(_) => Some(request.get("parent")?),
        None => None,
    };
    Ok((piece_size, parent))
}

fn record_with_creator(record: &ObjectRecord, creator: &str) -> Record {
    let mut encoded = record.to_record();
    encoded.set("creator", creator);
    encoded
}

/// How long the MDT waits for an OST's old address to answer, when an OST
/// with the same id registers from elsewhere.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Whether something accepts connections at `addr`.
fn answers(addr: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut all| all.next())
        .is_some_and(|at| TcpStream::connect_timeout(&at, PROBE_TIMEOUT).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MDT in a fresh directory with `osts` OSTs registered.
    fn mdt_with(tag: &str, osts: usize) -> (Mdt, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("rawstor-mdt-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mdt = Mdt::open(vec![dir.clone()], Duration::from_secs(3)).unwrap();
        for i in 0..osts {
            let mut record = Record::new();
            OstEntry {
                id: Uuid::now_v7(),
                addr: format!("127.0.0.1:{}", 7000 + i),
                domain: format!("d{i}"),
                capacity_bytes: 1 << 40,
                used_bytes: 0,
                up: true,
            }
            .put(&mut record, "");
            mdt.register(&record.encode()).unwrap();
        }
        (mdt, dir)
    }

    fn place(mdt: &Mdt, layout: &str) -> Uuid {
        let uuid = Uuid::now_v7();
        let header = Header::request(Opcode::Place, 1, uuid, 1 << 20, 16 << 20);
        let mut request = Record::new();
        request.set("layout", layout);
        mdt.place(1, &header, &request.encode()).unwrap();
        uuid
    }

    fn change(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut record = Record::new();
        for (key, value) in pairs {
            record.set(key, *value);
        }
        record.encode()
    }

    fn registration(id: Uuid, addr: &str) -> Vec<u8> {
        let mut record = Record::new();
        OstEntry {
            id,
            addr: addr.to_string(),
            domain: "d0".to_string(),
            capacity_bytes: 1 << 40,
            used_bytes: 0,
            up: true,
        }
        .put(&mut record, "");
        record.encode()
    }

    #[test]
    fn a_second_ost_with_a_live_ones_id_is_refused_and_a_restarted_one_moves() {
        let (mdt, dir) = mdt_with("same-id", 0);
        let id = Uuid::now_v7();
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first_addr = first.local_addr().unwrap().to_string();
        let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let second_addr = second.local_addr().unwrap().to_string();
        mdt.register(&registration(id, &first_addr)).unwrap();
        // The first still answers: the second is refused, the map keeps
        // the first, and the first's heartbeats go on.
        let err = mdt.register(&registration(id, &second_addr)).unwrap_err();
        assert_eq!(err.errno(), libc::EEXIST, "{err}");
        assert!(err.to_string().contains(&first_addr), "{err}");
        mdt.register(&registration(id, &first_addr)).unwrap();
        assert_eq!(mdt.cluster_map().osts[0].addr, first_addr);
        // The first is gone (a restart on a new port): the entry moves.
        drop(first);
        mdt.register(&registration(id, &second_addr)).unwrap();
        let map = mdt.cluster_map();
        assert_eq!(
            (map.osts.len(), map.osts[0].addr.as_str()),
            (1, second_addr.as_str())
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn update_refuses_shards_the_object_does_not_have_and_changes_nothing() {
        let (mdt, dir) = mdt_with("bad-shard", 3);
        let uuid = place(&mdt, "replicas:3");
        for key in ["stale_add", "repaired", "replace"] {
            let err = mdt.update(uuid, 0, &change(&[(key, "3")])).unwrap_err();
            assert_eq!(err.errno(), libc::EINVAL, "{key}");
            assert!(err.to_string().contains("has no shard 3"), "{err}");
        }
        let err = mdt
            .update(uuid, 0, &change(&[("stale_add", "x")]))
            .unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        // A change with one bad part is refused whole.
        let err = mdt
            .update(uuid, 0, &change(&[("dirty_add", "5"), ("stale_add", "9")]))
            .unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        let record = mdt.lookup(uuid).unwrap();
        assert!(record.stale.is_empty() && record.dirty.is_empty());
        let err = mdt
            .update(Uuid::now_v7(), 0, &change(&[("stale_add", "0")]))
            .unwrap_err();
        assert_eq!(err.errno(), libc::ENOENT);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn update_marks_and_clears_stale_shards_and_write_intent() {
        let (mdt, dir) = mdt_with("marks", 3);
        let uuid = place(&mdt, "replicas:3");
        mdt.update(
            uuid,
            0,
            &change(&[("stale_add", "2,0"), ("dirty_add", "7,3,7")]),
        )
        .unwrap();
        let record = mdt.lookup(uuid).unwrap();
        assert_eq!(record.stale, vec![0, 2]);
        assert_eq!(record.dirty, vec![3, 7]);
        mdt.update(uuid, 0, &change(&[("repaired", "0"), ("dirty_clear", "3")]))
            .unwrap();
        let record = mdt.lookup(uuid).unwrap();
        assert_eq!(record.stale, vec![2]);
        assert_eq!(record.dirty, vec![7]);
        // No spare OST: a copy cannot move, and the record stays as it was.
        let err = mdt
            .update(uuid, 0, &change(&[("replace", "1")]))
            .unwrap_err();
        assert_ne!(err.errno(), 0);
        assert_eq!(mdt.lookup(uuid).unwrap().placement, record.placement);
        let _ = fs::remove_dir_all(dir);
    }

    /// Lease epochs are kept in the record: they only grow, across a
    /// restart too (the OSTs fence writers by them), and an older
    /// writer's renewals and record changes are refused.
    #[test]
    fn lease_epochs_outlive_a_restart_and_older_writers_are_refused() {
        let (mdt, dir) = mdt_with("epochs", 3);
        let uuid = place(&mdt, "replicas:3");
        let (_, first) = mdt.lease(1, uuid, 0, 0).unwrap();
        let (_, second) = mdt.lease(2, uuid, mdt::LEASE_BREAK, 0).unwrap();
        assert!(second > first, "{first} then {second}");
        mdt.update(uuid, second, &change(&[("dirty_add", "1")]))
            .unwrap();
        let err = mdt
            .update(uuid, first, &change(&[("stale_add", "0")]))
            .unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY);
        assert!(
            err.to_string()
                .contains("another writer took the lease since"),
            "{err}"
        );
        assert!(mdt.lookup(uuid).unwrap().stale.is_empty());
        // The record's other changes keep the epoch.
        mdt.update(uuid, 0, &change(&[("dirty_clear", "1")]))
            .unwrap();
        drop(mdt);
        let mdt = Mdt::open(vec![dir.clone()], Duration::from_secs(3)).unwrap();
        // The old writer renewing first after the restart is refused.
        let err = mdt.lease(1, uuid, mdt::LEASE_RENEW, first).unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY);
        let (_, renewed) = mdt.lease(2, uuid, mdt::LEASE_RENEW, second).unwrap();
        assert_eq!(renewed, second);
        let err = mdt
            .update(uuid, first, &change(&[("stale_add", "0")]))
            .unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY);
        let (_, third) = mdt.lease(3, uuid, mdt::LEASE_BREAK, 0).unwrap();
        assert!(third > second, "{second} then {third}");
        let _ = fs::remove_dir_all(dir);
    }
}
