//! UUIDs (RFC 9562): objects get version 7, time-ordered, so sorted lists
//! follow creation order.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::sys;

/// A 128-bit UUID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Uuid([u8; 16]);

/// Length of the canonical text form (8-4-4-4-12).
pub const UUID_TEXT_LEN: usize = 36;

impl Uuid {
    /// A new version-7 UUID: 48 bits of Unix milliseconds, then random bits.
    pub fn new_v7() -> Self {
        let mut bytes = [0u8; 16];
        sys::fill_random(&mut bytes);
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Uuid {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("bad UUID '{text}': expected 8-4-4-4-12 hex digits"));
        if text.len() != UUID_TEXT_LEN {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        let mut nibbles = text
            .bytes()
            .enumerate()
            .filter(|(i, _)| !matches!(i, 8 | 13 | 18 | 23));
        for (i, b) in text.bytes().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) && b != b'-' {
                return Err(bad());
            }
        }
        for byte in &mut bytes {
            let hi = nibbles.next().and_then(|(_, c)| (c as char).to_digit(16));
            let lo = nibbles.next().and_then(|(_, c)| (c as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => *byte = (hi * 16 + lo) as u8,
                _ => return Err(bad()),
            }
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_has_version_variant_and_round_trips() {
        let id = Uuid::new_v7();
        let text = id.to_string();
        assert_eq!(text.len(), UUID_TEXT_LEN);
        assert_eq!(&text[14..15], "7");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(text.parse::<Uuid>().unwrap(), id);
    }

    #[test]
    fn v7_sorts_by_creation_time() {
        let first = Uuid::new_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(Uuid::new_v7() > first);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2",
            "0190a1b2c3d4-7e5f-8a6b-7c8d9e0f1a2b3",
            "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2g",
        ] {
            assert!(bad.parse::<Uuid>().is_err(), "{bad}");
        }
    }
}
