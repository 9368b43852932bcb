//! The ID map's second home: the mapping tables in the databases.
//!
//! A new copy's key pair commits with the copy, in the mapping table of the
//! database written to. If the agent dies before its own state records the
//! link, the link is taken from there at the next start, so the copy is
//! never made twice.

use tandem_connectors::connector::{IdMapRow, ID_MAP_PAGE};
use tandem_connectors::Key;
use tracing::info;

use super::{Agent, SyncResult};
use crate::config::Side;
use crate::state::{Link, StateBatch};

impl Agent {
    /// Settles the new copies the agent was committing when it stopped:
    /// a copy that exists gets its link; one that does not is forgotten
    /// (its change is still in the log and is applied again).
    pub async fn resolve_in_flight(&self) -> SyncResult<usize> {
        let records = self.state.in_flight()?;
        let mut confirmed = 0;
        for record in &records {
            let Some(pair) = self
                .integration
                .plan
                .pairs
                .iter()
                .find(|p| p.name == record.pair)
            else {
                continue;
            };
            let key = record.link.key(record.dest).clone();
            let exists = !self
                .integration
                .endpoint(record.dest)
                .fetch_rows(pair.table(record.dest), std::slice::from_ref(&key))
                .await
                .map_err(self.integration.error(record.dest))?
                .is_empty();
            let mut batch = StateBatch::default();
            if exists {
                if let Some(old) = &record.replaces {
                    batch.remove_link(&record.pair, old);
                }
                batch.put_link(&record.pair, &record.link);
                confirmed += 1;
            }
            batch.remove_in_flight(&record.pair, record.dest, &key);
            self.state.commit(batch, true)?;
        }
        if !records.is_empty() {
            info!(
                in_flight = records.len(),
                confirmed, "settled the copies in flight at the last stop"
            );
        }
        self.resolve_pending_updates()?;
        Ok(confirmed)
    }

    /// Updates the agent was committing when it stopped: each link takes
    /// the fingerprint of its copy as written as pending, so that the copy
    /// is recognised whether the commit happened or not.
    fn resolve_pending_updates(&self) -> SyncResult<()> {
        for (id, pending) in self.state.pending_updates()? {
            let mut batch = StateBatch::default();
            for (source_key, written) in &pending.updates {
                if let Some(link) = self.state.link(&pending.pair, Side::Source, source_key)? {
                    let mut marked = link.clone();
                    marked.pending[pending.dest.index()] = Some(*written);
                    batch.update_link(&pending.pair, &link, &marked);
                }
            }
            batch.remove_pending_updates(id);
            self.state.commit(batch, true)?;
            info!(
                pair = %pending.pair,
                records = pending.updates.len(),
                "marked the updates in flight at the last stop as pending"
            );
        }
        Ok(())
    }

    /// Adopts key pairs from both mapping tables that the state does not
    /// know (neither key linked yet); returns how many. The tables hold a
    /// row per record ever copied: they are read only when the state may
    /// lack some (see [`crate::state::State::links_complete`]), a page at a
    /// time.
    pub async fn adopt_mapping_tables(&self) -> SyncResult<usize> {
        if self.state.links_complete()? {
            return Ok(0);
        }
        let mut adopted = 0;
        let mut unlinked_elsewhere = false;
        for side in Side::BOTH {
            let connector = self.integration.endpoint(side);
            let err = self.integration.error(side);
            let mut after: Option<(String, String)> = None;
            loop {
                let page = connector
                    .read_id_map_page(
                        after.as_ref().map(|(p, k)| (p.as_str(), k.as_str())),
                        ID_MAP_PAGE,
                    )
                    .await
                    .map_err(&err)?;
                let done = page.len() < ID_MAP_PAGE;
                after = page.last().map(|r| (r.pair.clone(), r.source_key.clone()));
                let mut batch = StateBatch::default();
                for row in page {
                    let configured = self
                        .integration
                        .plan
                        .pairs
                        .iter()
                        .any(|p| p.name == row.pair);
                    if !configured {
                        // A pair taken out of the config keeps its rows; if
                        // the state lacks one, it must be adopted when the
                        // pair comes back: the tables are read again then.
                        if !unlinked_elsewhere {
                            unlinked_elsewhere = match Key::decode(&row.source_key) {
                                Ok(key) => {
                                    self.state.link(&row.pair, Side::Source, &key)?.is_none()
                                }
                                Err(_) => true,
                            };
                        }
                        continue;
                    }
                    if self.adopt(&mut batch, &row, &err)? {
                        adopted += 1;
                    }
                }
                self.state.commit(batch, true)?;
                if done {
                    break;
                }
            }
        }
        // Every link is in the state now, but for pairs not configured.
        self.apply_state
            .links_unsure
            .store(unlinked_elsewhere, std::sync::atomic::Ordering::SeqCst);
        let mut complete = StateBatch::default();
        self.apply_state.links_complete_with(&mut complete);
        self.state.commit(complete, true)?;
        if adopted > 0 {
            info!(adopted, "links recovered from the mapping tables");
        }
        Ok(adopted)
    }

    /// Adopts the key pairs `side`'s endpoint found by itself (copies it
    /// made whose keys it learnt later); returns how many were new.
    pub async fn adopt_found_links(&self, side: Side) -> SyncResult<usize> {
        let connector = self.integration.endpoint(side);
        let err = self.integration.error(side);
        let found = connector.found_links().await.map_err(&err)?;
        if found.is_empty() {
            return Ok(0);
        }
        let mut batch = StateBatch::default();
        let mut adopted = 0;
        for row in &found {
            let configured = self
                .integration
                .plan
                .pairs
                .iter()
                .any(|p| p.name == row.pair);
            if configured && self.adopt(&mut batch, row, &err)? {
                adopted += 1;
            }
        }
        self.state.commit(batch, true)?;
        connector.found_links_adopted(&found).await.map_err(&err)?;
        info!(%side, adopted, "links of copies found again adopted");
        Ok(adopted)
    }

    /// Puts `row`'s link into `batch` unless either key is linked already;
    /// whether it did. `err` tells of a key that cannot be read.
    fn adopt(
        &self,
        batch: &mut StateBatch,
        row: &IdMapRow,
        err: impl Fn(tandem_connectors::ConnectorError) -> super::SyncError,
    ) -> SyncResult<bool> {
        let source_key = Key::decode(&row.source_key).map_err(&err)?;
        let target_key = Key::decode(&row.target_key).map_err(&err)?;
        if self
            .state
            .link(&row.pair, Side::Source, &source_key)?
            .is_some()
            || self
                .state
                .link(&row.pair, Side::Target, &target_key)?
                .is_some()
        {
            return Ok(false);
        }
        batch.put_link(&row.pair, &Link::new(source_key, target_key));
        Ok(true)
    }
}
