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
mod object;
mod object_chunks;
pub mod record;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use cache::ChunkCache;
pub use cache::{MAX_OPEN_CHUNKS, MIN_OPEN_CHUNKS, NOFILE_SHARE_DIVISOR, open_chunk_limit};
pub use chunk::BLOCK_SIZE;
use object::ObjectState;
pub use object::StoreObject;
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

#[cfg(test)]
mod tests {
    use super::*;

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
