//! Preparing a record: its link read, stale changes and echoes dropped,
//! its row mapped, before anything is locked.

use tandem_connectors::{Fingerprint, Row};
use tracing::debug;

use super::{Applier, Outcome, Record};
use crate::config::Side;
use crate::mapping::plan::PairId;
use crate::mapping::plan::{MapError, Mapped, SplitPlan};
use crate::mapping::split;
use crate::state::Link;
use crate::sync::SyncResult;

/// A record mapped and ready to be written.
pub(in crate::sync) struct Ready<'p> {
    /// Its link, if it has one (possibly a tombstone).
    pub(in crate::sync) link: Option<Link>,
    /// Its row as the other side's table wants it.
    pub(in crate::sync) row: Row,
    /// The rows of extra tables it splits into, and their values.
    pub(in crate::sync) extra: Vec<(&'p SplitPlan, Row)>,
    /// Whether a reference is still missing.
    pub(in crate::sync) partial: bool,
    /// The origin row's fingerprint.
    pub(in crate::sync) fingerprint: Fingerprint,
}

/// What [`Agent::prepare`] made of a record.
pub(in crate::sync) enum Prepared<'p> {
    /// Nothing to write.
    Done(Outcome),
    /// Outside its direction's filter.
    Filtered(Option<Link>),
    /// To be written.
    Ready(Ready<'p>),
}

impl<'a> Applier<'a> {
    /// Reads a record's link and maps its row: decides what needs no write
    /// at all (stale, echo, waiting, unmappable) before anything is locked.
    pub(super) fn prepare(
        &self,
        pair: PairId,
        origin: Side,
        record: &Record,
    ) -> SyncResult<Prepared<'a>> {
        let name = &self.integration.plan.pairs[pair].name;
        let link = self.state.link(name, origin, &record.key)?;
        self.prepare_linked(pair, origin, record, link)
    }

    /// [`Agent::prepare`] for a record whose `link` was already read.
    pub(in crate::sync) fn prepare_linked(
        &self,
        pair: PairId,
        origin: Side,
        record: &Record,
        link: Option<Link>,
    ) -> SyncResult<Prepared<'a>> {
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
            let lookups = self.apply_state.lookups.read().expect("lookup cache lock");
            self.integration
                .plan
                .map_row(pair, origin, row, self.state, &lookups)
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
}
