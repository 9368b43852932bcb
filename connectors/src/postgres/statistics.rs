//! Fresh planner statistics for the mapping table while it grows fast.
//!
//! A first sync adds a mapping row per copied record, thousands a second,
//! and autovacuum (when it runs at all) analyzes a table long after it has
//! grown. Without statistics the planner takes `pair = $1` to be selective
//! and reads a batch's keys by scanning the whole pair through the wrong
//! index: 330 ms per batch of 1,000 at a million rows instead of a few.
//! So the agent analyzes the table itself each time the rows it recorded
//! doubled: a handful of ANALYZEs for a million rows.

use std::sync::atomic::{AtomicU64, Ordering};

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

#[cfg(test)]
mod tests {
    use super::*;

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
