//! The applying [`Transaction`], and the SQL that reads and writes rows by
//! key (also used by `fetch_rows` and `scan`).
//!
//! SQLite has no session variables, so the marker is a row: `begin` runs
//! `BEGIN IMMEDIATE` (taking the database's one write lock at once) and
//! inserts a row into `tandem_applying`; the capture triggers skip writes
//! that see it. Commit deletes the row, then commits: the marker is never
//! committed, hence never seen by anyone else. An application writing
//! meanwhile waits for the lock (busy timeout) and writes after our commit,
//! unmarked and captured. A transaction that ends in any other way is
//! rolled back before its connection goes back to the pool.

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use super::capture::placeholders;
use super::client::{classify, execute, query, with_conn, Conn, SQL};
use super::install::has_table;
use super::types::{key_forms, read_value, write_value};
use crate::connector::{IdMapRow, Transaction};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::{Column, TableSchema};
use crate::value::{Key, Row, Value};

/// The one savepoint name (nesting is not needed).
const SAVEPOINT: &str = "tandem_sp";

fn no_key(table: &TableSchema) -> ConnectorError {
    ConnectorError::schema(format!("table {} has no primary key", table.name))
}

/// `"k" = ?`, or `"k" IN (?, ?)` for a value with several stored forms.
fn match_forms(column: &str, forms: usize) -> String {
    if forms == 1 {
        SQL.key_match([column], 1)
    } else {
        SQL.keys_in(&[column], forms, 1)
    }
}

/// The condition that finds the row with `key`, and its parameters:
/// `"k1" = ? AND "k2" IN (?, ?, ?)` (every form a value may be stored in,
/// see [`key_forms`]).
pub fn key_condition(table: &TableSchema, key: &Key) -> Result<(String, Vec<SqlValue>)> {
    let mut parts = Vec::with_capacity(key.0.len());
    let mut params = Vec::new();
    for (column, forms) in table.key_columns().zip(key_values(table, key)?) {
        parts.push(match_forms(&column.name, forms.len()));
        params.extend(forms);
    }
    Ok((parts.join(" AND "), params))
}

/// The stored forms of each value of `key`, by key column.
fn key_values(table: &TableSchema, key: &Key) -> Result<Vec<Vec<SqlValue>>> {
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
        .map(|(column, value)| {
            key_forms(column.data_type, value).map_err(|reason| {
                write_value(&table.name, column, value)
                    .err()
                    .unwrap_or_else(|| ConnectorError::data(reason))
            })
        })
        .collect()
}

/// Rows with any of `keys`: `WHERE "k" IN (...)`, or one condition per key
/// joined by `OR` (SQLite looks each up in the key's index).
pub fn select_by_keys(table: &TableSchema, keys: &[Key]) -> Result<(String, Vec<SqlValue>)> {
    let mut params = Vec::new();
    let condition = if table.primary_key.len() == 1 {
        for key in keys {
            params.extend(key_values(table, key)?.into_iter().flatten());
        }
        match_forms(&table.primary_key[0], params.len())
    } else {
        let mut parts = Vec::with_capacity(keys.len());
        for key in keys {
            let (part, values) = key_condition(table, key)?;
            parts.push(format!("({part})"));
            params.extend(values);
        }
        parts.join(" OR ")
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {condition}",
        SQL.select_list(table),
        SQL.table(&table.name)
    );
    Ok((sql, params))
}

/// How to continue a scan after `key`: a query for the key columns of its
/// row as stored (the table's order is the stored values'), its
/// parameters, and the key as Tandem writes it (for a row gone since).
pub fn stored_key(
    table: &TableSchema,
    key: &Key,
) -> Result<(String, Vec<SqlValue>, Vec<SqlValue>)> {
    let values = key_values(table, key)?;
    let written = values.iter().map(|forms| forms[0].clone()).collect();
    let (condition, params) = key_condition(table, key)?;
    let sql = format!(
        "SELECT {} FROM {} WHERE {condition} LIMIT 1",
        SQL.key_list(table),
        SQL.table(&table.name)
    );
    Ok((sql, params, written))
}

/// One page of a keyset scan, after a key or from the start.
pub fn scan_sql(table: &TableSchema, after: bool) -> String {
    let condition = if after {
        format!(" WHERE {}", SQL.after_key(&table.primary_key, 1))
    } else {
        String::new()
    };
    format!(
        "SELECT {} FROM {}{condition} ORDER BY {} LIMIT ?",
        SQL.select_list(table),
        SQL.table(&table.name),
        SQL.key_list(table)
    )
}

/// The row matching `condition`. (No `FOR UPDATE` in SQLite: the
/// transaction holds the database's write lock since `BEGIN IMMEDIATE`.)
pub fn select_one_sql(table: &TableSchema, condition: &str) -> String {
    format!(
        "SELECT {} FROM {} WHERE {condition}",
        SQL.select_list(table),
        SQL.table(&table.name)
    )
}

/// `INSERT` of `columns` (`DEFAULT VALUES` for none), returning the key
/// where asked.
pub fn insert_sql(table: &TableSchema, columns: &[&Column], returning: bool) -> String {
    let mut sql = if columns.is_empty() {
        format!("INSERT INTO {} DEFAULT VALUES", SQL.table(&table.name))
    } else {
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            SQL.table(&table.name),
            SQL.columns(columns.iter().map(|c| c.name.as_str())),
            placeholders(columns.len())
        )
    };
    if returning {
        sql.push_str(" RETURNING ");
        sql.push_str(&SQL.key_list(table));
    }
    sql
}

/// `UPDATE` of `columns` of the row matching `condition`.
pub fn update_sql(table: &TableSchema, columns: &[&Column], condition: &str) -> String {
    format!(
        "UPDATE {} SET {} WHERE {condition}",
        SQL.table(&table.name),
        SQL.assignments(columns.iter().map(|c| c.name.as_str()), 1)
    )
}

/// `DELETE` of the row matching `condition`.
pub fn delete_sql(table: &TableSchema, condition: &str) -> String {
    format!("DELETE FROM {} WHERE {condition}", SQL.table(&table.name))
}

/// A row as read with [`Dialect::select_list`](crate::sql::Dialect::select_list),
/// converted to canonical values.
pub fn row_of(table: &TableSchema, values: Vec<SqlValue>) -> Result<Row> {
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
) -> Result<(Vec<&'t Column>, Vec<SqlValue>)> {
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

/// Lets a connection go: dropped on a blocking thread where there is a
/// runtime (a transaction left open is rolled back there), else here.
fn release(conn: Conn) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(conn));
        }
        Err(_) => drop(conn),
    }
}

/// One applying transaction on its own connection.
pub struct SqliteTransaction {
    conn: Option<Conn>,
    /// Whether the marker row was written (Tandem's tables are installed).
    marked: bool,
    /// Set when SQLite ended the transaction under us (an I/O error, a full
    /// disk): nothing more may run, or it would run outside it, unmarked.
    aborted: Option<(ErrorKind, String)>,
}

impl SqliteTransaction {
    /// Takes a pooled connection, takes the write lock and marks the
    /// transaction as the agent's. Without Tandem's tables there are no
    /// triggers either, and nothing to mark.
    pub async fn begin(conn: Conn) -> Result<SqliteTransaction> {
        let (conn, started) = with_conn(conn, |c| {
            c.execute_batch("BEGIN IMMEDIATE").map_err(classify)?;
            let marked = has_table(c, "tandem_applying")?;
            if marked {
                execute(
                    c,
                    "INSERT OR IGNORE INTO tandem_applying (id) VALUES (1)",
                    &[],
                )?;
            }
            Ok(marked)
        })
        .await?;
        match started {
            Ok(marked) => Ok(SqliteTransaction {
                conn: Some(conn),
                marked,
                aborted: None,
            }),
            Err(e) => {
                release(conn);
                Err(e.context("begin an applying transaction"))
            }
        }
    }

    /// Runs `f` on the transaction's connection, on a blocking thread.
    async fn call<T, F>(&mut self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        if let Some((kind, why)) = &self.aborted {
            return Err(ConnectorError::new(
                *kind,
                format!("the transaction was ended by SQLite ({why}); roll it back"),
            ));
        }
        let conn = self
            .conn
            .take()
            .ok_or_else(|| ConnectorError::internal("transaction already finished"))?;
        let (conn, result) = match with_conn(conn, f).await {
            Ok(done) => done,
            Err(e) => {
                self.aborted = Some((e.kind(), e.to_string()));
                return Err(e);
            }
        };
        if let Err(e) = &result {
            if conn.is_autocommit() {
                self.aborted = Some((e.kind(), e.to_string()));
            }
        }
        self.conn = Some(conn);
        result
    }

    async fn rows(&mut self, sql: String, params: Vec<SqlValue>) -> Result<Vec<Vec<SqlValue>>> {
        self.call(move |c| query(c, &sql, &params)).await
    }

    async fn exec(&mut self, sql: String, params: Vec<SqlValue>) -> Result<usize> {
        self.call(move |c| execute(c, &sql, &params)).await
    }

    async fn batch(&mut self, sql: String) -> Result<()> {
        self.call(move |c| c.execute_batch(&sql).map_err(classify))
            .await
    }

    /// Commits (deleting the marker first) or rolls back, and lets the
    /// connection go back to the pool only outside a transaction.
    async fn finish(mut self, commit: bool) -> Result<()> {
        let what = if commit { "commit" } else { "rollback" };
        let conn = self
            .conn
            .take()
            .ok_or_else(|| ConnectorError::internal("transaction already finished"))?;
        if let (true, Some((kind, why))) = (commit, self.aborted.take()) {
            release(conn);
            return Err(ConnectorError::new(
                kind,
                format!("cannot commit: the transaction was ended by SQLite ({why})"),
            ));
        }
        let marked = self.marked;
        let (conn, result) = with_conn(conn, move |c| {
            if c.is_autocommit() {
                return if commit {
                    Err(ConnectorError::internal(
                        "the transaction was ended before its commit",
                    ))
                } else {
                    Ok(())
                };
            }
            if !commit {
                return c.execute_batch("ROLLBACK").map_err(classify);
            }
            let committed = (|| {
                if marked {
                    execute(c, "DELETE FROM tandem_applying", &[])?;
                }
                c.execute_batch("COMMIT").map_err(classify)
            })();
            if committed.is_err() && !c.is_autocommit() {
                // A busy COMMIT leaves the transaction open: undo it all.
                let _ = c.execute_batch("ROLLBACK");
            }
            committed
        })
        .await?;
        if conn.is_autocommit() {
            release(conn);
        } else {
            conn.discard();
        }
        result.map_err(|e| e.context(what))
    }

    async fn insert_row(&mut self, table: &TableSchema, row: &Row) -> Result<Key> {
        let key_in_row = table.key_of(row).filter(|k| !k.has_null());
        // Without a full key, NULL key values are left to the engine.
        let (columns, params) = written(table, row, |column, value| {
            key_in_row.is_none() && value.is_null() && table.primary_key.contains(&column.name)
        })?;
        if table.primary_key.is_empty() {
            self.exec(insert_sql(table, &columns, false), params)
                .await?;
            return Ok(Key(Vec::new()));
        }
        // The key as stored, whether the engine made it or the row held it.
        let rows = self.rows(insert_sql(table, &columns, true), params).await?;
        let values = rows.into_iter().next().ok_or_else(|| {
            ConnectorError::internal(format!("insert into {} returned no key", table.name))
        })?;
        table
            .key_columns()
            .zip(values)
            .map(|(c, v)| read_value(&table.name, c, v))
            .collect::<Result<Vec<_>>>()
            .map(Key)
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        // Dropped without commit or rollback: the connection rolls back
        // before it goes back to the pool (see `client::Conn`).
        if let Some(conn) = self.conn.take() {
            release(conn);
        }
    }
}

#[async_trait]
impl Transaction for SqliteTransaction {
    async fn fetch_for_update(&mut self, table: &TableSchema, key: &Key) -> Result<Option<Row>> {
        let (condition, params) = key_condition(table, key)?;
        let rows = self
            .rows(select_one_sql(table, &condition), params)
            .await
            .map_err(|e| e.context(format!("read row {key} of table {}", table.name)))?;
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
        let (condition, mut params) = key_condition(table, key).map_err(context)?;
        let (columns, mut values) = written(table, row, |column, _| {
            table.primary_key.contains(&column.name)
        })
        .map_err(context)?;
        if columns.is_empty() {
            let sql = format!("SELECT 1 FROM {} WHERE {condition}", SQL.table(&table.name));
            return Ok(!self.rows(sql, params).await.map_err(context)?.is_empty());
        }
        values.append(&mut params);
        let matched = self
            .exec(update_sql(table, &columns, &condition), values)
            .await
            .map_err(context)?;
        Ok(matched > 0)
    }

    async fn delete(&mut self, table: &TableSchema, key: &Key) -> Result<bool> {
        let (condition, params) = key_condition(table, key)?;
        let deleted = self
            .exec(delete_sql(table, &condition), params)
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
            "INSERT INTO tandem_id_map (pair, source_key, target_key) VALUES (?, ?, ?)".to_owned(),
            vec![
                link.pair.clone().into(),
                link.source_key.clone().into(),
                link.target_key.clone().into(),
            ],
        )
        .await
        .map_err(context)?;
        Ok(())
    }

    async fn forget_link(&mut self, pair: &str, source_key: &str, target_key: &str) -> Result<()> {
        self.exec(
            "DELETE FROM tandem_id_map WHERE pair = ? AND (source_key = ? OR target_key = ?)"
                .to_owned(),
            vec![
                pair.to_owned().into(),
                source_key.to_owned().into(),
                target_key.to_owned().into(),
            ],
        )
        .await
        .map_err(|e| e.context(format!("forget link of pair {pair}")))?;
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        self.batch(format!("SAVEPOINT {SAVEPOINT}")).await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.batch(format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
            .await
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        self.batch(format!("RELEASE SAVEPOINT {SAVEPOINT}")).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        (*self).finish(true).await
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        (*self).finish(false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DataType, TableName};

    fn column(name: &str) -> Column {
        Column::new(name, DataType::Int, "INTEGER").not_null()
    }

    fn table(key: &[&str], other: &[&str]) -> TableSchema {
        TableSchema::new(
            TableName::new(None, "Order \"s\""),
            key.iter().chain(other).map(|n| column(n)).collect(),
            key.iter().map(|k| (*k).to_owned()).collect(),
        )
    }

    #[test]
    fn key_lookups_match_every_stored_form() {
        let t = table(&["a", "b"], &["c"]);
        let keys = [
            Key(vec![Value::Int(1), Value::Int(2)]),
            Key(vec![Value::Int(3), Value::Int(4)]),
        ];
        let (sql, params) = select_by_keys(&t, &keys).unwrap();
        assert_eq!(
            sql,
            "SELECT \"a\", \"b\", \"c\" FROM \"Order \"\"s\"\"\" WHERE (\"a\" = ? AND \"b\" = ?) OR (\"a\" = ? AND \"b\" = ?)"
        );
        assert_eq!(params.len(), 4);
        let single = table(&["id"], &[]);
        let (sql, _) = select_by_keys(&single, &keys[..0]).unwrap();
        assert!(sql.ends_with("WHERE \"id\" IN ()"), "{sql}");
        let mut by_uuid = table(&["id"], &[]);
        by_uuid.columns[0].data_type = DataType::Uuid;
        let u = Key(vec![Value::Uuid(uuid::Uuid::from_u128(0xabc))]);
        let (condition, params) = key_condition(&by_uuid, &u).unwrap();
        assert_eq!(condition, "\"id\" IN (?, ?, ?, ?, ?)");
        assert_eq!(params.len(), 5);
        let (sql, _, written) = stored_key(&by_uuid, &u).unwrap();
        assert_eq!(
            written,
            vec![SqlValue::Text(
                "00000000-0000-0000-0000-000000000abc".into()
            )]
        );
        assert_eq!(
            sql,
            "SELECT \"id\" FROM \"Order \"\"s\"\"\" WHERE \"id\" IN (?, ?, ?, ?, ?) LIMIT 1"
        );
    }

    #[test]
    fn scans_paginate_by_key() {
        let t = table(&["a", "b"], &[]);
        assert_eq!(
            scan_sql(&t, false),
            "SELECT \"a\", \"b\" FROM \"Order \"\"s\"\"\" ORDER BY \"a\", \"b\" LIMIT ?"
        );
        assert_eq!(
            scan_sql(&t, true),
            "SELECT \"a\", \"b\" FROM \"Order \"\"s\"\"\" WHERE (\"a\", \"b\") > (?, ?) ORDER BY \"a\", \"b\" LIMIT ?"
        );
    }

    #[test]
    fn writes_return_the_key() {
        let t = table(&["id"], &["x"]);
        let cols = [&t.columns[1]];
        assert_eq!(
            insert_sql(&t, &cols, true),
            "INSERT INTO \"Order \"\"s\"\"\" (\"x\") VALUES (?) RETURNING \"id\""
        );
        assert_eq!(
            insert_sql(&t, &[], true),
            "INSERT INTO \"Order \"\"s\"\"\" DEFAULT VALUES RETURNING \"id\""
        );
        let (condition, _) = key_condition(&t, &Key(vec![Value::Int(1)])).unwrap();
        assert_eq!(
            update_sql(&t, &cols, &condition),
            "UPDATE \"Order \"\"s\"\"\" SET \"x\" = ? WHERE \"id\" = ?"
        );
        assert_eq!(
            delete_sql(&t, &condition),
            "DELETE FROM \"Order \"\"s\"\"\" WHERE \"id\" = ?"
        );
    }

    #[test]
    fn keys_must_match_the_table() {
        let t = table(&["a", "b"], &[]);
        let err = key_condition(&t, &Key(vec![Value::Int(1)])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        let err =
            key_condition(&t, &Key(vec![Value::Int(1), Value::Text("x".into())])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Data);
        let err = key_condition(&table(&[], &["x"]), &Key(vec![])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Schema);
    }
}
