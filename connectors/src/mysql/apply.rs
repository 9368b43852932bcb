//! The applying [`Transaction`], and the SQL that reads and writes rows by
//! key (also used by `fetch_rows` and `scan`).
//!
//! The session is marked with `@tandem_applying = 1` before `START
//! TRANSACTION`; the capture triggers skip marked sessions. Commit and
//! rollback clear the marker; a connection whose state is in doubt (a failed
//! commit, a transaction dropped unfinished) is disconnected instead of going
//! back to the pool.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row as MyRow, Value as MyValue};

use super::capture::placeholders;
use super::client::{classify, quote_ident, Flavour};
use super::types::{from_mysql, normalize, read_value, write_value};
use crate::connector::{IdMapRow, Transaction};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::{Column, TableSchema};
use crate::value::{Key, Row, Value};

/// The one savepoint name (nesting is not needed).
const SAVEPOINT: &str = "tandem_sp";

/// `SELECT` list of every column of `table`, in catalog order.
fn select_list(table: &TableSchema) -> String {
    table
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_list(table: &TableSchema) -> String {
    table
        .primary_key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `` `k1` = ? AND `k2` = ? ``
fn key_match(table: &TableSchema) -> String {
    table
        .primary_key
        .iter()
        .map(|k| format!("{} = ?", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn no_key(table: &TableSchema) -> ConnectorError {
    ConnectorError::schema(format!("table {} has no primary key", table.name))
}

/// `SELECT` of every column of `table`, without a condition.
pub fn select_all_sql(table: &TableSchema) -> String {
    format!(
        "SELECT {} FROM {}",
        select_list(table),
        quote_ident(&table.name.name)
    )
}

/// Rows with any of `count` keys: `WHERE k IN (?, ?)` or
/// `WHERE (k1, k2) IN ((?, ?), (?, ?))`.
pub fn select_by_keys_sql(table: &TableSchema, count: usize) -> String {
    let width = table.primary_key.len();
    let condition = if width == 1 {
        format!("{} IN ({})", key_list(table), placeholders(count))
    } else {
        let tuple = format!("({})", placeholders(width));
        format!(
            "({}) IN ({})",
            key_list(table),
            vec![tuple; count].join(", ")
        )
    };
    format!(
        "SELECT {} FROM {} WHERE {condition}",
        select_list(table),
        quote_ident(&table.name.name)
    )
}

/// One page of a keyset scan, after a key or from the start.
pub fn scan_sql(table: &TableSchema, after: bool) -> String {
    let keys = key_list(table);
    let condition = if !after {
        String::new()
    } else if table.primary_key.len() == 1 {
        format!(" WHERE {keys} > ?")
    } else {
        format!(
            " WHERE ({keys}) > ({})",
            placeholders(table.primary_key.len())
        )
    };
    format!(
        "SELECT {} FROM {}{condition} ORDER BY {keys} LIMIT ?",
        select_list(table),
        quote_ident(&table.name.name)
    )
}

/// The row with one key, locked.
pub fn select_for_update_sql(table: &TableSchema) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} FOR UPDATE",
        select_list(table),
        quote_ident(&table.name.name),
        key_match(table)
    )
}

/// `INSERT` of `columns`, with `RETURNING` the key where asked (MariaDB).
pub fn insert_sql(table: &TableSchema, columns: &[&Column], returning: bool) -> String {
    let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote_ident(&table.name.name),
        names.join(", "),
        placeholders(columns.len())
    );
    if returning {
        sql.push_str(" RETURNING ");
        sql.push_str(&key_list(table));
    }
    sql
}

/// `UPDATE` of `columns` of the row with one key.
pub fn update_sql(table: &TableSchema, columns: &[&Column]) -> String {
    let sets: Vec<String> = columns
        .iter()
        .map(|c| format!("{} = ?", quote_ident(&c.name)))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE {}",
        quote_ident(&table.name.name),
        sets.join(", "),
        key_match(table)
    )
}

/// `DELETE` of the row with one key.
pub fn delete_sql(table: &TableSchema) -> String {
    format!(
        "DELETE FROM {} WHERE {}",
        quote_ident(&table.name.name),
        key_match(table)
    )
}

/// The parameters for one key, converted by the key columns' types.
pub fn key_params(table: &TableSchema, key: &Key) -> Result<Vec<MyValue>> {
    if table.primary_key.is_empty() {
        return Err(no_key(table));
    }
    if key.0.len() != table.primary_key.len() {
        return Err(ConnectorError::internal(format!(
            "key {key} has {} value(s) but table {} has {} key column(s)",
            key.0.len(),
            table.name,
            table.primary_key.len()
        )));
    }
    table
        .key_columns()
        .zip(&key.0)
        .map(|(column, value)| write_value(&table.name, column, value))
        .collect()
}

/// A row as read with [`select_list`], converted to canonical values.
pub fn row_of(table: &TableSchema, values: Vec<MyValue>) -> Result<Row> {
    table
        .columns
        .iter()
        .zip(values)
        .map(|(column, value)| Ok((column.name.clone(), read_value(&table.name, column, value)?)))
        .collect()
}

/// The columns of `row` to write, with their values converted; unknown
/// columns are a schema error; computed columns are never written.
fn written<'t>(
    table: &'t TableSchema,
    row: &Row,
    skip: impl Fn(&Column, &Value) -> bool,
) -> Result<(Vec<&'t Column>, Vec<MyValue>)> {
    let mut columns = Vec::new();
    let mut params = Vec::new();
    for (name, value) in row {
        let column = table.column(name).ok_or_else(|| {
            ConnectorError::schema(format!(
                "column `{name}` does not exist in table {}",
                table.name
            ))
        })?;
        if column.always_generated || skip(column, value) {
            continue;
        }
        params.push(write_value(&table.name, column, value)?);
        columns.push(column);
    }
    Ok((columns, params))
}

/// One applying transaction on its own connection.
pub struct MysqlTransaction {
    conn: Option<Conn>,
    flavour: Flavour,
    /// Set when the server ended the transaction under us (deadlock, lost
    /// connection): nothing more may run, or it would run outside it.
    aborted: Option<(ErrorKind, String)>,
}

impl MysqlTransaction {
    /// Takes a pooled connection, marks the session and starts the
    /// transaction.
    pub async fn begin(mut conn: Conn, flavour: Flavour) -> Result<MysqlTransaction> {
        let started = async {
            conn.query_drop("SET @tandem_applying = 1").await?;
            conn.query_drop("START TRANSACTION").await
        }
        .await;
        if let Err(e) = started {
            let _ = conn.disconnect().await;
            return Err(classify(e).context("begin an applying transaction"));
        }
        Ok(MysqlTransaction {
            conn: Some(conn),
            flavour,
            aborted: None,
        })
    }

    fn conn(&mut self) -> Result<&mut Conn> {
        if let Some((kind, why)) = &self.aborted {
            return Err(ConnectorError::new(
                *kind,
                format!("the transaction was ended by the server ({why}); roll it back"),
            ));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| ConnectorError::internal("transaction already finished"))
    }

    /// Classifies `err`, remembering whether it ended the transaction.
    fn fail(&mut self, err: mysql_async::Error) -> ConnectorError {
        let rolled_back = matches!(&err, mysql_async::Error::Server(s) if s.code == 1213);
        let err = classify(err);
        if rolled_back || err.kind() == ErrorKind::Connection {
            self.aborted = Some((err.kind(), err.to_string()));
        }
        err
    }

    async fn rows(&mut self, sql: &str, params: Vec<MyValue>) -> Result<Vec<Vec<MyValue>>> {
        let result: std::result::Result<Vec<MyRow>, _> = self.conn()?.exec(sql, params).await;
        match result {
            Ok(rows) => Ok(rows.into_iter().map(MyRow::unwrap).collect()),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn exec(&mut self, sql: &str, params: Vec<MyValue>) -> Result<u64> {
        let conn = self.conn()?;
        match conn.exec_drop(sql, params).await {
            Ok(()) => Ok(conn.affected_rows()),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn query(&mut self, sql: &str) -> Result<()> {
        match self.conn()?.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Runs `COMMIT` or `ROLLBACK`, clears the marker, and lets the
    /// connection go back to the pool only when both worked.
    async fn finish(mut self, sql: &str) -> Result<()> {
        let mut conn = self
            .conn
            .take()
            .ok_or_else(|| ConnectorError::internal("transaction already finished"))?;
        let outcome = match (&self.aborted, sql) {
            (Some((kind, why)), "COMMIT") => Err(ConnectorError::new(
                *kind,
                format!("cannot commit: the transaction was ended by the server ({why})"),
            )),
            _ => conn.query_drop(sql).await.map_err(classify),
        };
        let clean = outcome.is_ok() && conn.query_drop("SET @tandem_applying = NULL").await.is_ok();
        if !clean {
            let _ = conn.disconnect().await;
        }
        outcome.map_err(|e| e.context(sql.to_lowercase()))
    }

    async fn insert_row(&mut self, table: &TableSchema, row: &Row) -> Result<Key> {
        let key_in_row = table.key_of(row).filter(|k| !k.has_null());
        // Without a full key, NULL key values are left to the engine.
        let (columns, params) = written(table, row, |column, value| {
            key_in_row.is_none() && value.is_null() && table.primary_key.contains(&column.name)
        })?;
        if let Some(key) = key_in_row {
            self.exec(&insert_sql(table, &columns, false), params)
                .await?;
            return table
                .key_columns()
                .zip(&key.0)
                .map(|(c, v)| {
                    normalize(c.data_type, v).map_err(|why| {
                        ConnectorError::data(format!(
                            "key column `{}` of table {}: {why}",
                            c.name, table.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(Key);
        }
        if table.primary_key.is_empty() {
            return Err(no_key(table));
        }
        if self.flavour == Flavour::MariaDb {
            let rows = self
                .rows(&insert_sql(table, &columns, true), params)
                .await?;
            let values = rows.into_iter().next().ok_or_else(|| {
                ConnectorError::internal(format!("insert into {} returned no key", table.name))
            })?;
            return table
                .key_columns()
                .zip(values)
                .map(|(c, v)| read_value(&table.name, c, v))
                .collect::<Result<Vec<_>>>()
                .map(Key);
        }
        self.exec(&insert_sql(table, &columns, false), params)
            .await?;
        let id = self.conn()?.last_insert_id().filter(|id| *id != 0);
        match (table.key_columns().collect::<Vec<_>>().as_slice(), id) {
            ([column], Some(id)) => from_mysql(column.data_type, MyValue::UInt(id))
                .map(|v| Key(vec![v]))
                .map_err(|why| ConnectorError::internal(format!("generated key of {}: {why}", table.name))),
            _ => Err(ConnectorError::schema(format!(
                "cannot learn the key of a row inserted into {}: the row holds no key and the key is not a single AUTO_INCREMENT column",
                table.name
            ))),
        }
    }
}

impl Drop for MysqlTransaction {
    fn drop(&mut self) {
        // Dropped without commit or rollback: the server rolls back when the
        // connection closes, and the marked session never reaches the pool.
        if let Some(conn) = self.conn.take() {
            if std::thread::panicking() {
                // mysql_async closes a connection dropped during a panic
                // instead of pooling it.
                return;
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = conn.disconnect().await;
                });
            }
            // Without a runtime the connection goes back to the pool, which
            // resets it (COM_RESET_CONNECTION) before handing it out again.
        }
    }
}

#[async_trait]
impl Transaction for MysqlTransaction {
    async fn fetch_for_update(&mut self, table: &TableSchema, key: &Key) -> Result<Option<Row>> {
        let params = key_params(table, key)?;
        let rows = self
            .rows(&select_for_update_sql(table), params)
            .await
            .map_err(|e| e.context(format!("lock row {key} of table {}", table.name)))?;
        rows.into_iter()
            .next()
            .map(|r| row_of(table, r))
            .transpose()
    }

    async fn insert(&mut self, table: &TableSchema, row: &Row) -> Result<Key> {
        self.insert_row(table, row)
            .await
            .map_err(|e| e.context(format!("insert into table {}", table.name)))
    }

    async fn update(&mut self, table: &TableSchema, key: &Key, row: &Row) -> Result<bool> {
        let context =
            |e: ConnectorError| e.context(format!("update row {key} of table {}", table.name));
        let mut params = key_params(table, key).map_err(context)?;
        let (columns, mut values) = written(table, row, |column, _| {
            table.primary_key.contains(&column.name)
        })
        .map_err(context)?;
        if columns.is_empty() {
            let sql = format!(
                "SELECT 1 FROM {} WHERE {}",
                quote_ident(&table.name.name),
                key_match(table)
            );
            return Ok(!self.rows(&sql, params).await.map_err(context)?.is_empty());
        }
        values.append(&mut params);
        let matched = self
            .exec(&update_sql(table, &columns), values)
            .await
            .map_err(context)?;
        Ok(matched > 0)
    }

    async fn delete(&mut self, table: &TableSchema, key: &Key) -> Result<bool> {
        let params = key_params(table, key)?;
        let deleted = self
            .exec(&delete_sql(table), params)
            .await
            .map_err(|e| e.context(format!("delete row {key} of table {}", table.name)))?;
        Ok(deleted > 0)
    }

    async fn record_link(&mut self, link: &IdMapRow) -> Result<()> {
        let context = |e: ConnectorError| e.context(format!("record link of pair {}", link.pair));
        self.forget_link(&link.pair, &link.source_key, &link.target_key)
            .await
            .map_err(context)?;
        self.exec(
            "INSERT INTO tandem_id_map (pair, source_key, target_key) VALUES (?, ?, ?)",
            vec![
                link.pair.as_str().into(),
                link.source_key.as_str().into(),
                link.target_key.as_str().into(),
            ],
        )
        .await
        .map_err(context)?;
        Ok(())
    }

    async fn forget_link(&mut self, pair: &str, source_key: &str, target_key: &str) -> Result<()> {
        self.exec(
            "DELETE FROM tandem_id_map WHERE pair = ? AND (source_key = ? OR target_key = ?)",
            vec![pair.into(), source_key.into(), target_key.into()],
        )
        .await
        .map_err(|e| e.context(format!("forget link of pair {pair}")))?;
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        self.query(&format!("SAVEPOINT {SAVEPOINT}")).await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.query(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
            .await
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        self.query(&format!("RELEASE SAVEPOINT {SAVEPOINT}")).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.finish("COMMIT").await
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        self.finish("ROLLBACK").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DataType, TableName};

    fn column(name: &str) -> Column {
        Column::new(name, DataType::Int, "int").not_null()
    }

    fn table(key: &[&str], other: &[&str]) -> TableSchema {
        TableSchema::new(
            TableName::new(None, "Order `s`"),
            key.iter().chain(other).map(|n| column(n)).collect(),
            key.iter().map(|k| (*k).to_owned()).collect(),
        )
    }

    #[test]
    fn key_lookups_use_row_constructors() {
        let t = table(&["a", "b"], &["c"]);
        assert_eq!(
            select_by_keys_sql(&t, 2),
            "SELECT `a`, `b`, `c` FROM `Order ``s``` WHERE (`a`, `b`) IN ((?, ?), (?, ?))"
        );
        let single = table(&["id"], &[]);
        assert_eq!(
            select_by_keys_sql(&single, 3),
            "SELECT `id` FROM `Order ``s``` WHERE `id` IN (?, ?, ?)"
        );
    }

    #[test]
    fn scans_paginate_by_key() {
        let t = table(&["a", "b"], &[]);
        assert_eq!(
            scan_sql(&t, false),
            "SELECT `a`, `b` FROM `Order ``s``` ORDER BY `a`, `b` LIMIT ?"
        );
        assert_eq!(
            scan_sql(&t, true),
            "SELECT `a`, `b` FROM `Order ``s``` WHERE (`a`, `b`) > (?, ?) ORDER BY `a`, `b` LIMIT ?"
        );
    }

    #[test]
    fn mysql_inserts_without_returning() {
        let t = table(&["id"], &["x"]);
        let cols = [&t.columns[1]];
        assert_eq!(
            insert_sql(&t, &cols, false),
            "INSERT INTO `Order ``s``` (`x`) VALUES (?)"
        );
        assert_eq!(
            insert_sql(&t, &cols, true),
            "INSERT INTO `Order ``s``` (`x`) VALUES (?) RETURNING `id`"
        );
        assert_eq!(
            insert_sql(&t, &[], false),
            "INSERT INTO `Order ``s``` () VALUES ()"
        );
        assert_eq!(
            update_sql(&t, &cols),
            "UPDATE `Order ``s``` SET `x` = ? WHERE `id` = ?"
        );
        assert_eq!(delete_sql(&t), "DELETE FROM `Order ``s``` WHERE `id` = ?");
    }

    #[test]
    fn keys_must_match_the_table() {
        let t = table(&["a", "b"], &[]);
        let err = key_params(&t, &Key(vec![Value::Int(1)])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        let err = key_params(&table(&[], &["x"]), &Key(vec![])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Schema);
    }
}
