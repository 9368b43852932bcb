//! Reading, deleting and counting change rows in `tandem_changes`, and
//! waiting for more (SQLite cannot notify another process: we poll).
//!
//! SQLite has one writer at a time and readers see only committed
//! transactions, so a change row never appears behind one already read;
//! rows are still consumed by identity, as on every engine.

use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::TransactionBehavior;

use super::client::{int_of, text_of, Client, SQL};
use super::types::from_sqlite;
use crate::connector::CapturedChange;
use crate::error::{ConnectorError, Result};
use crate::schema::{DataType, TableName};

/// Most sequence numbers deleted by one statement.
const DELETE_CHUNK: usize = 1_000;

/// `?, ?, ?` for `n` parameters.
pub fn placeholders(n: usize) -> String {
    SQL.params(1, n)
}

fn table_params(tables: &[TableName]) -> Vec<SqlValue> {
    tables
        .iter()
        .map(|t| SqlValue::Text(t.to_string()))
        .collect()
}

/// Up to `limit` change rows of `tables`, lowest sequence first.
pub async fn read_changes(
    client: &Client,
    tables: &[TableName],
    limit: usize,
) -> Result<Vec<CapturedChange>> {
    if tables.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let sql = SQL.read_changes_sql(tables.len());
    let mut params = table_params(tables);
    params.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    let rows = client
        .rows(sql, params)
        .await
        .map_err(|e| e.context("read tandem_changes"))?;
    rows.into_iter().map(change_of).collect()
}

fn change_of(row: Vec<SqlValue>) -> Result<CapturedChange> {
    let [seq, table, op, pk, captured_at]: [SqlValue; 5] = row
        .try_into()
        .map_err(|_| ConnectorError::internal("tandem_changes row has the wrong shape"))?;
    let seq = int_of(&seq)
        .ok_or_else(|| ConnectorError::internal(format!("bad change sequence {seq:?}")))?;
    // strftime('%Y-%m-%d %H:%M:%f', 'now'): UTC, without an offset.
    CapturedChange::from_parts(
        seq,
        text_of(&table),
        &text_of(&op),
        &text_of(&pk),
        from_sqlite(DataType::TimestampTz, captured_at).ok(),
    )
}

/// Deletes exactly the change rows with these sequence numbers, in one
/// transaction.
pub async fn delete_changes(client: &Client, seqs: &[i64]) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let seqs = seqs.to_vec();
    client
        .run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(super::client::classify)?;
            for chunk in seqs.chunks(DELETE_CHUNK) {
                let sql = SQL.delete_changes_sql(chunk.len());
                let params: Vec<SqlValue> = chunk.iter().map(|s| SqlValue::Integer(*s)).collect();
                super::client::execute(&tx, &sql, &params)?;
            }
            tx.commit().map_err(super::client::classify)
        })
        .await
        .map_err(|e| e.context("delete from tandem_changes"))
}

/// Change rows waiting per table, for the tables that have some.
pub async fn count_changes(client: &Client, tables: &[TableName]) -> Result<Vec<(String, u64)>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let sql = SQL.count_changes_sql(tables.len());
    let rows = client
        .rows(sql, table_params(tables))
        .await
        .map_err(|e| e.context("count tandem_changes"))?;
    Ok(rows
        .iter()
        .map(|r| (text_of(&r[0]), int_of(&r[1]).unwrap_or(0).max(0) as u64))
        .collect())
}

/// Sleeps for the poll interval or `timeout`, whichever is shorter.
pub async fn wait_for_changes(client: &Client, timeout: Duration) {
    tokio::time::sleep(timeout.min(client.poll_interval)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChangeOp;

    #[test]
    fn change_rows_are_decoded() {
        let change = change_of(vec![
            SqlValue::Integer(7),
            SqlValue::Text("Orders".into()),
            SqlValue::Text("D".into()),
            SqlValue::Text(r#"[1,"a"]"#.into()),
            SqlValue::Text("2024-01-02 03:04:05.006".into()),
        ])
        .unwrap();
        assert_eq!(change.seq, 7);
        assert_eq!(change.table, "Orders");
        assert_eq!(change.op, ChangeOp::Delete);
        assert_eq!(change.key, serde_json::json!([1, "a"]));
        assert_eq!(
            change.captured_at.to_rfc3339(),
            "2024-01-02T03:04:05.006+00:00"
        );
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
