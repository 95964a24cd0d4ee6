//! An open object: the handle a caller reads, writes and resizes
//! through ([`Object`]), over whatever kind holds its bytes
//! ([`crate::backend::Backend`]). Every range is checked against the
//! object's size and the limits before anything is allocated or sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::{DynBackend, wait};
use crate::client::Shared;
use crate::error::{Error, Result};
use crate::lent::RawBuf;
use crate::queue::opcode::RAWSTOR_IO_MAX;
use crate::store::ObjectInfo;
use crate::uri::Target;
use crate::wire::Opcode;

/// An open object's state, shared by its handle and the queue
/// operations in flight on it.
pub(crate) struct ObjectInner {
    pub(crate) target: Target,
    pub(crate) backend: DynBackend,
    /// Keeps the instance (its event loop) alive while the object is open.
    pub(crate) instance: Arc<Shared>,
    /// Queue operations started and not yet completed.
    pub(crate) pending: AtomicUsize,
}

/// An open object.
pub struct Object {
    pub(crate) inner: Arc<ObjectInner>,
}

impl Drop for Object {
    fn drop(&mut self) {
        // The writer lease goes back with the user's handle (on the
        // user's thread: it waits for the MDT).
        let mut open = self.inner.instance.open_objects.lock();
        if let Some(count) = open.get_mut(&self.inner.target.uuid) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.inner.target.uuid);
                // The instance's last handle: the lease goes.
                drop(open);
                self.inner.backend.release();
            }
        }
    }
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("target", &self.inner.target.to_string())
            .finish()
    }
}

impl Object {
    /// The object's target.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.inner.backend.info().size
    }

    /// Size and layout as this handle last saw them (see
    /// [`Object::stat`]).
    pub fn info(&self) -> ObjectInfo {
        self.inner.backend.info()
    }

    /// Size and layout as the object has them now: another handle (here
    /// or in another process) may have resized it since this one opened.
    pub fn stat(&self) -> Result<ObjectInfo> {
        self.inner.backend.refresh_size()?;
        Ok(self.info())
    }

    /// Checks a request of `len` bytes at `offset` before anything is
    /// allocated or sent: `EINVAL` for a read or write (`data`) longer
    /// than [`RAWSTOR_IO_MAX`], `ENXIO` past the end of the object (or
    /// of the largest offset). A range past the end this
    /// handle knows is checked again against the size kept where the
    /// object lives (another handle may have grown it): one round trip,
    /// on this path only.
    pub(crate) fn check_io(&self, what: &str, offset: u64, len: u64, data: bool) -> Result<()> {
        if data && len > RAWSTOR_IO_MAX {
            return Err(Error::invalid(format!(
                "{what} of {len} bytes is over the limit of {RAWSTOR_IO_MAX} bytes (RAWSTOR_IO_MAX): split it"
            )));
        }
        let Some(end) = offset.checked_add(len) else {
            return Err(Error::new(
                libc::ENXIO,
                format!("{what} of {len} bytes at offset {offset} ends past the largest offset"),
            ));
        };
        if end <= self.size() {
            return Ok(());
        }
        let size = self.inner.backend.refresh_size()?;
        if end <= size {
            return Ok(());
        }
        Err(Error::new(
            libc::ENXIO,
            format!(
                "{what} of {len} bytes at offset {offset} is past the end of object {} ({size} bytes)",
                self.inner.target.uuid
            ),
        ))
    }

    /// Reads `buf.len()` bytes at `offset` (`ENXIO` past the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_io("read", offset, buf.len() as u64, true)?;
        let bufs = [RawBuf::of_mut(buf)];
        let backend = &self.inner.backend;
        // The buffer outlives the wait.
        let done = backend.read_inline(offset, &bufs);
        done.unwrap_or_else(|| wait(|done| backend.read(offset, &bufs, done)))
            .map(drop)
    }

    /// Writes `buf` at `offset` (`ENXIO` past the end; never grows).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_io("write", offset, buf.len() as u64, true)?;
        let bufs = [RawBuf::of(buf)];
        let backend = &self.inner.backend;
        // The buffer outlives the wait.
        let done = backend.write_inline(offset, &bufs);
        done.unwrap_or_else(|| wait(|done| backend.write(offset, &bufs, false, done)))
            .map(drop)
    }

    /// Makes completed writes durable.
    pub fn flush(&self) -> Result<()> {
        wait(|done| self.inner.backend.simple(Opcode::Flush, 0, 0, done)).map(drop)
    }

    /// Discards a range: it reads as zeros and its space is freed.
    pub fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check_io("discard", offset, len, false)?;
        wait(|done| {
            self.inner
                .backend
                .simple(Opcode::Discard, offset, len, done)
        })
        .map(drop)
    }

    /// Changes the size; shrinking needs `allow_shrink`. Resizing to the
    /// size an object has changes nothing, so a resize whose outcome is
    /// unknown can be checked with [`Object::stat`] and asked again.
    ///
    /// A resize either happens (`Ok`) or fails saying whether it may
    /// have: when a server did not answer, the size is asked again; if it
    /// is the new one the resize happened, otherwise the error says that
    /// it may still take effect (a server that was only slow may apply a
    /// request it has already received).
    pub fn resize(&self, size: u64, allow_shrink: bool) -> Result<()> {
        let backend = &self.inner.backend;
        match backend.resize(size, allow_shrink) {
            Err(err) if outcome_unknown(&err) => match backend.refresh_size() {
                Ok(now) if now == size => Ok(()),
                _ => Err(Error::new(
                    err.errno(),
                    format!(
                        "resize of object {} to {size} bytes may or may not take effect ({err}): check its size (stat) and resize again (resizing to the size it has changes nothing)",
                        self.inner.target.uuid
                    ),
                )),
            },
            result => result,
        }
    }

    /// Block status: whether the `len` bytes at `offset` hold data
    /// (`true`) or read as zeros because nothing is stored there (never
    /// written, discarded), and for how many bytes from `offset` (at
    /// least one, at most `len`) the answer holds.
    pub fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)> {
        self.inner.backend.extent(offset, len)
    }

    /// Flushes and closes. Queue operations still running keep their
    /// own reference and finish normally.
    pub fn close(self) -> Result<()> {
        self.flush()
    }

    /// Queue operations started on this object and not yet completed.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }
}

/// Whether a failed change may still have happened: the server, or the
/// way to it, failed, not the request.
fn outcome_unknown(err: &Error) -> bool {
    matches!(
        err.errno(),
        libc::ETIMEDOUT
            | libc::ECONNRESET
            | libc::ECONNREFUSED
            | libc::ECONNABORTED
            | libc::EPIPE
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EIO
    )
}
