//! The columns a pair leaves unsynced, said once per pair.

use std::collections::BTreeSet;

use tandem_connectors::Column;

use super::*;
use crate::config::Side;
use crate::mapping::names::{self};
use crate::mapping::plan::{PairPlan, ValueSource};

impl Context<'_> {
    /// One line naming the columns of either side that travel in neither
    /// direction (excluded ones aside), with the likely pairs among them;
    /// `None` when every column travels.
    pub(super) fn unsynced(
        &self,
        pair: &PairPlan,
        explained: &BTreeSet<(Side, String)>,
    ) -> Option<String> {
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
