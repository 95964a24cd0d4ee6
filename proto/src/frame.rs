//! Frames from a byte stream: the one decoder every reader uses.

use crate::*;

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
                payload
            })
        );
        assert_eq!(out[1], Decoded::Bad(bad, WireError::BadPayloadChecksum));
        assert_eq!(d.pending(), 0);
    }
}
