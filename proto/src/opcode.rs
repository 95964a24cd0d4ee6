//! Request kinds.

/// Request kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// Handshake; payload [`Hello`], reply payload [`Welcome`].
    Hello = 1,
    /// Read `length` bytes at `offset`; reply payload: the data.
    Read = 2,
    /// Write the payload at `offset` (`length` = payload length).
    Write = 3,
    /// Make completed writes to the object durable.
    Flush = 4,
    /// Discard `length` bytes at `offset`.
    Discard = 5,
    /// Make `length` bytes at `offset` read as zeros.
    WriteZeroes = 6,
    /// Create the object: `length` = size, `offset` = chunk size.
    Create = 7,
    /// Describe the object; reply payload [`Stat`].
    Stat = 8,
    /// Remove the object.
    Remove = 9,
    /// Set the object's size to `length` (`FLAG_SHRINK` to shrink).
    Resize = 10,
    /// List objects after the header's UUID (nil: from the start), at
    /// most `length`; reply payload [`encode_list`].
    List = 11,
    /// Merge mirror marks into the object's (replace them with
    /// `FLAG_REPLACE`); payload [`Marks`].
    Mark = 12,
    /// Whether the `length` bytes at `offset` hold data; reply payload
    /// [`Extent`].
    Extent = 13,
    /// Refuse changes from now on whose header names a lease epoch below
    /// the header's `epoch` (persisted with the object; never lowered).
    Fence = 14,
    /// rawstor-mdt: an OST registers or heartbeats; payload an
    /// `rawstor::mdt::OstEntry` record.
    OstRegister = 32,
    /// rawstor-mdt: the cluster map; reply payload its record.
    ClusterMap = 33,
    /// rawstor-mdt: place a new object (`length` = size, `offset` = chunk
    /// size, payload `layout=...`); reply payload its object record.
    Place = 34,
    /// rawstor-mdt: an object's record.
    Lookup = 35,
    /// rawstor-mdt: drop an object's record.
    Forget = 36,
    /// rawstor-mdt: change an object's record (payload: `stale_add`,
    /// `dirty_add`, `dirty_clear`, `size`, `replace`, `repaired`); reply
    /// payload the new record.
    Update = 37,
    /// rawstor-mdt: take, renew, break or give back an object's writer
    /// lease (`offset` = `rawstor::mdt::LEASE_BREAK` and friends); reply
    /// payload the object's record.
    Lease = 38,
}

impl Opcode {
    /// The opcode for a byte, if known.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Hello,
            2 => Self::Read,
            3 => Self::Write,
            4 => Self::Flush,
            5 => Self::Discard,
            6 => Self::WriteZeroes,
            7 => Self::Create,
            8 => Self::Stat,
            9 => Self::Remove,
            10 => Self::Resize,
            11 => Self::List,
            12 => Self::Mark,
            13 => Self::Extent,
            14 => Self::Fence,
            32 => Self::OstRegister,
            33 => Self::ClusterMap,
            34 => Self::Place,
            35 => Self::Lookup,
            36 => Self::Forget,
            37 => Self::Update,
            38 => Self::Lease,
            _ => return None,
        })
    }

    /// Whether running the request twice could differ from running it
    /// once (the server remembers such results per session).
    pub fn mutates(self) -> bool {
        matches!(
            self,
            Self::Write
                | Self::Discard
                | Self::WriteZeroes
                | Self::Create
                | Self::Remove
                | Self::Resize
                | Self::Mark
                | Self::Fence
                | Self::Place
                | Self::Forget
        )
    }
}
