//! Reading, deleting and counting change rows in `tandem.changes`, and
//! waiting for more (SQL Server cannot notify us: we poll).
//!
//! Reads skip rows still locked by an uncommitted writer (`READPAST`)
//! instead of waiting for it: such a row becomes visible on a later read,
//! which the contract allows (sequence order is not commit order).

use std::time::Duration;

use tiberius::ColumnData;

use super::client::{display_name, Client, Param, SQL};
use super::types::from_sql;
use crate::connector::CapturedChange;
use crate::error::{ConnectorError, Result};
use crate::schema::{DataType, TableName};

/// Most sequence numbers deleted by one statement (SQL Server takes at most
/// 2100 parameters).
const DELETE_CHUNK: usize = 2_000;

/// `@P{first}, @P{first + 1}, ...`, `count` of them.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    SQL.params(first, count)
}

fn table_params(tables: &[TableName]) -> Vec<Param> {
    tables
        .iter()
        .map(|t| Param(ColumnData::String(Some(display_name(t).into()))))
        .collect()
}

/// The statement reading up to `@P1` change rows of `tables` tables.
pub(crate) fn read_changes_sql(tables: usize) -> String {
    format!(
        "SELECT TOP (@P1) seq, table_name, op, pk, captured_at \
         FROM tandem.changes WITH (READPAST) \
         WHERE table_name IN ({}) ORDER BY seq",
        placeholders(2, tables)
    )
}

/// The statement counting the change rows of `tables` tables.
pub(crate) fn count_changes_sql(tables: usize) -> String {
    format!(
        "SELECT table_name, COUNT_BIG(*) FROM tandem.changes WITH (READPAST) \
         WHERE table_name IN ({}) GROUP BY table_name ORDER BY table_name",
        placeholders(1, tables)
    )
}

/// The statement deleting `count` change rows by sequence number.
pub(crate) fn delete_changes_sql(count: usize) -> String {
    SQL.delete_changes_sql(count)
}

/// Up to `limit` change rows of `tables`, lowest sequence first.
pub(crate) async fn read_changes(
    client: &Client,
    tables: &[TableName],
    limit: usize,
) -> Result<Vec<CapturedChange>> {
    if tables.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let mut params = vec![Param(ColumnData::I64(Some(
        i64::try_from(limit).unwrap_or(i64::MAX),
    )))];
    params.extend(table_params(tables));
    let rows = client
        .rows(&read_changes_sql(tables.len()), params)
        .await
        .map_err(|e| e.context("cannot read tandem.changes"))?;
    rows.into_iter()
        .map(|row| change_of(row.into_iter().collect()))
        .collect()
}

/// One change row from its cells (seq, table_name, op, pk, captured_at).
pub(crate) fn change_of(cells: Vec<ColumnData<'static>>) -> Result<CapturedChange> {
    let [seq, table, op, pk, captured_at]: [ColumnData<'static>; 5] = cells
        .try_into()
        .map_err(|_| ConnectorError::internal("tandem.changes row has the wrong shape"))?;
    let seq = match seq {
        ColumnData::I64(Some(seq)) => seq,
        other => {
            return Err(ConnectorError::internal(format!(
                "bad change sequence {other:?}"
            )))
        }
    };
    let text = |data: ColumnData<'static>, what: &str| match data {
        ColumnData::String(Some(s)) => Ok(s.into_owned()),
        other => Err(ConnectorError::internal(format!(
            "change {seq} has an unreadable {what}: {other:?}"
        ))),
    };
    CapturedChange::from_parts(
        seq,
        text(table, "table name")?,
        text(op, "operation")?.trim(),
        &text(pk, "key")?,
        from_sql(DataType::TimestampTz, captured_at).ok(),
    )
}

/// Deletes exactly the change rows with these sequence numbers.
pub(crate) async fn delete_changes(client: &Client, seqs: &[i64]) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let mut conn = client.conn().await?;
    for chunk in seqs.chunks(DELETE_CHUNK) {
        let params = chunk
            .iter()
            .map(|s| Param(ColumnData::I64(Some(*s))))
            .collect();
        super::client::query_rows(&mut conn, &delete_changes_sql(chunk.len()), params)
            .await
            .map_err(|e| super::client::classify(e).context("cannot delete from tandem.changes"))?;
    }
    Ok(())
}

/// Change rows waiting per table, for the tables that have some.
pub(crate) async fn count_changes(
    client: &Client,
    tables: &[TableName],
) -> Result<Vec<(String, u64)>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .rows(&count_changes_sql(tables.len()), table_params(tables))
        .await
        .map_err(|e| e.context("cannot count tandem.changes"))?;
    let mut counts: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            let table: Option<&str> = r.get(0);
            let count: Option<i64> = r.get(1);
            (
                table.unwrap_or_default().to_owned(),
                u64::try_from(count.unwrap_or(0)).unwrap_or(0),
            )
        })
        .collect();
    // In byte order, whatever the database's collation sorts by.
    counts.sort();
    Ok(counts)
}

/// Sleeps for the poll interval or `timeout`, whichever is shorter.
pub(crate) async fn wait_for_changes(client: &Client, timeout: Duration) {
    tokio::time::sleep(timeout.min(client.poll_interval)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChangeOp;
    use chrono::NaiveDate;
    use tiberius::IntoSql;

    #[test]
    fn change_statements_are_parameterized() {
        assert_eq!(placeholders(2, 3), "@P2, @P3, @P4");
        assert_eq!(
            read_changes_sql(2),
            "SELECT TOP (@P1) seq, table_name, op, pk, captured_at \
             FROM tandem.changes WITH (READPAST) \
             WHERE table_name IN (@P2, @P3) ORDER BY seq"
        );
        assert_eq!(
            count_changes_sql(1),
            "SELECT table_name, COUNT_BIG(*) FROM tandem.changes WITH (READPAST) \
             WHERE table_name IN (@P1) GROUP BY table_name ORDER BY table_name"
        );
        assert_eq!(
            delete_changes_sql(3),
            "DELETE FROM tandem.changes WHERE seq IN (@P1, @P2, @P3)"
        );
        let names = table_params(&[
            TableName::new(None, "t"),
            TableName::new(Some("Sa]es"), "we]ird ü"),
        ]);
        assert_eq!(
            names,
            vec![
                Param(ColumnData::String(Some("dbo.t".into()))),
                Param(ColumnData::String(Some("Sa]es.we]ird ü".into()))),
            ]
        );
    }

    #[test]
    fn change_rows_are_decoded() {
        let at = NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_micro_opt(3, 4, 5, 6)
            .unwrap();
        let change = change_of(vec![
            ColumnData::I64(Some(7)),
            ColumnData::String(Some("dbo.Orders".into())),
            ColumnData::String(Some("D".into())),
            ColumnData::String(Some(r#"[1,"a"]"#.into())),
            at.into_sql(),
        ])
        .unwrap();
        assert_eq!(change.seq, 7);
        assert_eq!(change.table, "dbo.Orders");
        assert_eq!(change.op, ChangeOp::Delete);
        assert_eq!(change.key, serde_json::json!([1, "a"]));
        assert_eq!(
            change.captured_at.to_rfc3339(),
            "2024-01-02T03:04:05.000006+00:00"
        );
        let bad = change_of(vec![ColumnData::I64(Some(1))]).unwrap_err();
        assert_eq!(bad.kind(), crate::ErrorKind::Internal);
        let bad_key = change_of(vec![
            ColumnData::I64(Some(8)),
            ColumnData::String(Some("dbo.t".into())),
            ColumnData::String(Some("I".into())),
            ColumnData::String(Some("[1".into())),
            at.into_sql(),
        ])
        .unwrap_err();
        assert!(bad_key.to_string().contains("change 8"), "{bad_key}");
    }
}
