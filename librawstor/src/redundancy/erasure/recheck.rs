//! Scrub's second look at stripes whose parity does not match the data.
//! A writer in another process (stripe locks are per instance) changing a
//! stripe leaves it mismatched for the moment between its shards' writes
//! landing. Such a stripe is read again, a few times; it is reported only
//! if it still mismatches with the very same bytes every time, which a
//! stripe being written does not.

use std::time::Duration;

use super::{EC_UNIT, Erasure};
use crate::lent::RawBuf;

const UNIT: usize = EC_UNIT as usize;
/// Looks after the first before a mismatch is reported.
const RECHECKS: usize = 3;
/// Pause before each look: far longer than one write's shards take to
/// land, far shorter than a scrub.
const RECHECK_PAUSE: Duration = Duration::from_millis(50);

impl Erasure {
    /// The rows (shard offsets of stripe units) whose parity does not
    /// match their data, among the step at shard offset `at` read as
    /// `read` (`(shard, bytes)`, every data shard among them).
    pub(super) fn mismatched_rows(
        &self,
        at: u64,
        read: &[(usize, Vec<u8>)],
    ) -> Vec<(u64, Vec<u8>)> {
        let len = read.first().map_or(0, |(_, b)| b.len());
        (0..len / UNIT)
            .filter_map(|u| {
                let row: Vec<u8> = read
                    .iter()
                    .flat_map(|(_, b)| &b[u * UNIT..(u + 1) * UNIT])
                    .copied()
                    .collect();
                let shards: Vec<usize> = read.iter().map(|(i, _)| *i).collect();
                self.row_mismatches(&shards, &row)
                    .then(|| (at + (u * UNIT) as u64, row))
            })
            .collect()
    }

    /// Of `rows` (shard offset, the row's bytes as first read), those that
    /// mismatch with the same bytes in each of [`RECHECKS`] more looks.
    pub(super) fn still_mismatched(
        &self,
        shards: &[usize],
        mut rows: Vec<(u64, Vec<u8>)>,
    ) -> Vec<u64> {
        for _ in 0..RECHECKS {
            if rows.is_empty() {
                break;
            }
            std::thread::sleep(RECHECK_PAUSE);
            rows.retain(|(at, seen)| self.read_row(shards, *at).is_some_and(|now| now == *seen));
        }
        debug_assert!(rows.iter().all(|(_, row)| self.row_mismatches(shards, row)));
        rows.into_iter().map(|(at, _)| at).collect()
    }

    /// Unit `at` of each of `shards`, in order; `None` if one fails.
    fn read_row(&self, shards: &[usize], at: u64) -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; shards.len() * UNIT];
        let reads: Vec<(usize, u64, RawBuf)> = shards
            .iter()
            .zip(bytes.chunks_mut(UNIT))
            .map(|(&i, b)| (i, at, RawBuf::of_mut(b)))
            .collect();
        self.read_shards(&reads)
            .iter()
            .all(Result::is_ok)
            .then_some(bytes)
    }

    /// Whether the parity units in `row` (one unit of each of `shards`,
    /// in order; every data shard among them) differ from its data's.
    fn row_mismatches(&self, shards: &[usize], row: &[u8]) -> bool {
        let k = self.k();
        let unit = |i: usize| {
            let pos = shards
                .iter()
                .position(|&s| s == i)
                .expect("every data shard");
            &row[pos * UNIT..(pos + 1) * UNIT]
        };
        let data: Vec<&[u8]> = (0..k).map(unit).collect();
        self.codec
            .encode_with(&data, |parity| {
                shards
                    .iter()
                    .filter(|&&i| i >= k)
                    .any(|&i| unit(i) != parity[i - k])
            })
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::units::tests::fixture;
    use super::*;
    use crate::backend::Backend;

    #[test]
    fn a_stripe_being_written_is_not_reported_a_wrong_parity_is() {
        let f = fixture("recheck");
        // Stripe 3: parity shard 4 holds other (well-sealed) bytes.
        let parity = f.object.shards[4].1.as_ref().unwrap();
        let wrong = vec![0xa5u8; UNIT];
        crate::backend::wait(|done| parity.write(3 * EC_UNIT, &[RawBuf::of(&wrong)], false, done))
            .unwrap();
        // Stripe 9: a writer elsewhere keeps changing data shard 1 and has
        // not written the parity yet.
        let stop = AtomicBool::new(false);
        let started = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let leg = f.object.shards[1].1.as_ref().unwrap();
                for n in (1..=u8::MAX).cycle() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let bytes = vec![n; UNIT];
                    crate::backend::wait(|done| {
                        leg.write(9 * EC_UNIT, &[RawBuf::of(&bytes)], false, done)
                    })
                    .unwrap();
                    started.store(true, Ordering::Release);
                }
            });
            while !started.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            let report = f.object.scrub(false, &mut |_, _| {}).unwrap();
            stop.store(true, Ordering::Release);
            assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
            assert!(
                report.problems[0].contains("1 stripe(s), the first at shard byte 12288"),
                "{:?}",
                report.problems
            );
        });
    }
}
