//! Frames from a byte stream: the one codec every reader uses, pushed
//! bytes ([`Decoder`], for the client's non-blocking connections) or a
//! blocking stream ([`FrameReader`], for the servers' connection threads).
//! Both check a payload the same way ([`Frame::check`]).

use std::io::{self, BufReader, Read};

use crate::*;

/// A whole frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its header.
    pub header: Header,
    /// Its payload, checked against the header.
    pub payload: Vec<u8>,
    /// For a write request of whole 4 KiB blocks: each block's crc32,
    /// found while checking the payload (the store seals the blocks it
    /// writes with them instead of reading them again).
    pub block_crcs: Option<Vec<u32>>,
}

impl Frame {
    /// Checks a received payload against its header, in one pass over
    /// the bytes.
    pub fn check(header: Header, payload: Vec<u8>) -> Decoded {
        let checked = if header.is_whole_block_write() {
            header.check_payload_blocks(&payload).map(Some)
        } else {
            header.check_payload(&payload).map(|()| None)
        };
        match checked {
            Ok(block_crcs) => Decoded::Frame(Frame {
                header,
                payload,
                block_crcs,
            }),
            Err(err) => Decoded::Bad(header, err),
        }
    }
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
        Ok(Some(Frame::check(header, payload)))
    }
}

/// Why [`FrameReader::next_frame`] can read no more.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed or ended in the middle of a frame (nothing of
    /// that frame is applied).
    Io(io::Error),
    /// A header that cannot be trusted: the stream cannot be framed.
    Wire(WireError),
}

/// Frames from a blocking stream, each payload read straight into a
/// buffer the caller provides (a server reuses its large buffers).
pub struct FrameReader<R> {
    reader: BufReader<R>,
}

impl<R: Read> FrameReader<R> {
    /// Reads `inner` through a buffer of `capacity` bytes.
    pub fn new(inner: R, capacity: usize) -> Self {
        Self {
            reader: BufReader::with_capacity(capacity, inner),
        }
    }

    /// Whether bytes already received wait to be framed (a server sends
    /// the replies it gathered once none do).
    pub fn has_buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// The next frame, its payload in `buffer(payload_len)` (a buffer of
    /// exactly that length, contents unspecified); `Ok(None)` when the
    /// stream closed between frames.
    pub fn next_frame(
        &mut self,
        buffer: impl FnOnce(usize) -> Vec<u8>,
    ) -> Result<Option<Decoded>, ReadError> {
        let mut head = [0u8; HEADER_LEN];
        if !read_full(&mut self.reader, &mut head).map_err(ReadError::Io)? {
            return Ok(None);
        }
        let header = Header::decode(&head).map_err(ReadError::Wire)?;
        let mut payload = buffer(header.payload_len as usize);
        assert_eq!(
            payload.len(),
            header.payload_len as usize,
            "a payload buffer"
        );
        if !read_full(&mut self.reader, &mut payload).map_err(ReadError::Io)? {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(Some(Frame::check(header, payload)))
    }
}

/// Fills `buf`; `Ok(false)` on a clean end of stream before its first
/// byte, an error on an end in the middle.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match reader.read(&mut buf[at..]) {
            Ok(0) if at == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::sample;

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
                block_crcs: Some(vec![crc32fast::hash(&payload)]),
                payload,
            })
        );
        assert_eq!(out[1], Decoded::Bad(bad, WireError::BadPayloadChecksum));
        assert_eq!(d.pending(), 0);
    }

    fn frame_bytes(header: &Header, payload: &[u8]) -> Vec<u8> {
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn reader_frames_a_stream_into_given_buffers() {
        let write = sample();
        let stat = Header::request(Opcode::Stat, 44, uuid::Uuid::nil(), 0, 0).with_payload(&[]);
        let mut bad = sample();
        bad.request_id = 45;
        let mut stream = frame_bytes(&write, &[7u8; 4096]);
        stream.extend(frame_bytes(&stat, &[]));
        stream.extend(frame_bytes(&bad, &[8u8; 4096]));
        let mut reader = FrameReader::new(stream.as_slice(), 100);
        let mut sizes = Vec::new();
        let mut next = |reader: &mut FrameReader<&[u8]>| {
            reader.next_frame(|len| {
                sizes.push(len);
                vec![0xee; len]
            })
        };
        let Some(Decoded::Frame(first)) = next(&mut reader).unwrap() else {
            panic!("a good write");
        };
        assert_eq!((first.header, first.payload.len()), (write, 4096));
        assert_eq!(first.block_crcs, Some(vec![crc32fast::hash(&[7u8; 4096])]));
        let Some(Decoded::Frame(second)) = next(&mut reader).unwrap() else {
            panic!("a good stat");
        };
        assert_eq!((second.header, second.block_crcs), (stat, None));
        assert!(matches!(
            next(&mut reader).unwrap(),
            Some(Decoded::Bad(h, WireError::BadPayloadChecksum)) if h == bad
        ));
        assert!(
            next(&mut reader).unwrap().is_none(),
            "closed between frames"
        );
        assert_eq!(sizes, [4096, 0, 4096]);
    }

    #[test]
    fn reader_refuses_a_cut_frame_and_a_bad_header() {
        let stream = frame_bytes(&sample(), &[7u8; 4096]);
        let mut cut = FrameReader::new(&stream[..HEADER_LEN + 10], 64);
        assert!(matches!(
            cut.next_frame(|len| vec![0; len]),
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
        let mut garbage = stream.clone();
        garbage[0] ^= 0xff;
        let mut bad = FrameReader::new(garbage.as_slice(), 64);
        assert!(matches!(
            bad.next_frame(|len| vec![0; len]),
            Err(ReadError::Wire(WireError::BadMagic(_)))
        ));
    }
}
