//! Repair and scrub of an object: copies or shards whose OST is gone are
//! moved to others, stale ones resynced, every copy verified.

use super::*;

impl Instance {
    /// Resyncs a mirrored object: copies a good copy onto every copy
    /// marked stale and clears the marks. Every element must be reachable
    /// and nothing may write the object meanwhile. `progress` gets (bytes
    /// copied, bytes to copy). Returns the repaired elements (none when
    /// the target is not mirrored or no copy is stale).
    pub fn repair(
        &self,
        target: &Target,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vec<String>> {
        if let Some(mdt) = self.mdt(&target.location)? {
            let record = remote::mdt_lookup(&mdt, target.uuid)?;
            if record.piece_size > 0 {
                return self.repair_pieces(target, &record, progress);
            }
            self.replace_lost(&mdt, target)?;
        }
        let resolved = self.resolve(target)?;
        let backend = self.open_backend(&resolved, Single::Itself)?;
        let repaired = backend.repair(progress);
        self.release_unless_open(target.uuid, &*backend);
        repaired
    }

    /// Moves the copies or shards of an mdt:// object whose OST the map
    /// shows down to other OSTs (empty, marked stale for the repair that
    /// follows to fill).
    fn replace_lost(&self, mdt: &Arc<Connection>, target: &Target) -> Result<()> {
        let record = remote::mdt_lookup(mdt, target.uuid)?;
        let map = remote::mdt_cluster_map(mdt)?;
        let lost: Vec<usize> = (0..record.placement.len())
            .filter(|&i| {
                !map.osts
                    .iter()
                    .any(|o| o.id == record.placement[i].ost && o.up)
            })
            .collect();
        let size = match record.layout {
            Layout::Replicas(_) => record.size,
            Layout::Erasure { data, .. } => {
                crate::redundancy::erasure::shard_size(record.size, data)
            }
        };
        for i in lost {
            let mut change = crate::store::record::Record::new();
            change.set("replace", i);
            let moved = remote::mdt_update(mdt, target.uuid, 0, &change)?;
            let placed = moved.placement.get(i).ok_or_else(|| {
                Error::new(libc::EPROTO, format!("the MDT's record lost copy {i}"))
            })?;
            crate::log::warn(&format!(
                "object {}: OST {} is down; copy {i} moves to OST {} at {}",
                target.uuid, record.placement[i].ost, placed.ost, placed.addr
            ));
            let endpoint: Location = format!("ost://{}", placed.addr).parse()?;
            let [endpoint] = endpoint.endpoints() else {
                unreachable!("one element")
            };
            match self.create_at(endpoint, target.uuid, size, record.chunk_size) {
                Err(err) if err.errno() != libc::EEXIST => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    /// Verifies every copy of an object: reads each in full (checksums
    /// checked) and compares them (an erasure-coded object's parity is
    /// checked against its data). `progress` gets (bytes compared, object
    /// size). Without `repair` nothing is changed. With it, a repair
    /// ([`Instance::repair`]) runs first, then blocks that fail their
    /// checksums, copies that differ from what most copies hold, and
    /// parity that does not match the data are rewritten, under the
    /// writer lease; the report lists them as repaired.
    pub fn scrub(
        &self,
        target: &Target,
        repair: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ScrubReport> {
        if repair {
            self.repair(target, &mut |_, _| {})?;
        }
        let resolved = self.resolve(target)?;
        let backend = self.open_backend(&resolved, Single::AsMirror)?;
        let report = backend.scrub(repair, progress);
        if repair {
            self.release_unless_open(target.uuid, &*backend);
        }
        report
    }
}
