//! Stripe locks: writes to one stripe (and rebuilds reading it) are
//! serialised; ranges of stripes are taken whole or not at all.

use parking_lot::{Condvar, Mutex};

/// Locks on ranges of stripes: writes (and rebuilding reads) of
/// overlapping stripes run one at a time.
#[derive(Default)]
pub(super) struct StripeLocks {
    held: Mutex<Vec<(u64, u64)>>,
    freed: Condvar,
}

pub(super) struct StripeGuard<'a> {
    locks: &'a StripeLocks,
    range: (u64, u64),
}

impl StripeLocks {
    pub(super) fn lock(&self, first: u64, end: u64) -> StripeGuard<'_> {
        let mut held = self.held.lock();
        while held.iter().any(|&(a, b)| a < end && first < b) {
            self.freed.wait(&mut held);
        }
        held.push((first, end));
        StripeGuard {
            locks: self,
            range: (first, end),
        }
    }

    /// Locks `first..end` if no other holder overlaps it, without waiting;
    /// the caller unlocks it with [`StripeLocks::unlock`].
    pub(super) fn try_lock(&self, first: u64, end: u64) -> bool {
        let mut held = self.held.lock();
        if held.iter().any(|&(a, b)| a < end && first < b) {
            return false;
        }
        held.push((first, end));
        true
    }

    pub(super) fn unlock(&self, range: (u64, u64)) {
        let mut held = self.held.lock();
        if let Some(i) = held.iter().position(|&r| r == range) {
            held.swap_remove(i);
        }
        self.freed.notify_all();
    }
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        self.locks.unlock(self.range);
    }
}
