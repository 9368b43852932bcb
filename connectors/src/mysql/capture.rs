//! Reading, deleting and counting change rows in `tandem_changes`, and
//! waiting for more (MySQL cannot notify: we poll).

use std::time::Duration;

use mysql_async::Value as MyValue;

use super::client::{int_of, text_of, Client, SQL};
use super::types::from_mysql;
use crate::connector::CapturedChange;
use crate::error::{ConnectorError, Result};
use crate::schema::{DataType, TableName};

/// Most sequence numbers deleted by one statement.
const DELETE_CHUNK: usize = 1_000;

/// `?, ?, ?` for `n` parameters.
pub fn placeholders(n: usize) -> String {
    SQL.params(1, n)
}

fn table_params(tables: &[TableName]) -> Vec<MyValue> {
    tables
        .iter()
        .map(|t| MyValue::from(t.to_string()))
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
    params.push(MyValue::UInt(limit as u64));
    let rows = client
        .rows(&sql, params)
        .await
        .map_err(|e| e.context("read tandem_changes"))?;
    rows.into_iter().map(change_of).collect()
}

fn change_of(row: Vec<MyValue>) -> Result<CapturedChange> {
    let [seq, table, op, pk, captured_at]: [MyValue; 5] = row
        .try_into()
        .map_err(|_| ConnectorError::internal("tandem_changes row has the wrong shape"))?;
    let seq = int_of(&seq)
        .ok_or_else(|| ConnectorError::internal(format!("bad change sequence {seq:?}")))?;
    CapturedChange::from_parts(
        seq,
        text_of(&table),
        &text_of(&op),
        &text_of(&pk),
        from_mysql(DataType::TimestampTz, captured_at).ok(),
    )
}

/// Deletes exactly the change rows with these sequence numbers.
pub async fn delete_changes(client: &Client, seqs: &[i64]) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let mut conn = client.conn().await?;
    for chunk in seqs.chunks(DELETE_CHUNK) {
        let sql = SQL.delete_changes_sql(chunk.len());
        let params = chunk.iter().map(|s| MyValue::Int(*s)).collect();
        super::client::exec_drop(&mut conn, &sql, params)
            .await
            .map_err(|e| e.context("delete from tandem_changes"))?;
    }
    Ok(())
}

/// Change rows waiting per table, for the tables that have some.
pub async fn count_changes(client: &Client, tables: &[TableName]) -> Result<Vec<(String, u64)>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let sql = SQL.count_changes_sql(tables.len());
    let rows = client
        .rows(&sql, table_params(tables))
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
            MyValue::Int(7),
            MyValue::Bytes(b"Orders".to_vec()),
            MyValue::Bytes(b"D".to_vec()),
            MyValue::Bytes(br#"[1, "a"]"#.to_vec()),
            MyValue::Date(2024, 1, 2, 3, 4, 5, 6),
        ])
        .unwrap();
        assert_eq!(change.seq, 7);
        assert_eq!(change.table, "Orders");
        assert_eq!(change.op, ChangeOp::Delete);
        assert_eq!(change.key, serde_json::json!([1, "a"]));
        assert_eq!(
            change.captured_at.to_rfc3339(),
            "2024-01-02T03:04:05.000006+00:00"
        );
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
