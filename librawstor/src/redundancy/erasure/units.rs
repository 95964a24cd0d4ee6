//! Rebuilding shard ranges unit by unit: when no K shards read a range
//! whole (each has a bad block somewhere, in different stripes), every
//! stripe is rebuilt from the units that verify in it, so that a range
//! fails only where one stripe has more bad units than the parity covers.

use super::{EC_UNIT, Erasure, STEP_BYTES};
use crate::error::{Error, Result};
use crate::lent::RawBuf;

const UNIT: usize = EC_UNIT as usize;

/// A shard's range as read unit by unit: its bytes, and per unit whether
/// they verified.
struct Units {
    shard: usize,
    bytes: Vec<u8>,
    ok: Vec<bool>,
    /// Why the units that failed did.
    why: Option<Error>,
}

impl Erasure {
    /// Shards `want` over shard range `lo..hi` (whole units), each stripe
    /// rebuilt from the units of the usable shards that verify in it
    /// (their own, where they do). With `mend`, units of other shards that
    /// failed to verify are rewritten too (the caller holds the writer
    /// lease). The caller holds the stripe locks.
    pub(super) fn rebuild_by_unit(
        &self,
        want: &[usize],
        lo: u64,
        hi: u64,
        mend: bool,
    ) -> Result<Vec<Vec<u8>>> {
        assert!(lo % EC_UNIT == 0 && hi % EC_UNIT == 0, "whole units");
        let mut out: Vec<Vec<u8>> = want.iter().map(|_| Vec::new()).collect();
        let mut at = lo;
        while at < hi {
            let end = (at + STEP_BYTES).min(hi);
            for (row, bytes) in out
                .iter_mut()
                .zip(self.rebuild_window(want, at, end, mend)?)
            {
                row.extend_from_slice(&bytes);
            }
            at = end;
        }
        debug_assert!(out.iter().all(|r| r.len() as u64 == hi - lo));
        Ok(out)
    }

    /// [`Erasure::rebuild_by_unit`] over at most [`STEP_BYTES`].
    fn rebuild_window(&self, want: &[usize], lo: u64, hi: u64, mend: bool) -> Result<Vec<Vec<u8>>> {
        let count = ((hi - lo) / EC_UNIT) as usize;
        let read: Vec<Units> = (0..self.shards.len())
            .filter(|&i| self.usable(i).is_some())
            .map(|i| self.read_units(i, lo, count))
            .collect();
        let mut out: Vec<Vec<u8>> = want.iter().map(|_| vec![0u8; count * UNIT]).collect();
        let mut mends: Vec<(usize, u64, Vec<u8>)> = Vec::new();
        for u in 0..count {
            let span = u * UNIT..(u + 1) * UNIT;
            let present: Vec<(usize, &[u8])> = read
                .iter()
                .filter(|r| r.ok[u])
                .map(|r| (r.shard, &r.bytes[span.clone()]))
                .collect();
            let is_present = |i: usize| present.iter().any(|(j, _)| *j == i);
            let mut need: Vec<usize> = want.iter().copied().filter(|&i| !is_present(i)).collect();
            if mend {
                need.extend(
                    read.iter()
                        .filter(|r| !r.ok[u] && !want.contains(&r.shard))
                        .map(|r| r.shard),
                );
            }
            let rebuilt = if need.is_empty() {
                Vec::new()
            } else if present.len() < self.k() {
                return Err(self.unrebuildable(lo + (u * UNIT) as u64, &read, u, present.len()));
            } else {
                self.codec.rebuild(&present[..self.k()], &need)?
            };
            for (w, row) in want.iter().zip(out.iter_mut()) {
                let bytes = match need.iter().position(|n| n == w) {
                    Some(r) => rebuilt[r].as_slice(),
                    None => present.iter().find(|(j, _)| j == w).expect("present").1,
                };
                row[span.clone()].copy_from_slice(bytes);
            }
            for (r, &i) in need.iter().enumerate().filter(|(_, i)| !want.contains(i)) {
                mends.push((i, lo + (u * UNIT) as u64, rebuilt[r].clone()));
            }
        }
        self.mend_units(mends)?;
        Ok(out)
    }

    /// Shard `i` over `count` units from `lo`: whole if it reads so,
    /// otherwise unit by unit where it answered with bad data (a shard
    /// that did not answer is not asked again per unit).
    fn read_units(&self, i: usize, lo: u64, count: usize) -> Units {
        let mut bytes = vec![0u8; count * UNIT];
        let whole = self.read_shards(&[(i, lo, RawBuf::of_mut(&mut bytes))]);
        let why = match whole.into_iter().next().expect("one read") {
            Ok(_) => {
                return Units {
                    shard: i,
                    bytes,
                    ok: vec![true; count],
                    why: None,
                };
            }
            Err(err) => err,
        };
        if why.errno() != libc::EIO {
            return Units {
                shard: i,
                bytes,
                ok: vec![false; count],
                why: Some(why),
            };
        }
        let reads: Vec<(usize, u64, RawBuf)> = bytes
            .chunks_mut(UNIT)
            .enumerate()
            .map(|(u, unit)| (i, lo + (u * UNIT) as u64, RawBuf::of_mut(unit)))
            .collect();
        let ok = self.read_shards(&reads).iter().map(Result::is_ok).collect();
        Units {
            shard: i,
            bytes,
            ok,
            why: Some(why),
        }
    }

    /// Rewrites units that failed to verify with their rebuilt bytes.
    fn mend_units(&self, mends: Vec<(usize, u64, Vec<u8>)>) -> Result<()> {
        if mends.is_empty() {
            return Ok(());
        }
        for (i, at, _) in &mends {
            crate::log::warn(&format!(
                "object {}: shard {} bytes {at}..{} failed their checksums; rewritten from the units that verify",
                self.uuid,
                self.shards[*i].0,
                at + EC_UNIT
            ));
        }
        let writes = mends
            .iter()
            .map(|(i, at, b)| (*i, *at, b.as_slice()))
            .collect();
        let missed = self.write_shards(writes, false)?;
        self.settle(&missed)
    }

    /// The error for a stripe that has fewer than K units that verify.
    fn unrebuildable(&self, at: u64, read: &[Units], u: usize, present: usize) -> Error {
        let stripe = at / EC_UNIT;
        let bytes = stripe * self.stripe_bytes();
        let why: Vec<String> = read
            .iter()
            .filter(|r| !r.ok[u])
            .map(|r| {
                let err = r.why.as_ref().map_or(String::new(), |e| format!(": {e}"));
                format!("{}{err}", self.shards[r.shard].0)
            })
            .collect();
        Error::new(
            libc::EIO,
            format!(
                "object {}: the stripe at bytes {bytes}..{} cannot be rebuilt: {present} of its units verify, {} are needed ({})",
                self.uuid,
                bytes + self.stripe_bytes(),
                self.k(),
                why.join("; ")
            ),
        )
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    use super::super::Codec;
    use super::super::tests::NoJournal;
    use super::*;
    use crate::backend::Backend;
    use crate::store::Store;
    use crate::uuid::Uuid;

    const MIB: u64 = 1 << 20;

    pub(in crate::redundancy::erasure) struct Fixture {
        pub dir: std::path::PathBuf,
        pub object: Arc<Erasure>,
        pub shards: Vec<Uuid>,
        pub data: Vec<u8>,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// ec:4+2 over file:// shards of one store: a 4 MiB object (shards
    /// of 1 MiB, one chunk each) holding a pattern.
    pub(in crate::redundancy::erasure) fn fixture(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("rawstor-units-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(vec![dir.clone()], true).unwrap();
        let shards: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        let legs = shards
            .iter()
            .enumerate()
            .map(|(i, &uuid)| {
                store.create_object(uuid, MIB, MIB).unwrap();
                (
                    format!("s{i}"),
                    Ok(crate::local::copy(store.open_object(uuid).unwrap())),
                )
            })
            .collect();
        let object = Erasure::new(
            Uuid::now_v7(),
            Codec::new(4, 2).unwrap(),
            4 * MIB,
            MIB,
            legs,
            &[],
            &[],
            Arc::new(NoJournal),
            crate::pool::Workers::for_tests(),
            std::time::Duration::from_millis(600),
        )
        .unwrap();
        let data: Vec<u8> = (0..4 * MIB).map(|i| (i / 5 % 253) as u8).collect();
        object.write_sync(0, &[RawBuf::of(&data)], false).unwrap();
        Fixture {
            dir,
            object,
            shards,
            data,
        }
    }

    impl Fixture {
        /// Flips a byte of block `block` of shard `i` on disk.
        pub(in crate::redundancy::erasure) fn flip(&self, i: usize, block: u64) {
            let path = self.dir.join(format!("%ob/{}/c00000000", self.shards[i]));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, block * EC_UNIT + 9).unwrap();
            file.write_all_at(&[!byte[0]], block * EC_UNIT + 9).unwrap();
        }

        pub(in crate::redundancy::erasure) fn read_all(&self) -> Result<Vec<u8>> {
            let mut back = vec![0u8; self.data.len()];
            self.object.read_sync(0, &[RawBuf::of_mut(&mut back)])?;
            Ok(back)
        }
    }

    #[test]
    fn one_bad_unit_per_stripe_on_three_data_shards_reads_and_scrubs_clean() {
        let f = fixture("three");
        for (i, block) in [(0, 10), (1, 20), (2, 30)] {
            f.flip(i, block);
        }
        assert!(
            f.read_all().unwrap() == f.data,
            "a 4 MiB read rebuilds stripe by stripe"
        );
        let report = f.object.scrub(false, &mut |_, _| {}).unwrap();
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        let report = f.object.scrub(true, &mut |_, _| {}).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.repaired.len(), 3, "{:?}", report.repaired);
        let report = f.object.scrub(false, &mut |_, _| {}).unwrap();
        assert!(report.clean(), "{:?}", report.problems);
        assert!(f.read_all().unwrap() == f.data);
    }

    #[test]
    fn a_stripe_with_more_bad_units_than_parity_fails_naming_it() {
        let f = fixture("stripe");
        for i in 0..3 {
            f.flip(i, 7);
        }
        let err = f.read_all().unwrap_err();
        assert_eq!(err.errno(), libc::EIO);
        // Unit 7 of every shard is stripe 7: object bytes 7 * 16 KiB on.
        assert!(
            err.to_string().contains("the stripe at bytes 114688..131072 cannot be rebuilt: 3 of its units verify, 4 are needed"),
            "{err}"
        );
        // Other stripes still read.
        let mut back = vec![0u8; 16 << 10];
        f.object.read_sync(0, &[RawBuf::of_mut(&mut back)]).unwrap();
        assert!(back == f.data[..16 << 10]);
    }
}
