//! What the MDT knows, and the control files it keeps it in:
//!
//! | file (in every copy directory) | content |
//! |---|---|
//! | `mdt-id` | the MDT's UUID (clients check it on reconnect) |
//! | `cluster-map` | registered OSTs: id, address, failure domain |
//! | `objects/<uuid>` | an object's size, chunk size, layout, placement |
//!
//! Every write goes to every copy (atomic replace, fsync) before the
//! request is answered. Capacity, usage and liveness come from heartbeats
//! and live in memory only: OSTs heartbeat every second, so a restarted
//! MDT knows them again within seconds.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rawstor::Uuid;
use rawstor::error::{Error, Result};
use rawstor::mdt::{self, ClusterMap, Layout, ObjectRecord, OstEntry};
use rawstor::store::WORK_DIR;
use rawstor::store::control;
use rawstor::store::record::Record;
use rawstor::wire::{Header, Opcode};

const ID_FILE: &str = "mdt-id";
const MAP_FILE: &str = "cluster-map";
const OBJECTS_DIR: &str = "objects";

/// An OST and when it last heartbeated.
struct Member {
    entry: OstEntry,
    last_seen: Option<Instant>,
}

struct MapState {
    version: u64,
    members: Vec<Member>,
}

pub struct Mdt {
    copies: Vec<PathBuf>,
    id: Uuid,
    heartbeat_timeout: Duration,
    map: Mutex<MapState>,
    /// Serialises object record changes (create, forget).
    objects: Mutex<()>,
}

impl Mdt {
    /// Opens (creating when missing) the records in `copies`.
    pub fn open(copies: Vec<PathBuf>, heartbeat_timeout: Duration) -> Result<Self> {
        for copy in &copies {
            for dir in [copy.join(WORK_DIR), copy.join(OBJECTS_DIR)] {
                fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
            }
        }
        let id = match control::read(&copies, ID_FILE, |_| Ok(()))?.best {
            Some((_, record)) => record.get("id")?,
            None => {
                let id = Uuid::new_v7();
                let mut record = Record::new();
                record.set("id", id);
                control::write(&copies, ID_FILE, 1, &record)?;
                id
            }
        };
        let (version, members) = match control::read(&copies, MAP_FILE, |_| Ok(()))?.best {
            Some((version, record)) => {
                let map = ClusterMap::from_record(&record)?;
                let members = map
                    .osts
                    .into_iter()
                    .map(|entry| Member {
                        entry,
                        last_seen: None,
                    })
                    .collect();
                (version, members)
            }
            None => (0, Vec::new()),
        };
        Ok(Self {
            copies,
            id,
            heartbeat_timeout,
            map: Mutex::new(MapState { version, members }),
            objects: Mutex::new(()),
        })
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Answers one request (after Hello).
    pub fn handle(&self, op: Opcode, header: &Header, payload: &[u8]) -> Result<Vec<u8>> {
        match op {
            Opcode::OstRegister => self.register(payload).map(|()| Vec::new()),
            Opcode::ClusterMap => Ok(self.cluster_map().to_record().encode()),
            Opcode::Place => self.place(header, payload),
            Opcode::Lookup => Ok(self.lookup(header.uuid())?.to_record().encode()),
            Opcode::Forget => self.forget(header.uuid()).map(|()| Vec::new()),
            _ => Err(Error::new(
                libc::EOPNOTSUPP,
                format!("{op:?} is a rawstor-ost request; this is a rawstor-mdt"),
            )),
        }
    }

    /// The map with liveness as of now.
    pub fn cluster_map(&self) -> ClusterMap {
        let state = self.map.lock();
        let now = Instant::now();
        ClusterMap {
            version: state.version,
            osts: state
                .members
                .iter()
                .map(|m| OstEntry {
                    up: m
                        .last_seen
                        .is_some_and(|t| now.duration_since(t) < self.heartbeat_timeout),
                    ..m.entry.clone()
                })
                .collect(),
        }
    }

    /// A registration or heartbeat. The map file changes only when an OST
    /// is new or moved (address, failure domain).
    fn register(&self, payload: &[u8]) -> Result<()> {
        let entry = OstEntry::take(&Record::decode(payload)?, "")?;
        if entry.addr.is_empty() || entry.domain.is_empty() {
            return Err(Error::invalid(
                "an OST registers with an address and a failure domain",
            ));
        }
        let mut state = self.map.lock();
        let changed = match state.members.iter_mut().find(|m| m.entry.id == entry.id) {
            Some(member) => {
                let moved = member.entry.addr != entry.addr || member.entry.domain != entry.domain;
                member.entry = entry;
                member.last_seen = Some(Instant::now());
                moved
            }
            None => {
                eprintln!(
                    "rawstor-mdt: OST {} joins at {} ({})",
                    entry.id, entry.addr, entry.domain
                );
                state.members.push(Member {
                    entry,
                    last_seen: Some(Instant::now()),
                });
                true
            }
        };
        if changed {
            let map = ClusterMap {
                version: state.version + 1,
                osts: state.members.iter().map(|m| m.entry.clone()).collect(),
            };
            control::write(&self.copies, MAP_FILE, map.version, &map.to_record())?;
            state.version = map.version;
        }
        Ok(())
    }

    /// Places a new object and records it; a retried request with the same
    /// parameters gets the same record.
    fn place(&self, header: &Header, payload: &[u8]) -> Result<Vec<u8>> {
        let uuid = header.uuid();
        let request = Record::decode(payload)?;
        let layout: Layout = request
            .get_str("layout")
            .ok_or_else(|| Error::invalid("Place without a layout"))?
            .parse()?;
        let _serial = self.objects.lock();
        let rel = object_file(uuid);
        if let Some((_, existing)) = control::read(&self.copies, &rel, |_| Ok(()))?.best {
            let record = ObjectRecord::from_record(&existing)?;
            if record.size == header.length
                && record.chunk_size == header.offset
                && record.layout == layout
            {
                return Ok(existing.encode());
            }
            return Err(Error::new(
                libc::EEXIST,
                format!("object {uuid} already exists"),
            ));
        }
        let placement = mdt::place(&self.cluster_map(), layout, header.length)?;
        let record = ObjectRecord {
            uuid,
            size: header.length,
            chunk_size: header.offset,
            layout,
            placement,
        };
        let encoded = record.to_record();
        control::write(&self.copies, &rel, 1, &encoded)?;
        Ok(encoded.encode())
    }

    /// An object's record, with each OST's address as the map has it now
    /// (an OST that restarted elsewhere keeps its id).
    fn lookup(&self, uuid: Uuid) -> Result<ObjectRecord> {
        let Some((_, record)) = control::read(&self.copies, &object_file(uuid), |_| Ok(()))?.best
        else {
            return Err(Error::new(
                libc::ENOENT,
                format!("object {uuid} does not exist"),
            ));
        };
        let mut record = ObjectRecord::from_record(&record)?;
        let state = self.map.lock();
        for placed in &mut record.placement {
            if let Some(member) = state.members.iter().find(|m| m.entry.id == placed.ost) {
                placed.addr.clone_from(&member.entry.addr);
            }
        }
        Ok(record)
    }

    fn forget(&self, uuid: Uuid) -> Result<()> {
        let _serial = self.objects.lock();
        let rel = object_file(uuid);
        let mut found = false;
        for copy in &self.copies {
            match fs::remove_file(copy.join(&rel)) {
                Ok(()) => found = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("cannot remove the record of {uuid}"), e)),
            }
        }
        if !found {
            return Err(Error::new(
                libc::ENOENT,
                format!("object {uuid} does not exist"),
            ));
        }
        Ok(())
    }
}

fn object_file(uuid: Uuid) -> String {
    format!("{OBJECTS_DIR}/{uuid}")
}
