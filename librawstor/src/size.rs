//! Human sizes: `4096`, `4K`, `1M`, `2GiB`, `1T` (binary multiples).

use crate::error::{Error, Result};

/// Parses a size with an optional K/M/G/T suffix (powers of 1024).
///
/// # Examples
///
/// ```
/// assert_eq!(rawstor::size::parse_size("4K").unwrap(), 4096);
/// assert_eq!(rawstor::size::parse_size("1GiB").unwrap(), 1 << 30);
/// assert!(rawstor::size::parse_size("12X").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(Error::invalid(format!(
            "bad size '{text}': expected a number such as 4096, 4K, 1G"
        )));
    }
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(Error::invalid(format!(
                "bad size '{text}': unknown suffix '{suffix}' (use K, M, G or T)"
            )));
        }
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| Error::invalid(format!("bad size '{text}': number too large")))?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| Error::invalid(format!("bad size '{text}': too large")))
}

/// Formats a byte count with the largest exact binary suffix (`4K`, `1G`).
pub fn format_size(bytes: u64) -> String {
    const SUFFIXES: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, suffix) in SUFFIXES {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("3M").unwrap(), 3 << 20);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in [
            "",
            "K",
            "-1",
            "1.5G",
            "4X",
            "99999999999999999999",
            "16777216T",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert_eq!(err.errno(), libc::EINVAL, "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for size in [4096, 1 << 30, 3 << 20, 1000] {
            assert_eq!(parse_size(&format_size(size)).unwrap(), size);
        }
    }
}
