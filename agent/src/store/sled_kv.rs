//! The production [`Kv`]: one sled tree in the state directory.

use std::path::Path;

use super::{Batch, Kv, StoreError, StoreResult, Write};

/// How long opening waits for another holder of the state directory to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// What the store may keep in memory: the hot part of the ID map; the rest
/// is read from disk when needed.
const STORE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A [`Kv`] stored with sled. All records live in one tree so that a
/// [`Batch`] is atomic across change log, ID map and checkpoints.
pub struct SledKv {
    db: sled::Db,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SledKv {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> StoreResult<SledKv> {
        // A process that just stopped (a restart, a test reopening) may hold
        // the lock for a moment while sled's last flush finishes.
        let started = std::time::Instant::now();
        loop {
            match SledKv::open_once(dir) {
                Err(StoreError::Locked(_)) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path) -> StoreResult<SledKv> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir.join("store"))
            .mode(sled::Mode::HighThroughput)
            // sled caches up to 1 GiB by default: with a link per synced
            // record, the agent's memory grew with the number of records
            // (over 300 MB while syncing a million-row transaction).
            .cache_capacity(STORE_CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.raw_os_error() == Some(11) =>
                {
                    StoreError::Locked(dir.display().to_string())
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    StoreError::Locked(dir.display().to_string())
                }
                sled::Error::Corruption { .. } => StoreError::Backend(format!(
                    "the state in {} is corrupt; move it away and run `tandem-agent rebuild-state`",
                    dir.display()
                )),
                other => backend(other),
            })?;
        Ok(SledKv { db })
    }
}

impl Kv for SledKv {
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

    fn apply(&self, batch: Batch) -> StoreResult<()> {
        let mut sled_batch = sled::Batch::default();
        for write in batch.writes {
            match write {
                Write::Put(k, v) => sled_batch.insert(k, v),
                Write::Delete(k) => sled_batch.remove(k),
            }
        }
        self.db.apply_batch(sled_batch).map_err(backend)
    }

    fn flush(&self) -> StoreResult<()> {
        self.db.flush().map_err(backend).map(|_| ())
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
    fn a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledKv::open(dir.path()).unwrap();
        let err = SledKv::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
    }
}
