//! Where an object's bytes live: the one trait every object kind
//! implements — a local store object ([`crate::local::Local`]), an object
//! on a rawstor-ost ([`crate::remote::RemoteObject`]), a mirror
//! ([`crate::redundancy::mirror::Mirror`]) and an erasure-coded object
//! ([`crate::redundancy::erasure::Erasure`]). The queue, the synchronous helpers and
//! the client hold an `Arc<dyn Backend>` and never ask which kind it is;
//! a mirror's copies and an erasure-coded object's shards are the same
//! trait objects. The kind is chosen in one place,
//! [`crate::client::Instance`]'s `open_backend`.
//!
//! Operations that move data are asynchronous: they are started, and
//! their [`Finish`] runs once with the outcome (on the caller's thread
//! when the kind answers at once, else on the event loop thread or a
//! worker). Buffers are lent as [`RawBuf`]s and must stay valid, and
//! untouched by the caller, until `finish` has run.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::lent::RawBuf;
use crate::net::Connection;
use crate::redundancy::mirror::ScrubReport;
use crate::redundancy::straggler::Hurrier;
use crate::remote::Finish;
use crate::store::ObjectInfo;
use crate::wire::{Marks, Opcode};

/// Who reads the replies of an object's requests (see
/// [`crate::queue::Queue::reap`]).
pub(crate) enum Replies<'a> {
    /// Nobody: operations complete before they are started's call returns
    /// (a local file; durability barriers run on the loop thread).
    Inline,
    /// The replies of one connection: a queue whose thread waits in
    /// `reap` may read them itself.
    One(&'a std::sync::Arc<Connection>),
    /// Several connections (copies, shards): the loop thread reads them.
    Many,
}

/// Where an object's bytes live. See the module documentation.
pub(crate) trait Backend: Send + Sync {
    /// Size and layout as this handle last saw them.
    fn info(&self) -> ObjectInfo;

    /// Asks where the size is kept (the server, a good copy, the MDT's
    /// record) and keeps it as this handle's.
    fn refresh_size(&self) -> Result<u64>;

    /// Reads into `bufs` (in order) at `offset`; `finish` gets the bytes
    /// read.
    fn read(&self, offset: u64, bufs: &[RawBuf], finish: Finish);

    /// [`Backend::read`] that fails with `ETIMEDOUT` after `within`, for
    /// a caller that can ask another copy or rebuild from other shards.
    /// Kinds that answer or fail by themselves ignore `within`.
    fn read_within(&self, offset: u64, bufs: &[RawBuf], within: Duration, finish: Finish) {
        let _ = within;
        self.read(offset, bufs, finish);
    }

    /// Writes `bufs` (in order) at `offset`; with `fua`, durably before
    /// `finish` runs.
    fn write(&self, offset: u64, bufs: &[RawBuf], fua: bool, finish: Finish);

    /// For a kind whose replies are [`Replies::Inline`]: the read done
    /// on the caller's thread, its outcome returned, sparing the
    /// completion's allocation on the hottest path. `None`: start it with
    /// [`Backend::read`].
    fn read_inline(&self, offset: u64, bufs: &[RawBuf]) -> Option<Result<u64>> {
        let _ = (offset, bufs);
        None
    }

    /// [`Backend::read_inline`] for a write that is not FUA.
    fn write_inline(&self, offset: u64, bufs: &[RawBuf]) -> Option<Result<u64>> {
        let _ = (offset, bufs);
        None
    }

    /// A request that carries no data: [`Opcode::Flush`] (makes completed
    /// writes durable), [`Opcode::Discard`] or [`Opcode::WriteZeroes`] of
    /// `len` bytes at `offset`.
    fn simple(&self, op: Opcode, offset: u64, len: u64, finish: Finish);

    /// Changes the size; shrinking needs `allow_shrink`.
    fn resize(&self, size: u64, allow_shrink: bool) -> Result<()>;

    /// Block status: whether the `len` bytes at `offset` hold data, and
    /// for how many bytes from `offset` (at least one) the answer holds.
    fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)>;

    /// Verifies every copy or shard (see [`crate::Instance::scrub`]).
    /// A single copy is scrubbed as a mirror of one, which the client
    /// opens for it: this is only asked of redundant kinds.
    fn scrub(&self, repair: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<ScrubReport> {
        let _ = (repair, progress);
        Err(Error::invalid(
            "a single copy is scrubbed as a mirror of one",
        ))
    }

    /// Makes every stale copy or shard current again; returns their
    /// names. A single copy has nothing to repair.
    fn repair(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<String>> {
        let _ = progress;
        Ok(Vec::new())
    }

    /// Gives back the writer lease of an mdt:// object (waits for the
    /// MDT). Kinds without a lease have nothing to give back.
    fn release(&self) {}

    /// Who reads the replies of this object's requests.
    fn replies(&self) -> Replies<'_> {
        Replies::Many
    }

    // ---- what a single copy (a mirror's leg, a shard) does ----

    /// The mirror marks the copy carried when it was opened.
    fn marks(&self) -> Marks {
        Marks::default()
    }

    /// Records mirror marks on the copy (merged unless `replace`).
    fn set_marks(&self, marks: &Marks, replace: bool, finish: Finish) {
        let _ = (marks, replace);
        finish(Err(Error::new(
            libc::EOPNOTSUPP,
            "marks are kept by single copies",
        )));
    }

    /// Fences the copy with a lease epoch just taken (see
    /// [`crate::remote::RemoteObject::fence`]). A copy with no other
    /// writer to fence (a local file) succeeds at once.
    fn fence(&self, epoch: u64, finish: Finish) {
        let _ = epoch;
        finish(Ok(0));
    }

    /// Where the copy's changes wait, for [`crate::redundancy::straggler::Fan`]; a
    /// copy that answers or fails by itself has none.
    fn hurrier(&self) -> Option<Hurrier> {
        None
    }
}

/// A [`Backend`] shared by a handle, a queue's operations and, for
/// copies and shards, the mirror or erasure-coded object over them.
pub(crate) type DynBackend = std::sync::Arc<dyn Backend>;

/// Waits for an operation started with a [`Finish`].
pub(crate) fn wait(start: impl FnOnce(Finish)) -> Result<u64> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    start(Box::new(move |result| {
        let _ = tx.send(result);
    }));
    rx.recv()
        .unwrap_or_else(|_| Err(Error::new(libc::EIO, "the request was dropped")))
}
