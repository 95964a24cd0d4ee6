//! Redundancy, owned by the client: an object's bytes kept in several
//! places so that it survives the loss of some of them.
//!
//! * [`mirror`]: `replicas:N` and comma lists, every copy whole.
//! * [`erasure`]: `ec:K+M`, K data shards and M parity shards (the codec,
//!   stripe locks, reads, writes, repair and scrub each in a file).
//! * [`journal`]: what a mirror or an erasure-coded object placed by a
//!   rawstor-mdt keeps there (write intent, stale copies, its size);
//!   [`lease`] implements it over the MDT, with the writer lease.
//! * [`straggler`]: how long a change waits for a copy or shard that lags.
//!
//! Both kinds are [`crate::backend::Backend`]s over copies or shards that
//! are themselves `Backend`s.

pub mod erasure;
pub(crate) mod journal;
pub(crate) mod lease;
pub(crate) mod mirror;
pub(crate) mod straggler;
