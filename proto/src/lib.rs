//! The wire protocol of rawstor (`ost://`, `mdt://`): frames and their
//! payloads, without I/O. The client library, both servers and the OST's
//! heartbeat share it: the one codec and the one handshake.
//!
//! A frame is a 72-byte little-endian header followed by `payload_len`
//! bytes:
//!
//! ```text
//! off len field
//!   0   4 magic "RSTW"
//!   4   1 protocol version (2)
//!   5   1 opcode
//!   6   2 flags (FLAG_REPLY on replies, FLAG_FUA, FLAG_SHRINK, FLAG_REPLACE)
//!   8   8 request id, chosen by the client, echoed by the reply
//!  16  16 object UUID
//!  32   8 offset
//!  40   8 length (bytes the operation covers; a size for create/resize)
//!  48   4 status: 0 or a negative errno (replies)
//!  52   4 payload length (at most MAX_PAYLOAD)
//!  56   8 lease epoch of the writer making a change (0: no lease)
//!  64   4 crc32 of the payload
//!  68   4 crc32 of bytes 0..68
//! ```
//!
//! The lease epoch fences writers: once a new writer of an mdt:// object
//! has raised an OST object's fence (`Fence`) to its epoch, changes naming
//! a lower one are refused with `ENOLCK`.
//!
//! The first request on a connection is `Hello` (versions, capabilities,
//! a session id for retries, room for authentication). Requests are
//! pipelined; replies may come in any order. A frame whose header cannot
//! be trusted (magic, version, header checksum, oversized payload) ends
//! the connection after an error reply with request id 0; every other bad
//! request (payload checksum, unknown opcode, bad arguments) gets an error
//! reply and the connection goes on.

#![forbid(unsafe_code)]

mod bytes;
mod crc;
mod error;
mod frame;
mod handshake;
mod header;
mod opcode;
mod records;

pub use bytes::{Reader, Writer};
pub use crc::{CRC_BLOCK, crc_of_blocks};
pub use error::WireError;
pub use frame::{Decoded, Decoder, Frame, FrameReader, ReadError};
pub use handshake::{Hello, Offer, Welcome, accept_hello, welcomed};
pub use header::Header;
pub use opcode::Opcode;
pub use records::*;

/// Frame magic.
pub const MAGIC: [u8; 4] = *b"RSTW";
/// The protocol version this build speaks.
pub const VERSION: u8 = 2;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 72;
/// Largest payload of one frame.
pub const MAX_PAYLOAD: u32 = 4 << 20;
/// Largest read or write of one request; clients split larger ones.
pub const MAX_IO: u64 = MAX_PAYLOAD as u64;
/// Longest error message carried by an error reply.
pub const MAX_MESSAGE: usize = 1024;

/// The frame is a reply.
pub const FLAG_REPLY: u16 = 1 << 15;
/// Write: durable when it completes.
pub const FLAG_FUA: u16 = 1 << 0;
/// Resize: the object may shrink.
pub const FLAG_SHRINK: u16 = 1 << 1;
/// Mark: replace the marks instead of merging into them.
pub const FLAG_REPLACE: u16 = 1 << 2;

/// Capability bits exchanged in `Hello`.
pub mod caps {
    /// The server keeps recent results per session, so a retried
    /// mutation is answered from memory instead of running twice.
    pub const DEDUP: u64 = 1 << 0;
    /// The server keeps mirror marks (stale replicas) on objects.
    pub const MARKS: u64 = 1 << 1;
}
