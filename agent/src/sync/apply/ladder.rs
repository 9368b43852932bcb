//! The retry ladder, one for inserts, updates and deletes.
//!
//! A group of records is written in chunks of `batch_size`, each chunk one
//! transaction, climbing down only as far as a refusal makes it:
//! 1. the chunk as a batch, a few statements for all its records and no
//!    savepoints (two round trips a record saved);
//! 2. when a record is refused for a data reason, the transaction is rolled
//!    back and the chunk applied again with a savepoint per record, so that
//!    only the record at fault is set aside (an endpoint without
//!    transactions starts here: nothing it wrote would be rolled back);
//! 3. when the commit itself is refused (a deferred constraint), each
//!    record of the chunk alone, a transaction each;
//! 4. a record still refused is kept for a second chance at the end of the
//!    round (it may only have met the round's order), and on that last
//!    chance dead-lettered.
//!
//! Records written with a reference still missing (a parent in the same
//! group, linked by then) are applied once more at the end.

use super::{apply_span, e_is_data, Applier, Attempt, Change, ChunkResult, Outcome, Record};
use crate::config::Side;
use crate::mapping::plan::PairId;
use crate::sync::report::Tally;
use crate::sync::{SyncError, SyncResult};

impl Applier<'_> {
    /// Applies `records`, which changed (`change`) on `origin`, to their
    /// copies. Returns the records refused for a data reason when
    /// `last_chance` is false (the round tries them again after everything
    /// else).
    pub(super) async fn apply(
        &self,
        change: Change,
        pair: PairId,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        let mut partial = Vec::new();
        let mut retry = Vec::new();
        for chunk in records.chunks(self.integration.config.batch_size) {
            let done = self
                .chunk_or_alone(change, pair, origin, chunk.to_vec(), last_chance, tally)
                .await;
            // Whatever happened, nothing goes on before the chunks so far
            // are settled.
            let done = match done {
                Ok(done) => done,
                Err(e) => {
                    let _ = self.settled().await;
                    return Err(e);
                }
            };
            partial.extend(done.partial);
            retry.extend(done.retry);
        }
        // The records written with a reference missing are read again.
        self.settled().await?;
        if !partial.is_empty() {
            // Whatever is still incomplete stays in the log for a later pass.
            let done = self
                .chunk_or_alone(change, pair, origin, partial, last_chance, tally)
                .await;
            self.settled().await?;
            retry.extend(done?.retry);
        }
        Ok(retry)
    }

    /// [`Agent::chunk`]; when the commit itself is refused for a data
    /// reason, each record is tried alone so that only the one at fault
    /// fails.
    async fn chunk_or_alone(
        &self,
        change: Change,
        pair: PairId,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<ChunkResult> {
        let refused = match self
            .chunk(change, pair, origin, records.clone(), last_chance, tally)
            .await
        {
            Err(e) if e_is_data(&e) => e,
            other => return other,
        };
        // Records refused are settled one by one, after the chunks before.
        self.settled().await?;
        let mut out = ChunkResult::default();
        if let [record] = records.as_slice() {
            self.refuse(
                pair,
                origin,
                record.clone(),
                refused,
                last_chance,
                &mut out,
                tally,
            )?;
            return Ok(out);
        }
        for record in records {
            match self
                .chunk(
                    change,
                    pair,
                    origin,
                    vec![record.clone()],
                    last_chance,
                    tally,
                )
                .await
            {
                Ok(done) => {
                    out.partial.extend(done.partial);
                    out.retry.extend(done.retry);
                }
                Err(e) if e_is_data(&e) => {
                    self.settled().await?;
                    self.refuse(pair, origin, record, e, last_chance, &mut out, tally)?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One transaction's worth of records: first as a batch without
    /// savepoints, again with them when a record was refused.
    async fn chunk(
        &self,
        change: Change,
        pair: PairId,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<ChunkResult> {
        // Without transactions nothing is rolled back, so nothing may be
        // applied twice: each record gets its own "savepoint" from the start.
        let savepoints = !self.integration.endpoint(origin.other()).transactional();
        match self
            .attempt(
                change,
                pair,
                origin,
                records,
                last_chance,
                tally,
                savepoints,
            )
            .await?
        {
            Attempt::Done(result) => Ok(result),
            Attempt::Again(records) => {
                match self
                    .attempt(change, pair, origin, records, last_chance, tally, true)
                    .await?
                {
                    Attempt::Done(result) => Ok(result),
                    Attempt::Again(_) => {
                        unreachable!("with savepoints a refused record is set aside")
                    }
                }
            }
        }
    }

    /// One rung: the chunk written by the kind of change it is.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        change: Change,
        pair: PairId,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
        savepoints: bool,
    ) -> SyncResult<Attempt> {
        match change {
            Change::Upsert => {
                self.upsert_chunk_with(pair, origin, records, last_chance, tally, savepoints)
                    .await
            }
            Change::Delete => {
                self.delete_chunk_with(pair, origin, records, last_chance, tally, savepoints)
                    .await
            }
        }
    }

    /// A record refused for a data reason: kept for the retry at the end of
    /// the round, or dead-lettered when that was its last chance.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        pair: PairId,
        origin: Side,
        record: Record,
        reason: SyncError,
        last_chance: bool,
        out: &mut ChunkResult,
        tally: &mut Tally,
    ) -> SyncResult<()> {
        if last_chance {
            let name = &self.integration.plan.pairs[pair].name;
            let _span = apply_span(name, origin, 1).entered();
            self.settle(
                pair,
                origin,
                vec![(record, Outcome::Failed(reason.to_string()))],
                tally,
            )?;
        } else {
            out.retry.push(record);
        }
        Ok(())
    }
}
