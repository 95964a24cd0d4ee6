//! What a writer of an mdt:// object keeps with its rawstor-mdt: the writer
//! lease, the write-intent bitmap and stale marks ([`MdtJournal`]), and the
//! thread that renews the leases of an instance ([`Keeper`]).
//!
//! The lease is taken at the first change (reading needs none), renewed
//! every third of [`LEASE_TTL_MS`], and given back when the object is
//! closed. A second writer gets `EBUSY` unless it breaks the lease; the
//! writer whose lease was broken learns it at its next renewal, and its
//! later changes fail with `EBUSY`. While the MDT is unreachable, writers
//! go on (a restarted MDT grants only renewals for one lease lifetime). A
//! writer cut off from a running MDT may have lost its lease without
//! knowing: the OSTs fence it out (`ENOLCK`) once the new writer has
//! fenced them with its epoch (see `mirror::fence_legs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::mdt::{
    INTENT_REGION_BYTES, LEASE_BREAK, LEASE_RELEASE, LEASE_RENEW, LEASE_TTL_MS, ObjectRecord,
};
use crate::net::Connection;
use crate::redundancy::journal::Journal;
use crate::remote;
use crate::store::record::Record;
use crate::uuid::Uuid;

/// A region is cleared from the bitmap after a flush once no write has
/// touched it for this long (fewer MDT updates under steady writes).
const INTENT_IDLE: Duration = Duration::from_secs(1);

/// A writer streaming through the object has up to this many regions
/// after its write marked ahead of it: when its write has to mark a
/// region, those after it are marked in the same MDT update, and once it
/// comes within half of this of an unmarked region, they are marked in
/// the background (the MDT fsyncs every update: a writer that waited for
/// each 4 MiB region ran at half speed). A writer killed mid-stream
/// leaves at most 32 MiB more to resync; regions marked ahead but not
/// written are cleared by flushes like idle ones.
const MARK_AHEAD: u64 = 8;

/// A write that has to mark a region away from the marked ones (a random
/// writer) marks every region of its aligned group of this many (64 MiB)
/// in the same MDT update: a random writer over a large object otherwise
/// waits for the MDT at nearly every new 4 MiB region. Resyncing after a
/// writer dies then covers whole groups where it wrote.
const MARK_GROUP: u64 = 16;

/// While a restarted MDT lets earlier writers renew first, a new writer
/// asks again this often, for one lease lifetime and this much more.
const GRACE_RETRY: Duration = Duration::from_millis(250);
const GRACE_SLACK: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    held: bool,
    /// The lease's epoch at the MDT (named in renewals).
    epoch: u64,
    /// Why changes are refused (the lease was broken).
    lost: Option<Error>,
    /// Regions marked in the MDT's bitmap by or for this writer.
    marked: BTreeSet<u64>,
    /// Per region: writes in flight, and when the last one ended.
    inflight: HashMap<u64, usize>,
    last_write: HashMap<u64, Instant>,
    /// When the last successful flush started.
    flushed_at: Option<Instant>,
    /// Where the last write seen by `wants_ahead` ended (a write starting
    /// there is streaming), and whether regions ahead are being marked.
    stream_end: u64,
    marking_ahead: bool,
}

/// One open mdt:// object's lease, write intent and stale marks.
///
/// Two locks: `calls` is held across every call to the MDT (so that the
/// bitmap's adds and clears reach it in the order they were decided);
/// `state` is only ever held briefly, never across a call: the event loop
/// thread takes it when a write completes, and the MDT's answers come
/// through that thread.
pub(crate) struct MdtJournal {
    me: Weak<MdtJournal>,
    mdt: Arc<Connection>,
    uuid: Uuid,
    break_lease: bool,
    calls: Mutex<()>,
    state: Mutex<State>,
    keeper: Arc<Keeper>,
}

impl MdtJournal {
    pub(crate) fn new(
        mdt: Arc<Connection>,
        uuid: Uuid,
        break_lease: bool,
        keeper: Arc<Keeper>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            mdt,
            uuid,
            break_lease,
            calls: Mutex::new(()),
            state: Mutex::new(State::default()),
            keeper,
        })
    }

    /// Changes the object's record as this writer (refused once another
    /// took the lease).
    fn update(&self, change: &Record) -> Result<ObjectRecord> {
        let epoch = self.state.lock().epoch;
        remote::mdt_update(&self.mdt, self.uuid, epoch, change)
    }

    /// Takes the lease (waiting out an MDT's grace period after restart).
    fn acquire(&self) -> Result<(ObjectRecord, u64)> {
        let flags = if self.break_lease { LEASE_BREAK } else { 0 };
        let deadline = Instant::now() + Duration::from_millis(LEASE_TTL_MS) + GRACE_SLACK;
        loop {
            match remote::mdt_lease(&self.mdt, self.uuid, flags, 0) {
                Err(err) if err.errno() == libc::EAGAIN && Instant::now() < deadline => {
                    thread::sleep(GRACE_RETRY);
                }
                Err(err) if err.errno() == libc::EBUSY => {
                    return Err(Error::new(
                        libc::EBUSY,
                        format!("cannot write: {}", err.context()),
                    ));
                }
                result => return result,
            }
        }
    }

    /// Renews the lease; `false` once it is gone (broken).
    fn renew(&self) -> bool {
        // Not under `calls`: a renewal need not wait for a long acquire.
        let epoch = {
            let state = self.state.lock();
            if !state.held || state.lost.is_some() {
                return state.held;
            }
            state.epoch
        };
        match remote::mdt_lease(&self.mdt, self.uuid, LEASE_RENEW, epoch) {
            Ok(_) => true,
            Err(err) if err.errno() == libc::EBUSY || err.errno() == libc::ENOENT => {
                crate::log::warn(&format!(
                    "object {}: the writer lease is lost ({err}); changes are refused from now on",
                    self.uuid
                ));
                self.state.lock().lost = Some(Error::new(
                    libc::EBUSY,
                    format!(
                        "object {}: another client took over writing it ({})",
                        self.uuid,
                        err.context()
                    ),
                ));
                false
            }
            // The MDT is away: the lease cannot be given to anyone else
            // before it comes back and this renewal gets through.
            Err(_) => true,
        }
    }

    /// Gives the lease back, clearing the regions flushed since they
    /// were last written (called when the object is closed).
    fn release_lease(&self) {
        let _calls = self.calls.lock();
        let (clean, epoch) = {
            let mut state = self.state.lock();
            if !state.held {
                return;
            }
            let clean: Vec<u64> = state
                .marked
                .iter()
                .copied()
                .filter(|r| {
                    state.inflight.get(r).copied().unwrap_or(0) == 0
                        && state
                            .flushed_at
                            .is_some_and(|f| state.last_write.get(r).is_none_or(|&w| w < f))
                })
                .collect();
            // No write may count on these regions from here on.
            state.held = false;
            (clean, state.epoch)
        };
        if !clean.is_empty() {
            let mut change = Record::new();
            change.set("dirty_clear", join(&clean));
            if self.update(&change).is_ok() {
                let mut state = self.state.lock();
                for r in &clean {
                    state.marked.remove(r);
                }
            }
        }
        let _ = remote::mdt_lease(&self.mdt, self.uuid, LEASE_RELEASE, epoch);
    }
}

fn regions(offset: u64, len: u64) -> std::ops::RangeInclusive<u64> {
    if len == 0 {
        #[allow(clippy::reversed_empty_ranges)]
        return 1..=0;
    }
    offset / INTENT_REGION_BYTES..=(offset + len - 1) / INTENT_REGION_BYTES
}

fn join(items: &[impl ToString]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Journal for MdtJournal {
    fn before_write(&self, offset: u64, len: u64, size: u64) -> Result<Option<Vec<u64>>> {
        let _calls = self.calls.lock();
        let mut left = None;
        let held = {
            let state = self.state.lock();
            if let Some(lost) = &state.lost {
                return Err(lost.clone());
            }
            state.held
        };
        if !held {
            let (record, epoch) = self.acquire()?;
            let mut state = self.state.lock();
            state.held = true;
            state.epoch = epoch;
            left = Some(record.dirty.clone());
            state.marked.extend(record.dirty);
            drop(state);
            if let Some(me) = self.me.upgrade() {
                self.keeper.watch(&me);
            }
        }
        let new: Vec<u64> = {
            let state = self.state.lock();
            let mut new: Vec<u64> = regions(offset, len)
                .filter(|r| !state.marked.contains(r))
                .collect();
            let regions_in_size = size.div_ceil(INTENT_REGION_BYTES);
            if let (Some(&first), Some(&last)) = (new.first(), new.last()) {
                let ahead = if first > 0 && state.marked.contains(&(first - 1)) {
                    // A streaming writer: the regions it is heading for.
                    last + 1..=last + MARK_AHEAD
                } else {
                    // A random one: the rest of the regions' groups.
                    first / MARK_GROUP * MARK_GROUP
                        ..=last / MARK_GROUP * MARK_GROUP + MARK_GROUP - 1
                };
                new.extend(ahead.filter(|r| {
                    *r < regions_in_size && !state.marked.contains(r) && !(first..=last).contains(r)
                }));
                new.sort_unstable();
            }
            new
        };
        if !new.is_empty() {
            let mut change = Record::new();
            change.set("dirty_add", join(&new));
            self.update(&change).map_err(|e| {
                Error::new(
                    e.errno(),
                    format!("cannot record the write intent on the MDT: {e}"),
                )
            })?;
        }
        // Marked and counted at once: a flush cannot clear them between.
        let mut state = self.state.lock();
        state.marked.extend(new);
        for r in regions(offset, len) {
            *state.inflight.entry(r).or_default() += 1;
        }
        Ok(left)
    }

    fn enter(&self, offset: u64, len: u64) -> bool {
        let mut state = self.state.lock();
        if !state.held
            || state.lost.is_some()
            || !regions(offset, len).all(|r| state.marked.contains(&r))
        {
            return false;
        }
        for r in regions(offset, len) {
            *state.inflight.entry(r).or_default() += 1;
        }
        true
    }

    fn wants_ahead(&self, offset: u64, len: u64, size: u64) -> bool {
        let mut state = self.state.lock();
        let streaming = len > 0 && offset == state.stream_end;
        state.stream_end = offset + len;
        if !streaming || state.marking_ahead || !state.held || state.lost.is_some() {
            return false;
        }
        let last = (offset + len - 1) / INTENT_REGION_BYTES;
        let regions_in_size = size.div_ceil(INTENT_REGION_BYTES);
        let wanted = (last + 1..=last + MARK_AHEAD / 2)
            .any(|r| r < regions_in_size && !state.marked.contains(&r));
        state.marking_ahead = wanted;
        wanted
    }

    fn mark_ahead_skipped(&self) {
        self.state.lock().marking_ahead = false;
    }

    fn mark_ahead(&self, end: u64, size: u64) {
        let _calls = self.calls.lock();
        let first = end.div_ceil(INTENT_REGION_BYTES);
        let regions_in_size = size.div_ceil(INTENT_REGION_BYTES);
        let new: Vec<u64> = {
            let mut state = self.state.lock();
            if !state.held || state.lost.is_some() {
                state.marking_ahead = false;
                return;
            }
            (first..first + MARK_AHEAD)
                .filter(|r| *r < regions_in_size && !state.marked.contains(r))
                .collect()
        };
        let mut marked = new.is_empty();
        if !marked {
            let mut change = Record::new();
            change.set("dirty_add", join(&new));
            // Best effort: the write that needs a region marks it itself.
            marked = self.update(&change).is_ok();
        }
        let mut state = self.state.lock();
        if marked {
            // Marked once the MDT has them, and kept through one idle
            // period: the writer is on its way.
            let now = Instant::now();
            for &r in &new {
                state.marked.insert(r);
                state.last_write.insert(r, now);
            }
        }
        state.marking_ahead = false;
    }

    fn after_write(&self, offset: u64, len: u64) {
        let mut state = self.state.lock();
        let now = Instant::now();
        for r in regions(offset, len) {
            if let Some(n) = state.inflight.get_mut(&r) {
                *n = n.saturating_sub(1);
            }
            state.last_write.insert(r, now);
        }
    }

    fn mark_stale(&self, shards: &[usize]) -> Result<()> {
        let _calls = self.calls.lock();
        let mut change = Record::new();
        change.set("stale_add", join(shards));
        self.update(&change).map(drop)
    }

    fn flushed(&self, started: Instant, keep: &BTreeSet<u64>) {
        let _calls = self.calls.lock();
        let clean: Vec<u64> = {
            let mut state = self.state.lock();
            state.flushed_at = Some(started);
            let now = Instant::now();
            let clean: Vec<u64> = state
                .marked
                .iter()
                .copied()
                .filter(|r| !keep.contains(r) && state.inflight.get(r).copied().unwrap_or(0) == 0)
                .filter(|r| {
                    state
                        .last_write
                        .get(r)
                        .is_none_or(|&w| w < started && now.duration_since(w) > INTENT_IDLE)
                })
                .collect();
            // Unmarked before the MDT hears of it: a write that starts
            // meanwhile marks its region again (after this clear: `calls`).
            for r in &clean {
                state.marked.remove(r);
            }
            clean
        };
        if clean.is_empty() {
            return;
        }
        let mut change = Record::new();
        change.set("dirty_clear", join(&clean));
        // Best effort: a region left marked costs a resync, not data.
        let cleared = self.update(&change).is_ok();
        let mut state = self.state.lock();
        for r in &clean {
            if cleared {
                state.last_write.remove(r);
            } else {
                state.marked.insert(*r);
            }
        }
    }

    fn set_size(&self, size: u64) -> Result<()> {
        let _calls = self.calls.lock();
        let mut change = Record::new();
        change.set("size", size);
        self.update(&change).map(drop)
    }

    fn recorded_size(&self) -> Result<u64> {
        crate::remote::mdt_lookup(&self.mdt, self.uuid).map(|record| record.size)
    }

    fn release(&self) {
        self.release_lease();
    }

    fn epoch(&self) -> u64 {
        self.state.lock().epoch
    }

    fn repaired(&self, shards: &[usize], regions: &[u64]) -> Result<()> {
        if shards.is_empty() && regions.is_empty() {
            return Ok(());
        }
        let _calls = self.calls.lock();
        let mut change = Record::new();
        change
            .set("repaired", join(shards))
            .set("dirty_clear", join(regions));
        self.update(&change)?;
        let mut state = self.state.lock();
        for r in regions {
            state.marked.remove(r);
        }
        Ok(())
    }
}

/// Renews the leases of an instance's writers from one thread, started
/// with the first lease and joined when the instance goes.
pub(crate) struct Keeper {
    watched: Mutex<Vec<Weak<MdtJournal>>>,
    stop: Mutex<bool>,
    wake: Condvar,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Keeper {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            watched: Mutex::new(Vec::new()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        })
    }

    fn watch(self: &Arc<Self>, journal: &Arc<MdtJournal>) {
        self.watched.lock().push(Arc::downgrade(journal));
        let mut thread = self.thread.lock();
        if thread.is_none() {
            let keeper = Arc::downgrade(self);
            *thread = thread::Builder::new()
                .name("rawstor-lease".into())
                .spawn(move || Self::run(&keeper))
                .ok();
        }
    }

    fn run(keeper: &Weak<Self>) {
        let period = Duration::from_millis(LEASE_TTL_MS / 3);
        loop {
            let Some(me) = keeper.upgrade() else { return };
            {
                let mut stop = me.stop.lock();
                if !*stop {
                    me.wake.wait_for(&mut stop, period);
                }
                if *stop {
                    return;
                }
            }
            let live: Vec<Arc<MdtJournal>> = {
                let mut watched = me.watched.lock();
                watched.retain(|w| w.strong_count() > 0);
                watched.iter().filter_map(Weak::upgrade).collect()
            };
            for journal in live {
                journal.renew();
            }
        }
    }

    /// Stops and joins the renewing thread.
    pub(crate) fn stop(&self) {
        *self.stop.lock() = true;
        self.wake.notify_all();
        if let Some(handle) = self.thread.lock().take() {
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}
