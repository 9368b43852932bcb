//! The configured tables, found in each side's catalog: a name matches as
//! `[sync] names` says (exactly, or equal after folding case and dropping
//! `_`, `-` and spaces), and a name that matches nothing is a problem that
//! names the closest table there is. Every table is looked for; a table
//! that is missing does not hide the others.

use std::collections::HashMap;

use tandem_connectors::{Connector, ConnectorError, ErrorKind, TableName, TableSchema};

use crate::config::{Config, Side};
use crate::mapping::names::{self, Miss, NameMatching};
use crate::mapping::plan::{LookupTables, PlanProblem};
use crate::mapping::RuleConfig;

/// The table of `listed` that `wanted` names: the same name, else (when
/// folding) the only one whose schema and name fold alike.
pub fn resolve(
    wanted: &TableName,
    listed: &[TableName],
    matching: NameMatching,
) -> Result<TableName, Miss> {
    if let Some(exact) = listed.iter().find(|t| *t == wanted) {
        return Ok(exact.clone());
    }
    let same_schema: Vec<&TableName> = listed
        .iter()
        .filter(|t| match (&t.schema, &wanted.schema) {
            (Some(a), Some(b)) => matching.same(a, b),
            (a, b) => a == b,
        })
        .collect();
    match names::find(
        &wanted.name,
        same_schema.iter().map(|t| t.name.as_str()),
        matching,
    ) {
        Ok(name) => Ok(same_schema
            .iter()
            .find(|t| t.name == name)
            .map(|t| (*t).clone())
            .expect("found among them")),
        Err(Miss::Unknown(None)) => {
            // Perhaps it is in another schema.
            let closest = names::closest(&wanted.name, listed.iter().map(|t| t.name.as_str()));
            Err(Miss::Unknown(closest.and_then(|name| {
                listed
                    .iter()
                    .find(|t| t.name == name)
                    .map(ToString::to_string)
            })))
        }
        Err(miss) => Err(miss),
    }
}

/// Finds and describes the table `configured` names on a side whose
/// tables are `listed`: `Ok(None)` with a problem when there is no such
/// table. `what` says whose table it is in messages ("pair orders: source
/// table"). Errors of the connection are returned.
async fn find(
    connector: &dyn Connector,
    listed: &[TableName],
    configured: &str,
    matching: NameMatching,
    what: &str,
    problems: &mut Vec<PlanProblem>,
) -> Result<Option<TableSchema>, ConnectorError> {
    let wanted = connector.table_name(configured);
    let name = match resolve(&wanted, listed, matching) {
        Ok(name) => name,
        Err(miss) => {
            // The engine may know it by rules of its own (names that
            // compare without case on SQLite, or by a collation).
            if matches!(miss, Miss::Unknown(_)) {
                if let Ok(schema) = connector.describe(&wanted).await {
                    return Ok(Some(schema));
                }
            }
            problems.push(PlanProblem::error(format!(
                "{what} {wanted} does not exist{}",
                miss.hint()
            )));
            return Ok(None);
        }
    };
    match connector.describe(&name).await {
        Ok(schema) => Ok(Some(schema)),
        // Dropped between the listing and now, or not readable.
        Err(e) if e.kind() == ErrorKind::Schema => {
            problems.push(PlanProblem::error(format!("{what} {name}: {e}")));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The pairs' tables on `side`, in config order (`None` where a table is
/// missing, with a problem naming it), and the extra tables lookups read
/// and rows are split into on that side.
pub async fn describe_side(
    config: &Config,
    side: Side,
    connector: &dyn Connector,
    problems: &mut Vec<PlanProblem>,
) -> Result<(Vec<Option<TableSchema>>, LookupTables), ConnectorError> {
    let listed = connector.list_tables().await?;
    let mut tables = Vec::new();
    for pair in &config.tables {
        let what = format!("pair {}: {side} table", pair.name);
        tables.push(
            find(
                connector,
                &listed,
                pair.table(side),
                config.names,
                &what,
                problems,
            )
            .await?,
        );
    }
    let mut extra = LookupTables::new();
    for (table, what) in extra_tables(config, side) {
        if extra.contains_key(&(side, table.clone())) {
            continue;
        }
        if let Some(schema) =
            find(connector, &listed, &table, config.names, &what, problems).await?
        {
            extra.insert((side, table), schema);
        }
    }
    Ok((tables, extra))
}

/// The tables of `side` beyond the pairs' own, as configured: reference
/// tables lookups read and extra tables rows are split into, with what
/// each is for.
fn extra_tables(config: &Config, side: Side) -> Vec<(String, String)> {
    let mut wanted = Vec::new();
    for pair in &config.tables {
        for direction in &pair.directions {
            for (column, rule) in &direction.columns {
                if let RuleConfig::Lookup(lookup) = rule {
                    if lookup.side == side {
                        wanted.push((
                            lookup.table.clone(),
                            format!("pair {}: column {column}: lookup table", pair.name),
                        ));
                    }
                }
            }
        }
        for split in pair.splits.iter().filter(|s| s.side == side) {
            wanted.push((
                split.table.clone(),
                format!("pair {}: split table", pair.name),
            ));
        }
    }
    wanted
}

/// Two pairs that name one table of a side (after matching): a problem
/// each.
pub fn shared_tables(
    config: &Config,
    side: Side,
    tables: &[Option<TableSchema>],
    problems: &mut Vec<PlanProblem>,
) {
    let mut seen: HashMap<&TableName, &str> = HashMap::new();
    for (pair, table) in config.tables.iter().zip(tables) {
        let Some(table) = table else { continue };
        if let Some(other) = seen.insert(&table.name, &pair.name) {
            problems.push(PlanProblem::error(format!(
                "pairs {other} and {} both name {side} table {}",
                pair.name, table.name
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: Option<&str>, name: &str) -> TableName {
        TableName::new(schema, name)
    }

    #[test]
    fn tables_are_found_by_folded_name_in_their_schema() {
        let listed = [
            table(Some("public"), "order_line"),
            table(Some("public"), "customer"),
            table(Some("sales"), "invoice"),
        ];
        let fold = NameMatching::Fold;
        assert_eq!(
            resolve(&table(Some("public"), "OrderLine"), &listed, fold),
            Ok(table(Some("public"), "order_line"))
        );
        assert_eq!(
            resolve(
                &table(Some("public"), "OrderLine"),
                &listed,
                NameMatching::Exact
            ),
            Err(Miss::Unknown(Some("order_line".into())))
        );
        assert_eq!(
            resolve(&table(Some("public"), "Invoice"), &listed, fold),
            Err(Miss::Unknown(Some("sales.invoice".into())))
        );
        assert_eq!(
            resolve(&table(None, "Customers"), &[table(None, "Customer")], fold),
            Err(Miss::Unknown(Some("Customer".into())))
        );
        assert_eq!(
            resolve(&table(Some("Sales"), "Invoice"), &listed, fold),
            Ok(table(Some("sales"), "invoice")),
            "schemas fold too"
        );
    }
}
