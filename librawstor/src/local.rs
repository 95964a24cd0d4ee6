//! Objects in a local store (`file://`): reads and writes run on the
//! calling thread (the data is in the page cache; a hand-off to another
//! thread would cost two wake-ups per I/O, more than the I/O itself).
//! An object a user opened has its durability barriers (flush, FUA) run
//! on the instance's event loop thread, so that submitting never waits
//! for a disk; a mirror's copy runs them where it is asked.

use std::sync::Arc;

use crate::backend::{Backend, Replies};
use crate::error::{Error, Result};
use crate::event_loop::LoopHandle;
use crate::lent::{self, RawBuf};
use crate::remote::Finish;
use crate::store::{BLOCK_SIZE, ObjectInfo, StoreObject};
use crate::wire::{Marks, Opcode};

/// An object in a local store.
pub(crate) struct Local {
    object: Arc<StoreObject>,
    /// Where flushes run: the event loop, or (`None`) the caller.
    barriers: Option<LoopHandle>,
}

/// `object` as a mirror's copy or a shard: its barriers run where they
/// are asked.
#[cfg(test)]
pub(crate) fn copy(object: Arc<StoreObject>) -> crate::backend::DynBackend {
    Arc::new(Local::new(object, None))
}

impl Local {
    /// `object`, its barriers run on `barriers` (or by the caller).
    pub(crate) fn new(object: Arc<StoreObject>, barriers: Option<LoopHandle>) -> Self {
        Self { object, barriers }
    }

    /// Flushes, then `finish` gets `bytes`: on the loop thread when
    /// barriers run there.
    fn flush_then(&self, bytes: u64, finish: Finish) {
        match &self.barriers {
            Some(handle) => {
                let object = Arc::clone(&self.object);
                handle.execute(Box::new(move |_| {
                    let result = object.flush().map(|()| bytes);
                    // Let go of the object before the caller hears: a
                    // close then a remove must find it closed.
                    drop(object);
                    finish(result)
                }));
            }
            None => finish(self.object.flush().map(|()| bytes)),
        }
    }

    /// Reads or writes `bufs` at `offset`. Each block sees one checksum
    /// update: the buffers are used in place when each is whole blocks,
    /// otherwise through one bounce buffer.
    fn transfer(&self, offset: u64, bufs: &[RawBuf], write: bool) -> Result<u64> {
        let total = bufs
            .iter()
            .try_fold(0u64, |sum, b| sum.checked_add(b.len as u64))
            .ok_or_else(|| Error::invalid("buffers too large"))?;
        if total == 0 {
            return Ok(0);
        }
        let what = if write { "write" } else { "read" };
        if bufs.iter().any(|b| b.ptr.is_null() && b.len > 0) {
            return Err(Error::invalid(format!("{what} with a null buffer")));
        }
        let object = &self.object;
        if let [one] = bufs {
            // SAFETY: the caller lends `len` bytes at `ptr` until finish.
            unsafe { one_buf(object, offset, one, write)? };
            return Ok(total);
        }
        if bufs.iter().all(|b| b.len as u64 % BLOCK_SIZE == 0) {
            object.check_io(offset, total, what)?;
            let mut at = offset;
            for b in bufs {
                // SAFETY: as above.
                unsafe { one_buf(object, at, b, write)? };
                at += b.len as u64;
            }
            return Ok(total);
        }
        let len = usize::try_from(total).map_err(|_| Error::invalid("buffers too large"))?;
        let mut bounce = vec![0u8; len];
        if write {
            // SAFETY: as above.
            unsafe { lent::gather(bufs, 0, &mut bounce) };
            object.write(offset, &bounce)?;
        } else {
            object.read(offset, &mut bounce)?;
            // SAFETY: as above, and the buffers are writable.
            unsafe { lent::scatter(bufs, 0, &bounce) };
        }
        Ok(total)
    }
}

/// Reads or writes one lent buffer.
///
/// # Safety
///
/// `buf` names `len` bytes, valid (and writable for a read) for the call.
unsafe fn one_buf(object: &StoreObject, offset: u64, buf: &RawBuf, write: bool) -> Result<()> {
    if buf.len == 0 {
        return Ok(());
    }
    if write {
        // SAFETY: per the function's contract.
        object.write(offset, unsafe { lent::bytes(buf) })
    } else {
        // SAFETY: per the function's contract.
        object.read(offset, unsafe { lent::bytes_mut(buf) })
    }
}

impl Backend for Local {
    fn info(&self) -> ObjectInfo {
        self.object.info()
    }

    fn refresh_size(&self) -> Result<u64> {
        self.object.refresh_size()
    }

    fn read(&self, offset: u64, bufs: &[RawBuf], finish: Finish) {
        finish(self.transfer(offset, bufs, false));
    }

    fn write(&self, offset: u64, bufs: &[RawBuf], fua: bool, finish: Finish) {
        match self.transfer(offset, bufs, true) {
            Ok(bytes) if fua => self.flush_then(bytes, finish),
            result => finish(result),
        }
    }

    fn read_inline(&self, offset: u64, bufs: &[RawBuf]) -> Option<Result<u64>> {
        Some(self.transfer(offset, bufs, false))
    }

    fn write_inline(&self, offset: u64, bufs: &[RawBuf]) -> Option<Result<u64>> {
        Some(self.transfer(offset, bufs, true))
    }

    fn simple(&self, op: Opcode, offset: u64, len: u64, finish: Finish) {
        match op {
            Opcode::Flush => self.flush_then(0, finish),
            Opcode::Discard | Opcode::WriteZeroes => {
                finish(self.object.zero(offset, len).map(|()| 0))
            }
            other => finish(Err(Error::invalid(format!(
                "{other:?} is not a request without data"
            )))),
        }
    }

    fn resize(&self, size: u64, allow_shrink: bool) -> Result<()> {
        self.object.resize(size, allow_shrink)
    }

    fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)> {
        self.object.extent(offset, len)
    }

    fn replies(&self) -> Replies<'_> {
        Replies::Inline
    }

    fn marks(&self) -> Marks {
        self.object.marks()
    }

    fn set_marks(&self, marks: &Marks, replace: bool, finish: Finish) {
        finish(self.object.set_marks(marks, replace).map(|()| 0));
    }
}
