//! An object cut into pieces of a fixed size, each piece an object of its
//! own (in a cluster: a mirror or an erasure-coded object on OSTs of its
//! own, so that one object spreads over every OST). Byte `b` of the object
//! is byte `b % piece_size` of piece `b / piece_size`. Pieces are opened on
//! first use, through the function the object was opened with; an
//! operation that spans pieces is one operation per piece, gathered by a
//! [`FanIn`].
//!
//! On mdt://, `Instance::open_backend` chooses it for an object created
//! with a piece size (see `client/pieces.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::{Backend, DynBackend};
use crate::error::{Error, Result};
use crate::fan_in::{FanIn, first_error};
use crate::lent::{self, RawBuf};
use crate::redundancy::mirror::ScrubReport;
use crate::remote::Finish;
use crate::store::ObjectInfo;
use crate::wire::Opcode;

/// Opens piece `p` (it exists: the object's creation made every piece).
pub(crate) type OpenPiece = Box<dyn Fn(u64) -> Result<DynBackend> + Send + Sync>;

/// One piece's part of a range: the piece, the offset in it, and the
/// part's position and length in the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    piece: u64,
    at: u64,
    pos: u64,
    len: u64,
}

/// An object over pieces. See the module documentation.
pub(crate) struct Pieces {
    info: ObjectInfo,
    piece_size: u64,
    open: OpenPiece,
    /// The pieces opened so far, by index.
    opened: Mutex<BTreeMap<u64, DynBackend>>,
}

impl Pieces {
    /// An object of `info.size` bytes over pieces of `piece_size` (a
    /// multiple of the block size); the last piece may be shorter.
    pub(crate) fn new(info: ObjectInfo, piece_size: u64, open: OpenPiece) -> Result<Self> {
        if piece_size == 0 || piece_size % info.block_size != 0 {
            return Err(Error::invalid(format!(
                "piece size {piece_size}: a non-zero multiple of the block size {}",
                info.block_size
            )));
        }
        Ok(Self {
            info,
            piece_size,
            open,
            opened: Mutex::new(BTreeMap::new()),
        })
    }

    /// Pieces in all.
    pub(crate) fn count(&self) -> u64 {
        self.info.size.div_ceil(self.piece_size)
    }

    /// The pieces' parts of `len` bytes at `offset`, in order.
    fn parts(&self, offset: u64, len: u64) -> Vec<Part> {
        let mut parts = Vec::new();
        let mut pos = 0;
        while pos < len {
            let at = offset + pos;
            let piece = at / self.piece_size;
            let within = at % self.piece_size;
            let n = (self.piece_size - within).min(len - pos);
            parts.push(Part {
                piece,
                at: within,
                pos,
                len: n,
            });
            pos += n;
        }
        assert_eq!(
            parts.iter().map(|p| p.len).sum::<u64>(),
            len,
            "parts cover the range"
        );
        parts
    }

    /// Piece `p`, opened on first use.
    fn piece(&self, p: u64) -> Result<DynBackend> {
        assert!(p < self.count(), "piece {p} of {}", self.count());
        if let Some(piece) = self.opened.lock().get(&p) {
            return Ok(Arc::clone(piece));
        }
        // Opened without the lock (it asks servers); a racing opener's
        // piece is dropped for the first one kept.
        let piece = (self.open)(p)?;
        Ok(Arc::clone(self.opened.lock().entry(p).or_insert(piece)))
    }

    fn opened(&self) -> Vec<DynBackend> {
        self.opened.lock().values().cloned().collect()
    }

    /// Starts `start(piece, part, its buffers, its finish)` on every part
    /// of the range; `finish` gets the sum of their bytes or the first
    /// error.
    fn each_part(
        &self,
        offset: u64,
        bufs: &[RawBuf],
        finish: Finish,
        start: impl Fn(&DynBackend, u64, &[RawBuf], Finish),
    ) {
        let parts = self.parts(offset, lent::total(bufs));
        if let [part] = parts.as_slice() {
            // Within one piece: no fan-in.
            return match self.piece(part.piece) {
                Ok(piece) => start(&piece, part.at, bufs, finish),
                Err(err) => finish(Err(err)),
            };
        }
        if parts.is_empty() {
            return finish(Ok(0));
        }
        let all = FanIn::new(
            parts.len(),
            Box::new(move |results| finish(first_error(results))),
        );
        for (k, part) in parts.iter().enumerate() {
            let mut sub = Vec::new();
            lent::slice(bufs, part.pos, part.len, &mut sub);
            match self.piece(part.piece) {
                Ok(piece) => start(&piece, part.at, &sub, all.part(k)),
                Err(err) => all.part(k)(Err(err)),
            }
        }
    }
}

impl Backend for Pieces {
    fn info(&self) -> ObjectInfo {
        self.info.clone()
    }

    fn refresh_size(&self) -> Result<u64> {
        Ok(self.info.size)
    }

    fn read(&self, offset: u64, bufs: &[RawBuf], finish: Finish) {
        self.each_part(offset, bufs, finish, |piece, at, sub, done| {
            piece.read(at, sub, done)
        });
    }

    fn write(&self, offset: u64, bufs: &[RawBuf], fua: bool, finish: Finish) {
        self.each_part(offset, bufs, finish, |piece, at, sub, done| {
            piece.write(at, sub, fua, done)
        });
    }

    fn simple(&self, op: Opcode, offset: u64, len: u64, finish: Finish) {
        let targets: Vec<(DynBackend, u64, u64)> = if op == Opcode::Flush {
            // Only pieces opened here can hold writes of this handle.
            self.opened().into_iter().map(|p| (p, 0, 0)).collect()
        } else {
            let mut targets = Vec::new();
            for part in self.parts(offset, len) {
                match self.piece(part.piece) {
                    Ok(piece) => targets.push((piece, part.at, part.len)),
                    Err(err) => return finish(Err(err)),
                }
            }
            targets
        };
        if targets.is_empty() {
            return finish(Ok(len));
        }
        let all = FanIn::new(
            targets.len(),
            Box::new(move |results| finish(first_error(results).map(|_| len))),
        );
        for (k, (piece, at, n)) in targets.iter().enumerate() {
            piece.simple(op, *at, *n, all.part(k));
        }
    }

    fn resize(&self, size: u64, _allow_shrink: bool) -> Result<()> {
        Err(Error::new(
            libc::EOPNOTSUPP,
            format!(
                "resizing an object spread over pieces (to {size} bytes) is not implemented yet"
            ),
        ))
    }

    fn extent(&self, offset: u64, len: u64) -> Result<(bool, u64)> {
        if offset >= self.info.size {
            return Err(Error::new(
                libc::ENXIO,
                format!("offset {offset} is past the end ({} bytes)", self.info.size),
            ));
        }
        let part = self.parts(offset, len.max(1).min(self.info.size - offset))[0];
        self.piece(part.piece)?.extent(part.at, part.len)
    }

    fn scrub(&self, repair: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        let count = self.count();
        for p in 0..count {
            let piece = self.piece(p)?;
            let mut within = |done: u64, _total: u64| {
                progress(p * self.piece_size + done, self.info.size);
            };
            let one = piece.scrub(repair, &mut within)?;
            report.bytes_checked += one.bytes_checked;
            if report.copies.is_empty() {
                report.copies = one.copies;
            }
            for problem in one.problems {
                report.problem(format!("piece {p}: {problem}"));
            }
            report.more_problems += one.more_problems;
            for mended in one.repaired {
                report.mended(format!("piece {p}: {mended}"));
            }
            report.more_repaired += one.more_repaired;
        }
        Ok(report)
    }

    fn repair(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<String>> {
        let mut repaired = Vec::new();
        for p in 0..self.count() {
            let mut within = |done: u64, _total: u64| {
                progress(p * self.piece_size + done, self.info.size);
            };
            let names = self.piece(p)?.repair(&mut within)?;
            repaired.extend(names.into_iter().map(|n| format!("piece {p}: {n}")));
        }
        Ok(repaired)
    }

    fn release(&self) {
        for piece in self.opened() {
            piece.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Uuid;
    use crate::store::Store;

    const PIECE: u64 = 64 << 10;

    struct Fixture {
        dir: std::path::PathBuf,
        object: Arc<Pieces>,
        opens: Arc<Mutex<Vec<u64>>>,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// An object of 4.5 pieces, each piece a local store object.
    fn fixture(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("rawstor-pieces-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(vec![dir.clone()], true).unwrap();
        let size = 4 * PIECE + PIECE / 2;
        let uuids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        for (p, &uuid) in uuids.iter().enumerate() {
            let len = (size - p as u64 * PIECE).min(PIECE);
            store.create_object(uuid, len, PIECE).unwrap();
        }
        let opens = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&opens);
        let info = ObjectInfo {
            uuid: Uuid::now_v7(),
            size,
            chunk_size: PIECE,
            block_size: 4096,
        };
        let open: OpenPiece = Box::new(move |p| {
            seen.lock().push(p);
            let object = store.open_object(uuids[p as usize])?;
            Ok(crate::local::copy(object) as DynBackend)
        });
        Fixture {
            dir,
            object: Arc::new(Pieces::new(info, PIECE, open).unwrap()),
            opens,
        }
    }

    #[test]
    fn ranges_cut_at_piece_boundaries() {
        let f = fixture("parts");
        let parts = f.object.parts(PIECE - 10, PIECE + 20);
        assert_eq!(
            parts,
            [
                Part {
                    piece: 0,
                    at: PIECE - 10,
                    pos: 0,
                    len: 10
                },
                Part {
                    piece: 1,
                    at: 0,
                    pos: 10,
                    len: PIECE
                },
                Part {
                    piece: 2,
                    at: 0,
                    pos: PIECE + 10,
                    len: 10
                },
            ]
        );
        assert_eq!(f.object.count(), 5);
    }

    #[test]
    fn io_across_pieces_reads_back_and_opens_only_what_it_touches() {
        let f = fixture("io");
        let data: Vec<u8> = (0..2 * PIECE).map(|i| (i % 251) as u8).collect();
        let at = PIECE - 4096;
        let n = crate::backend::wait(|done| f.object.write(at, &[RawBuf::of(&data)], false, done));
        assert_eq!(n.unwrap(), data.len() as u64);
        assert_eq!(*f.opens.lock(), [0, 1, 2], "pieces 0..=2 opened once each");
        let mut back = vec![0u8; data.len()];
        let (head, tail) = back.split_at_mut(5000);
        let bufs = [RawBuf::of_mut(head), RawBuf::of_mut(tail)];
        crate::backend::wait(|done| f.object.read(at, &bufs, done)).unwrap();
        assert!(back == data);
        // The last, short piece; piece 3 untouched before.
        let end = f.object.info().size;
        let block = vec![7u8; 4096];
        crate::backend::wait(|done| {
            f.object
                .write(end - 4096, &[RawBuf::of(&block)], true, done)
        })
        .unwrap();
        assert_eq!(*f.opens.lock(), [0, 1, 2, 4]);
        crate::backend::wait(|done| f.object.simple(Opcode::Flush, 0, 0, done)).unwrap();
        // Write-zeroes across a boundary.
        crate::backend::wait(|done| f.object.simple(Opcode::WriteZeroes, PIECE, 8192, done))
            .unwrap();
        let mut zeros = vec![1u8; 8192];
        crate::backend::wait(|done| f.object.read(PIECE, &[RawBuf::of_mut(&mut zeros)], done))
            .unwrap();
        assert!(zeros.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_piece_that_cannot_open_fails_the_operation_clearly() {
        let dir = std::env::temp_dir().join(format!("rawstor-pieces-none-{}", std::process::id()));
        let info = ObjectInfo {
            uuid: Uuid::now_v7(),
            size: 2 * PIECE,
            chunk_size: PIECE,
            block_size: 4096,
        };
        let open: OpenPiece = Box::new(|p| {
            Err(Error::new(
                libc::EHOSTDOWN,
                format!("piece {p}: no OST answers"),
            ))
        });
        let object = Pieces::new(info, PIECE, open).unwrap();
        let mut buf = vec![0u8; 8192];
        let err = crate::backend::wait(|done| {
            object.read(PIECE - 4096, &[RawBuf::of_mut(&mut buf)], done)
        })
        .unwrap_err();
        assert_eq!(err.errno(), libc::EHOSTDOWN);
        assert!(err.to_string().contains("no OST answers"));
        assert!(Pieces::new(object.info(), 1000, Box::new(|_| unreachable!())).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
