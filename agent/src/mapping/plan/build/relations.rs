//! Planning references: columns that copy a foreign key to a synced table
//! become relations through that table's pair.

use std::collections::BTreeSet;

use super::*;
use crate::config::Side;
use crate::mapping::plan::{PairId, PlanProblem, Relation};

impl Context<'_> {
    /// The relations of a direction: the configured ones, then every
    /// foreign key to a synced table (declared on either side) whose
    /// columns are copied. Also: the columns that copy a reference
    /// untranslated (`translate = false`), with the pair it refers to; and
    /// every column that belongs to a foreign key to a synced table, by
    /// side, with that pair.
    pub(super) fn relations(
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
}
