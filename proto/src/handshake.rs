//! The handshake: the client's `Hello` and the server's `Welcome`,
//! the first request and reply on every connection. Clients make their
//! Hello with [`Hello::new`] and check the reply with [`welcomed`];
//! servers answer with [`accept_hello`]: one handshake for the client library,
//! the OST's heartbeat and both servers.

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
    /// The Hello of a client of this build: the one version it speaks,
    /// asking for `capabilities` (`caps::*`), in `session` (0: none).
    pub fn new(capabilities: u64, session: u64) -> Self {
        Self {
            min_version: u16::from(VERSION),
            max_version: u16::from(VERSION),
            capabilities,
            session,
            auth: Vec::new(),
        }
    }

    /// The request frame carrying this Hello: header, then payload.
    pub fn frame(&self, request_id: u64) -> Vec<u8> {
        let payload = self.encode();
        let header =
            Header::request(Opcode::Hello, request_id, Uuid::nil(), 0, 0).with_payload(&payload);
        let mut frame = header.encode().to_vec();
        frame.extend_from_slice(&payload);
        frame
    }

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

/// What a server offers in its handshake.
#[derive(Clone, Copy, Debug)]
pub struct Offer {
    /// `caps::*` the server grants to clients that ask.
    pub capabilities: u64,
    /// The served store's (or the MDT's) identity.
    pub store_id: Uuid,
}

/// A server's answer to a `Hello` payload: the `Welcome` to send and the
/// client's session, or why the handshake is refused (no common version,
/// authentication asked for, a malformed Hello).
pub fn accept_hello(payload: &[u8], offer: &Offer) -> Result<(Welcome, u64), WireError> {
    let hello = Hello::decode(payload)?;
    let version = u16::from(VERSION);
    if hello.min_version > version || hello.max_version < version {
        return Err(WireError::BadVersion(hello.max_version.min(255) as u8));
    }
    if !hello.auth.is_empty() {
        return Err(WireError::Unsupported("authentication"));
    }
    let welcome = Welcome {
        version,
        capabilities: hello.capabilities & offer.capabilities,
        max_payload: MAX_PAYLOAD,
        store_id: offer.store_id,
    };
    Ok((welcome, hello.session))
}

/// A client's reading of the handshake reply (its status and payload):
/// the server's `Welcome`, or (errno, message) when it refused or
/// answered something that is not a Welcome.
pub fn welcomed(status: i32, payload: &[u8]) -> Result<Welcome, (i32, String)> {
    if status < 0 {
        return Err((
            -status,
            format!("handshake refused: {}", String::from_utf8_lossy(payload)),
        ));
    }
    let welcome =
        Welcome::decode(payload).map_err(|e| (libc::EPROTO, format!("handshake: {e}")))?;
    if welcome.version != u16::from(VERSION) {
        return Err((
            libc::EPROTO,
            format!(
                "handshake: the server chose protocol version {}, this build speaks {VERSION}",
                welcome.version
            ),
        ));
    }
    Ok(welcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: Offer = Offer {
        capabilities: caps::DEDUP,
        store_id: Uuid::from_bytes([9; 16]),
    };

    #[test]
    fn a_client_of_this_build_is_welcomed_with_what_both_have() {
        let hello = Hello::new(caps::DEDUP | caps::MARKS, 42);
        let (welcome, session) = accept_hello(&hello.encode(), &OFFER).unwrap();
        assert_eq!(session, 42);
        assert_eq!(welcome.capabilities, caps::DEDUP);
        assert_eq!(welcome.store_id, OFFER.store_id);
        assert_eq!(welcomed(0, &welcome.encode()).unwrap(), welcome);
        let frame = hello.frame(1);
        let header = Header::decode(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(header.op(), Some(Opcode::Hello));
        assert_eq!(Hello::decode(&frame[HEADER_LEN..]).unwrap(), hello);
    }

    #[test]
    fn other_versions_authentication_and_refusals_are_told_apart() {
        let mut old = Hello::new(0, 1);
        old.max_version = 1;
        old.min_version = 1;
        let err = accept_hello(&old.encode(), &OFFER).unwrap_err();
        assert_eq!(err.errno(), libc::EPROTONOSUPPORT);
        let mut auth = Hello::new(0, 1);
        auth.auth = b"token".to_vec();
        let err = accept_hello(&auth.encode(), &OFFER).unwrap_err();
        assert_eq!(err.to_string(), "authentication is not supported");
        assert!(accept_hello(b"short", &OFFER).is_err());
        let (errno, message) = welcomed(-libc::EBUSY, b"too many connections").unwrap_err();
        assert_eq!(errno, libc::EBUSY);
        assert!(message.contains("too many connections"), "{message}");
        assert_eq!(welcomed(0, b"junk").unwrap_err().0, libc::EPROTO);
    }
}
