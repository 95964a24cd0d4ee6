//! Repair of erasure-coded objects: stale shards rebuilt stripe by
//! stripe from the others, and regions a writer left resynced.

use super::*;

impl Erasure {
    /// Rebuilds every stale shard from the others and resyncs regions a
    /// writer left, then tells the MDT. `progress` gets (bytes done,
    /// bytes to do). Returns the names of the rebuilt shards.
    pub(super) fn repair_shards(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<String>> {
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
        crate::redundancy::mirror::fence_for_repair(&self.shards, &targets, epoch, self.uuid)?;
        let shard_bytes = shard_size(self.size.load(Ordering::Acquire), self.k());
        let total = shard_bytes * targets.len() as u64;
        // Stale shards are rebuilt from stripes that the previous writer
        // may have left half-written only after those are resynced,
        // which needs every data shard: resync what can be first.
        let resynced = self.resync(&left);
        if !targets.is_empty() {
            let failed = crate::redundancy::mirror::repair_failed(self.uuid);
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

    /// Resyncs regions a previous writer left marked: parity recomputed
    /// from the data shards. Regions that cannot be (a data shard is out)
    /// stay suspect. Returns the regions resynced.
    pub(super) fn resync(&self, regions: &[u64]) -> Vec<u64> {
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
    pub(super) fn rewrite_parity(&self, lo: u64, hi: u64) -> Result<()> {
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
}
