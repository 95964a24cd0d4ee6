//! Payload records of requests and replies.

use uuid::Uuid;

use crate::*;

/// An object's description.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Checksum block size in bytes.
    pub block_size: u64,
    /// Mirror marks recorded on this copy.
    pub marks: Marks,
}

impl Stat {
    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.size).u64(self.chunk_size).u64(self.block_size);
        self.marks.encode_into(&mut w);
        w.0
    }

    /// Parses a payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let stat = Self {
            size: r.u64()?,
            chunk_size: r.u64()?,
            block_size: r.u64()?,
            marks: Marks::decode_from(&mut r)?,
        };
        r.end()?;
        Ok(stat)
    }
}

/// Mirror marks on one copy of an object.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Marks {
    /// This copy missed writes: it must not be read until repaired.
    pub stale: bool,
    /// Other copies (location elements) this copy knows to be stale.
    pub stale_peers: Vec<String>,
}

/// Most peers one copy can name as stale.
pub const MAX_STALE_PEERS: usize = 16;

impl Marks {
    fn encode_into(&self, w: &mut Writer) {
        w.u16(u16::from(self.stale))
            .u16(self.stale_peers.len() as u16);
        for peer in &self.stale_peers {
            w.str(peer);
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let stale = match r.u16()? {
            0 => false,
            1 => true,
            _ => return Err(WireError::Malformed("stale flag is not 0 or 1")),
        };
        let count = r.u16()? as usize;
        if count > MAX_STALE_PEERS {
            return Err(WireError::Malformed("too many stale peers"));
        }
        let mut stale_peers = Vec::with_capacity(count);
        for _ in 0..count {
            stale_peers.push(r.str()?.to_string());
        }
        Ok(Self { stale, stale_peers })
    }

    /// The payload of a `Mark` request: the marks to store.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_into(&mut w);
        w.0
    }

    /// Parses a `Mark` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let marks = Self::decode_from(&mut r)?;
        r.end()?;
        Ok(marks)
    }
}

/// One entry of a `List` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// The object.
    pub uuid: Uuid,
    /// Size in bytes.
    pub size: u64,
    /// Chunk size in bytes.
    pub chunk_size: u64,
}

const LIST_ENTRY_LEN: usize = 32;
/// Most entries in one `List` reply.
pub const MAX_LIST: u64 = (MAX_PAYLOAD as u64 - 4) / LIST_ENTRY_LEN as u64;

/// A `List` reply payload.
pub fn encode_list(entries: &[ListEntry]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(entries.len() as u32);
    for e in entries {
        w.bytes(e.uuid.as_bytes()).u64(e.size).u64(e.chunk_size);
    }
    w.0
}

/// Parses a `List` reply payload.
pub fn decode_list(payload: &[u8]) -> Result<Vec<ListEntry>, WireError> {
    let mut r = Reader::new(payload);
    let count = r.u32()? as usize;
    if count as u64 > MAX_LIST || count * LIST_ENTRY_LEN != payload.len() - 4 {
        return Err(WireError::Malformed(
            "list entry count differs from the payload",
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(ListEntry {
            uuid: r.uuid()?,
            size: r.u64()?,
            chunk_size: r.u64()?,
        });
    }
    Ok(entries)
}

/// The reply to [`Opcode::Extent`]: the first `length` bytes of the asked
/// range hold data (`data`) or read as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub data: bool,
    pub length: u64,
}

impl Extent {
    /// Bytes of an encoded extent.
    const LEN: usize = 9;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(u8::from(self.data));
        out.extend_from_slice(&self.length.to_le_bytes());
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let bytes: &[u8; Self::LEN] = payload
            .try_into()
            .map_err(|_| WireError::Malformed("extent"))?;
        let data = match bytes[0] {
            0 => false,
            1 => true,
            _ => return Err(WireError::Malformed("extent")),
        };
        let length = u64::from_le_bytes(bytes[1..].try_into().expect("8 bytes"));
        Ok(Self { data, length })
    }
}

/// The payload of an error reply: the message without the errno text
/// (the client adds it from the status), cut to [`MAX_MESSAGE`]
/// bytes on a character boundary.
pub fn error_message(message: &str) -> &[u8] {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_round_trip_and_reject_bad_bytes() {
        for extent in [
            Extent {
                data: true,
                length: 4096,
            },
            Extent {
                data: false,
                length: u64::MAX,
            },
        ] {
            let bytes = extent.encode();
            assert_eq!(bytes.len(), Extent::LEN);
            assert_eq!(Extent::decode(&bytes).unwrap(), extent);
            assert!(Extent::decode(&bytes[..Extent::LEN - 1]).is_err());
        }
        let mut bad = Extent {
            data: true,
            length: 1,
        }
        .encode();
        bad[0] = 2;
        assert!(Extent::decode(&bad).is_err());
        assert_eq!(Opcode::from_u8(13), Some(Opcode::Extent));
        assert!(!Opcode::Extent.mutates());
    }

    #[test]
    fn payloads_round_trip_and_reject_truncation() {
        let hello = Hello {
            min_version: 1,
            max_version: 1,
            capabilities: caps::DEDUP,
            session: 99,
            auth: vec![],
        };
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        let stat = Stat {
            size: 1 << 30,
            chunk_size: 1 << 20,
            block_size: 4096,
            marks: Marks {
                stale: true,
                stale_peers: vec!["ost://127.0.0.1:7777".into()],
            },
        };
        let bytes = stat.encode();
        assert_eq!(Stat::decode(&bytes).unwrap(), stat);
        for cut in 0..bytes.len() {
            assert!(Stat::decode(&bytes[..cut]).is_err());
        }
        let entries = vec![ListEntry {
            uuid: Uuid::now_v7(),
            size: 4096,
            chunk_size: 65536,
        }];
        assert_eq!(decode_list(&encode_list(&entries)).unwrap(), entries);
        assert!(decode_list(&encode_list(&entries)[..20]).is_err());
        assert_eq!(error_message(&"é".repeat(600)).len(), 1024);
    }
}
