//! How an object finds, opens, creates and syncs its chunks, through the
//! store's cache of open chunks (store/cache.rs).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::chunk::Chunk;
use super::record::Record;
use super::{DATA_DIR, META_DIR, StoreObject, cache, control};
use crate::error::{Error, Result};
use crate::sys;

impl StoreObject {
    /// The chunk `index`, opening it or (with `create`) creating it.
    pub(super) fn chunk(&self, index: u64, create: bool) -> Result<Option<Arc<Chunk>>> {
        let cache = &self.store.cache;
        if let Some(cached) = cache.get(self.key, index)
            && (cached.is_some() || !create)
        {
            return Ok(cached);
        }
        let _creating = self.create_lock.lock();
        if let Some(Some(chunk)) = cache.get(self.key, index) {
            return Ok(Some(chunk));
        }
        let name = self.chunk_name(index);
        let uuid = self.uuid.to_string();
        let ranked = self.store.ranked_mountpaths(self.uuid, index);
        let existing = ranked
            .iter()
            .find(|mp| mp.join(META_DIR).join(&uuid).join(&name).exists());
        let chunk = match (existing, create) {
            (Some(mp), _) => Some(self.retrying(|| self.open_chunk(mp, index, false))?),
            (None, true) => Some(self.create_chunk(ranked[0], index)?),
            (None, false) => None,
        };
        let chunk = chunk.map(Arc::new);
        cache.insert(self.key, index, chunk.clone());
        Ok(chunk)
    }

    /// Runs `step`, which opens files, again after closing idle chunks
    /// while it fails for want of descriptors (store/cache.rs); `step`
    /// must be safe to repeat.
    fn retrying<T>(&self, mut step: impl FnMut() -> Result<T>) -> Result<T> {
        let mut retries = 0;
        loop {
            match step() {
                Err(e)
                    if cache::out_of_descriptors(&e)
                        && retries < cache::OPEN_RETRIES
                        && self.store.cache.close_idle() > 0 =>
                {
                    retries += 1;
                }
                result => return result,
            }
        }
    }

    fn open_chunk(&self, mp: &Path, index: u64, create: bool) -> Result<Chunk> {
        let name = self.chunk_name(index);
        let data_dir = mp.join(DATA_DIR).join(self.uuid.to_string());
        Chunk::open(
            &data_dir.join(&name),
            &data_dir.join(format!("{name}.crc")),
            self.chunk_size,
            create,
            format!("{}/{name}", self.uuid),
        )
    }

    /// Creates the data and checksum files, then publishes the chunk by
    /// renaming its record into place: a chunk exists iff its record does.
    fn create_chunk(&self, mp: &Path, index: u64) -> Result<Chunk> {
        let data_dir = mp.join(DATA_DIR).join(self.uuid.to_string());
        fs::create_dir_all(&data_dir)
            .map_err(|e| Error::io(format!("cannot create {}", data_dir.display()), e))?;
        // Every step may be repeated: the chunk is not published yet.
        let chunk = self.retrying(|| self.open_chunk(mp, index, true))?;
        self.retrying(|| {
            sys::fsync_dir(&data_dir).map_err(|e| Error::io("cannot sync data directory", e))
        })?;
        let mut record = Record::new();
        record
            .set("store", self.store.id)
            .set("object", self.uuid)
            .set("chunk", index)
            .set("shard", 0)
            .set("generation", 1)
            .set("size", self.chunk_size)
            .set("scheme", "plain");
        let rel = format!("{META_DIR}/{}/{}", self.uuid, self.chunk_name(index));
        let bytes = control::encode(1, &record.encode());
        self.retrying(|| control::write_file_atomic(mp, &rel, &bytes))?;
        Ok(chunk)
    }

    /// Makes every completed write durable: syncs the open chunks written
    /// since their last flush, then reopens and syncs those closed since
    /// (store/cache.rs). One chunk is held at a time, so the cache can
    /// close the others meanwhile.
    pub fn flush(&self) -> Result<()> {
        let cache = &self.store.cache;
        for index in cache.dirty_indices(self.key) {
            if let Some(Some(chunk)) = cache.get(self.key, index) {
                chunk.flush()?;
            }
        }
        let evicted = cache.take_evicted_dirty(self.key);
        for (i, &index) in evicted.iter().enumerate() {
            let synced = self.chunk(index, false).and_then(|chunk| {
                chunk.map_or(Ok(()), |chunk| {
                    chunk.mark_dirty();
                    chunk.flush()
                })
            });
            if let Err(e) = synced {
                cache.restore_evicted_dirty(self.key, &evicted[i..]);
                return Err(e);
            }
        }
        Ok(())
    }
}
