//! The records the agent keeps in its state directory: the change log, the
//! ID map, first-sync checkpoints, dead letters and per-pair figures.
//!
//! Every record carries a format version (`v`) so a later release can read
//! what an earlier one wrote, and so this build refuses, by name, what a
//! later one wrote: every read checks the version of the record it decodes,
//! and the store keeps the newest format it may hold under a key of its own
//! ([`State::open`] checks it first). All writes of one step go into one
//! [`StateBatch`], applied atomically.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_connectors::{Fingerprint, Key};

use crate::config::Side;
use crate::store::{Batch, Kv, MemoryKv, SledKv, StoreError, StoreResult};

/// Format version of the records written by this build; also the newest
/// it reads.
pub const FORMAT_VERSION: u8 = 1;

const LOG: &[u8] = b"log/";
const LINK_BY_SOURCE: &[u8] = b"ls/";
const LINK_BY_TARGET: &[u8] = b"lt/";
const CHECKPOINT: &[u8] = b"ck/";
const DEAD_LETTER: &[u8] = b"dl/";
const STATS: &[u8] = b"st/";
const TOMBSTONE: &[u8] = b"tomb/";
const IN_FLIGHT: &[u8] = b"if/";
const PENDING_UPDATES: &[u8] = b"pu/";
/// Present while every key pair in the databases' mapping tables is linked
/// here too (see [`State::links_complete`]).
const LINKS_COMPLETE: &[u8] = b"meta/links-complete";
/// The newest format of the records the store may hold (one byte): written
/// when a build opens the store, so that an older build, which would not
/// know those records, is refused at once rather than at the first one it
/// reads. Stores of releases before this key hold format 1 records.
const STORE_FORMAT: &[u8] = b"meta/format";

mod records;
#[cfg(test)]
mod tests;

pub use records::*;
use records::{in_flight_key, pending_updates_key, Head, Record};

/// The agent's state, over any [`Kv`].
#[derive(Clone)]
pub struct State {
    kv: Arc<dyn Kv>,
    /// The state directory, for messages.
    dir: Arc<str>,
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

/// First byte of a link in its binary form (JSON, the form earlier
/// releases wrote, starts with `{`).
const LINK_BINARY: u8 = 1;

/// A link in binary form. Links are the state's most numerous records, one
/// per synced record: as JSON (fingerprints as arrays of numbers) one took
/// about three times the bytes, which the store writes and caches.
///
/// Layout: tag, format version, flags (deleted; which of synced[0..2],
/// pending[0..2] are present), written_at[0..2] (u64 LE), the present
/// fingerprints (16 bytes each, in flag order), then source and target key
/// ([`Key::encode`]) each after its length (u32 LE).
fn encode_link(link: &Link) -> Vec<u8> {
    let (source, target) = (link.source_key.encode(), link.target_key.encode());
    let mut out = Vec::with_capacity(27 + 64 + 8 + source.len() + target.len());
    out.push(LINK_BINARY);
    out.push(link.v);
    let prints = [
        link.synced[0],
        link.synced[1],
        link.pending[0],
        link.pending[1],
    ];
    let mut flags = u8::from(link.deleted);
    for (i, print) in prints.iter().enumerate() {
        if print.is_some() {
            flags |= 2 << i;
        }
    }
    out.push(flags);
    for at in link.written_at {
        out.extend_from_slice(&at.to_le_bytes());
    }
    for print in prints.iter().flatten() {
        out.extend_from_slice(&print.0);
    }
    for key in [source, target] {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
    }
    out
}

/// Reads a link written by [`encode_link`], or as JSON by earlier releases.
fn decode_link(key: &[u8], bytes: &[u8]) -> StoreResult<Link> {
    if bytes.first() != Some(&LINK_BINARY) {
        return decode(key, bytes);
    }
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    };
    let mut rest = &bytes[1..];
    let mut take = |n: usize| -> StoreResult<&[u8]> {
        if rest.len() < n {
            return Err(corrupt("the link is cut short"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let v = take(1)?[0];
    let flags = take(1)?[0];
    let mut written_at = [0u64; 2];
    for at in &mut written_at {
        *at = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
    }
    let mut prints = [None; 4];
    for (i, print) in prints.iter_mut().enumerate() {
        if flags & (2 << i) != 0 {
            *print = Some(Fingerprint(take(16)?.try_into().expect("16 bytes")));
        }
    }
    let mut keys = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let text = std::str::from_utf8(take(len)?).map_err(|_| corrupt("a key is not UTF-8"))?;
        keys.push(Key::decode(text).map_err(|e| corrupt(&e.to_string()))?);
    }
    if !rest.is_empty() {
        return Err(corrupt("the link has trailing bytes"));
    }
    let target_key = keys.pop().expect("two keys");
    let source_key = keys.pop().expect("two keys");
    Ok(Link {
        v,
        source_key,
        target_key,
        synced: [prints[0], prints[1]],
        pending: [prints[2], prints[3]],
        written_at,
        deleted: flags & 1 != 0,
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
    ///
    /// A live link does not take its source key out of the tombstone index:
    /// an entry left there by a tombstone that came back to life is
    /// harmless (purging looks at the link itself) and saves a write per
    /// link.
    pub fn put_link(&mut self, pair: &str, link: &Link) {
        let source = link.source_key.encode();
        if link.deleted {
            self.batch
                .put(pair_key(TOMBSTONE, pair, &source), Vec::new());
        }
        self.batch
            .put(pair_key(LINK_BY_SOURCE, pair, &source), encode_link(link));
        self.batch.put(
            pair_key(LINK_BY_TARGET, pair, &link.target_key.encode()),
            source.into_bytes(),
        );
    }

    /// Stores a new version of a live link whose keys are those of the
    /// stored one (`stored`): only the record itself changes, the target
    /// index already points at it.
    pub fn update_link(&mut self, pair: &str, stored: &Link, link: &Link) {
        let unchanged_index = !stored.deleted
            && !link.deleted
            && stored.source_key == link.source_key
            && stored.target_key == link.target_key;
        if unchanged_index {
            self.batch.put(
                pair_key(LINK_BY_SOURCE, pair, &link.source_key.encode()),
                encode_link(link),
            );
        } else {
            self.put_link(pair, link);
        }
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

    /// Records the updates of a transaction about to commit, under `id`
    /// (unique: a log position taken for it).
    pub fn put_pending_updates(&mut self, id: u64, updates: &PendingUpdates) {
        self.batch.put(pending_updates_key(id), encode(updates));
    }

    /// Forgets the pending updates `id` (settled, or never committed).
    pub fn remove_pending_updates(&mut self, id: u64) {
        self.batch.delete(pending_updates_key(id));
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

    /// Records that every key pair in the mapping tables is linked in the
    /// state once this batch is applied: the copies committed since
    /// [`State::expect_unrecorded_links`] are linked in it.
    pub fn mark_links_complete(&mut self) {
        self.batch.put(LINKS_COMPLETE.to_vec(), vec![1]);
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
    /// Opens the state in `dir` (created when missing). A store written by
    /// a newer release is refused ([`StoreError::NewerFormat`]); any other
    /// is marked as holding this build's format from now on.
    pub fn open(dir: &Path) -> StoreResult<State> {
        State::over(Arc::new(SledKv::open(dir)?), dir.display().to_string())
    }

    /// A state kept in memory only (for tests).
    pub fn in_memory() -> State {
        State::over(Arc::new(MemoryKv::default()), "(in memory)".to_owned())
            .expect("a new store in memory takes this build's format")
    }

    fn over(kv: Arc<dyn Kv>, dir: String) -> StoreResult<State> {
        let state = State {
            kv,
            dir: dir.into(),
        };
        state.claim_format()?;
        Ok(state)
    }

    /// Checks the store's format marker, then sets it to this build's
    /// format: from now on the store may hold records in it. A store
    /// without one was written before the marker, in format 1.
    fn claim_format(&self) -> StoreResult<()> {
        let found = match self.kv.get(STORE_FORMAT)?.as_deref() {
            None => None,
            Some(&[v]) => Some(v),
            Some(_) => {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(STORE_FORMAT).into_owned(),
                    reason: "the format marker is not one byte".into(),
                })
            }
        };
        if let Some(v) = found {
            self.check_format("the store", v, 1)?;
        }
        if found != Some(FORMAT_VERSION) {
            let mut batch = Batch::default();
            batch.put(STORE_FORMAT.to_vec(), vec![FORMAT_VERSION]);
            self.kv.apply(batch)?;
            self.kv.flush()?;
        }
        Ok(())
    }

    /// Refuses a format this build does not read: newer than its own, or
    /// older than `oldest`.
    fn check_format(&self, record: &'static str, found: u8, oldest: u8) -> StoreResult<()> {
        match self.format_error(record, found, oldest) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn format_error(&self, record: &'static str, found: u8, oldest: u8) -> Option<StoreError> {
        if found > FORMAT_VERSION {
            return Some(StoreError::NewerFormat {
                dir: self.dir.to_string(),
                record,
                found,
                known: FORMAT_VERSION,
            });
        }
        (found < oldest).then(|| StoreError::UnknownFormat {
            dir: self.dir.to_string(),
            record,
            found,
            oldest,
            known: FORMAT_VERSION,
        })
    }

    /// Decodes a JSON record, of a format this build reads.
    fn read<T: Record>(&self, key: &[u8], bytes: &[u8]) -> StoreResult<T> {
        match decode::<T>(key, bytes) {
            Ok(record) => {
                self.check_format(T::KIND, record.format(), T::OLDEST)?;
                Ok(record)
            }
            // A newer release may have reshaped the record: its version
            // says why it cannot be read better than the parse error.
            Err(e) => match serde_json::from_slice::<Head>(bytes) {
                Ok(Head { v }) => Err(self.format_error(T::KIND, v, T::OLDEST).unwrap_or(e)),
                Err(_) => Err(e),
            },
        }
    }

    /// Decodes a link, binary or JSON, of a format this build reads.
    fn read_link(&self, key: &[u8], bytes: &[u8]) -> StoreResult<Link> {
        match bytes {
            // The version comes right after the tag, checked before the
            // rest: a newer format may lay that out differently.
            [LINK_BINARY, v, ..] => {
                self.check_format(Link::KIND, *v, Link::OLDEST)?;
                decode_link(key, bytes)
            }
            [LINK_BINARY] => decode_link(key, bytes),
            _ => self.read(key, bytes),
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
        self.log_entries_after(None, limit)
    }

    /// The oldest `limit` log entries after position `after`, in log order.
    pub fn log_entries_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<LogEntry>> {
        let after = after.map(log_key);
        self.kv
            .scan(LOG, after.as_deref(), limit)?
            .into_iter()
            .map(|(k, v)| self.read(&k, &v))
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
                let entry: LogEntry = self.read(&k, &v)?;
                *counts.entry(entry.pair).or_default() += 1;
            }
        }
    }

    /// Number of entries in the change log.
    pub fn log_len(&self) -> StoreResult<usize> {
        self.kv.count(LOG)
    }

    /// Number of entries in the change log at position `seq` or before:
    /// what is left of a window of entries, counted without reading the
    /// rest of a long log.
    pub fn log_len_through(&self, seq: u64) -> StoreResult<usize> {
        self.kv.count_through(LOG, &log_key(seq))
    }

    /// Whether the change log holds no entry.
    pub fn log_is_empty(&self) -> StoreResult<bool> {
        Ok(self.kv.scan(LOG, None, 1)?.is_empty())
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
                let link = self.read_link(&record, &bytes)?;
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
                out.push(self.read_link(&k, &v)?);
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
                    let link = self.read_link(&link_key, &bytes)?;
                    let pair_len = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                    let pair = String::from_utf8_lossy(&rest[..pair_len]).into_owned();
                    if link.deleted {
                        batch.delete(link_key);
                        batch.delete(pair_key(LINK_BY_TARGET, &pair, &link.target_key.encode()));
                        purged += 1;
                    }
                }
                batch.delete(k);
            }
            self.kv.apply(batch)?;
        }
    }

    /// A first-sync checkpoint.
    pub fn checkpoint(&self, name: &str) -> StoreResult<Option<CopyCheckpoint>> {
        let key = pair_key(CHECKPOINT, name, "");
        self.kv.get(&key)?.map(|v| self.read(&key, &v)).transpose()
    }

    /// The dead letter of a record, if it has one.
    pub fn dead_letter(
        &self,
        side: Side,
        pair: &str,
        key: &Key,
    ) -> StoreResult<Option<DeadLetter>> {
        let k = dead_letter_key(side, pair, key);
        self.kv.get(&k)?.map(|v| self.read(&k, &v)).transpose()
    }

    /// Whether every key pair in the databases' mapping tables is linked in
    /// the state. Not so in a new state directory (or one written by a
    /// release before this record), nor from just before a commit of copies
    /// not announced as in flight until the state write that links them:
    /// only then must the mapping tables be read at start-up.
    pub fn links_complete(&self) -> StoreResult<bool> {
        Ok(self.kv.get(LINKS_COMPLETE)?.is_some())
    }

    /// Durably notes that copies are about to be committed whose links the
    /// state will record only afterwards (a first-sync batch, matched
    /// records): a crash in between has the next start read the mapping
    /// tables.
    pub fn expect_unrecorded_links(&self) -> StoreResult<()> {
        if self.links_complete()? {
            let mut batch = Batch::default();
            batch.delete(LINKS_COMPLETE.to_vec());
            self.kv.apply(batch)?;
            self.kv.flush()?;
        }
        Ok(())
    }

    /// Every in-flight record.
    pub fn in_flight(&self) -> StoreResult<Vec<InFlight>> {
        self.kv
            .scan(IN_FLIGHT, None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| self.read(&k, &v))
            .collect()
    }

    /// Every record of pending updates, with its id.
    pub fn pending_updates(&self) -> StoreResult<Vec<(u64, PendingUpdates)>> {
        self.kv
            .scan(PENDING_UPDATES, None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let id = k[PENDING_UPDATES.len()..]
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        key: String::from_utf8_lossy(&k).into_owned(),
                        reason: "not an id".into(),
                    })?;
                Ok((id, self.read(&k, &v)?))
            })
            .collect()
    }

    /// Every dead letter.
    pub fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        self.kv
            .scan(DEAD_LETTER, None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| self.read(&k, &v))
            .collect()
    }

    /// A pair's figures (zero when none recorded yet).
    pub fn stats(&self, pair: &str) -> StoreResult<PairStats> {
        let key = pair_key(STATS, pair, "");
        Ok(self
            .kv
            .get(&key)?
            .map(|v| self.read(&key, &v))
            .transpose()?
            .unwrap_or(PairStats {
                v: FORMAT_VERSION,
                ..PairStats::default()
            }))
    }
}
