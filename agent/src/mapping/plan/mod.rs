//! What to sync: each table pair's schemas on both sides and how a record of
//! one side becomes a record of the other.
//!
//! Columns whose names match (`[sync] names`) and whose types are
//! compatible map to each other unless the config says otherwise
//! (`mapping`). A foreign key to a synced table is a relation, however its
//! column is mapped: its values are keys of the referenced pair and are
//! translated through the ID map.
//!
//! `build` makes the plan from the described tables and finds every
//! problem of the mapping; `fit` judges whether values fit where they go.

mod build;
mod fit;

use std::collections::HashMap;
use std::sync::Arc;

use tandem_connectors::{DataType, Key, Row, TableSchema, Value};

use crate::config::Side;
use crate::mapping::expr::fit;
use crate::mapping::{Expression, FilterExit, LookupCache};
use crate::state::State;
use crate::store::StoreError;

/// How the copy of a new record gets its key on the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// The engine generates it (identity, serial, auto_increment).
    Generated,
    /// It is made of references (a many-to-many link table): the translated
    /// foreign keys are the key.
    References,
    /// Copied as it is (the table's key is neither generated nor references;
    /// `check` warns about it).
    Copied,
}

/// A foreign key between two configured tables, for one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Columns on the side the change comes from.
    pub from: Vec<String>,
    /// Columns on the side written to.
    pub to: Vec<String>,
    /// Index of the referenced table pair.
    pub pair: PairId,
    /// Whether the written columns may be NULL for a while (not part of the
    /// key, all nullable): a record whose parent is not linked yet is written
    /// with NULL and completed later.
    pub deferrable: bool,
}

/// Where a written column's value comes from.
#[derive(Debug, Clone)]
pub enum ValueSource {
    /// A column of the row.
    Column(String),
    /// An expression over the row.
    Expression(Arc<Expression>),
    /// A fixed value.
    Constant(Value),
    /// A reference table's value for the row's `from` column.
    Lookup {
        /// The side the reference table is on.
        side: Side,
        /// The reference table.
        table: String,
        /// Its column compared with `from`.
        match_column: String,
        /// Its column written.
        value_column: String,
        /// The row's column.
        from: String,
    },
}

/// One written column.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    /// The column written to.
    pub to: String,
    /// Its type (values are fitted to it).
    pub data_type: DataType,
    /// Where its value comes from.
    pub source: ValueSource,
    /// The pair whose keys it copies untranslated (`translate = false` on a
    /// reference to a synced pair).
    pub untranslated: Option<String>,
}

/// How records travel in one direction.
#[derive(Debug, Clone)]
pub struct DirectionMap {
    /// Written columns, foreign keys excepted.
    pub columns: Vec<ColumnMap>,
    /// Foreign keys translated through the ID map.
    pub relations: Vec<Relation>,
    /// How a new copy gets its key.
    pub key_mode: KeyMode,
    /// Only rows passing it travel.
    pub filter: Option<Arc<Expression>>,
    /// What happens to a copy whose row stops passing.
    pub on_filter_exit: FilterExit,
    /// Columns that must hold a value for the row to travel: the constants
    /// the opposite direction writes with `filters_back`.
    pub required: Vec<(String, Value)>,
}

/// An extra table a row is split into on `side`, and joined back from.
#[derive(Debug, Clone)]
pub struct SplitPlan {
    /// The side the extra table is on.
    pub side: Side,
    /// The extra table.
    pub table: TableSchema,
    /// Its natural key columns.
    pub key: Vec<String>,
    /// The column of the pair's table on `side` that references it.
    pub reference: String,
    /// Its columns, from the other side's row.
    pub columns: Vec<ColumnMap>,
}

impl SplitPlan {
    /// The name under which a joined row carries the extra table's `column`.
    pub fn joined(&self, column: &str) -> String {
        format!("{}.{column}", self.table.name.name)
    }
}

/// One table pair, described and planned.
#[derive(Debug, Clone)]
pub struct PairPlan {
    /// The pair's name (keys the ID map).
    pub name: String,
    /// The table on each side (source, target).
    pub tables: [TableSchema; 2],
    /// Mapping by the side a change comes from (source, target).
    pub directions: [DirectionMap; 2],
    /// Columns matching records of both sides at the first sync, on each
    /// side (source, target), in the same order.
    pub match_on: [Vec<String>; 2],
    /// Extra tables rows are split into.
    pub splits: Vec<SplitPlan>,
}

impl PairPlan {
    /// The table on `side`.
    pub fn table(&self, side: Side) -> &TableSchema {
        &self.tables[side.index()]
    }
}

/// The whole integration's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Pairs in apply order: referenced pairs before the pairs that refer to
    /// them; indexed by [`PairId`].
    pub pairs: Vec<PairPlan>,
    /// Reference tables read by lookups, by side.
    pub lookups: Vec<(Side, TableSchema)>,
}

/// A table pair of the plan: its place in [`Plan::pairs`] (apply order).
/// It indexes the plan's pairs and every per-pair list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairId(pub(crate) usize);

impl PairId {
    /// The position in [`Plan::pairs`].
    pub fn index(self) -> usize {
        self.0
    }
}

impl<T> std::ops::Index<PairId> for Vec<T> {
    type Output = T;

    fn index(&self, pair: PairId) -> &T {
        &self[pair.0]
    }
}

impl<T> std::ops::IndexMut<PairId> for Vec<T> {
    fn index_mut(&mut self, pair: PairId) -> &mut T {
        &mut self[pair.0]
    }
}

impl Plan {
    /// Every pair, in apply order.
    pub fn ids(&self) -> impl DoubleEndedIterator<Item = PairId> + ExactSizeIterator {
        (0..self.pairs.len()).map(PairId)
    }

    /// Every pair with its plan, in apply order.
    pub fn enumerate(&self) -> impl Iterator<Item = (PairId, &PairPlan)> {
        self.ids().zip(&self.pairs)
    }
}

/// A row mapped for the other side.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Every value is known.
    Complete(Row),
    /// Written with NULL in some references whose records are not linked
    /// yet; must be completed once they are.
    Partial(Row),
    /// Cannot be written before a referenced record is linked.
    Waiting {
        /// Which record it waits for.
        why: String,
        /// The columns (written to) of the reference that waits.
        columns: Vec<String>,
    },
    /// Does not pass the direction's filter.
    Filtered,
}

/// Why a row could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This row cannot be mapped (an expression failed, a value does not
    /// fit): the record is dead-lettered with this reason.
    #[error("{0}")]
    Row(String),
}

/// A problem found before syncing; one line naming pair, side and column
/// (or the database and what it lacks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    /// The message.
    pub message: String,
    /// Whether sync can still run (a warning) or not.
    pub fatal: bool,
    /// Whether it is a database's (the message names its side) rather
    /// than the config file's.
    pub of_database: bool,
}

impl PlanProblem {
    /// A problem of the config that stops the sync.
    pub fn error(message: impl Into<String>) -> PlanProblem {
        PlanProblem {
            message: message.into(),
            fatal: true,
            of_database: false,
        }
    }

    /// A problem of the config worth reading that does not stop the sync.
    pub fn warning(message: impl Into<String>) -> PlanProblem {
        PlanProblem {
            fatal: false,
            ..PlanProblem::error(message)
        }
    }

    /// What a database lacks (the message starts with its side); it stops
    /// the sync.
    pub fn database(message: impl Into<String>) -> PlanProblem {
        PlanProblem {
            of_database: true,
            ..PlanProblem::error(message)
        }
    }
}

/// `problems` in the order they are shown: the databases' first, then the
/// config's errors, then its warnings, each in the order found and once.
pub fn in_order(problems: Vec<PlanProblem>) -> Vec<PlanProblem> {
    let rank = |p: &PlanProblem| match (p.of_database, p.fatal) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    };
    let mut ordered: Vec<PlanProblem> = Vec::with_capacity(problems.len());
    for problem in problems {
        if !ordered.contains(&problem) {
            ordered.push(problem);
        }
    }
    ordered.sort_by_key(rank);
    ordered
}

/// Described tables beyond the pairs' own (lookup and split tables), by side
/// and the name written in the config.
pub type LookupTables = HashMap<(Side, String), TableSchema>;

/// What mapping needs of the ID map: the copy of a referenced record.
pub trait Links {
    /// The key on the other side of the live copy of `pair`'s record `key`
    /// from `origin`; `None` when it has none (not linked yet, or deleted).
    fn copy_key(&self, pair: &str, origin: Side, key: &Key) -> Result<Option<Key>, StoreError>;
}

impl Links for State {
    fn copy_key(&self, pair: &str, origin: Side, key: &Key) -> Result<Option<Key>, StoreError> {
        Ok(self
            .link(pair, origin, key)?
            .filter(|link| !link.deleted)
            .map(|link| link.key(origin.other()).clone()))
    }
}

impl Plan {
    /// Maps `row`, which comes from `origin`, for the other side of `pair`;
    /// references are translated through `links`.
    pub fn map_row(
        &self,
        pair: PairId,
        origin: Side,
        row: &Row,
        links: &dyn Links,
        lookups: &LookupCache,
    ) -> Result<Mapped, MapError> {
        let plan = &self.pairs[pair];
        let direction = &plan.directions[origin.index()];
        if !passes(direction, row).map_err(MapError::Row)? {
            return Ok(Mapped::Filtered);
        }
        let mut out = Row::new();
        for column in &direction.columns {
            let value = match &column.source {
                ValueSource::Column(from) => match row.get(from) {
                    Some(value) => value.clone(),
                    None => continue,
                },
                ValueSource::Expression(expression) => {
                    expression.evaluate(row).map_err(MapError::Row)?
                }
                ValueSource::Constant(value) => value.clone(),
                ValueSource::Lookup {
                    side,
                    table,
                    match_column,
                    value_column,
                    from,
                } => match row.get(from) {
                    None | Some(Value::Null) => Value::Null,
                    Some(matched) => lookups
                        .get(*side, table, match_column, value_column, matched)
                        .ok_or_else(|| {
                            MapError::Row(format!(
                                "lookup: no row of {table} has {match_column} = {matched}"
                            ))
                        })?,
                },
            };
            let value = fit(value, column.data_type)
                .map_err(|e| MapError::Row(format!("column {}: {e}", column.to)))?;
            out.insert(column.to.clone(), value);
        }
        let mut partial = false;
        for relation in &direction.relations {
            let values: Vec<Value> = relation
                .from
                .iter()
                .map(|c| row.get(c).cloned().unwrap_or(Value::Null))
                .collect();
            let translated = if values.iter().any(Value::is_null) {
                Some(vec![Value::Null; relation.to.len()])
            } else {
                let referenced = &self.pairs[relation.pair];
                links
                    .copy_key(&referenced.name, origin, &Key(values.clone()))?
                    .map(|key| key.0)
            };
            match translated {
                Some(values) => {
                    for (column, value) in relation.to.iter().zip(values) {
                        out.insert(column.clone(), value);
                    }
                }
                None if relation.deferrable => {
                    partial = true;
                    for column in &relation.to {
                        out.insert(column.clone(), Value::Null);
                    }
                }
                None => {
                    return Ok(Mapped::Waiting {
                        why: format!(
                            "{} {} is not linked yet",
                            self.pairs[relation.pair].name,
                            Key(values)
                        ),
                        columns: relation.to.clone(),
                    })
                }
            }
        }
        Ok(if partial {
            Mapped::Partial(out)
        } else {
            Mapped::Complete(out)
        })
    }
}

/// Whether `row` passes the direction's filter and required constants.
fn passes(direction: &DirectionMap, row: &Row) -> Result<bool, String> {
    for (column, value) in &direction.required {
        if row.get(column) != Some(value) {
            return Ok(false);
        }
    }
    match &direction.filter {
        Some(filter) => filter.test(row),
        None => Ok(true),
    }
}
