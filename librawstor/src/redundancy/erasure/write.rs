//! Writes of erasure-coded objects: whole stripes, the units a write does
//! not fill read first; parity computed from data; every shard a write
//! changes gets it, or is recorded stale before the write completes.

use std::sync::Arc;

use parking_lot::Mutex;

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

    /// Reads into `write`'s rows the ranges `need` (data shard, lo, hi)
    /// it does not cover; the last read's completion goes on with the
    /// write ([`StripeWrite::units_read`]).
    fn read_uncovered(
        &self,
        write: Arc<StripeWrite>,
        need: &[(usize, u64, u64)],
        base: u64,
        within: Duration,
    ) {
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
                // Every shard is usable here: one that is slow to answer
                // is given up on, and write_sync rebuilds.
                |leg, done| leg.read_within(a, std::slice::from_ref(&target), within, done),
            );
        }
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
    pub(super) fn write_now(
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
            finish: Mutex::new(Some(finish)),
        });
        let alone = self.writing.fetch_add(1, Ordering::AcqRel) == 0;
        if need.is_empty() && alone {
            // The caller has no other write of this object in flight (one
            // at a time, as at queue depth 1): it would only wait, so its
            // thread encodes and sends, without a worker's wake-up.
            write.encode_and_send();
        } else if need.is_empty() {
            let refused = Arc::clone(&write);
            self.pool.run_or(
                move || write.encode_and_send(),
                move |err| refused.complete(Err(err)),
            );
        } else {
            self.read_uncovered(write, &need, base, within);
        }
        let size = self.size.load(Ordering::Acquire);
        if self.journal.wants_ahead(offset, len, size) {
            let (journal, refused) = (Arc::clone(&self.journal), Arc::clone(&self.journal));
            self.pool.run_or(
                move || journal.mark_ahead(offset + len, size),
                move |_| refused.mark_ahead_skipped(),
            );
        }
        Ok(())
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

/// A write started by [`Erasure::write_now`], until its last shard is done.
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
        let (failed, error) = self.sort("read of", shards, results);
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
                // Rebuilding waits for other shards: the blocking path
                // does it all again, once this write has let go.
                let finish = self.release();
                let bufs = std::mem::take(&mut *self.bufs.lock());
                let (erasure, offset, fua) = (Arc::clone(&self.erasure), self.offset, self.fua);
                if let Some(finish) = finish {
                    pool.run_finishing(finish, move |finish| {
                        finish(erasure.write_sync(offset, &bufs, fua))
                    });
                }
            }
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
