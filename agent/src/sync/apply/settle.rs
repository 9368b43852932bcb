//! Settling: what a committed transaction did, recorded in the state
//! (links, consumed log entries, dead letters, figures).

use chrono::Utc;
use tracing::{debug, info, warn, Span};

use super::{Applier, Kind, Outcome, Record};
use crate::config::Side;
use crate::mapping::plan::PairId;
use crate::observe::metrics;
use crate::state::{DeadLetter, StateBatch, FORMAT_VERSION};
use crate::sync::report::Tally;
use crate::sync::SyncResult;

impl Applier<'_> {
    /// Records what a committed transaction did: links, consumed log
    /// entries, dead letters, figures. Returns the records written with a
    /// reference still missing (their entries stay in the log).
    pub(super) fn settle(
        &self,
        pair: PairId,
        origin: Side,
        outcomes: Vec<(Record, Outcome)>,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        self.settle_with(StateBatch::default(), pair, origin, outcomes, tally)
    }

    /// [`Agent::settle`], with `batch` written in the same write.
    pub(super) fn settle_with(
        &self,
        mut batch: StateBatch,
        pair: PairId,
        origin: Side,
        outcomes: Vec<(Record, Outcome)>,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        debug_assert!(
            self.apply_state
                .settling
                .lock()
                .expect("settling lock")
                .is_idle(),
            "a settlement is written after the one in the background"
        );
        let partial = self.settle_into(&mut batch, pair, origin, outcomes, tally, true)?;
        // Chunks are applied one at a time, each settled before the next:
        // every copy made so far is linked once this is written.
        self.apply_state.links_complete_with(&mut batch);
        self.state.commit(batch, true)?;
        Ok(partial)
    }

    /// [`Agent::settle_with`], the write started in the background: the
    /// caller waits for it ([`Agent::settled`]) before anything reads what
    /// it records.
    pub(super) fn settle_in_background(
        &self,
        mut batch: StateBatch,
        pair: PairId,
        origin: Side,
        outcomes: Vec<(Record, Outcome)>,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        let mut settling = self.apply_state.settling.lock().expect("settling lock");
        debug_assert!(settling.is_idle(), "one settlement at a time");
        let partial = self.settle_into(&mut batch, pair, origin, outcomes, tally, true)?;
        self.apply_state.links_complete_with(&mut batch);
        settling.start(self.state, batch);
        Ok(partial)
    }

    /// Waits for the settlement written in the background, if any.
    pub(super) async fn settled(&self) -> SyncResult<()> {
        let mut write =
            std::mem::take(&mut *self.apply_state.settling.lock().expect("settling lock"));
        write.wait().await
    }

    /// What [`Agent::settle`] records, added to `batch` (committed by the
    /// caller). `in_flight`: whether new copies were announced as in
    /// flight, and those records are to be removed.
    pub(in crate::sync) fn settle_into(
        &self,
        batch: &mut StateBatch,
        pair: PairId,
        origin: Side,
        outcomes: Vec<(Record, Outcome)>,
        tally: &mut Tally,
        in_flight: bool,
    ) -> SyncResult<Vec<Record>> {
        let name = &self.integration.plan.pairs[pair].name;
        let mut stats = self.state.stats(name)?;
        let mut partial = Vec::new();
        let now = Utc::now();
        let pair_tally = tally.pair(name);
        let policy = self.integration.config.conflict;
        // This batch's figures, for its span: written per kind (in `Kind`'s
        // order: inserted, updated, deleted), conflicts, waiting, dead letters.
        let (mut written, mut conflicts, mut waiting, mut dead_lettered) = ([0u64; 3], 0, 0, 0);
        for (record, outcome) in outcomes {
            let conflict = matches!(
                outcome,
                Outcome::Dropped { conflict: true } | Outcome::Written { conflict: true, .. }
            );
            if conflict {
                info!(pair = %name, from = %origin, key = %record.key, %policy,
                    won = matches!(outcome, Outcome::Written { .. }), "conflict: changed on both sides since the last sync");
                stats.conflicts += 1;
                pair_tally.conflicts += 1;
                conflicts += 1;
                metrics::conflict(name, origin);
            }
            match outcome {
                Outcome::Dropped { .. } => batch.remove_log(record.seqs),
                Outcome::Waiting => {
                    pair_tally.waiting += 1;
                    waiting += 1;
                }
                Outcome::Failed(reason) => {
                    // The reason can quote values (a constraint's detail):
                    // `dead-letters list` shows it; the log only at debug.
                    warn!(pair = %name, from = %origin, key = %record.key, "dead-lettered (`tandem-agent dead-letters list` says why)");
                    debug!(pair = %name, from = %origin, key = %record.key, %reason, "dead-letter reason");
                    pair_tally.dead_lettered += 1;
                    dead_lettered += 1;
                    batch.put_dead_letter(&DeadLetter {
                        v: FORMAT_VERSION,
                        side: origin,
                        pair: name.clone(),
                        key: record.key.clone(),
                        row: record.row.clone(),
                        reason,
                        failed_at: now,
                        changes: record.seqs.len() as u64,
                    });
                    batch.remove_log(record.seqs);
                }
                Outcome::Written {
                    old,
                    link,
                    kind,
                    partial: is_partial,
                    ..
                } => {
                    match &old {
                        Some(old)
                            if old.source_key != link.source_key
                                || old.target_key != link.target_key =>
                        {
                            batch.remove_link(name, old);
                            batch.put_link(name, &link);
                        }
                        Some(old) => batch.update_link(name, old, &link),
                        None => batch.put_link(name, &link),
                    }
                    if kind == Kind::Inserted && in_flight {
                        batch.remove_in_flight(name, origin.other(), link.key(origin.other()));
                    }
                    let counts = &mut stats.applied[origin.index()];
                    let tallied = &mut pair_tally.applied[origin.index()];
                    match kind {
                        Kind::Inserted => {
                            counts.inserted += 1;
                            tallied.inserted += 1;
                        }
                        Kind::Updated => {
                            counts.updated += 1;
                            tallied.updated += 1;
                        }
                        Kind::Deleted => {
                            counts.deleted += 1;
                            tallied.deleted += 1;
                        }
                    }
                    let lag_ms = (now - record.captured_at).num_milliseconds().max(0);
                    stats.last_lag_ms = Some(lag_ms);
                    written[kind as usize] += 1;
                    metrics::applied(name, origin, kind.label(), lag_ms as f64 / 1000.0);
                    if is_partial {
                        partial.push(record);
                    } else {
                        batch.remove_log(record.seqs);
                    }
                }
            }
        }
        stats.v = FORMAT_VERSION;
        batch.put_stats(name, &stats);
        let span = Span::current();
        let [inserted, updated, deleted] = written;
        span.record("inserted", inserted);
        span.record("updated", updated);
        span.record("deleted", deleted);
        span.record("conflicts", conflicts);
        span.record("waiting", waiting);
        span.record("dead_lettered", dead_lettered);
        // The span (pair, direction, the counts) says what.
        debug!("batch applied");
        Ok(partial)
    }
}
