//! One chunk of an object on one mountpath: a sparse data file and a
//! checksum file beside it, mapped into memory.
//!
//! # Checksums and crash consistency
//!
//! Every 4 KiB block has one 64-bit checksum entry holding two *seals*
//! (`seal = crc32(block) ^ crc32(zero block)`, so a hole or an all-zero
//! block seals to 0 and a fresh sparse checksum file is already valid).
//! The low half is the previous seal, the high half the newest. A block is
//! valid when its seal equals either half.
//!
//! A write, under the chunk's lock, first stores `(newest, new)` into the
//! mapped entry and only then writes the data. Whatever point a process
//! dies at, the page cache holds for each block either its old content
//! (matching the low half) or the new one (matching the high half): both
//! read back, nothing else does. A block matching only its low half is
//! the trace of an interrupted write and is *healed* (entry becomes
//! `(old, old)`) under the lock on the next read, so a later interrupted
//! write cannot leave it matching neither half. Any other mismatch is
//! corruption and fails the read with `EIO`; it is never returned.
//!
//! Durability (`flush`): `fdatasync` of the data file, then `msync` of
//! the checksum map. See docs/ARCHITECTURE.md for every update's order.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::sys::{self, MappedWords};

/// Bytes covered by one checksum entry.
pub const BLOCK_SIZE: u64 = 4096;
const BLOCK: usize = BLOCK_SIZE as usize;
/// Bytes of one checksum entry.
pub const SUM_ENTRY_BYTES: u64 = 8;
/// Largest `pwrite` issued for data. The kernel sizes page-cache folios
/// after the writes that create them, and on ext4 a later 4 KiB write
/// into a large folio walks all of its buffers: data laid down in 1 MiB
/// writes took 4 KiB random writes from 590k to 31k IOPS on this
/// project's machines, 64 KiB pieces keep 270k at the same sequential
/// throughput (BENCHMARKS.md).
const WRITE_PIECE_BYTES: usize = 64 << 10;

/// crc32 of a 4 KiB block of zeros.
fn zero_block_crc() -> u32 {
    static ZERO: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ZERO.get_or_init(|| crc32fast::hash(&[0u8; BLOCK]))
}

/// The seal of one block: 0 for a block of zeros.
fn seal(block: &[u8]) -> u32 {
    debug_assert_eq!(block.len(), BLOCK);
    crc32fast::hash(block) ^ zero_block_crc()
}

fn pack(older: u32, newest: u32) -> u64 {
    u64::from(older) | (u64::from(newest) << 32)
}

fn unpack(entry: u64) -> (u32, u32) {
    (entry as u32, (entry >> 32) as u32)
}

/// How a block's data compares with its checksum entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Check {
    /// Matches the newest seal.
    Current,
    /// Matches only the older seal: an interrupted write left it.
    Previous,
    /// Matches neither: corruption.
    Mismatch,
}

fn check(data: &[u8], entry: u64) -> Check {
    let (older, newest) = unpack(entry);
    let seal = seal(data);
    if seal == newest {
        Check::Current
    } else if seal == older {
        Check::Previous
    } else {
        Check::Mismatch
    }
}

/// An open chunk: one descriptor (its data file) and one memory map (its
/// checksum file, whose descriptor is closed once mapped: a mapping stays
/// valid without it).
pub struct Chunk {
    data: File,
    sums: MappedWords,
    blocks: u64,
    /// Serialises writers (checksum entry then data) and healing.
    write_lock: Mutex<()>,
    dirty: AtomicBool,
    /// For messages: `<object>/c<index>`.
    name: String,
}

impl Chunk {
    /// Opens (or, with `create`, creates empty) the data and checksum
    /// files of a chunk of `size_bytes`.
    pub fn open(
        data_path: &Path,
        sums_path: &Path,
        size_bytes: u64,
        create: bool,
        name: String,
    ) -> Result<Self> {
        assert!(
            size_bytes % BLOCK_SIZE == 0,
            "chunk size is a multiple of the block size"
        );
        let blocks = size_bytes / BLOCK_SIZE;
        let open = |path: &Path, len: u64| -> Result<File> {
            let ctx = |what: &str| format!("{what} {}", path.display());
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(create)
                .open(path)
                .map_err(|e| Error::io(ctx("cannot open chunk file"), e))?;
            if create {
                file.set_len(len)
                    .map_err(|e| Error::io(ctx("cannot size"), e))?;
            }
            Ok(file)
        };
        let data = open(data_path, size_bytes)?;
        let sums_file = open(sums_path, blocks * SUM_ENTRY_BYTES)?;
        // The checksum file is mapped, and a store to a page of it without
        // a disk block behind would allocate one: on a full disk the kernel
        // answers that with SIGBUS. So its blocks (1/512 of the chunk's) are
        // taken up front, and a full disk fails the chunk's creation with
        // ENOSPC instead. Chunks made before get the same where space allows.
        if let Err(e) = sys::allocate(&sums_file, 0, blocks * SUM_ENTRY_BYTES)
            && create
            && e.raw_os_error() == Some(libc::ENOSPC)
        {
            let what = format!("cannot allocate checksum file {}", sums_path.display());
            return Err(Error::io(what, e));
        }
        let sums = MappedWords::map(&sums_file, blocks as usize).map_err(|e| {
            Error::new(
                libc::EIO,
                format!("checksum file {} is damaged: {e}", sums_path.display()),
            )
        })?;
        drop(sums_file);
        Ok(Self {
            data,
            sums,
            blocks,
            write_lock: Mutex::new(()),
            dirty: AtomicBool::new(false),
            name,
        })
    }

    fn entries(&self, first_block: u64, count: u64) -> &[std::sync::atomic::AtomicU64] {
        assert!(
            first_block + count <= self.blocks,
            "block range inside the chunk"
        );
        &self.sums.words()[first_block as usize..(first_block + count) as usize]
    }

    fn read_blocks(&self, first_block: u64, buf: &mut [u8]) -> Result<()> {
        self.data
            .read_exact_at(buf, first_block * BLOCK_SIZE)
            .map_err(|e| Error::io(format!("cannot read chunk {}", self.name), e))
    }

    /// Reads whole blocks into `buf` and verifies them.
    fn read_verified(&self, first_block: u64, buf: &mut [u8]) -> Result<()> {
        self.read_blocks(first_block, buf)?;
        let entries = self.entries(first_block, (buf.len() / BLOCK) as u64);
        let clean = buf
            .chunks_exact(BLOCK)
            .zip(entries)
            .all(|(block, entry)| check(block, entry.load(Ordering::Acquire)) == Check::Current);
        if clean {
            return Ok(());
        }
        // A writer may have raced us, or a write was interrupted:
        // look again with writers held off, and heal what needs it.
        let _guard = self.write_lock.lock();
        self.read_blocks(first_block, buf)?;
        for (i, (block, entry)) in buf.chunks_exact(BLOCK).zip(entries).enumerate() {
            let value = entry.load(Ordering::Acquire);
            match check(block, value) {
                Check::Current => {}
                Check::Previous => {
                    let (older, _) = unpack(value);
                    entry.store(pack(older, older), Ordering::Release);
                    self.dirty.store(true, Ordering::Release);
                }
                Check::Mismatch => {
                    let block_index = first_block + i as u64;
                    let msg = format!(
                        "checksum mismatch in chunk {} block {block_index} (byte {} of the chunk): data is corrupt",
                        self.name,
                        block_index * BLOCK_SIZE
                    );
                    crate::log::warn(&msg);
                    return Err(Error::new(libc::EIO, msg));
                }
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` (relative to the chunk).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        assert!(
            offset + len <= self.blocks * BLOCK_SIZE,
            "read inside the chunk"
        );
        if len == 0 {
            return Ok(());
        }
        let first = offset / BLOCK_SIZE;
        if offset % BLOCK_SIZE == 0 && len % BLOCK_SIZE == 0 {
            return self.read_verified(first, buf);
        }
        let last = (offset + len - 1) / BLOCK_SIZE;
        let mut whole = vec![0u8; ((last - first + 1) * BLOCK_SIZE) as usize];
        self.read_verified(first, &mut whole)?;
        let skip = (offset % BLOCK_SIZE) as usize;
        buf.copy_from_slice(&whole[skip..skip + buf.len()]);
        Ok(())
    }

    /// Seals then writes whole blocks, with their crc32s when the caller
    /// has them; the caller holds `write_lock`.
    fn write_blocks_locked(
        &self,
        first_block: u64,
        data: &[u8],
        crcs: Option<&[u32]>,
    ) -> Result<()> {
        let entries = self.entries(first_block, (data.len() / BLOCK) as u64);
        let before: Vec<u64> = entries.iter().map(|e| e.load(Ordering::Acquire)).collect();
        for (i, (block, entry)) in data.chunks_exact(BLOCK).zip(entries).enumerate() {
            let (_, newest) = unpack(entry.load(Ordering::Acquire));
            let seal = match crcs {
                Some(crcs) => crcs[i] ^ zero_block_crc(),
                None => seal(block),
            };
            entry.store(pack(newest, seal), Ordering::Release);
        }
        self.dirty.store(true, Ordering::Release);
        let mut offset = first_block * BLOCK_SIZE;
        for piece in data.chunks(WRITE_PIECE_BYTES) {
            if let Err(e) = self.data.write_all_at(piece, offset) {
                self.unseal_unwritten(first_block, &before);
                return Err(Error::io(format!("cannot write chunk {}", self.name), e));
            }
            offset += piece.len() as u64;
        }
        Ok(())
    }

    /// After a failed write (a full disk, an I/O error) of the blocks from
    /// `first_block` whose entries were `before`: gives back its entry to
    /// each block that does not hold the new data. Left sealed as written,
    /// a block that kept its old bytes would match only the entry's older
    /// half, and a second failed write to it (a retry on a full disk) would
    /// push that out too: the block would read as corrupt. A block that
    /// cannot be read back keeps both halves.
    fn unseal_unwritten(&self, first_block: u64, before: &[u64]) {
        let entries = self.entries(first_block, before.len() as u64);
        let mut buf = vec![0u8; BLOCK];
        for (i, (entry, &old)) in entries.iter().zip(before).enumerate() {
            let (_, new) = unpack(entry.load(Ordering::Acquire));
            if self.read_blocks(first_block + i as u64, &mut buf).is_ok() && seal(&buf) != new {
                entry.store(old, Ordering::Release);
            }
        }
    }

    /// Reads one block for a read-modify-write, under `write_lock`.
    fn read_block_locked(&self, block_index: u64, buf: &mut [u8]) -> Result<()> {
        self.read_blocks(block_index, buf)?;
        let entry = &self.entries(block_index, 1)[0];
        match check(buf, entry.load(Ordering::Acquire)) {
            Check::Current => Ok(()),
            Check::Previous => {
                let (older, _) = unpack(entry.load(Ordering::Acquire));
                entry.store(pack(older, older), Ordering::Release);
                Ok(())
            }
            Check::Mismatch => Err(Error::new(
                libc::EIO,
                format!(
                    "checksum mismatch in chunk {} block {block_index}: cannot update a corrupt block",
                    self.name
                ),
            )),
        }
    }

    /// Writes `data` at `offset` (relative to the chunk).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        assert!(
            offset + len <= self.blocks * BLOCK_SIZE,
            "write inside the chunk"
        );
        if len == 0 {
            return Ok(());
        }
        let first = offset / BLOCK_SIZE;
        let _guard = self.write_lock.lock();
        if offset % BLOCK_SIZE == 0 && len % BLOCK_SIZE == 0 {
            return self.write_blocks_locked(first, data, None);
        }
        let last = (offset + len - 1) / BLOCK_SIZE;
        let mut whole = vec![0u8; ((last - first + 1) * BLOCK_SIZE) as usize];
        let skip = (offset % BLOCK_SIZE) as usize;
        if skip != 0 {
            self.read_block_locked(first, &mut whole[..BLOCK])?;
        }
        if (offset + len) % BLOCK_SIZE != 0 && (last > first || skip == 0) {
            let tail = whole.len() - BLOCK;
            self.read_block_locked(last, &mut whole[tail..])?;
        }
        whole[skip..skip + data.len()].copy_from_slice(data);
        self.write_blocks_locked(first, &whole, None)
    }

    /// Writes whole blocks at `offset` (a block boundary, relative to the
    /// chunk) whose crc32s the caller has computed, one per block.
    pub fn write_blocks(&self, offset: u64, data: &[u8], crcs: &[u32]) -> Result<()> {
        assert!(
            offset % BLOCK_SIZE == 0 && data.len() == crcs.len() * BLOCK,
            "whole blocks, one crc each"
        );
        assert!(
            offset + data.len() as u64 <= self.blocks * BLOCK_SIZE,
            "write inside the chunk"
        );
        if data.is_empty() {
            return Ok(());
        }
        let _guard = self.write_lock.lock();
        self.write_blocks_locked(offset / BLOCK_SIZE, data, Some(crcs))
    }

    /// Makes `[offset, offset + len)` read as zeros, freeing whole blocks.
    pub fn zero(&self, offset: u64, len: u64) -> Result<()> {
        assert!(
            offset + len <= self.blocks * BLOCK_SIZE,
            "zero inside the chunk"
        );
        let start = offset.next_multiple_of(BLOCK_SIZE);
        let end = (offset + len) / BLOCK_SIZE * BLOCK_SIZE;
        if start >= end {
            return self.write(offset, &vec![0u8; len as usize]);
        }
        if offset < start {
            self.write(offset, &vec![0u8; (start - offset) as usize])?;
        }
        if end < offset + len {
            self.write(end, &vec![0u8; (offset + len - end) as usize])?;
        }
        let _guard = self.write_lock.lock();
        let entries = self.entries(start / BLOCK_SIZE, (end - start) / BLOCK_SIZE);
        let before: Vec<u64> = entries.iter().map(|e| e.load(Ordering::Acquire)).collect();
        // Seal the range as zeros first (keeping the old seal as the
        // previous one), then free it: a crash between leaves blocks that
        // match either half.
        for entry in entries {
            let (_, newest) = unpack(entry.load(Ordering::Acquire));
            entry.store(pack(newest, 0), Ordering::Release);
        }
        self.dirty.store(true, Ordering::Release);
        if let Err(e) = sys::punch_hole(&self.data, start, end - start) {
            self.unseal_unwritten(start / BLOCK_SIZE, &before);
            return Err(Error::io(
                format!("cannot free space in chunk {}", self.name),
                e,
            ));
        }
        for entry in entries {
            entry.store(0, Ordering::Release);
        }
        Ok(())
    }

    /// Whether the `len` bytes at `offset` hold data, and for how many
    /// bytes from `offset` (at least one block, at most `len`) that stays
    /// true. Freed (discarded, never written) ranges read as zeros.
    pub fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)> {
        let fail = |e| Error::io(format!("cannot map chunk {}", self.name), e);
        let data_at = sys::seek_data(&self.data, offset).map_err(fail)?;
        let (data, end) = match data_at {
            Some(at) if at <= offset => {
                let hole = sys::seek_hole(&self.data, offset).map_err(fail)?;
                (true, hole.unwrap_or(offset + len))
            }
            Some(at) => (false, at),
            None => (false, offset + len),
        };
        // `end > offset`: SEEK_DATA/SEEK_HOLE moved past `offset`.
        Ok((data, end.min(offset + len) - offset))
    }

    /// Whether the chunk changed since its last flush.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Makes the next flush sync the chunk: for a chunk reopened after one
    /// of its earlier openings was closed dirty. `fdatasync` and `msync`
    /// write back the file's page cache, whichever descriptor or mapping
    /// dirtied it.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self
            .data
            .sync_data()
            .map_err(|e| Error::io(format!("cannot sync chunk {}", self.name), e))
            .and_then(|()| {
                self.sums.sync().map_err(|e| {
                    Error::io(format!("cannot sync checksums of chunk {}", self.name), e)
                })
            });
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn chunk(size: u64) -> (Dir, Chunk) {
        let dir = std::env::temp_dir().join(format!("rawstor-chunk-{}", sys::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let chunk = Chunk::open(
            &dir.join("d"),
            &dir.join("d.crc"),
            size,
            true,
            "test/c0".into(),
        )
        .unwrap();
        (Dir(dir), chunk)
    }

    #[test]
    fn fresh_chunk_reads_zeros() {
        let (_dir, chunk) = chunk(64 << 10);
        let mut buf = vec![1u8; 10_000];
        chunk.read(100, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn unaligned_writes_merge_with_neighbours() {
        let (_dir, chunk) = chunk(64 << 10);
        chunk.write(0, &[7u8; 12_288]).unwrap();
        chunk.write(4000, &[9u8; 200]).unwrap();
        let mut buf = vec![0u8; 12_288];
        chunk.read(0, &mut buf).unwrap();
        assert!(buf[..4000].iter().all(|&b| b == 7));
        assert!(buf[4000..4200].iter().all(|&b| b == 9));
        assert!(buf[4200..].iter().all(|&b| b == 7));
    }

    #[test]
    fn blocks_sealed_with_the_callers_crcs_read_back() {
        let (_dir, chunk) = chunk(64 << 10);
        let data: Vec<u8> = (0..3 * BLOCK).map(|i| (i * 31 % 251) as u8).collect();
        let crcs: Vec<u32> = data.chunks_exact(BLOCK).map(crc32fast::hash).collect();
        chunk.write_blocks(8192, &data, &crcs).unwrap();
        let mut back = vec![0u8; data.len()];
        chunk.read(8192, &mut back).unwrap();
        assert_eq!(back, data);
        // The seals are what a write without crcs computes: the same
        // bytes written again read back, and a wrong crc (a caller's bug)
        // is caught by the next read, not returned as data.
        chunk.write(8192, &data).unwrap();
        chunk.read(8192, &mut back).unwrap();
        assert_eq!(back, data);
        let mut wrong = crcs.clone();
        wrong[1] ^= 1;
        chunk.write_blocks(32768, &data, &wrong).unwrap();
        let err = chunk.read(32768, &mut back).unwrap_err();
        assert_eq!(err.errno(), libc::EIO, "{err}");
    }

    #[test]
    fn flipped_byte_fails_the_read_not_silently() {
        let (dir, chunk) = chunk(64 << 10);
        chunk.write(8192, &[5u8; 4096]).unwrap();
        let raw = OpenOptions::new()
            .write(true)
            .open(dir.0.join("d"))
            .unwrap();
        raw.write_all_at(&[6u8], 8192 + 17).unwrap();
        let mut buf = vec![0u8; 4096];
        let err = chunk.read(8192, &mut buf).unwrap_err();
        assert_eq!(err.errno(), libc::EIO);
        assert!(err.context().contains("block 2"), "{err}");
        chunk.read(0, &mut buf).unwrap();
    }

    #[test]
    fn interrupted_write_reads_old_and_is_healed() {
        let (_dir, chunk) = chunk(64 << 10);
        chunk.write(0, &[1u8; 4096]).unwrap();
        // Simulate death between sealing and writing the data.
        let entry = &chunk.entries(0, 1)[0];
        let (_, newest) = unpack(entry.load(Ordering::Acquire));
        entry.store(pack(newest, seal(&[2u8; 4096])), Ordering::Release);
        let mut buf = vec![0u8; 4096];
        chunk.read(0, &mut buf).unwrap();
        assert_eq!(buf, [1u8; 4096]);
        assert_eq!(unpack(entry.load(Ordering::Acquire)), (newest, newest));
    }

    #[test]
    fn zero_frees_blocks_and_reads_zeros() {
        let (_dir, chunk) = chunk(1 << 20);
        chunk.write(0, &vec![3u8; 1 << 20]).unwrap();
        chunk.zero(100, (1 << 20) - 200).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        chunk.read(0, &mut buf).unwrap();
        assert!(buf[..100].iter().all(|&b| b == 3));
        assert!(buf[100..(1 << 20) - 100].iter().all(|&b| b == 0));
        assert!(buf[(1 << 20) - 100..].iter().all(|&b| b == 3));
        use std::os::unix::fs::MetadataExt;
        let allocated = chunk.data.metadata().unwrap().blocks() * 512;
        assert!(allocated <= 2 * BLOCK_SIZE, "allocated {allocated}");
    }
}
