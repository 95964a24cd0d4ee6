//! The wire protocol of `ost://` (and later `mdt://`): frames and their
//! payloads, without I/O. The client and the servers share it.
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

use std::fmt;

use crate::uuid::Uuid;

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

/// Request kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// Handshake; payload [`Hello`], reply payload [`Welcome`].
    Hello = 1,
    /// Read `length` bytes at `offset`; reply payload: the data.
    Read = 2,
    /// Write the payload at `offset` (`length` = payload length).
    Write = 3,
    /// Make completed writes to the object durable.
    Flush = 4,
    /// Discard `length` bytes at `offset`.
    Discard = 5,
    /// Make `length` bytes at `offset` read as zeros.
    WriteZeroes = 6,
    /// Create the object: `length` = size, `offset` = chunk size.
    Create = 7,
    /// Describe the object; reply payload [`Stat`].
    Stat = 8,
    /// Remove the object.
    Remove = 9,
    /// Set the object's size to `length` (`FLAG_SHRINK` to shrink).
    Resize = 10,
    /// List objects after the header's UUID (nil: from the start), at
    /// most `length`; reply payload [`encode_list`].
    List = 11,
    /// Merge mirror marks into the object's (replace them with
    /// `FLAG_REPLACE`); payload [`Marks`].
    Mark = 12,
    /// Whether the `length` bytes at `offset` hold data; reply payload
    /// [`Extent`].
    Extent = 13,
    /// Refuse changes from now on whose header names a lease epoch below
    /// the header's `epoch` (persisted with the object; never lowered).
    Fence = 14,
    /// rawstor-mdt: an OST registers or heartbeats; payload an
    /// [`crate::mdt::OstEntry`] record.
    OstRegister = 32,
    /// rawstor-mdt: the cluster map; reply payload its record.
    ClusterMap = 33,
    /// rawstor-mdt: place a new object (`length` = size, `offset` = chunk
    /// size, payload `layout=...`); reply payload its object record.
    Place = 34,
    /// rawstor-mdt: an object's record.
    Lookup = 35,
    /// rawstor-mdt: drop an object's record.
    Forget = 36,
    /// rawstor-mdt: change an object's record (payload: `stale_add`,
    /// `dirty_add`, `dirty_clear`, `size`, `replace`, `repaired`); reply
    /// payload the new record.
    Update = 37,
    /// rawstor-mdt: take, renew, break or give back an object's writer
    /// lease (`offset` = [`crate::mdt::LEASE_BREAK`] and friends); reply
    /// payload the object's record.
    Lease = 38,
}

impl Opcode {
    /// The opcode for a byte, if known.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Hello,
            2 => Self::Read,
            3 => Self::Write,
            4 => Self::Flush,
            5 => Self::Discard,
            6 => Self::WriteZeroes,
            7 => Self::Create,
            8 => Self::Stat,
            9 => Self::Remove,
            10 => Self::Resize,
            11 => Self::List,
            12 => Self::Mark,
            13 => Self::Extent,
            14 => Self::Fence,
            32 => Self::OstRegister,
            33 => Self::ClusterMap,
            34 => Self::Place,
            35 => Self::Lookup,
            36 => Self::Forget,
            37 => Self::Update,
            38 => Self::Lease,
            _ => return None,
        })
    }

    /// Whether running the request twice could differ from running it
    /// once (the server remembers such results per session).
    pub fn mutates(self) -> bool {
        matches!(
            self,
            Self::Write
                | Self::Discard
                | Self::WriteZeroes
                | Self::Create
                | Self::Remove
                | Self::Resize
                | Self::Mark
                | Self::Fence
                | Self::Place
                | Self::Forget
        )
    }
}

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
}

impl WireError {
    /// The stream can no longer be framed: the connection must close.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::BadPayloadChecksum | Self::Malformed(_))
    }

    /// The errno an error reply carries for it.
    pub fn errno(&self) -> i32 {
        match self {
            Self::BadVersion(_) => libc::EPROTONOSUPPORT,
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
        }
    }
}

impl std::error::Error for WireError {}

/// Bytes per block crc in [`Header::check_payload_blocks`]: the store's
/// block.
const CRC_BLOCK: usize = 4096;

/// Multiplies `a` by `b` modulo the crc32 polynomial (bit-reflected).
const fn crc_multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0u32;
    let mut i = 0;
    while i < 32 {
        product ^= b & ((a >> (31 - i)) & 1).wrapping_neg();
        b = (b >> 1) ^ ((b & 1).wrapping_neg() & 0xedb8_8320);
        i += 1;
    }
    product
}

/// Tables that turn the crc32 of some bytes into what it becomes when
/// [`CRC_BLOCK`] more bytes follow (before adding theirs): the XOR of
/// `table[k][byte k of the crc]`. Built at compile time: crc32fast's
/// own `Hasher::combine` works out the shift for every call, too slow to
/// run once per 4 KiB block.
const CRC_SHIFT: [[u32; 256]; 4] = {
    // x^(8 * CRC_BLOCK) modulo the polynomial: square x^8 up.
    let mut power = 0x8000_0000u32; // x^0
    let mut square = 0x0080_0000u32; // x^8
    let mut n = CRC_BLOCK;
    while n != 0 {
        if n & 1 != 0 {
            power = crc_multiply(square, power);
        }
        square = crc_multiply(square, square);
        n >>= 1;
    }
    let mut table = [[0u32; 256]; 4];
    let mut k = 0;
    while k < 4 {
        let mut v = 0;
        while v < 256 {
            table[k][v] = crc_multiply(power, (v as u32) << (8 * k));
            v += 1;
        }
        k += 1;
    }
    table
};

/// The crc32 of consecutive [`CRC_BLOCK`]-byte blocks from their own
/// crc32s: `crc(A B) = shift(crc(A)) ^ crc(B)` for a block `B`.
pub fn crc_of_blocks(crcs: &[u32]) -> u32 {
    let Some((&first, rest)) = crcs.split_first() else {
        return crc32fast::hash(&[]);
    };
    rest.iter().fold(first, |crc, &next| {
        let t = &CRC_SHIFT;
        t[0][(crc & 0xff) as usize]
            ^ t[1][((crc >> 8) & 0xff) as usize]
            ^ t[2][((crc >> 16) & 0xff) as usize]
            ^ t[3][(crc >> 24) as usize]
            ^ next
    })
}

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

/// A whole frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its header.
    pub header: Header,
    /// Its payload, checked against the header.
    pub payload: Vec<u8>,
}

/// What [`Decoder::next_frame`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A good frame.
    Frame(Frame),
    /// A frame with a trustworthy header and a bad payload; it was
    /// consumed and the stream goes on.
    Bad(Header, WireError),
}

/// Splits a byte stream into frames. Holds at most one frame's bytes
/// plus what was pushed after it.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    /// Set after a fatal error: everything later is refused.
    broken: Option<WireError>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes pushed and not yet consumed.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next frame, `Ok(None)` if more bytes are needed, or a fatal
    /// error (after which the decoder refuses everything).
    pub fn next_frame(&mut self) -> Result<Option<Decoded>, WireError> {
        if let Some(err) = &self.broken {
            return Err(err.clone());
        }
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = match Header::decode(avail[..HEADER_LEN].try_into().unwrap()) {
            Ok(header) => header,
            Err(err) => {
                self.broken = Some(err.clone());
                return Err(err);
            }
        };
        let total = HEADER_LEN + header.payload_len as usize;
        if avail.len() < total {
            self.buf.reserve(total - avail.len());
            return Ok(None);
        }
        let payload = avail[HEADER_LEN..total].to_vec();
        self.start += total;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(match header.check_payload(&payload) {
            Ok(()) => Decoded::Frame(Frame { header, payload }),
            Err(err) => Decoded::Bad(header, err),
        }))
    }
}

/// Little-endian payload writer.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Appends a `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// Appends a string with a `u16` length.
    pub fn str(&mut self, v: &str) -> &mut Self {
        let v = &v.as_bytes()[..v.len().min(u16::MAX as usize)];
        self.u16(v.len() as u16).bytes(v)
    }
}

/// Little-endian payload reader; every read is bounds-checked.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Reads from `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        Self(payload)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed("payload too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    /// Reads a `u16`.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    /// Reads a `u32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    /// Reads a `u64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        self.take(n)
    }
    /// Reads a UUID.
    pub fn uuid(&mut self) -> Result<Uuid, WireError> {
        Ok(Uuid::from_bytes(self.take(16)?.try_into().unwrap()))
    }
    /// Reads a string with a `u16` length.
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| WireError::Malformed("string is not UTF-8"))
    }
    /// Fails unless everything was read.
    pub fn end(&self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed("trailing bytes"))
        }
    }
}

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
    fn a_payloads_crc_is_folded_from_its_blocks_crcs() {
        let mut payload = vec![0u8; 64 << 10];
        crate::sys::fill_random(&mut payload);
        for blocks in [0, 1, 2, 3, 16] {
            let bytes = &payload[..blocks * CRC_BLOCK];
            let crcs: Vec<u32> = bytes.chunks_exact(CRC_BLOCK).map(crc32fast::hash).collect();
            assert_eq!(
                crc_of_blocks(&crcs),
                crc32fast::hash(bytes),
                "{blocks} blocks"
            );
        }
        let header = Header::request(Opcode::Write, 1, Uuid::from_bytes([7; 16]), 0, 16 << 10)
            .with_payload(&payload[..16 << 10]);
        let crcs = header.check_payload_blocks(&payload[..16 << 10]).unwrap();
        assert_eq!(crcs.len(), 4);
        assert_eq!(crcs[2], crc32fast::hash(&payload[8 << 10..12 << 10]));
        // One flipped bit anywhere, or blocks swapped, is caught.
        let mut bad = payload[..16 << 10].to_vec();
        bad[12345] ^= 4;
        assert_eq!(
            header.check_payload_blocks(&bad),
            Err(WireError::BadPayloadChecksum)
        );
        let mut swapped = payload[..16 << 10].to_vec();
        swapped[..8 << 10].rotate_left(4 << 10);
        assert_eq!(
            header.check_payload_blocks(&swapped),
            Err(WireError::BadPayloadChecksum)
        );
        assert!(matches!(
            header.check_payload_blocks(&payload[..12 << 10]),
            Err(WireError::Malformed(_))
        ));
    }

    fn sample() -> Header {
        Header::request(Opcode::Write, 42, Uuid::new_v7(), 8192, 4096).with_payload(&[7u8; 4096])
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

    #[test]
    fn decoder_reassembles_byte_by_byte_and_flags_bad_payloads() {
        let good = sample();
        let payload = vec![7u8; 4096];
        let mut bad = sample();
        bad.request_id = 43;
        let mut stream = Vec::new();
        stream.extend_from_slice(&good.encode());
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(&bad.encode());
        let mut corrupt = payload.clone();
        corrupt[100] ^= 1;
        stream.extend_from_slice(&corrupt);
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for byte in stream {
            d.push(&[byte]);
            while let Some(x) = d.next_frame().unwrap() {
                out.push(x);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            Decoded::Frame(Frame {
                header: good,
                payload
            })
        );
        assert_eq!(out[1], Decoded::Bad(bad, WireError::BadPayloadChecksum));
        assert_eq!(d.pending(), 0);
    }

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
            uuid: Uuid::new_v7(),
            size: 4096,
            chunk_size: 65536,
        }];
        assert_eq!(decode_list(&encode_list(&entries)).unwrap(), entries);
        assert!(decode_list(&encode_list(&entries)[..20]).is_err());
        assert_eq!(error_message(&"é".repeat(600)).len(), 1024);
    }
}
