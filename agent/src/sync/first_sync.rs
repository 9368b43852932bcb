//! The first sync: every record of each side copied to the other, source
//! first, building the ID map.
//!
//! Rows are read in key order in bounded batches and go through the change
//! log like any captured change, so the copy uses the same apply path (and
//! the same crash safety) as incremental sync. The checkpoint moves in the
//! same atomic write as the rows it covers: an interrupted copy resumes
//! where it stopped, and a row copied just before a crash is found linked
//! (through the mapping table) instead of being copied twice.

use chrono::Utc;
use tracing::info;

use super::report::Tally;
use super::{Agent, SyncResult};
use crate::config::Side;
use crate::state::{CopyCheckpoint, NewEntry, StateBatch, FORMAT_VERSION};

/// Rows read per batch of the first copy.
pub const COPY_BATCH: usize = 1000;

fn checkpoint_name(origin: Side, pair: &str) -> String {
    format!("first-sync/{origin}/{pair}")
}

impl Agent {
    /// Whether the first sync has finished for every pair and direction.
    pub fn first_sync_done(&self) -> SyncResult<bool> {
        for pair in &self.integration.plan.pairs {
            for origin in Side::BOTH {
                let done = self
                    .state
                    .checkpoint(&checkpoint_name(origin, &pair.name))?
                    .is_some_and(|c| c.done);
                if !done {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Copies what is not copied yet: source records to the target (parents
    /// first), then the target's records that are not linked to the source.
    /// Checks `stop` between batches; returns whether the copy is complete.
    pub async fn first_sync(
        &self,
        tally: &mut Tally,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> SyncResult<bool> {
        for origin in Side::BOTH {
            for pair in &self.integration.plan.pairs {
                let name = checkpoint_name(origin, &pair.name);
                let mut checkpoint = self.state.checkpoint(&name)?.unwrap_or(CopyCheckpoint {
                    v: FORMAT_VERSION,
                    after: None,
                    done: false,
                });
                if checkpoint.done {
                    continue;
                }
                let table = pair.table(origin);
                let connector = self.integration.endpoint(origin);
                let err = self.integration.error(origin);
                let estimate = connector.estimate_rows(table).await.map_err(&err)?;
                info!(pair = %pair.name, from = %origin, table = %table.name, rows = estimate, "first sync: copying");
                let mut copied = 0u64;
                loop {
                    let rows = connector
                        .scan(table, checkpoint.after.as_ref(), COPY_BATCH)
                        .await
                        .map_err(&err)?;
                    checkpoint.done = rows.len() < COPY_BATCH;
                    let mut entries = Vec::new();
                    for row in rows {
                        let Some(key) = table.key_of(&row) else {
                            continue;
                        };
                        checkpoint.after = Some(key.clone());
                        let linked = self
                            .state
                            .link(&pair.name, origin, &key)?
                            .is_some_and(|l| !l.deleted);
                        if !linked {
                            entries.push(NewEntry {
                                side: origin,
                                pair: pair.name.clone(),
                                key,
                                row: Some(row),
                                captured_at: Utc::now(),
                            });
                        }
                    }
                    copied += entries.len() as u64;
                    let mut batch = StateBatch::default();
                    batch.put_checkpoint(&name, &checkpoint);
                    self.state.append_log_with(entries, batch)?;
                    self.drain(tally).await?;
                    if checkpoint.done {
                        break;
                    }
                    if stop() {
                        info!(pair = %pair.name, from = %origin, copied, "first sync: interrupted, resumes at the next start");
                        return Ok(false);
                    }
                    info!(pair = %pair.name, from = %origin, copied, of = estimate, "first sync: progress");
                }
                info!(pair = %pair.name, from = %origin, copied, "first sync: done");
            }
        }
        Ok(true)
    }
}
