//! The agent's durable state: an ordered key-value store behind a small
//! trait, with a sled implementation for production and an in-memory one for
//! unit tests.
//!
//! Everything above this module (change log, ID map, checkpoints) is written
//! in terms of [`Kv`]; sled is lightly maintained and stays replaceable.

mod memory;
mod sled_kv;

pub use memory::MemoryKv;
pub use sled_kv::SledKv;

/// A store failure. The state directory is the product's memory: any error
/// here stops the work that needed it, and nothing is acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying store failed (I/O, disk full, corruption).
    #[error("state store: {0}")]
    Backend(String),
    /// A stored record could not be read back.
    #[error("state store: record {key} is unreadable: {reason}")]
    Corrupt {
        /// The record's key, printable.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The store lost writes it had confirmed, or cannot be read at all.
    #[error(
        "state directory {dir} is corrupt ({reason}): run `tandem-agent rebuild-state` to \
         rebuild it from the databases (the damaged store is kept aside)"
    )]
    Damaged {
        /// The state directory.
        dir: String,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the state directory.
    #[error("state directory {0} is in use by another tandem-agent process")]
    Locked(String),
    /// The store, or a record in it, was written by a newer release in a
    /// format this build cannot read. Not retried: only an operator can
    /// upgrade the agent or give up the store.
    #[error(
        "state directory {dir}: {record} is in format {found}, written by a newer \
         tandem-agent (this build reads formats up to {known}): upgrade tandem-agent, or run \
         `tandem-agent rebuild-state` to set this store aside and rebuild the links from the \
         databases (then `tandem-agent reconcile` for the changes it held unapplied)"
    )]
    NewerFormat {
        /// The state directory.
        dir: String,
        /// What was read: "the store", "a link", "a dead letter"...
        record: &'static str,
        /// The format it is in.
        found: u8,
        /// The newest format this build reads.
        known: u8,
    },
    /// A record carries a format version that no release writes: older
    /// than any this build reads. Damage, as no release wrote it.
    #[error(
        "state directory {dir}: {record} is in format {found}, which no tandem-agent writes \
         (this build reads formats {oldest} to {known}): the store is damaged; run \
         `tandem-agent rebuild-state` to rebuild it from the databases (the damaged store is \
         kept aside)"
    )]
    UnknownFormat {
        /// The state directory.
        dir: String,
        /// What was read.
        record: &'static str,
        /// The format it claims.
        found: u8,
        /// The oldest format this build reads for such a record.
        oldest: u8,
        /// The newest format this build reads.
        known: u8,
    },
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// One write in a [`Batch`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Sets `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Vec<u8>),
}

/// Writes applied atomically: all or none.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// The writes, applied in order.
    pub writes: Vec<Write>,
}

impl Batch {
    /// Adds a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push(Write::Put(key, value));
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.push(Write::Delete(key));
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// An ordered key-value store with atomic batches.
pub trait Kv: Send + Sync {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    /// Up to `limit` entries whose key starts with `prefix`, in key order,
    /// starting after `after` when given.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Number of entries under `prefix`.
    fn count(&self, prefix: &[u8]) -> StoreResult<usize>;
    /// Number of entries under `prefix` whose key is at most `last`.
    fn count_through(&self, prefix: &[u8], last: &[u8]) -> StoreResult<usize>;
    /// Applies `batch` atomically. Not yet durable: see [`Kv::flush`].
    fn apply(&self, batch: Batch) -> StoreResult<()>;
    /// Makes everything applied so far durable.
    fn flush(&self) -> StoreResult<()>;
    /// A number larger than every number it returned before, across restarts.
    fn next_id(&self) -> StoreResult<u64>;
    /// Opens the store again after a failed write, keeping what was made
    /// durable; nothing to do for a store that recovers by itself.
    fn reopen(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every [`Kv`] must have, run against each implementation.
    use super::*;

    pub fn check(kv: &dyn Kv) {
        let mut batch = Batch::default();
        batch.put(b"a/2".to_vec(), b"two".to_vec());
        batch.put(b"a/1".to_vec(), b"one".to_vec());
        batch.put(b"b/1".to_vec(), b"other".to_vec());
        kv.apply(batch).unwrap();
        kv.flush().unwrap();
        assert_eq!(kv.get(b"a/1").unwrap().as_deref(), Some(&b"one"[..]));
        let all = kv.scan(b"a/", None, 10).unwrap();
        assert_eq!(
            all.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(),
            [b"a/1", b"a/2"]
        );
        assert_eq!(kv.scan(b"a/", Some(b"a/1"), 10).unwrap().len(), 1);
        assert_eq!(kv.count(b"a/").unwrap(), 2);
        assert_eq!(kv.count_through(b"a/", b"a/1").unwrap(), 1);
        assert_eq!(kv.count_through(b"a/", b"a/9").unwrap(), 2);
        let mut batch = Batch::default();
        batch.delete(b"a/1".to_vec());
        kv.apply(batch).unwrap();
        assert_eq!(kv.get(b"a/1").unwrap(), None);
        let first = kv.next_id().unwrap();
        assert!(kv.next_id().unwrap() > first);
    }
}
