//! The frame header: its fields, encoding and checks.

use uuid::Uuid;

use crate::crc::CRC_BLOCK;
use crate::*;

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// The opcode byte (see [`Opcode`]); kept raw so that a reply can
    /// name an unknown one.
    pub opcode: u8,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// Chosen by the client, echoed by the reply.
    pub request_id: u64,
    /// The object.
    pub object: [u8; 16],
    /// Byte offset.
    pub offset: u64,
    /// Bytes covered, or a size.
    pub length: u64,
    /// 0 or a negative errno (replies).
    pub status: i32,
    /// Bytes following the header.
    pub payload_len: u32,
    /// The lease epoch of a writer's change (0: none); see [`Opcode::Fence`].
    pub epoch: u64,
    /// crc32 of those bytes.
    pub payload_crc: u32,
}

impl Header {
    /// A request without payload.
    pub fn request(
        opcode: Opcode,
        request_id: u64,
        object: Uuid,
        offset: u64,
        length: u64,
    ) -> Self {
        Self {
            opcode: opcode as u8,
            request_id,
            object: *object.as_bytes(),
            offset,
            length,
            payload_crc: crc32fast::hash(&[]),
            ..Self::default()
        }
    }

    /// The reply to this request, with `status` and no payload.
    pub fn reply(&self, status: i32) -> Self {
        Self {
            opcode: self.opcode,
            flags: FLAG_REPLY,
            request_id: self.request_id,
            object: self.object,
            offset: self.offset,
            length: self.length,
            status,
            payload_len: 0,
            epoch: 0,
            payload_crc: crc32fast::hash(&[]),
        }
    }

    /// The known opcode, if it is one.
    pub fn op(&self) -> Option<Opcode> {
        Opcode::from_u8(self.opcode)
    }

    /// The object UUID.
    pub fn uuid(&self) -> Uuid {
        Uuid::from_bytes(self.object)
    }

    /// Whether this is a reply.
    pub fn is_reply(&self) -> bool {
        self.flags & FLAG_REPLY != 0
    }

    /// Whether this is a write request of whole 4 KiB blocks at a block
    /// boundary (its payload is checked, and then sealed, by block).
    pub fn is_whole_block_write(&self) -> bool {
        let block = CRC_BLOCK as u64;
        self.op() == Some(Opcode::Write)
            && !self.is_reply()
            && self.payload_len > 0
            && u64::from(self.payload_len) == self.length
            && self.length % block == 0
            && self.offset % block == 0
    }

    /// Sets the payload length and checksum for `payload`.
    pub fn with_payload(mut self, payload: &[u8]) -> Self {
        self.payload_len = payload.len() as u32;
        self.payload_crc = crc32fast::hash(payload);
        self
    }

    /// Sets the payload length and checksum for a payload in pieces.
    pub fn with_payload_parts(mut self, parts: &[&[u8]]) -> Self {
        let mut hasher = crc32fast::Hasher::new();
        let mut len = 0;
        for part in parts {
            hasher.update(part);
            len += part.len();
        }
        self.payload_len = len as u32;
        self.payload_crc = hasher.finalize();
        self
    }

    /// Checks `payload` against the header.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), WireError> {
        if payload.len() != self.payload_len as usize {
            return Err(WireError::Malformed(
                "payload length differs from the header",
            ));
        }
        if crc32fast::hash(payload) != self.payload_crc {
            return Err(WireError::BadPayloadChecksum);
        }
        Ok(())
    }

    /// Checks a payload of whole 4 KiB blocks against the header and
    /// returns each block's crc32, in one pass over the bytes: the store
    /// seals the blocks it writes with them instead of reading them again.
    pub fn check_payload_blocks(&self, payload: &[u8]) -> Result<Vec<u32>, WireError> {
        if payload.len() != self.payload_len as usize {
            return Err(WireError::Malformed(
                "payload length differs from the header",
            ));
        }
        assert_eq!(payload.len() % CRC_BLOCK, 0, "whole blocks");
        let crcs: Vec<u32> = payload
            .chunks_exact(CRC_BLOCK)
            .map(crc32fast::hash)
            .collect();
        if crc_of_blocks(&crcs) != self.payload_crc {
            return Err(WireError::BadPayloadChecksum);
        }
        Ok(crcs)
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.opcode;
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        b[16..32].copy_from_slice(&self.object);
        b[32..40].copy_from_slice(&self.offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.length.to_le_bytes());
        b[48..52].copy_from_slice(&self.status.to_le_bytes());
        b[52..56].copy_from_slice(&self.payload_len.to_le_bytes());
        b[56..64].copy_from_slice(&self.epoch.to_le_bytes());
        b[64..68].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..68]);
        b[68..72].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header (not its payload).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, WireError> {
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        if b[0..4] != MAGIC {
            return Err(WireError::BadMagic(b[0..4].try_into().unwrap()));
        }
        // Before the checksum: another version's header has another
        // length and layout, and deserves a clear answer.
        if b[4] != VERSION {
            return Err(WireError::BadVersion(b[4]));
        }
        if crc32fast::hash(&b[..68]) != u32_at(68) {
            return Err(WireError::BadHeaderChecksum);
        }
        let header = Self {
            opcode: b[5],
            flags: u16::from_le_bytes([b[6], b[7]]),
            request_id: u64_at(8),
            object: b[16..32].try_into().unwrap(),
            offset: u64_at(32),
            length: u64_at(40),
            status: u32_at(48) as i32,
            payload_len: u32_at(52),
            epoch: u64_at(56),
            payload_crc: u32_at(64),
        };
        if header.payload_len > MAX_PAYLOAD {
            return Err(WireError::PayloadTooLarge(header.payload_len));
        }
        Ok(header)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Header {
        Header::request(Opcode::Write, 42, Uuid::now_v7(), 8192, 4096).with_payload(&[7u8; 4096])
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let r = h.reply(-libc::ENXIO);
        let back = Header::decode(&r.encode()).unwrap();
        assert!(back.is_reply());
        assert_eq!(back.status, -libc::ENXIO);
        assert_eq!(back.request_id, 42);
    }

    #[test]
    fn a_version_1_peer_is_told_the_version() {
        // Version 1's 64-byte header, then the start of a Hello payload.
        let mut v1 = [0u8; HEADER_LEN];
        v1[0..4].copy_from_slice(&MAGIC);
        v1[4] = 1;
        v1[5] = Opcode::Hello as u8;
        let crc = crc32fast::hash(&v1[..60]);
        v1[60..64].copy_from_slice(&crc.to_le_bytes());
        let err = Header::decode(&v1).unwrap_err();
        assert_eq!(err, WireError::BadVersion(1));
        assert_eq!(err.errno(), libc::EPROTONOSUPPORT);
        assert!(err.to_string().contains("this build speaks 2"), "{err}");
    }

    #[test]
    fn every_flipped_header_bit_is_caught() {
        let bytes = sample().encode();
        for bit in 0..HEADER_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::decode(&b).is_err(), "bit {bit} flipped unnoticed");
        }
    }

    #[test]
    fn oversized_and_foreign_frames_are_fatal() {
        let mut h = sample();
        h.payload_len = MAX_PAYLOAD + 1;
        let err = Header::decode(&h.encode()).unwrap_err();
        assert_eq!(err, WireError::PayloadTooLarge(MAX_PAYLOAD + 1));
        assert!(err.is_fatal());
        let mut d = Decoder::new();
        d.push(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n01234567890123456789012345678901234567890123456789",
        );
        assert!(matches!(d.next_frame(), Err(WireError::BadMagic(_))));
        assert!(d.next_frame().is_err(), "a broken stream stays broken");
    }
}
