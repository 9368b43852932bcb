//! The production [`Kv`]: one sled tree in the state directory.

use std::path::Path;

use super::{Batch, Kv, StoreError, StoreResult, Write};

/// How long opening waits for another holder of the state directory to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// What the store may keep in memory: the hot part of the ID map; the rest
/// is read from disk when needed. sled counts records as stored, and its
/// nodes take about three times that in memory: with a million links, 64 MiB
/// made a 190 MB agent, 32 MiB 140 MB and 16 MiB 116 MB, and a backlog of a
/// million changes drained as fast with 16 MiB as with 32.
const STORE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Where the store's write count is kept, next to sled's files.
const GENERATION: &str = "tandem-generation";
/// The same count inside the store; no record prefix starts with a NUL.
const GENERATION_KEY: &[u8] = b"\0generation";

/// A [`Kv`] stored with sled. All records live in one tree so that a
/// [`Batch`] is atomic across change log, ID map and checkpoints.
///
/// Once sled fails a write (a full disk) it fails every later one, even
/// when space returns; [`Kv::reopen`] opens the store again, and sled
/// recovers what was flushed.
pub struct SledKv {
    dir: std::path::PathBuf,
    /// `None` after a reopen failed: every call fails until one succeeds.
    open: std::sync::RwLock<Option<std::sync::Arc<Store>>>,
}

impl SledKv {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> StoreResult<SledKv> {
        Ok(SledKv {
            dir: dir.to_owned(),
            open: std::sync::RwLock::new(Some(std::sync::Arc::new(Store::open(dir)?))),
        })
    }

    fn current(&self) -> StoreResult<std::sync::Arc<Store>> {
        self.open
            .read()
            .expect("store lock")
            .clone()
            .ok_or_else(|| {
                StoreError::Backend(format!(
                    "the state store in {} is closed after an error; reopening it failed",
                    self.dir.display()
                ))
            })
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.current()?.get(key)
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.current()?.scan(prefix, after, limit)
    }

    fn count(&self, prefix: &[u8]) -> StoreResult<usize> {
        self.current()?.count(prefix)
    }

    fn count_through(&self, prefix: &[u8], last: &[u8]) -> StoreResult<usize> {
        self.current()?.count_through(prefix, last)
    }

    fn apply(&self, batch: Batch) -> StoreResult<()> {
        self.current()?.apply(batch)
    }

    fn flush(&self) -> StoreResult<()> {
        self.current()?.flush()
    }

    fn next_id(&self) -> StoreResult<u64> {
        self.current()?.next_id()
    }

    fn reopen(&self) -> StoreResult<()> {
        let mut slot = self.open.write().expect("store lock");
        // sled holds a lock on its files: the old handle goes first.
        drop(slot.take());
        remove_unfinished_snapshots(&self.dir.join("store"));
        *slot = Some(std::sync::Arc::new(Store::open(&self.dir)?));
        Ok(())
    }
}

/// Removes the snapshot files sled left half-written when a write failed or
/// the process was killed (`snap.*.generating`): sled would read one as the
/// latest snapshot and refuse to open. A snapshot is only a cache of the
/// log, and a store that lost confirmed writes is still refused by the
/// write count. Says whether there was one.
fn remove_unfinished_snapshots(store: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(store) else {
        return false;
    };
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            removed |= std::fs::remove_file(entry.path()).is_ok();
        }
    }
    removed
}

fn open_sled(store: &Path) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(store)
        .mode(sled::Mode::HighThroughput)
        // sled caches up to 1 GiB by default: with a link per synced
        // record, the agent's memory grew with the number of records
        // (over 300 MB while syncing a million-row transaction).
        .cache_capacity(STORE_CACHE_BYTES)
        .open()
}

/// One opened sled store.
///
/// sled recovers from a damaged file by dropping everything after the
/// damage, silently. To notice, every batch also counts itself into the
/// store, and after every flush the count is written to a file beside it:
/// a store that opens with a smaller count than the file has lost writes
/// it confirmed, and is refused.
struct Store {
    db: sled::Db,
    /// The count file.
    generation_file: std::path::PathBuf,
    /// Batches applied so far.
    applied: std::sync::atomic::AtomicU64,
    /// Serializes the count file's writes.
    recording: std::sync::Mutex<u64>,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Store {
    fn open(dir: &Path) -> StoreResult<Store> {
        // A process that just stopped (a restart, a test reopening) may hold
        // the lock for a moment while sled's last flush finishes.
        let started = std::time::Instant::now();
        loop {
            match Store::open_once(dir) {
                Err(StoreError::Locked(_)) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path) -> StoreResult<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let store = dir.join("store");
        let db = match open_sled(&store) {
            // sled reads the newest `snap.*` file even when it is one it was
            // still writing when the process was killed, and calls that
            // damage. The finished snapshot before it and the log are intact.
            Err(sled::Error::Corruption { .. }) if remove_unfinished_snapshots(&store) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "set aside a snapshot the last stop left half-written"
                );
                open_sled(&store)
            }
            other => other,
        }
        .map_err(|e| match e {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock || io.raw_os_error() == Some(11) =>
            {
                StoreError::Locked(dir.display().to_string())
            }
            sled::Error::Io(io) if io.to_string().contains("lock") => {
                StoreError::Locked(dir.display().to_string())
            }
            sled::Error::Corruption { at, .. } => StoreError::Damaged {
                dir: dir.display().to_string(),
                reason: format!("sled found damage at {at:?}"),
            },
            other => backend(other),
        })?;
        let damaged = |reason: String| StoreError::Damaged {
            dir: dir.display().to_string(),
            reason,
        };
        let stored = match db.get(GENERATION_KEY).map_err(backend)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| damaged("its write count is unreadable".to_owned()))?,
            ),
            None => 0,
        };
        let generation_file = store.join(GENERATION);
        match std::fs::read_to_string(&generation_file) {
            Ok(text) => {
                let recorded: u64 = text
                    .trim()
                    .parse()
                    .map_err(|_| damaged(format!("{} is unreadable", generation_file.display())))?;
                if stored < recorded {
                    return Err(damaged(format!(
                        "the store lost writes it had confirmed: {stored} of {recorded} remain"
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Backend(format!(
                    "cannot read {}: {e}",
                    generation_file.display()
                )))
            }
        }
        Ok(Store {
            db,
            generation_file,
            applied: std::sync::atomic::AtomicU64::new(stored),
            recording: std::sync::Mutex::new(stored),
        })
    }
}

impl Store {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.db.get(key).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let iter = match after {
            Some(after) => {
                let mut start = after.to_vec();
                start.push(0);
                self.db.range(start..)
            }
            None => self.db.range(prefix.to_vec()..),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn count(&self, prefix: &[u8]) -> StoreResult<usize> {
        let mut n = 0;
        for item in self.db.scan_prefix(prefix).keys() {
            item.map_err(backend)?;
            n += 1;
        }
        Ok(n)
    }

    fn count_through(&self, prefix: &[u8], last: &[u8]) -> StoreResult<usize> {
        let mut n = 0;
        for item in self.db.range(prefix.to_vec()..=last.to_vec()).keys() {
            if !item.map_err(backend)?.starts_with(prefix) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn apply(&self, batch: Batch) -> StoreResult<()> {
        use std::sync::atomic::Ordering;
        let mut sled_batch = sled::Batch::default();
        for write in batch.writes {
            match write {
                Write::Put(k, v) => sled_batch.insert(k, v),
                Write::Delete(k) => sled_batch.remove(k),
            }
        }
        // Batches are applied one at a time by the agent; the count only
        // needs to grow.
        let generation = self.applied.load(Ordering::SeqCst) + 1;
        sled_batch.insert(GENERATION_KEY, &generation.to_be_bytes());
        self.db.apply_batch(sled_batch).map_err(backend)?;
        self.applied.fetch_max(generation, Ordering::SeqCst);
        Ok(())
    }

    fn flush(&self) -> StoreResult<()> {
        // Read before flushing: every batch counted here is durable after.
        let durable = self.applied.load(std::sync::atomic::Ordering::SeqCst);
        self.db.flush().map_err(backend)?;
        let mut recorded = self.recording.lock().expect("generation lock");
        if durable > *recorded {
            // Not synced to disk on purpose: a lost update only makes the
            // check weaker, never wrong, as the count it replaces is smaller.
            let tmp = self.generation_file.with_extension("tmp");
            std::fs::write(&tmp, durable.to_string())
                .and_then(|_| std::fs::rename(&tmp, &self.generation_file))
                .map_err(|e| {
                    StoreError::Backend(format!(
                        "cannot write {}: {e}",
                        self.generation_file.display()
                    ))
                })?;
            *recorded = durable;
        }
        Ok(())
    }

    fn next_id(&self) -> StoreResult<u64> {
        // sled's ids are monotonic across restarts (it persists a reserved
        // range), which the change log's ordering relies on.
        self.db.generate_id().map_err(backend).map(|id| id + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state directory holding the contract's records, flushed and closed.
    fn flushed_store() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let kv = SledKv::open(dir.path()).unwrap();
        super::super::contract::check(&kv);
        kv.flush().unwrap();
        dir
    }

    #[test]
    fn keeps_the_kv_contract_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let last = {
            let kv = SledKv::open(dir.path()).unwrap();
            super::super::contract::check(&kv);
            kv.next_id().unwrap()
        };
        let kv = SledKv::open(dir.path()).unwrap();
        assert!(kv.next_id().unwrap() > last);
        assert_eq!(kv.get(b"a/2").unwrap().as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn a_store_that_lost_confirmed_writes_is_refused() {
        let dir = flushed_store();
        let db = dir.path().join("store").join("db");
        let len = std::fs::metadata(&db).unwrap().len() as usize;
        std::fs::write(&db, vec![0x5a; len]).unwrap();
        let err = SledKv::open(dir.path()).err().expect("must be refused");
        assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("rebuild-state"), "{err}");
    }

    #[test]
    fn a_snapshot_cut_short_by_a_kill_is_set_aside() {
        let dir = flushed_store();
        // What a SIGKILL leaves while sled writes a snapshot: sled takes the
        // newest `snap.*` file, finished or not.
        let store = dir.path().join("store");
        std::fs::write(store.join("snap.7FFFFFFFFFFFFFFF.generating"), [0u8; 5]).unwrap();
        let kv = SledKv::open(dir.path()).expect("the cut-short snapshot is not the store");
        assert_eq!(kv.get(b"a/2").unwrap().as_deref(), Some(&b"two"[..]));
        assert!(!store.join("snap.7FFFFFFFFFFFFFFF.generating").exists());
    }

    #[test]
    fn a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledKv::open(dir.path()).unwrap();
        let err = SledKv::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
    }
}
