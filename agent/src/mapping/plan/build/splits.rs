//! Planning the extra tables a pair's rows are split into.

use std::sync::Arc;

use super::*;
use crate::mapping::names::{self};
use crate::mapping::plan::{ColumnMap, PlanProblem, SplitPlan, ValueSource};
use crate::mapping::{Expression, RuleConfig};

impl Context<'_> {
    /// The extra tables rows are split into, validated.
    pub(super) fn splits(&self, out: &mut Vec<PlanProblem>) -> Vec<SplitPlan> {
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
}
