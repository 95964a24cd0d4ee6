//! The write-intent journal of an object placed by a rawstor-mdt: the
//! writer lease, the regions a writer may leave half-written, the copies
//! or shards that missed changes. Mirrors and erasure-coded objects keep
//! their state there through this trait.

use std::collections::BTreeSet;

use crate::error::Result;

/// What an erasure-coded object tells its rawstor-mdt (implemented by the
/// client for objects with a record).
pub(crate) trait Journal: Send + Sync {
    /// Before a change to `len` bytes at `offset`: the writer lease is
    /// held and their regions are marked in the write-intent bitmap.
    /// When this takes the lease, returns the regions a previous writer
    /// left marked. `size` is the object's: regions marked ahead of a
    /// streaming writer stop there.
    fn before_write(&self, offset: u64, len: u64, size: u64) -> Result<Option<Vec<u64>>>;
    /// [`Journal::before_write`] when it needs no MDT: `true` (and the
    /// change counted in) when the lease is held and the regions are
    /// marked already.
    fn enter(&self, _offset: u64, _len: u64) -> bool {
        false
    }
    /// After [`Journal::enter`]: whether this write streams on from the
    /// last one towards regions not marked yet, with nobody marking them.
    /// If so, the caller runs [`Journal::mark_ahead`] on a worker, so that
    /// the writer need not stop for the MDT when it gets there.
    fn wants_ahead(&self, _offset: u64, _len: u64, _size: u64) -> bool {
        false
    }
    /// Marks the regions a streaming writer heads for, after `end`.
    fn mark_ahead(&self, _end: u64, _size: u64) {}
    /// The [`Journal::mark_ahead`] that [`Journal::wants_ahead`] asked for
    /// will not run (no worker took it): a later write may ask again.
    fn mark_ahead_skipped(&self) {}
    /// The change started by [`Journal::before_write`] is done.
    fn after_write(&self, offset: u64, len: u64);
    /// Shards that missed a write: recorded before it is acknowledged.
    fn mark_stale(&self, shards: &[usize]) -> Result<()>;
    /// A flush that started at `started` succeeded: regions idle since
    /// may be cleared (except `keep`).
    fn flushed(&self, started: std::time::Instant, keep: &BTreeSet<u64>);
    /// The object's new size.
    fn set_size(&self, size: u64) -> Result<()>;
    /// The object's size as recorded now (another handle may have
    /// resized it since this one opened).
    fn recorded_size(&self) -> Result<u64>;
    /// Repaired shards are no longer stale; resynced regions are clean.
    fn repaired(&self, shards: &[usize], regions: &[u64]) -> Result<()>;
    /// The object is closed: flushed regions are cleared, the lease goes.
    fn release(&self);
    /// The epoch of the lease last taken (0: none): the shards are fenced
    /// with it once [`Journal::before_write`] has taken the lease, and
    /// their changes name it.
    fn epoch(&self) -> u64 {
        0
    }
}
