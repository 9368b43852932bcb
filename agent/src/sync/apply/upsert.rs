//! Inserts and updates: the copies of records that changed on one side,
//! written on the other.

use std::collections::HashMap;

use tandem_connectors::{CopyOf, ErrorKind, Fingerprint, Key, Row, Transaction};
use tracing::{debug, Instrument};

use super::{
    apply_span, e_is_data, Applier, Attempt, Change, ChunkResult, Decision, Kind, Outcome,
    Prepared, Ready, Record,
};
use crate::config::Side;
use crate::mapping::plan::PairId;
use crate::mapping::split::{self, SplitCache};
use crate::mapping::FilterExit;
use crate::state::{InFlight, Link, PendingUpdates, StateBatch, FORMAT_VERSION};
use crate::sync::report::Tally;
use crate::sync::SyncResult;

/// Records of a batch to write, by position, each with whether it is a
/// conflict.
type Picks = Vec<(usize, bool)>;

impl Applier<'_> {
    /// One transaction's worth of inserts and updates (a rung of the
    /// ladder in [`super::ladder`]), with or without a savepoint per record.
    /// Without savepoints, records of a table that is not split are
    /// written in batches, a few statements for the whole chunk.
    pub(super) async fn upsert_chunk_with(
        &self,
        pair: PairId,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
        savepoints: bool,
    ) -> SyncResult<Attempt> {
        let plan = &self.integration.plan;
        let name = plan.pairs[pair].name.clone();
        let dest = origin.other();
        let span = apply_span(&name, origin, records.len());
        async {
            let position = self.state.log_position()?;
            let connector = self.integration.endpoint(dest);
            let err = self.integration.error(dest);
            if !connector.transactional() {
                // An API's new record exists the moment it is created, its
                // key pair in the endpoint's journal: until this chunk is
                // settled, a start-up must read the journal.
                self.state.expect_unrecorded_links()?;
            }
            let mut tx = connector.begin().await.map_err(&err)?;
            let mut result = ChunkResult::default();
            let batched = !savepoints && !split::splits_into(&plan.pairs[pair], dest);
            let outcomes = if batched {
                match self
                    .upsert_batch(&mut *tx, pair, origin, &records, position)
                    .await
                {
                    Ok(outcomes) => outcomes,
                    Err(e) => {
                        let _ = tx.rollback().await;
                        if e_is_data(&e) {
                            debug!(error = %e, "a batch was refused; the chunk is applied again a record at a time");
                            return Ok(Attempt::Again(records));
                        }
                        return Err(e);
                    }
                }
            } else {
                let mut outcomes = Vec::with_capacity(records.len());
                let mut splits = SplitCache::default();
                let mut pending = records.into_iter();
                while let Some(record) = pending.next() {
                    let outcome = match self
                        .upsert_one(&mut *tx, pair, origin, &record, position, &mut splits, savepoints)
                        .await
                    {
                        Ok(outcome) => outcome,
                        Err(e) if e_is_data(&e) && !savepoints => {
                            debug!(key = %record.key, error = %e, "refused without savepoints; the chunk is applied again with them");
                            let _ = tx.rollback().await;
                            let mut again: Vec<Record> =
                                outcomes.into_iter().map(|(r, _)| r).collect();
                            again.push(record);
                            again.extend(pending);
                            return Ok(Attempt::Again(again));
                        }
                        Err(e) if e_is_data(&e) && !last_chance => {
                            result.retry.push(record);
                            continue;
                        }
                        Err(e) if e_is_data(&e) => Outcome::Failed(e.to_string()),
                        Err(e) => {
                            let _ = tx.rollback().await;
                            return Err(e);
                        }
                    };
                    outcomes.push((record, outcome));
                }
                outcomes
            };
            // Before the commit: what the copies will look like, so that a
            // crash between the commit and the state update is recognised:
            // the updated copies' fingerprints (pending at start-up), a new
            // copy's link as in flight (confirmed at start-up if the copy
            // exists).
            let mut intents = StateBatch::default();
            let mut updates = Vec::new();
            for (_, outcome) in &outcomes {
                match outcome {
                    Outcome::Written {
                        old: Some(old),
                        link,
                        kind: Kind::Updated,
                        ..
                    } => {
                        if let Some(written) = link.synced[dest.index()] {
                            updates.push((old.source_key.clone(), written));
                        }
                    }
                    Outcome::Written {
                        old,
                        link,
                        kind: Kind::Inserted,
                        ..
                    } => intents.put_in_flight(&InFlight {
                        v: FORMAT_VERSION,
                        pair: name.clone(),
                        dest,
                        link: link.clone(),
                        replaces: old.clone(),
                    }),
                    _ => {}
                }
            }
            // The chunk's log position is its own: it names the record.
            let pending = (!updates.is_empty()).then_some(position);
            if let Some(id) = pending {
                intents.put_pending_updates(
                    id,
                    &PendingUpdates {
                        v: FORMAT_VERSION,
                        pair: name.clone(),
                        dest,
                        updates,
                    },
                );
            }
            self.state.commit(intents, true)?;
            if let Err(e) = tx.commit().await.map_err(&err) {
                if let (Some(id), true) = (pending, e_is_data(&e)) {
                    // Refused at the commit: nothing of it was written.
                    let mut never = StateBatch::default();
                    never.remove_pending_updates(id);
                    self.state.commit(never, false)?;
                }
                return Err(e);
            }
            crate::crash::point("applied-committed");
            // A record an API refused may have been created first, its key
            // pair journalled without a link: until the journal is read
            // again, no later settlement may call the links complete.
            if !connector.transactional()
                && (!result.retry.is_empty()
                    || outcomes.iter().any(|(_, o)| matches!(o, Outcome::Failed(_))))
            {
                self.apply_state.links_unsure
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            let mut batch = StateBatch::default();
            if let Some(id) = pending {
                batch.remove_pending_updates(id);
            }
            // The chunk before may still be settling: its figures first.
            self.settled().await?;
            result.partial = if connector.transactional() {
                // Written while the next chunk is applied: everything the
                // next chunk reads of its own records is in place already
                // (its records are others; a crash before this write lands
                // finds the copies through `pending` and the in-flight
                // records above).
                self.settle_in_background(batch, pair, origin, outcomes, tally)?
            } else {
                self.settle_with(batch, pair, origin, outcomes, tally)?
            };
            Ok(Attempt::Done(result))
        }
        .instrument(span)
        .await
    }

    /// The link of a record once its copy is written.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn written_link(
        origin: Side,
        record: &Record,
        ready: &Ready<'_>,
        kind: Kind,
        dest_key: Key,
        written: &Row,
        position: u64,
    ) -> Link {
        let dest = origin.other();
        let mut link = match (&ready.link, kind) {
            (Some(link), Kind::Updated) => link.clone(),
            _ => match origin {
                Side::Source => Link::new(record.key.clone(), dest_key),
                Side::Target => Link::new(dest_key, record.key.clone()),
            },
        };
        link.deleted = false;
        // A copy still missing a reference is not "synced" from the
        // origin's view, so its next change (or retry) is not an echo.
        link.synced[origin.index()] = (!ready.partial).then_some(ready.fingerprint);
        link.synced[dest.index()] = Some(Fingerprint::of(written));
        link.pending = [None, None];
        link.written_at[dest.index()] = position;
        link
    }

    /// Writes a chunk of records of a table that is not split with a few
    /// statements: their copies locked and read at once, then updated at
    /// once, then the new ones inserted at once. Any data error fails the
    /// whole batch (the caller applies the chunk again record by record, to
    /// find the one at fault).
    pub(super) async fn upsert_batch(
        &self,
        tx: &mut dyn Transaction,
        pair: PairId,
        origin: Side,
        records: &[Record],
        position: u64,
    ) -> SyncResult<Vec<(Record, Outcome)>> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut ready = Vec::with_capacity(records.len());
        for record in records {
            match self.prepare(pair, origin, record)? {
                Prepared::Done(outcome) => outcomes.push((record.clone(), outcome)),
                Prepared::Filtered(link) => {
                    let outcome = self
                        .left_the_filter(tx, pair, origin, link.as_ref(), position)
                        .await?;
                    outcomes.push((record.clone(), outcome));
                }
                Prepared::Ready(r) => ready.push((record, r)),
            }
        }
        self.write_batch(tx, pair, origin, ready, outcomes, position)
            .await
    }

    /// The writing half of [`Agent::upsert_batch`]: writes the prepared
    /// records and adds their outcomes to `outcomes`.
    pub(in crate::sync) async fn write_batch(
        &self,
        tx: &mut dyn Transaction,
        pair: PairId,
        origin: Side,
        mut ready: Vec<(&Record, Ready<'_>)>,
        mut outcomes: Vec<(Record, Outcome)>,
        position: u64,
    ) -> SyncResult<Vec<(Record, Outcome)>> {
        let plan = &self.integration.plan.pairs[pair];
        let dest = origin.other();
        let err = self.integration.error(dest);
        let table = plan.table(dest);
        // The live copies, locked: one read for the chunk.
        let live_keys: Vec<Key> = ready
            .iter()
            .filter_map(|(_, r)| r.link.as_ref().filter(|l| !l.deleted))
            .map(|l| l.key(dest).clone())
            .collect();
        let mut current: HashMap<String, Row> = tx
            .fetch_many_for_update(table, &live_keys)
            .await
            .map_err(&err)?
            .into_iter()
            .filter_map(|row| table.key_of(&row).map(|k| (k.encode(), row)))
            .collect();
        let mut updates: Picks = Vec::new();
        let mut inserts: Picks = Vec::new();
        for (i, (record, r)) in ready.iter().enumerate() {
            let Some(link) = r.link.as_ref().filter(|l| !l.deleted) else {
                inserts.push((i, false));
                continue;
            };
            let copy = match current.remove(&link.key(dest).encode()) {
                Some(copy) => Some(copy),
                // Not read back under the key's spelling: asked for alone
                // before it is taken for gone (and copied again).
                None => tx
                    .fetch_for_update(table, link.key(dest))
                    .await
                    .map_err(&err)?,
            };
            let Decision { conflict, write } =
                self.decide(origin, Change::Upsert, link, copy.as_ref());
            if !write {
                outcomes.push(((*record).clone(), Outcome::Dropped { conflict }));
            } else if copy.is_some() {
                updates.push((i, conflict));
            } else {
                inserts.push((i, conflict));
            }
        }
        // Updates, one statement per set of columns written.
        let mut by_columns: Vec<(Vec<&String>, Picks)> = Vec::new();
        for (i, conflict) in updates {
            let columns: Vec<&String> = ready[i].1.row.keys().collect();
            match by_columns.iter_mut().find(|(c, _)| *c == columns) {
                Some((_, members)) => members.push((i, conflict)),
                None => by_columns.push((columns, vec![(i, conflict)])),
            }
        }
        for (_, members) in by_columns {
            let asked: Vec<(Key, Row)> = members
                .iter()
                .map(|&(i, _)| {
                    let link = ready[i].1.link.as_ref().expect("updates have links");
                    (link.key(dest).clone(), ready[i].1.row.clone())
                })
                .collect();
            let written = tx.update_many(table, &asked).await.map_err(&err)?;
            for ((i, conflict), written) in members.into_iter().zip(written) {
                let (record, r) = &ready[i];
                match written {
                    Some(written) => {
                        let dest_key = r
                            .link
                            .as_ref()
                            .expect("updates have links")
                            .key(dest)
                            .clone();
                        let link = Self::written_link(
                            origin,
                            record,
                            r,
                            Kind::Updated,
                            dest_key,
                            &written,
                            position,
                        );
                        outcomes.push((
                            record.written(r.partial),
                            Outcome::Written {
                                old: r.link.clone(),
                                link,
                                kind: Kind::Updated,
                                partial: r.partial,
                                conflict,
                            },
                        ));
                    }
                    None => inserts.push((i, conflict)),
                }
            }
        }
        if !inserts.is_empty() {
            // The mapped rows are not read again: moved, not cloned.
            let rows: Vec<Row> = inserts
                .iter()
                .map(|&(i, _)| std::mem::take(&mut ready[i].1.row))
                .collect();
            let copies: Vec<CopyOf> = inserts
                .iter()
                .map(|&(i, _)| CopyOf {
                    pair: plan.name.clone(),
                    origin_key: ready[i].0.key.encode(),
                    copy_is_target: dest == Side::Target,
                })
                .collect();
            let written = tx
                .insert_copies(table, &rows, &copies)
                .await
                .map_err(&err)?;
            for ((i, conflict), written) in inserts.into_iter().zip(written) {
                let (record, r) = &ready[i];
                let dest_key = table.key_of(&written).ok_or_else(|| {
                    err(tandem_connectors::ConnectorError::internal(format!(
                        "{}: a new copy came back without its key",
                        table.name
                    )))
                })?;
                let link = Self::written_link(
                    origin,
                    record,
                    r,
                    Kind::Inserted,
                    dest_key,
                    &written,
                    position,
                );
                outcomes.push((
                    record.written(r.partial),
                    Outcome::Written {
                        old: r.link.clone(),
                        link,
                        kind: Kind::Inserted,
                        partial: r.partial,
                        conflict,
                    },
                ));
            }
        }
        Ok(outcomes)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upsert_one(
        &self,
        tx: &mut dyn Transaction,
        pair: PairId,
        origin: Side,
        record: &Record,
        position: u64,
        splits: &mut SplitCache,
        savepoint: bool,
    ) -> SyncResult<Outcome> {
        let plan = &self.integration.plan.pairs[pair];
        let dest = origin.other();
        let err = self.integration.error(dest);
        let ready = match self.prepare(pair, origin, record)? {
            Prepared::Done(outcome) => return Ok(outcome),
            Prepared::Filtered(link) => {
                return self
                    .left_the_filter(tx, pair, origin, link.as_ref(), position)
                    .await
            }
            Prepared::Ready(ready) => ready,
        };
        let table = plan.table(dest);
        let connector = self.integration.endpoint(dest).clone();
        if savepoint {
            tx.savepoint().await.map_err(&err)?;
        }
        let result: Result<Outcome, tandem_connectors::ConnectorError> = async {
            let mut row_out = ready.row.clone();
            for (split, values) in &ready.extra {
                let reference = split::resolve(split, values, connector.as_ref(), &mut *tx, splits).await?;
                row_out.insert(split.reference.clone(), reference);
            }
            let link = &ready.link;
            let live = link.as_ref().filter(|l| !l.deleted);
            let mut kind = Kind::Inserted;
            let mut dest_key = None;
            let mut conflict = false;
            if let Some(link) = live {
                let mut current = tx.fetch_for_update(table, link.key(dest)).await?;
                if let Some(copy) = current.as_mut() {
                    split::join_row_in(plan, dest, &mut *tx, copy).await?;
                }
                let decision = self.decide(origin, Change::Upsert, link, current.as_ref());
                conflict = decision.conflict;
                if !decision.write {
                    return Ok(Outcome::Dropped { conflict });
                }
                if current.is_some() && tx.update(table, link.key(dest), &row_out).await? {
                    kind = Kind::Updated;
                    dest_key = Some(link.key(dest).clone());
                }
            }
            let dest_key = match dest_key {
                Some(key) => key,
                None => {
                    let copy = CopyOf {
                        pair: plan.name.clone(),
                        origin_key: record.key.encode(),
                        copy_is_target: dest == Side::Target,
                    };
                    tx.insert_copy(table, &row_out, &copy).await?
                }
            };
            let mut written = tx
                .fetch_for_update(table, &dest_key)
                .await?
                .ok_or_else(|| {
                    tandem_connectors::ConnectorError::data(format!(
                        "{} {dest_key} vanished after writing it (a trigger or policy of the database?)",
                        table.name
                    ))
                })?;
            split::join_row_in(plan, dest, &mut *tx, &mut written).await?;
            let new_link = Self::written_link(origin, record, &ready, kind, dest_key, &written, position);
            Ok(Outcome::Written {
                old: link.clone(),
                link: new_link,
                kind,
                partial: ready.partial,
                conflict,
            })
        }
        .await;
        match result {
            Ok(outcome) => {
                if savepoint {
                    tx.release_savepoint().await.map_err(&err)?;
                }
                Ok(outcome)
            }
            Err(e) if e.kind() == ErrorKind::Data => {
                if savepoint {
                    tx.rollback_to_savepoint().await.map_err(&err)?;
                }
                Err(err(e.context(format!(
                    "{} {} -> {}",
                    plan.name, record.key, table.name
                ))))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// A row that does not pass its direction's filter: its copy, if any,
    /// stays or is deleted, as configured.
    pub(super) async fn left_the_filter(
        &self,
        tx: &mut dyn Transaction,
        pair: PairId,
        origin: Side,
        link: Option<&Link>,
        position: u64,
    ) -> SyncResult<Outcome> {
        let plan = &self.integration.plan.pairs[pair];
        let dest = origin.other();
        let link = match link {
            Some(link)
                if !link.deleted
                    && plan.directions[origin.index()].on_filter_exit == FilterExit::Delete =>
            {
                link
            }
            _ => return Ok(Outcome::Dropped { conflict: false }),
        };
        let err = self.integration.error(dest);
        tx.savepoint().await.map_err(&err)?;
        let deleted = async {
            tx.delete(plan.table(dest), link.key(dest)).await?;
            tx.forget_link(
                &plan.name,
                &link.source_key.encode(),
                &link.target_key.encode(),
            )
            .await
        }
        .await;
        match deleted {
            Ok(()) => tx.release_savepoint().await.map_err(&err)?,
            Err(e) => {
                if e.kind() == ErrorKind::Data {
                    tx.rollback_to_savepoint().await.map_err(&err)?;
                }
                return Err(err(e));
            }
        }
        let mut tomb = link.clone();
        tomb.deleted = true;
        tomb.written_at[dest.index()] = position;
        Ok(Outcome::Written {
            old: Some(link.clone()),
            link: tomb,
            kind: Kind::Deleted,
            partial: false,
            conflict: false,
        })
    }
}
