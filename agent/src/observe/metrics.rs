//! Metric names and the helpers that record them.
//!
//! Every name starts with `tandem_`. Labels: `pair` (the table pair's name),
//! `direction` (`source_to_target` or `target_to_source`: the way the
//! change travels), `kind` (what was applied, or what kind of error).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Side;
use crate::sync::events::Backlog;
use crate::sync::SyncError;

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

/// Sets the backlog and dead-letter gauges from a pass's figures; a
/// figure that could not be counted leaves its gauge as it was.
pub fn backlog(backlog: &Backlog) {
    for (pair, side, rows) in &backlog.change_table_rows {
        if let Some(rows) = rows {
            gauge!(CHANGE_TABLE_ROWS, "pair" => pair.clone(), "direction" => direction(*side))
                .set(*rows as f64);
        }
    }
    if let Some(entries) = backlog.change_log_entries {
        gauge!(CHANGE_LOG_ENTRIES).set(entries as f64);
    }
    for (pair, side, letters) in backlog.dead_letters.iter().flatten() {
        gauge!(DEAD_LETTERS, "pair" => pair.clone(), "direction" => direction(*side))
            .set(*letters as f64);
    }
}
