//! Lookups read reference tables (countries, currencies, statuses): small
//! tables read whole and kept for a short while, so that mapping a row
//! costs no round trip.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tandem_connectors::{Connector, ConnectorError, TableSchema, Value};

use crate::config::Side;

/// How long a reference table is kept before it is read again.
pub const LOOKUP_REFRESH: Duration = Duration::from_secs(10);

/// Rows read per round trip when loading a reference table.
const PAGE: usize = 5000;

/// One loaded reference table: match column's text -> value column.
struct Loaded {
    at: Instant,
    values: HashMap<String, Value>,
}

/// Reference tables by (side, table, match column, value column).
#[derive(Default)]
pub struct LookupCache {
    tables: HashMap<(Side, String, String, String), Loaded>,
}

impl LookupCache {
    /// Makes sure the table is loaded and fresh.
    pub async fn load(
        &mut self,
        side: Side,
        connector: &dyn Connector,
        table: &TableSchema,
        match_column: &str,
        value_column: &str,
    ) -> Result<(), ConnectorError> {
        let key = (
            side,
            table.name.to_string(),
            match_column.to_owned(),
            value_column.to_owned(),
        );
        if self
            .tables
            .get(&key)
            .is_some_and(|l| l.at.elapsed() < LOOKUP_REFRESH)
        {
            return Ok(());
        }
        let mut values = HashMap::new();
        let mut after = None;
        loop {
            let rows = connector.scan(table, after.as_ref(), PAGE).await?;
            let done = rows.len() < PAGE;
            for row in rows {
                after = table.key_of(&row);
                if let (Some(m), Some(v)) = (row.get(match_column), row.get(value_column)) {
                    if !m.is_null() {
                        values.entry(m.to_string()).or_insert_with(|| v.clone());
                    }
                }
            }
            if done {
                break;
            }
        }
        self.tables.insert(
            key,
            Loaded {
                at: Instant::now(),
                values,
            },
        );
        Ok(())
    }

    /// The value for `matched`, from a table loaded before; `None` when no
    /// row matches.
    pub fn get(
        &self,
        side: Side,
        table: &str,
        match_column: &str,
        value_column: &str,
        matched: &Value,
    ) -> Option<Value> {
        self.tables
            .get(&(
                side,
                table.to_owned(),
                match_column.to_owned(),
                value_column.to_owned(),
            ))?
            .values
            .get(&matched.to_string())
            .cloned()
    }
}
