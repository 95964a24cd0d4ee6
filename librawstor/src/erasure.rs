//! Erasure-coded objects: layout `ec:K+M` keeps an object in K data shards
//! and M parity shards, each a plain object on its own OST, and survives
//! the loss of any M of them.
//!
//! **Striping.** The object is cut into units of [`EC_UNIT`] bytes, dealt
//! round-robin over the data shards: stripe `s` is units `s*K .. s*K+K`,
//! and unit `s*K + j` lives in data shard `j` at shard offset `s*U`. Parity
//! shard `p` holds, at the same shard offset, Reed-Solomon parity of the
//! stripe's K units (reed-solomon-simd). Because the code works byte
//! position by byte position, any contiguous range of object bytes is one
//! contiguous range in each shard, and many stripes are encoded (or
//! rebuilt) in one call over those ranges. A 4 KiB read is one shard read;
//! a 1 MiB write is one write per shard.
//!
//! **Writes** cover whole stripes. Units the write does not fill are read
//! first (read-modify-write, with the other data units, not the old
//! parity: the parity is always computed from data). Writes to one stripe
//! are serialised by stripe locks. A write goes to every shard it changes;
//! a shard that misses it is recorded stale in the MDT before the write is
//! acknowledged, and is never read again until repaired. More than M
//! shards out fails the write.
//!
//! **Reads** go to the data shards. A shard that fails (down, stale,
//! checksum error) is rebuilt from any K others, under the stripe locks.
//!
//! **No write hole.** A client killed between the data and parity writes
//! of a stripe leaves them disagreeing; if a data shard were then lost,
//! rebuilding it would produce bytes nobody wrote. The MDT keeps a
//! write-intent bitmap (`dirty` regions of [`INTENT_REGION_BYTES`]): a
//! writer marks a region before its first write there and clears it after
//! a flush once the region has been idle. The next writer resyncs left-over
//! regions (parity recomputed from data) before writing. Until a region is
//! resynced, rebuilding in it fails with `EIO` instead of guessing; readers
//! that are not the writer treat regions dirty at open the same way.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::lent::{self, RawBuf};
use crate::mdt::INTENT_REGION_BYTES;
use crate::mirror::{Leg, ScrubReport};
use crate::pool::Pool;
use crate::remote::Finish;
use crate::store::{BLOCK_SIZE, ObjectInfo};
use crate::straggler::{Fan, Latency, Pieces, Slow};
use crate::uuid::Uuid;
use crate::wire::Opcode;
use std::time::{Duration, Instant};

mod recheck;
mod units;

/// Bytes of one stripe unit (per shard, per stripe).
pub const EC_UNIT: u64 = 4096;

/// Bytes of each shard's size for an object of `size` bytes over `data`
/// data shards: whole stripes.
pub fn shard_size(size: u64, data: usize) -> u64 {
    size.div_ceil(EC_UNIT * data as u64) * EC_UNIT
}

fn codec_error(err: reed_solomon_simd::Error) -> Error {
    Error::new(libc::EINVAL, format!("Reed-Solomon: {err}"))
}

/// Parity shards handed to [`Codec::encode_with`]'s caller from the stack;
/// more take a `Vec`.
const INLINE_PARITY: usize = 8;

/// Data shards, parity shards and shard bytes an encoder is set up for.
type Shape = (usize, usize, usize);

thread_local! {
    /// The thread's encoder and the shape it is set up for.
    static ENCODER: RefCell<Option<(ReedSolomonEncoder, Shape)>> = const { RefCell::new(None) };
    static DECODER: RefCell<Option<ReedSolomonDecoder>> = const { RefCell::new(None) };
}

/// Reed-Solomon over K data and M parity shards of equal, even length.
/// Encoders and decoders are kept per thread and reused.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    data: usize,
    parity: usize,
}

impl Codec {
    pub fn new(data: usize, parity: usize) -> Result<Self> {
        if data == 0 || parity == 0 || !ReedSolomonEncoder::supports(data, parity) {
            return Err(Error::invalid(format!(
                "ec:{data}+{parity} is not a supported Reed-Solomon code"
            )));
        }
        Ok(Self { data, parity })
    }

    /// Encodes the data shards and hands the parity shards to `use_parity`
    /// (borrowed from the encoder: no copy).
    pub fn encode_with<R>(
        &self,
        data: &[&[u8]],
        use_parity: impl FnOnce(&[&[u8]]) -> R,
    ) -> Result<R> {
        let len = data.first().map_or(0, |d| d.len());
        let shape = (self.data, self.parity, len);
        ENCODER.with_borrow_mut(|slot| {
            let encoder = match slot {
                // An encoder is ready for more of the same after each
                // encode: only another shape needs a reset.
                Some((encoder, current)) if *current == shape => encoder,
                Some((encoder, current)) => {
                    encoder
                        .reset(self.data, self.parity, len)
                        .map_err(codec_error)?;
                    *current = shape;
                    encoder
                }
                None => {
                    let encoder = ReedSolomonEncoder::new(self.data, self.parity, len)
                        .map_err(codec_error)?;
                    &mut slot.insert((encoder, shape)).0
                }
            };
            let added = data
                .iter()
                .try_for_each(|shard| encoder.add_original_shard(shard));
            if let Err(err) = added {
                // The next encode starts from a new encoder.
                *slot = None;
                return Err(codec_error(err));
            }
            // Dropping the result readies the encoder for the next one.
            let failed = match encoder.encode() {
                Ok(result) => {
                    // Most layouts' parity shards, without an allocation
                    // per encode.
                    let mut few: [&[u8]; INLINE_PARITY] = [&[]; INLINE_PARITY];
                    if self.parity <= few.len() {
                        for (slot, shard) in few.iter_mut().zip(result.recovery_iter()) {
                            *slot = shard;
                        }
                        return Ok(use_parity(&few[..self.parity]));
                    }
                    let parity: Vec<&[u8]> = result.recovery_iter().collect();
                    return Ok(use_parity(&parity));
                }
                Err(err) => err,
            };
            *slot = None;
            Err(codec_error(failed))
        })
    }

    /// The shards `want` (indexes: data `0..K`, parity `K..K+M`) rebuilt
    /// from `present` (at least K other shards, each `(index, bytes)`).
    pub fn rebuild(&self, present: &[(usize, &[u8])], want: &[usize]) -> Result<Vec<Vec<u8>>> {
        let k = self.data;
        let len = present.first().map_or(0, |(_, b)| b.len());
        if present.len() < k {
            return Err(Error::new(
                libc::EIO,
                format!("{} shards to rebuild from, {k} needed", present.len()),
            ));
        }
        let mut data: Vec<Option<Vec<u8>>> = vec![None; k];
        for &(i, bytes) in present.iter().filter(|(i, _)| *i < k) {
            data[i] = Some(bytes.to_vec());
        }
        if data.iter().any(Option::is_none) {
            DECODER.with_borrow_mut(|slot| -> Result<()> {
                let decoder = match slot {
                    Some(decoder) => {
                        decoder.reset(k, self.parity, len).map_err(codec_error)?;
                        decoder
                    }
                    None => slot
                        .insert(ReedSolomonDecoder::new(k, self.parity, len).map_err(codec_error)?),
                };
                for &(i, bytes) in present.iter().take(k) {
                    if i < k {
                        decoder.add_original_shard(i, bytes).map_err(codec_error)?;
                    } else {
                        decoder
                            .add_recovery_shard(i - k, bytes)
                            .map_err(codec_error)?;
                    }
                }
                let result = decoder.decode().map_err(codec_error)?;
                for (i, restored) in result.restored_original_iter() {
                    data[i] = Some(restored.to_vec());
                }
                Ok(())
            })?;
        }
        let data: Vec<Vec<u8>> = data
            .into_iter()
            .map(|d| d.ok_or_else(|| Error::new(libc::EIO, "a data shard was not rebuilt")))
            .collect::<Result<_>>()?;
        let parity = if want.iter().any(|&i| i >= k) {
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            self.encode_with(&refs, |p| p.iter().map(|s| s.to_vec()).collect())?
        } else {
            Vec::new()
        };
        Ok(want
            .iter()
            .map(|&i| {
                if i < k {
                    data[i].clone()
                } else {
                    parity[i - k].clone()
                }
            })
            .collect())
    }
}

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

/// Locks on ranges of stripes: writes (and rebuilding reads) of
/// overlapping stripes run one at a time.
#[derive(Default)]
struct StripeLocks {
    held: Mutex<Vec<(u64, u64)>>,
    freed: Condvar,
}

struct StripeGuard<'a> {
    locks: &'a StripeLocks,
    range: (u64, u64),
}

impl StripeLocks {
    fn lock(&self, first: u64, end: u64) -> StripeGuard<'_> {
        let mut held = self.held.lock();
        while held.iter().any(|&(a, b)| a < end && first < b) {
            self.freed.wait(&mut held);
        }
        held.push((first, end));
        StripeGuard {
            locks: self,
            range: (first, end),
        }
    }

    /// Locks `first..end` if no other holder overlaps it, without waiting;
    /// the caller unlocks it with [`StripeLocks::unlock`].
    fn try_lock(&self, first: u64, end: u64) -> bool {
        let mut held = self.held.lock();
        if held.iter().any(|&(a, b)| a < end && first < b) {
            return false;
        }
        held.push((first, end));
        true
    }

    fn unlock(&self, range: (u64, u64)) {
        let mut held = self.held.lock();
        if let Some(i) = held.iter().position(|&r| r == range) {
            held.swap_remove(i);
        }
        self.freed.notify_all();
    }
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        self.locks.unlock(self.range);
    }
}

/// Object bytes in one data shard: `len` bytes at `shard_offset`, at
/// `pos` bytes into the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    shard: usize,
    shard_offset: u64,
    pos: u64,
    len: u64,
}

/// Errors that another shard would repeat: the caller's, not the shard's.
fn caller_error(err: &Error) -> bool {
    matches!(
        err.errno(),
        libc::ENXIO | libc::EINVAL | libc::ERANGE | libc::ENOLCK
    )
}

/// Bytes a scrub or repair handles per shard at a time.
const STEP_BYTES: u64 = 1 << 20;
/// Zeros written at a time by discards of partial stripes.
const ZERO_BYTES: usize = 1 << 20;

/// An erasure-coded object open in this instance.
pub(crate) struct Erasure {
    /// Itself, for the operations that outlive a call.
    me: Weak<Self>,
    uuid: Uuid,
    codec: Codec,
    chunk_size: u64,
    size: AtomicU64,
    /// Shard names (`ost-id:<uuid>`) and their legs; `None` for shards
    /// that could not be opened. Data shards first, then parity.
    shards: Vec<(String, Option<Leg>)>,
    /// Shards that missed writes (from the record, then as seen).
    stale: Mutex<Vec<bool>>,
    /// Each shard's last failure of its own (not the caller's), for the
    /// message of a change that more shards missed than the layout
    /// survives.
    failures: Mutex<Vec<Option<Error>>>,
    /// Regions where rebuilding is refused: dirty at open (another writer
    /// may be mid-stripe) or left by a dead writer and not resyncable.
    suspect: Mutex<BTreeSet<u64>>,
    locks: StripeLocks,
    /// Shard rows of finished writes, kept for the next ones.
    spare: SpareRows,
    /// Writes started by [`Erasure::write_now`] and not yet finished.
    writing: AtomicUsize,
    journal: Arc<dyn Journal>,
    pool: Arc<Pool>,
    /// How long the shards take to answer a change, and a read.
    changes: Arc<Latency>,
    flushes: Arc<Latency>,
    reads: Latency,
    /// Shards that let a read time out lately: left out of reads.
    slow: Slow,
    /// The shards' names and servers, for [`Fan`].
    pieces: Pieces,
}

impl Erasure {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        uuid: Uuid,
        codec: Codec,
        size: u64,
        chunk_size: u64,
        shards: Vec<(String, Result<Leg>)>,
        stale: &[usize],
        dirty: &[u64],
        journal: Arc<dyn Journal>,
        pool: Arc<Pool>,
        straggler: Duration,
    ) -> Result<Arc<Self>> {
        let mut marks = vec![false; shards.len()];
        for &i in stale {
            if let Some(m) = marks.get_mut(i) {
                *m = true;
            }
        }
        let shards: Vec<(String, Option<Leg>)> = shards
            .into_iter()
            .map(|(name, leg)| {
                if let Err(e) = &leg {
                    crate::log::warn(&format!(
                        "shard {name} of object {uuid} is unavailable: {e}"
                    ));
                }
                (name, leg.ok())
            })
            .collect();
        let usable = shards
            .iter()
            .zip(&marks)
            .filter(|((_, leg), st)| leg.is_some() && !**st)
            .count();
        if usable < codec.data {
            return Err(Error::new(
                libc::EIO,
                format!(
                    "object {uuid}: only {usable} of its {} shards are usable, {} are needed (bring OSTs back, then run 'rawstor repair')",
                    shards.len(),
                    codec.data
                ),
            ));
        }
        let shard_count = marks.len();
        let pieces = crate::mirror::pieces(&shards);
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            uuid,
            codec,
            chunk_size,
            size: AtomicU64::new(size),
            shards,
            failures: Mutex::new(vec![None; marks.len()]),
            stale: Mutex::new(marks),
            suspect: Mutex::new(dirty.iter().copied().collect()),
            locks: StripeLocks::default(),
            spare: SpareRows::default(),
            writing: AtomicUsize::new(0),
            journal,
            pool,
            changes: Arc::new(Latency::new(straggler)),
            flushes: Arc::new(Latency::new(straggler)),
            reads: Latency::new(straggler),
            slow: Slow::new(shard_count),
            pieces,
        }))
    }

    /// The object, shared, while it is in use (it always is when asked).
    fn me(&self) -> Arc<Self> {
        self.me
            .upgrade()
            .expect("an erasure-coded object in use is alive")
    }

    /// Shards that let a read time out lately (left out of reads).
    fn slow_shards(&self) -> Vec<usize> {
        self.slow.now()
    }

    /// A change to shard `i` failed for a reason of the shard's: logged and
    /// kept for [`Erasure::settle`].
    fn shard_failed(&self, i: usize, what: &str, err: &Error) {
        crate::log::warn(&format!(
            "{what} shard {} of object {} failed: {err}",
            self.shards[i].0, self.uuid
        ));
        self.failures.lock()[i] = Some(err.clone());
    }

    fn k(&self) -> usize {
        self.codec.data
    }

    fn stripe_bytes(&self) -> u64 {
        EC_UNIT * self.k() as u64
    }

    /// Which shards are stale, as this opening sees it.
    pub(crate) fn stale_shards(&self) -> Vec<usize> {
        let stale = self.stale.lock();
        (0..stale.len()).filter(|&i| stale[i]).collect()
    }

    fn usable(&self, i: usize) -> Option<&Leg> {
        if self.stale.lock()[i] {
            return None;
        }
        self.shards[i].1.as_ref()
    }

    fn check_range(&self, what: &str, offset: u64, len: u64) -> Result<()> {
        let size = self.size.load(Ordering::Acquire);
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::new(
                libc::ENXIO,
                format!(
                    "{what} of {len} bytes at offset {offset} is past the end of object {} ({size} bytes)",
                    self.uuid
                ),
            ));
        }
        Ok(())
    }

    /// The pieces of object bytes `offset..offset+len`.
    fn pieces(&self, offset: u64, len: u64) -> Vec<Piece> {
        let k = self.k() as u64;
        let mut pieces = Vec::new();
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let unit = at / EC_UNIT;
            let within = at % EC_UNIT;
            let n = (EC_UNIT - within).min(end - at);
            pieces.push(Piece {
                shard: (unit % k) as usize,
                shard_offset: (unit / k) * EC_UNIT + within,
                pos: at - offset,
                len: n,
            });
            at += n;
        }
        pieces
    }

    /// Per data shard, the shard range the pieces cover (contiguous).
    fn spans(&self, pieces: &[Piece]) -> Vec<Option<(u64, u64)>> {
        let mut spans: Vec<Option<(u64, u64)>> = vec![None; self.k()];
        for p in pieces {
            let end = p.shard_offset + p.len;
            spans[p.shard] = Some(match spans[p.shard] {
                None => (p.shard_offset, end),
                Some((a, b)) => (a.min(p.shard_offset), b.max(end)),
            });
        }
        spans
    }

    fn mark_stale(&self, missed: &[usize]) -> Result<()> {
        {
            let mut stale = self.stale.lock();
            for &i in missed {
                stale[i] = true;
            }
        }
        for &i in missed {
            crate::log::warn(&format!(
                "shard {} of object {} missed a write; it is marked stale until repaired",
                self.shards[i].0, self.uuid
            ));
        }
        self.journal.mark_stale(missed).map_err(|e| {
            Error::new(
                libc::EIO,
                format!(
                    "object {}: a shard missed a write and the MDT could not record it: {e}",
                    self.uuid
                ),
            )
        })
    }

    /// Starts `start` on shard `i` if it is still usable; otherwise `done`
    /// gets `EHOSTDOWN` at once.
    fn on_usable(&self, i: usize, done: Finish, start: impl FnOnce(&Leg, Finish)) {
        match self.usable(i) {
            Some(leg) => start(leg, done),
            None => done(Err(Error::new(
                libc::EHOSTDOWN,
                format!("shard {} went stale", self.shards[i].0),
            ))),
        }
    }

    /// The ranges `(data shard, lo, hi)` of the shard rows `base..base +
    /// row` that a write covering `spans` does not fill: read before the
    /// parity can be computed.
    fn uncovered(
        &self,
        spans: &[Option<(u64, u64)>],
        base: u64,
        row: u64,
    ) -> Vec<(usize, u64, u64)> {
        let mut need = Vec::new();
        for (j, span) in spans.iter().enumerate() {
            match *span {
                None => need.push((j, base, base + row)),
                Some((a, b)) => {
                    if a > base {
                        need.push((j, base, a));
                    }
                    if b < base + row {
                        need.push((j, b, base + row));
                    }
                }
            }
        }
        need
    }

    /// The common case of a read, started without a worker: every data
    /// shard it needs is up, and each reads straight into the caller's
    /// buffers; the last shard's completion finishes it on the event loop
    /// thread. When a shard fails, the read is done again on a worker by
    /// [`Erasure::read_sync`], without that shard (rebuilt from the
    /// others). Anything else gives `finish` back.
    fn read_now(
        self: &Arc<Self>,
        offset: u64,
        bufs: &[RawBuf],
        finish: Finish,
    ) -> std::result::Result<(), Finish> {
        let len = lent::total(bufs);
        if len == 0 || self.check_range("read", offset, len).is_err() {
            return Err(finish);
        }
        let pieces = self.pieces(offset, len);
        let spans = self.spans(&pieces);
        let shards: Vec<usize> = (0..self.k()).filter(|&j| spans[j].is_some()).collect();
        let slow = self.slow_shards();
        if shards
            .iter()
            .any(|&j| self.usable(j).is_none() || slow.contains(&j))
        {
            return Err(finish);
        }
        // With shards to rebuild from, a shard slower than its peers lately
        // have been is given up on, and its part rebuilt from the others.
        let spare = (0..self.shards.len())
            .filter(|&i| self.usable(i).is_some())
            .count()
            > self.k();
        let within = self.reads.wait();
        let mut targets: Vec<Vec<RawBuf>> = (0..self.k()).map(|_| Vec::new()).collect();
        for p in &pieces {
            lent::slice(bufs, p.pos, p.len, &mut targets[p.shard]);
        }
        let read = Arc::new(ShardRead {
            erasure: Arc::clone(self),
            began: Instant::now(),
            offset,
            bufs: Mutex::new(bufs.to_vec()),
            outcomes: Outcomes::new(shards.len()),
            finish: Mutex::new(Some(finish)),
        });
        for j in shards {
            let shard = Arc::clone(&read);
            let at = spans[j].expect("read shards have spans").0;
            self.on_usable(
                j,
                Box::new(move |result| shard.shard_done(j, result)),
                |leg, done| match spare {
                    true => leg.read_within(at, &targets[j], within, done),
                    false => leg.read(at, &targets[j], done),
                },
            );
        }
        Ok(())
    }

    /// The common case of a write, started without a worker waiting for
    /// it: every shard up, the lease held, the regions marked and the
    /// stripes free (all checked here, on the caller's thread). What the
    /// write does not cover of its stripes is read from the data shards
    /// first, without a worker waiting (a write of whole stripes reads
    /// nothing); then a worker deals the data out, encodes it and starts
    /// the shard writes, and is free again (a write of whole stripes with
    /// no other write of the object in flight does that on the caller's
    /// thread, which would only wait); the last shard's completion
    /// finishes the write on the event loop thread. When one of those
    /// reads fails, the write is done by [`Erasure::write_sync`] instead,
    /// which rebuilds what it cannot read. Anything else gives `finish`
    /// back, for [`Erasure::write_sync`] on a worker.
    fn write_now(
        self: &Arc<Self>,
        offset: u64,
        bufs: &[RawBuf],
        fua: bool,
        finish: Finish,
    ) -> std::result::Result<(), Finish> {
        let len = lent::total(bufs);
        if len == 0
            || self.check_range("write", offset, len).is_err()
            || (0..self.shards.len()).any(|i| self.usable(i).is_none())
        {
            return Err(finish);
        }
        let stripe = self.stripe_bytes();
        let stripes = (offset / stripe, (offset + len).div_ceil(stripe));
        if !self.locks.try_lock(stripes.0, stripes.1) {
            return Err(finish);
        }
        if !self.journal.enter(offset, len) {
            self.locks.unlock(stripes);
            return Err(finish);
        }
        let base = stripes.0 * EC_UNIT;
        let row = (stripes.1 - stripes.0) * EC_UNIT;
        let pieces = self.pieces(offset, len);
        let spans = self.spans(&pieces);
        let need = self.uncovered(&spans, base, row);
        let within = self.reads.wait();
        let write = Arc::new(StripeWrite {
            erasure: Arc::clone(self),
            offset,
            len,
            stripes,
            pieces,
            spans,
            bufs: Mutex::new(bufs.to_vec()),
            fua,
            rows: Mutex::new(self.spare.take(self.shards.len(), row as usize)),
            outcomes: Outcomes::new(need.len()),
            fan: Mutex::new(None),
            finish: Mutex::new(Some(finish)),
        });
        let alone = self.writing.fetch_add(1, Ordering::AcqRel) == 0;
        if need.is_empty() && alone {
            // The caller has no other write of this object in flight (one
            // at a time, as at queue depth 1): it would only wait, so its
            // thread encodes and sends, without a worker's wake-up.
            write.encode_and_send();
        } else if need.is_empty() {
            self.pool.run(move || write.encode_and_send());
        } else {
            let targets: Vec<RawBuf> = {
                let mut rows = write.rows.lock();
                need.iter()
                    .map(|&(j, a, b)| {
                        RawBuf::of_mut(&mut rows[j][(a - base) as usize..(b - base) as usize])
                    })
                    .collect()
            };
            for (&(j, a, _), target) in need.iter().zip(targets) {
                let shard = Arc::clone(&write);
                // The rows stay in `write`, untouched but by these reads.
                self.on_usable(
                    j,
                    Box::new(move |result| shard.unit_read(j, result)),
                    // Every shard is usable here: one that is slow to
                    // answer is given up on, and write_sync rebuilds.
                    |leg, done| leg.read_within(a, std::slice::from_ref(&target), within, done),
                );
            }
        }
        let size = self.size.load(Ordering::Acquire);
        if self.journal.wants_ahead(offset, len, size) {
            let journal = Arc::clone(&self.journal);
            self.pool
                .run(move || journal.mark_ahead(offset + len, size));
        }
        Ok(())
    }

    // ---- blocking implementations ----

    pub(crate) fn read_sync(&self, offset: u64, bufs: &[RawBuf]) -> Result<u64> {
        self.read_sync_without(offset, bufs, &self.slow_shards())
    }

    /// [`Erasure::read_sync`], rebuilding the data shards `skip` (seen to
    /// fail already) rather than reading them.
    fn read_sync_without(&self, offset: u64, bufs: &[RawBuf], skip: &[usize]) -> Result<u64> {
        let len = lent::total(bufs);
        self.check_range("read", offset, len)?;
        if len == 0 {
            return Ok(0);
        }
        let pieces = self.pieces(offset, len);
        let spans = self.spans(&pieces);
        let mut targets: Vec<Vec<RawBuf>> = (0..self.k()).map(|_| Vec::new()).collect();
        for p in &pieces {
            lent::slice(bufs, p.pos, p.len, &mut targets[p.shard]);
        }
        let (started, mut failed): (Vec<usize>, Vec<usize>) = (0..self.k())
            .filter(|&j| spans[j].is_some())
            .partition(|&j| self.usable(j).is_some() && !skip.contains(&j));
        let results = self.run_on(&started, |k, leg, f| {
            let j = started[k];
            leg.read(
                spans[j].expect("started shards have spans").0,
                &targets[j],
                f,
            )
        });
        for (j, result) in started.iter().copied().zip(results) {
            match result {
                Ok(_) => {}
                Err(err) if caller_error(&err) => return Err(err),
                Err(err) => {
                    self.read_failed(j, &err);
                    failed.push(j);
                }
            }
        }
        if failed.is_empty() {
            return Ok(len);
        }
        let lo = failed
            .iter()
            .filter_map(|&j| spans[j].map(|s| s.0))
            .min()
            .expect("failed shards have spans");
        let hi = failed
            .iter()
            .filter_map(|&j| spans[j].map(|s| s.1))
            .max()
            .expect("failed shards have spans");
        let (lo, hi) = (lo / EC_UNIT * EC_UNIT, hi.div_ceil(EC_UNIT) * EC_UNIT);
        let _guard = self.locks.lock(lo / EC_UNIT, hi / EC_UNIT);
        let rebuilt = self.rebuild(&failed, lo, hi, false)?;
        for p in pieces.iter() {
            if let Some(r) = failed.iter().position(|&j| j == p.shard) {
                let at = (p.shard_offset - lo) as usize;
                // SAFETY: the caller lends `bufs`, writable, for the read.
                unsafe { lent::scatter(bufs, p.pos, &rebuilt[r][at..at + p.len as usize]) };
            }
        }
        Ok(len)
    }

    /// Refuses to rebuild shard range `lo..hi` when it touches a suspect
    /// region (a writer may have left its stripes half-written).
    fn check_rebuildable(&self, lo: u64, hi: u64) -> Result<()> {
        let suspect = self.suspect.lock();
        if suspect.is_empty() {
            return Ok(());
        }
        let first = lo / EC_UNIT * self.stripe_bytes() / INTENT_REGION_BYTES;
        let last = (hi.max(lo + 1) - 1) / EC_UNIT * self.stripe_bytes() / INTENT_REGION_BYTES;
        if let Some(region) = suspect.range(first..=last).next() {
            return Err(Error::new(
                libc::EIO,
                format!(
                    "object {}: bytes from {} on need a shard rebuilt, but a writer may have left those stripes half-written (write-intent region {region} is not resynced): refusing to guess; bring the shard back, then run 'rawstor repair'",
                    self.uuid,
                    region * INTENT_REGION_BYTES
                ),
            ));
        }
        Ok(())
    }

    /// Starts `start(k, leg, finish)` for the k-th shard of `shards` and
    /// waits for all of them; results in order. A shard that is not open
    /// fails with `EHOSTDOWN`.
    fn run_on(&self, shards: &[usize], start: impl Fn(usize, &Leg, Finish)) -> Vec<Result<u64>> {
        self.run_on_fanned(shards, None, start)
    }

    /// [`Erasure::run_on`] for changes and flushes: a shard that lags
    /// behind the others fails after a short while more (see
    /// [`crate::straggler`]), for the caller to settle without it.
    fn run_on_changes(
        &self,
        shards: &[usize],
        flush: bool,
        start: impl Fn(usize, &Leg, Finish),
    ) -> Vec<Result<u64>> {
        let fan = Arc::new(self.fan(shards, flush));
        self.run_on_fanned(shards, Some(&fan), start)
    }

    /// A [`Fan`] over `shards`.
    /// Flushes, which take as long as the dirty data, have their own
    /// average.
    fn fan(&self, shards: &[usize], flush: bool) -> Fan {
        let latency = if flush { &self.flushes } else { &self.changes };
        Fan::new(Arc::clone(latency), &self.pieces, shards.to_vec())
    }

    fn run_on_fanned(
        &self,
        shards: &[usize],
        fan: Option<&Arc<Fan>>,
        start: impl Fn(usize, &Leg, Finish),
    ) -> Vec<Result<u64>> {
        let start = &start;
        let watched = |k: usize, f: Finish| -> Finish {
            match fan {
                Some(fan) => {
                    let fan = Arc::clone(fan);
                    Box::new(move |result| {
                        fan.answered(k, result.is_ok());
                        f(result)
                    })
                }
                None => f,
            }
        };
        let starts: Vec<Box<dyn FnOnce(Finish) + '_>> = shards
            .iter()
            .enumerate()
            .map(|(k, &i)| -> Box<dyn FnOnce(Finish) + '_> {
                match &self.shards[i].1 {
                    Some(leg) => Box::new(move |f| start(k, leg, watched(k, f))),
                    None => Box::new(move |f| {
                        watched(k, f)(Err(Error::new(
                            libc::EHOSTDOWN,
                            format!("shard {} is unreachable", self.shards[i].0),
                        )))
                    }),
                }
            })
            .collect();
        crate::pool::wait_all_with(starts, || {
            if let Some(fan) = fan {
                fan.started_all();
            }
        })
    }

    /// Reads `(shard, shard offset, into)` from each shard at once.
    fn read_shards(&self, reads: &[(usize, u64, RawBuf)]) -> Vec<Result<u64>> {
        self.read_shards_within(reads, None)
    }

    /// [`Erasure::read_shards`]; with `within`, a read not answered by
    /// then fails with `ETIMEDOUT` (for callers that can rebuild it).
    fn read_shards_within(
        &self,
        reads: &[(usize, u64, RawBuf)],
        within: Option<Duration>,
    ) -> Vec<Result<u64>> {
        let shards: Vec<usize> = reads.iter().map(|r| r.0).collect();
        self.run_on(&shards, |k, leg, f| {
            let (at, into) = (reads[k].1, std::slice::from_ref(&reads[k].2));
            match within {
                Some(within) => leg.read_within(at, into, within, f),
                None => leg.read(at, into, f),
            }
        })
    }

    /// A shard read failed for a reason of the shard's: logged, and a
    /// shard that says it is stale is not read again.
    fn read_failed(&self, i: usize, err: &Error) {
        crate::log::warn(&format!(
            "read of shard {} of object {} failed ({err}); rebuilding it from the others",
            self.shards[i].0, self.uuid
        ));
        if err.errno() == libc::ESTALE {
            self.stale.lock()[i] = true;
        }
        if err.errno() == libc::ETIMEDOUT {
            self.slow.mark(i);
        }
    }

    /// Shards `want` over shard range `lo..hi` (whole units), rebuilt from
    /// K other usable shards. The caller holds the stripe locks.
    /// When no K shards read the range whole but some answered with bad
    /// data, the range is rebuilt unit by unit instead
    /// ([`Erasure::rebuild_by_unit`], which `mend`s what it finds bad).
    fn rebuild(&self, want: &[usize], lo: u64, hi: u64, mend: bool) -> Result<Vec<Vec<u8>>> {
        self.check_rebuildable(lo, hi)?;
        let len = (hi - lo) as usize;
        let k = self.k();
        let mut candidates: Vec<usize> = (0..self.shards.len())
            .filter(|i| !want.contains(i) && self.usable(*i).is_some())
            .collect();
        // Shards slow to answer lately are read last.
        let slow = self.slow_shards();
        candidates.sort_by_key(|i| slow.contains(i));
        let mut present: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut errors = Vec::new();
        let mut corrupt = false;
        while present.len() < k && !candidates.is_empty() {
            let take: Vec<usize> = candidates
                .drain(..(k - present.len()).min(candidates.len()))
                .collect();
            let mut bufs: Vec<Vec<u8>> = take.iter().map(|_| vec![0u8; len]).collect();
            let reads: Vec<(usize, u64, RawBuf)> = take
                .iter()
                .zip(bufs.iter_mut())
                .map(|(&i, b)| (i, lo, RawBuf::of_mut(b)))
                .collect();
            let results = self.read_shards(&reads);
            for ((i, buf), result) in take.into_iter().zip(bufs).zip(results) {
                match result {
                    Ok(_) => present.push((i, buf)),
                    Err(err) => {
                        if err.errno() == libc::ESTALE {
                            self.stale.lock()[i] = true;
                        }
                        corrupt |= err.errno() == libc::EIO;
                        errors.push(format!("{}: {err}", self.shards[i].0));
                    }
                }
            }
        }
        if present.len() < k && (corrupt || want.iter().any(|&i| self.usable(i).is_some())) {
            drop(present);
            return self.rebuild_by_unit(want, lo, hi, mend);
        }
        if present.len() < k {
            let why = if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            };
            return Err(Error::new(
                libc::EIO,
                format!(
                    "object {}: cannot rebuild shard bytes {lo}..{hi}: {} of the {k} shards needed could be read{why}",
                    self.uuid,
                    present.len(),
                ),
            ));
        }
        let refs: Vec<(usize, &[u8])> = present.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        self.codec.rebuild(&refs, want)
    }

    /// Fills `data[j][lo-base..hi-base]` for each `(j, lo, hi)` from data
    /// shard `j`; what cannot be read is rebuilt, or, when `rebuild` is
    /// false (stripes that may be half-written), fails. Stripe locks are
    /// held.
    fn read_ranges(
        &self,
        need: &[(usize, u64, u64)],
        data: &mut [Vec<u8>],
        base: u64,
        rebuild: bool,
    ) -> Result<()> {
        let (readable, mut failed): (Vec<_>, Vec<_>) = need
            .iter()
            .copied()
            .partition(|&(j, _, _)| self.usable(j).is_some());
        let reads: Vec<(usize, u64, RawBuf)> = readable
            .iter()
            .map(|&(j, lo, hi)| {
                (
                    j,
                    lo,
                    RawBuf::of_mut(&mut data[j][(lo - base) as usize..(hi - base) as usize]),
                )
            })
            .collect();
        // What is rebuilt when it cannot be read need not wait for a shard
        // slower than its peers lately have been.
        let within = rebuild.then(|| self.reads.wait());
        for (&(j, lo, hi), result) in readable.iter().zip(self.read_shards_within(&reads, within)) {
            match result {
                Ok(_) => {}
                Err(err) if caller_error(&err) => return Err(err),
                Err(err) => {
                    self.read_failed(j, &err);
                    failed.push((j, lo, hi));
                }
            }
        }
        if let (false, Some(&(j, lo, _))) = (rebuild, failed.first()) {
            return Err(Error::new(
                libc::EIO,
                format!(
                    "object {}: shard {} cannot be read at {lo} and these stripes may be half-written",
                    self.uuid, self.shards[j].0
                ),
            ));
        }
        for (j, lo, hi) in failed {
            let (alo, ahi) = (lo / EC_UNIT * EC_UNIT, hi.div_ceil(EC_UNIT) * EC_UNIT);
            let rebuilt = self.rebuild(&[j], alo, ahi, false)?;
            data[j][(lo - base) as usize..(hi - base) as usize]
                .copy_from_slice(&rebuilt[0][(lo - alo) as usize..(hi - alo) as usize]);
        }
        Ok(())
    }

    /// Resyncs regions a previous writer left marked: parity recomputed
    /// from the data shards. Regions that cannot be (a data shard is out)
    /// stay suspect. Returns the regions resynced.
    fn resync(&self, regions: &[u64]) -> Vec<u64> {
        let mut done = Vec::new();
        let stripe = self.stripe_bytes();
        let size = self.size.load(Ordering::Acquire);
        for &region in regions {
            let start = region * INTENT_REGION_BYTES;
            if start >= size {
                done.push(region);
                continue;
            }
            let end = (start + INTENT_REGION_BYTES).min(size.div_ceil(stripe) * stripe);
            let (lo, hi) = (start / stripe * EC_UNIT, end / stripe * EC_UNIT);
            let _guard = self.locks.lock(lo / EC_UNIT, hi / EC_UNIT);
            let outcome = (0..self.k())
                .all(|j| self.usable(j).is_some())
                .then(|| self.rewrite_parity(lo, hi));
            match outcome {
                Some(Ok(())) => {
                    self.suspect.lock().remove(&region);
                    done.push(region);
                }
                Some(Err(err)) => crate::log::warn(&format!(
                    "object {}: write-intent region {region} could not be resynced: {err}",
                    self.uuid
                )),
                None => {
                    crate::log::warn(&format!(
                        "object {}: write-intent region {region} was left by a writer that stopped, and a data shard is out: it stays unrebuildable until 'rawstor repair'",
                        self.uuid
                    ));
                    self.suspect.lock().insert(region);
                }
            }
        }
        done
    }

    /// Reads the data shards over `lo..hi` and rewrites the parity from
    /// them (stripe locks held; every data shard usable).
    fn rewrite_parity(&self, lo: u64, hi: u64) -> Result<()> {
        let k = self.k();
        let mut data: Vec<Vec<u8>> = (0..k).map(|_| vec![0u8; (hi - lo) as usize]).collect();
        let need: Vec<(usize, u64, u64)> = (0..k).map(|j| (j, lo, hi)).collect();
        // The stripes are suspect: read, never rebuild.
        self.read_ranges(&need, &mut data, lo, false)?;
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let missed = self.codec.encode_with(&refs, |parity| {
            let parity_shards: Vec<usize> = (k..self.shards.len()).collect();
            self.write_shards(
                parity_shards
                    .iter()
                    .zip(parity)
                    .map(|(&i, p)| (i, lo, *p))
                    .collect(),
                false,
            )
        })??;
        self.settle(&missed)
    }

    /// Writes `(shard, shard offset, bytes)` to each usable shard in
    /// parallel. Returns the shards that missed their write (out, stale
    /// or failed), or a caller error.
    fn write_shards(&self, writes: Vec<(usize, u64, &[u8])>, fua: bool) -> Result<Vec<usize>> {
        let (live, out): (Vec<_>, Vec<_>) = writes
            .into_iter()
            .partition(|(i, _, _)| self.usable(*i).is_some());
        let mut missed: Vec<usize> = out.iter().map(|w| w.0).collect();
        let shards: Vec<usize> = live.iter().map(|w| w.0).collect();
        let raws: Vec<RawBuf> = live.iter().map(|w| RawBuf::of(w.2)).collect();
        let results = self.run_on_changes(&shards, false, |k, leg, f| {
            leg.write(live[k].1, std::slice::from_ref(&raws[k]), fua, f)
        });
        for (&i, result) in shards.iter().zip(results) {
            match result {
                Ok(_) => {}
                Err(err) if caller_error(&err) => return Err(err),
                Err(err) => {
                    self.shard_failed(i, "write to", &err);
                    missed.push(i);
                }
            }
        }
        Ok(missed)
    }

    /// [`Journal::before_write`]; when it took the lease, the shards are
    /// fenced with it, and the regions the previous writer left become
    /// the only suspect ones (those seen at open may have been cleared
    /// since), and are returned.
    fn begin_write(&self, offset: u64, len: u64) -> Result<Vec<u64>> {
        if self.journal.enter(offset, len) {
            return Ok(Vec::new());
        }
        let size = self.size.load(Ordering::Acquire);
        let Some(left) = self.journal.before_write(offset, len, size)? else {
            return Ok(Vec::new());
        };
        if let Err(err) = self.fence() {
            self.journal.after_write(offset, len);
            return Err(err);
        }
        *self.suspect.lock() = left.iter().copied().collect();
        Ok(left)
    }

    /// Fences the shards that are not stale with the lease just taken;
    /// those that cannot be fenced are marked stale.
    fn fence(&self) -> Result<()> {
        let stale = self.stale.lock().clone();
        let good: Vec<usize> = (0..self.shards.len()).filter(|&i| !stale[i]).collect();
        let epoch = self.journal.epoch();
        let failed = crate::mirror::fence_legs(&self.shards, &good, epoch, self.uuid)?;
        let unfenced: Vec<usize> = failed.into_iter().map(|(i, _)| i).collect();
        self.settle(&unfenced)
    }

    /// Resyncs what a previous writer left, once, before this one writes.
    fn prepare_write(&self, offset: u64, len: u64) -> Result<()> {
        let left = self.begin_write(offset, len)?;
        if !left.is_empty() {
            let resynced = self.resync(&left);
            self.journal.repaired(&[], &resynced)?;
        }
        Ok(())
    }

    pub(crate) fn write_sync(&self, offset: u64, bufs: &[RawBuf], fua: bool) -> Result<u64> {
        let len = lent::total(bufs);
        self.check_range("write", offset, len)?;
        if len == 0 {
            return Ok(0);
        }
        self.prepare_write(offset, len)?;
        let result = self.write_stripes(offset, len, fua, |pos, out| {
            // SAFETY: the caller lends `bufs` for the write.
            unsafe { lent::gather(bufs, pos, out) }
        });
        self.journal.after_write(offset, len);
        result.map(|()| len)
    }

    /// Writes `len` bytes at `offset`, taking them from `fill(pos, out)`:
    /// whole stripes, reading what the write does not cover.
    fn write_stripes(
        &self,
        offset: u64,
        len: u64,
        fua: bool,
        fill: impl Fn(u64, &mut [u8]),
    ) -> Result<()> {
        let k = self.k();
        let stripe = self.stripe_bytes();
        let (s0, s1) = (offset / stripe, (offset + len - 1) / stripe);
        let base = s0 * EC_UNIT;
        let row = (s1 - s0 + 1) * EC_UNIT;
        let _guard = self.locks.lock(s0, s1 + 1);
        let pieces = self.pieces(offset, len);
        let spans = self.spans(&pieces);
        // Every byte of the rows is read or filled below: reused rows
        // need no zeroing.
        let mut data = self.spare.take(k, row as usize);
        let need = self.uncovered(&spans, base, row);
        self.read_ranges(&need, &mut data, base, true)?;
        for p in &pieces {
            let at = (p.shard_offset - base) as usize;
            fill(p.pos, &mut data[p.shard][at..at + p.len as usize]);
        }
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let missed = self.codec.encode_with(&refs, |parity| {
            let mut writes: Vec<(usize, u64, &[u8])> = Vec::new();
            for (j, span) in spans.iter().enumerate() {
                if let Some((a, b)) = *span {
                    writes.push((j, a, &data[j][(a - base) as usize..(b - base) as usize]));
                }
            }
            for (p, bytes) in parity.iter().enumerate() {
                writes.push((k + p, base, bytes));
            }
            self.write_shards(writes, fua)
        })??;
        self.spare.give(data);
        self.settle(&missed)
    }

    /// After a change: shards that missed it are marked stale (in the MDT
    /// first), unless more are out than the layout survives.
    fn settle(&self, missed: &[usize]) -> Result<()> {
        if missed.is_empty() {
            return Ok(());
        }
        let mut out: BTreeSet<usize> = self.stale_shards().into_iter().collect();
        out.extend(missed);
        if out.len() > self.codec.parity {
            // Said with the first missed shard's own failure (a full disk,
            // a down OST), when it had one.
            let failures = self.failures.lock();
            let why = missed
                .iter()
                .find_map(|&i| failures[i].as_ref().map(|e| (i, e)));
            let (errno, because) = match why {
                Some((i, e)) => (e.errno(), format!(" (shard {}: {e})", self.shards[i].0)),
                None => (libc::EIO, String::new()),
            };
            return Err(Error::new(
                errno,
                format!(
                    "object {}: {} of its shards are out, more than the {} its layout survives: the change failed{because}",
                    self.uuid,
                    out.len(),
                    self.codec.parity
                ),
            ));
        }
        self.mark_stale(missed)
    }

    pub(crate) fn simple_sync(&self, op: Opcode, offset: u64, len: u64) -> Result<u64> {
        match op {
            Opcode::Flush => self.flush_sync().map(|()| 0),
            _ => self.zero_sync(op, offset, len).map(|()| 0),
        }
    }

    fn flush_sync(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let targets: Vec<usize> = (0..self.shards.len())
            .filter(|&i| self.usable(i).is_some())
            .collect();
        let results = self.run_on_changes(&targets, true, |_, leg, f| {
            leg.simple(Opcode::Flush, 0, 0, f)
        });
        let mut missed = Vec::new();
        for (&i, result) in targets.iter().zip(results) {
            if let Err(err) = result {
                self.shard_failed(i, "flush of", &err);
                missed.push(i);
            }
        }
        self.settle(&missed)?;
        self.journal.flushed(started, &self.suspect.lock());
        Ok(())
    }

    /// Discards or zeroes a range: whole stripes are discarded on every
    /// shard (the parity of zeros is zeros), partial ones written as zeros.
    fn zero_sync(&self, op: Opcode, offset: u64, len: u64) -> Result<()> {
        self.check_range("discard", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.prepare_write(offset, len)?;
        let result = self.zero_range(op, offset, len);
        self.journal.after_write(offset, len);
        result
    }

    fn zero_range(&self, op: Opcode, offset: u64, len: u64) -> Result<()> {
        let stripe = self.stripe_bytes();
        let end = offset + len;
        let (first_full, last_full) = (offset.div_ceil(stripe) * stripe, end / stripe * stripe);
        let write_zeros = |from: u64, to: u64| -> Result<()> {
            let mut at = from;
            while at < to {
                let n = (to - at).min(ZERO_BYTES as u64);
                self.write_stripes(at, n, false, |_, out| out.fill(0))?;
                at += n;
            }
            Ok(())
        };
        if first_full >= last_full {
            return write_zeros(offset, end);
        }
        write_zeros(offset, first_full)?;
        write_zeros(last_full, end)?;
        let (s0, s1) = (first_full / stripe, last_full / stripe);
        let _guard = self.locks.lock(s0, s1);
        let targets: Vec<usize> = (0..self.shards.len()).collect();
        let mut missed: Vec<usize> = targets
            .iter()
            .copied()
            .filter(|&i| self.usable(i).is_none())
            .collect();
        let live: Vec<usize> = targets
            .into_iter()
            .filter(|i| !missed.contains(i))
            .collect();
        let results = self.run_on_changes(&live, false, |_, leg, f| {
            leg.simple(op, s0 * EC_UNIT, (s1 - s0) * EC_UNIT, f)
        });
        for (&i, result) in live.iter().zip(results) {
            match result {
                Ok(_) => {}
                Err(err) if caller_error(&err) => return Err(err),
                Err(err) => {
                    self.shard_failed(i, "discard of", &err);
                    missed.push(i);
                }
            }
        }
        self.settle(&missed)
    }

    /// Rebuilds every stale shard from the others and resyncs regions a
    /// writer left, then tells the MDT. `progress` gets (bytes done,
    /// bytes to do). Returns the names of the rebuilt shards.
    fn repair_shards(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<String>> {
        let left = self.begin_write(0, 0)?;
        let targets = self.stale_shards();
        if let Some(i) = (0..self.shards.len()).find(|&i| self.shards[i].1.is_none()) {
            return Err(Error::new(
                libc::EHOSTDOWN,
                format!(
                    "cannot repair object {}: shard {} is unreachable",
                    self.uuid, self.shards[i].0
                ),
            ));
        }
        let epoch = self.journal.epoch();
        crate::mirror::fence_for_repair(&self.shards, &targets, epoch, self.uuid)?;
        let shard_bytes = shard_size(self.size.load(Ordering::Acquire), self.k());
        let total = shard_bytes * targets.len() as u64;
        // Stale shards are rebuilt from stripes that the previous writer
        // may have left half-written only after those are resynced,
        // which needs every data shard: resync what can be first.
        let resynced = self.resync(&left);
        if !targets.is_empty() {
            let failed = crate::mirror::repair_failed(self.uuid);
            for &t in &targets {
                let leg = self.shards[t].1.as_ref().expect("all open");
                leg.resize(shard_bytes, true).map_err(&failed)?;
            }
            let mut at = 0;
            while at < shard_bytes {
                let n = STEP_BYTES.min(shard_bytes - at);
                let _guard = self.locks.lock(at / EC_UNIT, (at + n) / EC_UNIT);
                let rebuilt = self.rebuild(&targets, at, at + n, true)?;
                for (&t, bytes) in targets.iter().zip(&rebuilt) {
                    let leg = self.shards[t].1.as_ref().expect("all open");
                    let raw = [RawBuf::of(bytes)];
                    if bytes.iter().all(|&b| b == 0) {
                        crate::backend::wait(|f| leg.simple(Opcode::Discard, at, n, f))
                    } else {
                        crate::backend::wait(|f| leg.write(at, &raw, false, f))
                    }
                    .map_err(&failed)?;
                }
                at += n;
                progress(at * targets.len() as u64, total);
            }
            for &t in &targets {
                let leg = self.shards[t].1.as_ref().expect("all open");
                crate::backend::wait(|f| leg.simple(Opcode::Flush, 0, 0, f)).map_err(&failed)?;
            }
        }
        // The rebuilt shards now agree with the others: resync the rest.
        {
            let mut stale = self.stale.lock();
            for &t in &targets {
                stale[t] = false;
            }
        }
        let still: Vec<u64> = left
            .iter()
            .copied()
            .filter(|r| !resynced.contains(r))
            .collect();
        let mut clean = resynced;
        clean.extend(self.resync(&still));
        self.journal.repaired(&targets, &clean)?;
        Ok(targets.iter().map(|&t| self.shards[t].0.clone()).collect())
    }

    /// Reads every shard in full and checks that the parity matches the
    /// data; reports unreadable blocks (checksums), mismatching stripes,
    /// stale and unreachable shards. Changes nothing.
    fn scrub_shards(
        &self,
        repair: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ScrubReport> {
        if repair {
            // The writer lease, and what a previous writer left resynced.
            self.prepare_write(0, 0)?;
        }
        let mut report = ScrubReport::default();
        let checked = report.survey(&self.shards, &self.stale.lock(), "rebuilds");
        let size = self.size.load(Ordering::Acquire);
        let shard_bytes = shard_size(size, self.k());
        let k = self.k();
        let mut at = 0;
        while at < shard_bytes {
            let n = STEP_BYTES.min(shard_bytes - at);
            let range = format!("shard bytes {at}..{}", at + n);
            let _guard = repair.then(|| self.locks.lock(at / EC_UNIT, (at + n).div_ceil(EC_UNIT)));
            let mut bufs: Vec<Vec<u8>> = checked.iter().map(|_| vec![0u8; n as usize]).collect();
            let reads: Vec<(usize, u64, RawBuf)> = checked
                .iter()
                .zip(bufs.iter_mut())
                .map(|(&i, b)| (i, at, RawBuf::of_mut(b)))
                .collect();
            let results = self.read_shards(&reads);
            let mut good: Vec<(usize, Vec<u8>)> = Vec::new();
            let mut failed = Vec::new();
            for ((&i, buf), result) in checked.iter().zip(bufs).zip(results) {
                match result {
                    Ok(_) => good.push((i, buf)),
                    Err(err) if repair => failed.push((i, err)),
                    Err(err) => report.problem(format!("{}: {range}: {err}", self.shards[i].0)),
                }
            }
            if !failed.is_empty() {
                self.scrub_rebuild(&mut report, &range, failed, at, at + n);
            }
            if (0..k).all(|j| good.iter().any(|(i, _)| *i == j)) {
                let data: Vec<&[u8]> = (0..k)
                    .map(|j| {
                        good.iter()
                            .find(|(i, _)| *i == j)
                            .expect("all data")
                            .1
                            .as_slice()
                    })
                    .collect();
                let wrong: Vec<String> = self
                    .codec
                    .encode_with(&data, |parity| {
                        good.iter()
                            .filter(|(i, _)| *i >= k)
                            .filter(|(i, bytes)| bytes.as_slice() != parity[*i - k])
                            .map(|(i, _)| self.shards[*i].0.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                if !wrong.is_empty() {
                    let what = format!(
                        "{range}: parity on {} does not match the data",
                        wrong.join(", ")
                    );
                    match repair.then(|| self.rewrite_parity(at, at + n)) {
                        Some(Ok(())) => report.mended(format!("{what}: rewritten from the data")),
                        Some(Err(err)) => {
                            report.problem(format!("{what}: cannot rewrite it: {err}"))
                        }
                        None => self.report_mismatch(&mut report, what, at, &good),
                    }
                }
            }
            report.bytes_checked += n * k as u64;
            at += n;
            progress((at * k as u64).min(size), size);
        }
        if !report.repaired.is_empty() {
            self.flush_sync()?;
        }
        Ok(report)
    }

    /// Scrub without repair found parity that does not match the data in
    /// the step at shard offset `at` (read as `good`): reported, with the
    /// stripes, unless a second look finds every such stripe changing (a
    /// writer in another process was in the middle of it).
    fn report_mismatch(
        &self,
        report: &mut ScrubReport,
        what: String,
        at: u64,
        good: &[(usize, Vec<u8>)],
    ) {
        let shards: Vec<usize> = good.iter().map(|(i, _)| *i).collect();
        let still = self.still_mismatched(&shards, self.mismatched_rows(at, good));
        if let Some(first) = still.first() {
            report.problem(format!(
                "{what} ({} stripe(s), the first at shard byte {first})",
                still.len()
            ));
        }
    }

    /// Scrub with repair: shards whose range `lo..hi` failed to read
    /// (checksums) are rebuilt from the others and rewritten.
    fn scrub_rebuild(
        &self,
        report: &mut ScrubReport,
        range: &str,
        failed: Vec<(usize, Error)>,
        lo: u64,
        hi: u64,
    ) {
        let want: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
        let outcome = self.rebuild(&want, lo, hi, true).and_then(|rows| {
            let writes = want
                .iter()
                .zip(&rows)
                .map(|(&i, row)| (i, lo, row.as_slice()))
                .collect();
            let missed = self.write_shards(writes, false)?;
            self.settle(&missed)?;
            Ok(missed)
        });
        for (i, err) in failed {
            let name = &self.shards[i].0;
            match &outcome {
                Ok(missed) if !missed.contains(&i) => {
                    report.mended(format!("{name}: {range} ({err}) rebuilt from the others"));
                }
                Ok(_) => report.problem(format!(
                    "{name}: {range} ({err}): the rebuilt bytes could not be written; it is stale now"
                )),
                Err(e) => report.problem(format!("{name}: {range} ({err}): cannot rebuild: {e}")),
            }
        }
    }
}

impl Backend for Erasure {
    fn info(&self) -> ObjectInfo {
        ObjectInfo {
            uuid: self.uuid,
            size: self.size.load(Ordering::Acquire),
            chunk_size: self.chunk_size,
            block_size: BLOCK_SIZE,
        }
    }

    /// The size as recorded in the MDT now, kept as this handle's.
    fn refresh_size(&self) -> Result<u64> {
        let size = self.journal.recorded_size()?;
        self.size.store(size, Ordering::Release);
        Ok(size)
    }

    fn read(&self, offset: u64, bufs: &[RawBuf], finish: Finish) {
        let me = self.me();
        let Err(finish) = me.read_now(offset, bufs, finish) else {
            return;
        };
        let bufs = bufs.to_vec();
        self.pool.run(move || finish(me.read_sync(offset, &bufs)));
    }

    fn write(&self, offset: u64, bufs: &[RawBuf], fua: bool, finish: Finish) {
        let me = self.me();
        let Err(finish) = me.write_now(offset, bufs, fua, finish) else {
            return;
        };
        let bufs = bufs.to_vec();
        self.pool
            .run(move || finish(me.write_sync(offset, &bufs, fua)));
    }

    fn simple(&self, op: Opcode, offset: u64, len: u64, finish: Finish) {
        let me = self.me();
        self.pool
            .run(move || finish(me.simple_sync(op, offset, len)));
    }

    /// Changes the size. Growing adds stripes of zeros (parity zeros too);
    /// shrinking zeroes the cut part of the last stripe first, so its
    /// parity stays right.
    fn resize(&self, new_size: u64, allow_shrink: bool) -> Result<()> {
        let size = self.size.load(Ordering::Acquire);
        if new_size < size && !allow_shrink {
            return Err(Error::invalid(format!(
                "shrinking object {} from {size} to {new_size} bytes loses data: ask for it explicitly",
                self.uuid
            )));
        }
        self.prepare_write(0, 0)?;
        let shard_bytes = shard_size(new_size, self.k());
        let resize_shards = || -> Result<()> {
            let mut missed = Vec::new();
            for i in 0..self.shards.len() {
                match self.usable(i) {
                    Some(leg) => {
                        if let Err(err) = leg.resize(shard_bytes, true) {
                            if caller_error(&err) {
                                return Err(err);
                            }
                            missed.push(i);
                        }
                    }
                    None => missed.push(i),
                }
            }
            self.settle(&missed)
        };
        if new_size < size {
            let stripe_end = new_size.div_ceil(self.stripe_bytes()) * self.stripe_bytes();
            let cut_end = stripe_end.min(size);
            if cut_end > new_size {
                self.write_stripes(new_size, cut_end - new_size, false, |_, out| out.fill(0))?;
            }
            self.journal.set_size(new_size)?;
            self.size.store(new_size, Ordering::Release);
            resize_shards()
        } else {
            resize_shards()?;
            self.journal.set_size(new_size)?;
            self.size.store(new_size, Ordering::Release);
            Ok(())
        }
    }

    /// Block status: erasure-coded objects report data everywhere (the
    /// shards' holes do not line up with the object's).
    /// Block status from the data shards: stripes where every data shard
    /// holds a hole read as zeros (the parity of zeros is zeros). Whatever
    /// cannot be told (a shard out or failing) counts as data, which is
    /// never wrong. Returns whether the run at `offset` is data, and its
    /// length (at most `len`).
    fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)> {
        self.check_range("block status", offset, len)?;
        if len == 0 {
            return Ok((true, 0));
        }
        let stripe = self.stripe_bytes();
        let first = offset / stripe;
        let end_stripe = (offset + len).div_ceil(stripe);
        let (lo, hi) = (first * EC_UNIT, end_stripe * EC_UNIT);
        // Shard bytes from `lo` over which every data shard says the same.
        let mut run = hi - lo;
        let mut data = false;
        for j in 0..self.k() {
            let answer = match self.usable(j) {
                Some(leg) => leg.extent(lo, hi - lo),
                None => Err(Error::new(libc::EIO, "shard out")),
            };
            match answer {
                Ok((shard_data, n)) => {
                    data |= shard_data;
                    run = run.min(n);
                }
                Err(_) => return Ok((true, len)),
            }
        }
        // Whole units only: a shorter run is one stripe of data.
        let (data, stripes) = match run / EC_UNIT {
            0 => (true, 1),
            units => (data, units),
        };
        let end = ((first + stripes) * stripe).min(offset + len);
        Ok((data, end - offset))
    }

    fn scrub(&self, repair: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<ScrubReport> {
        self.scrub_shards(repair, progress)
    }

    fn repair(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<String>> {
        self.repair_shards(progress)
    }

    /// Gives back the writer lease (the user closed the object).
    fn release(&self) {
        self.journal.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal that records nothing (no MDT in unit tests).
    pub(super) struct NoJournal;

    impl Journal for NoJournal {
        fn before_write(&self, _: u64, _: u64, _: u64) -> Result<Option<Vec<u64>>> {
            Ok(None)
        }
        fn after_write(&self, _: u64, _: u64) {}
        fn mark_stale(&self, _: &[usize]) -> Result<()> {
            Ok(())
        }
        fn flushed(&self, _: std::time::Instant, _: &BTreeSet<u64>) {}
        fn release(&self) {}
        fn recorded_size(&self) -> Result<u64> {
            Err(Error::new(libc::ENOTSUP, "no record"))
        }
        fn set_size(&self, _: u64) -> Result<()> {
            Ok(())
        }
        fn repaired(&self, _: &[usize], _: &[u64]) -> Result<()> {
            Ok(())
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn encoding_is_position_wise_so_stripes_concatenate() {
        let codec = Codec::new(4, 2).unwrap();
        let data: Vec<Vec<u8>> = (0..4).map(|j| pattern(8192, j)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let whole: Vec<Vec<u8>> = codec
            .encode_with(&refs, |p| p.iter().map(|s| s.to_vec()).collect())
            .unwrap();
        for half in [0..4096, 4096..8192] {
            let refs: Vec<&[u8]> = data.iter().map(|d| &d[half.clone()]).collect();
            let part: Vec<Vec<u8>> = codec
                .encode_with(&refs, |p| p.iter().map(|s| s.to_vec()).collect())
                .unwrap();
            for (w, p) in whole.iter().zip(&part) {
                assert_eq!(&w[half.clone()], p.as_slice());
            }
        }
    }

    #[test]
    fn a_failed_encode_leaves_the_next_one_right() {
        let codec = Codec::new(4, 2).unwrap();
        let data: Vec<Vec<u8>> = (0..4).map(|j| pattern(4096, j as u8)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let parity = |refs: &[&[u8]]| {
            codec.encode_with(refs, |p| p.iter().map(|s| s.to_vec()).collect::<Vec<_>>())
        };
        let good = parity(&refs).unwrap();
        assert_eq!(good.len(), 2);
        // Too few shards, then shards of two sizes: refused.
        assert!(parity(&refs[..3]).is_err());
        let short = [refs[0], refs[1], refs[2], &refs[3][..2048]];
        assert!(parity(&short).is_err());
        // Shards of an odd length fit no Reed-Solomon shape: refused.
        let odd: Vec<&[u8]> = refs.iter().map(|r| &r[..4095]).collect();
        assert_eq!(parity(&odd).unwrap_err().errno(), libc::EINVAL);
        // The thread's encoder starts over: same parity as before, and
        // again for another shard size and back.
        assert_eq!(parity(&refs).unwrap(), good);
        let halves: Vec<&[u8]> = refs.iter().map(|r| &r[..2048]).collect();
        let half = parity(&halves).unwrap();
        assert_eq!(half[0], good[0][..2048], "position-wise");
        assert_eq!(parity(&refs).unwrap(), good);
    }

    #[test]
    fn rebuilds_any_two_lost_shards_of_four_plus_two() {
        let codec = Codec::new(4, 2).unwrap();
        let data: Vec<Vec<u8>> = (0..4).map(|j| pattern(4096, j + 1)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let parity: Vec<Vec<u8>> = codec
            .encode_with(&refs, |p| p.iter().map(|s| s.to_vec()).collect())
            .unwrap();
        let all: Vec<&[u8]> = refs
            .iter()
            .copied()
            .chain(parity.iter().map(Vec::as_slice))
            .collect();
        for a in 0..6 {
            for b in a + 1..6 {
                let present: Vec<(usize, &[u8])> = (0..6)
                    .filter(|&i| i != a && i != b)
                    .map(|i| (i, all[i]))
                    .collect();
                let rebuilt = codec.rebuild(&present, &[a, b]).unwrap();
                assert_eq!(rebuilt[0], all[a], "shard {a} of lost {a},{b}");
                assert_eq!(rebuilt[1], all[b], "shard {b} of lost {a},{b}");
            }
        }
        let three: Vec<(usize, &[u8])> = (3..6).map(|i| (i, all[i])).collect();
        assert_eq!(codec.rebuild(&three, &[0]).unwrap_err().errno(), libc::EIO);
        assert!(Codec::new(0, 2).is_err());
    }

    #[test]
    fn pieces_map_object_bytes_to_contiguous_shard_ranges() {
        let codec = Codec::new(2, 1).unwrap();
        let pool = Arc::new(Pool::new(1, "t").unwrap());
        let legs = (0..3)
            .map(|i| (format!("s{i}"), Err(Error::new(libc::EIO, "none"))))
            .collect();
        // Opening fails (no shard usable), but the geometry is testable
        // through a hand-built object.
        assert!(
            Erasure::new(
                Uuid::new_v7(),
                codec,
                1 << 20,
                1 << 20,
                legs,
                &[],
                &[],
                Arc::new(NoJournal),
                Arc::clone(&pool),
                Duration::from_millis(600),
            )
            .is_err()
        );
        let object = Erasure {
            me: Weak::new(),
            uuid: Uuid::new_v7(),
            codec,
            chunk_size: 1 << 20,
            size: AtomicU64::new(1 << 20),
            shards: Vec::new(),
            stale: Mutex::new(vec![false; 3]),
            failures: Mutex::new(vec![None; 3]),
            suspect: Mutex::new(BTreeSet::new()),
            locks: StripeLocks::default(),
            spare: SpareRows::default(),
            writing: AtomicUsize::new(0),
            journal: Arc::new(NoJournal),
            pool,
            changes: Arc::new(Latency::new(Duration::from_millis(600))),
            flushes: Arc::new(Latency::new(Duration::from_millis(600))),
            reads: Latency::new(Duration::from_millis(600)),
            slow: Slow::new(3),
            pieces: Vec::new().into(),
        };
        // 12 KiB from 2 KiB into unit 0: units 0 (shard 0), 1 (shard 1),
        // 2 (shard 0, stripe 1), 3 (shard 1, stripe 1, first 2 KiB).
        let pieces = object.pieces(2048, 12288);
        assert_eq!(
            pieces
                .iter()
                .map(|p| (p.shard, p.shard_offset, p.len))
                .collect::<Vec<_>>(),
            vec![
                (0, 2048, 2048),
                (1, 0, 4096),
                (0, 4096, 4096),
                (1, 4096, 2048)
            ]
        );
        assert_eq!(
            object.spans(&pieces),
            vec![Some((2048, 8192)), Some((0, 6144))]
        );
        assert_eq!(shard_size(1 << 20, 2), 512 << 10);
        assert_eq!(shard_size(1, 4), 4096);
        assert_eq!(
            object
                .check_range("read", (1 << 20) - 1, 2)
                .unwrap_err()
                .errno(),
            libc::ENXIO
        );
    }

    #[test]
    fn block_status_is_a_hole_only_where_every_data_shard_has_one() {
        let dir = std::env::temp_dir().join(format!("rawstor-ec-extent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::store::Store::open(vec![dir.clone()], true).unwrap();
        // ec:2+1 over 1 MiB: stripes of 8 KiB, shards of 512 KiB.
        let legs: Vec<(String, Result<Leg>)> = (0..3)
            .map(|i| {
                let uuid = Uuid::new_v7();
                store.create_object(uuid, 512 << 10, 64 << 10).unwrap();
                (
                    format!("s{i}"),
                    Ok(crate::local::copy(store.open_object(uuid).unwrap())),
                )
            })
            .collect();
        let object = Erasure::new(
            Uuid::new_v7(),
            Codec::new(2, 1).unwrap(),
            1 << 20,
            64 << 10,
            legs,
            &[],
            &[],
            Arc::new(NoJournal),
            Arc::new(Pool::new(1, "t").unwrap()),
            Duration::from_millis(600),
        )
        .unwrap();
        assert_eq!(object.extent(0, 1 << 20).unwrap(), (false, 1 << 20));
        // 4 KiB in stripe 8 (object bytes 64 KiB..72 KiB): unit 16, shard 0.
        let block = pattern(4096, 3);
        object
            .write_sync(64 << 10, &[RawBuf::of(&block)], false)
            .unwrap();
        assert_eq!(object.extent(0, 1 << 20).unwrap(), (false, 64 << 10));
        assert_eq!(
            object.extent(64 << 10, (1 << 20) - (64 << 10)).unwrap(),
            (true, 8 << 10)
        );
        // From inside the stripe: the rest of it.
        assert_eq!(object.extent(70 << 10, 100 << 10).unwrap(), (true, 2 << 10));
        assert_eq!(object.extent(72 << 10, 8 << 10).unwrap(), (false, 8 << 10));
        // Whole stripes read back, also with a data shard rebuilt from
        // parity.
        let stripes = pattern(5 * 8192, 9);
        object
            .write_sync(8 << 10, &[RawBuf::of(&stripes)], false)
            .unwrap();
        let mut back = vec![0u8; stripes.len()];
        object
            .read_sync(8 << 10, &[RawBuf::of_mut(&mut back)])
            .unwrap();
        assert_eq!(back, stripes);
        // A data shard out: reads rebuild it, everything counts as data.
        object.stale.lock()[1] = true;
        back.fill(0);
        object
            .read_sync(8 << 10, &[RawBuf::of_mut(&mut back)])
            .unwrap();
        assert_eq!(back, stripes);
        assert_eq!(object.extent(0, 1 << 20).unwrap(), (true, 1 << 20));
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A write started by [`Erasure::write_now`], until its last shard is done.
struct StripeWrite {
    erasure: Arc<Erasure>,
    offset: u64,
    len: u64,
    /// The locked stripes, `first..end`.
    stripes: (u64, u64),
    /// The write's object bytes in the data shards, and the shard range
    /// each data shard gets.
    pieces: Vec<Piece>,
    spans: Vec<Option<(u64, u64)>>,
    /// The caller's buffers.
    bufs: Mutex<Vec<RawBuf>>,
    fua: bool,
    /// Data rows then parity rows of the stripes, lent to the unit reads
    /// and then to the shard writes.
    rows: Mutex<Vec<Vec<u8>>>,
    /// The unit reads, then the shard writes.
    outcomes: Outcomes,
    /// The shard writes' watch for stragglers, and their shards in order.
    fan: Mutex<Option<WatchedWrites>>,
    finish: Mutex<Option<Finish>>,
}

impl StripeWrite {
    /// Notes a unit read's or shard write's outcome; true for the last.
    fn note(&self, i: usize, result: Result<u64>, what: &str) -> bool {
        self.outcomes
            .note(i, result, |err| self.erasure.shard_failed(i, what, err))
    }

    /// A read of units the write does not cover is done.
    fn unit_read(self: Arc<Self>, j: usize, result: Result<u64>) {
        if !self.note(j, result, "read of") {
            return;
        }
        let (failed, error) = self.outcomes.take();
        let pool = Arc::clone(&self.erasure.pool);
        match error {
            Some(err) => self.complete(Err(err)),
            // A small write's stripes are encoded here, on the loop
            // thread, in less time than a worker takes to wake up.
            None if failed.is_empty() && self.row_bytes() <= INLINE_ROW_BYTES => {
                self.encode_and_send()
            }
            None if failed.is_empty() => pool.run(move || self.encode_and_send()),
            None => {
                // Rebuilding waits for other shards: the blocking path
                // does it all again, once this write has let go.
                let finish = self.release();
                let bufs = std::mem::take(&mut *self.bufs.lock());
                let (erasure, offset, fua) = (Arc::clone(&self.erasure), self.offset, self.fua);
                if let Some(finish) = finish {
                    pool.run(move || finish(erasure.write_sync(offset, &bufs, fua)));
                }
            }
        }
    }

    /// Bytes of each shard row the write's stripes span.
    fn row_bytes(&self) -> u64 {
        (self.stripes.1 - self.stripes.0) * EC_UNIT
    }

    /// On a worker (on the loop thread for small rows): deals the data out
    /// into the rows, encodes the parity and starts the shard writes (the
    /// data shards' written ranges and the parity rows).
    fn encode_and_send(self: Arc<Self>) {
        let erasure = Arc::clone(&self.erasure);
        let k = erasure.k();
        let base = self.stripes.0 * EC_UNIT;
        let mut writes: Vec<(usize, u64, RawBuf)> = Vec::new();
        let encoded = {
            let bufs = self.bufs.lock();
            let mut rows = self.rows.lock();
            for p in &self.pieces {
                let at = (p.shard_offset - base) as usize;
                // SAFETY: the caller lent `bufs` until the write's finish.
                unsafe { lent::gather(&bufs, p.pos, &mut rows[p.shard][at..at + p.len as usize]) };
            }
            let (data, parity) = rows.split_at_mut(k);
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let encoded = erasure.codec.encode_with(&refs, |computed| {
                for (row, bytes) in parity.iter_mut().zip(computed) {
                    row.copy_from_slice(bytes);
                }
            });
            for (j, span) in self.spans.iter().enumerate() {
                if let Some((a, b)) = *span {
                    let bytes = &rows[j][(a - base) as usize..(b - base) as usize];
                    writes.push((j, a, RawBuf::of(bytes)));
                }
            }
            for (p, row) in rows[k..].iter().enumerate() {
                writes.push((k + p, base, RawBuf::of(row)));
            }
            encoded
        };
        if let Err(err) = encoded {
            return self.complete(Err(err));
        }
        self.outcomes.expect(writes.len());
        let order: Vec<usize> = writes.iter().map(|w| w.0).collect();
        let fan = Arc::new(erasure.fan(&order, false));
        *self.fan.lock() = Some((Arc::clone(&fan), Arc::new(order)));
        for (i, at, raw) in writes {
            let shard = Arc::clone(&self);
            // The rows stay untouched in `self` until every shard is done.
            erasure.on_usable(
                i,
                Box::new(move |result| shard.shard_done(i, result)),
                |leg, done| leg.write(at, std::slice::from_ref(&raw), self.fua, done),
            );
        }
        // A shard that lags behind the others fails after a short while
        // more, and is marked stale when the write settles.
        fan.started_all();
    }

    fn shard_done(self: Arc<Self>, i: usize, result: Result<u64>) {
        let fan = self.fan.lock().clone();
        if let Some((fan, order)) = fan {
            let k = order.iter().position(|&s| s == i).expect("a shard written");
            fan.answered(k, result.is_ok());
        }
        if !self.note(i, result, "write to") {
            return;
        }
        let (missed, error) = self.outcomes.take();
        match error {
            Some(err) => self.complete(Err(err)),
            None if missed.is_empty() => {
                let len = self.len;
                self.complete(Ok(len));
            }
            None => {
                // Recording the missed shards waits for the MDT, whose
                // answer comes through this (the loop) thread: on a thread
                // of its own, not a worker, as workers may be waiting for
                // these stripes. Rare: the first write to miss a shard
                // marks it stale, and later ones skip it.
                let (me, shards) = (Arc::clone(&self), missed.clone());
                let spawned = std::thread::Builder::new()
                    .name("rawstor-settle".into())
                    .spawn(move || {
                        let result = me.erasure.settle(&shards).map(|()| me.len);
                        me.complete(result);
                    });
                if let Err(err) = spawned {
                    // As when the MDT cannot record it: the write fails,
                    // and this opening reads the shards no more.
                    let mut stale = self.erasure.stale.lock();
                    for &i in &missed {
                        stale[i] = true;
                    }
                    drop(stale);
                    self.complete(Err(Error::io(
                        "a shard missed the write, and no thread could be started to record it",
                        err,
                    )));
                }
            }
        }
    }

    /// Hands the rows back, unlocks the stripes and ends the journal's
    /// count of the write; returns the caller's completion.
    fn release(&self) -> Option<Finish> {
        let erasure = &self.erasure;
        erasure.spare.give(std::mem::take(&mut *self.rows.lock()));
        erasure.locks.unlock(self.stripes);
        erasure.journal.after_write(self.offset, self.len);
        erasure.writing.fetch_sub(1, Ordering::AcqRel);
        self.finish.lock().take()
    }

    /// [`StripeWrite::release`], then finishes the write with `result`.
    fn complete(&self, result: Result<u64>) {
        if let Some(finish) = self.release() {
            finish(result);
        }
    }
}

/// A [`Fan`] over shard writes, and their shards in order.
type WatchedWrites = (Arc<Fan>, Arc<Vec<usize>>);

/// Stripe rows up to this many bytes per shard are encoded on the event
/// loop thread once their unit reads are in: in less time than a worker
/// takes to wake up. (Whole small stripes are not encoded on the caller's
/// thread: with fio at QD16 that cost 5-31% of the IOPS in 3 pairs.)
const INLINE_ROW_BYTES: u64 = 16 << 10;

/// Rows kept for reuse, by any thread, up to [`SPARE_ROW_BYTES`] in all: a
/// fresh 256 KiB row costs a page fault per 4 KiB and a memset.
#[derive(Default)]
struct SpareRows(Mutex<Vec<Vec<u8>>>);

/// What [`SpareRows`] keeps: enough for sixteen 1 MiB writes of ec:4+2.
const SPARE_ROW_BYTES: usize = 24 << 20;

impl SpareRows {
    /// `n` rows of `len` bytes each; their contents are unspecified.
    fn take(&self, n: usize, len: usize) -> Vec<Vec<u8>> {
        let mut rows = Vec::with_capacity(n);
        {
            let mut spare = self.0.lock();
            while rows.len() < n {
                match spare.pop() {
                    Some(row) => rows.push(row),
                    None => break,
                }
            }
        }
        rows.resize_with(n, Vec::new);
        for row in &mut rows {
            row.resize(len, 0);
        }
        rows
    }

    fn give(&self, rows: Vec<Vec<u8>>) {
        let mut spare = self.0.lock();
        let mut kept: usize = spare.iter().map(Vec::capacity).sum();
        for row in rows {
            if kept + row.capacity() <= SPARE_ROW_BYTES {
                kept += row.capacity();
                spare.push(row);
            }
        }
    }
}

/// A read started by [`Erasure::read_now`], until its last shard is done.
struct ShardRead {
    erasure: Arc<Erasure>,
    began: Instant,
    offset: u64,
    /// The caller's buffers, for reading again on a worker.
    bufs: Mutex<Vec<RawBuf>>,
    outcomes: Outcomes,
    finish: Mutex<Option<Finish>>,
}

impl ShardRead {
    fn shard_done(self: Arc<Self>, j: usize, result: Result<u64>) {
        if result.is_ok() {
            self.erasure.reads.note(self.began.elapsed());
        }
        if !self
            .outcomes
            .note(j, result, |err| self.erasure.read_failed(j, err))
        {
            return;
        }
        let Some(finish) = self.finish.lock().take() else {
            return;
        };
        let (failed, error) = self.outcomes.take();
        let bufs = std::mem::take(&mut *self.bufs.lock());
        match error {
            Some(err) => finish(Err(err)),
            None if failed.is_empty() => finish(Ok(lent::total(&bufs))),
            None => {
                // Rebuilding waits for other shards and stripe locks.
                let pool = Arc::clone(&self.erasure.pool);
                pool.run(move || {
                    finish(self.erasure.read_sync_without(self.offset, &bufs, &failed))
                });
            }
        }
    }
}

/// The outcomes of shard operations started together: which shards failed
/// (for a reason of theirs), a caller error if one came, and how many are
/// still to come.
struct Outcomes {
    left: AtomicUsize,
    failed: Mutex<(Vec<usize>, Option<Error>)>,
}

impl Outcomes {
    fn new(count: usize) -> Self {
        Self {
            left: AtomicUsize::new(count),
            failed: Mutex::new((Vec::new(), None)),
        }
    }

    /// Starts counting `count` more operations (once the last ones are in).
    fn expect(&self, count: usize) {
        self.left.store(count, Ordering::Release);
    }

    /// Notes shard `i`'s outcome (`on_failure` hears of a shard's own
    /// failure); true for the last operation.
    fn note(&self, i: usize, result: Result<u64>, on_failure: impl FnOnce(&Error)) -> bool {
        if let Err(err) = result {
            let mut failed = self.failed.lock();
            if caller_error(&err) {
                failed.1.get_or_insert(err);
            } else {
                on_failure(&err);
                failed.0.push(i);
            }
        }
        self.left.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// The shards that failed and the caller error, leaving none.
    fn take(&self) -> (Vec<usize>, Option<Error>) {
        std::mem::take(&mut *self.failed.lock())
    }
}
