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
use tracing::{debug, info, Instrument};

use crate::mapping::plan::PairId;
use crate::mapping::split;

use super::apply::{apply_span, e_is_data, Prepared, Ready, Record};
use super::background::PendingWrite;
use super::report::Tally;
use super::{Agent, SyncResult};
use crate::config::Side;
use crate::observe::metrics;
use crate::observe::progress::CopyProgress;
use crate::state::{CopyCheckpoint, Link, NewEntry, StateBatch, FORMAT_VERSION};

/// Rows read per batch of the first copy.
pub const COPY_BATCH: usize = 1000;

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

/// A scanned first-sync batch, sorted by [`Agent::take_in`].
struct Scanned<'p> {
    /// Records seen for the first time, mapped for their copy.
    new: NewCopies<'p>,
    /// Records bound for the change log.
    entries: Vec<NewEntry>,
    /// Records linked to an existing one by natural key.
    matched: Vec<Link>,
    /// The batch's last key.
    after: Option<Key>,
    /// Whether it is the table's last batch.
    done: bool,
    /// Records to copy or log (for the progress count).
    seen: u64,
}

/// First-sync records mapped ahead of their copy by [`Agent::prepare_new`].
struct NewCopies<'p> {
    /// The records, in scan order.
    records: Vec<Record>,
    /// Those ready to be copied (by position in `records`), mapped.
    ready: Vec<(usize, Ready<'p>)>,
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
        pair: PairId,
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
                if let Some(natural) = match_key(&plan.match_on[side.index()], &row) {
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

    /// Marks the target's half of a pair's first sync done before the
    /// source's half starts, when the target table is empty then. Every row
    /// it holds afterwards is one of the copies or a write its capture
    /// trigger records (the agent does not start without one), so reading
    /// the table back key by key would find nothing to copy: a tenth of a
    /// first sync into an empty table. Not for an API, whose changes are
    /// not captured by a trigger.
    async fn skip_empty_target(&self, pair: PairId) -> SyncResult<()> {
        let plan = &self.integration.plan.pairs[pair];
        let connector = self.integration.endpoint(Side::Target);
        let name = checkpoint_name(Side::Target, &plan.name);
        if !connector.transactional() || self.state.checkpoint(&name)?.is_some() {
            return Ok(());
        }
        let table = plan.table(Side::Target);
        let rows = connector
            .scan(&table.key_only(), None, 1)
            .await
            .map_err(self.integration.error(Side::Target))?;
        if !rows.is_empty() {
            return Ok(());
        }
        let mut batch = StateBatch::default();
        batch.put_checkpoint(
            &name,
            &CopyCheckpoint {
                v: FORMAT_VERSION,
                after: None,
                done: true,
            },
        );
        self.state.commit(batch, true)?;
        info!(pair = %plan.name, table = %table.name, "first sync: the target table is empty, nothing to copy back from it");
        Ok(())
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
            for (id, pair) in self.integration.plan.enumerate() {
                let name = checkpoint_name(origin, &pair.name);
                let checkpoint = self.state.checkpoint(&name)?.unwrap_or(CopyCheckpoint {
                    v: FORMAT_VERSION,
                    after: None,
                    done: false,
                });
                if checkpoint.done {
                    continue;
                }
                if origin == Side::Source && checkpoint.after.is_none() {
                    self.skip_empty_target(id).await?;
                }
                let mut pending = PendingWrite::default();
                let copied = self
                    .copy_pair(id, origin, checkpoint, tally, stop, &mut pending)
                    .await;
                // Whatever happened, the last batch's state is written before
                // anything else touches the state.
                let written = pending.wait().await;
                let copied = copied?;
                written?;
                // Every copy made so far is linked now.
                let mut batch = StateBatch::default();
                self.apply_state.links_complete_with(&mut batch);
                self.state.commit(batch, true)?;
                if !copied {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The first sync of one pair from `origin`, from `checkpoint` on.
    ///
    /// Batches overlap: while one batch is copied, the next is read and
    /// mapped, and the state write of the one before (its links and the
    /// checkpoint past it) runs on a thread of its own (`pending`). That
    /// write no longer says the state holds every link, as a later batch may
    /// have committed by then (the caller says so once the last write is
    /// done): a crash in between has the next start read the mapping tables.
    async fn copy_pair(
        &self,
        pair: PairId,
        origin: Side,
        mut checkpoint: CopyCheckpoint,
        tally: &mut Tally,
        stop: &(dyn Fn() -> bool + Sync),
        pending: &mut PendingWrite,
    ) -> SyncResult<bool> {
        let plan = &self.integration.plan.pairs[pair];
        let name = checkpoint_name(origin, &plan.name);
        let table = plan.table(origin);
        let connector = self.integration.endpoint(origin);
        let err = self.integration.error(origin);
        let rows = connector.estimate_rows(table).await.map_err(&err)?;
        self.apply_state.refresh_lookups(&self.integration).await?;
        let progress = CopyProgress::start(&plan.name, origin, &table.name.to_string(), rows);
        let mut copied = 0u64;
        // Records that exist on both sides already, by natural key: linked
        // instead of copied (source to target only; the target's matched
        // records are linked by then).
        let mut matches = if origin == Side::Source && !plan.match_on[origin.index()].is_empty() {
            self.unlinked_by_match_key(pair, Side::Target).await?
        } else {
            HashMap::new()
        };
        // The target's rows are mostly the source's, copied a moment ago:
        // their keys are read first, and only the rows of those not linked.
        let keys_first = origin == Side::Target
            && connector.transactional()
            && !crate::mapping::split::splits_into(plan, origin);
        let key_table = table.key_only();
        let scanned_table = if keys_first { &key_table } else { table };
        let rows = connector
            .scan(scanned_table, checkpoint.after.as_ref(), COPY_BATCH)
            .await
            .map_err(&err)?;
        let mut scanned = self
            .take_in(pair, origin, rows, keys_first, &mut matches)
            .await?;
        loop {
            let Scanned {
                new,
                mut entries,
                matched,
                after,
                done,
                seen,
            } = scanned;
            checkpoint.done = done;
            if after.is_some() {
                checkpoint.after = after;
            }
            copied += seen;
            // Records seen for the first time are copied at once, while the
            // next batch is read and mapped; the others (and those the copy
            // cannot take) go through the change log like any captured
            // change.
            let read_next = async {
                if done {
                    return Ok(None);
                }
                let rows = connector
                    .scan(scanned_table, checkpoint.after.as_ref(), COPY_BATCH)
                    .await
                    .map_err(&err)?;
                self.take_in(pair, origin, rows, keys_first, &mut matches)
                    .await
                    .map(Some)
            };
            let (copy, next) = super::background::join_apart(
                self.copy_new(pair, origin, new, tally, pending),
                read_next,
            )
            .await;
            let (mut batch, rest) = copy?;
            let next = next?;
            let now = Utc::now();
            for record in rest {
                let row = record.row.expect("copied records have rows");
                entries.push(entry(origin, &plan.name, record.key, row, now));
            }
            // The previous batch's write ends before this one's starts.
            pending.wait().await?;
            if !matched.is_empty() {
                // The pairs go into the target's mapping table first: a
                // crash before the state is written finds them there.
                self.record_matches(&plan.name, &matched).await?;
                info!(pair = %plan.name, matched = matched.len(), "first sync: linked existing records by match key");
            }
            for link in &matched {
                batch.put_link(&plan.name, link);
            }
            batch.put_checkpoint(&name, &checkpoint);
            if entries.is_empty() && self.state.log_is_empty()? {
                pending.start(&self.state, batch);
            } else {
                // Records for the change log, or waiting there: written now,
                // and applied once every copy so far is linked.
                let logged = entries.len();
                self.apply_state.links_complete_with(&mut batch);
                self.state.append_log_with(entries, batch)?;
                metrics::logged(&plan.name, origin, logged);
                self.applier().drain(tally).await?;
            }
            self.heartbeat.beat();
            let Some(next) = next else {
                break;
            };
            if stop() {
                info!(pair = %plan.name, from = %origin, copied, "first sync: interrupted, resumes at the next start");
                return Ok(false);
            }
            progress.update(copied);
            scanned = next;
        }
        drop(progress);
        info!(pair = %plan.name, from = %origin, copied, "first sync: done");
        Ok(true)
    }

    /// Sorts a scanned batch: rows already linked are passed over, new
    /// records mapped for their copy, matched ones linked, and the rest
    /// (tombstones come back) bound for the change log. With `keys_only`,
    /// the scan read keys only, and the rows of the records not linked are
    /// read now.
    async fn take_in(
        &self,
        pair: PairId,
        origin: Side,
        mut rows: Vec<Row>,
        keys_only: bool,
        matches: &mut HashMap<String, Key>,
    ) -> SyncResult<Scanned<'_>> {
        let plan = &self.integration.plan.pairs[pair];
        let table = plan.table(origin);
        let connector = self.integration.endpoint(origin);
        let err = self.integration.error(origin);
        let done = rows.len() < COPY_BATCH;
        let after = rows.iter().rev().find_map(|row| table.key_of(row));
        if keys_only {
            let mut unlinked = Vec::new();
            for row in &rows {
                let Some(key) = table.key_of(row) else {
                    continue;
                };
                let link = self.state.link(&plan.name, origin, &key)?;
                if link.is_none_or(|l| l.deleted) {
                    unlinked.push(key);
                }
            }
            let mut found: HashMap<String, Row> = connector
                .fetch_rows(table, &unlinked)
                .await
                .map_err(&err)?
                .into_iter()
                .filter_map(|row| table.key_of(&row).map(|k| (k.encode(), row)))
                .collect();
            // In key order; a row deleted since the scan is gone (its
            // delete is captured).
            rows = unlinked
                .iter()
                .filter_map(|key| found.remove(&key.encode()))
                .collect();
        } else {
            crate::mapping::split::join_rows(plan, origin, connector.as_ref(), &mut rows)
                .await
                .map_err(&err)?;
        }
        let mut entries = Vec::new();
        let mut matched = Vec::new();
        let mut new = Vec::new();
        let now = Utc::now();
        for row in rows {
            let Some(key) = table.key_of(&row) else {
                continue;
            };
            let link = self.state.link(&plan.name, origin, &key)?;
            if link.as_ref().is_some_and(|l| !l.deleted) {
                continue;
            }
            let target_key =
                match_key(&plan.match_on[origin.index()], &row).and_then(|m| matches.remove(&m));
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
            entries.push(entry(origin, &plan.name, key, row, now));
        }
        let seen = (entries.len() + new.len()) as u64;
        Ok(Scanned {
            new: self.prepare_new(pair, origin, new)?,
            entries,
            matched,
            after,
            done,
            seen,
        })
    }

    /// First sync: maps records that have no link (not even a tombstone)
    /// and so no copy yet, ahead of [`Agent::copy_new`]: the next batch is
    /// mapped while the one before is written.
    fn prepare_new(
        &self,
        pair: PairId,
        origin: Side,
        records: Vec<Record>,
    ) -> SyncResult<NewCopies<'_>> {
        let plan = &self.integration.plan.pairs[pair];
        let dest = origin.other();
        let mut copies = NewCopies {
            ready: Vec::new(),
            records,
        };
        if !self.integration.endpoint(dest).transactional() || split::splits_into(plan, dest) {
            return Ok(copies);
        }
        for (i, record) in copies.records.iter().enumerate() {
            // The caller read the links: these records have none.
            if let Prepared::Ready(r) = self.applier().prepare_linked(pair, origin, record, None)? {
                if !r.partial {
                    copies.ready.push((i, r));
                }
            }
        }
        Ok(copies)
    }

    /// First sync: copies the records [`Agent::prepare_new`] mapped, in one
    /// transaction, without passing them through the change log.
    /// Returns the state to record once the copies committed (their links
    /// and the pair's figures, not yet applied: the caller adds its
    /// checkpoint and commits it all at once), and the records that need
    /// the change log's path: waiting for a parent, missing a reference,
    /// unmappable, or in a batch the target refused for a data reason.
    ///
    /// Nothing is announced as in flight: a crash after the target's commit
    /// and before the state is written leaves the copies' key pairs in the
    /// target's mapping table, which are adopted at the next start (and
    /// after every failed pass) before the copy resumes at its checkpoint.
    ///
    /// `previous`, the state write of the batch before, is waited for once
    /// the copies committed and before their figures are read.
    async fn copy_new(
        &self,
        pair: PairId,
        origin: Side,
        copies: NewCopies<'_>,
        tally: &mut Tally,
        previous: &mut super::background::PendingWrite,
    ) -> SyncResult<(StateBatch, Vec<Record>)> {
        let NewCopies { ready, records } = copies;
        let mut batch = StateBatch::default();
        if ready.is_empty() {
            return Ok((batch, records));
        }
        let plan = &self.integration.plan.pairs[pair];
        let dest = origin.other();
        let connector = self.integration.endpoint(dest);
        let mut copied = vec![false; records.len()];
        let ready: Vec<(&Record, Ready<'_>)> = ready
            .into_iter()
            .map(|(i, r)| {
                copied[i] = true;
                (&records[i], r)
            })
            .collect();
        let span = apply_span(&plan.name, origin, ready.len());
        let written = async {
            let err = self.integration.error(dest);
            let position = self.state.log_position()?;
            let mut tx = connector.begin().await.map_err(&err)?;
            match self
                .applier()
                .write_batch(&mut *tx, pair, origin, ready, Vec::new(), position)
                .await
            {
                Ok(written) => {
                    // No in-flight records for these copies: until the
                    // caller's state write links them, a start-up reads the
                    // mapping tables.
                    self.state.expect_unrecorded_links()?;
                    tx.commit().await.map_err(&err)?;
                    crate::crash::point("first-sync-committed");
                    previous.wait().await?;
                    let partial =
                        self.applier()
                            .settle_into(&mut batch, pair, origin, written, tally, false)?;
                    debug_assert!(partial.is_empty(), "partial records are not copied directly");
                    Ok(true)
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    if e_is_data(&e) {
                        debug!(error = %e, "a first-sync batch was refused; its records go through the change log");
                        return Ok(false);
                    }
                    Err(e)
                }
            }
        }
        .instrument(span)
        .await?;
        if !written {
            return Ok((StateBatch::default(), records));
        }
        let rest = records
            .into_iter()
            .zip(copied)
            .filter_map(|(record, copied)| (!copied).then_some(record))
            .collect();
        Ok((batch, rest))
    }
}
