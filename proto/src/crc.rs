//! The crc32 of a payload, folded from the crcs of its blocks (the
//! store keeps one per block), without reading the bytes again.

/// Bytes per block crc in [`Header::check_payload_blocks`]: the store's
/// block.
pub const CRC_BLOCK: usize = 4096;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, Opcode, WireError};
    use uuid::Uuid;

    #[test]
    fn a_payloads_crc_is_folded_from_its_blocks_crcs() {
        let mut payload = vec![0u8; 64 << 10];
        for (i, b) in payload.iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
        }
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
}
