//! Mirrored objects: a target `A/<uuid>,B/<uuid>,...` keeps a full copy
//! (a *leg*) on every element.
//!
//! * Writes, discards, flushes and resizes go to every leg that is not
//!   stale. A leg that fails one (or was unreachable at open) has *missed a
//!   write*: before the operation completes, the legs that took it record
//!   the failed leg's name among their `stale_peers` (durably, merged so
//!   concurrent markers never undo each other), and the failed leg is told
//!   it is stale when it can be reached. The operation then succeeds; it
//!   fails only when no leg took it, or when no good leg could record the
//!   mark.
//! * Reads go to one good leg, rotating; when it fails, the next one is
//!   tried (upstream fails the read instead). A stale leg is never read:
//!   at open, a leg is stale if it says so itself or if any other leg names
//!   it, and its server refuses reads of a stale copy with `ESTALE`.
//! * `repair` copies a good leg onto the stale ones and clears the marks.
//!
//! * Objects placed by a rawstor-mdt keep more there ([`Recorded`]): the
//!   writer lease (one writer per object), the stale marks (recorded in
//!   the MDT before the change is acknowledged, the legs' own marks are
//!   then only a hint) and the write-intent bitmap. A writer killed
//!   between the legs of a write leaves its regions marked; the next
//!   writer, or `rawstor repair`, copies them from one good leg onto the
//!   others, so that the copies agree again.
//!
//! Limits: the legs' marks of a mirror without an MDT cover failures the
//! client sees; a client killed between the legs of one write leaves them
//! different without a mark (as a RAID-1 without a write-intent bitmap
//! would). Repair assumes no writer is active (with an MDT, it takes the
//! lease).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::backend::{Backend, wait};
use crate::erasure::Journal;
use crate::error::{Error, Result};
use crate::lent::RawBuf;
use crate::mdt::INTENT_REGION_BYTES;
use crate::pool::Pool;
use crate::remote::Finish;
use crate::store::{BLOCK_SIZE, ObjectInfo};
use crate::straggler::{Fan, Latency, Pieces, Slow};
use crate::uuid::Uuid;
use crate::wire::{Marks, Opcode};

mod scrub;
pub use scrub::ScrubReport;

/// One copy of a mirrored object: any single-copy kind.
pub(crate) type Leg = crate::backend::DynBackend;

/// Fences the legs `which` of `legs` with the lease `epoch` just taken,
/// so that the writer that held the lease before can change none of them
/// any more (it may be cut off from the MDT and not know yet). Stale legs
/// are left out by writers (never read, they are rebuilt whole), fenced
/// by repair before it rebuilds them. Returns the legs that could not be
/// fenced (not open, or their server failing), with why: they may still
/// take that writer's changes. `ENOLCK` when a newer writer fenced them
/// already.
pub(crate) fn fence_legs(
    legs: &[(String, Option<Leg>)],
    which: &[usize],
    epoch: u64,
    uuid: Uuid,
) -> Result<Vec<(usize, Error)>> {
    if epoch == 0 {
        return Ok(Vec::new());
    }
    let starts: Vec<Box<dyn FnOnce(Finish) + '_>> = which
        .iter()
        .map(|&i| -> Box<dyn FnOnce(Finish) + '_> {
            match &legs[i].1 {
                Some(leg) => Box::new(move |f| leg.fence(epoch, f)),
                None => Box::new(|f| f(Err(Error::new(libc::EHOSTDOWN, "not open")))),
            }
        })
        .collect();
    let mut unfenced = Vec::new();
    for (&i, result) in which.iter().zip(crate::pool::wait_all(starts)) {
        match result {
            Ok(_) => {}
            Err(err) if err.errno() == libc::ENOLCK => return Err(err),
            Err(err) => {
                crate::log::warn(&format!(
                    "{} of object {uuid} could not be fenced against the previous writer: {err}",
                    legs[i].0
                ));
                unfenced.push((i, err));
            }
        }
    }
    Ok(unfenced)
}

/// Fences the stale legs `which` before a repair rewrites them: every one
/// must be fenced (else the error of the first that was not, a down OST's
/// `EHOSTDOWN` or a full disk's `ENOSPC`), or the writer the repair took
/// the lease from could still change what it rebuilds.
pub(crate) fn fence_for_repair(
    legs: &[(String, Option<Leg>)],
    which: &[usize],
    epoch: u64,
    uuid: Uuid,
) -> Result<()> {
    match fence_legs(legs, which, epoch, uuid)?.first() {
        None => Ok(()),
        Some((i, err)) => Err(Error::new(
            err.errno(),
            format!(
                "cannot repair object {uuid}: {} could not be fenced: {err}",
                legs[*i].0
            ),
        )),
    }
}

/// An error met writing the part a repair rebuilds, naming the object:
/// the leg's own error already names its OST and the cause (a full disk's
/// `ENOSPC`, a down OST's `EHOSTDOWN`).
pub(crate) fn repair_failed(uuid: Uuid) -> impl Fn(Error) -> Error {
    move |err| Error::new(err.errno(), format!("cannot repair object {uuid}: {err}"))
}

/// Errors that another leg would repeat: the caller's, not the leg's
/// (`ENOLCK`: a newer writer fenced this one out).
fn caller_error(err: &Error) -> bool {
    matches!(
        err.errno(),
        libc::ENXIO | libc::EINVAL | libc::ERANGE | libc::ENOLCK
    )
}

/// What a mirror placed by a rawstor-mdt keeps there: the writer lease,
/// the write-intent bitmap and the stale marks.
pub(crate) struct Recorded {
    pub(crate) journal: Arc<dyn Journal>,
    /// Runs what waits for the MDT, off the event loop thread.
    pub(crate) pool: Arc<Pool>,
    /// Set once this writer holds the lease and resynced what a previous
    /// one left: a write whose regions are marked then starts at once.
    ready: AtomicBool,
    /// Held while a write takes the lease and resyncs.
    gate: Mutex<()>,
}

impl Recorded {
    pub(crate) fn new(journal: Arc<dyn Journal>, pool: Arc<Pool>) -> Self {
        Self {
            journal,
            pool,
            ready: AtomicBool::new(false),
            gate: Mutex::new(()),
        }
    }
}

/// The names and servers of `legs`, for a [`crate::straggler::Fan`].
pub(crate) fn pieces(legs: &[(String, Option<Leg>)]) -> Pieces {
    legs.iter()
        .map(|(name, leg)| (name.clone(), leg.as_ref().and_then(|l| l.hurrier())))
        .collect()
}

/// Bytes copied from one leg to another at a time (repair, resync).
const COPY_STEP_BYTES: u64 = 1 << 20;

/// A mirrored object open in this instance.
pub(crate) struct Mirror {
    /// Itself, for the operations that outlive a call.
    me: Weak<Self>,
    uuid: Uuid,
    /// Element names (`ost://host:port`, `file:///dir`) and their legs;
    /// `None` for a leg that could not be opened.
    legs: Vec<(String, Option<Leg>)>,
    /// Legs known to have missed writes.
    stale: Mutex<Vec<bool>>,
    cursor: AtomicUsize,
    /// For objects placed by a rawstor-mdt.
    recorded: Option<Recorded>,
    /// How long the copies take to answer a change, and a read.
    changes: Arc<Latency>,
    flushes: Arc<Latency>,
    reads: Latency,
    /// The legs' names and servers, for [`Fan`].
    pieces: Pieces,
    /// Legs that let a read time out lately: asked last.
    slow: Slow,
}

impl Mirror {
    /// The mirror, shared, while it is in use (it always is when asked).
    fn me(&self) -> Arc<Self> {
        self.me.upgrade().expect("a mirror in use is alive")
    }

    /// Assembles a mirror from its opened legs (`Err` for those that
    /// could not be opened); at least one must have opened.
    /// `stale` lists legs a rawstor-mdt's record marks stale; `recorded`
    /// is what the object keeps there.
    pub(crate) fn new(
        uuid: Uuid,
        legs: Vec<(String, Result<Leg>)>,
        stale: &[usize],
        recorded: Option<Recorded>,
        straggler: Duration,
    ) -> Result<Arc<Self>> {
        if legs.iter().all(|(_, l)| l.is_err()) {
            let mut errors = legs.into_iter().map(|(_, l)| l.err().expect("all failed"));
            let first = errors.next().expect("a mirror has legs");
            let errno = first.errno();
            return Err(Error::new(
                errno,
                format!("no copy of object {uuid} could be opened: {first}"),
            ));
        }
        let names: Vec<String> = legs.iter().map(|(n, _)| n.clone()).collect();
        let mut stale: Vec<bool> = (0..legs.len()).map(|i| stale.contains(&i)).collect();
        for (i, (_, leg)) in legs.iter().enumerate() {
            let Ok(leg) = leg else { continue };
            let marks = leg.marks();
            stale[i] |= marks.stale;
            for (j, name) in names.iter().enumerate() {
                if marks.stale_peers.contains(name) {
                    stale[j] = true;
                }
            }
        }
        let legs: Vec<(String, Option<Leg>)> = legs
            .into_iter()
            .map(|(n, l)| {
                if let Err(e) = &l {
                    crate::log::warn(&format!("mirror leg {n} is unavailable: {e}"));
                }
                (n, l.ok())
            })
            .collect();
        if legs
            .iter()
            .zip(&stale)
            .all(|((_, leg), &st)| leg.is_none() || st)
        {
            return Err(Error::new(
                libc::ESTALE,
                format!(
                    "every reachable copy of object {uuid} is stale: bring the others back or run 'rawstor repair'"
                ),
            ));
        }
        let n = legs.len();
        let mirror = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            uuid,
            stale: Mutex::new(stale),
            cursor: AtomicUsize::new(0),
            recorded,
            changes: Arc::new(Latency::new(straggler)),
            flushes: Arc::new(Latency::new(straggler)),
            reads: Latency::new(straggler),
            slow: Slow::new(n),
            pieces: pieces(&legs),
            legs,
        });
        // Tell reachable stale legs what they are, so that no client (this
        // one or an older one) reads them.
        let stale = mirror.stale.lock().clone();
        for (i, (_, leg)) in mirror.legs.iter().enumerate() {
            if let (Some(leg), true) = (leg, stale[i]) {
                if !leg.marks().stale {
                    let marks = Marks {
                        stale: true,
                        stale_peers: Vec::new(),
                    };
                    let _ = wait(|done| leg.set_marks(&marks, false, done));
                }
            }
        }
        Ok(mirror)
    }

    /// Good legs, starting at the rotating cursor; legs that were slow
    /// to answer a read lately come last.
    fn readable(&self) -> Vec<usize> {
        let stale = self.stale.lock().clone();
        let slow = self.slow.now();
        let n = self.legs.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut order: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.legs[i].1.is_some() && !stale[i])
            .collect();
        if !slow.is_empty() {
            order.sort_by_key(|i| slow.contains(i));
        }
        order
    }

    fn read_from(
        self: Arc<Self>,
        order: Vec<usize>,
        k: usize,
        offset: u64,
        bufs: Vec<RawBuf>,
        finish: Finish,
        last: Option<Error>,
    ) {
        let Some(&i) = order.get(k) else {
            return finish(Err(last.unwrap_or_else(|| {
                Error::new(
                    libc::EIO,
                    format!("no readable copy of object {} is left", self.uuid),
                )
            })));
        };
        let leg = self.legs[i].1.as_ref().expect("readable legs are open");
        let retry_bufs = bufs.clone();
        let me = Arc::clone(&self);
        let began = Instant::now();
        let another = k + 1 < order.len();
        let done: Finish = Box::new(move |result| match result {
            Ok(n) => {
                me.reads.note(began.elapsed());
                finish(Ok(n))
            }
            Err(err) if caller_error(&err) => finish(Err(err)),
            Err(err) => {
                let name = &me.legs[i].0;
                crate::log::warn(&format!(
                    "read of object {} from {name} failed ({err}); trying another copy",
                    me.uuid
                ));
                if err.errno() == libc::ESTALE {
                    me.stale.lock()[i] = true;
                }
                if err.errno() == libc::ETIMEDOUT {
                    // Asked last for a while, so that reads do not wait
                    // for it one after another.
                    me.slow.mark(i);
                }
                me.read_from(order, k + 1, offset, retry_bufs, finish, Some(err));
            }
        });
        if another {
            leg.read_within(offset, &bufs, self.reads.wait(), done);
        } else {
            leg.read(offset, &bufs, done);
        }
    }

    /// Runs a change of `len` bytes at `offset` on every good leg and
    /// marks the legs that miss it. For an object placed by a
    /// rawstor-mdt, the writer lease is held and the regions are marked
    /// first (on a worker thread when that needs the MDT).
    fn change(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        start: impl Fn(&Leg, Finish) + Send + 'static,
        finish: Finish,
    ) {
        let Some(rec) = &self.recorded else {
            return self.run_on_good_legs(start, finish, true);
        };
        if rec.ready.load(Ordering::Acquire) && rec.journal.enter(offset, len) {
            let done = Self::counted(Arc::clone(self), offset, len, finish);
            return self.run_on_good_legs(start, done, true);
        }
        let me = Arc::clone(self);
        rec.pool.run(move || match me.begin_write(offset, len) {
            Ok(()) => {
                let done = Self::counted(Arc::clone(&me), offset, len, finish);
                me.run_on_good_legs(start, done, true);
            }
            Err(err) => finish(Err(err)),
        });
    }

    /// `finish`, telling the journal first that the change of `len`
    /// bytes at `offset` is done.
    fn counted(self: Arc<Self>, offset: u64, len: u64, finish: Finish) -> Finish {
        Box::new(move |result| {
            if let Some(rec) = &self.recorded {
                rec.journal.after_write(offset, len);
            }
            finish(result)
        })
    }

    /// Takes the writer lease if this writer does not hold it yet
    /// (resyncing the regions a previous writer left) and marks the
    /// regions of `len` bytes at `offset`. Waits for the MDT.
    fn begin_write(&self, offset: u64, len: u64) -> Result<()> {
        let rec = self
            .recorded
            .as_ref()
            .expect("only recorded mirrors journal");
        let _gate = rec.gate.lock();
        if let Some(left) = rec.journal.before_write(offset, len, self.info().size)? {
            let taken = self
                .fence(rec)
                .and_then(|()| rec.journal.repaired(&[], &self.resync(&left)));
            if let Err(err) = taken {
                rec.journal.after_write(offset, len);
                return Err(err);
            }
        }
        rec.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Fences the legs that are not stale with the lease just taken;
    /// those that cannot be fenced are marked stale.
    fn fence(&self, rec: &Recorded) -> Result<()> {
        let stale = self.stale.lock().clone();
        let good: Vec<usize> = (0..self.legs.len()).filter(|&i| !stale[i]).collect();
        let failed = fence_legs(&self.legs, &good, rec.journal.epoch(), self.uuid)?;
        let Some((first, why)) = failed.first() else {
            return Ok(());
        };
        if failed.len() == good.len() {
            return Err(Error::new(
                why.errno(),
                format!(
                    "object {}: no copy could be fenced for this writer ({}: {why})",
                    self.uuid, self.legs[*first].0
                ),
            ));
        }
        let unfenced: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
        let mut stale = self.stale.lock();
        for &i in &unfenced {
            stale[i] = true;
        }
        drop(stale);
        rec.journal.mark_stale(&unfenced)
    }

    /// Makes the copies agree again over write-intent `regions` a writer
    /// left: each is copied from one good leg onto the others. Returns
    /// the regions resynced (a leg that fails is marked stale).
    fn resync(&self, regions: &[u64]) -> Vec<u64> {
        let size = self.info().size;
        let mut done = Vec::new();
        for &region in regions {
            let lo = region * INTENT_REGION_BYTES;
            if lo >= size {
                done.push(region);
                continue;
            }
            let hi = (lo + INTENT_REGION_BYTES).min(size);
            match self.resync_range(lo, hi) {
                Ok(()) => done.push(region),
                Err(err) => crate::log::warn(&format!(
                    "object {}: write-intent region {region} could not be resynced ({err}); 'rawstor repair' retries it",
                    self.uuid
                )),
            }
        }
        done
    }

    fn resync_range(&self, lo: u64, hi: u64) -> Result<()> {
        let order = self.readable();
        let mut buf = vec![0u8; COPY_STEP_BYTES as usize];
        let mut missed = Vec::new();
        let mut offset = lo;
        while offset < hi {
            let n = COPY_STEP_BYTES.min(hi - offset) as usize;
            let piece = &mut buf[..n];
            let (source, _) = self.read_any(&order, offset, piece)?;
            for &i in &order {
                if Some(i) == source || missed.contains(&i) {
                    continue;
                }
                let leg = self.legs[i].1.as_ref().expect("readable legs are open");
                if let Err(err) = store_piece(leg, offset, piece) {
                    crate::log::warn(&format!(
                        "copy {} of object {} missed a resync ({err}); it is marked stale until repaired",
                        self.legs[i].0, self.uuid
                    ));
                    missed.push(i);
                }
            }
            offset += n as u64;
        }
        if missed.is_empty() {
            return Ok(());
        }
        {
            let mut stale = self.stale.lock();
            for &i in &missed {
                stale[i] = true;
            }
        }
        let rec = self
            .recorded
            .as_ref()
            .expect("only recorded mirrors resync");
        rec.journal.mark_stale(&missed)
    }

    /// Reads `piece` at `offset` from the first of the legs `order` that
    /// reads it whole, or else block by block, each block from any leg
    /// whose checksums verify it: one bad block on every copy, each in a
    /// different place, still reads. Returns the leg that read it whole
    /// (if one did) and the legs whose data failed to verify, for the
    /// caller to rewrite. Fails naming the first block that no copy
    /// verifies.
    fn read_any(
        &self,
        order: &[usize],
        offset: u64,
        piece: &mut [u8],
    ) -> Result<(Option<usize>, Vec<usize>)> {
        let mut failed: Vec<(usize, Error)> = Vec::new();
        for &i in order {
            let leg = self.legs[i].1.as_ref().expect("readable legs are open");
            match wait(|f| leg.read(offset, &[RawBuf::of_mut(piece)], f)) {
                Ok(_) => return Ok((Some(i), corrupt(&failed))),
                Err(err) if caller_error(&err) => return Err(err),
                Err(err) => failed.push((i, err)),
            }
        }
        // Only copies that answered with bad data are worth asking again
        // block by block (one that is down would time out per block).
        let candidates = corrupt(&failed);
        for (b, block) in piece.chunks_mut(BLOCK_SIZE as usize).enumerate() {
            let at = offset + b as u64 * BLOCK_SIZE;
            let mut errors = Vec::new();
            let verified = candidates.iter().any(|&i| {
                let leg = self.legs[i].1.as_ref().expect("readable legs are open");
                match wait(|f| leg.read(at, &[RawBuf::of_mut(block)], f)) {
                    Ok(_) => true,
                    Err(err) => {
                        errors.push(format!("{}: {err}", self.legs[i].0));
                        false
                    }
                }
            });
            if !verified {
                let why = failed
                    .iter()
                    .filter(|(i, _)| !candidates.contains(i))
                    .map(|(i, e)| format!("{}: {e}", self.legs[*i].0))
                    .chain(errors);
                return Err(Error::new(
                    libc::EIO,
                    format!(
                        "object {}: no copy verifies bytes {at}..{} ({})",
                        self.uuid,
                        at + block.len() as u64,
                        why.collect::<Vec<_>>().join("; ")
                    ),
                ));
            }
        }
        Ok((None, candidates))
    }

    /// Rewrites `piece` at `offset` on the `corrupt` legs (a read found
    /// bad data there), logging each. Waits.
    fn mend(&self, corrupt: &[usize], offset: u64, piece: &mut [u8]) -> Result<()> {
        for &i in corrupt {
            let (name, leg) = &self.legs[i];
            let leg = leg.as_ref().expect("readable legs are open");
            store_piece(leg, offset, piece)?;
            crate::log::warn(&format!(
                "object {}: {name}: bytes {offset}..{} failed their checksums; rewritten from the copies that verify",
                self.uuid,
                offset + piece.len() as u64
            ));
        }
        Ok(())
    }

    /// Runs `start` on every good leg, marking those where it fails, and
    /// (when the operation changes data) those that could not be opened.
    fn run_on_good_legs(
        self: &Arc<Self>,
        start: impl Fn(&Leg, Finish),
        finish: Finish,
        changes_data: bool,
    ) {
        let stale = self.stale.lock().clone();
        let targets: Vec<usize> = (0..self.legs.len())
            .filter(|&i| self.legs[i].1.is_some() && !stale[i])
            .collect();
        // Legs that could not be opened miss a data change too; a flush
        // has nothing for them (they took no write from this opening).
        let down: Vec<usize> = (0..self.legs.len())
            .filter(|&i| changes_data && self.legs[i].1.is_none() && !stale[i])
            .collect();
        if targets.is_empty() {
            return finish(Err(Error::new(
                libc::EIO,
                format!("no writable copy of object {} is left", self.uuid),
            )));
        }
        let results = Arc::new(Mutex::new(Vec::with_capacity(targets.len())));
        let remaining = Arc::new(AtomicUsize::new(targets.len()));
        let finish = Arc::new(Mutex::new(Some(finish)));
        // A leg that lags behind the others fails after a short while
        // more, and is marked stale by the settling.
        // Flushes take as long as the dirty data: their own average.
        let latency = if changes_data {
            &self.changes
        } else {
            &self.flushes
        };
        let fan = Arc::new(Fan::new(Arc::clone(latency), &self.pieces, targets.clone()));
        for (k, &i) in targets.iter().enumerate() {
            let me = Arc::clone(self);
            let results = Arc::clone(&results);
            let remaining = Arc::clone(&remaining);
            let finish = Arc::clone(&finish);
            let fan = Arc::clone(&fan);
            let down = down.clone();
            let leg = self.legs[i].1.as_ref().expect("targets are open");
            start(
                leg,
                Box::new(move |result| {
                    fan.answered(k, result.is_ok());
                    results.lock().push((i, result));
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        let results = std::mem::take(&mut *results.lock());
                        if let Some(finish) = finish.lock().take() {
                            me.settle(results, down, finish);
                        }
                    }
                }),
            );
        }
        fan.started_all();
    }

    /// After every leg answered: succeed, fail, or mark and succeed.
    fn settle(
        self: Arc<Self>,
        results: Vec<(usize, Result<u64>)>,
        down: Vec<usize>,
        finish: Finish,
    ) {
        let ok: Vec<(usize, u64)> = results
            .iter()
            .filter_map(|(i, r)| r.as_ref().ok().map(|&n| (*i, n)))
            .collect();
        let failed: Vec<(usize, Error)> = results
            .into_iter()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect();
        let Some(&(_, bytes)) = ok.first() else {
            return finish(Err(failed.into_iter().next().expect("some leg answered").1));
        };
        // Fenced out by a newer writer: the change is refused, and this
        // writer marks nothing stale.
        if let Some((_, err)) = failed.iter().find(|(_, e)| caller_error(e)) {
            return finish(Err(err.clone()));
        }
        let missed: Vec<usize> = failed.iter().map(|(i, _)| *i).chain(down).collect();
        if missed.is_empty() {
            return finish(Ok(bytes));
        }
        for (i, err) in &failed {
            crate::log::warn(&format!(
                "copy {} of object {} missed a write ({err}); it is marked stale until repaired",
                self.legs[*i].0, self.uuid
            ));
        }
        let names: Vec<String> = {
            let mut stale = self.stale.lock();
            for &i in &missed {
                stale[i] = true;
            }
            (0..self.legs.len())
                .filter(|&i| stale[i])
                .map(|i| self.legs[i].0.clone())
                .collect()
        };
        // Best effort: a reachable leg that failed learns it is stale.
        for &i in &missed {
            if let Some(leg) = &self.legs[i].1 {
                let own = Marks {
                    stale: true,
                    stale_peers: Vec::new(),
                };
                leg.set_marks(&own, false, Box::new(|_| {}));
            }
        }
        if let Some(rec) = &self.recorded {
            // The MDT's record is where the marks live (waited for on a
            // worker thread: the event loop never waits).
            let journal = Arc::clone(&rec.journal);
            let uuid = self.uuid;
            return rec.pool.run(move || {
                finish(journal.mark_stale(&missed).map(|()| bytes).map_err(|e| {
                    Error::new(
                        libc::EIO,
                        format!("object {uuid}: a copy missed a write and the MDT could not record it: {e}"),
                    )
                }))
            });
        }
        let marks = Marks {
            stale: false,
            stale_peers: names,
        };
        let recorded = Arc::new(AtomicUsize::new(0));
        let remaining = Arc::new(AtomicUsize::new(ok.len()));
        let finish = Arc::new(Mutex::new(Some(finish)));
        for &(i, _) in &ok {
            let recorded = Arc::clone(&recorded);
            let remaining = Arc::clone(&remaining);
            let finish = Arc::clone(&finish);
            let uuid = self.uuid;
            let leg = self.legs[i].1.as_ref().expect("ok legs are open");
            leg.set_marks(
                &marks,
                false,
                Box::new(move |result| {
                    if result.is_ok() {
                        recorded.fetch_add(1, Ordering::AcqRel);
                    }
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        let outcome = if recorded.load(Ordering::Acquire) > 0 {
                            Ok(bytes)
                        } else {
                            Err(Error::new(
                                libc::EIO,
                                format!("object {uuid}: a copy missed a write and no other copy could record it"),
                            ))
                        };
                        if let Some(finish) = finish.lock().take() {
                            finish(outcome);
                        }
                    }
                }),
            );
        }
    }

    /// Copies a good leg onto every stale one and clears the marks; for
    /// an object placed by a rawstor-mdt, under the writer lease, also
    /// resyncing the regions a writer left. `progress` gets (bytes done,
    /// bytes to do). Returns the names of the repaired legs.
    fn repair_legs(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<String>> {
        if let Some((name, _)) = self.legs.iter().find(|(_, l)| l.is_none()) {
            return Err(Error::new(
                libc::EHOSTDOWN,
                format!(
                    "cannot repair object {}: copy {name} is unreachable",
                    self.uuid
                ),
            ));
        }
        // The writer lease first: nobody writes while the copies are made
        // to agree.
        let left = match &self.recorded {
            Some(rec) => {
                let _gate = rec.gate.lock();
                match rec.journal.before_write(0, 0, 0)? {
                    Some(left) => {
                        self.fence(rec)?;
                        left
                    }
                    None => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        let stale = self.stale.lock().clone();
        let Some(source) = (0..self.legs.len()).find(|&i| !stale[i]) else {
            return Err(Error::new(libc::ESTALE, "no good copy to repair from"));
        };
        let targets: Vec<usize> = (0..self.legs.len()).filter(|&i| stale[i]).collect();
        if let Some(rec) = &self.recorded {
            fence_for_repair(&self.legs, &targets, rec.journal.epoch(), self.uuid)?;
        }
        let sources: Vec<usize> = (0..self.legs.len()).filter(|&i| !stale[i]).collect();
        let size = self.legs[source].1.as_ref().expect("all open").info().size;
        let total = size * targets.len() as u64;
        let mut done_bytes = 0;
        let mut buf = vec![0u8; COPY_STEP_BYTES as usize];
        let failed = repair_failed(self.uuid);
        for &t in &targets {
            let dst = self.legs[t].1.as_ref().expect("all open");
            dst.resize(size, true).map_err(&failed)?;
            let mut offset = 0;
            while offset < size {
                let n = COPY_STEP_BYTES.min(size - offset) as usize;
                let piece = &mut buf[..n];
                let (_, corrupt) = self.read_any(&sources, offset, piece)?;
                store_piece(dst, offset, piece).map_err(&failed)?;
                self.mend(&corrupt, offset, piece)?;
                offset += n as u64;
                done_bytes += n as u64;
                progress(done_bytes, total);
            }
            wait(|f| dst.simple(Opcode::Flush, 0, 0, f)).map_err(&failed)?;
            let clean = Marks::default();
            wait(|f| dst.set_marks(&clean, true, f)).map_err(&failed)?;
        }
        for &i in &sources {
            let leg = self.legs[i].1.as_ref().expect("all open");
            wait(|f| leg.simple(Opcode::Flush, 0, 0, f))?;
        }
        let repaired: Vec<String> = targets.iter().map(|&t| self.legs[t].0.clone()).collect();
        for (i, (_, leg)) in self.legs.iter().enumerate() {
            if stale[i] {
                continue;
            }
            let leg = leg.as_ref().expect("all open");
            let mut marks = leg.marks();
            marks.stale_peers.retain(|p| !repaired.contains(p));
            marks.stale = false;
            wait(|f| leg.set_marks(&marks, true, f))?;
        }
        self.stale.lock().iter_mut().for_each(|s| *s = false);
        if let Some(rec) = &self.recorded {
            let resynced = self.resync(&left);
            for (i, (_, leg)) in self.legs.iter().enumerate() {
                let leg = leg.as_ref().expect("all open");
                if self.stale.lock()[i] {
                    continue;
                }
                wait(|f| leg.simple(Opcode::Flush, 0, 0, f))?;
            }
            rec.journal.repaired(&targets, &resynced)?;
            if resynced.len() < left.len() {
                return Err(Error::new(
                    libc::EIO,
                    format!(
                        "object {}: {} write-intent regions could not be resynced",
                        self.uuid,
                        left.len() - resynced.len()
                    ),
                ));
            }
        }
        Ok(repaired)
    }
}

impl Backend for Mirror {
    /// Size and layout, from a good leg.
    fn info(&self) -> ObjectInfo {
        let stale = self.stale.lock().clone();
        self.legs
            .iter()
            .zip(stale)
            .find_map(|((_, leg), st)| leg.as_ref().filter(|_| !st))
            .or_else(|| self.legs.iter().find_map(|(_, l)| l.as_ref()))
            .map(|l| l.info())
            .expect("a mirror keeps at least one leg")
    }

    /// The size the good copies have now (another handle may have
    /// resized the object), as [`Mirror::info`] gives it: every good copy
    /// is asked, so that whichever it looks at is current.
    fn refresh_size(&self) -> Result<u64> {
        let stale = self.stale.lock().clone();
        let mut answers = self
            .legs
            .iter()
            .zip(stale)
            .filter_map(|((_, leg), st)| leg.as_ref().filter(|_| !st))
            .map(|l| l.refresh_size())
            .collect::<Vec<_>>()
            .into_iter();
        let mut last = None;
        for answer in answers.by_ref() {
            match answer {
                Ok(size) => return Ok(size),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::new(
                libc::EIO,
                format!("no readable copy of object {} is left", self.uuid),
            )
        }))
    }

    /// Reads from one good leg, failing over to the next.
    fn read(&self, offset: u64, bufs: &[RawBuf], finish: Finish) {
        let order = self.readable();
        self.me()
            .read_from(order, 0, offset, bufs.to_vec(), finish, None);
    }

    fn write(&self, offset: u64, bufs: &[RawBuf], fua: bool, finish: Finish) {
        let len = crate::lent::total(bufs);
        let bufs = bufs.to_vec();
        self.me().change(
            offset,
            len,
            move |leg, done| leg.write(offset, &bufs, fua, done),
            finish,
        );
    }

    fn simple(&self, op: Opcode, offset: u64, len: u64, finish: Finish) {
        if op != Opcode::Flush {
            return self.me().change(
                offset,
                len,
                move |leg, done| leg.simple(op, offset, len, done),
                finish,
            );
        }
        let finish = match &self.recorded {
            None => finish,
            // Regions idle since before the flush are clean on every leg
            // that took it: they may leave the bitmap.
            Some(rec) => {
                let started = std::time::Instant::now();
                let journal = Arc::clone(&rec.journal);
                let pool = Arc::clone(&rec.pool);
                Box::new(move |result: Result<u64>| match result {
                    Ok(n) => pool.run(move || {
                        journal.flushed(started, &BTreeSet::new());
                        finish(Ok(n))
                    }),
                    Err(err) => finish(Err(err)),
                })
            }
        };
        self.me().run_on_good_legs(
            move |leg, done| leg.simple(Opcode::Flush, 0, 0, done),
            finish,
            false,
        );
    }

    /// Resizes every good leg (and, for an object placed by a rawstor-mdt,
    /// its record). Waits.
    fn resize(&self, size: u64, allow_shrink: bool) -> Result<()> {
        let result = wait(|finish| {
            self.me().change(
                0,
                0,
                move |leg, done| done(leg.resize(size, allow_shrink).map(|()| 0)),
                finish,
            )
        });
        match (&self.recorded, result) {
            (Some(rec), Ok(_)) => rec.journal.set_size(size),
            (_, result) => result.map(drop),
        }
    }

    /// Block status from one good leg, failing over like a read.
    fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)> {
        let mut last = None;
        for i in self.readable() {
            let leg = self.legs[i].1.as_ref().expect("readable legs are open");
            match leg.extent(offset, len) {
                Ok(extent) => return Ok(extent),
                Err(err) if caller_error(&err) => return Err(err),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::new(
                libc::EIO,
                format!("no readable copy of object {} is left", self.uuid),
            )
        }))
    }

    fn scrub(&self, repair: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<ScrubReport> {
        self.scrub_legs(repair, progress)
    }

    fn repair(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<String>> {
        self.repair_legs(progress)
    }

    /// Gives back the writer lease (the object was closed).
    fn release(&self) {
        if let Some(rec) = &self.recorded {
            rec.journal.release();
        }
    }
}

/// The legs of `failed` whose reads found bad data (checksums), not a
/// server that did not answer.
fn corrupt(failed: &[(usize, Error)]) -> Vec<usize> {
    failed
        .iter()
        .filter(|(_, e)| e.errno() == libc::EIO)
        .map(|(i, _)| *i)
        .collect()
}

/// Writes `piece` at `offset` of `leg`, as a discard when it is all zeros
/// (copies keep their holes). Waits.
fn store_piece(leg: &Leg, offset: u64, piece: &mut [u8]) -> Result<u64> {
    if piece.iter().all(|&b| b == 0) {
        wait(|f| leg.simple(Opcode::Discard, offset, piece.len() as u64, f))
    } else {
        wait(|f| leg.write(offset, &[RawBuf::of_mut(piece)], false, f))
    }
}
