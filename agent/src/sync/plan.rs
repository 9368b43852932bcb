//! What to sync: each table pair's schemas on both sides and how a record of
//! one side becomes a record of the other.
//!
//! Columns with the same name and a compatible type map to each other unless
//! the config says otherwise (`mapping`). Foreign keys between configured
//! tables, declared or configured, are relations: their values are keys of
//! the referenced pair and are translated through the ID map.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tandem_connectors::{DataType, Key, Row, TableName, TableSchema, Value};

use crate::config::{Side, TablePairConfig};
use crate::mapping::expr::fit;
use crate::mapping::{Expression, FilterExit, LookupCache, RuleConfig};
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
    pub pair: usize,
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
    /// Columns matching records of both sides at the first sync.
    pub match_on: Vec<String>,
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
    /// them.
    pub pairs: Vec<PairPlan>,
    /// Reference tables read by lookups, by side.
    pub lookups: Vec<(Side, TableSchema)>,
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
    Waiting(String),
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

/// A problem found while planning; one line naming pair, side and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    /// The message.
    pub message: String,
    /// Whether sync can still run (a warning) or not.
    pub fatal: bool,
}

/// Described tables beyond the pairs' own (lookup and split tables), by side
/// and the name written in the config.
pub type LookupTables = HashMap<(Side, String), TableSchema>;

impl Plan {
    /// Plans the configured pairs from their described tables.
    pub fn build(
        configs: &[TablePairConfig],
        tables: Vec<[TableSchema; 2]>,
        lookups: &LookupTables,
    ) -> (Plan, Vec<PlanProblem>) {
        let mut problems = Vec::new();
        let index: [HashMap<TableName, usize>; 2] = [0, 1].map(|side| {
            tables
                .iter()
                .enumerate()
                .map(|(i, t)| (t[side].name.clone(), i))
                .collect()
        });
        let names: HashMap<&str, usize> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let mut pairs = Vec::new();
        for (config, schemas) in configs.iter().zip(&tables) {
            for side in Side::BOTH {
                let table = &schemas[side.index()];
                if table.primary_key.is_empty() {
                    problems.push(PlanProblem {
                        message: format!(
                            "pair {}: {side} table {} has no primary key; add one (records are linked by key)",
                            config.name, table.name
                        ),
                        fatal: true,
                    });
                }
                for column in &config.match_on {
                    if table.column(column).is_none() {
                        problems.push(fatal(format!(
                            "pair {}: match: no column {column} in {side} table {}",
                            config.name, table.name
                        )));
                    }
                }
            }
            let context = Context {
                config,
                all: &tables,
                schemas,
                index: &index,
                names: &names,
                lookups,
            };
            let splits = context.splits(&mut problems);
            let directions = [Side::Source, Side::Target]
                .map(|origin| context.direction(origin, &splits, &mut problems));
            pairs.push(PairPlan {
                name: config.name.clone(),
                tables: schemas.clone(),
                directions,
                match_on: config.match_on.clone(),
                splits,
            });
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
                    relation.pair = position[&relation.pair];
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

    /// Maps `row`, which comes from `origin`, for the other side of `pair`.
    pub fn map_row(
        &self,
        pair: usize,
        origin: Side,
        row: &Row,
        state: &State,
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
                state
                    .link(&referenced.name, origin, &Key(values.clone()))?
                    .filter(|link| !link.deleted)
                    .map(|link| link.key(origin.other()).0.clone())
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
                    return Ok(Mapped::Waiting(format!(
                        "{} {} is not linked yet",
                        self.pairs[relation.pair].name,
                        Key(values)
                    )))
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

/// Whether `expression` plainly gives a value of a kind a column of `to`
/// cannot hold, judged on a sample row of `from`: the expression runs once
/// at start-up on neutral values (0, "0", false, the epoch). Text results
/// and failed trial runs are not judged: text may well parse, and the
/// sample may simply not suit the expression.
fn misfit(expression: &Expression, from: &TableSchema, to: DataType) -> Option<&'static str> {
    use chrono::DateTime;
    let epoch = DateTime::UNIX_EPOCH;
    let sample: Row = from
        .columns
        .iter()
        .map(|c| {
            let value = match c.data_type {
                DataType::Bool => Value::Bool(false),
                DataType::Int => Value::Int(0),
                DataType::Decimal => Value::Decimal("0".into()),
                DataType::Float => Value::Float(0.0),
                DataType::Date => Value::Date(epoch.date_naive()),
                DataType::Time => Value::Time(epoch.time()),
                DataType::Timestamp => Value::Timestamp(epoch.naive_utc()),
                DataType::TimestampTz => Value::TimestampTz(epoch),
                DataType::Json => Value::Json(serde_json::json!({})),
                DataType::Uuid => Value::Uuid(uuid::Uuid::nil()),
                DataType::Bytes => Value::Bytes(Vec::new()),
                DataType::Text | DataType::Other => Value::Text("0".into()),
            };
            (c.name.clone(), value)
        })
        .collect();
    let result = expression.evaluate(&sample).ok()?;
    let kind = match &result {
        Value::Null | Value::Text(_) => return None,
        Value::Bool(_) => DataType::Bool,
        Value::Int(_) => DataType::Int,
        Value::Decimal(_) => DataType::Decimal,
        Value::Float(_) => DataType::Float,
        Value::Bytes(_) => DataType::Bytes,
        Value::Date(_) => DataType::Date,
        Value::Time(_) => DataType::Time,
        Value::Timestamp(_) => DataType::Timestamp,
        Value::TimestampTz(_) => DataType::TimestampTz,
        Value::Json(_) => DataType::Json,
        Value::Uuid(_) => DataType::Uuid,
    };
    (!compatible(kind, to)).then(|| result.type_name())
}

fn fatal(message: String) -> PlanProblem {
    PlanProblem {
        message,
        fatal: true,
    }
}

/// Whether a value of `from` can be written to a column of `to` as it is.
fn compatible(from: DataType, to: DataType) -> bool {
    use DataType::*;
    from == to
        || matches!(to, Text | Other)
        || matches!(
            (from, to),
            (Int | Decimal | Float | Bool, Int | Decimal | Float | Bool)
        )
        || matches!(
            (from, to),
            (
                Date | Timestamp | TimestampTz,
                Date | Timestamp | TimestampTz
            )
        )
        || matches!(
            (from, to),
            (Text, Json | Uuid) | (Uuid, Text) | (Json, Text)
        )
}

/// Everything one pair's planning looks at.
struct Context<'a> {
    config: &'a TablePairConfig,
    all: &'a [[TableSchema; 2]],
    schemas: &'a [TableSchema; 2],
    index: &'a [HashMap<TableName, usize>; 2],
    names: &'a HashMap<&'a str, usize>,
    lookups: &'a LookupTables,
}

impl Context<'_> {
    fn direction(
        &self,
        origin: Side,
        splits: &[SplitPlan],
        out: &mut Vec<PlanProblem>,
    ) -> DirectionMap {
        let problems = std::cell::RefCell::new(Vec::new());
        let direction = self.plan_direction(origin, splits, &problems);
        out.extend(problems.into_inner());
        direction
    }

    /// The extra tables rows are split into, validated.
    fn splits(&self, out: &mut Vec<PlanProblem>) -> Vec<SplitPlan> {
        let config = self.config;
        let mut splits = Vec::new();
        for split in &config.splits {
            let other = split.side.other();
            let main = &self.schemas[split.side.index()];
            let from = &self.schemas[other.index()];
            let at = format!("pair {}: split {}", config.name, split.table);
            let mut fail = |message: String| out.push(fatal(format!("{at}: {message}")));
            let Some(table) = self.lookups.get(&(split.side, split.table.clone())) else {
                fail(format!(
                    "{} table {} was not described",
                    split.side, split.table
                ));
                continue;
            };
            if !table.key_is_generated() {
                fail(format!(
                    "{} table {} needs a single auto-generated primary key",
                    split.side, table.name
                ));
                continue;
            }
            if main.column(&split.reference).is_none() {
                fail(format!(
                    "reference: no column {} in {} table {}",
                    split.reference, split.side, main.name
                ));
                continue;
            }
            let mut columns = Vec::new();
            for (column, rule) in &split.columns {
                let Some(dest) = table.column(column) else {
                    fail(format!(
                        "column {column}: no such column in {} table {}",
                        split.side, table.name
                    ));
                    continue;
                };
                let source = match rule {
                    RuleConfig::Column(name) if from.column(name).is_some() => {
                        ValueSource::Column(name.clone())
                    }
                    RuleConfig::Column(name) => {
                        fail(format!(
                            "column {column}: no column {name} in {other} table {}",
                            from.name
                        ));
                        continue;
                    }
                    RuleConfig::Expression(text) => match Expression::compile(text) {
                        Ok(e) if e.variables().iter().all(|v| from.column(v).is_some()) => {
                            ValueSource::Expression(Arc::new(e))
                        }
                        Ok(_) => {
                            fail(format!(
                                "column {column}: expression {text:?} uses a column {other} table {} lacks",
                                from.name
                            ));
                            continue;
                        }
                        Err(e) => {
                            fail(format!("column {column}: {e}"));
                            continue;
                        }
                    },
                    RuleConfig::Constant { value, .. } => ValueSource::Constant(value.clone()),
                    RuleConfig::Lookup(_) | RuleConfig::Relation { .. } => continue,
                };
                columns.push(ColumnMap {
                    to: column.clone(),
                    data_type: dest.data_type,
                    source,
                });
            }
            for key in &split.key {
                if !columns.iter().any(|c| &c.to == key) {
                    fail(format!(
                        "key column {key} gets no value: map it under columns"
                    ));
                }
            }
            splits.push(SplitPlan {
                side: split.side,
                table: table.clone(),
                key: split.key.clone(),
                reference: split.reference.clone(),
                columns,
            });
        }
        splits
    }

    fn plan_direction(
        &self,
        origin: Side,
        splits: &[SplitPlan],
        problems: &std::cell::RefCell<Vec<PlanProblem>>,
    ) -> DirectionMap {
        let config = self.config;
        let from = &self.schemas[origin.index()];
        let dest_side = origin.other();
        let to = &self.schemas[dest_side.index()];
        let rules = &config.directions[origin.index()];
        let at = format!("pair {}: {origin} -> {dest_side}", config.name);
        let fail = |message: String| {
            problems
                .borrow_mut()
                .push(fatal(format!("{at}: {message}")))
        };
        let origin_has = |column: &str| from.column(column).is_some();

        for column in &rules.exclude {
            if to.column(column).is_none() {
                fail(format!(
                    "exclude: no column {column} in {dest_side} table {}",
                    to.name
                ));
            }
        }
        let explicit: BTreeSet<&str> = rules.columns.iter().map(|(c, _)| c.as_str()).collect();
        // A split's reference is set by the split, never mapped.
        let excluded: BTreeSet<&str> = rules
            .exclude
            .iter()
            .map(String::as_str)
            .chain(
                splits
                    .iter()
                    .filter(|s| s.side == dest_side)
                    .map(|s| s.reference.as_str()),
            )
            .collect();

        // Relations: configured ones, then those declared in either catalog.
        let mut relations: Vec<Relation> = Vec::new();
        for (column, rule) in &rules.columns {
            let RuleConfig::Relation {
                pair,
                from: source_column,
            } = rule
            else {
                continue;
            };
            let source_column = source_column.clone().unwrap_or_else(|| column.clone());
            let Some(&referenced) = self.names.get(pair.as_str()) else {
                fail(format!("column {column}: relation to unknown pair {pair}"));
                continue;
            };
            if !origin_has(&source_column) {
                fail(format!(
                    "column {column}: no column {source_column} in {origin} table {}",
                    from.name
                ));
                continue;
            }
            let Some(dest_column) = to.column(column) else {
                continue;
            };
            if self.all[referenced][dest_side.index()].primary_key.len() != 1 {
                fail(format!(
                    "column {column}: relation to pair {pair}, whose key has several columns"
                ));
                continue;
            }
            let in_key = to.primary_key.contains(column);
            relations.push(Relation {
                from: vec![source_column],
                to: vec![column.clone()],
                pair: referenced,
                deferrable: dest_column.nullable && !in_key,
            });
        }
        for (side, table) in [(origin, from), (dest_side, to)] {
            for fk in &table.foreign_keys {
                let Some(&pair) = self.index[side.index()].get(&fk.referenced_table) else {
                    continue;
                };
                // Links are keyed by primary key: only a reference to the
                // whole key can be translated, its columns in key order.
                let referenced = &self.all[pair][side.index()];
                let columns: Option<Vec<String>> = referenced
                    .primary_key
                    .iter()
                    .map(|k| {
                        let i = fk.referenced_columns.iter().position(|c| c == k)?;
                        fk.columns.get(i).cloned()
                    })
                    .collect();
                let Some(columns) = columns.filter(|c| c.len() == fk.columns.len()) else {
                    problems.borrow_mut().push(PlanProblem {
                        message: format!(
                            "{at}: foreign key ({}) of {side} table {} references ({}), not the primary key of {}; \
                             its values are copied as they are, not translated",
                            fk.columns.join(", "),
                            table.name,
                            fk.referenced_columns.join(", "),
                            referenced.name
                        ),
                        fatal: false,
                    });
                    continue;
                };
                if columns
                    .iter()
                    .any(|c| explicit.contains(c.as_str()) || excluded.contains(c.as_str()))
                {
                    continue;
                }
                if columns
                    .iter()
                    .any(|c| !origin_has(c) || to.column(c).is_none())
                {
                    problems.borrow_mut().push(PlanProblem {
                        message: format!(
                            "{at}: foreign key ({}) of {side} table {} has no same-named columns on the other side; \
                             it is not synced as a relation",
                            fk.columns.join(", "),
                            table.name
                        ),
                        fatal: false,
                    });
                    continue;
                }
                if relations.iter().any(|r| r.to == columns) {
                    continue;
                }
                let in_key = columns.iter().any(|c| to.primary_key.contains(c));
                let nullable = columns
                    .iter()
                    .all(|c| to.column(c).is_some_and(|col| col.nullable));
                relations.push(Relation {
                    from: columns.clone(),
                    to: columns,
                    pair,
                    deferrable: nullable && !in_key,
                });
            }
        }
        let related: BTreeSet<&str> = relations
            .iter()
            .flat_map(|r| r.to.iter().map(String::as_str))
            .collect();
        let key_mode = if to.key_is_generated() {
            KeyMode::Generated
        } else if !to.primary_key.is_empty()
            && to.primary_key.iter().all(|k| related.contains(k.as_str()))
        {
            KeyMode::References
        } else {
            KeyMode::Copied
        };
        let generated_key =
            |c: &str| key_mode == KeyMode::Generated && to.primary_key.iter().any(|k| k == c);

        let mut columns = Vec::new();
        for (column, rule) in &rules.columns {
            let Some(dest) = to.column(column) else {
                fail(format!(
                    "column {column}: no such column in {dest_side} table {}",
                    to.name
                ));
                continue;
            };
            if dest.always_generated || generated_key(column) {
                fail(format!(
                    "column {column}: the engine generates it; it cannot be mapped"
                ));
                continue;
            }
            let source = match rule {
                RuleConfig::Relation { .. } => continue,
                RuleConfig::Column(name) => {
                    if !origin_has(name) {
                        fail(format!(
                            "column {column}: no column {name} in {origin} table {}",
                            from.name
                        ));
                        continue;
                    }
                    ValueSource::Column(name.clone())
                }
                RuleConfig::Expression(text) => match Expression::compile(text) {
                    Ok(expression) => {
                        if let Some(unknown) =
                            expression.variables().iter().find(|v| !origin_has(v))
                        {
                            fail(format!(
                                "column {column}: expression {text:?} uses {unknown}, which is not a column of {origin} table {}",
                                from.name
                            ));
                            continue;
                        }
                        if let Some(kind) = misfit(&expression, from, dest.data_type) {
                            fail(format!(
                                "column {column}: expression {text:?} gives {kind}, which does not fit its type {}",
                                dest.native_type
                            ));
                            continue;
                        }
                        ValueSource::Expression(Arc::new(expression))
                    }
                    Err(e) => {
                        fail(format!("column {column}: {e}"));
                        continue;
                    }
                },
                RuleConfig::Constant { value, .. } => match fit(value.clone(), dest.data_type) {
                    Ok(value) => ValueSource::Constant(value),
                    Err(e) => {
                        fail(format!(
                            "column {column}: constant {value} does not fit its type {}: {e}",
                            dest.native_type
                        ));
                        continue;
                    }
                },
                RuleConfig::Lookup(lookup) => {
                    let Some(table) = self.lookups.get(&(lookup.side, lookup.table.clone())) else {
                        fail(format!(
                            "column {column}: lookup table {} was not described",
                            lookup.table
                        ));
                        continue;
                    };
                    for needed in [&lookup.match_column, &lookup.value] {
                        if table.column(needed).is_none() {
                            fail(format!(
                                "column {column}: lookup: no column {needed} in {} table {}",
                                lookup.side, table.name
                            ));
                        }
                    }
                    if !origin_has(&lookup.from) {
                        fail(format!(
                            "column {column}: lookup: no column {} in {origin} table {}",
                            lookup.from, from.name
                        ));
                        continue;
                    }
                    ValueSource::Lookup {
                        side: lookup.side,
                        table: table.name.to_string(),
                        match_column: lookup.match_column.clone(),
                        value_column: lookup.value.clone(),
                        from: lookup.from.clone(),
                    }
                }
            };
            columns.push(ColumnMap {
                to: column.clone(),
                data_type: dest.data_type,
                source,
            });
        }
        // Joined back: a column the split fills from the other side gets
        // the split table's value, unless configured otherwise.
        for split in splits.iter().filter(|s| s.side == origin) {
            for column in &split.columns {
                let ValueSource::Column(other_column) = &column.source else {
                    continue;
                };
                if explicit.contains(other_column.as_str())
                    || excluded.contains(other_column.as_str())
                {
                    continue;
                }
                if let Some(dest) = to.column(other_column.as_str()) {
                    columns.push(ColumnMap {
                        to: dest.name.clone(),
                        data_type: dest.data_type,
                        source: ValueSource::Column(split.joined(&column.to)),
                    });
                }
            }
        }
        let joined: BTreeSet<String> = columns.iter().map(|c| c.to.clone()).collect();
        // Same name, compatible type: mapped unless said otherwise.
        for dest in &to.columns {
            let name = dest.name.as_str();
            if dest.always_generated
                || generated_key(name)
                || related.contains(name)
                || explicit.contains(name)
                || excluded.contains(name)
                || joined.contains(name)
            {
                continue;
            }
            let Some(source) = from.column(name) else {
                continue;
            };
            if !compatible(source.data_type, dest.data_type) {
                problems.borrow_mut().push(PlanProblem {
                    message: format!(
                        "{at}: column {name} is {} on the {origin} and {} on the {dest_side}; it is not mapped \
                         (map it with an expression, or exclude it)",
                        source.native_type, dest.native_type
                    ),
                    fatal: false,
                });
                continue;
            }
            columns.push(ColumnMap {
                to: dest.name.clone(),
                data_type: dest.data_type,
                source: ValueSource::Column(dest.name.clone()),
            });
        }

        // A column the engine will not fill and this direction leaves empty:
        // every new copy fails unless the column has a default.
        let written: BTreeSet<&str> = columns
            .iter()
            .map(|c| c.to.as_str())
            .chain(related.iter().copied())
            .chain(
                splits
                    .iter()
                    .filter(|s| s.side == dest_side)
                    .map(|s| s.reference.as_str()),
            )
            .collect();
        for column in &to.columns {
            if !column.nullable
                && !column.generated
                && !column.always_generated
                && !generated_key(&column.name)
                && !written.contains(column.name.as_str())
            {
                problems.borrow_mut().push(PlanProblem {
                    message: format!(
                        "{at}: column {} is NOT NULL in {dest_side} table {} but gets no value in this direction; \
                         new copies fail unless it has a default (map it, or give it a constant)",
                        column.name, to.name
                    ),
                    fatal: false,
                });
            }
        }
        let filter = rules.filter.as_ref().and_then(|text| match Expression::compile(text) {
            Ok(expression) => match expression.variables().iter().find(|v| !origin_has(v)) {
                Some(unknown) => {
                    fail(format!("filter {text:?} uses {unknown}, which is not a column of {origin} table {}", from.name));
                    None
                }
                None => Some(Arc::new(expression)),
            },
            Err(e) => {
                fail(format!("filter: {e}"));
                None
            }
        });
        // The opposite direction's constants that filter back.
        let mut required = Vec::new();
        for (column, rule) in &config.directions[dest_side.index()].columns {
            if let RuleConfig::Constant {
                value,
                filters_back: true,
            } = rule
            {
                if let Some(own) = from.column(column) {
                    if let Ok(value) = fit(value.clone(), own.data_type) {
                        required.push((column.clone(), value));
                    }
                }
            }
        }
        DirectionMap {
            columns,
            relations,
            key_mode,
            filter,
            on_filter_exit: rules.on_filter_exit,
            required,
        }
    }
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
                .flat_map(|d| d.relations.iter().map(|r| r.pair))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_connectors::{Column, DataType, ForeignKey};

    fn column(name: &str, generated: bool, nullable: bool) -> Column {
        let mut column = Column::new(name, DataType::Int, "bigint");
        column.nullable = nullable;
        column.generated = generated;
        column
    }

    fn table(
        name: &str,
        columns: Vec<Column>,
        key: &[&str],
        fks: Vec<(&str, &str)>,
    ) -> TableSchema {
        TableSchema {
            name: TableName::new(None, name),
            columns,
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            foreign_keys: fks
                .into_iter()
                .map(|(c, t)| ForeignKey {
                    columns: vec![c.into()],
                    referenced_table: TableName::new(None, t),
                    referenced_columns: vec!["id".into()],
                })
                .collect(),
        }
    }

    fn pair(name: &str) -> TablePairConfig {
        TablePairConfig {
            name: name.into(),
            source: name.into(),
            target: name.into(),
            match_on: Vec::new(),
            directions: Default::default(),
            splits: Vec::new(),
        }
    }

    fn build(
        configs: &[TablePairConfig],
        tables: Vec<[TableSchema; 2]>,
    ) -> (Plan, Vec<PlanProblem>) {
        Plan::build(configs, tables, &LookupTables::new())
    }

    fn map(plan: &Plan, pair: usize, origin: Side, row: &Row, state: &State) -> Mapped {
        plan.map_row(pair, origin, row, state, &LookupCache::default())
            .unwrap()
    }

    fn written(direction: &DirectionMap) -> Vec<&str> {
        direction.columns.iter().map(|c| c.to.as_str()).collect()
    }

    #[test]
    fn parents_come_first_and_links_translate() {
        let orders = table(
            "orders",
            vec![
                column("id", true, false),
                column("customer_id", false, false),
                column("qty", false, true),
            ],
            &["id"],
            vec![("customer_id", "customers")],
        );
        let customers = table(
            "customers",
            vec![column("id", true, false), column("name", false, true)],
            &["id"],
            vec![],
        );
        let (plan, problems) = build(
            &[pair("orders"), pair("customers")],
            vec![[orders.clone(), orders], [customers.clone(), customers]],
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            plan.pairs
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["customers", "orders"]
        );
        let orders = &plan.pairs[1].directions[0];
        assert_eq!(orders.key_mode, KeyMode::Generated);
        assert_eq!(written(orders), ["qty"]);
        assert_eq!(orders.relations[0].pair, 0);

        let state = State::in_memory();
        let row: Row = [
            ("id".into(), Value::Int(5)),
            ("customer_id".into(), Value::Int(7)),
            ("qty".into(), Value::Int(2)),
        ]
        .into();
        assert!(matches!(
            map(&plan, 1, Side::Source, &row, &state),
            Mapped::Waiting(_)
        ));
        let mut batch = crate::state::StateBatch::default();
        batch.put_link(
            "customers",
            &crate::state::Link::new(Key(vec![Value::Int(7)]), Key(vec![Value::Int(70)])),
        );
        state.commit(batch, false).unwrap();
        let Mapped::Complete(mapped) = map(&plan, 1, Side::Source, &row, &state) else {
            panic!("expected a complete row")
        };
        assert_eq!(mapped.get("customer_id"), Some(&Value::Int(70)));
        assert!(!mapped.contains_key("id"), "generated keys are not copied");
    }

    #[test]
    fn self_references_are_deferred_and_link_tables_use_references() {
        let employees = table(
            "employees",
            vec![column("id", true, false), column("manager_id", false, true)],
            &["id"],
            vec![("manager_id", "employees")],
        );
        let link = table(
            "post_tags",
            vec![
                column("post_id", false, false),
                column("tag_id", false, false),
            ],
            &["post_id", "tag_id"],
            vec![("post_id", "employees"), ("tag_id", "employees")],
        );
        let (plan, _) = build(
            &[pair("employees"), pair("post_tags")],
            vec![[employees.clone(), employees], [link.clone(), link]],
        );
        assert!(plan.pairs[0].directions[1].relations[0].deferrable);
        assert_eq!(plan.pairs[1].directions[0].key_mode, KeyMode::References);
        let row: Row = [
            ("id".into(), Value::Int(2)),
            ("manager_id".into(), Value::Int(1)),
        ]
        .into();
        assert!(matches!(
            plan.map_row(
                0,
                Side::Target,
                &row,
                &State::in_memory(),
                &LookupCache::default()
            )
            .unwrap(),
            Mapped::Partial(_)
        ));
    }

    #[test]
    fn only_references_to_the_whole_primary_key_are_translated() {
        let customers = table(
            "customers",
            vec![column("id", true, false), column("number", false, false)],
            &["id"],
            vec![],
        );
        let mut orders = table(
            "orders",
            vec![
                column("id", true, false),
                column("customer_number", false, false),
            ],
            &["id"],
            vec![],
        );
        orders.foreign_keys.push(ForeignKey {
            columns: vec!["customer_number".into()],
            referenced_table: TableName::new(None, "customers"),
            referenced_columns: vec!["number".into()],
        });
        let (plan, problems) = build(
            &[pair("customers"), pair("orders")],
            vec![[customers.clone(), customers], [orders.clone(), orders]],
        );
        assert!(plan.pairs[1].directions[0].relations.is_empty());
        assert!(written(&plan.pairs[1].directions[0]).contains(&"customer_number"));
        assert!(
            problems
                .iter()
                .any(|p| !p.fatal && p.message.contains("not the primary key of customers")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_expression_of_the_wrong_kind_is_refused_at_start_up() {
        let source = table(
            "items",
            vec![column("id", true, false), column("qty", false, true)],
            &["id"],
            vec![],
        );
        let mut target = table("items", vec![column("id", true, false)], &["id"], vec![]);
        target
            .columns
            .push(Column::new("seen", DataType::Date, "date"));
        target.columns.push(column("double_qty", false, true));
        let mut config = pair("items");
        config.directions[0].columns = vec![
            ("seen".into(), RuleConfig::Expression("qty > 1".into())),
            (
                "double_qty".into(),
                RuleConfig::Expression("qty * 2".into()),
            ),
        ];
        let (_, problems) = Plan::build(&[config], vec![[source, target]], &LookupTables::new());
        let fatal: Vec<_> = problems
            .iter()
            .filter(|p| p.fatal)
            .map(|p| p.message.as_str())
            .collect();
        assert_eq!(
            fatal,
            ["pair items: source -> target: column seen: expression \"qty > 1\" gives bool, which does not fit its type date"]
        );
    }

    #[test]
    fn a_not_null_column_no_direction_fills_is_a_warning() {
        let source = table("items", vec![column("id", true, false)], &["id"], vec![]);
        let target = table(
            "items",
            vec![column("id", true, false), column("required", false, false)],
            &["id"],
            vec![],
        );
        let (_, problems) = build(&[pair("items")], vec![[source, target]]);
        let warning = problems
            .iter()
            .find(|p| {
                p.message
                    .contains("column required is NOT NULL in target table items")
            })
            .expect("a warning");
        assert!(!warning.fatal);
        assert!(
            warning.message.starts_with("pair items: source -> target:"),
            "{}",
            warning.message
        );
    }

    #[test]
    fn a_table_without_key_is_fatal() {
        let t = table("log", vec![column("msg", false, true)], &[], vec![]);
        let (_, problems) = build(&[pair("log")], vec![[t.clone(), t]]);
        assert!(
            problems
                .iter()
                .any(|p| p.fatal && p.message.contains("log has no primary key")),
            "{problems:?}"
        );
    }
}
