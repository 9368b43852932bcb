//! What to sync: each table pair's schemas on both sides and how a record of
//! one side becomes a record of the other.
//!
//! Columns with the same name map to each other. Foreign keys between
//! configured tables are relations: their values are keys of the referenced
//! pair and are translated through the ID map.

use std::collections::{BTreeSet, HashMap};

use tandem_connectors::{Key, Row, TableName, TableSchema, Value};

use crate::config::{Side, TablePairConfig};
use crate::state::State;
use crate::store::StoreResult;

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

/// How records travel in one direction.
#[derive(Debug, Clone)]
pub struct DirectionMap {
    /// Plain columns: (from, to).
    pub columns: Vec<(String, String)>,
    /// Foreign keys translated through the ID map.
    pub relations: Vec<Relation>,
    /// How a new copy gets its key.
    pub key_mode: KeyMode,
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
}

/// A problem found while planning; one line naming pair, side and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    /// The message.
    pub message: String,
    /// Whether sync can still run (a warning) or not.
    pub fatal: bool,
}

impl Plan {
    /// Plans the configured pairs from their described tables.
    pub fn build(
        configs: &[TablePairConfig],
        tables: Vec<[TableSchema; 2]>,
    ) -> (Plan, Vec<PlanProblem>) {
        let mut problems = Vec::new();
        let index: [HashMap<TableName, usize>; 2] = [0, 1].map(|side| {
            tables
                .iter()
                .enumerate()
                .map(|(i, t)| (t[side].name.clone(), i))
                .collect()
        });
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
            }
            let directions = [Side::Source, Side::Target]
                .map(|origin| direction(config, &tables, schemas, origin, &index, &mut problems));
            pairs.push(PairPlan {
                name: config.name.clone(),
                tables: schemas.clone(),
                directions,
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
        (Plan { pairs: ordered }, problems)
    }

    /// Maps `row`, which comes from `origin`, for the other side of `pair`.
    pub fn map_row(
        &self,
        pair: usize,
        origin: Side,
        row: &Row,
        state: &State,
    ) -> StoreResult<Mapped> {
        let plan = &self.pairs[pair];
        let direction = &plan.directions[origin.index()];
        let mut out = Row::new();
        for (from, to) in &direction.columns {
            if let Some(value) = row.get(from) {
                out.insert(to.clone(), value.clone());
            }
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

fn direction(
    config: &TablePairConfig,
    all: &[[TableSchema; 2]],
    schemas: &[TableSchema; 2],
    origin: Side,
    index: &[HashMap<TableName, usize>; 2],
    problems: &mut Vec<PlanProblem>,
) -> DirectionMap {
    let from = &schemas[origin.index()];
    let dest_side = origin.other();
    let to = &schemas[dest_side.index()];
    // Relations declared on either side, keyed by the written columns.
    let mut relations: Vec<Relation> = Vec::new();
    for (side, table) in [(origin, from), (dest_side, to)] {
        for fk in &table.foreign_keys {
            let Some(&pair) = index[side.index()].get(&fk.referenced_table) else {
                continue;
            };
            // Links are keyed by primary key: only a reference to the whole
            // key can be translated, and its columns are taken in key order.
            let referenced = &all[pair][side.index()];
            let columns: Option<Vec<String>> = referenced
                .primary_key
                .iter()
                .map(|k| {
                    let i = fk.referenced_columns.iter().position(|c| c == k)?;
                    fk.columns.get(i).cloned()
                })
                .collect();
            let Some(columns) = columns.filter(|c| c.len() == fk.columns.len()) else {
                problems.push(PlanProblem {
                    message: format!(
                        "pair {}: foreign key ({}) of {side} table {} references ({}), not the primary key of {}; \
                         its values are copied as they are, not translated",
                        config.name,
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
                .any(|c| from.column(c).is_none() || to.column(c).is_none())
            {
                problems.push(PlanProblem {
                    message: format!(
                        "pair {}: foreign key ({}) of {side} table {} has no same-named columns on the other side; \
                         it is not synced as a relation",
                        config.name,
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
    let columns = to
        .columns
        .iter()
        .filter(|c| !c.always_generated)
        .filter(|c| !(key_mode == KeyMode::Generated && to.primary_key.contains(&c.name)))
        .filter(|c| !related.contains(c.name.as_str()))
        .filter(|c| from.column(&c.name).is_some())
        .map(|c| (c.name.clone(), c.name.clone()))
        .collect();
    DirectionMap {
        columns,
        relations,
        key_mode,
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
        Column {
            name: name.into(),
            data_type: DataType::Int,
            native_type: "bigint".into(),
            nullable,
            generated,
            always_generated: false,
        }
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
        }
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
        let (plan, problems) = Plan::build(
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
        assert_eq!(orders.columns, [("qty".to_string(), "qty".to_string())]);
        assert_eq!(orders.relations[0].pair, 0);

        let state = State::in_memory();
        let row: Row = [
            ("id".into(), Value::Int(5)),
            ("customer_id".into(), Value::Int(7)),
            ("qty".into(), Value::Int(2)),
        ]
        .into();
        assert!(matches!(
            plan.map_row(1, Side::Source, &row, &state).unwrap(),
            Mapped::Waiting(_)
        ));
        let mut batch = crate::state::StateBatch::default();
        batch.put_link(
            "customers",
            &crate::state::Link::new(Key(vec![Value::Int(7)]), Key(vec![Value::Int(70)])),
        );
        state.commit(batch, false).unwrap();
        let Mapped::Complete(mapped) = plan.map_row(1, Side::Source, &row, &state).unwrap() else {
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
        let (plan, _) = Plan::build(
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
            plan.map_row(0, Side::Target, &row, &State::in_memory())
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
        let (plan, problems) = Plan::build(
            &[pair("customers"), pair("orders")],
            vec![[customers.clone(), customers], [orders.clone(), orders]],
        );
        assert!(plan.pairs[1].directions[0].relations.is_empty());
        assert!(plan.pairs[1].directions[0]
            .columns
            .contains(&("customer_number".to_string(), "customer_number".to_string())));
        assert!(
            problems
                .iter()
                .any(|p| !p.fatal && p.message.contains("not the primary key of customers")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_table_without_key_is_fatal() {
        let t = table("log", vec![column("msg", false, true)], &[], vec![]);
        let (_, problems) = Plan::build(&[pair("log")], vec![[t.clone(), t]]);
        assert!(
            problems
                .iter()
                .any(|p| p.fatal && p.message.contains("log has no primary key")),
            "{problems:?}"
        );
    }
}
