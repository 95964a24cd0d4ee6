//! The on-disk store shared by `file://` locations and `rawstor-ost`.
//!
//! After AIStore's layout. A store is one or more *mountpaths*; each holds
//!
//! ```text
//! %ctl/store                 identity (control file, copy on every mountpath)
//! %mt/<uuid>/object          object record (control file, every mountpath)
//! %mt/<uuid>/c<index>        chunk record (control file, the chunk's mountpath)
//! %ob/<uuid>/c<index>        chunk data (sparse)
//! %ob/<uuid>/c<index>.crc    chunk checksums, 8 bytes per 4 KiB block
//! %ec/                       erasure-coded shards (kept apart from replicas)
//! %wk/<pid>.<nonce>.<name>   work files, renamed into place when complete
//! %tr/                       trash: removed objects, freed in the background
//! ```
//!
//! A chunk lives on the mountpath chosen by rendezvous (HRW) hashing of
//! (mountpath, object, chunk index); it is looked for on the others too,
//! so adding a mountpath never hides data. Open chunk files are kept in a
//! bounded cache, least recently used closed first (`cache.rs`).

mod cache;
mod chunk;
pub mod control;
mod object_chunks;
pub mod record;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use cache::ChunkCache;
pub use cache::{MAX_OPEN_CHUNKS, MIN_OPEN_CHUNKS, NOFILE_SHARE_DIVISOR, open_chunk_limit};
pub use chunk::BLOCK_SIZE;
use record::Record;

use crate::error::{Error, Result};
use crate::sys;
use crate::uuid::Uuid;
use crate::wire::{self, Marks};

/// Control files of the store.
pub const CONTROL_DIR: &str = "%ctl";
/// Object and chunk records.
pub const META_DIR: &str = "%mt";
/// Chunk data and checksums.
pub const DATA_DIR: &str = "%ob";
/// Erasure-coded shards.
pub const EC_DIR: &str = "%ec";
/// Work files.
pub const WORK_DIR: &str = "%wk";
/// Removed objects waiting to be freed.
pub const TRASH_DIR: &str = "%tr";
const IDENTITY_FILE: &str = "%ctl/store";
const STORE_FORMAT: u32 = 1;

/// Default chunk size of new objects.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;
/// Smallest chunk size.
pub const MIN_CHUNK_SIZE: u64 = 64 << 10;
/// Largest chunk size.
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;
/// Largest object size (256 TiB).
pub const MAX_OBJECT_SIZE: u64 = 1 << 48;
/// Most mountpaths in one store.
pub const MAX_MOUNTPATHS: usize = 64;

/// A work file name unique to this process: `<pid>.<nonce>.<name>`.
pub fn work_file_name(rel: &str) -> String {
    format!(
        "{}.{:016x}.{}",
        std::process::id(),
        sys::random_u64(),
        rel.replace('/', "_")
    )
}

/// What `stat` and `list` report about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object.
    pub uuid: Uuid,
    /// Size in bytes.
    pub size: u64,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Checksum block size in bytes.
    pub block_size: u64,
}

/// An open store.
pub struct Store {
    id: Uuid,
    mountpaths: Vec<PathBuf>,
    objects: Mutex<HashMap<Uuid, Weak<StoreObject>>>,
    /// Open chunks: the process's cache (store/cache.rs) unless given.
    cache: Arc<ChunkCache>,
}

impl Store {
    /// Opens the store on `mountpaths`; with `create`, makes missing
    /// directories and a new identity. Its chunks share the process's
    /// cache of open files, sized from `RLIMIT_NOFILE`.
    pub fn open(mountpaths: Vec<PathBuf>, create: bool) -> Result<Arc<Self>> {
        Self::open_with_cache(mountpaths, create, ChunkCache::shared())
    }

    /// [`Store::open`] with a cache of its own keeping at most `limit`
    /// chunks open.
    pub fn open_with_chunk_limit(
        mountpaths: Vec<PathBuf>,
        create: bool,
        limit: usize,
    ) -> Result<Arc<Self>> {
        Self::open_with_cache(mountpaths, create, Arc::new(ChunkCache::new(limit)))
    }

    /// Most chunks the store's cache keeps open.
    pub fn open_chunk_limit(&self) -> usize {
        self.cache.limit()
    }

    /// Chunks open in the store's cache now.
    pub fn open_chunks(&self) -> usize {
        self.cache.open_count()
    }

    fn open_with_cache(
        mountpaths: Vec<PathBuf>,
        create: bool,
        cache: Arc<ChunkCache>,
    ) -> Result<Arc<Self>> {
        if mountpaths.is_empty() || mountpaths.len() > MAX_MOUNTPATHS {
            return Err(Error::invalid(format!(
                "a store needs 1 to {MAX_MOUNTPATHS} mountpaths"
            )));
        }
        for mp in &mountpaths {
            prepare_mountpath(mp, create)?;
        }
        let ids: Vec<Option<Uuid>> = mountpaths
            .iter()
            .map(|mp| {
                fs::read(mp.join(IDENTITY_FILE))
                    .ok()
                    .and_then(|bytes| control::decode(&bytes).ok())
                    .and_then(|(_, payload)| Record::decode(&payload).ok())
                    .and_then(|r| r.get::<Uuid>("store").ok())
            })
            .collect();
        // Refuse foreign copies before control::read repairs anything.
        let known: Vec<(&PathBuf, Uuid)> = mountpaths
            .iter()
            .zip(&ids)
            .filter_map(|(mp, id)| Some((mp, (*id)?)))
            .collect();
        if let Some((mp, other)) = known.iter().find(|(_, id)| *id != known[0].1) {
            return Err(Error::new(
                libc::EEXIST,
                format!(
                    "mountpath {} belongs to store {other}, mountpath {} to store {}: refusing to mix stores",
                    mp.display(),
                    known[0].0.display(),
                    known[0].1
                ),
            ));
        }
        let read = control::read(&mountpaths, IDENTITY_FILE, |_| Ok(()))?;
        let id = match read.best {
            Some((_, record)) => record.get("store")?,
            None if create => {
                let id = Uuid::now_v7();
                let mut record = Record::new();
                record.set("store", id).set("format", STORE_FORMAT);
                control::write(&mountpaths, IDENTITY_FILE, 1, &record)?;
                id
            }
            None => {
                return Err(Error::new(
                    libc::ENOENT,
                    format!("no rawstor store at {}", mountpaths[0].display()),
                ));
            }
        };
        for mp in &mountpaths {
            clean_work_files(mp);
            empty_trash(mp);
        }
        Ok(Arc::new(Self {
            id,
            mountpaths,
            objects: Mutex::new(HashMap::new()),
            cache,
        }))
    }

    /// The store's identity.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The mountpaths.
    pub fn mountpaths(&self) -> &[PathBuf] {
        &self.mountpaths
    }

    fn object_record_path(uuid: Uuid) -> String {
        format!("{META_DIR}/{uuid}/object")
    }

    fn check_object_record(&self, uuid: Uuid) -> impl Fn(&Record) -> Result<()> + '_ {
        move |record: &Record| {
            let store: Uuid = record.get("store")?;
            let object: Uuid = record.get("object")?;
            if store != self.id || object != uuid {
                return Err(Error::new(
                    libc::EUCLEAN,
                    format!(
                        "record of object {uuid} names store {store} / object {object}: foreign copy refused"
                    ),
                ));
            }
            Ok(())
        }
    }

    /// Creates an empty object.
    pub fn create_object(&self, uuid: Uuid, size: u64, chunk_size: u64) -> Result<ObjectInfo> {
        check_object_size(size)?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) || !chunk_size.is_power_of_two()
        {
            return Err(Error::invalid(format!(
                "bad chunk size {chunk_size}: a power of two from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}"
            )));
        }
        for mp in &self.mountpaths {
            let dir = mp.join(META_DIR).join(uuid.to_string());
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if dir.join("object").exists() {
                        return Err(Error::new(
                            libc::EEXIST,
                            format!("object {uuid} already exists"),
                        ));
                    }
                }
                Err(e) => return Err(Error::io(format!("cannot create {}", dir.display()), e)),
            }
        }
        let info = ObjectInfo {
            uuid,
            size,
            chunk_size,
            block_size: BLOCK_SIZE,
        };
        control::write(
            &self.mountpaths,
            &Self::object_record_path(uuid),
            1,
            &self.object_record(&info, &Marks::default(), 0),
        )?;
        Ok(info)
    }

    fn object_record(&self, info: &ObjectInfo, marks: &Marks, fence: u64) -> Record {
        let mut record = Record::new();
        record
            .set("store", self.id)
            .set("object", info.uuid)
            .set("size", info.size)
            .set("chunk_size", info.chunk_size)
            .set("block_size", info.block_size)
            .set("scheme", "plain")
            .set("stale", u8::from(marks.stale))
            .set("stale_peers", marks.stale_peers.len())
            .set("fence", fence);
        for (i, peer) in marks.stale_peers.iter().enumerate() {
            record.set(&format!("stale_peer.{i}"), peer);
        }
        record
    }

    /// An object's size, layout and mirror marks.
    pub fn stat_object_marks(&self, uuid: Uuid) -> Result<(ObjectInfo, Marks)> {
        self.read_object_record(uuid)
            .map(|(_, info, marks, _)| (info, marks))
    }

    /// The record's version, the object's layout, its mirror marks and
    /// its fence.
    fn read_object_record(&self, uuid: Uuid) -> Result<(u64, ObjectInfo, Marks, u64)> {
        let read = control::read(
            &self.mountpaths,
            &Self::object_record_path(uuid),
            self.check_object_record(uuid),
        )?;
        let Some((version, record)) = read.best else {
            return Err(Error::new(
                libc::ENOENT,
                format!("object {uuid} does not exist"),
            ));
        };
        let info = ObjectInfo {
            uuid,
            size: record.get("size")?,
            chunk_size: record.get("chunk_size")?,
            block_size: record.get("block_size")?,
        };
        // Records written before mirror marks existed have none.
        let mut marks = Marks {
            stale: record.get_str("stale") == Some("1"),
            stale_peers: Vec::new(),
        };
        let peers: usize = record
            .get_str("stale_peers")
            .map_or(Ok(0), |_| record.get("stale_peers"))?;
        for i in 0..peers.min(wire::MAX_STALE_PEERS) {
            marks
                .stale_peers
                .push(record.get::<String>(&format!("stale_peer.{i}"))?);
        }
        // Records written before fences existed have none.
        let fence = match record.get_str("fence") {
            Some(_) => record.get("fence")?,
            None => 0,
        };
        if info.block_size != BLOCK_SIZE
            || !info.chunk_size.is_power_of_two()
            || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&info.chunk_size)
        {
            return Err(Error::new(
                libc::EUCLEAN,
                format!("object {uuid} has an unsupported layout"),
            ));
        }
        Ok((version, info, marks, fence))
    }

    /// Describes an object without opening it.
    pub fn stat_object(&self, uuid: Uuid) -> Result<ObjectInfo> {
        self.read_object_record(uuid).map(|(_, info, _, _)| info)
    }

    /// Opens an object; handles to the same object share state.
    pub fn open_object(self: &Arc<Self>, uuid: Uuid) -> Result<Arc<StoreObject>> {
        let mut objects = self.objects.lock();
        if let Some(object) = objects.get(&uuid).and_then(Weak::upgrade) {
            return Ok(object);
        }
        let (version, info, marks, fence) = self.read_object_record(uuid)?;
        let object = Arc::new(StoreObject {
            store: Arc::clone(self),
            key: cache::object_key(),
            uuid,
            chunk_size: info.chunk_size,
            size_now: std::sync::atomic::AtomicU64::new(info.size),
            state: RwLock::new(ObjectState {
                size: info.size,
                version,
                marks,
                fence,
            }),
            gate: RwLock::new(()),
            create_lock: Mutex::new(()),
        });
        objects.retain(|_, weak| weak.strong_count() > 0);
        objects.insert(uuid, Arc::downgrade(&object));
        Ok(object)
    }

    /// Whether `uuid` is open through this store.
    pub fn is_open(&self, uuid: Uuid) -> bool {
        self.objects
            .lock()
            .get(&uuid)
            .is_some_and(|w| w.strong_count() > 0)
    }

    /// Removes an object: renames it into the trash (instant, atomic),
    /// then frees its space in the background.
    pub fn remove_object(&self, uuid: Uuid) -> Result<()> {
        if self.is_open(uuid) {
            return Err(Error::new(libc::EBUSY, format!("object {uuid} is open")));
        }
        self.read_object_record(uuid)?;
        for mp in &self.mountpaths {
            let nonce = sys::random_u64();
            for dir in [META_DIR, DATA_DIR] {
                let from = mp.join(dir).join(uuid.to_string());
                let to = mp.join(TRASH_DIR).join(format!("{uuid}.{nonce:016x}{dir}"));
                match fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::io(
                            format!("cannot move {} to the trash", from.display()),
                            e,
                        ));
                    }
                }
            }
            sys::fsync_dir(&mp.join(META_DIR))
                .map_err(|e| Error::io("cannot sync metadata directory", e))?;
            empty_trash(mp);
        }
        Ok(())
    }

    /// Objects sorted by UUID, starting after `after`, at most `limit`.
    pub fn list_objects(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<ObjectInfo>> {
        let dir = self.mountpaths[0].join(META_DIR);
        let entries = fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let mut uuids: Vec<Uuid> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|uuid| after.is_none_or(|after| *uuid > after))
            .collect();
        uuids.sort_unstable();
        let mut out = Vec::new();
        for uuid in uuids {
            if out.len() >= limit {
                break;
            }
            match self.stat_object(uuid) {
                Ok(info) => out.push(info),
                // Half-created (crash before the record) or concurrently removed.
                Err(e) if e.errno() == libc::ENOENT => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Mountpaths in rendezvous order for one chunk: first is home.
    fn ranked_mountpaths(&self, uuid: Uuid, index: u64) -> Vec<&Path> {
        let mut ranked: Vec<(u64, &Path)> = self
            .mountpaths
            .iter()
            .map(|mp| (hrw_weight(mp, uuid, index), mp.as_path()))
            .collect();
        ranked.sort_unstable_by_key(|&(weight, _)| std::cmp::Reverse(weight));
        ranked.into_iter().map(|(_, mp)| mp).collect()
    }
}

fn check_object_size(size: u64) -> Result<()> {
    if size == 0 || size % BLOCK_SIZE != 0 || size > MAX_OBJECT_SIZE {
        return Err(Error::invalid(format!(
            "bad object size {size}: a non-zero multiple of {BLOCK_SIZE} up to {MAX_OBJECT_SIZE}"
        )));
    }
    Ok(())
}

/// Rendezvous weight of a mountpath for one chunk (FNV-1a, then a mixer).
fn hrw_weight(mountpath: &Path, uuid: Uuid, index: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = mountpath.as_os_str().as_encoded_bytes().iter();
    for &b in bytes.chain(uuid.as_bytes()).chain(&index.to_le_bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

fn prepare_mountpath(mp: &Path, create: bool) -> Result<()> {
    if !mp.is_absolute() {
        return Err(Error::invalid(format!(
            "mountpath {} is not absolute",
            mp.display()
        )));
    }
    if !mp.join(IDENTITY_FILE).exists() && !create {
        let what = if mp.is_dir() {
            "no rawstor store at"
        } else {
            "no such directory"
        };
        return Err(Error::new(libc::ENOENT, format!("{what} {}", mp.display())));
    }
    for dir in [CONTROL_DIR, META_DIR, DATA_DIR, EC_DIR, WORK_DIR, TRASH_DIR] {
        fs::create_dir_all(mp.join(dir))
            .map_err(|e| Error::io(format!("cannot create {}", mp.join(dir).display()), e))?;
    }
    Ok(())
}

/// Removes work files left by processes that no longer exist.
fn clean_work_files(mp: &Path) {
    let Ok(entries) = fs::read_dir(mp.join(WORK_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('.').next())
            .and_then(|p| p.parse::<i32>().ok());
        let dead = match pid {
            Some(pid) => !sys::process_exists(pid),
            None => true,
        };
        if dead {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Frees whatever is in the trash, on a background thread.
fn empty_trash(mp: &Path) {
    let trash = mp.join(TRASH_DIR);
    let has_entries = fs::read_dir(&trash).is_ok_and(|mut d| d.next().is_some());
    if has_entries {
        std::thread::spawn(move || {
            for entry in fs::read_dir(&trash).into_iter().flatten().flatten() {
                let _ = fs::remove_dir_all(entry.path());
            }
        });
    }
}

struct ObjectState {
    size: u64,
    version: u64,
    /// Mirror marks: a stale copy refuses reads until repaired.
    marks: Marks,
    /// Changes naming a lease epoch below this are refused.
    fence: u64,
}

/// An open object of a store.
pub struct StoreObject {
    store: Arc<Store>,
    /// The object's chunks in the store's cache (known holes included).
    key: u64,
    uuid: Uuid,
    chunk_size: u64,
    /// `state.size`, readable without the lock (checks before an I/O);
    /// written with `state` write-locked.
    size_now: std::sync::atomic::AtomicU64,
    /// Size; read-locked by every I/O, write-locked by resize.
    state: RwLock<ObjectState>,
    /// Read-locked by changes admitted under a lease epoch, write-locked
    /// while the fence is raised: a raised fence has no admitted change
    /// still running.
    gate: RwLock<()>,
    /// Serialises chunk creation.
    create_lock: Mutex<()>,
}

/// Chunks one block-status answer looks at: a longer range gets a shorter
/// answer (callers ask again), so one request cannot scan a huge object.
const EXTENT_MAX_CHUNKS: usize = 64;

/// Splits `[offset, offset + len)` into per-chunk pieces:
/// (chunk index, offset in chunk, offset in the request, length).
fn pieces(
    offset: u64,
    len: u64,
    chunk_size: u64,
) -> impl Iterator<Item = (u64, u64, usize, usize)> {
    let mut done = 0u64;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = offset + done;
        let in_chunk = at % chunk_size;
        let n = (chunk_size - in_chunk).min(len - done);
        let piece = (at / chunk_size, in_chunk, done as usize, n as usize);
        done += n;
        Some(piece)
    })
}

impl StoreObject {
    /// The object's UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Current size in bytes.
    pub fn size(&self) -> u64 {
        self.size_now.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The size as recorded now: another process (or instance) with the
    /// store open may have resized the object. A newer record is adopted
    /// whole (size, marks, fence).
    pub fn refresh_size(&self) -> Result<u64> {
        let mut state = self.state.write();
        self.reload_locked(&mut state)?;
        Ok(state.size)
    }

    /// Adopts the object's record when it is newer than the one `state`
    /// came from.
    fn reload_locked(&self, state: &mut ObjectState) -> Result<()> {
        let (version, info, marks, fence) = self.store.read_object_record(self.uuid)?;
        if version > state.version {
            *state = ObjectState {
                size: info.size,
                version,
                marks,
                fence: fence.max(state.fence),
            };
            self.size_now
                .store(state.size, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// Size, chunk size and block size.
    pub fn info(&self) -> ObjectInfo {
        self.info_locked(&self.state.read())
    }

    fn chunk_name(&self, index: u64) -> String {
        format!("c{index:08x}")
    }

    /// Checks that `[offset, offset + len)` lies inside the object.
    pub fn check_io(&self, offset: u64, len: u64, what: &str) -> Result<()> {
        self.check_range(self.size(), offset, len, what)
    }

    fn check_range(&self, size: u64, offset: u64, len: u64, what: &str) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(Error::new(
                libc::ENXIO,
                format!(
                    "{what} of {len} bytes at offset {offset} is past the end of object {} ({size} bytes)",
                    self.uuid
                ),
            )),
        }
    }

    /// Reads `buf.len()` bytes at `offset`; the range must lie inside the
    /// object (`ENXIO` otherwise). Never-written ranges read as zeros.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let state = self.state.read();
        if state.marks.stale {
            return Err(Error::new(
                libc::ESTALE,
                format!(
                    "object {}: this copy missed writes of its mirror and is not read until repaired (rawstor repair)",
                    self.uuid
                ),
            ));
        }
        self.check_range(state.size, offset, buf.len() as u64, "read")?;
        for (index, in_chunk, at, n) in pieces(offset, buf.len() as u64, self.chunk_size) {
            let piece = &mut buf[at..at + n];
            match self.chunk(index, false)? {
                Some(chunk) => chunk.read(in_chunk, piece)?,
                None => piece.fill(0),
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset`; the range must lie inside the object
    /// (`ENXIO` otherwise: objects never grow on write).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write_with(offset, data, None)
    }

    /// [`StoreObject::write`] of whole blocks at a block boundary whose
    /// crc32s the caller has computed (one per [`BLOCK_SIZE`] bytes): a
    /// server checks a payload by its blocks' crcs, and the blocks are
    /// sealed with them without another pass over the bytes.
    pub fn write_blocks(&self, offset: u64, data: &[u8], crcs: &[u32]) -> Result<()> {
        self.write_with(offset, data, Some(crcs))
    }

    fn write_with(&self, offset: u64, data: &[u8], crcs: Option<&[u32]>) -> Result<()> {
        let state = self.state.read();
        self.check_range(state.size, offset, data.len() as u64, "write")?;
        for (index, in_chunk, at, n) in pieces(offset, data.len() as u64, self.chunk_size) {
            let chunk = self.chunk(index, true)?.expect("created on demand");
            let piece = &data[at..at + n];
            match crcs {
                Some(crcs) => {
                    let block = BLOCK_SIZE as usize;
                    chunk.write_blocks(in_chunk, piece, &crcs[at / block..(at + n) / block])?
                }
                None => chunk.write(in_chunk, piece)?,
            }
        }
        Ok(())
    }

    /// Whether the `len` bytes at `offset` hold data (`true`) or read as
    /// zeros because nothing was written there or it was freed (`false`),
    /// and for how many bytes from `offset` (at most `len`) that holds.
    pub fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)> {
        let state = self.state.read();
        self.check_range(state.size, offset, len, "block status")?;
        if len == 0 {
            return Err(Error::invalid("block status of 0 bytes"));
        }
        let mut status = None;
        let mut total = 0;
        let pieces = pieces(offset, len, self.chunk_size).take(EXTENT_MAX_CHUNKS);
        for (index, in_chunk, _, n) in pieces {
            let (data, got) = match self.chunk(index, false)? {
                Some(chunk) => chunk.extent(in_chunk, n as u64)?,
                None => (false, n as u64),
            };
            if status.is_some_and(|s| s != data) {
                break;
            }
            status = Some(data);
            total += got;
            if got < n as u64 {
                break;
            }
        }
        Ok((status.expect("len > 0"), total))
    }

    /// Makes a range read as zeros and frees its space (discard and
    /// write-zeroes are the same operation here).
    pub fn zero(&self, offset: u64, len: u64) -> Result<()> {
        let state = self.state.read();
        self.check_range(state.size, offset, len, "discard")?;
        self.zero_locked(offset, len)
    }

    fn zero_locked(&self, offset: u64, len: u64) -> Result<()> {
        for (index, in_chunk, _, n) in pieces(offset, len, self.chunk_size) {
            if let Some(chunk) = self.chunk(index, false)? {
                chunk.zero(in_chunk, n as u64)?;
            }
        }
        Ok(())
    }

    /// Changes the size; shrinking needs `allow_shrink` and discards the
    /// cut-off data before the new size is recorded.
    pub fn resize(&self, new_size: u64, allow_shrink: bool) -> Result<()> {
        check_object_size(new_size)?;
        let mut state = self.state.write();
        // Another process may have resized it: the new record follows
        // the newest, and a size it has already is no change.
        self.reload_locked(&mut state)?;
        if new_size == state.size {
            return Ok(());
        }
        if new_size < state.size {
            if !allow_shrink {
                return Err(Error::invalid(format!(
                    "shrinking object {} from {} to {new_size} bytes loses data: ask for it explicitly",
                    self.uuid, state.size
                )));
            }
            self.zero_locked(new_size, state.size - new_size)?;
            self.flush()?;
        }
        let marks = state.marks.clone();
        self.write_record(&mut state, new_size, marks)
    }

    /// Writes the object record with a new size and marks (a new version
    /// on every mountpath), then adopts them.
    fn write_record(&self, state: &mut ObjectState, size: u64, marks: Marks) -> Result<()> {
        let info = ObjectInfo {
            size,
            ..self.info_locked(state)
        };
        control::write(
            &self.store.mountpaths,
            &Store::object_record_path(self.uuid),
            state.version + 1,
            &self.store.object_record(&info, &marks, state.fence),
        )?;
        state.version += 1;
        state.size = size;
        self.size_now
            .store(size, std::sync::atomic::Ordering::Release);
        state.marks = marks;
        Ok(())
    }

    /// The copy's mirror marks.
    pub fn marks(&self) -> Marks {
        self.state.read().marks.clone()
    }

    /// Records mirror marks durably before returning: `marks` replaces
    /// the current ones, or with `replace` false is merged into them (the
    /// stale flag and peers only added), so that concurrent markers never
    /// undo each other.
    pub fn set_marks(&self, marks: &Marks, replace: bool) -> Result<()> {
        let mut state = self.state.write();
        let mut new = if replace {
            marks.clone()
        } else {
            state.marks.clone()
        };
        if !replace {
            new.stale |= marks.stale;
            for peer in &marks.stale_peers {
                if !new.stale_peers.contains(peer) {
                    new.stale_peers.push(peer.clone());
                }
            }
        }
        if new.stale_peers.len() > wire::MAX_STALE_PEERS {
            return Err(Error::invalid("too many stale peers"));
        }
        if state.marks == new {
            return Ok(());
        }
        let size = state.size;
        self.write_record(&mut state, size, new)
    }

    /// Admits a change made under lease `epoch` (0: a change without a
    /// lease, always admitted): `ENOLCK` once the fence is above it. The
    /// change runs while the returned guard is held.
    pub fn admit(&self, epoch: u64) -> Result<RwLockReadGuard<'_, ()>> {
        let gate = self.gate.read();
        let fence = self.state.read().fence;
        if epoch != 0 && epoch < fence {
            return Err(Error::new(
                libc::ENOLCK,
                format!(
                    "object {}: another writer took over (its lease epoch {fence}; this writer's {epoch})",
                    self.uuid
                ),
            ));
        }
        Ok(gate)
    }

    /// Raises the fence to `epoch` (durably, once every change admitted
    /// before has finished); returns the fence, which never goes down.
    pub fn fence(&self, epoch: u64) -> Result<u64> {
        let _gate = self.gate.write();
        let mut state = self.state.write();
        if epoch <= state.fence {
            return Ok(state.fence);
        }
        let old = std::mem::replace(&mut state.fence, epoch);
        let (size, marks) = (state.size, state.marks.clone());
        if let Err(err) = self.write_record(&mut state, size, marks) {
            state.fence = old;
            return Err(err);
        }
        Ok(epoch)
    }

    fn info_locked(&self, state: &ObjectState) -> ObjectInfo {
        ObjectInfo {
            uuid: self.uuid,
            size: state.size,
            chunk_size: self.chunk_size,
            block_size: BLOCK_SIZE,
        }
    }
}

impl Drop for StoreObject {
    fn drop(&mut self) {
        self.store.cache.forget(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_at_chunk_boundaries() {
        let got: Vec<_> = pieces(60, 100, 64).collect();
        assert_eq!(got, vec![(0, 60, 0, 4), (1, 0, 4, 64), (2, 0, 68, 32)]);
    }

    #[test]
    fn hrw_spreads_chunks_over_mountpaths() {
        let mps = [
            PathBuf::from("/a"),
            PathBuf::from("/b"),
            PathBuf::from("/c"),
        ];
        let uuid = Uuid::now_v7();
        let mut counts = [0usize; 3];
        for index in 0..3000 {
            let best = (0..3)
                .max_by_key(|&i| hrw_weight(&mps[i], uuid, index))
                .unwrap();
            counts[best] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
