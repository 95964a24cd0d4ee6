//! Objects spread piece by piece over a cluster (mdt:// with a piece
//! size): a parent record with no OSTs of its own, and one child object
//! per piece ([`mdt::piece_uuid`]), each placed, recorded, fenced,
//! repaired and scrubbed as any mdt:// object. The parent opens as
//! [`crate::pieces::Pieces`], which opens a piece on first use.

use std::sync::Arc;

use super::*;
use crate::pieces::{OpenPiece, Pieces};

/// Pieces repaired at once by `rawstor repair` of an object over pieces.
const REPAIR_AT_ONCE: usize = 4;

impl Instance {
    /// Creates `uuid` at `location` over pieces of `piece_size`: the
    /// parent record, then every piece as an object of its own, all or
    /// none.
    pub(super) fn create_pieces(
        &self,
        mdt: &Connection,
        location: &Location,
        uuid: Uuid,
        spec: &CreateSpec,
        chunk_size: u64,
        piece_size: u64,
    ) -> Result<Target> {
        let layout = layout_to_create(spec)?;
        if piece_size == 0 {
            return Err(Error::invalid("a piece size of 0 bytes"));
        }
        let placing = remote::Placing {
            piece_size,
            parent: None,
        };
        let record = remote::mdt_place(mdt, uuid, spec.size, chunk_size, layout, placing)?;
        for p in 0..record.pieces() {
            let piece = CreateSpec {
                size: (spec.size - p * piece_size).min(piece_size),
                uuid: Some(mdt::piece_uuid(uuid, p)),
                chunk_size: Some(chunk_size),
                layout: Some(layout),
                piece_size: None,
            };
            if let Err(err) = self.create_placed(
                mdt,
                location,
                piece.uuid.unwrap(),
                &piece,
                chunk_size,
                Some(uuid),
            ) {
                // All or none: the pieces made so far, then the record.
                let _ = self.remove_pieces(location, uuid, p);
                let _ = forget(mdt, uuid);
                return Err(Error::new(
                    err.errno(),
                    format!("piece {p} of object {uuid}: {err}"),
                ));
            }
        }
        Ok(location.target(uuid))
    }

    /// Removes pieces `0..count` of `uuid` (those already gone are
    /// skipped); the first failure is returned, after trying them all.
    pub(super) fn remove_pieces(&self, location: &Location, uuid: Uuid, count: u64) -> Result<()> {
        let mut first = None;
        for p in 0..count {
            let piece = location.target(mdt::piece_uuid(uuid, p));
            match self.remove(&piece) {
                Err(err) if err.errno() != libc::ENOENT => {
                    first.get_or_insert(Error::new(
                        err.errno(),
                        format!("piece {p} of object {uuid}: {err}"),
                    ));
                }
                _ => {}
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Repairs an object over pieces: its pieces, [`REPAIR_AT_ONCE`] at a
    /// time (each from and onto its own OSTs, so a dead OST's pieces are
    /// rebuilt from and onto many). Returns what was repaired, by piece.
    pub(super) fn repair_pieces(
        &self,
        target: &Target,
        record: &ObjectRecord,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vec<String>> {
        let count = record.pieces();
        let mut repaired = Vec::new();
        let mut first_error = None;
        for batch in (0..count).collect::<Vec<_>>().chunks(REPAIR_AT_ONCE) {
            let outcomes: Vec<(u64, Result<Vec<String>>)> = std::thread::scope(|scope| {
                let running: Vec<_> = batch
                    .iter()
                    .map(|&p| {
                        let piece = target.location.target(mdt::piece_uuid(record.uuid, p));
                        scope.spawn(move || (p, self.repair(&piece, &mut |_, _| {})))
                    })
                    .collect();
                running
                    .into_iter()
                    .map(|t| t.join().expect("a piece's repair does not panic"))
                    .collect()
            });
            for (p, outcome) in outcomes {
                match outcome {
                    Ok(names) => {
                        repaired.extend(names.into_iter().map(|n| format!("piece {p}: {n}")))
                    }
                    Err(err) => {
                        first_error.get_or_insert(Error::new(
                            err.errno(),
                            format!("piece {p} of object {}: {err}", record.uuid),
                        ));
                    }
                }
            }
            let done = (batch[batch.len() - 1] + 1).min(count);
            progress((done * record.piece_size).min(record.size), record.size);
        }
        // Every piece was tried; the first failure says which.
        first_error.map_or(Ok(repaired), Err)
    }

    /// Opens an object over pieces: each piece resolved and opened on
    /// first use.
    pub(super) fn open_pieces(&self, resolved: &Resolved) -> Result<DynBackend> {
        let record = resolved
            .record
            .as_ref()
            .expect("an object over pieces has a record");
        let info = ObjectInfo {
            uuid: record.uuid,
            size: record.size,
            chunk_size: record.chunk_size,
            block_size: BLOCK_SIZE,
        };
        let instance = Instance {
            shared: Arc::clone(&self.shared),
        };
        let (location, uuid) = (resolved.target.location.clone(), record.uuid);
        let open: OpenPiece = Box::new(move |p| {
            let piece = location.target(mdt::piece_uuid(uuid, p));
            let resolved = instance.resolve(&piece)?;
            instance.open_backend(&resolved, Single::Itself)
        });
        Ok(Arc::new(Pieces::new(info, record.piece_size, open)?))
    }
}
