//! What the engine reports while it runs. The engine does not drive its
//! host: the command that runs it passes a sink, which turns the reports
//! into systemd notifications, health answers and metrics (`run` does all
//! three; a test or an embedding passes [`Unobserved`]).

use std::collections::HashMap;

use super::{Agent, SyncError};
use crate::config::Side;

/// Reports of the run loop ([`Agent::run`]), in the order they happen.
pub trait Events: Send + Sync {
    /// The loop started; `first_sync_done` says whether it begins with the
    /// first sync.
    fn started(&self, first_sync_done: bool);
    /// A pass succeeded; `recovered`: the passes before it had failed.
    fn pass_succeeded(&self, first_sync_done: bool, recovered: bool);
    /// A pass failed with an error worth a retry; the loop waits and goes on.
    fn pass_failed(&self, error: &SyncError);
    /// The loop ended: on a stop request (`None`), or on an error not worth
    /// a retry.
    fn stopped(&self, error: Option<&SyncError>);
    /// Whether [`Events::backlog`] is wanted after each pass (counting the
    /// backlog costs a query per side).
    fn wants_backlog(&self) -> bool {
        false
    }
    /// The backlog after a pass.
    fn backlog(&self, backlog: &Backlog) {
        let _ = backlog;
    }
}

/// A sink that drops every report.
pub struct Unobserved;

impl Events for Unobserved {
    fn started(&self, _: bool) {}
    fn pass_succeeded(&self, _: bool, _: bool) {}
    fn pass_failed(&self, _: &SyncError) {}
    fn stopped(&self, _: Option<&SyncError>) {}
}

/// What waits, after a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Change rows captured and not yet tailed, by pair and the side they
    /// were captured on; `None` for a side whose change table could not be
    /// counted.
    pub change_table_rows: Vec<(String, Side, Option<u64>)>,
    /// Change-log entries logged and not yet applied (`None`: unknown).
    pub change_log_entries: Option<u64>,
    /// Dead letters, by pair and the side their change came from (`None`:
    /// the list could not be read).
    pub dead_letters: Option<Vec<(String, Side, u64)>>,
}

impl Agent {
    /// Counts the backlog: each side's change table (once), the change log
    /// and the dead letters. A count that fails is left out and logged at
    /// debug level: figures never fail a pass.
    pub async fn backlog(&self) -> Backlog {
        let integration = &self.integration;
        let pairs = &integration.plan.pairs;
        let mut backlog = Backlog::default();
        for side in Side::BOTH {
            let counted = integration
                .endpoint(side)
                .count_changes(&integration.tables(side))
                .await;
            let counts = match counted {
                Ok(counts) => counts,
                Err(e) => {
                    tracing::debug!(%side, error = %e, "cannot count the change table");
                    for pair in pairs {
                        backlog
                            .change_table_rows
                            .push((pair.name.clone(), side, None));
                    }
                    continue;
                }
            };
            let mut waiting = vec![0u64; pairs.len()];
            for (table, n) in counts {
                if let Some(pair) = integration.pair_of_change(side, &table) {
                    waiting[pair] += n;
                }
            }
            for (pair, n) in pairs.iter().zip(waiting) {
                backlog
                    .change_table_rows
                    .push((pair.name.clone(), side, Some(n)));
            }
        }
        backlog.change_log_entries = match self.state.log_len() {
            Ok(n) => Some(n as u64),
            Err(e) => {
                tracing::debug!(error = %e, "cannot count the change log");
                None
            }
        };
        backlog.dead_letters = match self.state.dead_letters() {
            Ok(letters) => {
                let mut counts: HashMap<(&str, Side), u64> = HashMap::new();
                for letter in &letters {
                    *counts.entry((&letter.pair, letter.side)).or_default() += 1;
                }
                let mut by_pair = Vec::new();
                for pair in pairs {
                    for side in Side::BOTH {
                        let n = counts.get(&(pair.name.as_str(), side)).copied();
                        by_pair.push((pair.name.clone(), side, n.unwrap_or(0)));
                    }
                }
                Some(by_pair)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the dead letters");
                None
            }
        };
        backlog
    }
}
