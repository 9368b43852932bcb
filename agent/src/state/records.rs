//! The records the state holds, each with its format version and the key
//! it is stored under.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tandem_connectors::{Fingerprint, Key, Row};

use super::*;
use crate::config::Side;

/// One captured change in the change log: the record's key on the side it
/// happened, and the record's values when it was tailed (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Format version.
    pub v: u8,
    /// Position in the log; later entries have larger numbers.
    pub seq: u64,
    /// Where the change happened.
    pub side: Side,
    /// The table pair.
    pub pair: String,
    /// The record's key on `side`.
    pub key: Key,
    /// The record as it was when tailed; `None` when it no longer exists.
    pub row: Option<Row>,
    /// When the change was captured (database clock).
    pub captured_at: DateTime<Utc>,
}

/// A change about to be appended to the log (it gets its `seq` there).
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Where the change happened.
    pub side: Side,
    /// The table pair.
    pub pair: String,
    /// The record's key on `side`.
    pub key: Key,
    /// The record's values, `None` when deleted.
    pub row: Option<Row>,
    /// When it was captured.
    pub captured_at: DateTime<Utc>,
}

/// The ID map's record of one linked pair of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Format version.
    pub v: u8,
    /// Key on the source side.
    pub source_key: Key,
    /// Key on the target side.
    pub target_key: Key,
    /// Per side (source, target): fingerprint of the record as last synced;
    /// `None` when unknown (a link rebuilt from a mapping table).
    pub synced: [Option<Fingerprint>; 2],
    /// Per side: fingerprint of a write that may or may not have committed
    /// (written before the commit, cleared after). Either it or `synced`
    /// means "unchanged since the last sync".
    pub pending: [Option<Fingerprint>; 2],
    /// Per side: log position reached when the agent last wrote there. Log
    /// entries of that side below it were read before that write and are
    /// stale.
    pub written_at: [u64; 2],
    /// The records were deleted; kept as a tombstone so that stale changes
    /// of the deleted records are recognised as such.
    pub deleted: bool,
}

impl Link {
    /// A fresh link between two keys, nothing known about their contents.
    pub fn new(source_key: Key, target_key: Key) -> Link {
        Link {
            v: FORMAT_VERSION,
            source_key,
            target_key,
            synced: [None, None],
            pending: [None, None],
            written_at: [0, 0],
            deleted: false,
        }
    }

    /// The key on `side`.
    pub fn key(&self, side: Side) -> &Key {
        match side {
            Side::Source => &self.source_key,
            Side::Target => &self.target_key,
        }
    }

    /// Whether `fingerprint` is known to be what `side` held after the last
    /// sync (or after a write whose commit is uncertain). Used to recognise
    /// a change that brings nothing new (an echo): unknown is not a match.
    pub fn matches(&self, side: Side, fingerprint: &Fingerprint) -> bool {
        let i = side.index();
        self.synced[i].as_ref() == Some(fingerprint)
            || self.pending[i].as_ref() == Some(fingerprint)
    }

    /// Whether `side` is unchanged since the last sync, judged by the
    /// record's current `fingerprint` there. Used to detect conflicts:
    /// unknown counts as unchanged, so a rebuilt link never invents one.
    pub fn unchanged(&self, side: Side, fingerprint: &Fingerprint) -> bool {
        let i = side.index();
        (self.synced[i].is_none() && self.pending[i].is_none()) || self.matches(side, fingerprint)
    }
}

/// The updates of one transaction about to commit: for each record (by
/// source key), the fingerprint its copy on `dest` will have. Written just
/// before the commit, one record for the whole transaction, and removed
/// with the settlement that records the links; found at start-up, it means
/// the agent stopped in between, and each link takes the fingerprint as
/// pending (see [`Link::pending`]). One record instead of every link
/// rewritten before the commit: a backlog spent a quarter of its time in
/// the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdates {
    /// Format version.
    pub v: u8,
    /// The table pair.
    pub pair: String,
    /// The side written to.
    pub dest: Side,
    /// Source key and the fingerprint of the copy as written.
    pub updates: Vec<(Key, Fingerprint)>,
}

pub(super) fn pending_updates_key(id: u64) -> Vec<u8> {
    let mut key = PENDING_UPDATES.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// A new copy whose transaction was about to commit: written just before
/// the commit and removed once the link is recorded. Found at start-up, it
/// means the agent stopped in between: the copy exists (the link is taken)
/// or it does not (the record is dropped and the change applied again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// Format version.
    pub v: u8,
    /// The table pair.
    pub pair: String,
    /// The side the copy was created on.
    pub dest: Side,
    /// The link as it stands once the copy exists.
    pub link: Link,
    /// The link it replaces (a copy re-created after it went missing).
    pub replaces: Option<Link>,
}

pub(super) fn in_flight_key(pair: &str, dest: Side, key: &Key) -> Vec<u8> {
    let mut prefix = IN_FLIGHT.to_vec();
    prefix.extend_from_slice(dest.to_string().as_bytes());
    prefix.push(b'/');
    pair_key(&prefix, pair, &key.encode())
}

/// A record that could not be applied, with why; later changes of the same
/// record wait here behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Format version.
    pub v: u8,
    /// Where the change came from.
    pub side: Side,
    /// The table pair.
    pub pair: String,
    /// The record's key on `side`.
    pub key: Key,
    /// The latest values of the record (`None`: a delete).
    pub row: Option<Row>,
    /// The error, one line.
    pub reason: String,
    /// When it first failed.
    pub failed_at: DateTime<Utc>,
    /// Changes of this record held behind the failure (including the first).
    pub changes: u64,
}

/// Counts per direction of one pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Records created on the other side.
    pub inserted: u64,
    /// Records updated on the other side.
    pub updated: u64,
    /// Records deleted on the other side.
    pub deleted: u64,
}

/// Running figures of one table pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairStats {
    /// Format version.
    #[serde(default)]
    pub v: u8,
    /// Applied counts, by the side the change came from (source, target).
    pub applied: [Applied; 2],
    /// Conflicts resolved.
    pub conflicts: u64,
    /// Last time a pass finished with nothing left to apply for this pair.
    pub last_sync: Option<DateTime<Utc>>,
    /// Capture-to-apply delay of the last applied change, in milliseconds.
    pub last_lag_ms: Option<i64>,
}

/// Where a first-sync copy of one pair and direction stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyCheckpoint {
    /// Format version.
    pub v: u8,
    /// The last key copied (rows are read in key order).
    pub after: Option<Key>,
    /// Whether the copy is complete.
    pub done: bool,
}

/// A record kept in the store, with its format version.
pub(super) trait Record: DeserializeOwned {
    /// What one is, in messages ("a link").
    const KIND: &'static str;
    /// The oldest format this build reads.
    const OLDEST: u8 = 1;
    /// The format it was written in.
    fn format(&self) -> u8;
}

macro_rules! record {
    ($type:ty, $kind:literal) => {
        impl Record for $type {
            const KIND: &'static str = $kind;
            fn format(&self) -> u8 {
                self.v
            }
        }
    };
}

record!(LogEntry, "a change-log entry");
record!(Link, "a link");
record!(PendingUpdates, "a record of pending updates");
record!(InFlight, "an in-flight copy");
record!(DeadLetter, "a dead letter");
record!(CopyCheckpoint, "a first-sync checkpoint");

impl Record for PairStats {
    const KIND: &'static str = "a pair's figures";
    // Figures of releases before they carried a version read as format 0,
    // as do those that started from the default figures before this build.
    const OLDEST: u8 = 0;
    fn format(&self) -> u8 {
        self.v
    }
}

/// The version of a JSON record, whatever else it holds.
#[derive(Deserialize)]
pub(super) struct Head {
    #[serde(default)]
    pub(super) v: u8,
}
