//! Waiting for several completions: the one way every place that starts
//! operations together (a request split in pieces, a change to every
//! copy, the shards of a stripe, a repair's fences) collects them.
//!
//! A [`FanIn`] hands out one [`Finish`] per operation; once the last has
//! run, the results go, in the order of the operations, to the closure
//! given at the start. A completion dropped without running (a request
//! lost with its connection) counts as an I/O error, so the whole always
//! comes, exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::remote::Finish;

/// What runs once every operation of a [`FanIn`] has completed: their
/// results, in order.
pub(crate) type Whole = Box<dyn FnOnce(Vec<Result<u64>>) + Send>;

/// The completions of operations started together. See the module
/// documentation.
pub(crate) struct FanIn {
    /// Operations in all (the length of `results`).
    count: usize,
    results: Mutex<Vec<Option<Result<u64>>>>,
    left: AtomicUsize,
    whole: Mutex<Option<Whole>>,
}

impl FanIn {
    /// A fan-in over `count` operations (at least one); `whole` gets
    /// their results once the last has completed.
    pub(crate) fn new(count: usize, whole: Whole) -> Arc<Self> {
        assert!(count > 0, "a fan-in waits for at least one operation");
        Arc::new(Self {
            count,
            results: Mutex::new((0..count).map(|_| None).collect()),
            left: AtomicUsize::new(count),
            whole: Mutex::new(Some(whole)),
        })
    }

    /// The completion of operation `index`.
    pub(crate) fn part(self: &Arc<Self>, index: usize) -> Finish {
        assert!(
            index < self.count,
            "operation {index} of a fan-in of {}",
            self.count
        );
        let slot = Slot {
            fan: Arc::clone(self),
            index,
            result: None,
        };
        Box::new(move |result| slot.fill(result))
    }
}

/// One operation's place in a [`FanIn`]: filled when its completion runs,
/// with an I/O error when the completion is dropped unrun.
struct Slot {
    fan: Arc<FanIn>,
    index: usize,
    result: Option<Result<u64>>,
}

impl Slot {
    fn fill(mut self, result: Result<u64>) {
        self.result = Some(result);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let result = self
            .result
            .take()
            .unwrap_or_else(|| Err(Error::new(libc::EIO, "the request was dropped")));
        {
            let mut results = self.fan.results.lock();
            assert!(
                results[self.index].is_none(),
                "operation {} completes once",
                self.index
            );
            results[self.index] = Some(result);
        }
        if self.fan.left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let results: Vec<Result<u64>> = std::mem::take(&mut *self.fan.results.lock())
            .into_iter()
            .map(|r| r.expect("every operation has completed"))
            .collect();
        let whole = self.fan.whole.lock().take().expect("the whole runs once");
        whole(results);
    }
}

/// The first error among `results`, or the sum of their bytes.
pub(crate) fn first_error(results: Vec<Result<u64>>) -> Result<u64> {
    results.into_iter().sum()
}

/// Starts every operation, then waits for all of them; results are in
/// the order of `starts`. Buffers lent to the operations may be freed
/// once this returns: every completion has been received. The waiting
/// thread is woken once, by the last completion.
pub(crate) fn wait_all<'a>(starts: Vec<Box<dyn FnOnce(Finish) + 'a>>) -> Vec<Result<u64>> {
    wait_all_with(starts, || {})
}

/// [`wait_all`], running `started` once every operation has been started
/// and before the wait.
pub(crate) fn wait_all_with<'a>(
    starts: Vec<Box<dyn FnOnce(Finish) + 'a>>,
    started: impl FnOnce(),
) -> Vec<Result<u64>> {
    if starts.is_empty() {
        started();
        return Vec::new();
    }
    let count = starts.len();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let fan = FanIn::new(
        count,
        Box::new(move |results| {
            let _ = tx.send(results);
        }),
    );
    for (index, start) in starts.into_iter().enumerate() {
        start(fan.part(index));
    }
    drop(fan);
    started();
    let results = rx.recv().expect("the whole comes once every part has gone");
    assert_eq!(results.len(), count, "one result per operation");
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_once_and_a_dropped_completion_is_an_error() {
        let results = wait_all(vec![
            Box::new(|f: Finish| f(Ok(1))),
            Box::new(|f: Finish| drop(f)),
            Box::new(|f: Finish| {
                std::thread::spawn(move || f(Err(Error::invalid("no"))));
            }),
        ]);
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert_eq!(results[1].as_ref().unwrap_err().errno(), libc::EIO);
        assert_eq!(results[2].as_ref().unwrap_err().errno(), libc::EINVAL);
        assert!(wait_all(Vec::new()).is_empty());
    }

    #[test]
    fn the_whole_runs_after_the_last_part_only() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let fan = FanIn::new(
            2,
            Box::new(move |results| tx.send(first_error(results)).unwrap()),
        );
        let (a, b) = (fan.part(0), fan.part(1));
        drop(fan);
        b(Ok(3));
        assert!(rx.try_recv().is_err(), "one part is still out");
        a(Ok(4));
        assert_eq!(rx.try_recv().unwrap().unwrap(), 7);
    }
}
