//! Repair of mirrors: stale copies made current from the copies that
//! verify, block by block, mending a corrupt source on the way; regions a
//! writer left resynced.

use super::*;

/// Bytes copied from one leg to another at a time (repair, resync).
const COPY_STEP_BYTES: u64 = 1 << 20;

impl Mirror {
    /// Makes the copies agree again over write-intent `regions` a writer
    /// left: each is copied from one good leg onto the others. Returns
    /// the regions resynced (a leg that fails is marked stale).
    pub(super) fn resync(&self, regions: &[u64]) -> Vec<u64> {
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

    pub(super) fn resync_range(&self, lo: u64, hi: u64) -> Result<()> {
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
    pub(super) fn read_any(
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
    pub(super) fn mend(&self, corrupt: &[usize], offset: u64, piece: &mut [u8]) -> Result<()> {
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

    /// Copies a good leg onto every stale one and clears the marks; for
    /// an object placed by a rawstor-mdt, under the writer lease, also
    /// resyncing the regions a writer left. `progress` gets (bytes done,
    /// bytes to do). Returns the names of the repaired legs.
    pub(super) fn repair_legs(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<String>> {
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
        let sources: Vec<usize> = (0..self.legs.len()).filter(|&i| !stale[i]).collect();
        let targets: Vec<usize> = (0..self.legs.len()).filter(|&i| stale[i]).collect();
        if sources.is_empty() {
            return Err(Error::new(libc::ESTALE, "no good copy to repair from"));
        }
        if let Some(rec) = &self.recorded {
            fence_for_repair(&self.legs, &targets, rec.journal.epoch(), self.uuid)?;
        }
        self.copy_onto(&sources, &targets, progress)?;
        let repaired: Vec<String> = targets.iter().map(|&t| self.legs[t].0.clone()).collect();
        for &i in &sources {
            let leg = self.legs[i].1.as_ref().expect("all open");
            let mut marks = leg.marks();
            marks.stale_peers.retain(|p| !repaired.contains(p));
            marks.stale = false;
            wait(|f| leg.set_marks(&marks, true, f))?;
        }
        self.stale.lock().iter_mut().for_each(|s| *s = false);
        if let Some(rec) = &self.recorded {
            self.resync_left(rec, &targets, &left)?;
        }
        Ok(repaired)
    }

    /// Copies the good legs `sources` onto each of `targets`, block by
    /// block from whichever source verifies (mending a corrupt source on
    /// the way), then makes every leg durable and the targets' marks
    /// clean. `progress` gets (bytes copied, bytes to copy).
    fn copy_onto(
        &self,
        sources: &[usize],
        targets: &[usize],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let size = self.legs[sources[0]]
            .1
            .as_ref()
            .expect("all open")
            .info()
            .size;
        let total = size * targets.len() as u64;
        let mut done_bytes = 0;
        let mut buf = vec![0u8; COPY_STEP_BYTES as usize];
        let failed = repair_failed(self.uuid);
        for &t in targets {
            let dst = self.legs[t].1.as_ref().expect("all open");
            dst.resize(size, true).map_err(&failed)?;
            let mut offset = 0;
            while offset < size {
                let n = COPY_STEP_BYTES.min(size - offset) as usize;
                let piece = &mut buf[..n];
                let (_, corrupt) = self.read_any(sources, offset, piece)?;
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
        for &i in sources {
            let leg = self.legs[i].1.as_ref().expect("all open");
            wait(|f| leg.simple(Opcode::Flush, 0, 0, f))?;
        }
        Ok(())
    }

    /// Resyncs the write-intent regions `left` a writer left, makes the
    /// good legs durable and tells the MDT the repair is done.
    fn resync_left(&self, rec: &Recorded, targets: &[usize], left: &[u64]) -> Result<()> {
        let resynced = self.resync(left);
        for (i, (_, leg)) in self.legs.iter().enumerate() {
            let leg = leg.as_ref().expect("all open");
            if self.stale.lock()[i] {
                continue;
            }
            wait(|f| leg.simple(Opcode::Flush, 0, 0, f))?;
        }
        rec.journal.repaired(targets, &resynced)?;
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
        Ok(())
    }
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

/// The legs of `failed` whose reads found bad data (checksums), not a
/// server that did not answer.
pub(super) fn corrupt(failed: &[(usize, Error)]) -> Vec<usize> {
    failed
        .iter()
        .filter(|(_, e)| e.errno() == libc::EIO)
        .map(|(i, _)| *i)
        .collect()
}

/// Writes `piece` at `offset` of `leg`, as a discard when it is all zeros
/// (copies keep their holes). Waits.
pub(super) fn store_piece(leg: &Leg, offset: u64, piece: &mut [u8]) -> Result<u64> {
    if piece.iter().all(|&b| b == 0) {
        wait(|f| leg.simple(Opcode::Discard, offset, piece.len() as u64, f))
    } else {
        wait(|f| leg.write(offset, &[RawBuf::of_mut(piece)], false, f))
    }
}
