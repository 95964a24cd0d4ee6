//! What `rawstor-mdt` keeps and says, shared by the server and the client:
//! layouts, the cluster map and object records, each carried as a
//! [`Record`] (sorted `key=value` text) in wire payloads and control files.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::placement;
use crate::store::record::Record;
use crate::uuid::Uuid;

/// Most copies a `replicas:N` layout may ask for.
pub const MAX_REPLICAS: usize = 8;
/// Layout of objects created on mdt:// without one.
pub const DEFAULT_LAYOUT: Layout = Layout::Replicas(3);

/// How an object's data is made redundant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `replicas:N`: N full copies on N distinct OSTs.
    Replicas(usize),
    /// `ec:K+M`: K data and M parity shards (Reed-Solomon).
    Erasure { data: usize, parity: usize },
}

impl Layout {
    /// OSTs one object needs.
    pub fn width(&self) -> usize {
        match *self {
            Self::Replicas(n) => n,
            Self::Erasure { data, parity } => data + parity,
        }
    }
}

impl FromStr for Layout {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "bad layout '{text}': {why} (use replicas:N or ec:K+M)"
            ))
        };
        if let Some(n) = text.strip_prefix("replicas:") {
            let n: usize = n.parse().map_err(|_| bad("N is not a number"))?;
            if !(1..=MAX_REPLICAS).contains(&n) {
                return Err(bad(&format!("N must be 1 to {MAX_REPLICAS}")));
            }
            return Ok(Self::Replicas(n));
        }
        if let Some(km) = text.strip_prefix("ec:") {
            let (k, m) = km.split_once('+').ok_or_else(|| bad("expected K+M"))?;
            let k: usize = k.parse().map_err(|_| bad("K is not a number"))?;
            let m: usize = m.parse().map_err(|_| bad("M is not a number"))?;
            if k == 0 || m == 0 || k.checked_add(m).is_none_or(|w| w > 32) {
                return Err(bad("K and M must be positive, K+M at most 32"));
            }
            return Ok(Self::Erasure { data: k, parity: m });
        }
        Err(bad("unknown scheme"))
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replicas(n) => write!(f, "replicas:{n}"),
            Self::Erasure { data, parity } => write!(f, "ec:{data}+{parity}"),
        }
    }
}

/// One OST as the MDT knows it. Its id is its store's UUID, stable across
/// restarts and address changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstEntry {
    pub id: Uuid,
    /// `host:port` clients reach it on.
    pub addr: String,
    /// Failure domain (a host, a rack): copies of one object go to
    /// distinct domains when the cluster has enough.
    pub domain: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    /// Heartbeating (set by the MDT when it answers).
    pub up: bool,
}

impl OstEntry {
    pub fn free_bytes(&self) -> u64 {
        self.capacity_bytes.saturating_sub(self.used_bytes)
    }

    /// Writes the entry into `record` under `prefix`.
    pub fn put(&self, record: &mut Record, prefix: &str) {
        record
            .set(&format!("{prefix}id"), self.id)
            .set(&format!("{prefix}addr"), &self.addr)
            .set(&format!("{prefix}domain"), &self.domain)
            .set(&format!("{prefix}capacity"), self.capacity_bytes)
            .set(&format!("{prefix}used"), self.used_bytes)
            .set(&format!("{prefix}up"), u8::from(self.up));
    }

    /// Reads an entry written by [`OstEntry::put`].
    pub fn take(record: &Record, prefix: &str) -> Result<Self> {
        let text = |key: &str| -> Result<String> {
            record
                .get_str(&format!("{prefix}{key}"))
                .map(str::to_string)
                .ok_or_else(|| Error::new(libc::EUCLEAN, format!("record lacks {prefix}{key}")))
        };
        Ok(Self {
            id: record.get(&format!("{prefix}id"))?,
            addr: text("addr")?,
            domain: text("domain")?,
            capacity_bytes: record.get(&format!("{prefix}capacity"))?,
            used_bytes: record.get(&format!("{prefix}used"))?,
            up: record.get::<u8>(&format!("{prefix}up"))? == 1,
        })
    }
}

/// The cluster map: every OST ever registered, and a version that grows
/// when the membership changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMap {
    pub version: u64,
    pub osts: Vec<OstEntry>,
}

impl ClusterMap {
    pub fn to_record(&self) -> Record {
        let mut record = Record::new();
        record
            .set("version", self.version)
            .set("osts", self.osts.len());
        for (i, ost) in self.osts.iter().enumerate() {
            ost.put(&mut record, &format!("ost.{i:04}."));
        }
        record
    }

    pub fn from_record(record: &Record) -> Result<Self> {
        let count: usize = record.get("osts")?;
        let osts = (0..count)
            .map(|i| OstEntry::take(record, &format!("ost.{i:04}.")))
            .collect::<Result<_>>()?;
        Ok(Self {
            version: record.get("version")?,
            osts,
        })
    }
}

/// Where an object lives: its layout and, per copy or shard, the OST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    pub uuid: Uuid,
    pub size: u64,
    pub chunk_size: u64,
    pub layout: Layout,
    /// One per copy (replicas) or shard (ec), in shard order.
    pub placement: Vec<Placed>,
    /// Copies or shards that missed writes (indexes into `placement`):
    /// never read until `rawstor repair` rebuilds them.
    pub stale: Vec<usize>,
    /// Write intent: regions of [`INTENT_REGION_BYTES`] that a writer may
    /// have left half-written (data written, parity not, or the reverse).
    /// Set before the first write to a region, cleared once its writes are
    /// flushed; a writer that finds some left over resyncs them first.
    pub dirty: Vec<u64>,
    /// Spread over pieces of this many bytes, each a child object of its
    /// own with its own record ([`piece_uuid`]); then `placement` is
    /// empty. 0: the object is one piece, placed itself.
    pub piece_size: u64,
    /// For a piece: the object it is part of (the MDT does not list it).
    pub parent: Option<Uuid>,
}

/// The UUID of piece `p` of object `parent`: the same everywhere, always
/// (a version 8 UUID from the parent's and the index).
pub fn piece_uuid(parent: Uuid, p: u64) -> Uuid {
    let key = placement::piece_key(parent, p);
    let (hi, _) = parent.as_u64_pair();
    uuid::Builder::from_custom_bytes(
        [hi.to_be_bytes(), (key ^ p.rotate_left(17)).to_be_bytes()]
            .concat()
            .try_into()
            .expect("16 bytes"),
    )
    .into_uuid()
}

/// A piece size is a whole number of these (and at least one).
pub const PIECE_UNIT: u64 = 1 << 20;

/// Bytes of an object one write-intent mark covers.
pub const INTENT_REGION_BYTES: u64 = 4 << 20;

/// How long a writer's lease lasts without renewal.
pub const LEASE_TTL_MS: u64 = 6000;

/// Lease request flags (in the header's `offset`).
pub const LEASE_BREAK: u64 = 1;
/// Give the lease back.
pub const LEASE_RELEASE: u64 = 2;
/// A renewal of a lease the client held (accepted during the grace
/// period after an MDT restart, when new leases wait).
pub const LEASE_RENEW: u64 = 4;

/// Writes a list of numbers as `a,b,c` ("" when empty).
fn join_numbers<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a list written by [`join_numbers`].
pub fn parse_numbers<T: FromStr>(text: &str) -> Result<Vec<T>> {
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse()
                .map_err(|_| Error::new(libc::EUCLEAN, format!("bad number '{t}' in a record")))
        })
        .collect()
}

/// One copy or shard's OST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub ost: Uuid,
    pub addr: String,
}

impl ObjectRecord {
    pub fn to_record(&self) -> Record {
        let mut record = Record::new();
        record
            .set("uuid", self.uuid)
            .set("size", self.size)
            .set("chunk_size", self.chunk_size)
            .set("layout", self.layout)
            .set("shards", self.placement.len())
            .set("stale", join_numbers(&self.stale))
            .set("dirty", join_numbers(&self.dirty));
        if self.piece_size > 0 {
            record.set("piece_size", self.piece_size);
        }
        if let Some(parent) = self.parent {
            record.set("parent", parent);
        }
        for (i, placed) in self.placement.iter().enumerate() {
            record
                .set(&format!("shard.{i:02}.ost"), placed.ost)
                .set(&format!("shard.{i:02}.addr"), &placed.addr);
        }
        record
    }

    pub fn from_record(record: &Record) -> Result<Self> {
        let shards: usize = record.get("shards")?;
        let layout: Layout = record
            .get_str("layout")
            .ok_or_else(|| Error::new(libc::EUCLEAN, "record lacks layout"))?
            .parse()?;
        let piece_size: u64 = match record.get_str("piece_size") {
            Some(_) => record.get("piece_size")?,
            None => 0,
        };
        let parent: Option<Uuid> = match record.get_str("parent") {
            Some(_) => Some(record.get("parent")?),
            None => None,
        };
        if piece_size % PIECE_UNIT != 0 {
            return Err(Error::new(
                libc::EUCLEAN,
                format!("record has piece size {piece_size}, not a whole number of MiB"),
            ));
        }
        if shards != layout.width() && !(piece_size > 0 && shards == 0) {
            return Err(Error::new(
                libc::EUCLEAN,
                format!("record places {shards} shards for layout {layout}"),
            ));
        }
        let placement = (0..shards)
            .map(|i| {
                Ok(Placed {
                    ost: record.get(&format!("shard.{i:02}.ost"))?,
                    addr: record
                        .get_str(&format!("shard.{i:02}.addr"))
                        .ok_or_else(|| Error::new(libc::EUCLEAN, "record lacks a shard address"))?
                        .to_string(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            uuid: record.get("uuid")?,
            size: record.get("size")?,
            chunk_size: record.get("chunk_size")?,
            layout,
            placement,
            stale: parse_numbers(record.get_str("stale").unwrap_or(""))?,
            dirty: parse_numbers(record.get_str("dirty").unwrap_or(""))?,
            piece_size,
            parent,
        })
    }

    /// Pieces in all (1 for an object placed itself).
    pub fn pieces(&self) -> u64 {
        match self.piece_size {
            0 => 1,
            piece => self.size.div_ceil(piece),
        }
    }

    /// Whether copy or shard `i` is marked stale.
    pub fn is_stale(&self, i: usize) -> bool {
        self.stale.contains(&i)
    }
}

/// Picks `layout.width()` distinct up OSTs with room for new object
/// `uuid`: the straw2 draw of [`crate::placement`], keyed by the object,
/// weighted by capacity, on distinct failure domains while there are
/// enough. Objects created back to back spread over the whole cluster in
/// proportion to capacity, and a new OST takes its share of new objects.
/// Errors say what the cluster lacks.
pub fn place(map: &ClusterMap, layout: Layout, size: u64, uuid: Uuid) -> Result<Vec<Placed>> {
    let width = layout.width();
    let eligible: Vec<&OstEntry> = map
        .osts
        .iter()
        .filter(|o| o.up && o.free_bytes() >= size / layout_divisor(layout))
        .collect();
    if eligible.len() < width {
        let up = map.osts.iter().filter(|o| o.up).count();
        return Err(Error::new(
            libc::ENOSPC,
            format!(
                "layout {layout} needs {width} OSTs that are up and have room; the cluster has {up} up of {} ({} with room)",
                map.osts.len(),
                eligible.len()
            ),
        ));
    }
    let candidates = candidates(&eligible);
    let chosen = placement::choose(&candidates, placement::piece_key(uuid, 0), width)?;
    Ok(chosen.into_iter().map(|i| placed(eligible[i])).collect())
}

/// The OSTs as [`placement`] draws them: weighted by capacity in MiB.
fn candidates<'a>(osts: &[&'a OstEntry]) -> Vec<placement::Candidate<'a>> {
    osts.iter()
        .map(|o| placement::Candidate {
            id: o.id,
            domain: &o.domain,
            weight: (o.capacity_bytes >> 20).max(1),
        })
        .collect()
}

fn placed(ost: &OstEntry) -> Placed {
    Placed {
        ost: ost.id,
        addr: ost.addr.clone(),
    }
}

/// A new OST for shard `i` of `record` (whose OST is gone): one that is
/// up, has room and holds no other shard of the object, in a failure
/// domain the others do not use when there is one; among those, the
/// straw2 draw for the object and the shard.
pub fn replacement(map: &ClusterMap, record: &ObjectRecord, i: usize) -> Result<Placed> {
    let need = record.size / layout_divisor(record.layout);
    let used: Vec<Uuid> = record.placement.iter().map(|p| p.ost).collect();
    let domain_of = |id: &Uuid| map.osts.iter().find(|o| o.id == *id).map(|o| &o.domain);
    let other_domains: Vec<&String> = used
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .filter_map(|(_, id)| domain_of(id))
        .collect();
    let eligible: Vec<&OstEntry> = map
        .osts
        .iter()
        .filter(|o| o.up && o.free_bytes() >= need && !used.contains(&o.id))
        .collect();
    let apart: Vec<&OstEntry> = eligible
        .iter()
        .copied()
        .filter(|o| !other_domains.contains(&&o.domain))
        .collect();
    let pool = if apart.is_empty() { &eligible } else { &apart };
    if pool.is_empty() {
        return Err(Error::new(
            libc::ENOSPC,
            format!(
                "no OST can take shard {i} of object {}: every OST that is up with room already holds one of its shards",
                record.uuid
            ),
        ));
    }
    let key = placement::piece_key(record.uuid, 0) ^ (i as u64 + 1);
    let chosen = placement::choose(&candidates(pool), key, 1)?;
    Ok(placed(pool[chosen[0]]))
}

/// A copy or shard that is not on the OST the map draws for it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub object: Uuid,
    /// The copy or shard.
    pub shard: usize,
    pub from: Uuid,
    pub to: Uuid,
    /// Bytes it holds (the object's size over the layout's data width).
    pub bytes: u64,
}

/// What would move for `record` to sit where [`place`] puts it on `map`
/// (room aside: the object's own copies already hold theirs). A copy of
/// a mirror moves only when its OST is not among the drawn ones; a shard
/// of an erasure-coded object when its position's OST differs.
pub fn moves(map: &ClusterMap, record: &ObjectRecord) -> Result<Vec<Move>> {
    let wanted = place(map, record.layout, 0, record.uuid)?;
    let wanted: Vec<Uuid> = wanted.iter().map(|p| p.ost).collect();
    let bytes = record.size / layout_divisor(record.layout);
    let now: Vec<Uuid> = record.placement.iter().map(|p| p.ost).collect();
    let pairs: Vec<(usize, Uuid)> = match record.layout {
        Layout::Replicas(_) => {
            let mut free = wanted.iter().filter(|w| !now.contains(w));
            now.iter()
                .enumerate()
                .filter(|(_, o)| !wanted.contains(o))
                .filter_map(|(i, _)| free.next().map(|&to| (i, to)))
                .collect()
        }
        Layout::Erasure { .. } => (0..now.len())
            .filter(|&i| now[i] != wanted[i])
            .map(|i| (i, wanted[i]))
            .collect(),
    };
    Ok(pairs
        .into_iter()
        .map(|(shard, to)| Move {
            object: record.uuid,
            shard,
            from: now[shard],
            to,
            bytes,
        })
        .collect())
}

/// Share of the object's size one OST stores.
fn layout_divisor(layout: Layout) -> u64 {
    match layout {
        Layout::Replicas(_) => 1,
        Layout::Erasure { data, .. } => data as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ost(n: u8, domain: &str, free_mib: u64, up: bool) -> OstEntry {
        OstEntry {
            id: Uuid::from_bytes([n; 16]),
            addr: format!("127.0.0.1:{}", 7000 + u16::from(n)),
            domain: domain.into(),
            capacity_bytes: free_mib << 20,
            used_bytes: 0,
            up,
        }
    }

    #[test]
    fn layouts_parse_and_print() {
        assert_eq!("replicas:3".parse::<Layout>().unwrap(), Layout::Replicas(3));
        assert_eq!(
            "ec:4+2".parse::<Layout>().unwrap(),
            Layout::Erasure { data: 4, parity: 2 }
        );
        let huge = format!("ec:{}+1", usize::MAX);
        for bad in [
            huge.as_str(),
            "replicas:0",
            "replicas:x",
            "ec:4",
            "ec:0+2",
            "raid5",
            "replicas:99",
        ] {
            assert_eq!(
                bad.parse::<Layout>().unwrap_err().errno(),
                libc::EINVAL,
                "{bad}"
            );
        }
        assert_eq!(Layout::Erasure { data: 4, parity: 2 }.to_string(), "ec:4+2");
    }

    #[test]
    fn placement_takes_distinct_domains_and_needs_room() {
        let map = ClusterMap {
            version: 1,
            osts: vec![
                ost(1, "a", 100, true),
                ost(2, "a", 900, true),
                ost(3, "b", 50, true),
                ost(4, "c", 10, false),
            ],
        };
        let domain = |p: &Placed| &map.osts.iter().find(|o| o.id == p.ost).unwrap().domain;
        for _ in 0..20 {
            let placed = place(&map, Layout::Replicas(2), 1 << 20, Uuid::now_v7()).unwrap();
            assert_ne!(
                domain(&placed[0]),
                domain(&placed[1]),
                "a and b, never a twice"
            );
        }
        let placed = place(&map, Layout::Replicas(3), 1 << 20, Uuid::now_v7()).unwrap();
        assert_eq!(placed.len(), 3);
        let err = place(&map, Layout::Replicas(4), 1 << 20, Uuid::now_v7()).unwrap_err();
        assert_eq!(err.errno(), libc::ENOSPC);
        assert!(err.to_string().contains("3 up of 4"), "{err}");
        // Room counts: 60 MiB fits only the two larger OSTs.
        assert!(place(&map, Layout::Replicas(3), 60 << 20, Uuid::now_v7()).is_err());
    }

    #[test]
    fn objects_created_back_to_back_spread_over_every_ost() {
        let mut map = ClusterMap {
            version: 1,
            osts: (1..=8)
                .map(|n| ost(n, &format!("host{}", n % 4), 1000, true))
                .collect(),
        };
        let count = |map: &ClusterMap, objects: &[Vec<Placed>]| -> Vec<usize> {
            map.osts
                .iter()
                .map(|o| objects.iter().flatten().filter(|p| p.ost == o.id).count())
                .collect()
        };
        // Fixed names: the outcome is the same in every run.
        let uuids: Vec<Uuid> = (0..400).map(|i| Uuid::from_u64_pair(i, 42)).collect();
        let objects: Vec<Vec<Placed>> = uuids
            .iter()
            .map(|&u| place(&map, Layout::Replicas(3), 1 << 20, u).unwrap())
            .collect();
        let counts = count(&map, &objects);
        // 1200 copies over 8 OSTs: 150 each, give or take.
        assert!(
            counts.iter().all(|&c| (112..=188).contains(&c)),
            "{counts:?}"
        );
        // The same object is placed the same way again.
        assert_eq!(
            place(&map, Layout::Replicas(3), 1 << 20, uuids[0]).unwrap(),
            objects[0]
        );
        // Two OSTs join: new objects use them.
        map.osts.push(ost(9, "host1", 1000, true));
        map.osts.push(ost(10, "host2", 1000, true));
        let fresh: Vec<Vec<Placed>> = (0..100)
            .map(|i| {
                place(
                    &map,
                    Layout::Replicas(3),
                    1 << 20,
                    Uuid::from_u64_pair(i, 43),
                )
                .unwrap()
            })
            .collect();
        let counts = count(&map, &fresh);
        assert!(counts[8] > 10 && counts[9] > 10, "{counts:?}");
    }

    #[test]
    fn moves_name_the_copies_a_new_map_puts_elsewhere() {
        let mut map = ClusterMap {
            version: 1,
            osts: (1..=8)
                .map(|n| ost(n, &format!("host{}", n % 4), 1000, true))
                .collect(),
        };
        let records: Vec<ObjectRecord> = (0..100)
            .map(|i| {
                let uuid = Uuid::from_u64_pair(i, 44);
                let layout = if i % 2 == 0 {
                    Layout::Replicas(3)
                } else {
                    Layout::Erasure { data: 4, parity: 2 }
                };
                ObjectRecord {
                    uuid,
                    size: 4 << 20,
                    chunk_size: 1 << 20,
                    layout,
                    placement: place(&map, layout, 4 << 20, uuid).unwrap(),
                    stale: Vec::new(),
                    dirty: Vec::new(),
                    piece_size: 0,
                    parent: None,
                }
            })
            .collect();
        let all = |map: &ClusterMap| -> Vec<Move> {
            records
                .iter()
                .flat_map(|r| moves(map, r).unwrap())
                .collect()
        };
        assert!(all(&map).is_empty(), "placed where the map puts them");
        map.osts.push(ost(9, "host1", 1000, true));
        map.osts.push(ost(10, "host2", 1000, true));
        let moved = all(&map);
        let copies: usize = records.iter().map(|r| r.placement.len()).sum();
        let share = moved.len() as f64 / copies as f64;
        assert!((0.1..0.4).contains(&share), "{} of {copies}", moved.len());
        let new = [map.osts[8].id, map.osts[9].id];
        let onto_new = moved.iter().filter(|m| new.contains(&m.to)).count();
        assert!(onto_new * 2 > moved.len(), "mostly onto the new OSTs");
        for m in &moved {
            assert_ne!(m.from, m.to);
            assert!(m.bytes == 4 << 20 || m.bytes == 1 << 20);
        }
    }

    #[test]
    fn pieces_have_their_own_uuids_and_records_keep_them() {
        let parent = Uuid::now_v7();
        let uuids: std::collections::BTreeSet<Uuid> =
            (0..1000).map(|p| piece_uuid(parent, p)).collect();
        assert_eq!(uuids.len(), 1000, "distinct");
        assert!(!uuids.contains(&parent));
        assert_eq!(
            piece_uuid(parent, 7),
            piece_uuid(parent, 7),
            "the same always"
        );
        assert_ne!(piece_uuid(parent, 7), piece_uuid(Uuid::now_v7(), 7));
        let record = ObjectRecord {
            uuid: parent,
            size: (5 << 20) + 4096,
            chunk_size: 1 << 20,
            layout: Layout::Erasure { data: 4, parity: 2 },
            placement: Vec::new(),
            stale: Vec::new(),
            dirty: Vec::new(),
            piece_size: 1 << 20,
            parent: None,
        };
        let back = ObjectRecord::from_record(&record.to_record()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.pieces(), 6);
        let child = ObjectRecord {
            parent: Some(parent),
            piece_size: 0,
            placement: (0..6).map(|n| placed(&ost(n, "d", 1, true))).collect(),
            ..record
        };
        assert_eq!(
            ObjectRecord::from_record(&child.to_record()).unwrap(),
            child
        );
        // A record that places no shards is only good for an object over pieces.
        let broken = ObjectRecord {
            placement: Vec::new(),
            ..child
        };
        assert!(ObjectRecord::from_record(&broken.to_record()).is_err());
    }

    #[test]
    fn replacement_avoids_the_objects_osts_and_their_domains() {
        let map = ClusterMap {
            version: 1,
            osts: vec![
                ost(1, "a", 100, true),
                ost(2, "b", 100, true),
                ost(3, "a", 900, true),
                ost(4, "c", 50, true),
                ost(5, "d", 10, false),
            ],
        };
        let placed = |n: usize| Placed {
            ost: map.osts[n].id,
            addr: map.osts[n].addr.clone(),
        };
        let mut record = ObjectRecord {
            uuid: Uuid::now_v7(),
            size: 1 << 20,
            chunk_size: 1 << 20,
            layout: Layout::Replicas(2),
            placement: vec![placed(0), placed(1)],
            stale: Vec::new(),
            dirty: Vec::new(),
            piece_size: 0,
            parent: None,
        };
        // Copy 1 (domain b) moves: c is a new domain, a is taken by copy 0
        // even though OST 3 there has more room; OST 5 is down.
        assert_eq!(replacement(&map, &record, 1).unwrap().ost, map.osts[3].id);
        record.placement = vec![placed(0), placed(1), placed(3)];
        record.layout = Layout::Replicas(3);
        // Only OST 3 is left: same domain as copy 0, still better than none.
        assert_eq!(replacement(&map, &record, 2).unwrap().ost, map.osts[2].id);
        record.placement.push(placed(2));
        record.layout = Layout::Replicas(4);
        let err = replacement(&map, &record, 0).unwrap_err();
        assert_eq!(err.errno(), libc::ENOSPC);
        assert!(err.to_string().contains("no OST can take shard 0"), "{err}");
    }

    #[test]
    fn records_round_trip() {
        let map = ClusterMap {
            version: 7,
            osts: vec![ost(1, "a", 1, true), ost(2, "b", 2, false)],
        };
        assert_eq!(ClusterMap::from_record(&map.to_record()).unwrap(), map);
        let object = ObjectRecord {
            uuid: Uuid::now_v7(),
            size: 1 << 30,
            chunk_size: 4 << 20,
            layout: Layout::Replicas(2),
            placement: vec![
                Placed {
                    ost: map.osts[0].id,
                    addr: map.osts[0].addr.clone(),
                },
                Placed {
                    ost: map.osts[1].id,
                    addr: map.osts[1].addr.clone(),
                },
            ],
            stale: vec![1],
            dirty: vec![0, 7],
            piece_size: 0,
            parent: None,
        };
        assert_eq!(
            ObjectRecord::from_record(&object.to_record()).unwrap(),
            object
        );
        let mut wrong = object.to_record();
        wrong.set("layout", "replicas:3");
        assert!(ObjectRecord::from_record(&wrong).is_err());
    }
}
