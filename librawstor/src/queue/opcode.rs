//! Operation codes and flags of submission entries.

/// Read `length` bytes at `offset` into `addr`.
pub const RAWSTOR_OP_READ: u8 = 1;
/// Write `length` bytes from `addr` at `offset`.
pub const RAWSTOR_OP_WRITE: u8 = 2;
/// Read into `iovcnt` iovecs at `addr`.
pub const RAWSTOR_OP_READV: u8 = 3;
/// Write from `iovcnt` iovecs at `addr`.
pub const RAWSTOR_OP_WRITEV: u8 = 4;
/// Durability barrier: every write completed before it is durable.
pub const RAWSTOR_OP_FLUSH: u8 = 5;
/// Discard `length` bytes at `offset`: they read as zeros, space is freed.
pub const RAWSTOR_OP_DISCARD: u8 = 6;
/// Make `length` bytes at `offset` read as zeros.
pub const RAWSTOR_OP_WRITE_ZEROES: u8 = 7;

/// Flag: a write is durable when it completes (FUA).
pub const RAWSTOR_SQE_FUA: u8 = 1;

/// Most iovecs in one readv/writev entry.
pub const RAWSTOR_IOV_MAX: u32 = 1024;
/// Largest queue depth.
pub const RAWSTOR_QUEUE_DEPTH_MAX: u32 = 65536;
/// Longest read or write (all of an entry's iovecs together), in bytes:
/// longer ones fail with `EINVAL` before anything is allocated or sent.
/// Block layers split far below this (QEMU's driver advertises it as its
/// largest transfer).
pub const RAWSTOR_IO_MAX: u64 = 1 << 30;
