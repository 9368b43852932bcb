//! Tables that changed under a running agent: a column added, dropped,
//! renamed or retyped, a table dropped, a capture trigger dropped, a table
//! truncated. The affected table pair is paused with the reason and the fix
//! while the other pairs go on. A paused pair's change rows stay in the
//! change table and its change-log entries stay in the log, so nothing
//! captured meanwhile is lost: once the cause is gone the pair resumes.

use std::collections::BTreeMap;

use tandem_connectors::TableSchema;
use tracing::{info, warn};

use super::{Agent, SyncResult};
use crate::config::Side;
use crate::mapping::plan::PairId;

/// Paused table pairs, by pair index: why, and what fixes it.
pub type Pauses = BTreeMap<PairId, String>;

/// How `now` differs from `planned` in what the plan relies on, one
/// phrase; `None` when it does not.
pub fn differences(planned: &TableSchema, now: &TableSchema) -> Option<String> {
    let find =
        |table: &TableSchema, name: &str| table.columns.iter().find(|c| c.name == name).cloned();
    let mut found = Vec::new();
    let gone: Vec<&str> = planned
        .columns
        .iter()
        .filter(|c| find(now, &c.name).is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !gone.is_empty() {
        found.push(format!("column {} dropped or renamed", gone.join(", ")));
    }
    let new: Vec<&str> = now
        .columns
        .iter()
        .filter(|c| find(planned, &c.name).is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !new.is_empty() {
        found.push(format!("new column {}", new.join(", ")));
    }
    for column in &planned.columns {
        if let Some(current) = find(now, &column.name) {
            if current.data_type != column.data_type || current.nullable != column.nullable {
                found.push(format!(
                    "column {} changed from {} to {}{}",
                    column.name,
                    column.native_type,
                    current.native_type,
                    if current.nullable { "" } else { " not null" }
                ));
            }
        }
    }
    if planned.primary_key != now.primary_key {
        found.push(format!(
            "primary key changed from ({}) to ({})",
            planned.primary_key.join(", "),
            now.primary_key.join(", ")
        ));
    }
    (!found.is_empty()).then(|| found.join("; "))
}

impl Agent {
    /// Compares every synced table with the plan the agent started with
    /// and checks its capture trigger; returns the pairs that must pause.
    /// Only a failure to reach a server is an error.
    pub async fn check_drift(&self) -> SyncResult<Pauses> {
        let integration = &self.integration;
        let config = integration.config.path.display();
        let mut found = Pauses::new();
        for side in Side::BOTH {
            let connector = integration.endpoint(side);
            let err = integration.error(side);
            let mut tables: Vec<(PairId, TableSchema)> = Vec::new();
            for (id, pair) in integration.plan.enumerate() {
                tables.push((id, pair.table(side).clone()));
            }
            tables.extend(
                integration
                    .split_tables(side)
                    .map(|(pair, _, table)| (pair, table.clone())),
            );
            for (index, planned) in &tables {
                let pair = &integration.plan.pairs[*index].name;
                let problem = match connector.describe(&planned.name).await {
                    Ok(now) => differences(planned, &now).map(|what| {
                        format!(
                            "pair {pair}: {side} table {} changed while the agent ran ({what}): \
                             change the mapping in {config} (or change the table back), then \
                             restart the agent",
                            planned.name
                        )
                    }),
                    Err(e) if e.is_retryable() => return Err(err(e)),
                    Err(e) => Some(format!(
                        "pair {pair}: {side} table {} cannot be read ({e}): restore it, or \
                         change the mapping in {config} and restart the agent",
                        planned.name
                    )),
                };
                if let Some(problem) = problem {
                    found.entry(*index).or_insert(problem);
                }
            }
            let schemas: Vec<TableSchema> = tables.iter().map(|(_, t)| t.clone()).collect();
            let installed = connector.installation(&schemas).await.map_err(&err)?;
            for missing in installed.missing_triggers {
                let Some((index, _)) = tables.iter().find(|(_, t)| t.name == missing) else {
                    continue;
                };
                let pair = &integration.plan.pairs[*index].name;
                found.entry(*index).or_insert(format!(
                    "pair {pair}: {side} table {missing} has no capture trigger (dropped by \
                     hand?): run `tandem-agent install-triggers --config {config}`, then \
                     `tandem-agent reconcile --repair` for changes made without it"
                ));
            }
        }
        Ok(found)
    }

    /// Makes `now` the paused pairs: logs each newly paused pair once, and
    /// each pair that resumed.
    pub fn report_pauses(&self, now: Pauses) {
        let mut paused = self.run_state.paused.lock().expect("pauses lock");
        for (index, reason) in &now {
            if paused.get(index) != Some(reason) {
                warn!(pair = %self.integration.plan.pairs[*index].name, "table pair paused: {reason}");
                crate::observe::metrics::pair_paused(
                    &self.integration.plan.pairs[*index].name,
                    true,
                );
            }
        }
        for index in paused.keys() {
            if !now.contains_key(index) {
                let pair = &self.integration.plan.pairs[*index].name;
                info!(pair = %pair, "table pair resumed");
                crate::observe::metrics::pair_paused(pair, false);
            }
        }
        *paused = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_connectors::{Column, DataType, TableName};

    fn table(columns: &[(&str, DataType)]) -> TableSchema {
        TableSchema::new(
            TableName::new(None, "items"),
            columns
                .iter()
                .map(|(n, t)| Column::new(n, *t, "native"))
                .collect(),
            vec!["id".to_owned()],
        )
    }

    #[test]
    fn names_what_changed() {
        let planned = table(&[("id", DataType::Int), ("qty", DataType::Int)]);
        assert_eq!(differences(&planned, &planned.clone()), None);
        let renamed = table(&[("id", DataType::Int), ("quantity", DataType::Int)]);
        assert_eq!(
            differences(&planned, &renamed).as_deref(),
            Some("column qty dropped or renamed; new column quantity")
        );
        let retyped = table(&[("id", DataType::Int), ("qty", DataType::Text)]);
        assert!(differences(&planned, &retyped)
            .unwrap()
            .starts_with("column qty changed"));
    }
}
