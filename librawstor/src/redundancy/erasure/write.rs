//! Writes of erasure-coded objects: whole stripes, the units a write does
//! not fill read first; parity computed from data; every shard a write
//! changes gets it, or is recorded stale before the write completes.

use std::sync::Arc;

use parking_lot::Mutex;

use super::locks::Granted;
use super::*;
use crate::fan_in::FanIn;

impl Erasure {
    /// The ranges `(data shard, lo, hi)` of the shard rows `base..base +
    /// row` that a write covering `spans` does not fill: read before the
    /// parity can be computed.
    pub(super) fn uncovered(
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

    /// Reads into `write`'s rows the ranges it does not cover; the last
    /// read's completion goes on with the write
    /// ([`StripeWrite::units_read`]).
    fn read_uncovered(&self, write: Arc<StripeWrite>) {
        // Units of a shard that is out or stale are rebuilt without asking.
        let need: Vec<(usize, u64, u64)> = write
            .need
            .iter()
            .copied()
            .filter(|n| self.usable(n.0).is_some())
            .collect();
        if need.is_empty() {
            return write.units_read(&[], Vec::new());
        }
        let base = write.stripes.0 * EC_UNIT;
        // A unit slower than its peers lately have been is rebuilt.
        let within = self.reads.wait();
        let targets: Vec<RawBuf> = {
            let mut rows = write.rows.lock();
            need.iter()
                .map(|&(j, a, b)| {
                    RawBuf::of_mut(&mut rows[j][(a - base) as usize..(b - base) as usize])
                })
                .collect()
        };
        let shards: Vec<usize> = need.iter().map(|n| n.0).collect();
        let all = FanIn::new(
            need.len(),
            Box::new(move |results| write.units_read(&shards, results)),
        );
        for (k, (&(j, a, _), target)) in need.iter().zip(targets).enumerate() {
            // The rows stay in the write, untouched but by these reads.
            self.on_usable(
                j,
                all.part(k),
                // One that fails or is slow to answer is rebuilt.
                |leg, done| leg.read_within(a, std::slice::from_ref(&target), within, done),
            );
        }
    }

    /// Starts a write; `finish` gets its outcome. One state machine for
    /// every write, none of its steps waiting on a thread:
    ///
    /// 1. admission, on the caller's thread: the range checked, the
    ///    journal entered (when the lease is held and the regions marked;
    ///    otherwise a worker takes the lease or marks them in the MDT);
    /// 2. the stripes locked, or asked for: the write goes on, from a
    ///    worker, once the writes in its way have let go of them;
    /// 3. the units the write does not cover read from their data shards
    ///    (a write of whole stripes reads nothing); those that cannot be
    ///    read (a shard down, stale or slow) are rebuilt from the other
    ///    shards on a worker;
    /// 4. the data dealt out into the rows and the parity encoded (on a
    ///    worker; small rows on the loop thread; with no other write of
    ///    the object in flight, on the caller's thread, which would only
    ///    wait), and every shard written;
    /// 5. the shards that missed the write recorded stale (on a settling
    ///    thread: the MDT), then `finish`.
    pub(super) fn start_write(
        self: &Arc<Self>,
        offset: u64,
        bufs: &[RawBuf],
        fua: bool,
        finish: Finish,
    ) {
        let len = lent::total(bufs);
        if let Err(err) = self.check_range("write", offset, len) {
            return finish(Err(err));
        }
        if len == 0 {
            return finish(Ok(0));
        }
        let bufs = bufs.to_vec();
        if self.journal.enter(offset, len) {
            return self.lock_and_write(offset, bufs, fua, finish);
        }
        // The lease or the regions' marks wait for the MDT.
        let me = Arc::clone(self);
        self.pool
            .run_finishing(finish, move |finish| match me.prepare_write(offset, len) {
                Ok(()) => me.lock_and_write(offset, bufs, fua, finish),
                Err(err) => finish(Err(err)),
            });
    }

    /// Steps 2 to 5 of [`Erasure::start_write`], the journal entered.
    fn lock_and_write(self: &Arc<Self>, offset: u64, bufs: Vec<RawBuf>, fua: bool, finish: Finish) {
        let len = lent::total(&bufs);
        let stripe = self.stripe_bytes();
        let stripes = (offset / stripe, (offset + len).div_ceil(stripe));
        let base = stripes.0 * EC_UNIT;
        let row = (stripes.1 - stripes.0) * EC_UNIT;
        let pieces = self.pieces(offset, len);
        let spans = self.spans(&pieces);
        let need = self.uncovered(&spans, base, row);
        let write = Arc::new(StripeWrite {
            erasure: Arc::clone(self),
            offset,
            len,
            stripes,
            pieces,
            spans,
            need,
            bufs: Mutex::new(bufs),
            fua,
            alone: self.writing.fetch_add(1, Ordering::AcqRel) == 0,
            rows: Mutex::new(self.spare.take(self.shards.len(), row as usize)),
            finish: Mutex::new(Some(finish)),
        });
        let size = self.size.load(Ordering::Acquire);
        if self.journal.wants_ahead(offset, len, size) {
            let (journal, refused) = (Arc::clone(&self.journal), Arc::clone(&self.journal));
            self.pool.run_or(
                move || journal.mark_ahead(offset + len, size),
                move |_| refused.mark_ahead_skipped(),
            );
        }
        let waited = Arc::clone(&write);
        let granted: Granted = Box::new(move || {
            let (pool, refused) = (Arc::clone(&waited.erasure.pool), Arc::clone(&waited));
            pool.run_or(
                move || waited.begin(),
                move |err| refused.complete(Err(err)),
            );
        });
        if self.locks.lock_or_ask(stripes.0, stripes.1, granted) {
            write.begin();
        }
    }

    /// Writes `(shard, shard offset, bytes)` to each usable shard in
    /// parallel. Returns the shards that missed their write (out, stale
    /// or failed), or a caller error.
    pub(super) fn write_shards(
        &self,
        writes: Vec<(usize, u64, &[u8])>,
        fua: bool,
    ) -> Result<Vec<usize>> {
        let (live, out): (Vec<_>, Vec<_>) = writes
            .into_iter()
            .partition(|(i, _, _)| self.usable(*i).is_some());
        let mut missed: Vec<usize> = out.iter().map(|w| w.0).collect();
        let shards: Vec<usize> = live.iter().map(|w| w.0).collect();
        let raws: Vec<RawBuf> = live.iter().map(|w| RawBuf::of(w.2)).collect();
        let results = self.run_on_changes(&shards, false, |k, leg, f| {
            leg.write(live[k].1, std::slice::from_ref(&raws[k]), fua, f)
        });
        let (failed, error) = sort_outcomes(&shards, results, |i, err| {
            self.shard_failed(i, "write to", err)
        });
        if let Some(err) = error {
            return Err(err);
        }
        missed.extend(failed);
        Ok(missed)
    }

    /// [`Journal::before_write`]; when it took the lease, the shards are
    /// fenced with it, and the regions the previous writer left become
    /// the only suspect ones (those seen at open may have been cleared
    /// since), and are returned.
    pub(super) fn begin_write(&self, offset: u64, len: u64) -> Result<Vec<u64>> {
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
    pub(super) fn fence(&self) -> Result<()> {
        let stale = self.stale.lock().clone();
        let good: Vec<usize> = (0..self.shards.len()).filter(|&i| !stale[i]).collect();
        let epoch = self.journal.epoch();
        let failed = crate::redundancy::mirror::fence_legs(&self.shards, &good, epoch, self.uuid)?;
        let unfenced: Vec<usize> = failed.into_iter().map(|(i, _)| i).collect();
        self.settle(&unfenced)
    }

    /// Resyncs what a previous writer left, once, before this one writes.
    pub(super) fn prepare_write(&self, offset: u64, len: u64) -> Result<()> {
        let left = self.begin_write(offset, len)?;
        if !left.is_empty() {
            let resynced = self.resync(&left);
            self.journal.repaired(&[], &resynced)?;
        }
        Ok(())
    }

    /// [`Erasure::start_write`], waited for.
    #[cfg(test)]
    pub(crate) fn write_sync(
        self: &Arc<Self>,
        offset: u64,
        bufs: &[RawBuf],
        fua: bool,
    ) -> Result<u64> {
        crate::backend::wait(|done| self.start_write(offset, bufs, fua, done))
    }

    /// Writes `len` bytes at `offset`, taking them from `fill(pos, out)`:
    /// whole stripes, reading what the write does not cover.
    pub(super) fn write_stripes(
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
        assert!(
            refs.len() == k && refs.iter().all(|r| r.len() == row as usize),
            "a data row per data shard, spanning the stripes"
        );
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
    pub(super) fn settle(&self, missed: &[usize]) -> Result<()> {
        if missed.is_empty() {
            return Ok(());
        }
        let mut out: BTreeSet<usize> = self.stale_shards().into_iter().collect();
        out.extend(missed);
        if out.len() > self.codec.parity() {
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
                    self.codec.parity()
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

    pub(super) fn flush_sync(&self) -> Result<()> {
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
    pub(super) fn zero_sync(&self, op: Opcode, offset: u64, len: u64) -> Result<()> {
        self.check_range("discard", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.prepare_write(offset, len)?;
        let result = self.zero_range(op, offset, len);
        self.journal.after_write(offset, len);
        result
    }

    pub(super) fn zero_range(&self, op: Opcode, offset: u64, len: u64) -> Result<()> {
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
        let (failed, error) = sort_outcomes(&live, results, |i, err| {
            self.shard_failed(i, "discard of", err)
        });
        if let Some(err) = error {
            return Err(err);
        }
        missed.extend(failed);
        self.settle(&missed)
    }
}

/// A write started by [`Erasure::start_write`], until its last shard is done.
pub(super) struct StripeWrite {
    erasure: Arc<Erasure>,
    offset: u64,
    len: u64,
    /// The locked stripes, `first..end`.
    stripes: (u64, u64),
    /// The write's object bytes in the data shards, and the shard range
    /// each data shard gets.
    pieces: Vec<Piece>,
    spans: Vec<Option<(u64, u64)>>,
    /// The ranges `(data shard, lo, hi)` of the rows the write does not
    /// cover: read (or rebuilt) before the parity can be computed.
    need: Vec<(usize, u64, u64)>,
    /// Whether no other write of the object was in flight when it came.
    alone: bool,
    /// The caller's buffers.
    bufs: Mutex<Vec<RawBuf>>,
    fua: bool,
    /// Data rows then parity rows of the stripes, lent to the unit reads
    /// and then to the shard writes.
    rows: Mutex<Vec<Vec<u8>>>,
    finish: Mutex<Option<Finish>>,
}

impl StripeWrite {
    /// Sorts the outcomes of the unit reads or shard writes (`what`) on
    /// `shards`: the shards that failed (noted for the settling) and the
    /// caller's error.
    fn sort(&self, what: &str, shards: &[usize], results: Vec<Result<u64>>) -> Outcome {
        sort_outcomes(shards, results, |i, err| {
            self.erasure.shard_failed(i, what, err)
        })
    }

    /// The reads of the units the write does not cover are done.
    pub(super) fn units_read(self: Arc<Self>, shards: &[usize], results: Vec<Result<u64>>) {
        let (mut failed, error) = self.sort("read of", shards, results);
        // With the units of shards that were out or stale from the start.
        for j in self.need.iter().map(|n| n.0) {
            if !shards.contains(&j) && !failed.contains(&j) {
                failed.push(j);
            }
        }
        let pool = Arc::clone(&self.erasure.pool);
        match error {
            Some(err) => self.complete(Err(err)),
            // A small write's stripes are encoded here, on the loop
            // thread, in less time than a worker takes to wake up.
            None if failed.is_empty() && self.row_bytes() <= INLINE_ROW_BYTES => {
                self.encode_and_send()
            }
            None if failed.is_empty() => {
                let refused = Arc::clone(&self);
                pool.run_or(
                    move || self.encode_and_send(),
                    move |err| refused.complete(Err(err)),
                );
            }
            None => {
                // Rebuilding waits for other shards: on a worker, in this
                // write (its stripes stay locked, the units read are kept).
                let lost: Vec<(usize, u64, u64)> = self
                    .need
                    .iter()
                    .copied()
                    .filter(|n| failed.contains(&n.0))
                    .collect();
                let refused = Arc::clone(&self);
                pool.run_or(
                    move || self.rebuild_units(&lost),
                    move |err| refused.complete(Err(err)),
                );
            }
        }
    }

    /// Step 2 done, the stripes held: reads what the write does not
    /// cover, or, with nothing to read, encodes and sends.
    fn begin(self: Arc<Self>) {
        if !self.need.is_empty() {
            let erasure = Arc::clone(&self.erasure);
            return erasure.read_uncovered(self);
        }
        if self.alone && !crate::event_loop::on_loop_thread() {
            // The caller has no other write of this object in flight (one
            // at a time, as at queue depth 1): it would only wait, so its
            // thread encodes and sends, without a worker's wake-up.
            return self.encode_and_send();
        }
        let (pool, refused) = (Arc::clone(&self.erasure.pool), Arc::clone(&self));
        pool.run_or(
            move || self.encode_and_send(),
            move |err| refused.complete(Err(err)),
        );
    }

    /// On a worker: rebuilds the units `lost` (data shard, lo, hi) that
    /// could not be read from the other shards, then encodes and sends.
    fn rebuild_units(self: Arc<Self>, lost: &[(usize, u64, u64)]) {
        let base = self.stripes.0 * EC_UNIT;
        let rebuilt = {
            let mut rows = self.rows.lock();
            self.erasure.rebuild_ranges(lost, &mut rows, base)
        };
        match rebuilt {
            Ok(()) => self.encode_and_send(),
            Err(err) => self.complete(Err(err)),
        }
    }

    /// Bytes of each shard row the write's stripes span.
    pub(super) fn row_bytes(&self) -> u64 {
        (self.stripes.1 - self.stripes.0) * EC_UNIT
    }

    /// On a worker (on the loop thread for small rows): deals the data out
    /// into the rows, encodes the parity and starts the shard writes (the
    /// data shards' written ranges and the parity rows).
    pub(super) fn encode_and_send(self: Arc<Self>) {
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
            let row = self.row_bytes() as usize;
            assert_eq!(rows.len(), erasure.shards.len(), "a row per shard");
            assert!(rows.iter().all(|r| r.len() == row), "rows span the stripes");
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
        let order: Vec<usize> = writes.iter().map(|w| w.0).collect();
        let fan = Arc::new(erasure.fan(&order, false));
        let fua = self.fua;
        let all = FanIn::new(
            writes.len(),
            Box::new(move |results| self.shards_written(&order, results)),
        );
        for (k, (i, at, raw)) in writes.into_iter().enumerate() {
            let (watch, part) = (Arc::clone(&fan), all.part(k));
            // The rows stay untouched in the write until every shard is
            // done.
            erasure.on_usable(
                i,
                Box::new(move |result| {
                    watch.answered(k, result.is_ok());
                    part(result)
                }),
                |leg, done| leg.write(at, std::slice::from_ref(&raw), fua, done),
            );
        }
        // A shard that lags behind the others fails after a short while
        // more, and is marked stale when the write settles.
        fan.started_all();
    }

    /// Every shard write is done: finish, or record the shards that
    /// missed it first.
    pub(super) fn shards_written(self: Arc<Self>, shards: &[usize], results: Vec<Result<u64>>) {
        let (missed, error) = self.sort("write to", shards, results);
        match error {
            Some(err) => self.complete(Err(err)),
            None if missed.is_empty() => {
                let len = self.len;
                self.complete(Ok(len));
            }
            None => {
                // Recording the missed shards waits for the MDT, whose
                // answer comes through this (the loop) thread: on a
                // settling thread, not a worker, as workers may be
                // waiting for these stripes. Rare: the first write to miss
                // a shard marks it stale, and later ones skip it.
                let settle = Arc::clone(&self.erasure.settle);
                let refused = Arc::clone(&self);
                settle.run_or(
                    move || {
                        let result = self.erasure.settle(&missed).map(|()| self.len);
                        self.complete(result);
                    },
                    move |err| refused.complete(Err(err)),
                );
            }
        }
    }

    /// Hands the rows back, unlocks the stripes and ends the journal's
    /// count of the write; returns the caller's completion.
    pub(super) fn release(&self) -> Option<Finish> {
        let erasure = &self.erasure;
        erasure.spare.give(std::mem::take(&mut *self.rows.lock()));
        erasure.locks.unlock(self.stripes);
        erasure.journal.after_write(self.offset, self.len);
        erasure.writing.fetch_sub(1, Ordering::AcqRel);
        self.finish.lock().take()
    }

    /// [`StripeWrite::release`], then finishes the write with `result`.
    pub(super) fn complete(&self, result: Result<u64>) {
        if let Some(finish) = self.release() {
            finish(result);
        }
    }
}

/// The shards that failed an operation, and the caller's error.
type Outcome = (Vec<usize>, Option<Error>);

/// Stripe rows up to this many bytes per shard are encoded on the event
/// loop thread once their unit reads are in: in less time than a worker
/// takes to wake up. (Whole small stripes are not encoded on the caller's
/// thread: with fio at QD16 that cost 5-31% of the IOPS in 3 pairs.)
pub(super) const INLINE_ROW_BYTES: u64 = 16 << 10;

#[derive(Default)]
/// Rows kept for reuse, by any thread, up to [`SPARE_ROW_BYTES`] in all: a
/// fresh 256 KiB row costs a page fault per 4 KiB and a memset.
pub(super) struct SpareRows(Mutex<Vec<Vec<u8>>>);

/// What [`SpareRows`] keeps: enough for sixteen 1 MiB writes of ec:4+2.
pub(super) const SPARE_ROW_BYTES: usize = 24 << 20;

impl SpareRows {
    /// `n` rows of `len` bytes each; their contents are unspecified.
    pub(super) fn take(&self, n: usize, len: usize) -> Vec<Vec<u8>> {
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

    pub(super) fn give(&self, rows: Vec<Vec<u8>>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redundancy::erasure::units::tests::fixture;

    #[test]
    fn a_unit_that_cannot_be_read_is_rebuilt_within_the_write() {
        let f = fixture("write-rebuild");
        // Stripe 2: data shard 1's unit fails its checksum.
        f.flip(1, 2);
        // A 2 KiB write into data shard 0's unit of stripe 2 reads the
        // units it does not cover, shard 1's among them.
        let at = 2 * 4 * EC_UNIT + 1024;
        let block = vec![0x5au8; 2048];
        let n = f
            .object
            .write_sync(at, &[RawBuf::of(&block)], false)
            .unwrap();
        assert_eq!(n, 2048);
        // Shard 1 was not written: its unit still fails...
        let leg = f.object.shards[1].1.as_ref().unwrap();
        let mut unit = vec![0u8; EC_UNIT as usize];
        let direct =
            crate::backend::wait(|done| leg.read(2 * EC_UNIT, &[RawBuf::of_mut(&mut unit)], done));
        assert_eq!(direct.unwrap_err().errno(), libc::EIO);
        // ...and the parity was computed from it rebuilt: reading the
        // object rebuilds it right again, next to the new bytes.
        let mut want = f.data.clone();
        want[at as usize..at as usize + block.len()].copy_from_slice(&block);
        assert!(
            f.read_all().unwrap() == want,
            "the write and the rest read back"
        );
    }

    #[test]
    fn a_write_with_a_shard_out_rebuilds_its_units_and_skips_it() {
        let f = fixture("write-degraded");
        f.object.stale.lock()[1] = true;
        let before = f.object.shards[1].1.as_ref().unwrap();
        let mut old = vec![0u8; EC_UNIT as usize];
        crate::backend::wait(|done| before.read(0, &[RawBuf::of_mut(&mut old)], done)).unwrap();
        // Object bytes 0..EC_UNIT + 100: shard 0's unit whole, 100 bytes of
        // shard 1's (out), shards 2 and 3 read.
        let block = vec![0xc3u8; EC_UNIT as usize + 100];
        f.object
            .write_sync(0, &[RawBuf::of(&block)], false)
            .unwrap();
        let mut now = vec![0u8; EC_UNIT as usize];
        crate::backend::wait(|done| before.read(0, &[RawBuf::of_mut(&mut now)], done)).unwrap();
        assert!(now == old, "the shard that is out was not written");
        let mut want = f.data.clone();
        want[..block.len()].copy_from_slice(&block);
        assert!(
            f.read_all().unwrap() == want,
            "read back through the parity"
        );
    }

    #[test]
    fn writes_to_the_same_stripes_wait_for_each_other_without_a_thread() {
        let f = fixture("write-contend");
        let writers = 6u8;
        std::thread::scope(|scope| {
            for w in 0..writers {
                let object = &f.object;
                scope.spawn(move || {
                    // Each writer its own 4 KiB of stripes 0 and 1.
                    let at = u64::from(w) * 2 * 4096;
                    for round in 0..20u8 {
                        let block = vec![w.wrapping_mul(31).wrapping_add(round); 4096];
                        object.write_sync(at, &[RawBuf::of(&block)], false).unwrap();
                    }
                });
            }
        });
        let mut want = f.data.clone();
        for w in 0..writers {
            let at = usize::from(w) * 2 * 4096;
            want[at..at + 4096].fill(w.wrapping_mul(31).wrapping_add(19));
        }
        assert!(f.read_all().unwrap() == want);
        let report = f.object.scrub(false, &mut |_, _| {}).unwrap();
        assert!(report.clean(), "{:?}", report.problems);
        assert_eq!(
            f.object.writing.load(Ordering::Acquire),
            0,
            "every write let go"
        );
    }
}
