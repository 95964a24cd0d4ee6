//! UUIDs (RFC 9562, the `uuid` crate): objects get version 7,
//! time-ordered, so sorted lists follow creation order. Object names are
//! taken only in the canonical hyphenated form.

use crate::error::{Error, Result};

pub use uuid::Uuid;

/// Length of the canonical text form (8-4-4-4-12).
pub const UUID_TEXT_LEN: usize = 36;

/// A UUID from its canonical text form (8-4-4-4-12 hex digits, either
/// case); other forms the `uuid` crate knows (simple, braced, URN) are
/// refused, so that one object has one name.
pub fn parse(text: &str) -> Result<Uuid> {
    let bad = || Error::invalid(format!("bad UUID '{text}': expected 8-4-4-4-12 hex digits"));
    if text.len() != UUID_TEXT_LEN {
        return Err(bad());
    }
    Uuid::try_parse(text).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_has_version_variant_and_round_trips() {
        let id = Uuid::now_v7();
        let text = id.to_string();
        assert_eq!(text.len(), UUID_TEXT_LEN);
        assert_eq!(&text[14..15], "7");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(parse(&text).unwrap(), id);
    }

    #[test]
    fn v7_sorts_by_creation_time() {
        let first = Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(Uuid::now_v7() > first);
    }

    #[test]
    fn rejects_malformed_and_other_forms() {
        for bad in [
            "",
            "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2",
            "0190a1b2c3d4-7e5f-8a6b-7c8d9e0f1a2b3",
            "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2g",
            "0190a1b2c3d47e5f8a6b7c8d9e0f1a2b",
            "{0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b}",
            "urn:uuid:0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
