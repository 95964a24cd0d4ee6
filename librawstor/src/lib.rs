//! rawstor: a constructor for horizontally scalable storage.
//!
//! The client library owns data preparation: addresses ([`uri`]), the
//! on-disk store ([`store`]), objects and queues ([`client`], [`queue`]),
//! the wire protocol of `ost://` ([`wire`]) and the C ABI ([`ffi`], header
//! `include/rawstor.h`).

mod backend;
pub mod client;
pub mod daemon;
pub mod error;
mod event_loop;
mod fan_in;
pub mod ffi;
mod lent;
mod local;
pub mod log;
pub mod mdt;
mod net;
pub mod object;
mod pieces;
pub mod placement;
pub mod pool;
pub mod queue;
mod redundancy;
mod remote;
pub mod size;
pub mod store;
mod sys;
pub mod uri;
pub mod uuid;

pub use client::{CreateSpec, Instance, Options};
pub use error::{Error, Result};
pub use object::Object;
pub use queue::{Cqe, Queue, Sqe};
pub use rawstor_proto as wire;
pub use redundancy::erasure;
pub use store::ObjectInfo;
pub use uri::{Location, Target};
pub use uuid::Uuid;

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
