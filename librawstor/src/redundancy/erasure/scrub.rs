//! Scrub of erasure-coded objects: every shard read in full, parity
//! checked against the data; with repair, what fails is rebuilt.

use super::*;

impl Erasure {
    /// Checks a step's parity against its data, when every data shard
    /// was read (`good`); with `repair`, rewrites parity that does not
    /// match, else reports it (looked at again first).
    fn check_parity(
        &self,
        report: &mut ScrubReport,
        range: &str,
        good: &[(usize, Vec<u8>)],
        (lo, hi): (u64, u64),
        repair: bool,
    ) {
        let k = self.k();
        let row = |j: usize| {
            good.iter()
                .find(|(i, _)| *i == j)
                .map(|(_, b)| b.as_slice())
        };
        let Some(data) = (0..k).map(row).collect::<Option<Vec<&[u8]>>>() else {
            return;
        };
        let wrong: Vec<String> = self
            .codec
            .encode_with(&data, |parity| {
                good.iter()
                    .filter(|(i, _)| *i >= k)
                    .filter(|(i, bytes)| bytes.as_slice() != parity[*i - k])
                    .map(|(i, _)| self.shards[*i].0.clone())
                    .collect()
            })
            .unwrap_or_default();
        if wrong.is_empty() {
            return;
        }
        let what = format!(
            "{range}: parity on {} does not match the data",
            wrong.join(", ")
        );
        match repair.then(|| self.rewrite_parity(lo, hi)) {
            Some(Ok(())) => report.mended(format!("{what}: rewritten from the data")),
            Some(Err(err)) => report.problem(format!("{what}: cannot rewrite it: {err}")),
            None => self.report_mismatch(report, what, lo, good),
        }
    }

    /// Reads every shard in full and checks that the parity matches the
    /// data; reports unreadable blocks (checksums), mismatching stripes,
    /// stale and unreachable shards. Changes nothing.
    pub(super) fn scrub_shards(
        &self,
        repair: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ScrubReport> {
        if repair {
            // The writer lease, and what a previous writer left resynced.
            self.prepare_write(0, 0)?;
        }
        let mut report = ScrubReport::default();
        let checked = report.survey(&self.shards, &self.stale.lock(), "rebuilds");
        let size = self.size.load(Ordering::Acquire);
        let shard_bytes = shard_size(size, self.k());
        let k = self.k();
        let mut at = 0;
        while at < shard_bytes {
            let n = STEP_BYTES.min(shard_bytes - at);
            let range = format!("shard bytes {at}..{}", at + n);
            let _guard = repair.then(|| self.locks.lock(at / EC_UNIT, (at + n).div_ceil(EC_UNIT)));
            let mut bufs: Vec<Vec<u8>> = checked.iter().map(|_| vec![0u8; n as usize]).collect();
            let reads: Vec<(usize, u64, RawBuf)> = checked
                .iter()
                .zip(bufs.iter_mut())
                .map(|(&i, b)| (i, at, RawBuf::of_mut(b)))
                .collect();
            let results = self.read_shards(&reads);
            let mut good: Vec<(usize, Vec<u8>)> = Vec::new();
            let mut failed = Vec::new();
            for ((&i, buf), result) in checked.iter().zip(bufs).zip(results) {
                match result {
                    Ok(_) => good.push((i, buf)),
                    Err(err) if repair => failed.push((i, err)),
                    Err(err) => report.problem(format!("{}: {range}: {err}", self.shards[i].0)),
                }
            }
            if !failed.is_empty() {
                self.scrub_rebuild(&mut report, &range, failed, at, at + n);
            }
            self.check_parity(&mut report, &range, &good, (at, at + n), repair);
            report.bytes_checked += n * k as u64;
            at += n;
            progress((at * k as u64).min(size), size);
        }
        if !report.repaired.is_empty() {
            self.flush_sync()?;
        }
        Ok(report)
    }

    /// Scrub without repair found parity that does not match the data in
    /// the step at shard offset `at` (read as `good`): reported, with the
    /// stripes, unless a second look finds every such stripe changing (a
    /// writer in another process was in the middle of it).
    pub(super) fn report_mismatch(
        &self,
        report: &mut ScrubReport,
        what: String,
        at: u64,
        good: &[(usize, Vec<u8>)],
    ) {
        let shards: Vec<usize> = good.iter().map(|(i, _)| *i).collect();
        let still = self.still_mismatched(&shards, self.mismatched_rows(at, good));
        if let Some(first) = still.first() {
            report.problem(format!(
                "{what} ({} stripe(s), the first at shard byte {first})",
                still.len()
            ));
        }
    }

    /// Scrub with repair: shards whose range `lo..hi` failed to read
    /// (checksums) are rebuilt from the others and rewritten.
    pub(super) fn scrub_rebuild(
        &self,
        report: &mut ScrubReport,
        range: &str,
        failed: Vec<(usize, Error)>,
        lo: u64,
        hi: u64,
    ) {
        let want: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
        let outcome = self.rebuild(&want, lo, hi, true).and_then(|rows| {
            let writes = want
                .iter()
                .zip(&rows)
                .map(|(&i, row)| (i, lo, row.as_slice()))
                .collect();
            let missed = self.write_shards(writes, false)?;
            self.settle(&missed)?;
            Ok(missed)
        });
        for (i, err) in failed {
            let name = &self.shards[i].0;
            match &outcome {
                Ok(missed) if !missed.contains(&i) => {
                    report.mended(format!("{name}: {range} ({err}) rebuilt from the others"));
                }
                Ok(_) => report.problem(format!(
                    "{name}: {range} ({err}): the rebuilt bytes could not be written; it is stale now"
                )),
                Err(e) => report.problem(format!("{name}: {range} ({err}): cannot rebuild: {e}")),
            }
        }
    }
}
