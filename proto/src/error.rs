//! What can be wrong with a frame.

use std::fmt;

use crate::{MAX_PAYLOAD, VERSION};

/// What went wrong with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The first four bytes are not [`MAGIC`].
    BadMagic([u8; 4]),
    /// A protocol version this build does not speak.
    BadVersion(u8),
    /// The header checksum does not match.
    BadHeaderChecksum,
    /// `payload_len` is over [`MAX_PAYLOAD`].
    PayloadTooLarge(u32),
    /// The payload checksum does not match.
    BadPayloadChecksum,
    /// A payload that does not parse.
    Malformed(&'static str),
    /// A handshake asks for what this peer does not do.
    Unsupported(&'static str),
}

impl WireError {
    /// The stream can no longer be framed: the connection must close.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::BadPayloadChecksum | Self::Malformed(_) | Self::Unsupported(_)
        )
    }

    /// The errno an error reply carries for it.
    pub fn errno(&self) -> i32 {
        match self {
            Self::BadVersion(_) | Self::Unsupported(_) => libc::EPROTONOSUPPORT,
            Self::PayloadTooLarge(_) => libc::EMSGSIZE,
            Self::Malformed(_) => libc::EINVAL,
            Self::BadMagic(_) | Self::BadHeaderChecksum | Self::BadPayloadChecksum => libc::EBADMSG,
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "bad frame magic {m:02x?} (not a rawstor peer?)"),
            Self::BadVersion(v) => write!(
                f,
                "protocol version {v} is not supported (this build speaks {VERSION})"
            ),
            Self::BadHeaderChecksum => f.write_str("frame header checksum mismatch"),
            Self::PayloadTooLarge(n) => {
                write!(f, "payload of {n} bytes is over the limit {MAX_PAYLOAD}")
            }
            Self::BadPayloadChecksum => f.write_str("frame payload checksum mismatch"),
            Self::Malformed(what) => write!(f, "malformed payload: {what}"),
            Self::Unsupported(what) => write!(f, "{what} is not supported"),
        }
    }
}

impl std::error::Error for WireError {}
