//! Control files: small, versioned, checksummed records with a copy on
//! every mountpath.
//!
//! Layout (little-endian), 32-byte header then payload:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `RSCF` |
//! | 4..6 | format version (1) |
//! | 6..8 | flags: bit 0 payload is LZ4 block-compressed |
//! | 8..16 | version of the content (higher wins) |
//! | 16..20 | payload length before compression |
//! | 20..24 | stored payload length |
//! | 24..28 | crc32 of the stored payload |
//! | 28..32 | crc32 of bytes 0..28 |
//!
//! Reading takes the highest valid version among the copies; two valid
//! copies of one version with different content are an error; corrupt,
//! missing or older copies are rewritten from the winner.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::record::Record;
use crate::store::{WORK_DIR, work_file_name};
use crate::sys;

const MAGIC: [u8; 4] = *b"RSCF";
const FORMAT_VERSION: u16 = 1;
const FLAG_LZ4: u16 = 1;
const HEADER_SIZE: usize = 32;
/// Largest payload a control file may hold (before compression).
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;
/// Payloads smaller than this are stored uncompressed.
const COMPRESS_MIN_BYTES: usize = 256;

/// Encodes `payload` as a control file of `version`.
pub fn encode(version: u64, payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= MAX_PAYLOAD_BYTES,
        "control payload too large"
    );
    let (flags, stored) = if payload.len() >= COMPRESS_MIN_BYTES {
        (FLAG_LZ4, lz4_flex::block::compress(payload))
    } else {
        (0, payload.to_vec())
    };
    let mut out = Vec::with_capacity(HEADER_SIZE + stored.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
    let header_crc = crc32fast::hash(&out[..28]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&stored);
    out
}

/// Decodes a control file into its version and payload.
pub fn decode(bytes: &[u8]) -> Result<(u64, Vec<u8>)> {
    let corrupt = |why: &str| Error::new(libc::EUCLEAN, format!("corrupt control file: {why}"));
    if bytes.len() < HEADER_SIZE {
        return Err(corrupt("shorter than its header"));
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if bytes[..4] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    if crc32fast::hash(&bytes[..28]) != u32_at(28) {
        return Err(corrupt("header checksum mismatch"));
    }
    if u16_at(4) != FORMAT_VERSION {
        return Err(Error::new(
            libc::EPROTO,
            format!("control file format {} is not supported", u16_at(4)),
        ));
    }
    let flags = u16_at(6);
    let version = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let raw_len = u32_at(16) as usize;
    let stored_len = u32_at(20) as usize;
    if raw_len > MAX_PAYLOAD_BYTES || bytes.len() != HEADER_SIZE + stored_len {
        return Err(corrupt("bad length"));
    }
    let stored = &bytes[HEADER_SIZE..];
    if crc32fast::hash(stored) != u32_at(24) {
        return Err(corrupt("payload checksum mismatch"));
    }
    let payload = if flags & FLAG_LZ4 != 0 {
        lz4_flex::block::decompress(stored, raw_len).map_err(|_| corrupt("bad LZ4 payload"))?
    } else {
        stored.to_vec()
    };
    if payload.len() != raw_len {
        return Err(corrupt("payload length mismatch"));
    }
    Ok((version, payload))
}

/// Atomically replaces `mountpath/rel` with `bytes`: work file, fsync,
/// rename, fsync of the directory.
pub fn write_file_atomic(mountpath: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let dest = mountpath.join(rel);
    let work = mountpath.join(WORK_DIR).join(work_file_name(rel));
    let ctx = |what: &str| format!("{what} {}", dest.display());
    let mut file =
        fs::File::create(&work).map_err(|e| Error::io(ctx("cannot create work file for"), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(ctx("cannot write"), e))?;
    fs::rename(&work, &dest).map_err(|e| Error::io(ctx("cannot rename into"), e))?;
    let dir = dest.parent().expect("control files live in a directory");
    sys::fsync_dir(dir).map_err(|e| Error::io(ctx("cannot fsync directory of"), e))
}

/// The state of one copy of a control file.
#[derive(Debug)]
enum Copy {
    Missing,
    Corrupt(Error),
    Valid(u64, Vec<u8>),
}

/// The outcome of reading the copies of a control file.
#[derive(Debug)]
pub struct ControlRead {
    /// The winning version and its record, `None` when no copy exists.
    pub best: Option<(u64, Record)>,
    /// Mountpaths whose copy was missing, corrupt or older, now rewritten.
    pub repaired: Vec<PathBuf>,
}

/// Reads `rel` on every mountpath, picks the winner, rewrites the others.
///
/// `check` validates every valid copy (e.g. that it names this store)
/// before anything is rewritten: a foreign copy is an error, never merged.
pub fn read(
    mountpaths: &[PathBuf],
    rel: &str,
    check: impl Fn(&Record) -> Result<()>,
) -> Result<ControlRead> {
    let copies: Vec<Copy> = mountpaths.iter().map(|mp| read_copy(mp, rel)).collect();
    for copy in &copies {
        if let Copy::Valid(_, payload) = copy {
            check(&Record::decode(payload)?)?;
        }
    }
    let best = newest(&copies, rel)?;
    let Some((version, payload)) = best else {
        if let Some(Copy::Corrupt(err)) = copies.iter().find(|c| matches!(c, Copy::Corrupt(_))) {
            return Err(Error::new(
                err.errno(),
                format!("control file {rel}: no valid copy ({err})"),
            ));
        }
        return Ok(ControlRead {
            best: None,
            repaired: Vec::new(),
        });
    };
    let record = Record::decode(payload)?;
    let repaired = rewrite_stale(mountpaths, rel, &copies, version, payload);
    Ok(ControlRead {
        best: Some((version, record)),
        repaired,
    })
}

/// One mountpath's copy of the control file `rel`.
fn read_copy(mountpath: &std::path::Path, rel: &str) -> Copy {
    match fs::read(mountpath.join(rel)) {
        Ok(bytes) => match decode(&bytes) {
            Ok((version, payload)) => Copy::Valid(version, payload),
            Err(err) => Copy::Corrupt(err),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Copy::Missing,
        Err(e) => Copy::Corrupt(Error::io(
            format!("cannot read {}", mountpath.join(rel).display()),
            e,
        )),
    }
}

/// The newest valid copy's version and payload; `EUCLEAN` when two
/// copies of one version differ.
fn newest<'a>(copies: &'a [Copy], rel: &str) -> Result<Option<(u64, &'a [u8])>> {
    let mut best: Option<(u64, &[u8])> = None;
    for copy in copies {
        if let Copy::Valid(version, payload) = copy {
            match best {
                Some((v, p)) if v == *version && p != payload.as_slice() => {
                    return Err(Error::new(
                        libc::EUCLEAN,
                        format!("control file {rel}: two copies of version {v} differ"),
                    ));
                }
                Some((v, _)) if v >= *version => {}
                _ => best = Some((*version, payload)),
            }
        }
    }
    Ok(best)
}

/// Rewrites every copy older than `version`, missing or corrupt with
/// `payload`, as best it can (a copy whose disk fails must not stop the
/// good ones from being read); returns the mountpaths rewritten.
fn rewrite_stale(
    mountpaths: &[PathBuf],
    rel: &str,
    copies: &[Copy],
    version: u64,
    payload: &[u8],
) -> Vec<PathBuf> {
    let mut repaired = Vec::new();
    for (mp, copy) in mountpaths.iter().zip(copies) {
        let stale = match copy {
            Copy::Valid(v, _) => *v < version,
            Copy::Missing | Copy::Corrupt(_) => true,
        };
        if !stale {
            continue;
        }
        if let Copy::Corrupt(err) = copy {
            crate::log::warn(&format!(
                "{}: {err}; rewriting it from a good copy",
                mp.join(rel).display()
            ));
        }
        match write_file_atomic(mp, rel, &encode(version, payload)) {
            Ok(()) => repaired.push(mp.clone()),
            Err(err) => crate::log::warn(&format!(
                "{err}; control file {rel} is served from the other copies"
            )),
        }
    }
    repaired
}

/// Writes `record` as `version` to every mountpath.
pub fn write(mountpaths: &[PathBuf], rel: &str, version: u64, record: &Record) -> Result<()> {
    let bytes = encode(version, &record.encode());
    for mp in mountpaths {
        write_file_atomic(mp, rel, &bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_small_and_compressed() {
        for payload in [b"a=1\n".to_vec(), vec![b'x'; 10_000]] {
            let bytes = encode(7, &payload);
            assert_eq!(decode(&bytes).unwrap(), (7, payload));
        }
    }

    #[test]
    fn a_copy_that_cannot_be_read_or_rewritten_leaves_the_others_readable() {
        let root = std::env::temp_dir().join(format!("rawstor-control-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let mountpaths: Vec<PathBuf> = (1..=3).map(|i| root.join(format!("copy-{i}"))).collect();
        for mp in &mountpaths {
            fs::create_dir_all(mp.join(WORK_DIR)).unwrap();
        }
        let mut record = Record::new();
        record.set("size", 42u64);
        write(&mountpaths, "rec", 1, &record).unwrap();
        // Copy 2's file becomes a non-empty directory: unreadable, and the
        // rewrite from a good copy fails too.
        let broken = mountpaths[1].join("rec");
        fs::remove_file(&broken).unwrap();
        fs::create_dir_all(broken.join("in-the-way")).unwrap();
        let read = read(&mountpaths, "rec", |_| Ok(())).unwrap();
        let (version, got) = read.best.expect("the good copies are read");
        assert_eq!((version, got.get::<u64>("size").unwrap()), (1, 42));
        assert!(read.repaired.is_empty(), "{:?}", read.repaired);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = encode(3, &vec![b'k'; 1000]);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {at} not detected");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
