//! Changes to mirrors (writes, discards, flushes, resizes): every good
//! copy gets them, under the writer lease and write intent for an object
//! placed by a rawstor-mdt; a copy that misses one is marked stale before
//! the change completes.

use super::*;
use crate::fan_in::FanIn;

impl Mirror {
    /// Runs a change of `len` bytes at `offset` on every good leg and
    /// marks the legs that miss it. For an object placed by a
    /// rawstor-mdt, the writer lease is held and the regions are marked
    /// first (on a worker thread when that needs the MDT).
    pub(super) fn change(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        start: impl Fn(&Leg, Finish) + Send + 'static,
        finish: Finish,
    ) {
        let Some(rec) = &self.recorded else {
            return self.run_on_good_legs(start, finish, true);
        };
        if rec.ready.load(Ordering::Acquire) && rec.journal.enter(offset, len) {
            let done = Self::counted(Arc::clone(self), offset, len, finish);
            return self.run_on_good_legs(start, done, true);
        }
        let me = Arc::clone(self);
        rec.pool
            .run_finishing(finish, move |finish| match me.begin_write(offset, len) {
                Ok(()) => {
                    let done = Self::counted(Arc::clone(&me), offset, len, finish);
                    me.run_on_good_legs(start, done, true);
                }
                Err(err) => finish(Err(err)),
            });
    }

    /// `finish`, telling the journal first that the change of `len`
    /// bytes at `offset` is done.
    pub(super) fn counted(self: Arc<Self>, offset: u64, len: u64, finish: Finish) -> Finish {
        Box::new(move |result| {
            if let Some(rec) = &self.recorded {
                rec.journal.after_write(offset, len);
            }
            finish(result)
        })
    }

    /// Takes the writer lease if this writer does not hold it yet
    /// (resyncing the regions a previous writer left) and marks the
    /// regions of `len` bytes at `offset`. Waits for the MDT.
    pub(super) fn begin_write(&self, offset: u64, len: u64) -> Result<()> {
        let rec = self
            .recorded
            .as_ref()
            .expect("only recorded mirrors journal");
        let _gate = rec.gate.lock();
        if let Some(left) = rec.journal.before_write(offset, len, self.info().size)? {
            let taken = self
                .fence(rec)
                .and_then(|()| rec.journal.repaired(&[], &self.resync(&left)));
            if let Err(err) = taken {
                rec.journal.after_write(offset, len);
                return Err(err);
            }
        }
        rec.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Fences the legs that are not stale with the lease just taken;
    /// those that cannot be fenced are marked stale.
    pub(super) fn fence(&self, rec: &Recorded) -> Result<()> {
        let stale = self.stale.lock().clone();
        let good: Vec<usize> = (0..self.legs.len()).filter(|&i| !stale[i]).collect();
        let failed = fence_legs(&self.legs, &good, rec.journal.epoch(), self.uuid)?;
        let Some((first, why)) = failed.first() else {
            return Ok(());
        };
        if failed.len() == good.len() {
            return Err(Error::new(
                why.errno(),
                format!(
                    "object {}: no copy could be fenced for this writer ({}: {why})",
                    self.uuid, self.legs[*first].0
                ),
            ));
        }
        let unfenced: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
        let mut stale = self.stale.lock();
        for &i in &unfenced {
            stale[i] = true;
        }
        drop(stale);
        rec.journal.mark_stale(&unfenced)
    }

    /// Runs `start` on every good leg, marking those where it fails, and
    /// (when the operation changes data) those that could not be opened.
    pub(super) fn run_on_good_legs(
        self: &Arc<Self>,
        start: impl Fn(&Leg, Finish),
        finish: Finish,
        changes_data: bool,
    ) {
        let stale = self.stale.lock().clone();
        let targets: Vec<usize> = (0..self.legs.len())
            .filter(|&i| self.legs[i].1.is_some() && !stale[i])
            .collect();
        // Legs that could not be opened miss a data change too; a flush
        // has nothing for them (they took no write from this opening).
        let down: Vec<usize> = (0..self.legs.len())
            .filter(|&i| changes_data && self.legs[i].1.is_none() && !stale[i])
            .collect();
        if targets.is_empty() {
            return finish(Err(Error::new(
                libc::EIO,
                format!("no writable copy of object {} is left", self.uuid),
            )));
        }
        // A leg that lags behind the others fails after a short while
        // more, and is marked stale by the settling.
        // Flushes take as long as the dirty data: their own average.
        let latency = if changes_data {
            &self.changes
        } else {
            &self.flushes
        };
        let fan = Arc::new(Fan::new(Arc::clone(latency), &self.pieces, targets.clone()));
        let me = Arc::clone(self);
        let legs = targets.clone();
        let all = FanIn::new(
            targets.len(),
            Box::new(move |results| {
                me.settle(legs.into_iter().zip(results).collect(), down, finish)
            }),
        );
        for (k, &i) in targets.iter().enumerate() {
            let fan = Arc::clone(&fan);
            let part = all.part(k);
            let leg = self.legs[i].1.as_ref().expect("targets are open");
            start(
                leg,
                Box::new(move |result| {
                    fan.answered(k, result.is_ok());
                    part(result)
                }),
            );
        }
        fan.started_all();
    }

    /// After every leg answered: succeed, fail, or mark and succeed.
    pub(super) fn settle(
        self: Arc<Self>,
        results: Vec<(usize, Result<u64>)>,
        down: Vec<usize>,
        finish: Finish,
    ) {
        let ok: Vec<(usize, u64)> = results
            .iter()
            .filter_map(|(i, r)| r.as_ref().ok().map(|&n| (*i, n)))
            .collect();
        let failed: Vec<(usize, Error)> = results
            .into_iter()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect();
        let Some(&(_, bytes)) = ok.first() else {
            return finish(Err(failed.into_iter().next().expect("some leg answered").1));
        };
        // Fenced out by a newer writer: the change is refused, and this
        // writer marks nothing stale.
        if let Some((_, err)) = failed.iter().find(|(_, e)| caller_error(e)) {
            return finish(Err(err.clone()));
        }
        let missed: Vec<usize> = failed.iter().map(|(i, _)| *i).chain(down).collect();
        if missed.is_empty() {
            return finish(Ok(bytes));
        }
        for (i, err) in &failed {
            crate::log::warn(&format!(
                "copy {} of object {} missed a write ({err}); it is marked stale until repaired",
                self.legs[*i].0, self.uuid
            ));
        }
        let took: Vec<usize> = ok.iter().map(|&(i, _)| i).collect();
        self.record_missed(missed, &took, bytes, finish);
    }

    /// Records that the legs `missed` missed a change the legs `took`
    /// (at least one) have, then `finish` gets `bytes`: in the MDT's
    /// record for an object placed by a rawstor-mdt, else in the marks of
    /// the legs that took it (one of them is enough). A reachable leg that
    /// missed it learns it is stale too, as best it can.
    fn record_missed(&self, missed: Vec<usize>, took: &[usize], bytes: u64, finish: Finish) {
        let names: Vec<String> = {
            let mut stale = self.stale.lock();
            for &i in &missed {
                stale[i] = true;
            }
            (0..self.legs.len())
                .filter(|&i| stale[i])
                .map(|i| self.legs[i].0.clone())
                .collect()
        };
        for &i in &missed {
            if let Some(leg) = &self.legs[i].1 {
                let own = Marks {
                    stale: true,
                    stale_peers: Vec::new(),
                };
                leg.set_marks(&own, false, Box::new(|_| {}));
            }
        }
        let uuid = self.uuid;
        if let Some(rec) = &self.recorded {
            // The MDT's record is where the marks live (waited for on a
            // worker thread: the event loop never waits).
            let journal = Arc::clone(&rec.journal);
            return rec.pool.run_finishing(finish, move |finish| {
                finish(journal.mark_stale(&missed).map(|()| bytes).map_err(|e| {
                    Error::new(
                        libc::EIO,
                        format!("object {uuid}: a copy missed a write and the MDT could not record it: {e}"),
                    )
                }))
            });
        }
        let marks = Marks {
            stale: false,
            stale_peers: names,
        };
        let all = FanIn::new(
            took.len(),
            Box::new(move |results| {
                finish(if results.iter().any(Result::is_ok) {
                    Ok(bytes)
                } else {
                    Err(Error::new(
                        libc::EIO,
                        format!(
                            "object {uuid}: a copy missed a write and no other copy could record it"
                        ),
                    ))
                })
            }),
        );
        for (k, &i) in took.iter().enumerate() {
            let leg = self.legs[i]
                .1
                .as_ref()
                .expect("legs that took a change are open");
            leg.set_marks(&marks, false, all.part(k));
        }
    }
}
