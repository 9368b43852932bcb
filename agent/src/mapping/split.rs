//! Data splitting: one side's row written as a row of the pair's table plus
//! shared rows of extra tables (found by natural key, created when missing),
//! and joined back the other way.
//!
//! A row of the split side always travels joined: the extra tables' values
//! ride along as columns named `table.column`, so a change to a shared row
//! (a company renamed) changes the joined rows that reference it, and their
//! fingerprints.

use std::collections::HashMap;

use tandem_connectors::{Connector, ConnectorError, Key, Row, Transaction, Value};

use super::plan::{MapError, PairPlan, SplitPlan, ValueSource};
use crate::config::Side;
use crate::mapping::expr::fit;

/// Extra rows found or created within one applying transaction, by split
/// table and natural key: rows with the same key share one record.
#[derive(Default)]
pub struct SplitCache {
    keys: HashMap<(String, String), Value>,
}

fn splits_on(pair: &PairPlan, side: Side) -> impl Iterator<Item = &SplitPlan> {
    pair.splits.iter().filter(move |s| s.side == side)
}

/// Whether rows written to `side` of `pair` are split into extra tables.
pub fn splits_into(pair: &PairPlan, side: Side) -> bool {
    splits_on(pair, side).next().is_some()
}

fn attach(split: &SplitPlan, row: &mut Row, extra: Option<&Row>) {
    for column in &split.table.columns {
        let value = extra
            .and_then(|r| r.get(&column.name))
            .cloned()
            .unwrap_or(Value::Null);
        row.insert(split.joined(&column.name), value);
    }
}

/// Joins the extra tables onto rows of `pair`'s table on `side`.
pub async fn join_rows(
    pair: &PairPlan,
    side: Side,
    connector: &dyn Connector,
    rows: &mut [Row],
) -> Result<(), ConnectorError> {
    for split in splits_on(pair, side) {
        let mut keys: Vec<Key> = Vec::new();
        for row in rows.iter() {
            if let Some(value) = row.get(&split.reference).filter(|v| !v.is_null()) {
                let key = Key(vec![value.clone()]);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        let found: HashMap<String, Row> = connector
            .fetch_rows(&split.table, &keys)
            .await?
            .into_iter()
            .filter_map(|r| split.table.key_of(&r).map(|k| (k.encode(), r)))
            .collect();
        for row in rows.iter_mut() {
            let extra = row
                .get(&split.reference)
                .and_then(|v| found.get(&Key(vec![v.clone()]).encode()))
                .cloned();
            attach(split, row, extra.as_ref());
        }
    }
    Ok(())
}

/// Joins the extra tables onto one row, read inside `tx` (which sees what
/// the transaction itself created).
pub async fn join_row_in(
    pair: &PairPlan,
    side: Side,
    tx: &mut dyn Transaction,
    row: &mut Row,
) -> Result<(), ConnectorError> {
    for split in splits_on(pair, side) {
        let extra = match row.get(&split.reference).filter(|v| !v.is_null()) {
            Some(value) => {
                tx.fetch_for_update(&split.table, &Key(vec![value.clone()]))
                    .await?
            }
            None => None,
        };
        attach(split, row, extra.as_ref());
    }
    Ok(())
}

/// The extra rows a row from the other side splits into, mapped but not
/// written: (split, values), one per split of `dest`.
pub fn split_rows<'p>(
    pair: &'p PairPlan,
    dest: Side,
    origin_row: &Row,
) -> Result<Vec<(&'p SplitPlan, Row)>, MapError> {
    let mut out = Vec::new();
    for split in splits_on(pair, dest) {
        let mut values = Row::new();
        for column in &split.columns {
            let value = match &column.source {
                ValueSource::Column(from) => origin_row.get(from).cloned().unwrap_or(Value::Null),
                ValueSource::Expression(e) => e.evaluate(origin_row).map_err(MapError::Row)?,
                ValueSource::Constant(v) => v.clone(),
                ValueSource::Lookup { .. } => continue,
            };
            let value = fit(value, column.data_type)
                .map_err(|e| MapError::Row(format!("{}: {e}", split.joined(&column.to))))?;
            values.insert(column.to.clone(), value);
        }
        out.push((split, values));
    }
    Ok(out)
}

/// Finds (or creates) the extra row with the natural key of `values` and
/// returns the value its reference column gets: NULL when the natural key
/// is incomplete. An existing row takes the new values of its other columns.
pub async fn resolve(
    split: &SplitPlan,
    values: &Row,
    connector: &dyn Connector,
    tx: &mut dyn Transaction,
    cache: &mut SplitCache,
) -> Result<Value, ConnectorError> {
    let natural: Vec<Value> = split
        .key
        .iter()
        .map(|k| values.get(k).cloned().unwrap_or(Value::Null))
        .collect();
    if natural.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let cache_key = (split.table.name.to_string(), Key(natural.clone()).encode());
    if let Some(value) = cache.keys.get(&cache_key) {
        return Ok(value.clone());
    }
    let existing = connector
        .find_rows(&split.table, &split.key, &natural)
        .await?
        .into_iter()
        .next();
    let key = match existing {
        Some(row) => {
            let key = split.table.key_of(&row).ok_or_else(|| {
                ConnectorError::internal(format!("a row of {} has no key", split.table.name))
            })?;
            if values
                .iter()
                .any(|(column, value)| row.get(column) != Some(value))
            {
                tx.update(&split.table, &key, values).await?;
            }
            key
        }
        None => tx.insert(&split.table, values).await?,
    };
    let value = key.0.into_iter().next().unwrap_or(Value::Null);
    cache.keys.insert(cache_key, value.clone());
    Ok(value)
}
