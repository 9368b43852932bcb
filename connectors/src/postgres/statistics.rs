//! Fresh planner statistics for the mapping table while it grows fast.
//!
//! A first sync adds a mapping row per copied record, thousands a second,
//! and autovacuum (when it runs at all) analyzes a table long after it has
//! grown. Without statistics the planner takes `pair = $1` to be selective
//! and reads a batch's keys by scanning the whole pair through the wrong
//! index: 330 ms per batch of 1,000 at a million rows instead of a few.
//! So the agent analyzes the table itself each time the rows it recorded
//! doubled: a handful of ANALYZEs for a million rows.
//!
//! The change table likewise: a backlog fills it with rows the planner has
//! never counted, and it read each batch of changes by scanning and sorting
//! the whole table (30-50 ms per batch of 2,000 at 100,000 rows, growing
//! with the backlog) instead of walking the key's index (1-2 ms). A read
//! that comes back full has the table analyzed, at most once a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rows recorded before the first ANALYZE.
const FIRST_ANALYZE_AT: u64 = 10_000;

/// The mapping rows this connector recorded, and when to analyze next.
#[derive(Debug)]
pub(crate) struct IdMapGrowth {
    recorded: AtomicU64,
    next_analyze: AtomicU64,
}

impl Default for IdMapGrowth {
    fn default() -> Self {
        IdMapGrowth {
            recorded: AtomicU64::new(0),
            next_analyze: AtomicU64::new(FIRST_ANALYZE_AT),
        }
    }
}

impl IdMapGrowth {
    /// Counts `rows` recorded; true when the table is due for an ANALYZE
    /// (the caller runs it; the next one is due at twice the count).
    pub(crate) fn recorded(&self, rows: u64) -> bool {
        let total = self.recorded.fetch_add(rows, Ordering::Relaxed) + rows;
        let due = self.next_analyze.load(Ordering::Relaxed);
        total >= due
            && self
                .next_analyze
                .compare_exchange(due, total * 2, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Refreshes the mapping table's statistics (allowed inside a transaction;
/// the transaction's own later statements are planned with them).
pub(crate) const ANALYZE_ID_MAP_SQL: &str = "analyze tandem.id_map";

/// How often a backlog has the change table analyzed.
const CHANGES_ANALYZED_EVERY: Duration = Duration::from_secs(60);

/// When this connector last analyzed the change table.
#[derive(Debug, Default)]
pub(crate) struct ChangesStatistics {
    analyzed: Mutex<Option<Instant>>,
}

impl ChangesStatistics {
    /// A read of changes came back full at `now`: true when the table is due
    /// for an ANALYZE (the caller runs it).
    pub(crate) fn backlog_at(&self, now: Instant) -> bool {
        let mut analyzed = self.analyzed.lock().expect("statistics lock");
        let due = analyzed.is_none_or(|at| now.duration_since(at) >= CHANGES_ANALYZED_EVERY);
        if due {
            *analyzed = Some(now);
        }
        due
    }
}

/// Refreshes the change table's statistics.
pub(crate) const ANALYZE_CHANGES_SQL: &str = "analyze tandem.changes";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_has_the_change_table_analyzed_once_a_minute() {
        let stats = ChangesStatistics::default();
        let start = Instant::now();
        let due: Vec<bool> = [0, 1, 59, 60, 61, 125]
            .iter()
            .map(|s| stats.backlog_at(start + Duration::from_secs(*s)))
            .collect();
        assert_eq!(due, [true, false, false, true, false, true]);
    }

    #[test]
    fn analyzes_each_time_the_recorded_rows_double() {
        let growth = IdMapGrowth::default();
        let mut due_at = Vec::new();
        let mut total = 0;
        for _ in 0..1000 {
            total += 1000;
            if growth.recorded(1000) {
                due_at.push(total);
            }
        }
        assert_eq!(
            due_at,
            [10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000]
        );
    }
}
