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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::lent::{self, RawBuf};
use crate::mdt::INTENT_REGION_BYTES;
use crate::pool::{Pool, Workers};
use crate::redundancy::journal::Journal;
use crate::redundancy::mirror::{Leg, ScrubReport};
use crate::redundancy::straggler::{Fan, Latency, Pieces, Slow};
use crate::remote::Finish;
use crate::store::{BLOCK_SIZE, ObjectInfo};
use crate::uuid::Uuid;
use crate::wire::Opcode;
use std::time::Duration;

mod codec;
mod locks;
mod read;
mod recheck;
mod repair;
mod scrub;
mod units;
mod write;

pub use codec::Codec;
use locks::StripeLocks;
use write::SpareRows;

/// Bytes of one stripe unit (per shard, per stripe).
pub const EC_UNIT: u64 = 4096;

/// Bytes of each shard's size for an object of `size` bytes over `data`
/// data shards: whole stripes.
pub fn shard_size(size: u64, data: usize) -> u64 {
    size.div_ceil(EC_UNIT * data as u64) * EC_UNIT
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
    /// Writes started by [`Erasure::start_write`] and not yet finished.
    writing: AtomicUsize,
    journal: Arc<dyn Journal>,
    pool: Arc<Pool>,
    /// Where the shards a write missed are recorded (see [`Workers`]).
    settle: Arc<Pool>,
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
        workers: Workers,
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
        if usable < codec.data() {
            return Err(Error::new(
                libc::EIO,
                format!(
                    "object {uuid}: only {usable} of its {} shards are usable, {} are needed (bring OSTs back, then run 'rawstor repair')",
                    shards.len(),
                    codec.data()
                ),
            ));
        }
        let shard_count = marks.len();
        let pieces = crate::redundancy::mirror::pieces(&shards);
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
            pool: workers.pool,
            settle: workers.settle,
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
        self.codec.data()
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

    // ---- blocking implementations ----

    /// Starts `start(k, leg, finish)` for the k-th shard of `shards` and
    /// waits for all of them; results in order. A shard that is not open
    /// fails with `EHOSTDOWN`.
    fn run_on(&self, shards: &[usize], start: impl Fn(usize, &Leg, Finish)) -> Vec<Result<u64>> {
        self.run_on_fanned(shards, None, start)
    }

    /// [`Erasure::run_on`] for changes and flushes: a shard that lags
    /// behind the others fails after a short while more (see
    /// [`crate::redundancy::straggler`]), for the caller to settle without it.
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
        crate::fan_in::wait_all_with(starts, || {
            if let Some(fan) = fan {
                fan.started_all();
            }
        })
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
        self.pool
            .run_finishing(finish, move |finish| finish(me.read_sync(offset, &bufs)));
    }

    fn write(&self, offset: u64, bufs: &[RawBuf], fua: bool, finish: Finish) {
        self.me().start_write(offset, bufs, fua, finish);
    }

    fn simple(&self, op: Opcode, offset: u64, len: u64, finish: Finish) {
        let me = self.me();
        self.pool.run_finishing(finish, move |finish| {
            finish(me.simple_sync(op, offset, len))
        });
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

/// Sorts the results of operations started together on `shards` (in
/// order): the shards that failed for a reason of theirs (`on_failure`
/// hears of each), and the first error that is the caller's.
fn sort_outcomes(
    shards: &[usize],
    results: Vec<Result<u64>>,
    mut on_failure: impl FnMut(usize, &Error),
) -> (Vec<usize>, Option<Error>) {
    assert_eq!(shards.len(), results.len(), "one result per shard");
    let mut failed = Vec::new();
    let mut error = None;
    for (&i, result) in shards.iter().zip(results) {
        match result {
            Ok(_) => {}
            Err(err) if caller_error(&err) => {
                error.get_or_insert(err);
            }
            Err(err) => {
                on_failure(i, &err);
                failed.push(i);
            }
        }
    }
    (failed, error)
}

#[cfg(test)]
mod tests {
    use super::codec::tests::pattern;
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

    #[test]
    fn pieces_map_object_bytes_to_contiguous_shard_ranges() {
        let codec = Codec::new(2, 1).unwrap();
        let pool = Arc::new(Pool::new(1, "t", 64).unwrap());
        let legs = (0..3)
            .map(|i| (format!("s{i}"), Err(Error::new(libc::EIO, "none"))))
            .collect();
        // Opening fails (no shard usable), but the geometry is testable
        // through a hand-built object.
        assert!(
            Erasure::new(
                Uuid::now_v7(),
                codec,
                1 << 20,
                1 << 20,
                legs,
                &[],
                &[],
                Arc::new(NoJournal),
                Workers {
                    pool: Arc::clone(&pool),
                    settle: Arc::clone(&pool),
                },
                Duration::from_millis(600),
            )
            .is_err()
        );
        let object = Erasure {
            me: Weak::new(),
            uuid: Uuid::now_v7(),
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
            settle: Arc::clone(&pool),
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
                let uuid = Uuid::now_v7();
                store.create_object(uuid, 512 << 10, 64 << 10).unwrap();
                (
                    format!("s{i}"),
                    Ok(crate::local::copy(store.open_object(uuid).unwrap())),
                )
            })
            .collect();
        let object = Erasure::new(
            Uuid::now_v7(),
            Codec::new(2, 1).unwrap(),
            1 << 20,
            64 << 10,
            legs,
            &[],
            &[],
            Arc::new(NoJournal),
            Workers::for_tests(),
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
