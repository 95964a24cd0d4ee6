//! The wire codec takes arbitrary bytes without panicking, in any split,
//! and every frame it accepts re-encodes to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawstor::wire::{
    self, Decoded, Decoder, Extent, HEADER_LEN, Header, Hello, Marks, Stat, Welcome,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the stream is cut into pushes.
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 64) + 1;
    let mut decoder = Decoder::new();
    let mut consumed = 0;
    for piece in stream.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(Decoded::Frame(frame))) => {
                    let bytes = frame.header.encode();
                    assert_eq!(&bytes[..], &stream[consumed..consumed + HEADER_LEN]);
                    assert_eq!(frame.payload.len(), frame.header.payload_len as usize);
                    consumed += HEADER_LEN + frame.payload.len();
                    // Payload parsers must not panic on whatever arrived.
                    let _ = Hello::decode(&frame.payload);
                    let _ = Welcome::decode(&frame.payload);
                    let _ = Stat::decode(&frame.payload);
                    let _ = Marks::decode(&frame.payload);
                    if let Ok(extent) = Extent::decode(&frame.payload) {
                        assert_eq!(extent.encode(), frame.payload);
                    }
                    let _ = wire::decode_list(&frame.payload);
                }
                Ok(Some(Decoded::Bad(header, err))) => {
                    assert!(!err.is_fatal());
                    consumed += HEADER_LEN + header.payload_len as usize;
                }
                Ok(None) => break,
                Err(err) => {
                    assert!(err.is_fatal());
                    assert!(decoder.next_frame().is_err());
                    return;
                }
            }
        }
    }
    assert!(consumed <= stream.len());
    if stream.len() >= HEADER_LEN {
        let _ = Header::decode(stream[..HEADER_LEN].try_into().unwrap());
    }
});
