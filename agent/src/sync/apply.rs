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
use tandem_connectors::{CopyOf, ErrorKind, Fingerprint, Key, Row, Transaction};
use tracing::field::Empty;
use tracing::{debug, info, info_span, warn, Instrument, Span};

use super::plan::{MapError, Mapped, SplitPlan};
use super::report::Tally;
use super::split::{self, SplitCache};
use super::{Agent, SyncError, SyncResult};
use crate::config::{ConflictPolicy, Side};
use crate::mapping::FilterExit;
use crate::observe::metrics;
use crate::state::{
    DeadLetter, InFlight, Link, LogEntry, PendingUpdates, StateBatch, FORMAT_VERSION,
};

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

/// A record mapped and ready to be written.
struct Ready<'p> {
    /// Its link, if it has one (possibly a tombstone).
    link: Option<Link>,
    /// Its row as the other side's table wants it.
    row: Row,
    /// The rows of extra tables it splits into, and their values.
    extra: Vec<(&'p SplitPlan, Row)>,
    /// Whether a reference is still missing.
    partial: bool,
    /// The origin row's fingerprint.
    fingerprint: Fingerprint,
}

/// First-sync records mapped ahead of their copy by [`Agent::prepare_new`].
pub(super) struct NewCopies<'p> {
    /// The records, in scan order.
    records: Vec<Record>,
    /// Those ready to be copied (by position in `records`), mapped.
    ready: Vec<(usize, Ready<'p>)>,
}

/// Records of a batch to write, by position, each with whether it is a
/// conflict.
type Picks = Vec<(usize, bool)>;

/// What [`Agent::prepare`] made of a record.
enum Prepared<'p> {
    /// Nothing to write.
    Done(Outcome),
    /// Outside its direction's filter.
    Filtered(Option<Link>),
    /// To be written.
    Ready(Ready<'p>),
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
enum Outcome {
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
enum Kind {
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
fn apply_span(pair: &str, origin: Side, records: usize) -> Span {
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

impl Agent {
    /// Applies everything in the change log that can be applied.
    pub async fn drain(&self, tally: &mut Tally) -> SyncResult<()> {
        self.refresh_lookups().await?;
        let pairs = &self.integration.plan.pairs;
        let index: HashMap<&str, usize> = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        // A paused pair's entries wait in the log until it resumes.
        let paused: Vec<usize> = self
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
            let mut groups: HashMap<(usize, Side), Vec<Record>> = HashMap::new();
            let mut slots: HashMap<(usize, Side, String), usize> = HashMap::new();
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
                |groups: &mut HashMap<(usize, Side), Vec<Record>>, pair, side, deletes: bool| {
                    let group = groups.entry((pair, side)).or_default();
                    let (picked, rest): (Vec<_>, Vec<_>) =
                        group.drain(..).partition(|r| r.row.is_none() == deletes);
                    *group = rest;
                    picked
                };
            let mut retry = Vec::new();
            for pair in (0..pairs.len()).rev() {
                for side in Side::BOTH {
                    let records = take(&mut groups, pair, side, true);
                    for failed in self
                        .apply_deletes(pair, side, records, false, tally)
                        .await?
                    {
                        retry.push((pair, side, failed));
                    }
                }
            }
            let mut retry_upserts = Vec::new();
            for pair in 0..pairs.len() {
                for side in Side::BOTH {
                    let records = take(&mut groups, pair, side, false);
                    for failed in self
                        .apply_upserts(pair, side, records, false, tally)
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
                self.apply_deletes(pair, side, vec![record], true, tally)
                    .await?;
            }
            for (pair, side, record) in retry_upserts {
                self.apply_upserts(pair, side, vec![record], true, tally)
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
        groups: &mut HashMap<(usize, Side), Vec<Record>>,
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

    fn wins(&self, origin: Side) -> bool {
        match self.integration.config.conflict {
            ConflictPolicy::SourceWins => origin == Side::Source,
            ConflictPolicy::TargetWins => origin == Side::Target,
        }
    }

    /// Inserts or updates the copies of `records`, which changed on
    /// `origin`. Records written with a reference still missing are tried
    /// once more at the end (a parent in the same batch is linked by then).
    /// Returns the records refused for a data reason when `last_chance` is
    /// false (the round tries them again after everything else).
    async fn apply_upserts(
        &self,
        pair: usize,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        let mut partial = Vec::new();
        let mut retry = Vec::new();
        for chunk in records.chunks(self.integration.config.batch_size) {
            let done = self
                .upsert_chunk_or_split(pair, origin, chunk.to_vec(), last_chance, tally)
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
                .upsert_chunk_or_split(pair, origin, partial, last_chance, tally)
                .await;
            self.settled().await?;
            retry.extend(done?.retry);
        }
        Ok(retry)
    }

    /// [`Agent::upsert_chunk`]; when the commit itself is refused for a data
    /// reason (a deferred constraint), each record is tried alone so that
    /// only the one at fault fails.
    async fn upsert_chunk_or_split(
        &self,
        pair: usize,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<ChunkResult> {
        let refused = match self
            .upsert_chunk(pair, origin, records.clone(), last_chance, tally)
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
                .upsert_chunk(pair, origin, vec![record.clone()], last_chance, tally)
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

    /// A record refused for a data reason: kept for the retry at the end of
    /// the round, or dead-lettered when that was its last chance.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        pair: usize,
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

    /// One transaction's worth of upserts. Tried first without a savepoint
    /// per record, which saves two round trips per record; when a record is
    /// refused for a data reason, that transaction is rolled back and the
    /// chunk is applied again with savepoints, so that only the record at
    /// fault is set aside.
    async fn upsert_chunk(
        &self,
        pair: usize,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<ChunkResult> {
        // Without transactions nothing is rolled back, so nothing may be
        // applied twice: each record gets its own "savepoint" from the start.
        let savepoints = !self.integration.endpoint(origin.other()).transactional();
        match self
            .upsert_chunk_with(pair, origin, records, last_chance, tally, savepoints)
            .await?
        {
            Attempt::Done(result) => Ok(result),
            Attempt::Again(records) => {
                match self
                    .upsert_chunk_with(pair, origin, records, last_chance, tally, true)
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

    /// [`Agent::upsert_chunk`] with or without a savepoint per record.
    /// Without savepoints, records of a table that is not split are
    /// written in batches, a few statements for the whole chunk.
    async fn upsert_chunk_with(
        &self,
        pair: usize,
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
                self.links_unsure
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

    /// Reads a record's link and maps its row: decides what needs no write
    /// at all (stale, echo, waiting, unmappable) before anything is locked.
    fn prepare(&self, pair: usize, origin: Side, record: &Record) -> SyncResult<Prepared<'_>> {
        let name = &self.integration.plan.pairs[pair].name;
        let link = self.state.link(name, origin, &record.key)?;
        self.prepare_linked(pair, origin, record, link)
    }

    /// [`Agent::prepare`] for a record whose `link` was already read.
    fn prepare_linked(
        &self,
        pair: usize,
        origin: Side,
        record: &Record,
        link: Option<Link>,
    ) -> SyncResult<Prepared<'_>> {
        let plan = &self.integration.plan.pairs[pair];
        let row = record.row.as_ref().expect("upserts have rows");
        let fingerprint = Fingerprint::of(row);
        if let Some(link) = &link {
            if record.last_seq < link.written_at[origin.index()] {
                debug!(key = %record.key, "stale change dropped");
                return Ok(Prepared::Done(Outcome::Dropped { conflict: false }));
            }
            if !link.deleted && link.matches(origin, &fingerprint) {
                return Ok(Prepared::Done(Outcome::Dropped { conflict: false }));
            }
        }
        let mapped = {
            let lookups = self.lookups.read().expect("lookup cache lock");
            self.integration
                .plan
                .map_row(pair, origin, row, &self.state, &lookups)
        };
        let unmappable =
            |reason: String| Outcome::Failed(format!("{} {}: {reason}", plan.name, record.key));
        let (row, partial) = match mapped {
            Ok(Mapped::Complete(row)) => (row, false),
            Ok(Mapped::Partial(row)) => (row, true),
            Ok(Mapped::Waiting { why, .. }) => {
                debug!(key = %record.key, %why, "waiting");
                return Ok(Prepared::Done(Outcome::Waiting));
            }
            Ok(Mapped::Filtered) => return Ok(Prepared::Filtered(link)),
            Err(MapError::Store(e)) => return Err(e.into()),
            Err(MapError::Row(reason)) => return Ok(Prepared::Done(unmappable(reason))),
        };
        let extra = match split::split_rows(
            plan,
            origin.other(),
            record.row.as_ref().expect("upserts have rows"),
        ) {
            Ok(rows) => rows,
            Err(MapError::Store(e)) => return Err(e.into()),
            Err(MapError::Row(reason)) => return Ok(Prepared::Done(unmappable(reason))),
        };
        Ok(Prepared::Ready(Ready {
            link,
            row,
            extra,
            partial,
            fingerprint,
        }))
    }

    /// First sync: maps records that have no link (not even a tombstone)
    /// and so no copy yet, ahead of [`Agent::copy_new`]: the next batch is
    /// mapped while the one before is written.
    pub(super) fn prepare_new(
        &self,
        pair: usize,
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
            if let Prepared::Ready(r) = self.prepare_linked(pair, origin, record, None)? {
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
    pub(super) async fn copy_new(
        &self,
        pair: usize,
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
                        self.settle_into(&mut batch, pair, origin, written, tally, false)?;
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

    /// The link of a record once its copy is written.
    #[allow(clippy::too_many_arguments)]
    fn written_link(
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
    async fn upsert_batch(
        &self,
        tx: &mut dyn Transaction,
        pair: usize,
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
    async fn write_batch(
        &self,
        tx: &mut dyn Transaction,
        pair: usize,
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
            let conflict = match &copy {
                None => true,
                Some(copy) => !link.unchanged(dest, &Fingerprint::of(copy)),
            };
            if conflict && !self.wins(origin) {
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
    async fn upsert_one(
        &self,
        tx: &mut dyn Transaction,
        pair: usize,
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
                conflict = match &current {
                    None => true,
                    Some(copy) => !link.unchanged(dest, &Fingerprint::of(copy)),
                };
                if conflict && !self.wins(origin) {
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
    async fn left_the_filter(
        &self,
        tx: &mut dyn Transaction,
        pair: usize,
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

    /// Deletes the copies of `records`, deleted on `origin`. Returns the
    /// records whose delete failed on a data error when `last_chance` is
    /// false (they are tried again later in the round).
    async fn apply_deletes(
        &self,
        pair: usize,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        let mut failed = Vec::new();
        for chunk in records.chunks(self.integration.config.batch_size) {
            match self
                .delete_chunk(pair, origin, chunk.to_vec(), last_chance, tally)
                .await
            {
                Ok(retry) => failed.extend(retry),
                // The commit itself was refused (a deferred constraint):
                // each record alone, so that only the one at fault fails.
                Err(e) if e_is_data(&e) => {
                    for record in chunk {
                        let alone = self
                            .delete_chunk(pair, origin, vec![record.clone()], last_chance, tally)
                            .await;
                        match alone {
                            Ok(retry) => failed.extend(retry),
                            Err(e) if e_is_data(&e) => {
                                let mut out = ChunkResult::default();
                                self.refuse(
                                    pair,
                                    origin,
                                    record.clone(),
                                    e,
                                    last_chance,
                                    &mut out,
                                    tally,
                                )?;
                                failed.extend(out.retry);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(failed)
    }

    async fn delete_chunk(
        &self,
        pair: usize,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        let span = apply_span(
            &self.integration.plan.pairs[pair].name,
            origin,
            records.len(),
        );
        self.delete_records(pair, origin, records, last_chance, tally)
            .instrument(span)
            .await
    }

    /// One transaction's worth of deletes: in a batch where the other
    /// side has transactions, else (or when the batch is refused) record by
    /// record, each behind a savepoint.
    async fn delete_records(
        &self,
        pair: usize,
        origin: Side,
        records: Vec<Record>,
        last_chance: bool,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        let dest = origin.other();
        let connector = self.integration.endpoint(dest);
        if connector.transactional() {
            let err = self.integration.error(dest);
            let position = self.state.log_position()?;
            let mut tx = connector.begin().await.map_err(&err)?;
            match self
                .delete_batch(&mut *tx, pair, origin, &records, position)
                .await
            {
                Ok(outcomes) => {
                    tx.commit().await.map_err(&err)?;
                    self.deleted(pair, origin, outcomes, tally).await?;
                    return Ok(Vec::new());
                }
                Err(e) if e_is_data(&e) => {
                    let _ = tx.rollback().await;
                    debug!(error = %e, "a batch of deletes was refused; applied again a record at a time");
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
        }
        self.delete_one_by_one(pair, origin, records, last_chance, tally)
            .await
    }

    /// The copies of `records` deleted with a few statements: locked and
    /// read at once, compared, deleted at once. Any data error fails the
    /// whole batch.
    async fn delete_batch(
        &self,
        tx: &mut dyn Transaction,
        pair: usize,
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
            let mut conflict = false;
            if let Some(copy) = copy {
                conflict = !link.unchanged(dest, &Fingerprint::of(&copy));
                if conflict && !self.wins(origin) {
                    outcomes.push((record.clone(), Outcome::Dropped { conflict }));
                    continue;
                }
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
    async fn deleted(
        &self,
        pair: usize,
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

    /// [`Agent::delete_records`] one record at a time.
    async fn delete_one_by_one(
        &self,
        pair: usize,
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
                let mut conflict = false;
                if let Some(copy) = tx.fetch_for_update(table, dest_key).await? {
                    conflict = !link.unchanged(dest, &Fingerprint::of(&copy));
                    if conflict && !self.wins(origin) {
                        return Ok(Outcome::Dropped { conflict });
                    }
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

    async fn forget_on(
        &self,
        side: Side,
        pair: &str,
        keys: &[(String, String)],
    ) -> Result<(), tandem_connectors::ConnectorError> {
        let mut tx = self.integration.endpoint(side).begin().await?;
        tx.forget_links(pair, keys).await?;
        tx.commit().await
    }

    /// Records what a committed transaction did: links, consumed log
    /// entries, dead letters, figures. Returns the records written with a
    /// reference still missing (their entries stay in the log).
    fn settle(
        &self,
        pair: usize,
        origin: Side,
        outcomes: Vec<(Record, Outcome)>,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        self.settle_with(StateBatch::default(), pair, origin, outcomes, tally)
    }

    /// [`Agent::settle`], with `batch` written in the same write.
    fn settle_with(
        &self,
        mut batch: StateBatch,
        pair: usize,
        origin: Side,
        outcomes: Vec<(Record, Outcome)>,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        debug_assert!(
            self.settling.lock().expect("settling lock").is_idle(),
            "a settlement is written after the one in the background"
        );
        let partial = self.settle_into(&mut batch, pair, origin, outcomes, tally, true)?;
        // Chunks are applied one at a time, each settled before the next:
        // every copy made so far is linked once this is written.
        self.links_complete_with(&mut batch);
        self.state.commit(batch, true)?;
        Ok(partial)
    }

    /// [`Agent::settle_with`], the write started in the background: the
    /// caller waits for it ([`Agent::settled`]) before anything reads what
    /// it records.
    fn settle_in_background(
        &self,
        mut batch: StateBatch,
        pair: usize,
        origin: Side,
        outcomes: Vec<(Record, Outcome)>,
        tally: &mut Tally,
    ) -> SyncResult<Vec<Record>> {
        let mut settling = self.settling.lock().expect("settling lock");
        debug_assert!(settling.is_idle(), "one settlement at a time");
        let partial = self.settle_into(&mut batch, pair, origin, outcomes, tally, true)?;
        self.links_complete_with(&mut batch);
        settling.start(&self.state, batch);
        Ok(partial)
    }

    /// Waits for the settlement written in the background, if any.
    pub(super) async fn settled(&self) -> SyncResult<()> {
        let mut write = std::mem::take(&mut *self.settling.lock().expect("settling lock"));
        write.wait().await
    }

    /// What [`Agent::settle`] records, added to `batch` (committed by the
    /// caller). `in_flight`: whether new copies were announced as in
    /// flight, and those records are to be removed.
    fn settle_into(
        &self,
        batch: &mut StateBatch,
        pair: usize,
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

fn e_is_data(e: &SyncError) -> bool {
    matches!(e, SyncError::Endpoint { error, .. } if error.kind() == ErrorKind::Data)
}
