//! Tailing: change rows of one side into the change log.
//!
//! The order matters and is the product's durability promise: read change
//! rows, read the records' current values, append to the change log, flush
//! it, and only then delete exactly the change rows consumed. A crash
//! anywhere re-reads the same change rows; re-reading a record is harmless.

use std::collections::HashMap;

use tandem_connectors::{ChangeOp, Key, Row};
use tracing::debug;

use super::drift::Pauses;
use super::{Agent, Integration, Route, SyncError, SyncResult};
use crate::config::Side;
use crate::mapping::plan::PairId;
use crate::mapping::split;
use crate::observe::metrics;
use crate::state::{NewEntry, State};

/// Change rows read per round trip.
pub const TAIL_BATCH: usize = 2000;
/// Round trips per tail: under sustained load the other side and applying
/// get their turn after this many.
pub const TAIL_ROUNDS: usize = 10;

/// What the tailer keeps between passes.
#[derive(Default)]
pub struct TailerState {
    /// Change rows left in the change table because their key cannot be
    /// read: (side index, seq), reported once each.
    pub set_aside: std::sync::Mutex<std::collections::BTreeSet<(usize, i64)>>,
}

/// The tailer, the stage from a side's change table to the change log:
/// reads the committed change rows, reads the rows they name, logs them,
/// and only then acknowledges them (deletes the change rows). A view over
/// what it needs of the agent.
pub struct Tailer<'a> {
    /// Endpoints and plan.
    pub integration: &'a Integration,
    /// The state directory (its change log).
    pub state: &'a State,
    /// What the tailer keeps between passes.
    tail_state: &'a TailerState,
}

impl Agent {
    /// The tailer over this agent's integration and state.
    pub fn tailer(&self) -> Tailer<'_> {
        Tailer {
            integration: &self.integration,
            state: &self.state,
            tail_state: &self.tail_state,
        }
    }
}

impl Tailer<'_> {
    /// Moves every committed change of `side` into the change log; returns
    /// the number of change rows consumed. The change rows of `paused`
    /// pairs are left where they are; a TRUNCATE pauses its pair there
    /// (its change row stays until an operator removes it).
    pub async fn tail(&self, side: Side, paused: &mut Pauses) -> SyncResult<usize> {
        let integration = &self.integration;
        let connector = integration.endpoint(side);
        let err = integration.error(side);
        let mut consumed = 0;
        for _ in 0..TAIL_ROUNDS {
            let tables = integration.tables_of(side, |pair| !paused.contains_key(&pair));
            let read = connector
                .read_changes(&tables, TAIL_BATCH)
                .await
                .map_err(&err)?;
            if read.is_empty() {
                return Ok(consumed);
            }
            let full = read.len() == TAIL_BATCH;
            // A TRUNCATE pauses its pair: the changes after it wait with it.
            let mut changes = Vec::with_capacity(read.len());
            for change in read {
                let Some(route) = integration.route(side, &change.table) else {
                    return Err(SyncError::Setup(format!(
                        "{side} change table names unknown table {}",
                        change.table
                    )));
                };
                let pair = route.pair();
                if paused.contains_key(&pair) {
                    continue;
                }
                if change.op == ChangeOp::Truncate {
                    paused.insert(
                        pair,
                        truncate_alert(integration, side, pair, &change.table, change.seq),
                    );
                    // The pair's changes read before the marker wait too:
                    // their rows are read now, after the TRUNCATE, and would
                    // look deleted.
                    changes.retain(|c: &tandem_connectors::CapturedChange| {
                        integration.pair_of_change(side, &c.table) != Some(pair)
                    });
                    continue;
                }
                let table = integration.routed_table(side, route);
                if let Err(e) = Key::from_captured(&table.key_types(), &change.key) {
                    // One unreadable row must not stop the side: it stays in
                    // the change table for the operator, and is reported once.
                    self.set_aside(side, &change, &e.to_string());
                    continue;
                }
                changes.push(change);
            }
            if changes.is_empty() {
                // Only rows of pairs just paused or rows set aside: a full
                // read may hide more behind them, a short one is the end.
                if full {
                    continue;
                }
                return Ok(consumed);
            }
            // Coalesce: one entry per record, however often it changed,
            // noting whether a delete is among its changes.
            let mut keys: Vec<(PairId, Key, chrono::DateTime<chrono::Utc>, bool)> = Vec::new();
            let mut seen: HashMap<(PairId, String), usize> = HashMap::new();
            let mut add =
                |pair: PairId, key: Key, at: chrono::DateTime<chrono::Utc>, deleted: bool| {
                    match seen.get(&(pair, key.encode())) {
                        Some(&i) => {
                            keys[i].2 = keys[i].2.max(at);
                            keys[i].3 |= deleted;
                        }
                        None => {
                            seen.insert((pair, key.encode()), keys.len());
                            keys.push((pair, key, at, deleted));
                        }
                    }
                };
            // Change rows per pair, for the metrics.
            let mut captured = vec![0; integration.plan.pairs.len()];
            for change in &changes {
                let at = format!("change {} of {}", change.seq, change.table);
                let (pair, split) = match integration.route(side, &change.table) {
                    Some(Route::Pair(pair)) => {
                        captured[pair] += 1;
                        let table = integration.plan.pairs[pair].table(side);
                        let key = Key::from_captured(&table.key_types(), &change.key)
                            .map_err(|e| err(e.context(&at)))?;
                        add(pair, key, change.captured_at, change.op == ChangeOp::Delete);
                        continue;
                    }
                    Some(Route::Split { pair, split }) => (pair, split),
                    None => continue, // checked above
                };
                // A shared extra row changed: the rows joined with it changed.
                let table = &integration.plan.pairs[pair].splits[split].table;
                captured[pair] += 1;
                let key = Key::from_captured(&table.key_types(), &change.key)
                    .map_err(|e| err(e.context(&at)))?;
                let plan = &integration.plan.pairs[pair];
                let main = plan.table(side);
                let reference = plan.splits[split].reference.clone();
                for row in connector
                    .find_rows(main, &[reference], &key.0)
                    .await
                    .map_err(&err)?
                {
                    if let Some(main_key) = main.key_of(&row) {
                        add(pair, main_key, change.captured_at, false);
                    }
                }
            }
            let mut rows: HashMap<(PairId, String), Row> = HashMap::new();
            for pair in integration.plan.ids() {
                let wanted: Vec<Key> = keys
                    .iter()
                    .filter(|k| k.0 == pair)
                    .map(|k| k.1.clone())
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let plan = &integration.plan.pairs[pair];
                let table = plan.table(side);
                let mut fetched = connector.fetch_rows(table, &wanted).await.map_err(&err)?;
                split::join_rows(plan, side, connector.as_ref(), &mut fetched)
                    .await
                    .map_err(&err)?;
                for row in fetched {
                    if let Some(key) = table.key_of(&row) {
                        rows.insert((pair, key.encode()), row);
                    }
                }
            }
            let mut logged = vec![0; integration.plan.pairs.len()];
            let entries: Vec<NewEntry> = keys
                .into_iter()
                .filter_map(|(pair, key, captured_at, deleted)| {
                    let row = rows.remove(&(pair, key.encode()));
                    // Only a delete deletes. A row inserted or updated and
                    // gone by now was deleted since (its delete is a change
                    // row of its own, read next) or truncated (the TRUNCATE
                    // marker follows and pauses the pair): either way, not
                    // a delete to apply from this change.
                    if row.is_none() && !deleted {
                        return None;
                    }
                    logged[pair] += 1;
                    Some(NewEntry {
                        side,
                        pair: integration.plan.pairs[pair].name.clone(),
                        key,
                        row,
                        captured_at,
                    })
                })
                .collect();
            debug!(%side, changes = changes.len(), records = entries.len(), "tailed");
            self.state.append_log(entries)?;
            let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
            connector.delete_changes(&seqs).await.map_err(&err)?;
            for (pair, plan) in integration.plan.enumerate() {
                if captured[pair] > 0 {
                    metrics::captured(&plan.name, side, captured[pair]);
                }
                if logged[pair] > 0 {
                    metrics::logged(&plan.name, side, logged[pair]);
                }
            }
            consumed += changes.len();
            if !full {
                return Ok(consumed);
            }
        }
        Ok(consumed)
    }

    /// Reports a change row whose key cannot be read, once; it is left in
    /// the change table and skipped from then on.
    fn set_aside(&self, side: Side, change: &tandem_connectors::CapturedChange, why: &str) {
        let mut set_aside = self.tail_state.set_aside.lock().expect("set-aside lock");
        if set_aside.insert((side.index(), change.seq)) {
            tracing::warn!(
                %side,
                table = %change.table,
                seq = change.seq,
                "change row set aside: its key {} cannot be read ({why}); the other changes go on; \
                 fix the row or delete it: DELETE FROM {} WHERE seq = {}",
                change.key,
                self.integration.endpoint(side).engine().change_table(),
                change.seq
            );
            crate::observe::metrics::set_aside();
        }
    }
}

/// The alert of a TRUNCATE: the agent cannot tell whether the other side
/// should lose the same rows, so it asks.
fn truncate_alert(
    integration: &Integration,
    side: Side,
    pair: PairId,
    table: &str,
    seq: i64,
) -> String {
    let name = &integration.plan.pairs[pair].name;
    format!(
        "pair {name}: {side} table {table} was truncated (change {seq}); Tandem does not guess \
         whether the other side should lose the same rows: make the sides agree (truncate the \
         other table too, or `tandem-agent reconcile --repair --config {config}`), then delete \
         the marker on the {side}: DELETE FROM {changes} WHERE seq = {seq}",
        config = integration.config.path.display(),
        // Only PostgreSQL captures TRUNCATE today.
        changes = integration.endpoint(side).engine().change_table(),
    )
}

#[cfg(test)]
mod tests {
    use tandem_connectors::faults::{Call, Fault};

    use crate::config::Side;
    use crate::sync::rig::Rig;

    #[tokio::test]
    async fn changes_are_acknowledged_only_once_the_change_log_holds_them() {
        let rig = Rig::new(&["Ann", "Bob"], 50).await;
        rig.agent.run_once().await.expect("first sync");
        rig.exec(
            Side::Source,
            "UPDATE customers SET email = lower(name) || '@new.example.com'",
        );
        let source = &rig.faults[Side::Source.index()];
        // The acknowledgement (deleting the change rows) is lost.
        source.fail_nth(Call::DeleteChanges, 1, Fault::Connection);

        let mut paused = Default::default();
        let failed = rig.agent.tailer().tail(Side::Source, &mut paused).await;

        assert!(failed.is_err(), "the lost acknowledgement is reported");
        assert_eq!(
            rig.agent.state.log_len().unwrap(),
            2,
            "logged before the acknowledgement was tried"
        );
        assert_eq!(
            rig.change_rows(Side::Source).await,
            2,
            "the change rows stay until acknowledged"
        );

        // Read again: the same changes, logged again, applied once.
        let report = rig.agent.run_once().await.expect("the retry");

        assert!(report.in_step());
        assert_eq!(rig.change_rows(Side::Source).await, 0, "acknowledged now");
        assert_eq!(rig.agent.state.log_len().unwrap(), 0);
        assert_eq!(rig.customers(Side::Target), rig.customers(Side::Source));
    }

    #[tokio::test]
    async fn a_failed_read_of_the_change_table_logs_and_acknowledges_nothing() {
        let rig = Rig::new(&["Ann"], 50).await;
        rig.agent.run_once().await.expect("first sync");
        rig.exec(Side::Source, "INSERT INTO customers (name) VALUES ('Bob')");
        let source = &rig.faults[Side::Source.index()];
        source.fail_nth(Call::ReadChanges, 1, Fault::Connection);
        let acks = source.calls(Call::DeleteChanges);

        let mut paused = Default::default();
        assert!(rig
            .agent
            .tailer()
            .tail(Side::Source, &mut paused)
            .await
            .is_err());

        assert_eq!(rig.agent.state.log_len().unwrap(), 0);
        assert_eq!(
            source.calls(Call::DeleteChanges),
            acks,
            "nothing acknowledged"
        );
        assert_eq!(rig.change_rows(Side::Source).await, 1);
        assert!(rig.agent.run_once().await.expect("the retry").in_step());
        assert_eq!(rig.customers(Side::Target), rig.customers(Side::Source));
    }
}
