//! A small text record: sorted `key=value` lines. Control files carry one
//! as their payload, so a human can read them after `rawstor-ctl dump`.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Sorted key/value pairs; keys and values hold no `=` or newline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    fields: BTreeMap<String, String>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` (anything `Display`).
    pub fn set(&mut self, key: &str, value: impl ToString) -> &mut Self {
        let value = value.to_string();
        assert!(
            !key.contains(['=', '\n']) && !value.contains('\n'),
            "bad record field {key}"
        );
        self.fields.insert(key.to_string(), value);
        self
    }

    /// The raw text of `key`, if present.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// Parses the value of a required `key`.
    pub fn get<T: FromStr>(&self, key: &str) -> Result<T> {
        let text = self
            .get_str(key)
            .ok_or_else(|| Error::new(libc::EUCLEAN, format!("record lacks field '{key}'")))?;
        text.parse().map_err(|_| {
            Error::new(
                libc::EUCLEAN,
                format!("record field '{key}' has bad value '{text}'"),
            )
        })
    }

    /// The record as text.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for (key, value) in &self.fields {
            out.push_str(key);
            out.push('=');
            out.push_str(value);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Parses text made by `encode`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::new(libc::EUCLEAN, "record is not UTF-8"))?;
        let mut record = Self::new();
        for line in text.lines() {
            let (key, value) = line.split_once('=').ok_or_else(|| {
                Error::new(libc::EUCLEAN, format!("record line '{line}' has no '='"))
            })?;
            record.fields.insert(key.to_string(), value.to_string());
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_types_fields() {
        let mut record = Record::new();
        record.set("size", 4096u64).set("name", "a b");
        let back = Record::decode(&record.encode()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.get::<u64>("size").unwrap(), 4096);
        assert_eq!(back.get::<u64>("name").unwrap_err().errno(), libc::EUCLEAN);
        assert_eq!(
            back.get::<u64>("missing").unwrap_err().errno(),
            libc::EUCLEAN
        );
    }

    #[test]
    fn rejects_lines_without_separator() {
        assert!(Record::decode(b"size=1\ngarbage\n").is_err());
    }
}
