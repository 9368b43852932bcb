//! The first sync: every record of each side copied to the other, source
//! first, building the ID map.
//!
//! Rows are read in key order in bounded batches. Those seen for the first
//! time are written straight to the other side, in batches, with the
//! apply path's mapping and statements; the rest (waiting for a parent,
//! matched by natural key, refused) go through the change log like any
//! captured change. The checkpoint moves in the same atomic write as the
//! links and log entries of the rows it covers: an interrupted copy
//! resumes where it stopped, and a row copied just before a crash is found
//! linked (through the mapping table) instead of being copied twice.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tandem_connectors::{IdMapRow, Key, Row, Value};
use tracing::info;

use super::apply::Record;
use super::report::Tally;
use super::{Agent, SyncResult};
use crate::config::Side;
use crate::observe::metrics;
use crate::observe::progress::CopyProgress;
use crate::state::{CopyCheckpoint, Link, NewEntry, FORMAT_VERSION};

/// Rows read per batch of the first copy.
pub const COPY_BATCH: usize = 1000;

fn pair_index(agent: &Agent, name: &str) -> usize {
    agent
        .integration
        .plan
        .pairs
        .iter()
        .position(|p| p.name == name)
        .expect("a planned pair")
}

/// The natural key of `row`: its match columns' values; `None` when one is
/// NULL (NULL matches nothing).
fn match_key(columns: &[String], row: &Row) -> Option<String> {
    let mut key = String::new();
    for column in columns {
        match row.get(column) {
            None | Some(Value::Null) => return None,
            Some(value) => {
                key.push_str(&value.to_string());
                key.push('\u{1f}');
            }
        }
    }
    Some(key)
}

fn entry(side: Side, pair: &str, key: Key, row: Row, captured_at: DateTime<Utc>) -> NewEntry {
    NewEntry {
        side,
        pair: pair.to_owned(),
        key,
        row: Some(row),
        captured_at,
    }
}

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

    /// The not yet linked records of `side`, by natural key. Reads the
    /// table's match columns whole (a map of keys, not of rows).
    async fn unlinked_by_match_key(
        &self,
        pair: usize,
        side: Side,
    ) -> SyncResult<HashMap<String, Key>> {
        let plan = &self.integration.plan.pairs[pair];
        let table = plan.table(side);
        let connector = self.integration.endpoint(side);
        let mut out = HashMap::new();
        let mut after = None;
        loop {
            let rows = connector
                .scan(table, after.as_ref(), COPY_BATCH)
                .await
                .map_err(self.integration.error(side))?;
            let done = rows.len() < COPY_BATCH;
            for row in rows {
                let Some(key) = table.key_of(&row) else {
                    continue;
                };
                after = Some(key.clone());
                if self
                    .state
                    .link(&plan.name, side, &key)?
                    .is_some_and(|l| !l.deleted)
                {
                    continue;
                }
                if let Some(natural) = match_key(&plan.match_on, &row) {
                    out.entry(natural).or_insert(key);
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Writes matched pairs into the target's mapping table.
    async fn record_matches(&self, pair: &str, links: &[Link]) -> SyncResult<()> {
        let err = self.integration.error(Side::Target);
        let mut tx = self
            .integration
            .endpoint(Side::Target)
            .begin()
            .await
            .map_err(&err)?;
        self.state.expect_unrecorded_links()?;
        for link in links {
            tx.record_link(&IdMapRow {
                pair: pair.to_owned(),
                source_key: link.source_key.encode(),
                target_key: link.target_key.encode(),
            })
            .await
            .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)
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
                self.refresh_lookups().await?;
                let progress = CopyProgress::start(&pair.name, origin, estimate);
                let mut copied = 0u64;
                // Records that exist on both sides already, by natural key:
                // linked instead of copied (source to target only; the
                // target's matched records are linked by then).
                let mut matches = if origin == Side::Source && !pair.match_on.is_empty() {
                    self.unlinked_by_match_key(pair_index(self, &pair.name), Side::Target)
                        .await?
                } else {
                    HashMap::new()
                };
                loop {
                    let mut rows = connector
                        .scan(table, checkpoint.after.as_ref(), COPY_BATCH)
                        .await
                        .map_err(&err)?;
                    checkpoint.done = rows.len() < COPY_BATCH;
                    super::split::join_rows(pair, origin, connector.as_ref(), &mut rows)
                        .await
                        .map_err(&err)?;
                    let mut entries = Vec::new();
                    let mut matched = Vec::new();
                    let mut new = Vec::new();
                    let now = Utc::now();
                    for row in rows {
                        let Some(key) = table.key_of(&row) else {
                            continue;
                        };
                        checkpoint.after = Some(key.clone());
                        let link = self.state.link(&pair.name, origin, &key)?;
                        if link.as_ref().is_some_and(|l| !l.deleted) {
                            continue;
                        }
                        let target_key =
                            match_key(&pair.match_on, &row).and_then(|m| matches.remove(&m));
                        if let Some(target_key) = target_key {
                            matched.push(Link::new(key.clone(), target_key));
                        } else if link.is_none() {
                            new.push(Record {
                                key,
                                row: Some(row),
                                seqs: Vec::new(),
                                last_seq: 0,
                                captured_at: now,
                            });
                            continue;
                        }
                        entries.push(entry(origin, &pair.name, key, row, now));
                    }
                    copied += (entries.len() + new.len()) as u64;
                    // Records seen for the first time are copied at once;
                    // the others (and those the copy cannot take) go
                    // through the change log like any captured change.
                    let (mut batch, rest) = self
                        .copy_new(pair_index(self, &pair.name), origin, new, tally)
                        .await?;
                    for record in rest {
                        let row = record.row.expect("copied records have rows");
                        entries.push(entry(origin, &pair.name, record.key, row, now));
                    }
                    let logged = entries.len();
                    if !matched.is_empty() {
                        // The pairs go into the target's mapping table first:
                        // a crash before the state is written finds them there.
                        self.record_matches(&pair.name, &matched).await?;
                        info!(pair = %pair.name, matched = matched.len(), "first sync: linked existing records by match key");
                    }
                    for link in &matched {
                        batch.put_link(&pair.name, link);
                    }
                    batch.put_checkpoint(&name, &checkpoint);
                    // The copies and matches committed above are linked here.
                    self.links_complete_with(&mut batch);
                    self.state.append_log_with(entries, batch)?;
                    metrics::logged(&pair.name, origin, logged);
                    self.drain(tally).await?;
                    self.heartbeat.beat();
                    if checkpoint.done {
                        break;
                    }
                    if stop() {
                        info!(pair = %pair.name, from = %origin, copied, "first sync: interrupted, resumes at the next start");
                        return Ok(false);
                    }
                    progress.update(copied);
                }
                drop(progress);
                info!(pair = %pair.name, from = %origin, copied, "first sync: done");
            }
        }
        Ok(true)
    }
}
