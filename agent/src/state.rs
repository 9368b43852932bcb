//! The records the agent keeps in its state directory: the change log, the
//! ID map, first-sync checkpoints, dead letters and per-pair figures.
//!
//! Every record carries a format version (`v`) so a later release can read
//! what an earlier one wrote. All writes of one step go into one
//! [`StateBatch`], applied atomically.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tandem_connectors::{Fingerprint, Key, Row};

use crate::config::Side;
use crate::store::{Batch, Kv, MemoryKv, SledKv, StoreError, StoreResult};

/// Format version of the records written by this build.
pub const FORMAT_VERSION: u8 = 1;

const LOG: &[u8] = b"log/";
const LINK_BY_SOURCE: &[u8] = b"ls/";
const LINK_BY_TARGET: &[u8] = b"lt/";
const CHECKPOINT: &[u8] = b"ck/";
const DEAD_LETTER: &[u8] = b"dl/";
const STATS: &[u8] = b"st/";
const TOMBSTONE: &[u8] = b"tomb/";
const IN_FLIGHT: &[u8] = b"if/";

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

fn in_flight_key(pair: &str, dest: Side, key: &Key) -> Vec<u8> {
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

/// The agent's state, over any [`Kv`].
#[derive(Clone)]
pub struct State {
    kv: Arc<dyn Kv>,
}

/// Writes to apply atomically with [`State::commit`].
#[derive(Default)]
pub struct StateBatch {
    batch: Batch,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state records always serialize")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn pair_key(prefix: &[u8], pair: &str, rest: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + pair.len() + rest.len() + 1);
    key.extend_from_slice(prefix);
    key.extend_from_slice(pair.as_bytes());
    key.push(0);
    key.extend_from_slice(rest.as_bytes());
    key
}

fn log_key(seq: u64) -> Vec<u8> {
    let mut key = LOG.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn dead_letter_key(side: Side, pair: &str, key: &Key) -> Vec<u8> {
    let mut prefix = DEAD_LETTER.to_vec();
    prefix.extend_from_slice(side.to_string().as_bytes());
    prefix.push(b'/');
    pair_key(&prefix, pair, &key.encode())
}

impl StateBatch {
    /// Stores `link` under both of its keys (and in the tombstone index when
    /// it is one).
    pub fn put_link(&mut self, pair: &str, link: &Link) {
        let source = link.source_key.encode();
        let tomb = pair_key(TOMBSTONE, pair, &source);
        if link.deleted {
            self.batch.put(tomb, Vec::new());
        } else {
            self.batch.delete(tomb);
        }
        self.batch
            .put(pair_key(LINK_BY_SOURCE, pair, &source), encode(link));
        self.batch.put(
            pair_key(LINK_BY_TARGET, pair, &link.target_key.encode()),
            source.into_bytes(),
        );
    }

    /// Removes the link (both keys) for good.
    pub fn remove_link(&mut self, pair: &str, link: &Link) {
        self.batch
            .delete(pair_key(TOMBSTONE, pair, &link.source_key.encode()));
        self.batch
            .delete(pair_key(LINK_BY_SOURCE, pair, &link.source_key.encode()));
        self.batch
            .delete(pair_key(LINK_BY_TARGET, pair, &link.target_key.encode()));
    }

    /// Removes a stale target-key index entry (after a record was re-created
    /// with a new key).
    pub fn remove_target_index(&mut self, pair: &str, target_key: &Key) {
        self.batch
            .delete(pair_key(LINK_BY_TARGET, pair, &target_key.encode()));
    }

    /// Records a new copy about to be committed.
    pub fn put_in_flight(&mut self, record: &InFlight) {
        let key = in_flight_key(&record.pair, record.dest, record.link.key(record.dest));
        self.batch.put(key, encode(record));
    }

    /// Forgets an in-flight record (its link is settled).
    pub fn remove_in_flight(&mut self, pair: &str, dest: Side, key: &Key) {
        self.batch.delete(in_flight_key(pair, dest, key));
    }

    /// Removes change-log entries.
    pub fn remove_log(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            self.batch.delete(log_key(seq));
        }
    }

    /// Stores a first-sync checkpoint.
    pub fn put_checkpoint(&mut self, name: &str, checkpoint: &CopyCheckpoint) {
        self.batch
            .put(pair_key(CHECKPOINT, name, ""), encode(checkpoint));
    }

    /// Stores a dead letter.
    pub fn put_dead_letter(&mut self, letter: &DeadLetter) {
        self.batch.put(
            dead_letter_key(letter.side, &letter.pair, &letter.key),
            encode(letter),
        );
    }

    /// Removes a dead letter.
    pub fn remove_dead_letter(&mut self, letter: &DeadLetter) {
        self.batch
            .delete(dead_letter_key(letter.side, &letter.pair, &letter.key));
    }

    /// Stores a pair's figures.
    pub fn put_stats(&mut self, pair: &str, stats: &PairStats) {
        self.batch.put(pair_key(STATS, pair, ""), encode(stats));
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

impl State {
    /// Opens the state in `dir` (created when missing).
    pub fn open(dir: &Path) -> StoreResult<State> {
        Ok(State {
            kv: Arc::new(SledKv::open(dir)?),
        })
    }

    /// A state kept in memory only (for tests).
    pub fn in_memory() -> State {
        State {
            kv: Arc::new(MemoryKv::default()),
        }
    }

    /// Opens the store again after a write failed (see [`Kv::reopen`]).
    pub fn reopen(&self) -> StoreResult<()> {
        self.kv.reopen()
    }

    /// Applies `batch` atomically; with `durable`, also flushes to disk.
    pub fn commit(&self, batch: StateBatch, durable: bool) -> StoreResult<()> {
        if !batch.is_empty() {
            self.kv.apply(batch.batch)?;
        }
        if durable {
            self.kv.flush()?;
        }
        Ok(())
    }

    /// A log position larger than that of every entry appended so far.
    pub fn log_position(&self) -> StoreResult<u64> {
        self.kv.next_id()
    }

    /// Appends entries to the change log and flushes: when this returns the
    /// entries survive a crash, so their change rows may be deleted.
    pub fn append_log(&self, entries: Vec<NewEntry>) -> StoreResult<()> {
        self.append_log_with(entries, StateBatch::default())
    }

    /// Appends entries and applies `also` in the same atomic write (a
    /// first-sync checkpoint moves with the rows it covers), then flushes.
    pub fn append_log_with(&self, entries: Vec<NewEntry>, also: StateBatch) -> StoreResult<()> {
        let mut batch = also.batch;
        for entry in entries {
            let seq = self.kv.next_id()?;
            let record = LogEntry {
                v: FORMAT_VERSION,
                seq,
                side: entry.side,
                pair: entry.pair,
                key: entry.key,
                row: entry.row,
                captured_at: entry.captured_at,
            };
            batch.put(log_key(seq), encode(&record));
        }
        self.kv.apply(batch)?;
        self.kv.flush()
    }

    /// The oldest `limit` log entries, in log order.
    pub fn log_entries(&self, limit: usize) -> StoreResult<Vec<LogEntry>> {
        self.kv
            .scan(LOG, None, limit)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Change-log entries per pair.
    pub fn log_counts(&self) -> StoreResult<std::collections::BTreeMap<String, u64>> {
        let mut counts = std::collections::BTreeMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.kv.scan(LOG, after.as_deref(), 1000)?;
            if page.is_empty() {
                return Ok(counts);
            }
            after = page.last().map(|(k, _)| k.clone());
            for (k, v) in page {
                let entry: LogEntry = decode(&k, &v)?;
                *counts.entry(entry.pair).or_default() += 1;
            }
        }
    }

    /// Number of entries in the change log.
    pub fn log_len(&self) -> StoreResult<usize> {
        self.kv.count(LOG)
    }

    /// The link whose key on `side` is `key`, tombstones included.
    pub fn link(&self, pair: &str, side: Side, key: &Key) -> StoreResult<Option<Link>> {
        let source_key = match side {
            Side::Source => key.encode(),
            Side::Target => {
                let index = pair_key(LINK_BY_TARGET, pair, &key.encode());
                match self.kv.get(&index)? {
                    Some(source) => String::from_utf8_lossy(&source).into_owned(),
                    None => return Ok(None),
                }
            }
        };
        let record = pair_key(LINK_BY_SOURCE, pair, &source_key);
        match self.kv.get(&record)? {
            Some(bytes) => {
                let link: Link = decode(&record, &bytes)?;
                // The target index may point at a link that has moved on to
                // a new target key; only an exact match counts.
                Ok((link.key(side) == key).then_some(link))
            }
            None => Ok(None),
        }
    }

    /// Every link of `pair` (tombstones included), in source-key order.
    pub fn links(&self, pair: &str) -> StoreResult<Vec<Link>> {
        let prefix = pair_key(LINK_BY_SOURCE, pair, "");
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.kv.scan(&prefix, after.as_deref(), 1000)?;
            if page.is_empty() {
                return Ok(out);
            }
            after = page.last().map(|(k, _)| k.clone());
            for (k, v) in page {
                out.push(decode(&k, &v)?);
            }
        }
    }

    /// Forgets every tombstone. Safe once the change log is empty: a stale
    /// change still in a change table is re-read when tailed and then finds
    /// its record gone.
    pub fn purge_tombstones(&self) -> StoreResult<usize> {
        let mut purged = 0;
        loop {
            let page = self.kv.scan(TOMBSTONE, None, 1000)?;
            if page.is_empty() {
                return Ok(purged);
            }
            let mut batch = Batch::default();
            for (k, _) in page {
                let rest = &k[TOMBSTONE.len()..];
                let mut link_key = LINK_BY_SOURCE.to_vec();
                link_key.extend_from_slice(rest);
                if let Some(bytes) = self.kv.get(&link_key)? {
                    let link: Link = decode(&link_key, &bytes)?;
                    let pair_len = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                    let pair = String::from_utf8_lossy(&rest[..pair_len]).into_owned();
                    if link.deleted {
                        batch.delete(link_key);
                        batch.delete(pair_key(LINK_BY_TARGET, &pair, &link.target_key.encode()));
                    }
                }
                batch.delete(k);
                purged += 1;
            }
            self.kv.apply(batch)?;
        }
    }

    /// A first-sync checkpoint.
    pub fn checkpoint(&self, name: &str) -> StoreResult<Option<CopyCheckpoint>> {
        let key = pair_key(CHECKPOINT, name, "");
        self.kv.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// The dead letter of a record, if it has one.
    pub fn dead_letter(
        &self,
        side: Side,
        pair: &str,
        key: &Key,
    ) -> StoreResult<Option<DeadLetter>> {
        let k = dead_letter_key(side, pair, key);
        self.kv.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Every in-flight record.
    pub fn in_flight(&self) -> StoreResult<Vec<InFlight>> {
        self.kv
            .scan(IN_FLIGHT, None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Every dead letter.
    pub fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        self.kv
            .scan(DEAD_LETTER, None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// A pair's figures (zero when none recorded yet).
    pub fn stats(&self, pair: &str) -> StoreResult<PairStats> {
        let key = pair_key(STATS, pair, "");
        Ok(self
            .kv
            .get(&key)?
            .map(|v| decode(&key, &v))
            .transpose()?
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_connectors::Value;

    fn key(i: i64) -> Key {
        Key(vec![Value::Int(i)])
    }

    #[test]
    fn log_keeps_order_and_removes_by_identity() {
        let state = State::in_memory();
        let entry = |i| NewEntry {
            side: Side::Source,
            pair: "p".into(),
            key: key(i),
            row: None,
            captured_at: Utc::now(),
        };
        state
            .append_log(vec![entry(1), entry(2), entry(3)])
            .unwrap();
        let entries = state.log_entries(10).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
            [key(1), key(2), key(3)]
        );
        assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
        let mut batch = StateBatch::default();
        batch.remove_log([entries[1].seq]);
        state.commit(batch, true).unwrap();
        assert_eq!(state.log_len().unwrap(), 2);
        assert!(state.log_position().unwrap() > entries[2].seq);
    }

    #[test]
    fn links_are_found_from_both_sides_and_only_exactly() {
        let state = State::in_memory();
        let mut link = Link::new(key(1), key(100));
        let mut batch = StateBatch::default();
        batch.put_link("p", &link);
        state.commit(batch, false).unwrap();
        assert_eq!(
            state
                .link("p", Side::Target, &key(100))
                .unwrap()
                .unwrap()
                .source_key,
            key(1)
        );
        assert!(state.link("q", Side::Source, &key(1)).unwrap().is_none());
        // Re-created under a new target key: the old target key finds nothing.
        link.target_key = key(200);
        let mut batch = StateBatch::default();
        batch.put_link("p", &link);
        state.commit(batch, false).unwrap();
        assert!(state.link("p", Side::Target, &key(100)).unwrap().is_none());
        assert_eq!(state.links("p").unwrap().len(), 1);
        // A tombstone is found until purged.
        link.deleted = true;
        let mut batch = StateBatch::default();
        batch.put_link("p", &link);
        state.commit(batch, false).unwrap();
        assert!(
            state
                .link("p", Side::Target, &key(200))
                .unwrap()
                .unwrap()
                .deleted
        );
        assert_eq!(state.purge_tombstones().unwrap(), 1);
        assert!(state.link("p", Side::Source, &key(1)).unwrap().is_none());
        assert!(state.link("p", Side::Target, &key(200)).unwrap().is_none());
    }

    #[test]
    fn unknown_fingerprints_count_as_unchanged() {
        let row: Row = [("a".to_owned(), Value::Int(1))].into();
        let other: Row = [("a".to_owned(), Value::Int(2))].into();
        let mut link = Link::new(key(1), key(2));
        assert!(link.unchanged(Side::Target, &Fingerprint::of(&row)));
        assert!(!link.matches(Side::Target, &Fingerprint::of(&row)));
        link.synced[1] = Some(Fingerprint::of(&row));
        assert!(!link.unchanged(Side::Target, &Fingerprint::of(&other)));
        link.pending[1] = Some(Fingerprint::of(&other));
        assert!(link.unchanged(Side::Target, &Fingerprint::of(&other)));
    }
}
