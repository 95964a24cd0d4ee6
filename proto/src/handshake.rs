//! The handshake: the client's `Hello` and the server's `Welcome`,
//! the first request and reply on every connection.

use uuid::Uuid;

use crate::*;

/// The client's handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Oldest protocol version the client speaks.
    pub min_version: u16,
    /// Newest protocol version the client speaks.
    pub max_version: u16,
    /// `caps::*` the client wants.
    pub capabilities: u64,
    /// Identifies the client instance across reconnections.
    pub session: u64,
    /// Reserved for authentication; empty for now.
    pub auth: Vec<u8>,
}

impl Hello {
    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u16(self.min_version)
            .u16(self.max_version)
            .u64(self.capabilities)
            .u64(self.session)
            .u16(self.auth.len() as u16)
            .bytes(&self.auth);
        w.0
    }

    /// Parses a payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let hello = Self {
            min_version: r.u16()?,
            max_version: r.u16()?,
            capabilities: r.u64()?,
            session: r.u64()?,
            auth: {
                let n = r.u16()? as usize;
                r.bytes(n)?.to_vec()
            },
        };
        r.end()?;
        Ok(hello)
    }
}

/// The server's answer to [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The version both speak.
    pub version: u16,
    /// `caps::*` granted.
    pub capabilities: u64,
    /// Largest payload the server takes.
    pub max_payload: u32,
    /// The served store's identity.
    pub store_id: Uuid,
}

impl Welcome {
    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u16(self.version)
            .u64(self.capabilities)
            .u32(self.max_payload)
            .bytes(self.store_id.as_bytes());
        w.0
    }

    /// Parses a payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let welcome = Self {
            version: r.u16()?,
            capabilities: r.u64()?,
            max_payload: r.u32()?,
            store_id: r.uuid()?,
        };
        r.end()?;
        Ok(welcome)
    }
}
