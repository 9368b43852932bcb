//! An in-memory [`Kv`] for unit tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{Batch, Kv, StoreResult, Write};

/// A [`Kv`] that keeps everything in memory; `flush` does nothing.
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    ids: AtomicU64,
}

impl Kv for MemoryKv {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.map.lock().expect("poisoned").get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let map = self.map.lock().expect("poisoned");
        let start = match after {
            Some(after) => Bound::Excluded(after.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn count(&self, prefix: &[u8]) -> StoreResult<usize> {
        let map = self.map.lock().expect("poisoned");
        Ok(map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .count())
    }

    fn count_through(&self, prefix: &[u8], last: &[u8]) -> StoreResult<usize> {
        let map = self.map.lock().expect("poisoned");
        Ok(map
            .range(prefix.to_vec()..=last.to_vec())
            .take_while(|(k, _)| k.starts_with(prefix))
            .count())
    }

    fn apply(&self, batch: Batch) -> StoreResult<()> {
        let mut map = self.map.lock().expect("poisoned");
        for write in batch.writes {
            match write {
                Write::Put(k, v) => {
                    map.insert(k, v);
                }
                Write::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    fn next_id(&self) -> StoreResult<u64> {
        Ok(self.ids.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_kv_contract() {
        super::super::contract::check(&super::MemoryKv::default());
    }
}
