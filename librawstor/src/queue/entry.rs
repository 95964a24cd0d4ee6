//! Submission and completion entries, shared by the Rust and C APIs.

use std::ffi::c_void;

use crate::object::Object;
use crate::queue::opcode::*;

/// A submission entry: one operation on one object.
///
/// Built with a constructor for the required fields, then tagged with
/// [`Sqe::user_data`] and optional [`Sqe::flags`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Sqe {
    /// One of `RAWSTOR_OP_*`.
    pub opcode: u8,
    /// `RAWSTOR_SQE_*` flags.
    pub flags: u8,
    /// Zero.
    pub reserved: u16,
    /// Number of iovecs at `addr` (readv/writev).
    pub iovcnt: u32,
    /// The object; it must stay open until the completion is reaped.
    pub object: *const Object,
    /// Byte offset in the object.
    pub offset: u64,
    /// Bytes to transfer (read/write/discard/write-zeroes).
    pub length: u64,
    /// The buffer, or the array of `iovcnt` iovecs; borrowed until the
    /// completion is reaped.
    pub addr: *mut c_void,
    /// Returned untouched in the completion.
    pub user_data: u64,
}

/// A completion entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cqe {
    /// The submission's `user_data`.
    pub user_data: u64,
    /// Bytes transferred (0 for flush, discard and write-zeroes), or a
    /// negative errno.
    pub result: i64,
}

impl Sqe {
    fn new(opcode: u8, object: &Object, offset: u64, length: u64, addr: *mut c_void) -> Self {
        Self {
            opcode,
            flags: 0,
            reserved: 0,
            iovcnt: 0,
            object,
            offset,
            length,
            addr,
            user_data: 0,
        }
    }

    /// Reads `len` bytes at `offset` into `buf`.
    pub fn read(object: &Object, offset: u64, buf: *mut u8, len: usize) -> Self {
        Self::new(RAWSTOR_OP_READ, object, offset, len as u64, buf.cast())
    }

    /// Writes `len` bytes from `buf` at `offset`.
    pub fn write(object: &Object, offset: u64, buf: *const u8, len: usize) -> Self {
        Self::new(
            RAWSTOR_OP_WRITE,
            object,
            offset,
            len as u64,
            buf.cast_mut().cast(),
        )
    }

    /// Reads into `iovcnt` iovecs at `iov`.
    pub fn readv(object: &Object, offset: u64, iov: *const libc::iovec, iovcnt: u32) -> Self {
        let mut sqe = Self::new(RAWSTOR_OP_READV, object, offset, 0, iov.cast_mut().cast());
        sqe.iovcnt = iovcnt;
        sqe
    }

    /// Writes from `iovcnt` iovecs at `iov`.
    pub fn writev(object: &Object, offset: u64, iov: *const libc::iovec, iovcnt: u32) -> Self {
        let mut sqe = Self::new(RAWSTOR_OP_WRITEV, object, offset, 0, iov.cast_mut().cast());
        sqe.iovcnt = iovcnt;
        sqe
    }

    /// Makes every write completed before it durable.
    pub fn flush(object: &Object) -> Self {
        Self::new(RAWSTOR_OP_FLUSH, object, 0, 0, std::ptr::null_mut())
    }

    /// Discards a range.
    pub fn discard(object: &Object, offset: u64, len: u64) -> Self {
        Self::new(
            RAWSTOR_OP_DISCARD,
            object,
            offset,
            len,
            std::ptr::null_mut(),
        )
    }

    /// Zeroes a range.
    pub fn write_zeroes(object: &Object, offset: u64, len: u64) -> Self {
        Self::new(
            RAWSTOR_OP_WRITE_ZEROES,
            object,
            offset,
            len,
            std::ptr::null_mut(),
        )
    }

    /// Sets the tag returned in the completion.
    pub fn user_data(mut self, user_data: u64) -> Self {
        self.user_data = user_data;
        self
    }

    /// Sets `RAWSTOR_SQE_*` flags.
    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }
}

/// Size of [`Sqe`] in bytes; the C header asserts the same.
pub const RAWSTOR_SQE_SIZE: usize = 48;
/// Size of [`Cqe`] in bytes; the C header asserts the same.
pub const RAWSTOR_CQE_SIZE: usize = 16;

const _: () = assert!(std::mem::size_of::<Sqe>() == RAWSTOR_SQE_SIZE);
const _: () = assert!(std::mem::size_of::<Cqe>() == RAWSTOR_CQE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_layout_is_pinned() {
        assert_eq!(std::mem::size_of::<Sqe>(), 48);
        assert_eq!(std::mem::align_of::<Sqe>(), 8);
        assert_eq!(std::mem::offset_of!(Sqe, object), 8);
        assert_eq!(std::mem::offset_of!(Sqe, user_data), 40);
        assert_eq!(std::mem::size_of::<Cqe>(), 16);
    }
}
