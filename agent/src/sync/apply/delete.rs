//! Deletes: the copies of records deleted on one side, deleted on the
//! other, and their links turned into tombstones.

use std::collections::HashMap;

use tandem_connectors::{ErrorKind, Key, Row, Transaction};
use tracing::{debug, warn, Instrument};

use super::{
    apply_span, e_is_data, Applier, Attempt, Change, ChunkResult, Decision, Kind, Outcome, Record,
};
use crate::config::Side;
use crate::mapping::plan::PairId;
use crate::sync::report::Tally;
use crate::sync::SyncResult;

impl Applier<'_> {
    /// One transaction's worth of deletes (a rung of the ladder in
    /// [`super::ladder`]): in a batch without savepoints, any data error
    /// failing the whole batch; with savepoints, record by record, only the
    /// one at fault set aside.
    pub(super) async fn delete_chunk_with(
        &self,
        pair: PairId,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
        savepoints: bool,
    ) -> SyncResult<Attempt> {
        let span = apply_span(
            &self.integration.plan.pairs[pair].name,
            origin,
            records.len(),
        );
        async {
            if savepoints {
                let retry = self
                    .delete_one_by_one(pair, origin, records, last_chance, tally)
                    .await?;
                return Ok(Attempt::Done(ChunkResult {
                    retry,
                    ..ChunkResult::default()
                }));
            }
            let dest = origin.other();
            let err = self.integration.error(dest);
            let position = self.state.log_position()?;
            let mut tx = self
                .integration
                .endpoint(dest)
                .begin()
                .await
                .map_err(&err)?;
            match self
                .delete_batch(&mut *tx, pair, origin, &records, position)
                .await
            {
                Ok(outcomes) => {
                    tx.commit().await.map_err(&err)?;
                    self.deleted(pair, origin, outcomes, tally).await?;
                    Ok(Attempt::Done(ChunkResult::default()))
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    if e_is_data(&e) {
                        debug!(error = %e, "a batch of deletes was refused; applied again a record at a time");
                        return Ok(Attempt::Again(records));
                    }
                    Err(e)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The copies of `records` deleted with a few statements: locked and
    /// read at once, compared, deleted at once. Any data error fails the
    /// whole batch.
    pub(super) async fn delete_batch(
        &self,
        tx: &mut dyn Transaction,
        pair: PairId,
        origin: Side,
        records: &[Record],
        position: u64,
    ) -> SyncResult<Vec<(Record, Outcome)>> {
        let plan = &self.integration.plan.pairs[pair];
        let dest = origin.other();
        let table = plan.table(dest);
        let err = self.integration.error(dest);
        let mut outcomes = Vec::with_capacity(records.len());
        let mut live = Vec::with_capacity(records.len());
        for record in records {
            match self.state.link(&plan.name, origin, &record.key)? {
                Some(link)
                    if !link.deleted && record.last_seq >= link.written_at[origin.index()] =>
                {
                    live.push((record, link))
                }
                _ => outcomes.push((record.clone(), Outcome::Dropped { conflict: false })),
            }
        }
        let keys: Vec<Key> = live.iter().map(|(_, l)| l.key(dest).clone()).collect();
        let mut current: HashMap<String, Row> = tx
            .fetch_many_for_update(table, &keys)
            .await
            .map_err(&err)?
            .into_iter()
            .filter_map(|row| table.key_of(&row).map(|k| (k.encode(), row)))
            .collect();
        let mut doomed = Vec::new();
        let mut forgotten = Vec::new();
        for (record, link) in live {
            let dest_key = link.key(dest);
            let copy = match current.remove(&dest_key.encode()) {
                Some(copy) => Some(copy),
                None => tx.fetch_for_update(table, dest_key).await.map_err(&err)?,
            };
            let Decision { conflict, write } =
                self.decide(origin, Change::Delete, &link, copy.as_ref());
            if !write {
                outcomes.push((record.clone(), Outcome::Dropped { conflict }));
                continue;
            }
            if copy.is_some() {
                doomed.push(dest_key.clone());
            }
            forgotten.push((link.source_key.encode(), link.target_key.encode()));
            let mut tomb = link.clone();
            tomb.deleted = true;
            tomb.written_at[dest.index()] = position;
            outcomes.push((
                record.clone(),
                Outcome::Written {
                    old: Some(link),
                    link: tomb,
                    kind: Kind::Deleted,
                    partial: false,
                    conflict,
                },
            ));
        }
        tx.delete_many(table, &doomed).await.map_err(&err)?;
        tx.forget_links(&plan.name, &forgotten)
            .await
            .map_err(&err)?;
        Ok(outcomes)
    }

    /// After deletes committed: the state, and the origin's mapping rows.
    pub(super) async fn deleted(
        &self,
        pair: PairId,
        origin: Side,
        outcomes: Vec<(Record, Outcome)>,
        tally: &mut Tally,
    ) -> SyncResult<()> {
        let name = &self.integration.plan.pairs[pair].name;
        let forgotten: Vec<(String, String)> = outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Written { link, .. } => {
                    Some((link.source_key.encode(), link.target_key.encode()))
                }
                _ => None,
            })
            .collect();
        self.settle(pair, origin, outcomes, tally)?;
        // The origin's own mapping table may hold the pair too (when the
        // agent created the origin's record); it goes as well, so a rebuilt
        // state does not resurrect the link. Best effort: a leftover row
        // only names records that no longer exist.
        if !forgotten.is_empty() {
            if let Err(e) = self.forget_on(origin, name, &forgotten).await {
                warn!(pair = %name, side = %origin, error = %e, "could not remove mapping rows of deleted records");
            }
        }
        Ok(())
    }

    /// [`Agent::delete_chunk_with`] one record at a time, each behind a
    /// savepoint.
    pub(super) async fn delete_one_by_one(
        &self,
        pair: PairId,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        let plan = &self.integration.plan.pairs[pair];
        let dest = origin.other();
        let table = plan.table(dest);
        let err = self.integration.error(dest);
        let position = self.state.log_position()?;
        let mut tx = self
            .integration
            .endpoint(dest)
            .begin()
            .await
            .map_err(&err)?;
        let mut outcomes = Vec::new();
        let mut retry = Vec::new();
        for record in records {
            let link = match self.state.link(&plan.name, origin, &record.key)? {
                Some(link)
                    if !link.deleted && record.last_seq >= link.written_at[origin.index()] =>
                {
                    link
                }
                _ => {
                    outcomes.push((record, Outcome::Dropped { conflict: false }));
                    continue;
                }
            };
            tx.savepoint().await.map_err(&err)?;
            let result: Result<Outcome, tandem_connectors::ConnectorError> = async {
                let dest_key = link.key(dest);
                let copy = tx.fetch_for_update(table, dest_key).await?;
                let Decision { conflict, write } =
                    self.decide(origin, Change::Delete, &link, copy.as_ref());
                if !write {
                    return Ok(Outcome::Dropped { conflict });
                }
                if copy.is_some() {
                    tx.delete(table, dest_key).await?;
                }
                tx.forget_link(
                    &plan.name,
                    &link.source_key.encode(),
                    &link.target_key.encode(),
                )
                .await?;
                let mut tomb = link.clone();
                tomb.deleted = true;
                tomb.written_at[dest.index()] = position;
                Ok(Outcome::Written {
                    old: Some(link.clone()),
                    link: tomb,
                    kind: Kind::Deleted,
                    partial: false,
                    conflict,
                })
            }
            .await;
            match result {
                Ok(outcome) => {
                    tx.release_savepoint().await.map_err(&err)?;
                    outcomes.push((record, outcome));
                }
                Err(e) if e.kind() == ErrorKind::Data => {
                    tx.rollback_to_savepoint().await.map_err(&err)?;
                    if last_chance {
                        let reason =
                            e.context(format!("{} {} -> {}", plan.name, record.key, table.name));
                        outcomes.push((record, Outcome::Failed(reason.to_string())));
                    } else {
                        retry.push(record);
                    }
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(err(e));
                }
            }
        }
        tx.commit().await.map_err(&err)?;
        self.deleted(pair, origin, outcomes, tally).await?;
        Ok(retry)
    }

    pub(super) async fn forget_on(
        &self,
        side: Side,
        pair: &str,
        keys: &[(String, String)],
    ) -> Result<(), tandem_connectors::ConnectorError> {
        let mut tx = self.integration.endpoint(side).begin().await?;
        tx.forget_links(pair, keys).await?;
        tx.commit().await
    }
}
