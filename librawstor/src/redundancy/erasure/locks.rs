//! Stripe locks: writes to one stripe (and rebuilds reading it) are
//! serialised; ranges of stripes are taken whole or not at all. A thread
//! that may wait takes them with [`StripeLocks::lock`]; a write, which
//! never waits, asks with [`StripeLocks::lock_or_ask`] and goes on when
//! they are granted.

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};

/// What runs once a range asked for with [`StripeLocks::lock_or_ask`]
/// is held.
pub(super) type Granted = Box<dyn FnOnce() + Send>;

/// Locks on ranges of stripes: writes (and rebuilding reads) of
/// overlapping stripes run one at a time.
#[derive(Default)]
pub(super) struct StripeLocks {
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    /// Ranges `first..end` held.
    held: Vec<(u64, u64)>,
    /// Ranges asked for without waiting, in the order asked (at most one
    /// per write in flight).
    waiting: VecDeque<((u64, u64), Granted)>,
}

fn overlaps(ranges: impl IntoIterator<Item = (u64, u64)>, (first, end): (u64, u64)) -> bool {
    ranges.into_iter().any(|(a, b)| a < end && first < b)
}

pub(super) struct StripeGuard<'a> {
    locks: &'a StripeLocks,
    range: (u64, u64),
}

impl StripeLocks {
    /// Waits for `first..end` and holds it until the guard is dropped.
    pub(super) fn lock(&self, first: u64, end: u64) -> StripeGuard<'_> {
        let mut state = self.state.lock();
        while overlaps(state.held.iter().copied(), (first, end)) {
            self.freed.wait(&mut state);
        }
        state.held.push((first, end));
        StripeGuard {
            locks: self,
            range: (first, end),
        }
    }

    /// Takes `first..end` and returns true if no holder (nor an earlier
    /// asker) overlaps it; otherwise returns false, and `granted` runs,
    /// on the thread that unlocks what was in the way, once it is held.
    /// The holder unlocks it with [`StripeLocks::unlock`].
    pub(super) fn lock_or_ask(&self, first: u64, end: u64, granted: Granted) -> bool {
        let range = (first, end);
        let mut state = self.state.lock();
        let asked = state.waiting.iter().map(|w| w.0);
        if overlaps(state.held.iter().copied().chain(asked), range) {
            state.waiting.push_back((range, granted));
            return false;
        }
        state.held.push(range);
        true
    }

    /// Gives back `range`; the askers it was in the way of get theirs.
    pub(super) fn unlock(&self, range: (u64, u64)) {
        let mut state = self.state.lock();
        let i = state.held.iter().position(|&r| r == range);
        assert!(i.is_some(), "stripes {range:?} unlocked but not held");
        state.held.swap_remove(i.unwrap_or_default());
        // In the order asked; none passes an earlier asker it overlaps.
        let mut granted = Vec::new();
        let mut kept: VecDeque<((u64, u64), Granted)> = VecDeque::new();
        while let Some((asked, then)) = state.waiting.pop_front() {
            let earlier = kept.iter().map(|w| w.0);
            if overlaps(state.held.iter().copied().chain(earlier), asked) {
                kept.push_back((asked, then));
            } else {
                state.held.push(asked);
                granted.push(then);
            }
        }
        state.waiting = kept;
        drop(state);
        self.freed.notify_all();
        for then in granted {
            then();
        }
    }
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        self.locks.unlock(self.range);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn askers_get_their_stripes_in_order_once_free() {
        let locks = StripeLocks::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let note = |name: &'static str| -> Granted {
            let order = Arc::clone(&order);
            Box::new(move || order.lock().push(name))
        };
        let ask = |first, end, name| {
            if locks.lock_or_ask(first, end, note(name)) {
                order.lock().push(name);
            }
        };
        ask(0, 2, "a");
        ask(1, 3, "b"); // waits for a
        ask(2, 4, "c"); // free, but b asked first
        ask(5, 6, "d"); // free
        assert_eq!(*order.lock(), ["a", "d"]);
        locks.unlock((0, 2));
        assert_eq!(*order.lock(), ["a", "d", "b"]);
        locks.unlock((1, 3));
        assert_eq!(*order.lock(), ["a", "d", "b", "c"]);
        locks.unlock((2, 4));
        locks.unlock((5, 6));
        drop(locks.lock(0, 10)); // all free again
    }
}
