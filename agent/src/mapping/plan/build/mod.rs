//! Planning: from the configured pairs and their described tables to the
//! plan, with every problem of the mapping found on the way, one line
//! each, the closest name offered where a name matches nothing.
//!
//! For each direction, in order: the columns the config maps (`columns`),
//! the columns a split joins back, then every other column of the side
//! written to whose name matches one of the side read (`[sync] names`).
//! Then the references: a column that copies a foreign key to a synced
//! table (declared on either side) becomes a relation through that table's
//! pair, whichever way it was mapped, unless the rule says `translate =
//! false`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tandem_connectors::{Column, ForeignKey, TableName, TableSchema};

use super::{LookupTables, PairId, PairPlan, Plan, PlanProblem, Relation, ValueSource};
use crate::config::{Side, TablePairConfig};
use crate::mapping::names::{self, Miss, NameMatching};

mod direction;
mod relations;
mod splits;
#[cfg(test)]
mod tests;
mod unsynced;

impl Plan {
    /// Plans the configured pairs from their described tables (`None`
    /// where a table could not be described: that pair is left out, its
    /// problem reported by whoever described it). Names are matched as
    /// `names` says.
    pub fn build(
        configs: &[TablePairConfig],
        tables: Vec<Option<[TableSchema; 2]>>,
        lookups: &LookupTables,
        names: NameMatching,
    ) -> (Plan, Vec<PlanProblem>) {
        let mut problems = Vec::new();
        let unplanned: HashSet<&str> = configs
            .iter()
            .zip(&tables)
            .filter(|(_, t)| t.is_none())
            .map(|(c, _)| c.name.as_str())
            .collect();
        let planned: Vec<(&TablePairConfig, [TableSchema; 2])> = configs
            .iter()
            .zip(tables)
            .filter_map(|(c, t)| t.map(|t| (c, t)))
            .collect();
        let all: Vec<[TableSchema; 2]> = planned.iter().map(|(_, t)| t.clone()).collect();
        let index: [HashMap<TableName, usize>; 2] = [0, 1].map(|side| {
            all.iter()
                .enumerate()
                .map(|(i, t)| (t[side].name.clone(), i))
                .collect()
        });
        let pair_names: HashMap<&str, usize> = planned
            .iter()
            .enumerate()
            .map(|(i, (c, _))| (c.name.as_str(), i))
            .collect();
        let names_by_index: Vec<&str> = planned.iter().map(|(c, _)| c.name.as_str()).collect();
        let mut pairs = Vec::new();
        for (config, schemas) in &planned {
            for side in Side::BOTH {
                let table = &schemas[side.index()];
                if table.primary_key.is_empty() {
                    problems.push(PlanProblem::error(format!(
                        "pair {}: {side} table {} has no primary key; add one (records are linked by key)",
                        config.name, table.name
                    )));
                }
            }
            let context = Context {
                config,
                all: &all,
                schemas,
                index: &index,
                pair_names: &pair_names,
                names_by_index: &names_by_index,
                unplanned: &unplanned,
                lookups,
                names,
            };
            let match_on = Side::BOTH.map(|side| context.match_columns(side, &mut problems));
            let splits = context.splits(&mut problems);
            let mut explained = BTreeSet::new();
            let directions = Side::BOTH
                .map(|origin| context.direction(origin, &splits, &mut problems, &mut explained));
            let pair = PairPlan {
                name: config.name.clone(),
                tables: schemas.clone(),
                directions,
                match_on,
                splits,
            };
            if let Some(line) = context.unsynced(&pair, &explained) {
                problems.push(PlanProblem::warning(line));
            }
            pairs.push(pair);
        }
        let order = apply_order(&pairs);
        // Relations name pairs by index: renumber them into the new order.
        let position: HashMap<usize, usize> = order
            .iter()
            .enumerate()
            .map(|(new, old)| (*old, new))
            .collect();
        let mut ordered: Vec<PairPlan> = order.iter().map(|i| pairs[*i].clone()).collect();
        for pair in &mut ordered {
            for direction in &mut pair.directions {
                for relation in &mut direction.relations {
                    relation.pair = PairId(position[&relation.pair.0]);
                }
            }
        }
        let lookups = lookups
            .iter()
            .map(|((side, _), t)| (*side, t.clone()))
            .collect();
        (
            Plan {
                pairs: ordered,
                lookups,
            },
            problems,
        )
    }
}

/// The column of `table` that `wanted` names (see [`names::find`]).
fn find_column<'t>(
    table: &'t TableSchema,
    wanted: &str,
    matching: NameMatching,
) -> Result<&'t Column, Miss> {
    let name = names::find(
        wanted,
        table.columns.iter().map(|c| c.name.as_str()),
        matching,
    )?;
    Ok(table.column(name).expect("found among its columns"))
}

/// " (did you mean `x`?)" for the column of `table` closest to `unknown`,
/// when one is close.
fn closest_column(table: &TableSchema, unknown: &str) -> String {
    Miss::Unknown(names::closest(
        unknown,
        table.columns.iter().map(|c| c.name.as_str()),
    ))
    .hint()
}

/// Where a written column's value comes from, while a direction is planned.
#[derive(Clone)]
enum Source {
    /// A column of the row; a reference to a synced pair is translated
    /// unless `translate` is false.
    Column { from: String, translate: bool },
    /// A configured relation through pair `pair`.
    Relation { pair: usize, from: String },
    /// Anything else, as it will be written.
    Value(ValueSource),
}

/// One column of the side written to and where its value comes from.
struct Written {
    to: String,
    source: Source,
    /// Matched by name (not configured): mapped only when the types are
    /// compatible, unless it is a reference.
    by_name: bool,
}

/// What a direction's references are (see `Context::relations`).
#[derive(Default)]
struct References {
    relations: Vec<Relation>,
    /// Columns written that copy a reference untranslated, with the pair.
    untranslated: BTreeMap<String, String>,
    /// Columns of either side in a foreign key to a synced table, with
    /// that table's pair.
    referencing: BTreeMap<(Side, String), String>,
}

/// Everything one pair's planning looks at.
struct Context<'a> {
    config: &'a TablePairConfig,
    all: &'a [[TableSchema; 2]],
    schemas: &'a [TableSchema; 2],
    index: &'a [HashMap<TableName, usize>; 2],
    pair_names: &'a HashMap<&'a str, usize>,
    /// The planned pairs' names, by index.
    names_by_index: &'a [&'a str],
    /// Configured pairs whose tables could not be described.
    unplanned: &'a HashSet<&'a str>,
    lookups: &'a LookupTables,
    names: NameMatching,
}

impl Context<'_> {
    /// The `match` columns as named on `side`.
    fn match_columns(&self, side: Side, problems: &mut Vec<PlanProblem>) -> Vec<String> {
        let table = &self.schemas[side.index()];
        let mut found = Vec::new();
        for column in &self.config.match_on {
            match find_column(table, column, self.names) {
                Ok(c) => found.push(c.name.clone()),
                Err(miss) => problems.push(PlanProblem::error(format!(
                    "pair {}: match: no column {column} in {side} table {}{}",
                    self.config.name,
                    table.name,
                    miss.hint()
                ))),
            }
        }
        found
    }

    /// The pair whose table `column` of `table` (on `side`) refers to,
    /// when it belongs to a foreign key to a synced table.
    fn reference_of(&self, side: Side, table: &TableSchema, column: &str) -> Option<&str> {
        table
            .foreign_keys
            .iter()
            .filter(|fk| fk.columns.iter().any(|c| c == column))
            .find_map(|fk| self.index[side.index()].get(&fk.referenced_table))
            .map(|pair| self.pair_name(*pair))
    }

    /// The name of the planned pair at `index`.
    fn pair_name(&self, index: usize) -> &str {
        self.names_by_index[index]
    }
}

/// The foreign key's columns in the order of `referenced`'s primary key,
/// when it references that whole key (only such a reference can be
/// translated: links are keyed by primary key).
fn key_order(fk: &ForeignKey, referenced: &TableSchema) -> Option<Vec<String>> {
    let columns: Option<Vec<String>> = referenced
        .primary_key
        .iter()
        .map(|k| {
            let i = fk.referenced_columns.iter().position(|c| c == k)?;
            fk.columns.get(i).cloned()
        })
        .collect();
    columns.filter(|c| c.len() == fk.columns.len())
}

/// Referenced pairs first; a cycle (other than a self-reference) keeps the
/// configured order for the pairs in it.
fn apply_order(pairs: &[PairPlan]) -> Vec<usize> {
    let parents: Vec<BTreeSet<usize>> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.directions
                .iter()
                .flat_map(|d| d.relations.iter().map(|r| r.pair.0))
                .filter(|parent| *parent != i)
                .collect()
        })
        .collect();
    let mut done = vec![false; pairs.len()];
    let mut order = Vec::new();
    while order.len() < pairs.len() {
        let ready = (0..pairs.len()).find(|i| !done[*i] && parents[*i].iter().all(|p| done[*p]));
        let next =
            ready.unwrap_or_else(|| (0..pairs.len()).find(|i| !done[*i]).expect("one is left"));
        done[next] = true;
        order.push(next);
    }
    order
}
