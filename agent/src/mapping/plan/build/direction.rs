//! Planning one direction of a pair: what each written column receives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tandem_connectors::Column;

use super::*;
use crate::config::Side;
use crate::mapping::expr::fit;
use crate::mapping::names::{self, Miss};
use crate::mapping::plan::fit::{compatible, misfit, will_not_fit};
use crate::mapping::plan::{ColumnMap, DirectionMap, KeyMode, PlanProblem, SplitPlan, ValueSource};
use crate::mapping::{Expression, RuleConfig};

impl Context<'_> {
    /// One direction's mapping, its problems added to `out`.
    pub(super) fn direction(
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
}
