//! How long a redundant operation waits for a copy or shard that lags
//! behind the others.
//!
//! A change completes once every copy (or shard) has it. One that has not
//! answered while the others have, for longer than a short deadline
//! derived from recent latency, is given up on: its requests fail at
//! once ([`crate::net::Connection::hurry`]), the caller records it stale
//! in the MDT (before acknowledging, as for any copy that missed a
//! change) and completes; `rawstor repair` makes it current again. A read
//! whose copy or shard is that slow asks another. So a dead or hung server
//! costs a writer well under a second instead of the request timeout.
//!
//! The deadline is [`STRAGGLER_FACTOR`] times the running average of the
//! layout's answers, at least [`STRAGGLER_MIN`] (far above this machine
//! kind's jitter: idle cores wake slowly), at most the instance's
//! `straggler_ms` option.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Error;
use crate::net::Connection;
use crate::uuid::Uuid;

/// Shortest wait for a straggler.
pub(crate) const STRAGGLER_MIN: Duration = Duration::from_millis(150);
/// A straggler is waited for this many times the recent average answer.
const STRAGGLER_FACTOR: u32 = 10;
/// The running average moves by 1/this of each new answer's difference.
const AVERAGE_WEIGHT: u64 = 8;

/// The running average of a layout's answers, and the deadline it gives.
pub(crate) struct Latency {
    average_us: AtomicU64,
    max: Duration,
}

impl Latency {
    /// An average that starts at nothing, for deadlines of at most `max`
    /// (the instance's `straggler_ms`).
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            average_us: AtomicU64::new(0),
            max: max.max(STRAGGLER_MIN),
        }
    }

    /// Notes an answer that took `took`.
    pub(crate) fn note(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // Lost updates between racing callers only slow the average down.
        let old = self.average_us.load(Ordering::Relaxed);
        let new = if sample >= old {
            old + (sample - old) / AVERAGE_WEIGHT
        } else {
            old - (old - sample) / AVERAGE_WEIGHT
        };
        self.average_us.store(new, Ordering::Relaxed);
    }

    /// How long a straggler is waited for once the others answered.
    pub(crate) fn wait(&self) -> Duration {
        let average = Duration::from_micros(self.average_us.load(Ordering::Relaxed));
        (average * STRAGGLER_FACTOR).clamp(STRAGGLER_MIN, self.max)
    }
}

/// The copies or shards of an object that let a read time out lately:
/// reads ask them last (or leave them out) for [`SLOW_FOR`]. Free to ask
/// while none is.
pub(crate) struct Slow {
    until: Mutex<Vec<Option<Instant>>>,
    /// Whether any entry may be set: reads skip the lock while not.
    any: AtomicBool,
}

/// How long a copy or shard that let a read time out is asked last.
const SLOW_FOR: Duration = Duration::from_secs(2);

impl Slow {
    /// Nothing slow among `count` copies or shards.
    pub(crate) fn new(count: usize) -> Self {
        Self {
            until: Mutex::new(vec![None; count]),
            any: AtomicBool::new(false),
        }
    }

    /// Copy or shard `i` let a read time out.
    pub(crate) fn mark(&self, i: usize) {
        self.until.lock()[i] = Some(Instant::now() + SLOW_FOR);
        self.any.store(true, Ordering::Release);
    }

    /// Those slow now (usually none, without a lock).
    pub(crate) fn now(&self) -> Vec<usize> {
        if !self.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        let now = Instant::now();
        let until = self.until.lock();
        let slow: Vec<usize> = (0..until.len())
            .filter(|&i| until[i].is_some_and(|t| t > now))
            .collect();
        if slow.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        slow
    }
}

/// Where a copy's or shard's changes wait: what [`Fan`] hurries.
#[derive(Clone)]
pub(crate) struct Hurrier {
    pub(crate) connection: Arc<Connection>,
    pub(crate) object: Uuid,
}

/// The copies or shards of one opened object, for [`Fan`]: each one's
/// name (for messages) and where its changes wait (`None`: a local file,
/// which answers or fails by itself). Made once per opening.
pub(crate) type Pieces = Arc<[(String, Option<Hurrier>)]>;

/// Pieces of one change given up on at most: one, so that a moment in
/// which several servers are slow (a burst of flushes, a loaded machine)
/// never leaves fewer copies current than the layout's width less one; a
/// change with two pieces out waits for the request timeout, as before.
const GIVEN_UP_AT_ONCE: usize = 1;

/// A change fanned out to copies or shards, watched for stragglers: once
/// every piece has been started and all but [`GIVEN_UP_AT_ONCE`] have
/// answered (one well), those still out get [`Latency::wait`] more, or as
/// long again as the others took if that is longer (a flush of much
/// dirty data is slow on every server), then fail (`ETIMEDOUT`), so that
/// the caller settles the change without them (marking them stale).
pub(crate) struct Fan {
    watch: Watch,
    began: Instant,
    latency: Arc<Latency>,
    all: Pieces,
    /// The pieces of `all` this change went to, in the order of `k`.
    which: Vec<usize>,
}

impl Fan {
    /// A fan-out to the pieces `which` of `all`, starting now.
    pub(crate) fn new(latency: Arc<Latency>, all: &Pieces, which: Vec<usize>) -> Self {
        Self {
            watch: Watch::new(which.len(), GIVEN_UP_AT_ONCE),
            began: Instant::now(),
            latency,
            all: Arc::clone(all),
            which,
        }
    }

    /// Piece `k` answered (`ok`: well).
    pub(crate) fn answered(&self, k: usize, ok: bool) {
        if ok {
            self.latency.note(self.began.elapsed());
        }
        self.hurry(&self.watch.answered(k, ok));
    }

    /// Every piece has been started.
    pub(crate) fn started_all(&self) {
        self.hurry(&self.watch.started_all());
    }

    fn hurry(&self, late: &[usize]) {
        if late.is_empty() {
            return;
        }
        let wait = self.latency.wait().max(self.began.elapsed());
        let at = Instant::now() + wait;
        for &k in late {
            let (name, hurrier) = &self.all[self.which[k]];
            let Some(hurrier) = hurrier else { continue };
            let err = Error::new(
                libc::ETIMEDOUT,
                format!(
                    "{name}: no answer within {} ms of the others",
                    wait.as_millis()
                ),
            );
            hurrier.connection.hurry(hurrier.object, at, &err);
        }
    }
}

/// One fan-out's watch for stragglers: once every piece has been started,
/// one has answered well and at most `tolerance` have not answered, those
/// are due to be hurried, once.
struct Watch {
    tolerance: usize,
    state: Mutex<WatchState>,
}

struct WatchState {
    answered: Vec<bool>,
    started_all: bool,
    answered_ok: bool,
    fired: bool,
}

impl Watch {
    /// A watch over `pieces` pieces that gives up on at most `tolerance`.
    fn new(pieces: usize, tolerance: usize) -> Self {
        Self {
            tolerance,
            state: Mutex::new(WatchState {
                answered: vec![false; pieces],
                started_all: false,
                answered_ok: false,
                fired: false,
            }),
        }
    }

    /// Piece `k` answered (`ok`: well). Returns the pieces to hurry now.
    fn answered(&self, k: usize, ok: bool) -> Vec<usize> {
        let mut st = self.state.lock();
        assert!(!st.answered[k], "a piece answers once");
        st.answered[k] = true;
        st.answered_ok |= ok;
        self.due(&mut st)
    }

    /// Every piece has been started. Returns the pieces to hurry now.
    fn started_all(&self) -> Vec<usize> {
        let mut st = self.state.lock();
        st.started_all = true;
        self.due(&mut st)
    }

    fn due(&self, st: &mut WatchState) -> Vec<usize> {
        if st.fired || !st.started_all || !st.answered_ok {
            return Vec::new();
        }
        let late: Vec<usize> = (0..st.answered.len())
            .filter(|&k| !st.answered[k])
            .collect();
        if late.len() > self.tolerance {
            return Vec::new();
        }
        st.fired = !late.is_empty();
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_follows_recent_answers_within_its_bounds() {
        let latency = Latency::new(Duration::from_millis(600));
        assert_eq!(latency.wait(), STRAGGLER_MIN, "nothing seen yet");
        for _ in 0..200 {
            latency.note(Duration::from_millis(40));
        }
        let wait = latency.wait();
        assert!(
            wait > Duration::from_millis(380) && wait <= Duration::from_millis(400),
            "{wait:?}"
        );
        for _ in 0..200 {
            latency.note(Duration::from_secs(2));
        }
        assert_eq!(
            latency.wait(),
            Duration::from_millis(600),
            "the option bounds it"
        );
        assert_eq!(Latency::new(Duration::ZERO).wait(), STRAGGLER_MIN);
    }

    #[test]
    fn stragglers_are_due_once_all_started_and_at_most_the_tolerance_is_out() {
        let watch = Watch::new(3, 1);
        assert!(
            watch.answered(0, false).is_empty(),
            "a failure is no reference"
        );
        assert!(watch.answered(1, true).is_empty(), "not all started yet");
        assert_eq!(watch.started_all(), [2]);
        assert!(watch.answered(2, true).is_empty(), "once");
        // Copies: one at a time. The first answer of three leaves two out.
        let copies = Watch::new(3, 1);
        copies.started_all();
        assert!(
            copies.answered(0, true).is_empty(),
            "two out: wait for one more"
        );
        assert_eq!(copies.answered(2, true), [1]);
        // ec:4+2: up to two shards.
        let shards = Watch::new(6, 2);
        shards.started_all();
        for k in 0..3 {
            assert!(shards.answered(k, true).is_empty(), "{} out", 5 - k);
        }
        assert_eq!(shards.answered(5, true), [3, 4]);
        let all = Watch::new(2, 1);
        all.started_all();
        assert_eq!(all.answered(0, true), [1]);
        assert!(all.answered(1, true).is_empty(), "nobody left to hurry");
    }
}
