//! What must hold in the databases before anything is synced, beyond the
//! mapping: Tandem's objects installed at this agent's version, a capture
//! trigger on every synced table, the privileges the agent needs, and a
//! way for every new copy to get its key. `check` shows all of it, and
//! `run` refuses to start on any of it: one list for both.

use tandem_connectors::connector::SCHEMA_VERSION;
use tandem_connectors::{DataType, TableSchema};

use super::{Integration, SyncResult};
use crate::config::Side;
use crate::mapping::plan::{in_order, KeyMode, Plan, PlanProblem};

impl Integration {
    /// The synced tables of `side` as described: the pairs' and the extra
    /// tables rows are split into.
    pub fn schemas(&self, side: Side) -> Vec<TableSchema> {
        self.plan
            .pairs
            .iter()
            .map(|p| p.table(side).clone())
            .chain(self.split_tables(side).map(|(_, _, t)| t.clone()))
            .collect()
    }

    /// Every problem `check` shows and `run` refuses to start on (see
    /// [`in_order`]): the mapping's, the keys of new copies, and what the
    /// databases lack. Only a failure to reach a side is an error.
    pub async fn validate(&self) -> SyncResult<Vec<PlanProblem>> {
        let mut problems = self.mapping_problems();
        problems.extend(self.database_problems().await?);
        Ok(in_order(problems))
    }

    /// The problems of the mapping, keys included: no database is asked
    /// anything (`plan` shows them beside a running service).
    pub fn mapping_problems(&self) -> Vec<PlanProblem> {
        let mut problems = self.problems.clone();
        problems.extend(self.key_problems());
        in_order(problems)
    }

    /// What the databases lack: installed objects, triggers, privileges;
    /// what an API's answers show (credentials, paths, fields).
    async fn database_problems(&self) -> SyncResult<Vec<PlanProblem>> {
        let mut found = Vec::new();
        let fix = format!(
            "run `tandem-agent install-triggers --config {}`",
            self.config.path.display()
        );
        for side in Side::BOTH {
            let connector = self.endpoint(side);
            let tables = self.schemas(side);
            let err = self.error(side);
            for line in connector.missing_privileges(&tables).await.map_err(&err)? {
                found.push(PlanProblem::database(format!("{side}: {line}")));
            }
            for finding in connector.probe(&tables).await.map_err(&err)? {
                let message = format!("{side}: {}", finding.message);
                found.push(if finding.fatal {
                    PlanProblem::database(message)
                } else {
                    PlanProblem::warning(message)
                });
            }
            let installed = connector.installation(&tables).await.map_err(&err)?;
            match installed.version {
                None => found.push(PlanProblem::database(format!(
                    "{side}: Tandem change table is not installed: {fix}"
                ))),
                Some(v) if v < SCHEMA_VERSION => found.push(PlanProblem::database(format!(
                    "{side}: installed Tandem objects are version {v}, this build needs \
                     {SCHEMA_VERSION}: {fix} to upgrade them from {v} to {SCHEMA_VERSION}"
                ))),
                Some(v) if v > SCHEMA_VERSION => found.push(PlanProblem::database(format!(
                    "{side}: installed Tandem objects are version {v}, written by a newer \
                     tandem-agent (this build knows versions up to {SCHEMA_VERSION}): upgrade \
                     tandem-agent"
                ))),
                Some(_) => {
                    for table in installed.missing_triggers {
                        found.push(PlanProblem::database(format!(
                            "{side}: table {table} has no capture trigger: {fix}"
                        )));
                    }
                }
            }
        }
        Ok(found)
    }

    /// Pairs whose new copies cannot get a key of their own (see
    /// [`key_problems`]).
    pub fn key_problems(&self) -> Vec<PlanProblem> {
        key_problems(&self.plan, |side, table| {
            self.endpoint(side).generated_key_fix(table)
        })
    }
}

/// Pairs whose new copies cannot get a key of their own: a key that is
/// neither generated nor made of translated references. Copying a natural
/// key (text, a UUID) is how such tables sync; copying an integer key
/// collides as soon as both sides make records. `fix` gives the statement
/// that makes a side's key generated, where its engine has one.
pub fn key_problems(
    plan: &Plan,
    fix: impl Fn(Side, &TableSchema) -> Option<String>,
) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    for pair in &plan.pairs {
        for origin in Side::BOTH {
            let dest = origin.other();
            let table = pair.table(dest);
            if pair.directions[origin.index()].key_mode != KeyMode::Copied
                || table.primary_key.is_empty()
            {
                continue;
            }
            if table.key_is_references() {
                let unsynced: Vec<String> = table
                    .foreign_keys
                    .iter()
                    .filter(|fk| fk.columns.iter().any(|c| table.primary_key.contains(c)))
                    .filter(|fk| {
                        !plan
                            .pairs
                            .iter()
                            .any(|p| p.table(dest).name == fk.referenced_table)
                    })
                    .map(|fk| fk.referenced_table.to_string())
                    .collect();
                let advice = if unsynced.is_empty() {
                    format!("map each of them from the {origin}'s reference to the same table")
                } else {
                    format!(
                        "sync the tables they refer to ({}) as pairs too",
                        unsynced.join(", ")
                    )
                };
                problems.push(PlanProblem::error(format!(
                    "pair {}: {dest} table {} is keyed by its references ({}), and not all of them are \
                     translated: {advice}",
                    pair.name,
                    table.name,
                    table.primary_key.join(", ")
                )));
                continue;
            }
            if !table.key_columns().any(|c| c.data_type == DataType::Int) {
                continue;
            }
            let fix = fix(dest, table)
                .unwrap_or_else(|| "make the key an identity/auto_increment column".to_owned());
            problems.push(PlanProblem::error(format!(
                "pair {}: {dest} table {} has no auto-generated primary key; new copies would reuse \
                 the {origin}'s key values and may collide: {fix}",
                pair.name, table.name
            )));
        }
    }
    problems
}
