//! Metric names and the helpers that record them.
//!
//! Every name starts with `tandem_`. Labels: `pair` (the table pair's name),
//! `direction` (`source_to_target` or `target_to_source`: the way the
//! change travels), `kind` (what was applied, or what kind of error).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::debug;

use crate::config::Side;
use crate::sync::{Agent, SyncError};

/// Change rows read from a change table (counter; `pair`, `direction`).
pub const CHANGES_CAPTURED: &str = "tandem_changes_captured_total";
/// Entries appended to the change log, after coalescing; the first sync's
/// copied rows included (counter; `pair`, `direction`).
pub const CHANGES_LOGGED: &str = "tandem_changes_logged_total";
/// Records written to the other side (counter; `pair`, `direction`,
/// `kind` = insert, update or delete).
pub const RECORDS_APPLIED: &str = "tandem_records_applied_total";
/// Change rows waiting in a change table: captured, not yet tailed (gauge;
/// `pair`, `direction`).
pub const CHANGE_TABLE_ROWS: &str = "tandem_change_table_rows";
/// Change-log entries waiting: logged, not yet applied (gauge).
pub const CHANGE_LOG_ENTRIES: &str = "tandem_change_log_entries";
/// Seconds from a change's capture to its commit on the other side
/// (histogram; `pair`, `direction`).
pub const APPLY_LAG: &str = "tandem_apply_lag_seconds";
/// Records changed on both sides since the last sync (counter; `pair`,
/// `direction` of the change being applied).
pub const CONFLICTS: &str = "tandem_conflicts_total";
/// Records in the dead-letter list (gauge; `pair`, `direction`).
pub const DEAD_LETTERS: &str = "tandem_dead_letters";
/// Failed passes, by the kind of error (counter; `kind`).
pub const ERRORS: &str = "tandem_errors_total";
/// Passes that failed with an error worth retrying and were retried after
/// a backoff (counter).
pub const RECONNECTS: &str = "tandem_reconnects_total";
/// Counter: change rows set aside because their key cannot be read.
pub const SET_ASIDE: &str = "tandem_changes_set_aside_total";
/// Gauge: 1 while a table pair is paused (schema drift, TRUNCATE), else 0.
pub const PAIR_PAUSED: &str = "tandem_pair_paused";

/// Upper bounds of the apply-lag histogram's buckets, in seconds.
pub const LAG_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether a recorder is installed (metrics are served).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A Prometheus recorder with Tandem's histogram buckets.
pub fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(APPLY_LAG.to_owned()), LAG_BUCKETS)
        .expect("the lag buckets are not empty")
}

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle) and describes every metric.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                // Someone else's recorder (a test harness): ours renders
                // nothing, which is still a valid scrape.
                tracing::warn!("a metrics recorder was already installed");
            }
            describe();
            ENABLED.store(true, Ordering::Relaxed);
            handle
        })
        .clone()
}

/// Help texts, shown in `/metrics`.
pub fn describe() {
    describe_counter!(CHANGES_CAPTURED, "Change rows read from the change tables");
    describe_counter!(
        CHANGES_LOGGED,
        "Entries appended to the change log (coalesced changes and first-sync rows)"
    );
    describe_counter!(
        RECORDS_APPLIED,
        "Records written to the other side, by kind (insert, update, delete)"
    );
    describe_gauge!(
        CHANGE_TABLE_ROWS,
        "Change rows captured but not yet tailed, at the last pass"
    );
    describe_gauge!(
        CHANGE_LOG_ENTRIES,
        "Change-log entries logged but not yet applied, at the last pass"
    );
    describe_histogram!(
        APPLY_LAG,
        ::metrics::Unit::Seconds,
        "Seconds from a change's capture to its commit on the other side"
    );
    describe_counter!(
        CONFLICTS,
        "Records changed on both sides since the last sync"
    );
    describe_gauge!(DEAD_LETTERS, "Records in the dead-letter list");
    describe_counter!(ERRORS, "Failed passes, by kind of error");
    describe_counter!(
        RECONNECTS,
        "Passes that failed with a retryable error and were retried"
    );
    describe_counter!(
        SET_ASIDE,
        "Change rows left in the change table because their key cannot be read"
    );
    describe_gauge!(
        PAIR_PAUSED,
        "1 while a table pair is paused by schema drift or a TRUNCATE, else 0"
    );
}

/// The `direction` label of changes that come from `origin`.
pub fn direction(origin: Side) -> &'static str {
    match origin {
        Side::Source => "source_to_target",
        Side::Target => "target_to_source",
    }
}

/// The `kind` label of an error: the connector's error kind (connection,
/// transient, data, schema, permission, config, internal), `state` for the
/// state directory, `setup` for a configuration that cannot run.
pub fn error_kind(error: &SyncError) -> String {
    match error {
        SyncError::Endpoint { error, .. } => error.kind().to_string(),
        SyncError::Store(_) => "state".to_owned(),
        SyncError::Setup(_) => "setup".to_owned(),
        SyncError::Unreachable { .. } => "connection".to_owned(),
    }
}

/// `n` change rows of `pair` read on `origin`.
pub fn captured(pair: &str, origin: Side, n: usize) {
    counter!(CHANGES_CAPTURED, "pair" => pair.to_owned(), "direction" => direction(origin))
        .increment(n as u64);
}

/// `n` change-log entries of `pair` appended for changes on `origin`.
pub fn logged(pair: &str, origin: Side, n: usize) {
    counter!(CHANGES_LOGGED, "pair" => pair.to_owned(), "direction" => direction(origin))
        .increment(n as u64);
}

/// One record of `pair` from `origin` applied: `kind` is insert, update or
/// delete; `lag_seconds` from its capture to now.
pub fn applied(pair: &str, origin: Side, kind: &'static str, lag_seconds: f64) {
    counter!(RECORDS_APPLIED, "pair" => pair.to_owned(), "direction" => direction(origin), "kind" => kind)
        .increment(1);
    histogram!(APPLY_LAG, "pair" => pair.to_owned(), "direction" => direction(origin))
        .record(lag_seconds.max(0.0));
}

/// One conflict on `pair` while applying a change from `origin`.
pub fn conflict(pair: &str, origin: Side) {
    counter!(CONFLICTS, "pair" => pair.to_owned(), "direction" => direction(origin)).increment(1);
}

/// A pass failed with `error`.
pub fn error(error: &SyncError) {
    counter!(ERRORS, "kind" => error_kind(error)).increment(1);
}

/// A change row was set aside.
pub fn set_aside() {
    counter!(SET_ASIDE).increment(1);
}

/// Whether `pair` is paused.
pub fn pair_paused(pair: &str, paused: bool) {
    gauge!(PAIR_PAUSED, "pair" => pair.to_owned()).set(if paused { 1.0 } else { 0.0 });
}

/// A failed pass is retried.
pub fn reconnect() {
    counter!(RECONNECTS).increment(1);
}

impl Agent {
    /// Sets the backlog and dead-letter gauges: one count of each side's
    /// change table, the change log's length and the dead letters. Does
    /// nothing when metrics are not served; a failure is logged at debug
    /// level and skipped (figures never fail a pass).
    pub async fn record_backlog(&self) {
        if !enabled() {
            return;
        }
        let integration = &self.integration;
        let pairs = &integration.plan.pairs;
        for side in Side::BOTH {
            let counted = integration
                .endpoint(side)
                .count_changes(&integration.tables(side))
                .await;
            let counts = match counted {
                Ok(counts) => counts,
                Err(e) => {
                    debug!(%side, error = %e, "cannot count the change table for metrics");
                    continue;
                }
            };
            let mut waiting = vec![0u64; pairs.len()];
            for (table, n) in counts {
                let pair = integration.pair_of(side, &table).or_else(|| {
                    integration
                        .split_tables(side)
                        .find(|(_, _, t)| t.name.to_string() == table)
                        .map(|(pair, _, _)| pair)
                });
                if let Some(pair) = pair {
                    waiting[pair] += n;
                }
            }
            for (pair, n) in pairs.iter().zip(waiting) {
                gauge!(CHANGE_TABLE_ROWS, "pair" => pair.name.clone(), "direction" => direction(side))
                    .set(n as f64);
            }
        }
        match self.state.log_len() {
            Ok(n) => gauge!(CHANGE_LOG_ENTRIES).set(n as f64),
            Err(e) => debug!(error = %e, "cannot count the change log for metrics"),
        }
        match self.state.dead_letters() {
            Ok(letters) => {
                let mut counts: HashMap<(&str, Side), u64> = HashMap::new();
                for letter in &letters {
                    *counts.entry((&letter.pair, letter.side)).or_default() += 1;
                }
                for pair in pairs {
                    for side in Side::BOTH {
                        let n = counts.get(&(pair.name.as_str(), side)).copied();
                        gauge!(DEAD_LETTERS, "pair" => pair.name.clone(), "direction" => direction(side))
                            .set(n.unwrap_or(0) as f64);
                    }
                }
            }
            Err(e) => debug!(error = %e, "cannot count the dead letters for metrics"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_connectors::{ConnectorError, Engine, ErrorKind};

    fn render(record: impl FnOnce()) -> String {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            describe();
            record();
        });
        handle.render()
    }

    #[test]
    fn directions_and_error_kinds_are_label_values() {
        assert_eq!(direction(Side::Source), "source_to_target");
        assert_eq!(direction(Side::Target), "target_to_source");
        let refused = SyncError::Endpoint {
            side: Side::Target,
            engine: Engine::Mysql,
            error: ConnectorError::new(ErrorKind::Connection, "refused"),
        };
        assert_eq!(error_kind(&refused), "connection");
        assert_eq!(error_kind(&SyncError::Setup("no".into())), "setup");
    }

    #[test]
    fn every_name_is_a_tandem_prometheus_name() {
        for name in [
            CHANGES_CAPTURED,
            CHANGES_LOGGED,
            RECORDS_APPLIED,
            CHANGE_TABLE_ROWS,
            CHANGE_LOG_ENTRIES,
            APPLY_LAG,
            CONFLICTS,
            DEAD_LETTERS,
            ERRORS,
            RECONNECTS,
        ] {
            assert!(name.starts_with("tandem_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn recorded_figures_render_with_their_labels() {
        let text = render(|| {
            captured("items", Side::Source, 3);
            logged("items", Side::Source, 2);
            applied("items", Side::Source, "insert", 0.2);
            applied("items", Side::Target, "delete", 12.0);
            conflict("items", Side::Target);
            reconnect();
            error(&SyncError::Setup("x".into()));
        });
        for line in [
            "tandem_changes_captured_total{pair=\"items\",direction=\"source_to_target\"} 3",
            "tandem_changes_logged_total{pair=\"items\",direction=\"source_to_target\"} 2",
            "tandem_records_applied_total{pair=\"items\",direction=\"source_to_target\",kind=\"insert\"} 1",
            "tandem_records_applied_total{pair=\"items\",direction=\"target_to_source\",kind=\"delete\"} 1",
            "tandem_apply_lag_seconds_bucket{pair=\"items\",direction=\"source_to_target\",le=\"0.25\"} 1",
            "tandem_apply_lag_seconds_count{pair=\"items\",direction=\"target_to_source\"} 1",
            "tandem_conflicts_total{pair=\"items\",direction=\"target_to_source\"} 1",
            "tandem_reconnects_total 1",
            "tandem_errors_total{kind=\"setup\"} 1",
            "# TYPE tandem_apply_lag_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
    }
}
