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
use std::sync::Arc;

use tandem_connectors::{Column, ForeignKey, TableName, TableSchema};

use super::fit::{compatible, misfit, will_not_fit};
use super::{
    ColumnMap, DirectionMap, KeyMode, LookupTables, PairId, PairPlan, Plan, PlanProblem, Relation,
    SplitPlan, ValueSource,
};
use crate::config::{Side, TablePairConfig};
use crate::mapping::expr::fit;
use crate::mapping::names::{self, Miss, NameMatching};
use crate::mapping::{Expression, RuleConfig};

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

    /// The extra tables rows are split into, validated.
    fn splits(&self, out: &mut Vec<PlanProblem>) -> Vec<SplitPlan> {
        let config = self.config;
        let mut splits = Vec::new();
        for split in &config.splits {
            let other = split.side.other();
            let main = &self.schemas[split.side.index()];
            let from = &self.schemas[other.index()];
            let at = format!("pair {}: split {}", config.name, split.table);
            macro_rules! fail {
                ($message:expr) => {
                    out.push(PlanProblem::error(format!("{at}: {}", $message)))
                };
            }
            let Some(table) = self.lookups.get(&(split.side, split.table.clone())) else {
                fail!(format!(
                    "{} table {} was not described",
                    split.side, split.table
                ));
                continue;
            };
            if !table.key_is_generated() {
                fail!(format!(
                    "{} table {} needs a single auto-generated primary key",
                    split.side, table.name
                ));
                continue;
            }
            let reference = match find_column(main, &split.reference, self.names) {
                Ok(c) => c.name.clone(),
                Err(miss) => {
                    fail!(format!(
                        "reference: no column {} in {} table {}{}",
                        split.reference,
                        split.side,
                        main.name,
                        miss.hint()
                    ));
                    continue;
                }
            };
            let mut columns = Vec::new();
            for (column, rule) in &split.columns {
                let dest = match find_column(table, column, self.names) {
                    Ok(dest) => dest,
                    Err(miss) => {
                        fail!(format!(
                            "column {column}: no such column in {} table {}{}",
                            split.side,
                            table.name,
                            miss.hint()
                        ));
                        continue;
                    }
                };
                let source = match rule {
                    RuleConfig::Column { from: name, .. } => {
                        match find_column(from, name, self.names) {
                            Ok(c) => {
                                if let Some(pair) = self.reference_of(other, from, &c.name) {
                                    out.push(PlanProblem::warning(format!(
                                        "{at}: column {column} copies {}, a reference to pair {pair}'s table, \
                                         untranslated (a split table's values are copied as they are)",
                                        c.name
                                    )));
                                }
                                ValueSource::Column(c.name.clone())
                            }
                            Err(miss) => {
                                fail!(format!(
                                    "column {column}: no column {name} in {other} table {}{}",
                                    from.name,
                                    miss.hint()
                                ));
                                continue;
                            }
                        }
                    }
                    RuleConfig::Expression(text) => match Expression::compile(text) {
                        Ok(e) if e.variables().iter().all(|v| from.column(v).is_some()) => {
                            ValueSource::Expression(Arc::new(e))
                        }
                        Ok(_) => {
                            fail!(format!(
                                "column {column}: expression {text:?} uses a column {other} table {} lacks",
                                from.name
                            ));
                            continue;
                        }
                        Err(e) => {
                            fail!(format!("column {column}: {e}"));
                            continue;
                        }
                    },
                    RuleConfig::Constant { value, .. } => ValueSource::Constant(value.clone()),
                    RuleConfig::Lookup(_) | RuleConfig::Relation { .. } => continue,
                };
                columns.push(ColumnMap {
                    to: dest.name.clone(),
                    data_type: dest.data_type,
                    source,
                    untranslated: None,
                });
            }
            let mut key = Vec::new();
            for wanted in &split.key {
                match names::find(wanted, columns.iter().map(|c| c.to.as_str()), self.names) {
                    Ok(found) => key.push(found.to_owned()),
                    Err(_) => fail!(format!(
                        "key column {wanted} gets no value: map it under columns"
                    )),
                }
            }
            splits.push(SplitPlan {
                side: split.side,
                table: table.clone(),
                key,
                reference,
                columns,
            });
        }
        splits
    }

    /// One direction's mapping, its problems added to `out`.
    fn direction(
        &self,
        origin: Side,
        splits: &[SplitPlan],
        out: &mut Vec<PlanProblem>,
        explained: &mut BTreeSet<(Side, String)>,
    ) -> DirectionMap {
        let config = self.config;
        let from = &self.schemas[origin.index()];
        let dest_side = origin.other();
        let to = &self.schemas[dest_side.index()];
        let rules = &config.directions[origin.index()];
        let at = format!("pair {}: {origin} -> {dest_side}", config.name);
        let mut problems: Vec<PlanProblem> = Vec::new();
        macro_rules! fail {
            ($message:expr) => {
                problems.push(PlanProblem::error(format!("{at}: {}", $message)))
            };
        }
        let generated_key =
            |c: &str| to.key_is_generated() && to.primary_key.iter().any(|k| k == c);

        // Columns left alone: excluded, and a split's reference (the split
        // sets it).
        let mut excluded: BTreeSet<String> = splits
            .iter()
            .filter(|s| s.side == dest_side)
            .map(|s| s.reference.clone())
            .collect();
        for column in &rules.exclude {
            match find_column(to, column, self.names) {
                Ok(c) => {
                    excluded.insert(c.name.clone());
                }
                Err(miss) => fail!(format!(
                    "exclude: no column {column} in {dest_side} table {}{}",
                    to.name,
                    miss.hint()
                )),
            }
        }

        // The columns the config maps (by the column they name, with the
        // key that names it).
        let mut written: Vec<Written> = Vec::new();
        let mut configured: BTreeMap<String, &str> = BTreeMap::new();
        for (key, rule) in &rules.columns {
            let column = key;
            let dest = match find_column(to, column, self.names) {
                Ok(dest) => dest,
                Err(miss) => {
                    fail!(format!(
                        "column {column}: no such column in {dest_side} table {}{}",
                        to.name,
                        miss.hint()
                    ));
                    continue;
                }
            };
            let column = &dest.name;
            if let Some(first) = configured.insert(column.clone(), key) {
                fail!(format!(
                    "columns {first} and {key} both name {dest_side} column {column}: keep one"
                ));
                continue;
            }
            if dest.always_generated || generated_key(column) {
                fail!(format!(
                    "column {column}: the engine generates it; it cannot be mapped"
                ));
                continue;
            }
            let origin_column = |name: &str| -> Result<String, String> {
                find_column(from, name, self.names)
                    .map(|c| c.name.clone())
                    .map_err(|miss| {
                        format!(
                            "column {column}: no column {name} in {origin} table {}{}",
                            from.name,
                            miss.hint()
                        )
                    })
            };
            let source = match rule {
                RuleConfig::Column {
                    from: name,
                    translate,
                } => match origin_column(name) {
                    Ok(name) => Source::Column {
                        from: name,
                        translate: *translate,
                    },
                    Err(message) => {
                        fail!(message);
                        continue;
                    }
                },
                RuleConfig::Relation {
                    pair,
                    from: source_column,
                } => {
                    let source_column = source_column.as_deref().unwrap_or(column);
                    let referenced = match self.pair_names.get(pair.as_str()) {
                        Some(&referenced) => referenced,
                        // Its tables are missing: said already.
                        None if self.unplanned.contains(pair.as_str()) => continue,
                        None => {
                            let hint = Miss::Unknown(names::closest(
                                pair,
                                self.pair_names.keys().copied(),
                            ))
                            .hint();
                            fail!(format!(
                                "column {column}: relation to unknown pair {pair}{hint}"
                            ));
                            continue;
                        }
                    };
                    let source_column = match origin_column(source_column) {
                        Ok(name) => name,
                        Err(message) => {
                            fail!(message);
                            continue;
                        }
                    };
                    if self.all[referenced][dest_side.index()].primary_key.len() != 1 {
                        fail!(format!(
                            "column {column}: relation to pair {pair}, whose key has several columns"
                        ));
                        continue;
                    }
                    Source::Relation {
                        pair: referenced,
                        from: source_column,
                    }
                }
                RuleConfig::Expression(text) => match Expression::compile(text) {
                    Ok(expression) => {
                        if let Some(unknown) = expression
                            .variables()
                            .iter()
                            .find(|v| from.column(v).is_none())
                        {
                            let hint = closest_column(from, unknown);
                            fail!(format!(
                                "column {column}: expression {text:?} uses {unknown}, which is not a column of {origin} table {}{hint}",
                                from.name
                            ));
                            continue;
                        }
                        if let Some(kind) = misfit(&expression, from, dest.data_type) {
                            fail!(format!(
                                "column {column}: expression {text:?} gives {kind}, which does not fit its type {}",
                                dest.native_type
                            ));
                            continue;
                        }
                        Source::Value(ValueSource::Expression(Arc::new(expression)))
                    }
                    Err(e) => {
                        fail!(format!("column {column}: {e}"));
                        continue;
                    }
                },
                RuleConfig::Constant { value, .. } => match fit(value.clone(), dest.data_type) {
                    Ok(value) => Source::Value(ValueSource::Constant(value)),
                    Err(e) => {
                        fail!(format!(
                            "column {column}: constant {value} does not fit its type {}: {e}",
                            dest.native_type
                        ));
                        continue;
                    }
                },
                RuleConfig::Lookup(lookup) => {
                    let Some(table) = self.lookups.get(&(lookup.side, lookup.table.clone())) else {
                        fail!(format!(
                            "column {column}: lookup table {} was not described",
                            lookup.table
                        ));
                        continue;
                    };
                    let mut lookup_column =
                        |needed: &str| match find_column(table, needed, self.names) {
                            Ok(c) => Some(c.name.clone()),
                            Err(miss) => {
                                fail!(format!(
                                    "column {column}: lookup: no column {needed} in {} table {}{}",
                                    lookup.side,
                                    table.name,
                                    miss.hint()
                                ));
                                None
                            }
                        };
                    let (Some(match_column), Some(value_column)) = (
                        lookup_column(&lookup.match_column),
                        lookup_column(&lookup.value),
                    ) else {
                        continue;
                    };
                    let read = match origin_column(&lookup.from) {
                        Ok(name) => name,
                        Err(_) => {
                            fail!(format!(
                                "column {column}: lookup: no column {} in {origin} table {}",
                                lookup.from, from.name
                            ));
                            continue;
                        }
                    };
                    Source::Value(ValueSource::Lookup {
                        side: lookup.side,
                        table: table.name.to_string(),
                        match_column,
                        value_column,
                        from: read,
                    })
                }
            };
            written.push(Written {
                to: column.clone(),
                source,
                by_name: false,
            });
        }
        let explicit: BTreeSet<String> = written.iter().map(|w| w.to.clone()).collect();

        // Joined back: a column the split fills from the other side gets
        // the split table's value, unless configured otherwise.
        for split in splits.iter().filter(|s| s.side == origin) {
            for column in &split.columns {
                let ValueSource::Column(other_column) = &column.source else {
                    continue;
                };
                if explicit.contains(other_column) || excluded.contains(other_column) {
                    continue;
                }
                if let Some(dest) = to.column(other_column) {
                    written.push(Written {
                        to: dest.name.clone(),
                        source: Source::Value(ValueSource::Column(split.joined(&column.to))),
                        by_name: false,
                    });
                }
            }
        }

        // Every other column whose name matches: mapped unless said
        // otherwise.
        let taken: BTreeSet<String> = written.iter().map(|w| w.to.clone()).collect();
        let candidates: Vec<&Column> = to
            .columns
            .iter()
            .filter(|d| {
                !d.always_generated
                    && !generated_key(&d.name)
                    && !excluded.contains(&d.name)
                    && !taken.contains(&d.name)
            })
            .collect();
        for dest in &candidates {
            let name = dest.name.as_str();
            let source = match names::find(
                name,
                from.columns.iter().map(|c| c.name.as_str()),
                self.names,
            ) {
                Ok(found) => from.column(found).expect("one of its columns"),
                Err(Miss::Ambiguous(both)) => {
                    fail!(format!(
                        "column {name}: {origin} columns {} all match it: map one (`{name} = \"{}\"`)",
                        both.join(" and "),
                        both[0]
                    ));
                    continue;
                }
                Err(Miss::Unknown(_)) => continue,
            };
            if source.name != name {
                // Matched by folding: not when another column of this side
                // is spelled exactly so, nor when another folds alike too.
                if to.column(&source.name).is_some() {
                    continue;
                }
                let rivals: Vec<&str> = candidates
                    .iter()
                    .filter(|d| d.name != name && names::fold(&d.name) == names::fold(name))
                    .map(|d| d.name.as_str())
                    .collect();
                if !rivals.is_empty() {
                    fail!(format!(
                        "{dest_side} columns {name} and {} all match {origin} column {}: map them under columns",
                        rivals.join(" and "),
                        source.name
                    ));
                    continue;
                }
            }
            written.push(Written {
                to: name.to_owned(),
                source: Source::Column {
                    from: source.name.clone(),
                    translate: true,
                },
                by_name: true,
            });
        }

        let References {
            relations,
            untranslated,
            referencing,
        } = self.relations(origin, &written, &at, &mut problems);
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

        let mut columns = Vec::new();
        for w in &written {
            if related.contains(w.to.as_str()) {
                continue;
            }
            let dest = to.column(&w.to).expect("written columns exist");
            let source = match &w.source {
                Source::Column { from: name, .. } => {
                    let read = from.column(name).expect("read columns exist");
                    // Matched by name, of types that do not convert: not
                    // mapped (a reference converts through its links).
                    if w.by_name && !compatible(read.data_type, dest.data_type) {
                        problems.push(PlanProblem::warning(format!(
                            "{at}: column {} is {} on the {origin} and {} on the {dest_side}; it is not mapped \
                             (map it with an expression, or exclude it)",
                            dest.name, read.native_type, dest.native_type
                        )));
                        explained.insert((dest_side, dest.name.clone()));
                        explained.insert((origin, read.name.clone()));
                        continue;
                    }
                    for phrase in will_not_fit(read, dest, &to.name) {
                        problems.push(PlanProblem::warning(format!(
                            "{at}: column {}: {origin} column {phrase}",
                            dest.name
                        )));
                    }
                    ValueSource::Column(name.clone())
                }
                Source::Relation { .. } => continue,
                Source::Value(source) => {
                    // A reference computed, not copied: it is not
                    // translated, and worth a word.
                    if let ValueSource::Expression(e) = source {
                        let read = e
                            .variables()
                            .iter()
                            .find_map(|v| referencing.get(&(origin, v.clone())).map(|p| (v, p)));
                        if let Some(pair) = referencing.get(&(dest_side, dest.name.clone())) {
                            problems.push(PlanProblem::warning(format!(
                                "{at}: column {}: a reference to pair {pair}'s table gets an expression: \
                                 its value is written as computed, not translated",
                                dest.name
                            )));
                        } else if let Some((column, pair)) = read {
                            problems.push(PlanProblem::warning(format!(
                                "{at}: column {}: the expression reads {column}, a reference to pair {pair}'s \
                                 table: it sees the {origin}'s key, not translated (map the reference as a \
                                 column to have it translated)",
                                dest.name
                            )));
                        }
                    }
                    source.clone()
                }
            };
            columns.push(ColumnMap {
                to: w.to.clone(),
                data_type: dest.data_type,
                source,
                untranslated: untranslated.get(&w.to).cloned(),
            });
        }

        // A column the engine will not fill and this direction leaves
        // empty: every new copy would fail.
        let filled: BTreeSet<&str> = columns
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
        let writable: Vec<&Column> = to
            .columns
            .iter()
            .filter(|c| !c.always_generated && !generated_key(&c.name))
            .collect();
        if filled.is_empty() && !writable.is_empty() {
            fail!(format!(
                "no column of {dest_side} table {} gets a value: none matches a column of {origin} table {} \
                 by name and type (map them under [tables.{}.columns])",
                to.name,
                from.name,
                if origin == Side::Source { "to_target" } else { "to_source" }
            ));
        }
        for column in writable {
            if !column.nullable
                && !column.generated
                && !column.has_default
                && !filled.contains(column.name.as_str())
            {
                fail!(format!(
                    "column {} is NOT NULL in {dest_side} table {} but gets no value in this direction; \
                     new copies would fail: map it, give it a constant, or give it a default",
                    column.name, to.name
                ));
            }
        }

        let origin_has = |column: &str| from.column(column).is_some();
        let filter = rules.filter.as_ref().and_then(|text| match Expression::compile(text) {
            Ok(expression) => match expression.variables().iter().find(|v| !origin_has(v)) {
                Some(unknown) => {
                    let hint = closest_column(from, unknown);
                    fail!(format!(
                        "filter {text:?} uses {unknown}, which is not a column of {origin} table {}{hint}",
                        from.name
                    ));
                    None
                }
                None => Some(Arc::new(expression)),
            },
            Err(e) => {
                fail!(format!("filter: {e}"));
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
                if let Ok(own) = find_column(from, column, self.names) {
                    if let Ok(value) = fit(value.clone(), own.data_type) {
                        required.push((own.name.clone(), value));
                    }
                }
            }
        }
        out.extend(problems);
        DirectionMap {
            columns,
            relations,
            key_mode,
            filter,
            on_filter_exit: rules.on_filter_exit,
            required,
        }
    }

    /// The relations of a direction: the configured ones, then every
    /// foreign key to a synced table (declared on either side) whose
    /// columns are copied. Also: the columns that copy a reference
    /// untranslated (`translate = false`), with the pair it refers to; and
    /// every column that belongs to a foreign key to a synced table, by
    /// side, with that pair.
    fn relations(
        &self,
        origin: Side,
        written: &[Written],
        at: &str,
        problems: &mut Vec<PlanProblem>,
    ) -> References {
        let dest_side = origin.other();
        let from = &self.schemas[origin.index()];
        let to = &self.schemas[dest_side.index()];
        let deferrable = |columns: &[String]| {
            columns
                .iter()
                .all(|c| to.column(c).is_some_and(|col| col.nullable))
                && !columns.iter().any(|c| to.primary_key.contains(c))
        };
        let mut found = References::default();
        for w in written {
            if let Source::Relation { pair, from } = &w.source {
                found.relations.push(Relation {
                    from: vec![from.clone()],
                    to: vec![w.to.clone()],
                    pair: PairId(*pair),
                    deferrable: deferrable(std::slice::from_ref(&w.to)),
                });
            }
        }
        // The columns copied from another column: (written, read, translated).
        let copies: Vec<(&str, &str, bool)> = written
            .iter()
            .filter_map(|w| match &w.source {
                Source::Column { from, translate } => {
                    Some((w.to.as_str(), from.as_str(), *translate))
                }
                _ => None,
            })
            .collect();
        let mut warned: BTreeSet<&str> = BTreeSet::new();
        for (side, table) in [(origin, from), (dest_side, to)] {
            // The copies that read (origin) or write (destination) `column`.
            let copies_of = |column: &str| -> Vec<&(&str, &str, bool)> {
                copies
                    .iter()
                    .filter(|(to, from, _)| {
                        if side == origin {
                            *from == column
                        } else {
                            *to == column
                        }
                    })
                    .collect()
            };
            for fk in &table.foreign_keys {
                let Some(&pair) = self.index[side.index()].get(&fk.referenced_table) else {
                    continue;
                };
                let pair_name = self.pair_name(pair);
                for column in &fk.columns {
                    found
                        .referencing
                        .insert((side, column.clone()), pair_name.to_owned());
                }
                // Each column of the key, in key order, on this side.
                let Some(own) = key_order(fk, &self.all[pair][side.index()]) else {
                    let referenced = &self.all[pair][side.index()];
                    if fk.columns.iter().any(|c| !copies_of(c).is_empty()) {
                        problems.push(PlanProblem::warning(format!(
                            "{at}: foreign key ({}) of {side} table {} references ({}), not the primary key of {}; \
                             its values are copied as they are, not translated",
                            fk.columns.join(", "),
                            table.name,
                            fk.referenced_columns.join(", "),
                            referenced.name
                        )));
                    }
                    continue;
                };
                let per_column: Vec<Vec<&(&str, &str, bool)>> =
                    own.iter().map(|c| copies_of(c)).collect();
                if per_column.iter().all(Vec::is_empty) {
                    continue;
                }
                if per_column.iter().any(Vec::is_empty) {
                    problems.push(PlanProblem::error(format!(
                        "{at}: foreign key ({}) of {side} table {} is only partly mapped; map all of its columns, or none",
                        fk.columns.join(", "),
                        table.name
                    )));
                    continue;
                }
                // A one-column reference copied into several columns is a
                // reference in each; a key of several columns is copied
                // once.
                let sets: Vec<Vec<&(&str, &str, bool)>> = if own.len() == 1 {
                    per_column[0].iter().map(|copy| vec![*copy]).collect()
                } else if per_column.iter().any(|c| c.len() > 1) {
                    problems.push(PlanProblem::error(format!(
                        "{at}: foreign key ({}) of {side} table {} is copied into several columns; map each of its columns once",
                        fk.columns.join(", "),
                        table.name
                    )));
                    continue;
                } else {
                    vec![per_column.iter().map(|c| c[0]).collect()]
                };
                for set in sets {
                    let said: Vec<&str> = set
                        .iter()
                        .filter(|(_, _, translate)| !translate)
                        .map(|(to, _, _)| *to)
                        .collect();
                    if said.len() == set.len() {
                        for (to, from, _) in &set {
                            found
                                .untranslated
                                .insert((*to).to_owned(), pair_name.to_owned());
                            if warned.insert(to) {
                                problems.push(PlanProblem::warning(format!(
                                    "{at}: column {to} copies {from} untranslated (translate = false): it holds \
                                     the {origin}'s keys of pair {pair_name}, which are not the {dest_side}'s keys \
                                     once the two sides' ids differ"
                                )));
                            }
                        }
                        continue;
                    }
                    if !said.is_empty() {
                        problems.push(PlanProblem::error(format!(
                            "{at}: column {} says translate = false, the other columns of foreign key ({}) of \
                             {side} table {} do not: say it for all of them, or none",
                            said.join(", "),
                            fk.columns.join(", "),
                            table.name
                        )));
                        continue;
                    }
                    let to_columns: Vec<String> =
                        set.iter().map(|(t, _, _)| (*t).to_owned()).collect();
                    let from_columns: Vec<String> =
                        set.iter().map(|(_, f, _)| (*f).to_owned()).collect();
                    if let Some(existing) = found.relations.iter().find(|r| r.to == to_columns) {
                        if existing.pair != PairId(pair) {
                            problems.push(PlanProblem::error(format!(
                                "{at}: column(s) {} refer to pair {} on one side and to pair {pair_name} on the other",
                                to_columns.join(", "),
                                self.pair_name(existing.pair.0),
                            )));
                        }
                        continue;
                    }
                    if found
                        .relations
                        .iter()
                        .any(|r| r.to.iter().any(|c| to_columns.contains(c)))
                    {
                        continue;
                    }
                    found.relations.push(Relation {
                        deferrable: deferrable(&to_columns),
                        from: from_columns,
                        to: to_columns,
                        pair: PairId(pair),
                    });
                }
            }
        }
        // A `translate = false` that changes nothing is worth a word.
        for (to, from, translate) in &copies {
            let reference = found
                .referencing
                .contains_key(&(origin, (*from).to_owned()))
                || found
                    .referencing
                    .contains_key(&(dest_side, (*to).to_owned()));
            if !translate && !reference {
                problems.push(PlanProblem::warning(format!(
                    "{at}: column {to}: translate = false has no effect: neither {from} nor {to} is a \
                     foreign key to a synced table"
                )));
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

    /// One line naming the columns of either side that travel in neither
    /// direction (excluded ones aside), with the likely pairs among them;
    /// `None` when every column travels.
    fn unsynced(&self, pair: &PairPlan, explained: &BTreeSet<(Side, String)>) -> Option<String> {
        let mut parts = Vec::new();
        let mut left: [Vec<&str>; 2] = Default::default();
        for side in Side::BOTH {
            let table = pair.table(side);
            let reading = &pair.directions[side.index()];
            let writing = &pair.directions[side.other().index()];
            let mut travels: BTreeSet<&str> = BTreeSet::new();
            for column in &reading.columns {
                match &column.source {
                    ValueSource::Column(c) => {
                        travels.insert(c);
                    }
                    ValueSource::Expression(e) => {
                        travels.extend(e.variables().iter().map(String::as_str))
                    }
                    ValueSource::Lookup { from, .. } => {
                        travels.insert(from);
                    }
                    ValueSource::Constant(_) => {}
                }
            }
            for relation in &reading.relations {
                travels.extend(relation.from.iter().map(String::as_str));
            }
            if let Some(filter) = &reading.filter {
                travels.extend(filter.variables().iter().map(String::as_str));
            }
            travels.extend(writing.columns.iter().map(|c| c.to.as_str()));
            for relation in &writing.relations {
                travels.extend(relation.to.iter().map(String::as_str));
            }
            for split in &pair.splits {
                if split.side == side {
                    travels.insert(&split.reference);
                } else {
                    for column in &split.columns {
                        match &column.source {
                            ValueSource::Column(c) => {
                                travels.insert(c);
                            }
                            ValueSource::Expression(e) => {
                                travels.extend(e.variables().iter().map(String::as_str))
                            }
                            _ => {}
                        }
                    }
                }
            }
            let excluded: BTreeSet<&str> = self.config.directions[side.other().index()]
                .exclude
                .iter()
                .filter_map(|e| find_column(table, e, self.names).ok())
                .map(|c| c.name.as_str())
                .collect();
            // The database fills these: they travel in no direction.
            let generated = |c: &Column| {
                c.always_generated
                    || (table.key_is_generated() && table.primary_key.contains(&c.name))
            };
            let missing: Vec<&str> = table
                .columns
                .iter()
                .filter(|c| !generated(c))
                .map(|c| c.name.as_str())
                .filter(|c| {
                    !travels.contains(c)
                        && !explained.contains(&(side, (*c).to_owned()))
                        && !table.primary_key.iter().any(|k| k == c)
                        && !excluded.contains(c)
                })
                .collect();
            if !missing.is_empty() {
                parts.push(format!(
                    "{side} column{} {}",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                ));
            }
            left[side.index()] = missing;
        }
        if parts.is_empty() {
            return None;
        }
        let likely: Vec<String> = left[0]
            .iter()
            .filter_map(|s| {
                names::closest(s, left[1].iter().copied()).map(|t| format!("`{t} = \"{s}\"`"))
            })
            .collect();
        let advice = if likely.is_empty() {
            " (map them under columns, or list them in exclude)".to_owned()
        } else {
            format!(
                " (perhaps {} under [tables.to_target.columns] and the reverse under to_source; or list them in exclude)",
                likely.join(", ")
            )
        };
        Some(format!(
            "pair {}: not synced: {}{advice}",
            pair.name,
            parts.join("; ")
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::plan::Mapped;
    use crate::mapping::LookupCache;
    use crate::state::State;
    use tandem_connectors::{DataType, Key, Row, Value};

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
            target: Some(name.into()),
            match_on: Vec::new(),
            directions: Default::default(),
            splits: Vec::new(),
        }
    }

    fn build(
        configs: &[TablePairConfig],
        tables: Vec<[TableSchema; 2]>,
    ) -> (Plan, Vec<PlanProblem>) {
        Plan::build(
            configs,
            tables.into_iter().map(Some).collect(),
            &LookupTables::new(),
            NameMatching::Fold,
        )
    }

    fn map(plan: &Plan, pair: usize, origin: Side, row: &Row, state: &State) -> Mapped {
        plan.map_row(PairId(pair), origin, row, state, &LookupCache::default())
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
        assert_eq!(orders.relations[0].pair, PairId(0));

        let state = State::in_memory();
        let row: Row = [
            ("id".into(), Value::Int(5)),
            ("customer_id".into(), Value::Int(7)),
            ("qty".into(), Value::Int(2)),
        ]
        .into();
        assert!(matches!(
            map(&plan, 1, Side::Source, &row, &state),
            Mapped::Waiting { .. }
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
                PairId(0),
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
        let (_, problems) = build(&[config], vec![[source, target]]);
        let fatal: Vec<_> = problems
            .iter()
            .filter(|p| p.fatal && p.message.contains("source -> target"))
            .map(|p| p.message.as_str())
            .collect();
        assert_eq!(
            fatal,
            ["pair items: source -> target: column seen: expression \"qty > 1\" gives bool, which does not fit its type date"]
        );
    }

    #[test]
    fn a_not_null_column_no_direction_fills_is_an_error() {
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
            .expect("a problem");
        assert!(warning.fatal, "new copies would fail: {warning:?}");
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

    /// A table of nullable integer columns keyed by a generated `key`,
    /// with foreign keys `(column, table)` to tables keyed by `id`.
    fn keyed(name: &str, key: &str, others: &[&str], fks: Vec<(&str, &str)>) -> TableSchema {
        let mut columns = vec![column(key, true, false)];
        columns.extend(others.iter().map(|c| column(c, false, true)));
        let mut table = table(name, columns, &[key], fks);
        for fk in &mut table.foreign_keys {
            fk.referenced_columns = vec![if name.chars().next().is_some_and(char::is_uppercase) {
                "Id".into()
            } else {
                "id".into()
            }];
        }
        table
    }

    fn pair_of(name: &str, source: &str, target: &str) -> TablePairConfig {
        TablePairConfig {
            source: source.into(),
            target: Some(target.into()),
            ..pair(name)
        }
    }

    fn rule(to: &str, from: &str, translate: bool) -> (String, RuleConfig) {
        (
            to.into(),
            RuleConfig::Column {
                from: from.into(),
                translate,
            },
        )
    }

    /// customers / Customer and orders / Orders, the order's reference to
    /// its customer renamed (customer_id / CustomerRef), declared on the
    /// source only.
    fn renamed_reference() -> (Vec<TablePairConfig>, Vec<[TableSchema; 2]>) {
        let customers = keyed("customers", "id", &["full_name"], vec![]);
        let customer = keyed("Customer", "Id", &["FullName"], vec![]);
        let orders = keyed(
            "orders",
            "id",
            &["customer_id", "order_date"],
            vec![("customer_id", "customers")],
        );
        let target_orders = keyed("Orders", "Id", &["CustomerRef", "OrderDate"], vec![]);
        let mut orders_pair = pair_of("orders", "orders", "Orders");
        orders_pair.directions[0].columns = vec![rule("CustomerRef", "customer_id", true)];
        orders_pair.directions[1].columns = vec![rule("customer_id", "CustomerRef", true)];
        (
            vec![pair_of("customers", "customers", "Customer"), orders_pair],
            vec![[customers, customer], [orders, target_orders]],
        )
    }

    #[test]
    fn a_renamed_reference_is_translated_both_ways_and_check_is_silent() {
        let (configs, tables) = renamed_reference();
        let (plan, problems) = build(&configs, tables);
        assert!(problems.is_empty(), "{problems:?}");
        let orders = &plan.pairs[1];
        assert_eq!(orders.name, "orders");
        let to_target = &orders.directions[0];
        assert_eq!(written(to_target), ["OrderDate"]);
        assert_eq!(to_target.relations[0].from, ["customer_id"]);
        assert_eq!(to_target.relations[0].to, ["CustomerRef"]);
        assert_eq!(to_target.relations[0].pair, PairId(0));
        let to_source = &orders.directions[1];
        assert_eq!(to_source.relations[0].from, ["CustomerRef"]);
        assert_eq!(to_source.relations[0].to, ["customer_id"]);
        assert_eq!(written(to_source), ["order_date"]);

        let state = State::in_memory();
        let mut batch = crate::state::StateBatch::default();
        batch.put_link(
            "customers",
            &crate::state::Link::new(Key(vec![Value::Int(7)]), Key(vec![Value::Int(70)])),
        );
        state.commit(batch, false).unwrap();
        let row: Row = [
            ("id".into(), Value::Int(1)),
            ("customer_id".into(), Value::Int(7)),
        ]
        .into();
        let (Mapped::Complete(mapped) | Mapped::Partial(mapped)) =
            map(&plan, 1, Side::Source, &row, &state)
        else {
            panic!("the customer is linked")
        };
        assert_eq!(mapped.get("CustomerRef"), Some(&Value::Int(70)));
    }

    #[test]
    fn translate_false_copies_a_reference_as_it_is_and_says_so() {
        let (mut configs, tables) = renamed_reference();
        configs[1].directions[0].columns = vec![rule("CustomerRef", "customer_id", false)];
        let (plan, problems) = build(&configs, tables);
        let to_target = &plan.pairs[1].directions[0];
        assert!(to_target.relations.is_empty());
        let copied = to_target
            .columns
            .iter()
            .find(|c| c.to == "CustomerRef")
            .unwrap();
        assert_eq!(copied.untranslated.as_deref(), Some("customers"));
        assert!(
            problems.iter().any(|p| !p.fatal
                && p.message.starts_with("pair orders: source -> target: column CustomerRef copies customer_id untranslated (translate = false)")),
            "{problems:?}"
        );
        // Where no reference is involved, it is said to change nothing.
        configs[0].directions[0].columns = vec![rule("FullName", "full_name", false)];
        let (_, problems) = build(&configs, renamed_reference().1);
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("translate = false has no effect")),
            "{problems:?}"
        );
    }

    #[test]
    fn names_in_other_styles_match_and_unmatched_ones_are_listed() {
        let source = keyed(
            "order_line",
            "order_line_id",
            &["unit_price", "qty", "note"],
            vec![],
        );
        let target = keyed(
            "OrderLine",
            "OrderLineId",
            &["UnitPrice", "Quantity", "Note"],
            vec![],
        );
        let (plan, problems) = build(
            &[pair_of("order_line", "order_line", "OrderLine")],
            vec![[source, target]],
        );
        assert_eq!(written(&plan.pairs[0].directions[0]), ["UnitPrice", "Note"]);
        assert_eq!(
            written(&plan.pairs[0].directions[1]),
            ["unit_price", "note"]
        );
        assert_eq!(
            problems,
            [PlanProblem::warning(
                "pair order_line: not synced: source column qty; target column Quantity \
                 (perhaps `Quantity = \"qty\"` under [tables.to_target.columns] and the reverse under to_source; \
                 or list them in exclude)"
            )]
        );
        // Names as written only, when asked.
        let source = keyed("t", "id", &["unit_price"], vec![]);
        let target = keyed("T", "Id", &["UnitPrice"], vec![]);
        let (plan, _) = Plan::build(
            &[pair_of("t", "t", "T")],
            vec![Some([source, target])],
            &LookupTables::new(),
            NameMatching::Exact,
        );
        assert!(written(&plan.pairs[0].directions[0]).is_empty());
    }

    #[test]
    fn ambiguous_names_unknown_names_and_empty_mappings_are_errors() {
        let source = keyed("items", "id", &["order_id", "OrderId", "qty"], vec![]);
        let target = keyed("Items", "Id", &["ORDERID", "Quantity"], vec![]);
        let mut config = pair_of("items", "items", "Items");
        config.directions[0].columns = vec![rule("Quantty", "qty", true)];
        let (_, problems) = build(&[config], vec![[source, target]]);
        let errors: Vec<&str> = problems
            .iter()
            .filter(|p| p.fatal)
            .map(|p| p.message.as_str())
            .collect();
        for expected in [
            "pair items: source -> target: column Quantty: no such column in target table Items (did you mean `Quantity`?)",
            "pair items: source -> target: column ORDERID: source columns order_id and OrderId all match it: map one (`ORDERID = \"order_id\"`)",
            "pair items: target -> source: no column of source table items gets a value",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected:?} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn values_a_column_cannot_hold_are_warned_about() {
        let mut source = keyed("items", "id", &[], vec![]);
        let mut target = keyed("Items", "Id", &[], vec![]);
        let mut long = Column::new("label", DataType::Text, "varchar");
        long.capacity.max_chars = Some(100);
        let mut short = Column::new("Label", DataType::Text, "varchar");
        short.capacity.max_chars = Some(50);
        source.columns.push(long);
        target.columns.push(short);
        let (_, problems) = build(
            &[pair_of("items", "items", "Items")],
            vec![[source, target]],
        );
        assert_eq!(
            problems,
            [PlanProblem::warning(
                "pair items: source -> target: column Label: source column label holds up to 100 characters, \
                 Label 50: longer values are dead-lettered; widen Label to 100"
            )]
        );
    }

    #[test]
    fn a_reference_copied_into_two_columns_is_translated_in_both() {
        let (mut configs, mut tables) = renamed_reference();
        tables[1][1]
            .columns
            .push(column("LegacyCustomer", false, true));
        configs[1].directions[0]
            .columns
            .push(rule("LegacyCustomer", "customer_id", true));
        let (plan, problems) = build(&configs, tables);
        let to_target = &plan.pairs[1].directions[0];
        let mut related: Vec<&str> = to_target
            .relations
            .iter()
            .map(|r| r.to[0].as_str())
            .collect();
        related.sort();
        assert_eq!(related, ["CustomerRef", "LegacyCustomer"], "{problems:?}");
        assert_eq!(written(to_target), ["OrderDate"]);
    }

    #[test]
    fn a_reference_between_keys_of_other_types_is_still_a_reference() {
        // The target's customers are keyed by UUIDs: the reference is
        // translated through the links, whatever the types.
        let (configs, mut tables) = renamed_reference();
        for (i, name) in [(0, "Id"), (1, "CustomerRef")] {
            let column = tables[i][1]
                .columns
                .iter_mut()
                .find(|c| c.name == name)
                .unwrap();
            column.data_type = DataType::Uuid;
            column.native_type = "uuid".into();
        }
        let mut configs = configs;
        configs[1].directions = Default::default();
        tables[1][1]
            .foreign_keys
            .push(tandem_connectors::ForeignKey {
                columns: vec!["CustomerRef".into()],
                referenced_table: TableName::new(None, "Customer"),
                referenced_columns: vec!["Id".into()],
            });
        // Named alike on both sides this time.
        tables[1][0].columns[1].name = "customer_ref".into();
        tables[1][0].foreign_keys[0].columns = vec!["customer_ref".into()];
        let (plan, problems) = build(&configs, tables);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(plan.pairs[1].directions[0].relations[0].to, ["CustomerRef"]);
        assert_eq!(
            plan.pairs[1].directions[1].relations[0].to,
            ["customer_ref"]
        );
    }

    #[test]
    fn a_reference_computed_by_an_expression_is_named() {
        let (mut configs, tables) = renamed_reference();
        configs[1].directions[0].columns = vec![(
            "CustomerRef".into(),
            RuleConfig::Expression("customer_id + 0".into()),
        )];
        let (plan, problems) = build(&configs, tables);
        assert!(plan.pairs[1].directions[0].relations.is_empty());
        assert!(
            problems.iter().any(|p| !p.fatal
                && p.message.contains(
                    "the expression reads customer_id, a reference to pair customers's table"
                )),
            "{problems:?}"
        );
    }

    #[test]
    fn two_rules_for_one_column_and_half_a_translated_key_are_errors() {
        let (mut configs, tables) = renamed_reference();
        configs[1].directions[0].columns = vec![
            rule("CustomerRef", "customer_id", true),
            rule("customer_ref", "customer_id", true),
        ];
        let (_, problems) = build(&configs, tables);
        assert!(
            problems.iter().any(|p| p.fatal
                && p.message.contains(
                    "columns CustomerRef and customer_ref both name target column CustomerRef"
                )),
            "{problems:?}"
        );

        let parent = table(
            "parent",
            vec![column("a", false, false), column("b", false, false)],
            &["a", "b"],
            vec![],
        );
        let mut child = keyed("child", "id", &["pa", "pb"], vec![]);
        child.foreign_keys.push(tandem_connectors::ForeignKey {
            columns: vec!["pa".into(), "pb".into()],
            referenced_table: TableName::new(None, "parent"),
            referenced_columns: vec!["a".into(), "b".into()],
        });
        let mut config = pair("child");
        config.directions[0].columns = vec![rule("pa", "pa", false)];
        let (_, problems) = build(
            &[pair("parent"), config],
            vec![[parent.clone(), parent], [child.clone(), child]],
        );
        assert!(
            problems.iter().any(|p| p.fatal
                && p.message.contains(
                    "column pa says translate = false, the other columns of foreign key (pa, pb)"
                )),
            "{problems:?}"
        );
    }

    #[test]
    fn columns_the_database_fills_are_not_called_unsynced() {
        let mut source = keyed("items", "id", &["qty"], vec![]);
        let mut target = keyed("Items", "Id", &["Qty"], vec![]);
        let mut total = column("total", true, true);
        total.always_generated = true;
        source.columns.push(total);
        let mut other = column("Total2", true, true);
        other.always_generated = true;
        target.columns.push(other);
        let (_, problems) = build(
            &[pair_of("items", "items", "Items")],
            vec![[source, target]],
        );
        assert!(problems.is_empty(), "{problems:?}");
    }
}
