//! Applying: change-log entries, mapped, written to the other side.
//!
//! Per record the rules are:
//! - an entry read before the agent last wrote to its record is stale and
//!   dropped (the write superseded it);
//! - an entry whose values are what was last synced is an echo and dropped;
//! - otherwise the other side's copy is locked and compared with what was
//!   last synced there: if it changed too, that is a conflict, and the
//!   policy decides who wins, for the whole record;
//! - the write and, for a new copy, its key pair commit in one transaction;
//!   the fingerprint of the written copy is recorded as pending before the
//!   commit and as synced after, so a crash in between is recognised.
//!
//! Deletes go first (children before parents), then inserts and updates
//! (parents before children). A record that cannot be written goes to the
//! dead-letter list and its later changes wait behind it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tandem_connectors::{ErrorKind, Key, Row};
use tracing::field::Empty;
use tracing::{info_span, warn, Span};

use super::report::Tally;
use std::sync::Mutex;

use super::drift::Pauses;
use super::{Agent, Integration, SyncError, SyncResult};
use crate::config::Side;
use crate::mapping::plan::PairId;
use crate::observe::metrics;
use crate::service::Heartbeat;
use crate::state::State;
use crate::state::{Link, LogEntry, StateBatch};

mod decide;
mod delete;
mod ladder;
mod prepare;
use decide::{Change, Decision};
pub(super) use prepare::{Prepared, Ready};
mod settle;
#[cfg(test)]
mod tests;
mod upsert;

/// What the applier keeps between passes.
#[derive(Default)]
pub struct ApplierState {
    /// Reference tables read by lookups.
    pub lookups: std::sync::RwLock<crate::mapping::LookupCache>,
    /// The state may lack links other than those of the copies being
    /// settled: an API refused a record after it may have created it (its
    /// key pair journalled, the link not recorded), or a mapping table
    /// holds key pairs of a pair not configured now. The state is not
    /// marked complete until the mapping tables have been read again.
    pub links_unsure: std::sync::atomic::AtomicBool,
    /// The settlement of the last chunk applied, written in the background
    /// while the next chunk is applied (see [`Agent::settled`]).
    settling: std::sync::Mutex<crate::sync::background::PendingWrite>,
}

/// The applier, the stage from the change log to the other side: reads
/// the log's entries, maps them, writes them through the retry ladder and
/// settles what was written. A view over what it needs of the agent.
pub struct Applier<'a> {
    /// Endpoints and plan.
    pub integration: &'a Integration,
    /// The state directory.
    pub state: &'a State,
    /// What the applier keeps between passes.
    apply_state: &'a ApplierState,
    /// The pairs the runner paused: their entries wait in the log.
    paused: &'a Mutex<Pauses>,
    /// Progress, for the watchdog.
    heartbeat: &'a Heartbeat,
}

impl Agent {
    /// The applier over this agent's integration and state.
    pub fn applier(&self) -> Applier<'_> {
        Applier {
            integration: &self.integration,
            state: &self.state,
            apply_state: &self.apply_state,
            paused: &self.run_state.paused,
            heartbeat: &self.heartbeat,
        }
    }
}

impl ApplierState {
    /// Adds to `batch` that the state holds every link, unless it may lack
    /// some that this process cannot vouch for (see [`ApplierState::links_unsure`]).
    pub(crate) fn links_complete_with(&self, batch: &mut crate::state::StateBatch) {
        if !self.links_unsure.load(std::sync::atomic::Ordering::SeqCst) {
            batch.mark_links_complete();
        }
    }

    /// Reads (again, when stale) the reference tables lookups use.
    pub async fn refresh_lookups(&self, integration: &Integration) -> SyncResult<()> {
        let mut cache = std::mem::take(&mut *self.lookups.write().expect("lookup cache lock"));
        let mut result = Ok(());
        'pairs: for pair in &integration.plan.pairs {
            for direction in &pair.directions {
                for column in &direction.columns {
                    let crate::mapping::plan::ValueSource::Lookup {
                        side,
                        table,
                        match_column,
                        value_column,
                        ..
                    } = &column.source
                    else {
                        continue;
                    };
                    let Some((_, schema)) = integration
                        .plan
                        .lookups
                        .iter()
                        .find(|(s, t)| s == side && t.name.to_string() == *table)
                    else {
                        continue;
                    };
                    let connector = integration.endpoint(*side);
                    if let Err(e) = cache
                        .load(
                            *side,
                            connector.as_ref(),
                            schema,
                            match_column,
                            value_column,
                        )
                        .await
                    {
                        result = Err(integration.error(*side)(e));
                        break 'pairs;
                    }
                }
            }
        }
        *self.lookups.write().expect("lookup cache lock") = cache;
        result
    }
}

/// Log entries considered in one round of applying.
///
/// Each entry is held with its row while the window is applied: a backlog of
/// a million changes peaked at 189-199 MB with 20,000 and 169 MB with
/// 10,000, draining about as fast.
pub const DRAIN_WINDOW: usize = 10_000;

/// The paused pairs' entries at the head of the change log, passed over by
/// a drain: through which position, and how many.
#[derive(Default)]
struct Passed {
    through: Option<u64>,
    count: usize,
}

/// All pending changes of one record, coalesced.
#[derive(Debug, Clone)]
pub struct Record {
    /// The record's key on the side the change comes from.
    pub key: Key,
    /// Its latest values; `None` when deleted.
    pub row: Option<Row>,
    /// The log entries it stands for.
    pub seqs: Vec<u64>,
    /// The newest of them.
    pub last_seq: u64,
    /// When its newest change was captured.
    pub captured_at: DateTime<Utc>,
}

impl Record {
    /// The record as a written copy's outcome carries it: its row only when
    /// the copy is `partial` (it is applied again); a whole copy's row is
    /// not read again, and cloning it cost as much as mapping it.
    fn written(&self, partial: bool) -> Record {
        Record {
            key: self.key.clone(),
            row: if partial { self.row.clone() } else { None },
            seqs: self.seqs.clone(),
            last_seq: self.last_seq,
            captured_at: self.captured_at,
        }
    }
}

/// Records of a chunk that need another try.
#[derive(Default)]
struct ChunkResult {
    /// Written with a reference still missing.
    partial: Vec<Record>,
    /// Refused for a data reason; tried again at the end of the round.
    retry: Vec<Record>,
}

/// How an attempt at a chunk ended.
enum Attempt {
    /// Committed (or failed for good).
    Done(ChunkResult),
    /// A record was refused in a transaction without savepoints: rolled
    /// back, every record of the chunk to be applied again.
    Again(Vec<Record>),
}

/// What became of one record.
// Short-lived, one per record of a batch: boxing the links buys nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    /// Nothing to write (stale, echo, or a lost conflict); entries consumed.
    Dropped {
        /// Whether a conflict was lost.
        conflict: bool,
    },
    /// Written; the link as it stands after the commit.
    Written {
        old: Option<Link>,
        link: Link,
        kind: Kind,
        partial: bool,
        conflict: bool,
    },
    /// Needs a referenced record that is not linked yet: stays in the log.
    Waiting,
    /// Cannot be written: dead-lettered with this reason.
    Failed(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Inserted,
    Updated,
    Deleted,
}

impl Kind {
    /// The metrics' `kind` label.
    fn label(self) -> &'static str {
        match self {
            Kind::Inserted => "insert",
            Kind::Updated => "update",
            Kind::Deleted => "delete",
        }
    }
}

/// The span of one applied batch (one transaction); [`Agent::settle`]
/// records its counts.
pub(super) fn apply_span(pair: &str, origin: Side, records: usize) -> Span {
    info_span!(
        "apply",
        pair = %pair,
        direction = metrics::direction(origin),
        records,
        inserted = Empty,
        updated = Empty,
        deleted = Empty,
        conflicts = Empty,
        waiting = Empty,
        dead_lettered = Empty,
    )
}

impl Applier<'_> {
    /// Applies everything in the change log that can be applied.
    pub async fn drain(&self, tally: &mut Tally) -> SyncResult<()> {
        self.apply_state.refresh_lookups(self.integration).await?;
        let plan = &self.integration.plan;
        let index: HashMap<&str, PairId> = plan
            .enumerate()
            .map(|(id, p)| (p.name.as_str(), id))
            .collect();
        // A paused pair's entries wait in the log until it resumes.
        let paused: Vec<PairId> = self
            .paused
            .lock()
            .expect("pauses lock")
            .keys()
            .copied()
            .collect();
        let is_paused = |entry: &LogEntry| {
            index
                .get(entry.pair.as_str())
                .is_some_and(|pair| paused.contains(pair))
        };
        // Entries of paused pairs stay in the log for the whole drain; the
        // ones at its head are passed over once, not read again per window.
        let mut passed = Passed::default();
        loop {
            self.heartbeat.beat();
            let (entries, held) = self.window(&mut passed, &is_paused)?;
            if entries.is_empty() {
                self.state.purge_tombstones()?;
                return Ok(());
            }
            // Progress is judged on this window only: counting a log of a
            // million entries twice per window made draining it quadratic.
            let before = entries.len();
            let last = entries.last().map_or(0, |e| e.seq);
            let mut groups: HashMap<(PairId, Side), Vec<Record>> = HashMap::new();
            let mut slots: HashMap<(PairId, Side, String), usize> = HashMap::new();
            let mut orphans = StateBatch::default();
            for entry in entries {
                let Some(&pair) = index.get(entry.pair.as_str()) else {
                    warn!(pair = %entry.pair, "change of a table pair no longer configured; dropped");
                    orphans.remove_log([entry.seq]);
                    continue;
                };
                let group = groups.entry((pair, entry.side)).or_default();
                match slots.get(&(pair, entry.side, entry.key.encode())) {
                    Some(&i) => {
                        let record = &mut group[i];
                        record.row = entry.row;
                        record.seqs.push(entry.seq);
                        record.last_seq = entry.seq;
                        record.captured_at = entry.captured_at;
                    }
                    None => {
                        slots.insert((pair, entry.side, entry.key.encode()), group.len());
                        group.push(Record {
                            key: entry.key,
                            row: entry.row,
                            seqs: vec![entry.seq],
                            last_seq: entry.seq,
                            captured_at: entry.captured_at,
                        });
                    }
                }
            }
            self.state.commit(orphans, true)?;
            self.hold_behind_dead_letters(&mut groups)?;
            let take =
                |groups: &mut HashMap<(PairId, Side), Vec<Record>>, pair, side, deletes: bool| {
                    let group = groups.entry((pair, side)).or_default();
                    let (picked, rest): (Vec<_>, Vec<_>) =
                        group.drain(..).partition(|r| r.row.is_none() == deletes);
                    *group = rest;
                    picked
                };
            let mut retry = Vec::new();
            for pair in plan.ids().rev() {
                for side in Side::BOTH {
                    let records = take(&mut groups, pair, side, true);
                    for failed in self
                        .apply(Change::Delete, pair, side, records, false, tally)
                        .await?
                    {
                        retry.push((pair, side, failed));
                    }
                }
            }
            let mut retry_upserts = Vec::new();
            for pair in plan.ids() {
                for side in Side::BOTH {
                    let records = take(&mut groups, pair, side, false);
                    for failed in self
                        .apply(Change::Upsert, pair, side, records, false, tally)
                        .await?
                    {
                        retry_upserts.push((pair, side, failed));
                    }
                }
            }
            // A record refused for a data reason may only have met the
            // round's order (a delete refused by a child re-parented later
            // in the round, a unique value freed by a later update): each
            // gets a second chance after everything else.
            for (pair, side, record) in retry {
                self.apply(Change::Delete, pair, side, vec![record], true, tally)
                    .await?;
            }
            for (pair, side, record) in retry_upserts {
                self.apply(Change::Upsert, pair, side, vec![record], true, tally)
                    .await?;
            }
            let left = self
                .state
                .log_len_through(last)?
                .saturating_sub(passed.count + held);
            if left >= before {
                // Everything left waits for something: stop for this pass.
                return Ok(());
            }
        }
    }

    /// The next [`DRAIN_WINDOW`] entries of pairs that are not paused, from
    /// the head of the log (after the paused pairs' entries `passed` over),
    /// and how many paused entries lie between its first and last.
    fn window(
        &self,
        passed: &mut Passed,
        is_paused: &dyn Fn(&LogEntry) -> bool,
    ) -> SyncResult<(Vec<LogEntry>, usize)> {
        let mut window = Vec::new();
        let mut held = 0;
        // Paused entries after the window's last entry so far: counted as
        // held only once an entry of the window follows them, as the
        // progress check counts the log up to the window's last entry.
        let mut trailing = 0;
        let mut cursor = passed.through;
        loop {
            // No more than the window still lacks: nothing read is thrown away.
            let wanted = DRAIN_WINDOW - window.len();
            let page = self.state.log_entries_after(cursor, wanted)?;
            let end = page.len() < wanted;
            for entry in page {
                cursor = Some(entry.seq);
                if is_paused(&entry) {
                    if window.is_empty() {
                        passed.through = Some(entry.seq);
                        passed.count += 1;
                    } else {
                        trailing += 1;
                    }
                    continue;
                }
                held += std::mem::take(&mut trailing);
                window.push(entry);
                if window.len() == DRAIN_WINDOW {
                    return Ok((window, held));
                }
            }
            if end {
                return Ok((window, held));
            }
        }
    }

    fn hold_behind_dead_letters(
        &self,
        groups: &mut HashMap<(PairId, Side), Vec<Record>>,
    ) -> SyncResult<()> {
        let pairs = &self.integration.plan.pairs;
        let mut batch = StateBatch::default();
        for ((pair, side), records) in groups.iter_mut() {
            let name = &pairs[*pair].name;
            let mut kept = Vec::new();
            for record in records.drain(..) {
                match self.state.dead_letter(*side, name, &record.key)? {
                    Some(mut letter) => {
                        letter.row = record.row;
                        letter.changes += record.seqs.len() as u64;
                        batch.put_dead_letter(&letter);
                        batch.remove_log(record.seqs);
                    }
                    None => kept.push(record),
                }
            }
            *records = kept;
        }
        self.state.commit(batch, true)?;
        Ok(())
    }

    /// [`decide::decide`] under the integration's conflict policy.
    fn decide(&self, origin: Side, change: Change, link: &Link, copy: Option<&Row>) -> Decision {
        decide::decide(self.integration.config.conflict, origin, change, link, copy)
    }
}

pub(super) fn e_is_data(e: &SyncError) -> bool {
    matches!(e, SyncError::Endpoint { error, .. } if error.kind() == ErrorKind::Data)
}
