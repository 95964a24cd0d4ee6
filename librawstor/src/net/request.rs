//! What a connection sends: a request's header, its payload (owned or
//! lent from the caller), where a read's data goes, and the completion.

use std::time::Duration;

use crate::error::Result;
use crate::lent::RawBuf;
use crate::uuid::Uuid;
use crate::wire::{Header, Opcode};

/// Called once with a request's outcome: the reply payload (empty for
/// reads, whose data went to the destination) or the error.
pub(crate) type Done = Box<dyn FnOnce(Result<Vec<u8>>) + Send>;

/// A request's payload.
pub(crate) enum Payload {
    None,
    Owned(Vec<u8>),
    /// Pieces of the caller's write buffers, sent in order as they are
    /// (read-only use, no copy).
    Lent(Vec<RawBuf>),
}

impl Payload {
    /// The payload's bytes, in order, in one or more pieces.
    pub(super) fn parts(&self) -> Vec<&[u8]> {
        match self {
            Payload::None => Vec::new(),
            Payload::Owned(v) => vec![v.as_slice()],
            Payload::Lent(bufs) => bufs
                .iter()
                // SAFETY: lent for the request's lifetime, only read.
                .map(|b| unsafe { crate::lent::bytes(b) })
                .collect(),
        }
    }
}

/// Where a read's data goes.
pub(crate) enum Dest {
    None,
    /// Buffers filled in order.
    Bufs(Vec<RawBuf>),
}

/// One request to send.
pub(crate) struct Request {
    pub(crate) header: Header,
    pub(crate) payload: Payload,
    pub(crate) dest: Dest,
    pub(crate) done: Done,
    /// A caller with another copy to ask fails the request (`ETIMEDOUT`)
    /// when no reply came within this, leaving the connection as it is.
    pub(crate) within: Option<Duration>,
}

impl Request {
    /// A request on `object` without payload or destination.
    pub(crate) fn new(op: Opcode, object: Uuid, offset: u64, length: u64, done: Done) -> Self {
        Self {
            header: Header::request(op, 0, object, offset, length),
            payload: Payload::None,
            dest: Dest::None,
            done,
            within: None,
        }
    }
}
