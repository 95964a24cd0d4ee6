//! An open object of a store: its chunks, size, marks and fence; reads
//! and writes checked against its size, block by block.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::*;

pub(super) struct ObjectState {
    pub(super) size: u64,
    pub(super) version: u64,
    /// Mirror marks: a stale copy refuses reads until repaired.
    pub(super) marks: Marks,
    /// Changes naming a lease epoch below this are refused.
    pub(super) fence: u64,
}

/// An open object of a store.
pub struct StoreObject {
    pub(super) store: Arc<Store>,
    /// The object's chunks in the store's cache (known holes included).
    pub(super) key: u64,
    pub(super) uuid: Uuid,
    pub(super) chunk_size: u64,
    /// `state.size`, readable without the lock (checks before an I/O);
    /// written with `state` write-locked.
    pub(super) size_now: std::sync::atomic::AtomicU64,
    /// Size; read-locked by every I/O, write-locked by resize.
    pub(super) state: RwLock<ObjectState>,
    /// Read-locked by changes admitted under a lease epoch, write-locked
    /// while the fence is raised: a raised fence has no admitted change
    /// still running.
    pub(super) gate: RwLock<()>,
    /// Serialises chunk creation.
    pub(super) create_lock: Mutex<()>,
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

    pub(super) fn chunk_name(&self, index: u64) -> String {
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
}
