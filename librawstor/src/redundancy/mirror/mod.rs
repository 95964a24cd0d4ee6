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
use crate::error::{Error, Result};
use crate::lent::RawBuf;
use crate::mdt::INTENT_REGION_BYTES;
use crate::pool::Pool;
use crate::redundancy::journal::Journal;
use crate::redundancy::straggler::{Fan, Latency, Pieces, Slow};
use crate::remote::Finish;
use crate::store::{BLOCK_SIZE, ObjectInfo};
use crate::uuid::Uuid;
use crate::wire::{Marks, Opcode};

mod change;
mod repair;
mod scrub;

use repair::store_piece;
pub(crate) use repair::{fence_for_repair, repair_failed};
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
    for (&i, result) in which.iter().zip(crate::fan_in::wait_all(starts)) {
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

/// The names and servers of `legs`, for a [`crate::redundancy::straggler::Fan`].
pub(crate) fn pieces(legs: &[(String, Option<Leg>)]) -> Pieces {
    legs.iter()
        .map(|(name, leg)| (name.clone(), leg.as_ref().and_then(|l| l.hurrier())))
        .collect()
}

/// Which of `legs` are stale: those the MDT's record lists (`recorded`),
/// those whose own marks say so, and those another leg's marks name.
fn stale_legs(legs: &[(String, Result<Leg>)], recorded: &[usize]) -> Vec<bool> {
    let names: Vec<&String> = legs.iter().map(|(n, _)| n).collect();
    let mut stale: Vec<bool> = (0..legs.len()).map(|i| recorded.contains(&i)).collect();
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
    stale
}

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
        let stale = stale_legs(&legs, stale);
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
        mirror.tell_stale_legs();
        Ok(mirror)
    }

    /// Tells reachable stale legs what they are, so that no client (this
    /// one or an older one) reads them.
    fn tell_stale_legs(&self) {
        let stale = self.stale.lock().clone();
        for (i, (_, leg)) in self.legs.iter().enumerate() {
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
                    Ok(n) => pool.run_finishing(finish, move |finish| {
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
