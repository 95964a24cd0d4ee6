//! The client: an [`Instance`] opens [`Object`]s at locations and makes
//! [`Queue`]s for asynchronous I/O.
//!
//! # Examples
//!
//! ```
//! use rawstor::{Instance, Options, Location};
//! let dir = std::env::temp_dir().join(format!("rawstor-doc-{}", std::process::id()));
//! let instance = Instance::new(Options::default()).unwrap();
//! let location: Location = format!("file://{}", dir.display()).parse().unwrap();
//! let target = instance.create(&location, &rawstor::CreateSpec::new(1 << 20)).unwrap();
//! let object = instance.open(&target).unwrap();
//! object.write_at(b"hello", 4096).unwrap();
//! let mut buf = [0u8; 5];
//! object.read_at(&mut buf, 4096).unwrap();
//! assert_eq!(&buf, b"hello");
//! object.close().unwrap();
//! instance.remove(&target).unwrap();
//! # std::fs::remove_dir_all(dir).unwrap();
//! ```

mod pieces;
mod repair;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use crate::backend::{Backend, DynBackend};
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::local::Local;
use crate::mdt::{self, ClusterMap, Layout, ObjectRecord};
use crate::net::Connection;
use crate::object::{Object, ObjectInner};
use crate::pool::{Pool, Workers};
use crate::queue::Queue;
use crate::redundancy::erasure::{Codec, Erasure};
use crate::redundancy::lease::{Keeper, MdtJournal};
use crate::redundancy::mirror::Recorded;
pub use crate::redundancy::mirror::ScrubReport;
use crate::redundancy::mirror::{Leg, Mirror};
use crate::remote::{self, RemoteObject};
use crate::store::{BLOCK_SIZE, DEFAULT_CHUNK_SIZE, ObjectInfo, Store};
use crate::uri::{Endpoint, Location, Target};
use crate::uuid::Uuid;

/// Instance options; zero fields take their defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Default depth of new queues.
    pub queue_depth: u32,
    /// Deadline of one network request, in milliseconds.
    pub timeout_ms: u32,
    /// Attempts of a failed network request before it fails.
    pub retries: u32,
    /// Objects fetched per page by `list`.
    pub list_limit: u32,
    /// Longest wait, in milliseconds, for a copy or shard that has not
    /// answered a change while the others have (or for a slow read when
    /// another copy can answer): past it the copy is recorded stale and
    /// the change completes, or the read asks another copy. The wait
    /// itself follows recent latency (see `straggler.rs`).
    pub straggler_ms: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue_depth: 256,
            timeout_ms: 5000,
            retries: 3,
            list_limit: 1000,
            straggler_ms: 600,
        }
    }
}

impl Options {
    /// Defaults, overridden by `RAWSTOR_OPTS_*` environment variables
    /// (upstream's names: `RAWSTOR_OPTS_IO_ATTEMPTS`, ...).
    pub fn from_env() -> Result<Self> {
        let mut options = Self::default();
        let vars = [
            ("RAWSTOR_OPTS_QUEUE_DEPTH", &mut options.queue_depth),
            ("RAWSTOR_OPTS_TIMEOUT_MS", &mut options.timeout_ms),
            ("RAWSTOR_OPTS_IO_ATTEMPTS", &mut options.retries),
            ("RAWSTOR_OPTS_LIST_LIMIT", &mut options.list_limit),
            ("RAWSTOR_OPTS_STRAGGLER_MS", &mut options.straggler_ms),
        ];
        for (name, field) in vars {
            if let Ok(text) = std::env::var(name) {
                *field = text
                    .parse()
                    .map_err(|_| Error::invalid(format!("{name}='{text}' is not a number")))?;
            }
        }
        Ok(options)
    }

    /// Replaces zero fields with defaults and checks limits.
    pub fn validated(mut self) -> Result<Self> {
        let defaults = Self::default();
        for (field, default) in [
            (&mut self.queue_depth, defaults.queue_depth),
            (&mut self.timeout_ms, defaults.timeout_ms),
            (&mut self.retries, defaults.retries),
            (&mut self.list_limit, defaults.list_limit),
            (&mut self.straggler_ms, defaults.straggler_ms),
        ] {
            if *field == 0 {
                *field = default;
            }
        }
        if self.queue_depth > crate::queue::opcode::RAWSTOR_QUEUE_DEPTH_MAX {
            return Err(Error::invalid(format!(
                "queue depth {} is over the limit {}",
                self.queue_depth,
                crate::queue::opcode::RAWSTOR_QUEUE_DEPTH_MAX
            )));
        }
        Ok(self)
    }
}

/// What to create.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    /// Size in bytes (a multiple of 4 KiB).
    pub size: u64,
    /// UUID to use; a new v7 UUID when `None`.
    pub uuid: Option<Uuid>,
    /// Chunk size; the default (64 MiB) when `None`.
    pub chunk_size: Option<u64>,
    /// Redundancy of an object created on mdt:// ([`mdt::DEFAULT_LAYOUT`]
    /// when `None`); other locations choose theirs by their form (a comma
    /// list mirrors).
    pub layout: Option<Layout>,
    /// On mdt://: spread the object over pieces of this size, each placed
    /// on OSTs of its own (a whole number of MiB); `None`: one piece.
    pub piece_size: Option<u64>,
}

impl CreateSpec {
    /// An object of `size` bytes with defaults for the rest.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            uuid: None,
            chunk_size: None,
            layout: None,
            piece_size: None,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) options: Options,
    stores: Mutex<HashMap<PathBuf, Weak<Store>>>,
    /// Objects the user has open (until their [`Object`] is dropped), by
    /// UUID: removing one of them is refused.
    pub(crate) open_objects: Mutex<HashMap<Uuid, usize>>,
    /// One connection per `rawstor-ost` address, shared by all objects.
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// Identifies this instance to servers across reconnections.
    session: u64,
    pub(crate) event_loop: EventLoop,
    /// Threads for erasure-coded operations, started with the first.
    pool: OnceLock<Arc<Pool>>,
    /// Threads that record missed shards in the MDT (see [`Workers`]).
    settle: OnceLock<Arc<Pool>>,
    /// Renews the writer leases of mdt:// objects.
    keeper: Arc<Keeper>,
    /// The lease and write intent of each mdt:// object open here: one
    /// writer per object and instance, whatever the handles.
    journals: Mutex<HashMap<Uuid, Weak<MdtJournal>>>,
    /// Whether writers break other writers' leases.
    break_lease: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.keeper.stop();
    }
}

impl Shared {
    fn pool(&self) -> Result<Arc<Pool>> {
        if let Some(pool) = self.pool.get() {
            return Ok(Arc::clone(pool));
        }
        let pool = Arc::new(Pool::new(POOL_THREADS, "rawstor-ec", POOL_QUEUE)?);
        Ok(Arc::clone(self.pool.get_or_init(|| pool)))
    }

    /// The worker threads and the settling threads (made on first use).
    fn workers(&self) -> Result<Workers> {
        let settle = match self.settle.get() {
            Some(settle) => Arc::clone(settle),
            None => {
                let settle = Arc::new(Pool::new(SETTLE_THREADS, "rawstor-settle", POOL_QUEUE)?);
                Arc::clone(self.settle.get_or_init(|| settle))
            }
        };
        Ok(Workers {
            pool: self.pool()?,
            settle,
        })
    }
}

/// Worker threads for erasure-coded operations: each blocks on the
/// reads or writes of one operation, so this many run at once. Eight, not
/// more: with 32, 1 MiB ec:4+2 writes at QD16 ran 8-15% slower on two
/// cores (threads switching, each with cold caches), and 4 KiB reads at
/// QD16 gained nothing (BENCHMARKS.md).
const POOL_THREADS: usize = 8;
/// Jobs waiting for the threads of [`POOL_THREADS`] (or of
/// [`SETTLE_THREADS`]) at most: an operation's at most two (its encode or
/// rebuild, a streaming writer's marking ahead), for this many operations
/// at once. Beyond it a submitting thread waits; the loop thread's
/// hand-offs fail with `EAGAIN` (see [`Pool::run_or`]).
const POOL_QUEUE: usize = 4096;

/// Threads recording missed shards in the MDT at once: a write in flight
/// per queue slot may miss a shard at the moment it fails; the first
/// marks it stale here, and the others queue behind it for the MDT.
const SETTLE_THREADS: usize = 2;

/// How [`Instance::open_backend`] opens a single copy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Single {
    /// As itself.
    Itself,
    /// As a mirror of one.
    AsMirror,
}

/// Where a location's objects live.
enum Place {
    File(Arc<Store>),
    Ost(Arc<Connection>),
}

/// A library instance: options, an event loop thread, open stores.
pub struct Instance {
    shared: Arc<Shared>,
}

impl Instance {
    /// Starts an instance.
    pub fn new(options: Options) -> Result<Self> {
        crate::log::to_stderr();
        Ok(Self {
            shared: Arc::new(Shared {
                options: options.validated()?,
                stores: Mutex::new(HashMap::new()),
                connections: Mutex::new(HashMap::new()),
                open_objects: Mutex::new(HashMap::new()),
                session: crate::sys::random_u64() | 1,
                event_loop: EventLoop::start()?,
                pool: OnceLock::new(),
                settle: OnceLock::new(),
                keeper: Keeper::new(),
                journals: Mutex::new(HashMap::new()),
                break_lease: AtomicBool::new(
                    std::env::var("RAWSTOR_OPTS_BREAK_LEASE").is_ok_and(|v| v == "1"),
                ),
            }),
        })
    }

    /// Whether writers of mdt:// objects opened from now on take over the
    /// lease of another writer (`RAWSTOR_OPTS_BREAK_LEASE=1` sets it too)
    /// instead of failing with `EBUSY`.
    pub fn set_break_lease(&self, yes: bool) {
        self.shared.break_lease.store(yes, Ordering::Relaxed);
    }

    /// The options in effect.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    fn place(&self, endpoint: &Endpoint, create: bool) -> Result<Place> {
        match endpoint {
            Endpoint::File(path) => self.store(path, create).map(Place::File),
            Endpoint::Ost(addr) => self.connection("ost", addr).map(Place::Ost),
            // Objects on mdt:// resolve to their OSTs before they get here.
            Endpoint::Mdt(_) => Err(Error::new(
                libc::EINVAL,
                format!("{endpoint}: an mdt:// element cannot be part of a list"),
            )),
        }
    }

    fn create_at(&self, endpoint: &Endpoint, uuid: Uuid, size: u64, chunk_size: u64) -> Result<()> {
        match self.place(endpoint, true)? {
            Place::File(store) => store.create_object(uuid, size, chunk_size).map(drop),
            Place::Ost(connection) => remote::create(&connection, uuid, size, chunk_size),
        }
    }

    fn remove_at(&self, endpoint: &Endpoint, uuid: Uuid) -> Result<()> {
        match self.place(endpoint, false)? {
            Place::File(store) => store.remove_object(uuid),
            Place::Ost(connection) => remote::remove(&connection, uuid),
        }
    }

    /// Opens one copy; `expected` is the OST id a rawstor-mdt placed it
    /// on, checked against the server that answers at its address. A
    /// local copy has its durability barriers run on the event loop when
    /// `barriers_on_loop` (an object the user opened), else by the caller.
    fn open_leg(
        &self,
        endpoint: &Endpoint,
        uuid: Uuid,
        expected: Option<Uuid>,
        barriers_on_loop: bool,
    ) -> Result<Leg> {
        Ok(match self.place(endpoint, false)? {
            Place::File(store) => {
                let barriers = barriers_on_loop.then(|| self.shared.event_loop.handle());
                Arc::new(Local::new(store.open_object(uuid)?, barriers))
            }
            Place::Ost(connection) => {
                if let Some(id) = expected.filter(|id| *id != connection.store_id()) {
                    return Err(Error::new(
                        libc::ESTALE,
                        format!(
                            "{}: this is OST {}, the record places the copy on OST {id}",
                            connection.name(),
                            connection.store_id()
                        ),
                    ));
                }
                Arc::new(RemoteObject::open(connection, uuid)?)
            }
        })
    }

    /// Opens every copy of a mirrored target. Copies are named (in stale
    /// marks and messages) by their element, or by their OST's id for
    /// objects placed by a rawstor-mdt: an OST may come back elsewhere.
    fn open_mirror(&self, resolved: &Resolved) -> Result<Arc<Mirror>> {
        let stale = resolved.record.as_ref().map_or(&[][..], |r| &r.stale[..]);
        let recorded = match &resolved.mdt {
            Some(mdt) => Some(Recorded::new(
                self.journal(mdt, resolved.target.uuid),
                self.shared.pool()?,
            )),
            None => None,
        };
        Mirror::new(
            resolved.target.uuid,
            self.open_legs(resolved),
            stale,
            recorded,
            std::time::Duration::from_millis(u64::from(self.shared.options.straggler_ms)),
        )
    }

    /// The lease and write intent of an mdt:// object, shared by the
    /// instance's handles of it.
    fn journal(&self, mdt: &Arc<Connection>, uuid: Uuid) -> Arc<MdtJournal> {
        let mut journals = self.shared.journals.lock();
        if let Some(journal) = journals.get(&uuid).and_then(Weak::upgrade) {
            return journal;
        }
        journals.retain(|_, j| j.strong_count() > 0);
        let journal = MdtJournal::new(
            Arc::clone(mdt),
            uuid,
            self.shared.break_lease.load(Ordering::Relaxed),
            Arc::clone(&self.shared.keeper),
        );
        journals.insert(uuid, Arc::downgrade(&journal));
        journal
    }

    /// Gives back the lease an operation of its own (repair, scrub) took,
    /// unless the user has the object open here.
    fn release_unless_open(&self, uuid: Uuid, backend: &dyn Backend) {
        if !self.shared.open_objects.lock().contains_key(&uuid) {
            backend.release();
        }
    }

    /// Opens every copy or shard of a resolved target, named as in stale
    /// marks and messages.
    fn open_legs(&self, resolved: &Resolved) -> Vec<(String, Result<Leg>)> {
        let target = &resolved.target;
        target
            .location
            .endpoints()
            .iter()
            .zip(&resolved.names)
            .zip(&resolved.ids)
            .map(|((e, name), id)| (name.clone(), self.open_leg(e, target.uuid, *id, false)))
            .collect()
    }

    /// Opens the shards of an erasure-coded object.
    fn open_erasure(&self, resolved: &Resolved) -> Result<Arc<Erasure>> {
        let (Some(record), Some(mdt)) = (&resolved.record, &resolved.mdt) else {
            return Err(Error::invalid("erasure-coded objects live on mdt://"));
        };
        let Layout::Erasure { data, parity } = record.layout else {
            return Err(Error::invalid("not an erasure-coded object"));
        };
        let shards = self.open_legs(resolved);
        let journal = self.journal(mdt, record.uuid);
        Erasure::new(
            record.uuid,
            Codec::new(data, parity)?,
            record.size,
            record.chunk_size,
            shards,
            &record.stale,
            &record.dirty,
            journal,
            self.shared.workers()?,
            std::time::Duration::from_millis(u64::from(self.shared.options.straggler_ms)),
        )
    }

    fn store(&self, path: &PathBuf, create: bool) -> Result<Arc<Store>> {
        let mut stores = self.shared.stores.lock();
        if let Some(store) = stores.get(path).and_then(Weak::upgrade) {
            return Ok(store);
        }
        let store = Store::open(vec![path.clone()], create)?;
        stores.retain(|_, weak| weak.strong_count() > 0);
        stores.insert(path.clone(), Arc::downgrade(&store));
        Ok(store)
    }

    /// The instance's connection to a server (`scheme` ost or mdt).
    fn connection(&self, scheme: &str, addr: &str) -> Result<Arc<Connection>> {
        let mut connections = self.shared.connections.lock();
        if let Some(connection) = connections.get(addr) {
            return Ok(Arc::clone(connection));
        }
        let options = &self.shared.options;
        let connection = Connection::connect(
            scheme,
            addr,
            std::time::Duration::from_millis(u64::from(options.timeout_ms)),
            options.retries,
            self.shared.session,
            self.shared.event_loop.handle(),
            self.shared.event_loop.token(),
        )?;
        connections.insert(addr.to_string(), Arc::clone(&connection));
        Ok(connection)
    }

    /// The rawstor-mdt behind a location that is one `mdt://` element.
    fn mdt(&self, location: &Location) -> Result<Option<Arc<Connection>>> {
        match location.endpoints() {
            [Endpoint::Mdt(addr)] => Ok(Some(self.connection("mdt", addr)?)),
            _ => Ok(None),
        }
    }

    /// The target whose elements hold the data: an mdt:// target's OSTs
    /// (from its record), any other target itself.
    fn resolve(&self, target: &Target) -> Result<Resolved> {
        match self.mdt(&target.location)? {
            Some(mdt) => {
                let record = remote::mdt_lookup(&mdt, target.uuid)?;
                if record.piece_size > 0 {
                    // Its pieces resolve when they are opened.
                    return Ok(Resolved {
                        target: target.clone(),
                        names: Vec::new(),
                        ids: Vec::new(),
                        record: Some(record),
                        mdt: Some(mdt),
                    });
                }
                Ok(Resolved {
                    target: backing_target(&record)?,
                    mdt: Some(mdt),
                    names: record
                        .placement
                        .iter()
                        .map(|p| format!("ost-id:{}", p.ost))
                        .collect(),
                    ids: record.placement.iter().map(|p| Some(p.ost)).collect(),
                    record: Some(record),
                })
            }
            None => Ok(Resolved {
                target: target.clone(),
                names: target
                    .location
                    .endpoints()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                ids: vec![None; target.location.endpoints().len()],
                record: None,
                mdt: None,
            }),
        }
    }

    /// How an object is kept redundant: its record's layout on mdt://, and
    /// elsewhere `replicas:N` for a list of N locations (1 for one).
    pub fn layout(&self, target: &Target) -> Result<Layout> {
        if self.mdt(&target.location)?.is_some() {
            return Ok(self.object_record(target)?.layout);
        }
        self.stat(target)?;
        Ok(Layout::Replicas(target.location.endpoints().len()))
    }

    /// The record of an object on mdt:// (layout and placement).
    pub fn object_record(&self, target: &Target) -> Result<ObjectRecord> {
        match self.mdt(&target.location)? {
            Some(mdt) => remote::mdt_lookup(&mdt, target.uuid),
            None => Err(Error::invalid(format!(
                "{}: only mdt:// objects have a record",
                target.location
            ))),
        }
    }

    /// The cluster map of the rawstor-mdt at `location`.
    pub fn cluster_map(&self, location: &Location) -> Result<ClusterMap> {
        match self.mdt(location)? {
            Some(mdt) => remote::mdt_cluster_map(&mdt),
            None => Err(Error::invalid(format!(
                "{location}: a cluster map comes from an mdt:// location"
            ))),
        }
    }

    /// Creates an object at `location` and returns its target.
    pub fn create(&self, location: &Location, spec: &CreateSpec) -> Result<Target> {
        let uuid = spec.uuid.unwrap_or_else(Uuid::now_v7);
        let chunk_size = spec.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
        if let Some(mdt) = self.mdt(location)? {
            if let Some(piece_size) = spec.piece_size {
                return self.create_pieces(&mdt, location, uuid, spec, chunk_size, piece_size);
            }
            return self.create_placed(&mdt, location, uuid, spec, chunk_size, None);
        }
        if spec.piece_size.is_some() {
            return Err(Error::invalid(
                "a piece size needs an mdt:// location (the pieces are placed by the MDT)",
            ));
        }
        if let Some(layout) = &spec.layout {
            return Err(Error::invalid(format!(
                "layout {layout} needs an mdt:// location (a comma list of locations mirrors)"
            )));
        }
        let endpoints = location.endpoints();
        for (i, endpoint) in endpoints.iter().enumerate() {
            if let Err(err) = self.create_at(endpoint, uuid, spec.size, chunk_size) {
                // All copies or none: undo the ones made.
                for done in &endpoints[..i] {
                    let _ = self.remove_at(done, uuid);
                }
                return Err(if endpoints.len() > 1 {
                    Error::new(err.errno(), format!("{endpoint}: {err}"))
                } else {
                    err
                });
            }
        }
        Ok(location.target(uuid))
    }

    /// Creates an object through a rawstor-mdt: the MDT places and records
    /// it, then the copies are made on the OSTs it chose (all or none; the
    /// record goes too when they cannot all be made).
    fn create_placed(
        &self,
        mdt: &Connection,
        location: &Location,
        uuid: Uuid,
        spec: &CreateSpec,
        chunk_size: u64,
        parent: Option<Uuid>,
    ) -> Result<Target> {
        let layout = layout_to_create(spec)?;
        let placing = remote::Placing {
            piece_size: 0,
            parent,
        };
        let record = remote::mdt_place(mdt, uuid, spec.size, chunk_size, layout, placing)?;
        let backing = backing_target(&record)?;
        let copies = CreateSpec {
            size: match layout {
                Layout::Replicas(_) => spec.size,
                Layout::Erasure { data, .. } => {
                    crate::redundancy::erasure::shard_size(spec.size, data)
                }
            },
            uuid: Some(uuid),
            chunk_size: Some(chunk_size),
            layout: None,
            piece_size: None,
        };
        if let Err(err) = self.create(&backing.location, &copies) {
            let _ = remote::mdt_forget(mdt, uuid);
            return Err(err);
        }
        Ok(location.target(uuid))
    }

    /// Opens what holds a resolved object's bytes: the one place that
    /// chooses an object's kind. `Single::AsMirror` opens a single copy as
    /// a mirror of one (for scrub, which compares copies).
    fn open_backend(&self, resolved: &Resolved, single: Single) -> Result<DynBackend> {
        let erasure = resolved
            .record
            .as_ref()
            .is_some_and(|r| matches!(r.layout, Layout::Erasure { .. }));
        let pieced = resolved.record.as_ref().is_some_and(|r| r.piece_size > 0);
        let backend: DynBackend = match resolved.target.location.endpoints() {
            _ if pieced => self.open_pieces(resolved)?,
            _ if erasure => self.open_erasure(resolved)?,
            [one] if single == Single::Itself => {
                self.open_leg(one, resolved.target.uuid, resolved.ids[0], true)?
            }
            _ => self.open_mirror(resolved)?,
        };
        Ok(backend)
    }

    /// Opens an object.
    pub fn open(&self, target: &Target) -> Result<Object> {
        let resolved = self.resolve(target)?;
        let backend = self.open_backend(&resolved, Single::Itself)?;
        *self
            .shared
            .open_objects
            .lock()
            .entry(target.uuid)
            .or_default() += 1;
        Ok(Object {
            inner: Arc::new(ObjectInner {
                target: target.clone(),
                backend,
                instance: Arc::clone(&self.shared),
                pending: AtomicUsize::new(0),
            }),
        })
    }

    /// Removes an object (it must not be open in this instance).
    pub fn remove(&self, target: &Target) -> Result<()> {
        // Refused before any copy goes: an open mirror stays whole.
        if self.shared.open_objects.lock().contains_key(&target.uuid) {
            return Err(Error::new(
                libc::EBUSY,
                format!("object {} is open", target.uuid),
            ));
        }
        let Some(mdt) = self.mdt(&target.location)? else {
            return self.remove_copies(target);
        };
        // Copies first, then the record: a failure leaves it findable.
        let record = remote::mdt_lookup(&mdt, target.uuid)?;
        if record.piece_size > 0 {
            self.remove_pieces(&target.location, target.uuid, record.pieces())?;
            return forget(&mdt, target.uuid);
        }
        let backing = backing_target(&record)?;
        match self.remove_copies(&backing) {
            Err(err) if err.errno() != libc::ENOENT => return Err(err),
            _ => {}
        }
        forget(&mdt, target.uuid)
    }

    fn remove_copies(&self, target: &Target) -> Result<()> {
        let mut first_error = None;
        let mut removed = false;
        for endpoint in target.location.endpoints() {
            match self.remove_at(endpoint, target.uuid) {
                Ok(()) => removed = true,
                Err(err) if err.errno() == libc::ENOENT && first_error.is_some() => {}
                Err(err) => {
                    let errno = err.errno();
                    let err = if target.location.endpoints().len() > 1 {
                        Error::new(errno, format!("{endpoint}: {err}"))
                    } else {
                        err
                    };
                    first_error.get_or_insert(err);
                    if errno != libc::ENOENT {
                        break; // e.g. EBUSY: leave the other copies alone
                    }
                }
            }
        }
        match first_error {
            Some(err) if !(removed && err.errno() == libc::ENOENT) => Err(err),
            _ => Ok(()),
        }
    }

    /// Describes an object without opening it.
    pub fn stat(&self, target: &Target) -> Result<ObjectInfo> {
        let resolved = self.resolve(target)?;
        if let Some(record) = resolved
            .record
            .as_ref()
            .filter(|r| matches!(r.layout, Layout::Erasure { .. }) || r.piece_size > 0)
        {
            return Ok(ObjectInfo {
                uuid: target.uuid,
                size: record.size,
                chunk_size: record.chunk_size,
                block_size: BLOCK_SIZE,
            });
        }
        let [endpoint] = resolved.target.location.endpoints() else {
            let mut info = self.open_mirror(&resolved)?.info();
            info.uuid = target.uuid;
            return Ok(info);
        };
        match self.place(endpoint, false)? {
            Place::File(store) => store.stat_object(target.uuid),
            Place::Ost(connection) => {
                let stat = remote::stat(&connection, target.uuid)?;
                Ok(ObjectInfo {
                    uuid: target.uuid,
                    size: stat.size,
                    chunk_size: stat.chunk_size,
                    block_size: stat.block_size,
                })
            }
        }
    }

    /// One page of the objects at `location`, sorted by UUID, after
    /// `after`; at most `limit` (the instance's `list_limit` when 0).
    pub fn list(
        &self,
        location: &Location,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let limit = if limit == 0 {
            self.shared.options.list_limit as usize
        } else {
            limit
        };
        if let Some(mdt) = self.mdt(location)? {
            return Ok(remote::list(&mdt, after, limit)?
                .into_iter()
                .map(listed)
                .collect());
        }
        // A mirror lists what its first reachable element holds.
        let mut last = None;
        for endpoint in location.endpoints() {
            match self.list_at(endpoint, after, limit) {
                Ok(list) => return Ok(list),
                Err(err) => last = Some(err),
            }
        }
        Err(last.expect("a location has elements"))
    }

    fn list_at(
        &self,
        endpoint: &Endpoint,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        match self.place(endpoint, false)? {
            Place::File(store) => store.list_objects(after, limit),
            Place::Ost(connection) => Ok(remote::list(&connection, after, limit)?
                .into_iter()
                .map(listed)
                .collect()),
        }
    }

    /// A new queue of `depth` entries (the instance default when 0).
    pub fn queue(&self, depth: u32) -> Result<Queue> {
        let depth = if depth == 0 {
            self.shared.options.queue_depth
        } else {
            depth
        };
        Queue::new(depth)
    }
}

/// Where an object's data is, and the names of its copies.
struct Resolved {
    target: Target,
    names: Vec<String>,
    /// Per copy, the OST id a rawstor-mdt placed it on.
    ids: Vec<Option<Uuid>>,
    /// The record and MDT of an mdt:// object.
    record: Option<ObjectRecord>,
    mdt: Option<Arc<Connection>>,
}

/// The layout a create on mdt:// asks for, checked before the MDT is asked.
fn layout_to_create(spec: &CreateSpec) -> Result<Layout> {
    let layout = spec.layout.unwrap_or(mdt::DEFAULT_LAYOUT);
    if let Layout::Erasure { data, parity } = layout {
        Codec::new(data, parity)?;
    }
    Ok(layout)
}

/// Drops an object's record from the MDT.
fn forget(mdt: &Connection, uuid: Uuid) -> Result<()> {
    match remote::mdt_forget(mdt, uuid) {
        // A resent Forget whose first try went through.
        Err(err) if err.errno() == libc::ENOENT => Ok(()),
        result => result,
    }
}

/// The OSTs' target of an object placed by a rawstor-mdt.
fn backing_target(record: &ObjectRecord) -> Result<Target> {
    let elements: Vec<String> = record
        .placement
        .iter()
        .map(|p| format!("ost://{}/{}", p.addr, record.uuid))
        .collect();
    elements.join(",").parse()
}

/// A listed object, as [`Instance::list`] gives it.
fn listed(e: crate::wire::ListEntry) -> ObjectInfo {
    ObjectInfo {
        uuid: e.uuid,
        size: e.size,
        chunk_size: e.chunk_size,
        block_size: BLOCK_SIZE,
    }
}
