//! The open chunks of the process: a bounded cache of chunk files.
//!
//! An open chunk holds a descriptor (its data file) and a memory map (its
//! checksum file). A store of 10 TiB in 64 MiB chunks has 160,000 chunk
//! files, so they cannot all stay open: the cache keeps at most a limit of
//! them, closing the least recently used first. Descriptors are a
//! per-process resource, so one cache serves every store of the process
//! (the client opens one store per `file://` location); a store can be
//! given a cache of its own (tests use small ones).
//!
//! # The limit
//!
//! [`open_chunk_limit`]: half of the soft `RLIMIT_NOFILE` (the other half
//! is left for sockets, control files, the rest of the process: QEMU's
//! own files when the client is loaded in it), at least
//! [`MIN_OPEN_CHUNKS`], at most [`MAX_OPEN_CHUNKS`] (every open chunk is
//! also a memory map, and `vm.max_map_count` defaults to 65,530 maps per
//! process). With the common soft limit of 1,024: 512 open chunks; an OST
//! run with a limit of 20,000: 10,000. Whatever the limit, an open that
//! fails with `EMFILE` or `ENFILE` closes idle chunks and tries again
//! ([`OPEN_RETRIES`] times, halving the idle chunks each time), so an I/O
//! fails for want of a descriptor only when no cached chunk can be closed.
//!
//! # Least recently used, cheaply
//!
//! A hit takes the cache's lock shared and stamps its entry with the
//! clock, which only advances when an entry is added (an atomic load, and
//! a store only when the stamp changes): chunks used since the last miss
//! share the newest stamp, which is all eviction (done on a miss) needs.
//! A full cache evicts 1/[`EVICTION_BATCH_DIVISOR`] of its limit at once,
//! so the scan for the oldest stamps is paid once per that many misses.
//!
//! # Eviction and chunks in use
//!
//! A chunk is evicted only when the cache holds its last reference (no
//! read, write or flush has it), so an I/O in flight is never disturbed,
//! and a chunk is never open twice in the process: two openings would
//! have two write locks over one checksum file, breaking the sealing
//! protocol (store/chunk.rs). The limit is therefore exceeded only by
//! chunks in use at the same moment, never by more than their number.
//!
//! # Dirty chunks
//!
//! A chunk evicted with writes since its last flush is remembered, by
//! index, under its object; the object's next flush reopens it and syncs
//! it (`fdatasync` of the data, `msync` of the checksums: both write back
//! the file's page cache, whichever descriptor or mapping dirtied it).
//! Eviction itself never waits for a disk.
//!
//! # Holes
//!
//! A chunk known not to exist (a hole: reads return zeros without looking
//! at the disk) is cached too, without a descriptor, and bounded apart:
//! at most [`HOLES_PER_OPEN_CHUNK`] times the limit.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use super::chunk::Chunk;
use crate::error::Error;
use crate::sys;

/// Share of the soft `RLIMIT_NOFILE` given to open chunks: one in this many.
pub const NOFILE_SHARE_DIVISOR: u64 = 2;
/// Fewest open chunks a cache sized from `RLIMIT_NOFILE` keeps.
pub const MIN_OPEN_CHUNKS: usize = 16;
/// Most open chunks a cache sized from `RLIMIT_NOFILE` keeps: each is a
/// memory map too, and `vm.max_map_count` defaults to 65,530.
pub const MAX_OPEN_CHUNKS: usize = 16 << 10;
/// The soft limit assumed when `getrlimit` fails (the usual default).
const FALLBACK_NOFILE: u64 = 1024;
/// Known holes cached per open chunk allowed.
pub const HOLES_PER_OPEN_CHUNK: usize = 4;
/// A full cache evicts 1/this of its limit at once: one scan for the
/// oldest per that many misses, and the closes (paid by the I/O that found
/// the cache full) stay few: 512 at [`MAX_OPEN_CHUNKS`].
pub const EVICTION_BATCH_DIVISOR: usize = 32;
/// Times an open that ran out of descriptors closes idle chunks and tries
/// again. Each time closes half of the idle ones (at least one), so 16
/// empty any cache of up to 65,536 chunks, four times [`MAX_OPEN_CHUNKS`].
pub const OPEN_RETRIES: u32 = 16;

/// The open-chunk limit for a soft `RLIMIT_NOFILE` (`None`: unlimited).
pub fn open_chunk_limit(nofile_soft: Option<u64>) -> usize {
    let Some(soft) = nofile_soft else {
        return MAX_OPEN_CHUNKS;
    };
    let share = usize::try_from(soft / NOFILE_SHARE_DIVISOR).unwrap_or(usize::MAX);
    share.clamp(MIN_OPEN_CHUNKS, MAX_OPEN_CHUNKS)
}

/// Whether an error is the process (`EMFILE`) or the system (`ENFILE`)
/// running out of descriptors.
pub fn out_of_descriptors(err: &Error) -> bool {
    matches!(err.errno(), libc::EMFILE | libc::ENFILE)
}

/// A key for an opened object, unique in the process (two openings of one
/// object, one closing while the next opens, never share entries).
pub fn object_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Entry {
    /// `None`: a hole.
    chunk: Option<Arc<Chunk>>,
    /// The clock when the entry was last used.
    used: AtomicU64,
}

#[derive(Default)]
struct Object {
    chunks: HashMap<u64, Entry, Keys>,
    /// Chunks closed with writes since their last flush.
    evicted_dirty: BTreeSet<u64>,
}

#[derive(Default)]
struct Inner {
    objects: HashMap<u64, Object, Keys>,
    open: usize,
    holes: usize,
}

/// Open chunks (and known holes) of many objects, bounded.
pub struct ChunkCache {
    limit: usize,
    clock: AtomicU64,
    inner: RwLock<Inner>,
}

impl ChunkCache {
    /// A cache keeping at most `limit` chunks open (at least 1).
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            clock: AtomicU64::new(0),
            inner: RwLock::new(Inner::default()),
        }
    }

    /// The process's cache, sized from `RLIMIT_NOFILE` when first used.
    pub fn shared() -> Arc<Self> {
        static SHARED: OnceLock<Arc<ChunkCache>> = OnceLock::new();
        let cache = SHARED.get_or_init(|| {
            let soft = sys::nofile_soft_limit().unwrap_or(Some(FALLBACK_NOFILE));
            Arc::new(Self::new(open_chunk_limit(soft)))
        });
        Arc::clone(cache)
    }

    /// Most chunks kept open.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Chunks open now.
    pub fn open_count(&self) -> usize {
        self.inner.read().open
    }

    /// Known holes cached now.
    #[cfg(test)]
    pub fn hole_count(&self) -> usize {
        self.inner.read().holes
    }

    /// The cached chunk `index` of `object` (`Some(None)`: a known hole).
    pub fn get(&self, object: u64, index: u64) -> Option<Option<Arc<Chunk>>> {
        let inner = self.inner.read();
        let entry = inner.objects.get(&object)?.chunks.get(&index)?;
        let now = self.clock.load(Ordering::Relaxed);
        if entry.used.load(Ordering::Relaxed) != now {
            entry.used.store(now, Ordering::Relaxed);
        }
        Some(entry.chunk.clone())
    }

    /// Caches chunk `index` of `object` (`None`: a hole), replacing a
    /// hole; evicts the least recently used when over the limits.
    pub fn insert(&self, object: u64, index: u64, chunk: Option<Arc<Chunk>>) {
        let used = AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed) + 1);
        let evicted = {
            let mut inner = self.inner.write();
            inner.count(&chunk, true);
            let entries = &mut inner.objects.entry(object).or_default().chunks;
            if let Some(old) = entries.insert(index, Entry { chunk, used }) {
                debug_assert!(old.chunk.is_none(), "a chunk is opened once");
                inner.count(&old.chunk, false);
            }
            inner.shrink(self.limit)
        };
        // Closed outside the lock.
        drop(evicted);
    }

    /// Closes half of the idle chunks (at least one) for an open that ran
    /// out of descriptors; returns how many were closed.
    pub fn close_idle(&self) -> usize {
        let evicted = {
            let mut inner = self.inner.write();
            let idle = inner.candidates(true).len();
            inner.evict(idle.div_ceil(2), true)
        };
        evicted.len()
    }

    /// Indices of the chunks of `object` open with unflushed writes.
    pub fn dirty_indices(&self, object: u64) -> Vec<u64> {
        let inner = self.inner.read();
        let Some(entries) = inner.objects.get(&object) else {
            return Vec::new();
        };
        let dirty = |(index, entry): (&u64, &Entry)| {
            entry
                .chunk
                .as_ref()
                .is_some_and(|c| c.is_dirty())
                .then_some(*index)
        };
        entries.chunks.iter().filter_map(dirty).collect()
    }

    /// Takes the indices of the chunks of `object` closed with unflushed
    /// writes.
    pub fn take_evicted_dirty(&self, object: u64) -> Vec<u64> {
        let mut inner = self.inner.write();
        inner
            .objects
            .get_mut(&object)
            .map(|o| std::mem::take(&mut o.evicted_dirty).into_iter().collect())
            .unwrap_or_default()
    }

    /// Gives back indices taken by `take_evicted_dirty` and not synced.
    pub fn restore_evicted_dirty(&self, object: u64, indices: &[u64]) {
        let mut inner = self.inner.write();
        let entry = inner.objects.entry(object).or_default();
        entry.evicted_dirty.extend(indices.iter().copied());
    }

    /// Drops every entry of `object` (closed, no I/O can be running).
    pub fn forget(&self, object: u64) {
        let removed = {
            let mut inner = self.inner.write();
            let removed = inner.objects.remove(&object);
            for entry in removed.iter().flat_map(|o| o.chunks.values()) {
                inner.count(&entry.chunk, false);
            }
            removed
        };
        drop(removed);
    }
}

impl Inner {
    fn count(&mut self, chunk: &Option<Arc<Chunk>>, added: bool) {
        let counter = match chunk {
            Some(_) => &mut self.open,
            None => &mut self.holes,
        };
        if added {
            *counter += 1;
        } else {
            *counter -= 1;
        }
    }

    /// Evicts down to the limits, a batch below them; returns the chunks
    /// to close.
    fn shrink(&mut self, limit: usize) -> Vec<Arc<Chunk>> {
        let batch = |limit: usize| limit / EVICTION_BATCH_DIVISOR;
        let hole_limit = limit.saturating_mul(HOLES_PER_OPEN_CHUNK);
        if self.holes > hole_limit {
            self.evict(self.holes - hole_limit + batch(hole_limit), false);
        }
        if self.open > limit {
            return self.evict(self.open - limit + batch(limit), true);
        }
        Vec::new()
    }

    /// Evictable entries as `(last used, object, index)`: open chunks no
    /// one else holds (`open`), or holes.
    fn candidates(&self, open: bool) -> Vec<(u64, u64, u64)> {
        let evictable = |entry: &Entry| match &entry.chunk {
            Some(chunk) => open && Arc::strong_count(chunk) == 1,
            None => !open,
        };
        let mut out = Vec::new();
        for (&object, o) in &self.objects {
            for (&index, entry) in &o.chunks {
                if evictable(entry) {
                    out.push((entry.used.load(Ordering::Relaxed), object, index));
                }
            }
        }
        out
    }

    /// Evicts up to `count` least recently used open chunks (`open`) or
    /// holes; a dirty chunk is remembered under its object. Under the
    /// write lock no one can take a new reference, so a chunk no one else
    /// holds stays so, and clean stays clean.
    fn evict(&mut self, count: usize, open: bool) -> Vec<Arc<Chunk>> {
        let mut victims = self.candidates(open);
        if count < victims.len() {
            victims.select_nth_unstable(count);
            victims.truncate(count);
        }
        let mut closed = Vec::new();
        for (_, object, index) in victims {
            let o = self.objects.get_mut(&object).expect("a candidate's object");
            let entry = o.chunks.remove(&index).expect("a candidate");
            if let Some(chunk) = &entry.chunk
                && chunk.is_dirty()
            {
                o.evicted_dirty.insert(index);
            }
            if o.chunks.is_empty() && o.evicted_dirty.is_empty() {
                self.objects.remove(&object);
            }
            self.count(&entry.chunk, false);
            closed.extend(entry.chunk);
        }
        closed
    }
}

/// Hashes the cache's keys (object keys from a counter, chunk indexes):
/// one multiplication, on every I/O's lookup, where SipHash took two
/// rounds. The keys are the library's own, so there is nothing to guard
/// against; the multiplier (2^64 / golden ratio) spreads them into the
/// high bits the map's groups use.
#[derive(Default)]
struct KeyHasher(u64);

type Keys = BuildHasherDefault<KeyHasher>;

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = (self.0 ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::{MIN_CHUNK_SIZE, Store, StoreObject};
    use super::*;
    use crate::uuid::Uuid;

    const LIMIT: usize = 16;
    const CHUNK: u64 = MIN_CHUNK_SIZE;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A store with a cache of `limit`, and an object of `chunks` chunks
    /// of the smallest size.
    fn object(limit: usize, chunks: u64) -> (Dir, Arc<Store>, Arc<StoreObject>) {
        let dir = std::env::temp_dir().join(format!("rawstor-cache-{}", sys::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open_with_chunk_limit(vec![dir.clone()], true, limit).unwrap();
        let uuid = Uuid::now_v7();
        store.create_object(uuid, chunks * CHUNK, CHUNK).unwrap();
        let object = store.open_object(uuid).unwrap();
        (Dir(dir), store, object)
    }

    /// Descriptors of this process open on files under `dir`.
    fn open_files_under(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    /// 8 KiB of a pattern of its own for chunk `index`.
    fn pattern(index: u64) -> Vec<u8> {
        (0..8192u64)
            .map(|i| (index * 7 + i * 13 + i / 4096) as u8)
            .collect()
    }

    /// Where chunk `index`'s pattern goes: not always at the chunk's start.
    fn pattern_at(index: u64) -> u64 {
        index * CHUNK + (index % 7) * 4096 + 100
    }

    fn assert_bounded(dir: &Dir, store: &Store) {
        assert!(store.open_chunks() <= LIMIT, "{} open", store.open_chunks());
        let files = open_files_under(&dir.0);
        assert!(files <= LIMIT, "{files} descriptors on chunk files");
    }

    #[test]
    fn many_more_chunks_than_the_limit_write_and_read_back() {
        const CHUNKS: u64 = 10 * LIMIT as u64;
        let (dir, store, object) = object(LIMIT, CHUNKS);
        for index in 0..CHUNKS {
            object.write(pattern_at(index), &pattern(index)).unwrap();
            assert_bounded(&dir, &store);
        }
        for round in 0..2 {
            let mut buf = vec![0u8; 8192];
            for index in (0..CHUNKS).rev() {
                object.read(pattern_at(index), &mut buf).unwrap();
                assert!(buf == pattern(index), "chunk {index}, round {round}");
                assert_bounded(&dir, &store);
            }
            object.flush().unwrap();
            assert_bounded(&dir, &store);
        }
        assert!(store.open_chunks() > 0);
        drop(object);
        assert_eq!(store.open_chunks(), 0);
        assert_eq!(open_files_under(&dir.0), 0);
    }

    #[test]
    fn dirty_chunk_evicted_before_flush_reads_back_and_is_synced() {
        let chunks = 4 * LIMIT as u64;
        let (dir, store, object) = object(LIMIT, chunks);
        for index in 1..chunks {
            object.write(index * CHUNK, &[index as u8; 4096]).unwrap();
        }
        object.flush().unwrap();
        object.write(100, &[0xa5; 5000]).unwrap();
        let mut buf = vec![0u8; 5200];
        for index in 1..chunks {
            object.read(index * CHUNK, &mut buf[..4096]).unwrap();
        }
        assert!(store.cache.get(object.key, 0).is_none(), "chunk 0 closed");
        let evicted = store.cache.take_evicted_dirty(object.key);
        assert_eq!(evicted, [0], "only chunk 0 was closed dirty");
        store.cache.restore_evicted_dirty(object.key, &evicted);
        object.flush().unwrap();
        assert!(store.cache.take_evicted_dirty(object.key).is_empty());
        let reopened = store.cache.get(object.key, 0).unwrap().unwrap();
        assert!(!reopened.is_dirty(), "reopened and synced by the flush");
        drop(reopened);
        let check = |object: &StoreObject, buf: &mut [u8]| {
            object.read(0, buf).unwrap();
            assert!(buf[..100].iter().all(|&b| b == 0));
            assert!(buf[100..5100].iter().all(|&b| b == 0xa5));
            assert!(buf[5100..].iter().all(|&b| b == 0));
            for index in 1..chunks {
                object.read(index * CHUNK, &mut buf[..4096]).unwrap();
                assert!(buf[..4096].iter().all(|&b| b == index as u8), "{index}");
            }
        };
        check(&object, &mut buf);
        drop((object, store));
        let store = Store::open_with_chunk_limit(vec![dir.0.clone()], false, LIMIT).unwrap();
        let uuid = store.list_objects(None, 1).unwrap()[0].uuid;
        check(&store.open_object(uuid).unwrap(), &mut buf);
    }

    #[test]
    fn chunk_in_use_is_not_closed_and_writes_through_it_land() {
        let (_dir, store, object) = object(LIMIT, 6 * LIMIT as u64);
        let held = object.chunk(0, true).unwrap().unwrap();
        for index in 1..3 * LIMIT as u64 {
            object.write(index * CHUNK, &[1; 4096]).unwrap();
            assert!(store.open_chunks() <= LIMIT + 1);
        }
        let cached = store.cache.get(object.key, 0).unwrap().unwrap();
        assert!(Arc::ptr_eq(&cached, &held), "one opening of a chunk");
        drop(cached);
        held.write(0, &[7; 4096]).unwrap();
        drop(held);
        for index in 3 * LIMIT as u64..6 * LIMIT as u64 {
            object.write(index * CHUNK, &[1; 4096]).unwrap();
        }
        assert!(store.cache.get(object.key, 0).is_none(), "closed once idle");
        let mut buf = vec![0u8; 4096];
        object.read(0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 7));
    }

    #[test]
    fn recently_used_chunks_stay_open() {
        let (_dir, store, object) = object(LIMIT, 4 * LIMIT as u64);
        let mut buf = vec![0u8; 4096];
        for index in 0..4 * LIMIT as u64 {
            object.write(index * CHUNK, &[index as u8; 4096]).unwrap();
            object.read(0, &mut buf).unwrap();
        }
        assert!(store.cache.get(object.key, 0).unwrap().is_some());
        assert!(store.cache.get(object.key, 1).is_none());
    }

    #[test]
    fn known_holes_are_bounded_and_replaced_by_chunks() {
        let limit = 4;
        let (_dir, store, object) = object(limit, 100);
        let mut buf = vec![1u8; 4096];
        for index in 0..100 {
            object.read(index * CHUNK, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 0));
            assert!(store.cache.hole_count() <= limit * HOLES_PER_OPEN_CHUNK);
        }
        assert!(store.cache.get(object.key, 99).unwrap().is_none(), "a hole");
        object.write(99 * CHUNK, &[9; 4096]).unwrap();
        object.read(99 * CHUNK, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 9));
        assert_eq!(store.open_chunks(), 1);
    }

    #[test]
    fn close_idle_closes_half_and_remembers_dirty_ones() {
        let (dir, store, object) = object(100, 10);
        for index in 0..10 {
            object.write(index * CHUNK, &[3; 4096]).unwrap();
        }
        assert_eq!(open_files_under(&dir.0), 10);
        assert_eq!(store.cache.close_idle(), 5);
        assert_eq!(store.open_chunks(), 5);
        assert_eq!(open_files_under(&dir.0), 5);
        assert_eq!(store.cache.take_evicted_dirty(object.key).len(), 5);
    }

    #[test]
    fn limit_is_half_the_soft_nofile_limit_within_bounds() {
        assert_eq!(open_chunk_limit(Some(1024)), 512);
        assert_eq!(open_chunk_limit(Some(20_000)), 10_000);
        assert_eq!(open_chunk_limit(Some(40)), 20);
        assert_eq!(open_chunk_limit(Some(20)), MIN_OPEN_CHUNKS);
        assert_eq!(open_chunk_limit(Some(0)), MIN_OPEN_CHUNKS);
        assert_eq!(open_chunk_limit(Some(1 << 20)), MAX_OPEN_CHUNKS);
        assert_eq!(open_chunk_limit(Some(u64::MAX)), MAX_OPEN_CHUNKS);
        assert_eq!(open_chunk_limit(None), MAX_OPEN_CHUNKS);
        let soft = sys::nofile_soft_limit().unwrap();
        assert_eq!(ChunkCache::shared().limit(), open_chunk_limit(soft));
    }
}
