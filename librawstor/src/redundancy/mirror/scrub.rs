//! Scrub of mirrored objects: every reachable, non-stale copy is read in
//! full and compared; with repair, what fails or differs is rewritten from
//! what the copies that verify hold. A range where copies differ is looked
//! at again before it is reported: a writer in another process is in the
//! middle of it for a moment, a damaged copy stays the same.

use std::time::Duration;

use super::{Mirror, store_piece};
use crate::backend::{Backend, wait};
use crate::error::Result;
use crate::lent::RawBuf;
use crate::store::BLOCK_SIZE;
use crate::wire::Opcode;

/// Bytes read from every copy at a time by a scrub.
const SCRUB_STEP_BYTES: usize = 1 << 20;
/// Looks after the first before a difference is reported.
const RECHECKS: usize = 3;
/// Pause before each look: far longer than one write's copies take to
/// land, far shorter than a scrub.
const RECHECK_PAUSE: Duration = Duration::from_millis(50);
/// Problems a scrub lists before it only counts them.
const SCRUB_MAX_PROBLEMS: usize = 100;

/// What a scrub found.
#[derive(Debug, Default)]
pub struct ScrubReport {
    /// The copies, by name.
    pub copies: Vec<String>,
    /// Bytes of the object compared.
    pub bytes_checked: u64,
    /// What is wrong, at most [`SCRUB_MAX_PROBLEMS`] lines.
    pub problems: Vec<String>,
    /// Problems found beyond those listed.
    pub more_problems: usize,
    /// What a scrub with repair mended (no longer among the problems), at
    /// most [`SCRUB_MAX_PROBLEMS`] lines.
    pub repaired: Vec<String>,
    /// Mended beyond those listed.
    pub more_repaired: usize,
}

impl ScrubReport {
    pub(crate) fn problem(&mut self, what: String) {
        if self.problems.len() < SCRUB_MAX_PROBLEMS {
            self.problems.push(what);
        } else {
            self.more_problems += 1;
        }
    }

    pub(crate) fn mended(&mut self, what: String) {
        if self.repaired.len() < SCRUB_MAX_PROBLEMS {
            self.repaired.push(what);
        } else {
            self.more_repaired += 1;
        }
    }

    /// Lists `copies` (name, open copy or `None`) and notes those that
    /// are unreachable or `stale` (`rawstor repair` then `fix`es them);
    /// returns the indexes of the others, to be checked.
    pub(crate) fn survey<T>(
        &mut self,
        copies: &[(String, Option<T>)],
        stale: &[bool],
        fix: &str,
    ) -> Vec<usize> {
        let mut checked = Vec::new();
        for (i, (name, copy)) in copies.iter().enumerate() {
            self.copies.push(name.clone());
            match copy {
                None => self.problem(format!("{name}: unreachable")),
                Some(_) if stale[i] => self.problem(format!(
                    "{name}: stale (it missed writes; rawstor repair {fix} it)"
                )),
                Some(_) => checked.push(i),
            }
        }
        checked
    }

    /// Whether every copy was read and they all agree (after repairs).
    pub fn clean(&self) -> bool {
        self.problems.is_empty() && self.more_problems == 0
    }
}

/// One step of a scrub: where it is, its name in reports, and whether
/// it repairs.
struct Step {
    offset: u64,
    range: String,
    repair: bool,
}

impl Mirror {
    /// Reads every reachable, non-stale copy in full and compares them:
    /// blocks failing their checksums and ranges where copies differ are
    /// reported, as are unreachable and stale copies. With `repair`, such
    /// ranges are rewritten on the copies that failed or differ, from what
    /// most copies hold (under the writer lease, for an object placed by a
    /// rawstor-mdt); otherwise nothing changes.
    pub(crate) fn scrub_legs(
        &self,
        repair: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ScrubReport> {
        if repair && self.recorded.is_some() {
            self.begin_write(0, 0)?;
        }
        let mut report = ScrubReport::default();
        let checked: Vec<usize> = report.survey(&self.legs, &self.stale.lock(), "resyncs");
        let size = self.info().size;
        let mut bufs = vec![vec![0u8; SCRUB_STEP_BYTES]; checked.len()];
        let mut offset = 0;
        while offset < size {
            let n = (SCRUB_STEP_BYTES as u64).min(size - offset) as usize;
            let step = Step {
                offset,
                range: format!("bytes {offset}..{}", offset + n as u64),
                repair,
            };
            let bufs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..n]).collect();
            self.scrub_step(&mut report, &checked, bufs, &step);
            report.bytes_checked += n as u64;
            offset += n as u64;
            progress(offset, size);
        }
        if repair && !report.repaired.is_empty() {
            for &i in &checked {
                let leg = self.legs[i].1.as_ref().expect("surveyed copies are open");
                wait(|f| leg.simple(Opcode::Flush, 0, 0, f))?;
            }
        }
        Ok(report)
    }

    /// Reads one step from every copy in `checked` into `bufs` and
    /// compares them; with repair, rewrites what fails or differs.
    fn scrub_step(
        &self,
        report: &mut ScrubReport,
        checked: &[usize],
        mut bufs: Vec<&mut [u8]>,
        step: &Step,
    ) {
        let (offset, range) = (step.offset, &step.range);
        let n = bufs.first().map_or(0, |b| b.len());
        let mut read_ok = Vec::new();
        let mut failed = Vec::new();
        for (&i, buf) in checked.iter().zip(bufs.iter_mut()) {
            let (name, leg) = &self.legs[i];
            let leg = leg.as_ref().expect("surveyed copies are open");
            match wait(|f| leg.read(offset, &[RawBuf::of_mut(buf)], f)) {
                Ok(_) => read_ok.push((i, &buf[..])),
                Err(err) if step.repair => failed.push((i, err)),
                Err(err) => report.problem(format!("{name}: {range}: {err}")),
            }
        }
        // The bytes most copies hold (the first copy's on a tie).
        let reference = read_ok
            .iter()
            .max_by_key(|(i, data)| {
                let votes = read_ok.iter().filter(|(_, d)| d == data).count();
                (votes, std::cmp::Reverse(*i))
            })
            .map(|&(i, data)| (i, data.to_vec()));
        let Some((source, data)) = reference else {
            // No copy reads the whole step: with repair, it is put
            // together block by block from the copies that verify.
            let order: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
            if step.repair
                && !failed.is_empty()
                && self.scrub_blockwise(report, &order, offset, n, range)
            {
                return;
            }
            for (i, err) in failed {
                report.problem(format!("{}: {range}: {err}", self.legs[i].0));
            }
            return;
        };
        let differ: Vec<usize> = read_ok
            .iter()
            .filter(|(_, d)| *d != data.as_slice())
            .map(|(i, _)| *i)
            .collect();
        if step.repair {
            let from = &self.legs[source].0;
            let bad: Vec<(usize, String)> = failed
                .iter()
                .map(|(i, err)| (*i, err.to_string()))
                .chain(differ.iter().map(|&i| (i, format!("differs from {from}"))))
                .collect();
            self.rewrite_step(report, &bad, source, data, step);
        } else if !differ.is_empty() {
            let blocks = self.still_differ(offset, &read_ok);
            if let Some(first) = blocks.first() {
                let names: Vec<&str> = differ.iter().map(|&i| self.legs[i].0.as_str()).collect();
                report.problem(format!(
                    "{range}: {} differ from {} ({} block(s), the first at byte {first})",
                    names.join(", "),
                    self.legs[source].0,
                    blocks.len()
                ));
            }
        }
    }

    /// Rewrites a step on the copies `bad` (each with why) with `data`,
    /// what most copies hold (read from `source`).
    fn rewrite_step(
        &self,
        report: &mut ScrubReport,
        bad: &[(usize, String)],
        source: usize,
        mut data: Vec<u8>,
        step: &Step,
    ) {
        let (from, range) = (&self.legs[source].0, &step.range);
        for (i, why) in bad {
            let (name, leg) = &self.legs[*i];
            let leg = leg.as_ref().expect("surveyed copies are open");
            match store_piece(leg, step.offset, &mut data) {
                Ok(_) => report.mended(format!("{name}: {range} ({why}) rewritten from {from}")),
                Err(err) => report.problem(format!(
                    "{name}: {range} ({why}) could not be rewritten: {err}"
                )),
            }
        }
    }

    /// The blocks of the step at `offset` where the copies `read` (copy,
    /// bytes) differ and still differ, with the very same bytes, in each
    /// of [`RECHECKS`] more looks: a block a writer elsewhere is changing
    /// differs only for a moment.
    fn still_differ(&self, offset: u64, read: &[(usize, &[u8])]) -> Vec<u64> {
        let block = BLOCK_SIZE as usize;
        let len = read.first().map_or(0, |(_, d)| d.len());
        let mut suspects: Vec<(u64, Vec<u8>)> = (0..len.div_ceil(block))
            .filter_map(|b| {
                let span = b * block..((b + 1) * block).min(len);
                let first = &read[0].1[span.clone()];
                read.iter()
                    .any(|(_, d)| &d[span.clone()] != first)
                    .then(|| {
                        let bytes = read.iter().flat_map(|(_, d)| &d[span.clone()]).copied();
                        (offset + (b * block) as u64, bytes.collect())
                    })
            })
            .collect();
        let copies: Vec<usize> = read.iter().map(|(i, _)| *i).collect();
        for _ in 0..RECHECKS {
            if suspects.is_empty() {
                break;
            }
            std::thread::sleep(RECHECK_PAUSE);
            suspects.retain(|(at, seen)| {
                let n = seen.len() / copies.len();
                self.read_block(&copies, *at, n)
                    .is_some_and(|now| now == *seen)
            });
        }
        suspects.into_iter().map(|(at, _)| at).collect()
    }

    /// `n` bytes at `at` of each of `copies`, in order; `None` if one
    /// fails to read.
    fn read_block(&self, copies: &[usize], at: u64, n: usize) -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; n * copies.len()];
        for (&i, piece) in copies.iter().zip(bytes.chunks_mut(n)) {
            let leg = self.legs[i].1.as_ref().expect("surveyed copies are open");
            wait(|f| leg.read(at, &[RawBuf::of_mut(piece)], f)).ok()?;
        }
        Some(bytes)
    }

    /// Scrub with repair of a step no copy reads whole: put together
    /// block by block from the copies `order` where they verify, and
    /// rewritten on those that failed. Whether it could be.
    fn scrub_blockwise(
        &self,
        report: &mut ScrubReport,
        order: &[usize],
        offset: u64,
        n: usize,
        range: &str,
    ) -> bool {
        let mut data = vec![0u8; n];
        let corrupt = match self.read_any(order, offset, &mut data) {
            Ok((_, corrupt)) => corrupt,
            Err(err) => {
                report.problem(format!("{range}: {err}"));
                return false;
            }
        };
        for i in corrupt {
            let (name, leg) = &self.legs[i];
            let leg = leg.as_ref().expect("surveyed copies are open");
            match store_piece(leg, offset, &mut data) {
                Ok(_) => report.mended(format!(
                    "{name}: {range} (checksums) rewritten block by block from the copies that verify"
                )),
                Err(err) => report.problem(format!("{name}: {range} could not be rewritten: {err}")),
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::backend::Backend;
    use crate::store::Store;
    use crate::uuid::Uuid;

    #[test]
    fn a_block_being_written_is_not_reported_a_damaged_copy_is() {
        let dirs: Vec<std::path::PathBuf> = (0..2)
            .map(|i| std::env::temp_dir().join(format!("rawstor-scrub-{i}-{}", std::process::id())))
            .collect();
        let uuid = Uuid::now_v7();
        let objects: Vec<_> = dirs
            .iter()
            .map(|d| {
                let _ = std::fs::remove_dir_all(d);
                let store = Store::open(vec![d.clone()], true).unwrap();
                store.create_object(uuid, 1 << 20, 1 << 20).unwrap();
                store.open_object(uuid).unwrap()
            })
            .collect();
        for object in &objects {
            object.write(0, &vec![7u8; 1 << 20]).unwrap();
        }
        // Copy 1 holds other (well-sealed) bytes in block 3: damage.
        objects[1].write(3 * BLOCK_SIZE, &[9u8; 4096]).unwrap();
        let legs = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("c{i}"), Ok(crate::local::copy(Arc::clone(o)))))
            .collect();
        let mirror = Mirror::new(uuid, legs, &[], None, Duration::from_millis(600)).unwrap();
        // Block 8: a writer elsewhere has changed copy 0 and not yet copy 1.
        let stop = AtomicBool::new(false);
        let started = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in (10..=u8::MAX).cycle() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    objects[0].write(8 * BLOCK_SIZE, &[n; 4096]).unwrap();
                    started.store(true, Ordering::Release);
                }
            });
            while !started.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            let report = mirror.scrub(false, &mut |_, _| {}).unwrap();
            stop.store(true, Ordering::Release);
            assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
            assert!(
                report.problems[0].contains("1 block(s), the first at byte 12288"),
                "{:?}",
                report.problems
            );
        });
        for d in &dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
