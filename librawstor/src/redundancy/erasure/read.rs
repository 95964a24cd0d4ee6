//! Reads of erasure-coded objects: straight from the data shards when
//! they answer, else rebuilt, stripe by stripe, from any K shards that
//! verify.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::*;
use crate::fan_in::FanIn;

impl Erasure {
    /// The common case of a read, started without a worker: every data
    /// shard it needs is up, and each reads straight into the caller's
    /// buffers; the last shard's completion finishes it on the event loop
    /// thread. When a shard fails, the read is done again on a worker by
    /// [`Erasure::read_sync`], without that shard (rebuilt from the
    /// others). Anything else gives `finish` back.
    pub(super) fn read_now(
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
            offset,
            bufs: Mutex::new(bufs.to_vec()),
            finish: Mutex::new(Some(finish)),
        });
        let all = FanIn::new(shards.len(), {
            let shards = shards.clone();
            Box::new(move |results| read.all_done(&shards, results))
        });
        let began = Instant::now();
        for (k, j) in shards.into_iter().enumerate() {
            let (me, part) = (Arc::clone(self), all.part(k));
            let at = spans[j].expect("read shards have spans").0;
            self.on_usable(
                j,
                Box::new(move |result| {
                    if result.is_ok() {
                        me.reads.note(began.elapsed());
                    }
                    part(result)
                }),
                |leg, done| match spare {
                    true => leg.read_within(at, &targets[j], within, done),
                    false => leg.read(at, &targets[j], done),
                },
            );
        }
        Ok(())
    }

    pub(crate) fn read_sync(&self, offset: u64, bufs: &[RawBuf]) -> Result<u64> {
        self.read_sync_without(offset, bufs, &self.slow_shards())
    }

    /// [`Erasure::read_sync`], rebuilding the data shards `skip` (seen to
    /// fail already) rather than reading them.
    pub(super) fn read_sync_without(
        &self,
        offset: u64,
        bufs: &[RawBuf],
        skip: &[usize],
    ) -> Result<u64> {
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
    pub(super) fn check_rebuildable(&self, lo: u64, hi: u64) -> Result<()> {
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

    /// Shards `want` over shard range `lo..hi` (whole units), rebuilt from
    /// K other usable shards. The caller holds the stripe locks.
    /// When no K shards read the range whole but some answered with bad
    /// data, the range is rebuilt unit by unit instead
    /// ([`Erasure::rebuild_by_unit`], which `mend`s what it finds bad).
    pub(super) fn rebuild(
        &self,
        want: &[usize],
        lo: u64,
        hi: u64,
        mend: bool,
    ) -> Result<Vec<Vec<u8>>> {
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
        let rebuilt = self.codec.rebuild(&refs, want)?;
        assert!(
            rebuilt.len() == want.len() && rebuilt.iter().all(|r| r.len() == len),
            "a rebuilt row per shard wanted, each {len} bytes"
        );
        Ok(rebuilt)
    }

    /// Fills `data[j][lo-base..hi-base]` for each `(j, lo, hi)` from data
    /// shard `j`; what cannot be read is rebuilt, or, when `rebuild` is
    /// false (stripes that may be half-written), fails. Stripe locks are
    /// held.
    pub(super) fn read_ranges(
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
        self.rebuild_ranges(&failed, data, base)
    }

    /// Fills `data[j][lo-base..hi-base]` for each `(j, lo, hi)` from the
    /// other shards (shard `j` could not be read). Stripe locks are held.
    pub(super) fn rebuild_ranges(
        &self,
        lost: &[(usize, u64, u64)],
        data: &mut [Vec<u8>],
        base: u64,
    ) -> Result<()> {
        for &(j, lo, hi) in lost {
            let (alo, ahi) = (lo / EC_UNIT * EC_UNIT, hi.div_ceil(EC_UNIT) * EC_UNIT);
            let rebuilt = self.rebuild(&[j], alo, ahi, false)?;
            data[j][(lo - base) as usize..(hi - base) as usize]
                .copy_from_slice(&rebuilt[0][(lo - alo) as usize..(hi - alo) as usize]);
        }
        Ok(())
    }

    /// Reads `(shard, shard offset, into)` from each shard at once.
    pub(super) fn read_shards(&self, reads: &[(usize, u64, RawBuf)]) -> Vec<Result<u64>> {
        self.read_shards_within(reads, None)
    }

    /// [`Erasure::read_shards`]; with `within`, a read not answered by
    /// then fails with `ETIMEDOUT` (for callers that can rebuild it).
    pub(super) fn read_shards_within(
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
    pub(super) fn read_failed(&self, i: usize, err: &Error) {
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
}

/// A read started by [`Erasure::read_now`], until its last shard is done.
pub(super) struct ShardRead {
    erasure: Arc<Erasure>,
    offset: u64,
    /// The caller's buffers, for reading again on a worker.
    bufs: Mutex<Vec<RawBuf>>,
    finish: Mutex<Option<Finish>>,
}

impl ShardRead {
    /// Every shard read is done: finish, or rebuild what failed.
    pub(super) fn all_done(&self, shards: &[usize], results: Vec<Result<u64>>) {
        let Some(finish) = self.finish.lock().take() else {
            return;
        };
        let erasure = Arc::clone(&self.erasure);
        let (failed, error) = sort_outcomes(shards, results, |j, err| erasure.read_failed(j, err));
        let bufs = std::mem::take(&mut *self.bufs.lock());
        match error {
            Some(err) => finish(Err(err)),
            None if failed.is_empty() => finish(Ok(lent::total(&bufs))),
            None => {
                // Rebuilding waits for other shards and stripe locks.
                let (pool, offset) = (Arc::clone(&erasure.pool), self.offset);
                pool.run_finishing(finish, move |finish| {
                    finish(erasure.read_sync_without(offset, &bufs, &failed))
                });
            }
        }
    }
}
