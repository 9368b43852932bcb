//! The applying [`Transaction`], and the SQL that reads and writes rows by
//! key (also used by `fetch_rows` and `scan`).
//!
//! The session is marked with `@tandem_applying = 1` before `START
//! TRANSACTION`; the capture triggers skip marked sessions. The marker is
//! cleared just before commit and rollback; a connection whose state is in
//! doubt (a failed commit, a transaction dropped unfinished) is disconnected
//! instead of going back to the pool.

use std::collections::HashMap;
use std::ops::Range;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row as MyRow, Value as MyValue};

use super::batch::{
    chunks, consecutive_step, delete_many_sql, forget_links_sql, insert_links_sql, insert_many_sql,
    runs, surviving_links, update_many_sql, weight, BulkTypes, WireMix, MAX_KEYS, MAX_UPDATE_ROWS,
};
use super::capture::placeholders;
use super::client::{classify, int_of, text_of, Flavour, KeptSessions, SQL};
use super::types::{from_mysql, normalize, read_value, write_value};
use crate::connector::{CopyOf, IdMapRow, Transaction};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::{Column, DataType, TableSchema};
use crate::value::{Key, Row, Value};

/// The one savepoint name (nesting is not needed).
const SAVEPOINT: &str = "tandem_sp";

/// `` `k1` = ? AND `k2` = ? ``
pub fn key_match(table: &TableSchema) -> String {
    SQL.key_match(table.primary_key.iter().map(String::as_str), 1)
}

fn no_key(table: &TableSchema) -> ConnectorError {
    ConnectorError::schema(format!("table {} has no primary key", table.name))
}

/// `SELECT` of every column of `table`, without a condition.
pub fn select_all_sql(table: &TableSchema) -> String {
    format!(
        "SELECT {} FROM {}",
        SQL.select_list(table),
        SQL.table(&table.name)
    )
}

/// The condition of any of `count` keys: `k IN (?, ?)` or
/// `(k1, k2) IN ((?, ?), (?, ?))`.
pub fn keys_in(table: &TableSchema, count: usize) -> String {
    SQL.keys_in(&table.primary_key, count, 1)
}

/// The table, named for a statement that finds rows by [`keys_in`]. A
/// composite key gets `FORCE INDEX (PRIMARY)`: with other indexes on the
/// key's columns (a link table's foreign keys have them), MariaDB weighs
/// every index for every key of the list, and a prepared `(k1, k2) IN`
/// of 500 keys took 28 ms on a 20,000-row link table, 2.5 ms with the
/// hint (`tandem-bench` measures it: "composite keys").
pub fn keyed_table(table: &TableSchema) -> String {
    let name = SQL.table(&table.name);
    if table.primary_key.len() > 1 {
        format!("{name} FORCE INDEX (PRIMARY)")
    } else {
        name
    }
}

/// Rows with any of `count` keys: `WHERE k IN (?, ?)` or
/// `WHERE (k1, k2) IN ((?, ?), (?, ?))` (see [`keyed_table`]).
pub fn select_by_keys_sql(table: &TableSchema, count: usize) -> String {
    format!(
        "SELECT {} FROM {} WHERE {}",
        SQL.select_list(table),
        keyed_table(table),
        keys_in(table, count)
    )
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

/// The row with one key, locked.
pub fn select_for_update_sql(table: &TableSchema) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} FOR UPDATE",
        SQL.select_list(table),
        SQL.table(&table.name),
        key_match(table)
    )
}

/// `INSERT` of `columns`, with `RETURNING` the key where asked (MariaDB).
pub fn insert_sql(table: &TableSchema, columns: &[&Column], returning: bool) -> String {
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        SQL.table(&table.name),
        SQL.columns(columns.iter().map(|c| c.name.as_str())),
        placeholders(columns.len())
    );
    if returning {
        sql.push_str(" RETURNING ");
        sql.push_str(&SQL.key_list(table));
    }
    sql
}

/// `UPDATE` of `columns` of the row with one key.
pub fn update_sql(table: &TableSchema, columns: &[&Column]) -> String {
    format!(
        "UPDATE {} SET {} WHERE {}",
        SQL.table(&table.name),
        SQL.assignments(columns.iter().map(|c| c.name.as_str()), 1),
        key_match(table)
    )
}

/// `DELETE` of the row with one key.
pub fn delete_sql(table: &TableSchema) -> String {
    format!(
        "DELETE FROM {} WHERE {}",
        SQL.table(&table.name),
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

/// A row as read with [`Dialect::select_list`](crate::sql::Dialect::select_list),
/// converted to canonical values.
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
    /// Per table, the step between the keys of one multi-row insert when
    /// they are sure to be consecutive (MySQL, see `id_step`).
    id_steps: HashMap<String, Option<u64>>,
    /// Where the session goes when the transaction ends cleanly.
    kept: KeptSessions,
}

impl MysqlTransaction {
    /// Takes a connection, marks the session and starts the transaction;
    /// a clean end hands the session to `kept`.
    pub async fn begin(
        mut conn: Conn,
        flavour: Flavour,
        kept: KeptSessions,
    ) -> Result<MysqlTransaction> {
        // One round trip for both (the client allows several statements
        // per query); a failure of the first stops the second.
        let started = conn
            .query_drop("SET @tandem_applying = 1; START TRANSACTION")
            .await;
        if let Err(e) = started {
            let _ = conn.disconnect().await;
            return Err(classify(e).context("begin an applying transaction"));
        }
        Ok(MysqlTransaction {
            conn: Some(conn),
            flavour,
            aborted: None,
            id_steps: HashMap::new(),
            kept,
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

    /// Runs `sql` once for each row of parameters, in one round trip where
    /// the server allows (MariaDB's bulk execution); every row must send
    /// each parameter as the same type (see `BulkTypes`).
    async fn exec_bulk(&mut self, sql: &str, rows: Vec<Vec<MyValue>>) -> Result<()> {
        match self.conn()?.exec_batch(sql, rows).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn query(&mut self, sql: &str) -> Result<()> {
        match self.conn()?.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Clears the marker and runs `COMMIT` or `ROLLBACK`, in one round
    /// trip, and lets the connection go back to the pool only when both
    /// worked. The marker is cleared first: triggers fire as rows are
    /// written, never at the commit, and a failed clearing stops the
    /// commit instead of leaving its outcome in doubt.
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
            _ => conn
                .query_drop(format!("SET @tandem_applying = NULL; {sql}"))
                .await
                .map_err(classify),
        };
        let clean = outcome.is_ok();
        if clean {
            self.kept.keep(conn);
        } else {
            let _ = conn.disconnect().await;
        }
        outcome.map_err(|e| e.context(sql.to_lowercase()))
    }

    async fn insert_row(&mut self, table: &TableSchema, row: &Row) -> Result<Key> {
        let NewRow {
            columns,
            params,
            key,
        } = new_row(table, row)?;
        if let Some(key) = key {
            self.exec(&insert_sql(table, &columns, false), params)
                .await?;
            return Ok(key);
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
        let id = self.conn()?.last_insert_id();
        generated_key(table, id)
    }

    /// Inserts the rows `range` of `rows` (planned as `new_rows`, which all
    /// write the same columns and all hold their key or all lack it) in one
    /// statement, and notes each row's key and, where `RETURNING` gave it,
    /// the row as written.
    async fn insert_chunk(
        &mut self,
        table: &TableSchema,
        rows: &[Row],
        new_rows: &mut [NewRow<'_>],
        range: Range<usize>,
        out: &mut [Inserted],
    ) -> Result<()> {
        let keyed = new_rows[range.start].key.is_some();
        let columns = new_rows[range.start].columns.clone();
        let params: Vec<MyValue> = new_rows[range.clone()]
            .iter_mut()
            .flat_map(|new| std::mem::take(&mut new.params))
            .collect();
        let count = range.len();
        if self.flavour == Flavour::MariaDb {
            let sql = insert_many_sql(table, &columns, count, true);
            let returned = self.rows(&sql, params).await?;
            if returned.len() != count {
                return Err(ConnectorError::internal(format!(
                    "inserting {count} row(s) into {} returned {} row(s)",
                    table.name,
                    returned.len()
                )));
            }
            for (i, values) in range.zip(returned) {
                let row = row_of(table, values)?;
                // A row that held its key reports it as insert does.
                let key = match new_rows[i].key.take() {
                    Some(key) => key,
                    None => table.key_of(&row).ok_or_else(|| no_key(table))?,
                };
                out[i] = Inserted {
                    key: Some(key),
                    row: Some(row),
                };
            }
            return Ok(());
        }
        if keyed {
            self.exec(&insert_many_sql(table, &columns, count, false), params)
                .await?;
            for i in range {
                out[i].key = new_rows[i].key.take();
            }
            return Ok(());
        }
        let Some(step) = self.id_step(table).await? else {
            // Generated keys that may not be consecutive: one at a time.
            for i in range {
                out[i].key = Some(self.insert_row(table, &rows[i]).await?);
            }
            return Ok(());
        };
        self.exec(&insert_many_sql(table, &columns, count, false), params)
            .await?;
        // The first generated key; the others follow it, `step` apart.
        let first = self.conn()?.last_insert_id().filter(|id| *id != 0);
        for (nth, i) in range.enumerate() {
            let id = first.and_then(|id| id.checked_add(nth as u64 * step));
            out[i].key = Some(generated_key(table, id)?);
        }
        Ok(())
    }

    /// The step between the keys one multi-row insert generates in `table`
    /// when they are sure to be consecutive (asked once per transaction and
    /// table); `None` when they may not be.
    async fn id_step(&mut self, table: &TableSchema) -> Result<Option<u64>> {
        if let Some(step) = self.id_steps.get(&table.name.name) {
            return Ok(*step);
        }
        let rows = self
            .rows(
                "SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment, \
                 (SELECT ENGINE FROM information_schema.TABLES \
                  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?)",
                vec![table.name.name.as_str().into()],
            )
            .await?;
        let step = rows.first().and_then(|r| {
            let engine = text_of(&r[2]);
            consecutive_step(int_of(&r[0]), int_of(&r[1]), Some(engine.as_str()))
        });
        self.id_steps.insert(table.name.name.clone(), step);
        Ok(step)
    }

    /// The row with each of `keys`, locked, in the order of `keys`; `None`
    /// where there is none. One statement reads them all. A key whose row
    /// does not come back holding exactly that key is then looked up by
    /// itself, unless the key is of integers only: others may find a row
    /// the collation or the column type equates with them (other letter
    /// case, trailing spaces, more decimal places).
    async fn locked_rows(&mut self, table: &TableSchema, keys: &[Key]) -> Result<Vec<Option<Row>>> {
        let found = self.fetch_many_for_update(table, keys).await?;
        let by_key: HashMap<String, Row> = found
            .into_iter()
            .filter_map(|row| Some((table.key_of(&row)?.encode(), row)))
            .collect();
        let integers = table
            .key_columns()
            .all(|c| c.data_type == DataType::Int && !c.native_type.eq_ignore_ascii_case("year"));
        let mut rows = Vec::with_capacity(keys.len());
        for key in keys {
            let stored = stored_key(table, key).ok().map(|stored| stored.encode());
            rows.push(match stored.as_ref().map(|s| by_key.get(s)) {
                Some(Some(row)) => Some(row.clone()),
                Some(None) if integers => None,
                _ => self.fetch_for_update(table, key).await?,
            });
        }
        Ok(rows)
    }

    /// Deletes `pair`'s mapping rows naming any of the source or target
    /// keys, a few thousand keys per statement.
    async fn forget_keys(&mut self, pair: &str, keys: &[(&str, &str)]) -> Result<()> {
        let ranges = chunks(keys.len(), 1, MAX_KEYS, |i| {
            (2, keys[i].0.len() + keys[i].1.len() + 18)
        });
        for range in ranges {
            let chunk = &keys[range];
            let mut params: Vec<MyValue> = Vec::with_capacity(1 + 2 * chunk.len());
            params.push(pair.into());
            params.extend(chunk.iter().map(|(source, _)| MyValue::from(*source)));
            params.extend(chunk.iter().map(|(_, target)| MyValue::from(*target)));
            self.exec(&forget_links_sql(chunk.len()), params).await?;
        }
        Ok(())
    }

    /// Records `links` as many `record_link` calls in this order would,
    /// in one statement per chunk: a row that shares a source or a target
    /// key with a new pair (an earlier copy's, gone since) is taken over by
    /// it. A delete of such rows first cost as much as the insert itself.
    /// A new pair that shares its keys with two different rows fails the
    /// statement with a duplicate-key error (the caller applies such a
    /// batch again a record at a time, which forgets first).
    async fn record_links(&mut self, links: &[IdMapRow]) -> Result<()> {
        let mut pairs: Vec<&str> = Vec::new();
        for link in links {
            if !pairs.contains(&link.pair.as_str()) {
                pairs.push(&link.pair);
            }
        }
        let context =
            |e: ConnectorError| e.context(format!("record links of pair {}", pairs.join(", ")));
        let kept = surviving_links(links);
        let ranges = chunks(kept.len(), 0, usize::MAX, |i| {
            let link = kept[i];
            (
                3,
                link.pair.len() + link.source_key.len() + link.target_key.len() + 27,
            )
        });
        for range in ranges {
            let params = kept[range.clone()]
                .iter()
                .flat_map(|link| {
                    [
                        MyValue::from(link.pair.as_str()),
                        MyValue::from(link.source_key.as_str()),
                        MyValue::from(link.target_key.as_str()),
                    ]
                })
                .collect();
            self.exec(&insert_links_sql(range.len()), params)
                .await
                .map_err(context)?;
        }
        Ok(())
    }
}

/// One row to insert: the columns written with their values, and the key
/// the row holds (as the server stores it), when it holds a whole one.
struct NewRow<'t> {
    columns: Vec<&'t Column>,
    params: Vec<MyValue>,
    key: Option<Key>,
}

/// Plans the insert of `row`. Without a whole key in the row, NULL key
/// values are left out for the engine to generate.
fn new_row<'t>(table: &'t TableSchema, row: &Row) -> Result<NewRow<'t>> {
    let key_in_row = table.key_of(row).filter(|k| !k.has_null());
    let (columns, params) = written(table, row, |column, value| {
        key_in_row.is_none() && value.is_null() && table.primary_key.contains(&column.name)
    })?;
    Ok(NewRow {
        columns,
        params,
        key: key_in_row.map(|key| stored_key(table, &key)).transpose()?,
    })
}

/// What one row of a multi-row insert became: its key, and the row as
/// written once read.
#[derive(Clone, Default)]
struct Inserted {
    key: Option<Key>,
    row: Option<Row>,
}

/// `key` as the table stores it: each value converted for its column and
/// read again (see [`normalize`]).
fn stored_key(table: &TableSchema, key: &Key) -> Result<Key> {
    table
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
        .map(Key)
}

/// The key the engine generated, from `LAST_INSERT_ID()`; only a single
/// `AUTO_INCREMENT` key column says it.
fn generated_key(table: &TableSchema, id: Option<u64>) -> Result<Key> {
    match (
        table.key_columns().collect::<Vec<_>>().as_slice(),
        id.filter(|id| *id != 0),
    ) {
        ([column], Some(id)) => from_mysql(column.data_type, MyValue::UInt(id))
            .map(|v| Key(vec![v]))
            .map_err(|why| {
                ConnectorError::internal(format!("generated key of {}: {why}", table.name))
            }),
        _ => Err(ConnectorError::schema(format!(
            "cannot learn the key of a row inserted into {}: the row holds no key and the key is not a single AUTO_INCREMENT column",
            table.name
        ))),
    }
}

/// Whether two rows write the same columns.
fn same_columns(a: &[&Column], b: &[&Column]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.name == b.name)
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
                SQL.table(&table.name),
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

    async fn fetch_many_for_update(
        &mut self,
        table: &TableSchema,
        keys: &[Key],
    ) -> Result<Vec<Row>> {
        let context = |e: ConnectorError| {
            e.context(format!(
                "lock {} row(s) of table {}",
                keys.len(),
                table.name
            ))
        };
        let params = keys
            .iter()
            .map(|key| key_params(table, key))
            .collect::<Result<Vec<_>>>()
            .map_err(context)?;
        let width = table.primary_key.len();
        let mut rows = Vec::with_capacity(keys.len());
        for range in chunks(keys.len(), 0, MAX_KEYS, |i| {
            (width, params[i].iter().map(weight).sum())
        }) {
            let sql = format!("{} FOR UPDATE", select_by_keys_sql(table, range.len()));
            let flat = params[range].iter().flatten().cloned().collect();
            for values in self.rows(&sql, flat).await.map_err(context)? {
                rows.push(row_of(table, values)?);
            }
        }
        Ok(rows)
    }

    async fn insert_copies(
        &mut self,
        table: &TableSchema,
        rows: &[Row],
        copies: &[CopyOf],
    ) -> Result<Vec<Row>> {
        let context = |e: ConnectorError| {
            e.context(format!(
                "insert {} row(s) into table {}",
                rows.len(),
                table.name
            ))
        };
        if rows.len() != copies.len() {
            return Err(context(ConnectorError::internal(format!(
                "{} row(s) but {} copy descriptions",
                rows.len(),
                copies.len()
            ))));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if table.primary_key.is_empty() {
            return Err(context(no_key(table)));
        }
        let mut new_rows = rows
            .iter()
            .map(|row| new_row(table, row))
            .collect::<Result<Vec<_>>>()
            .map_err(context)?;
        let mut inserted = vec![Inserted::default(); rows.len()];
        // Rows writing other columns cannot share a statement; neighbours
        // only, so that keys are generated in the order of the rows. A row
        // writing NULL into a NOT NULL column goes alone: without strict
        // mode, a multi-row INSERT writes the column's implicit default
        // where the row by itself fails.
        let signatures: Vec<(bool, Vec<&str>, Option<usize>)> = new_rows
            .iter()
            .enumerate()
            .map(|(i, new)| {
                let names = new.columns.iter().map(|c| c.name.as_str()).collect();
                let null_for_not_null = new
                    .columns
                    .iter()
                    .zip(&new.params)
                    .any(|(c, v)| !c.nullable && *v == MyValue::NULL);
                (new.key.is_some(), names, null_for_not_null.then_some(i))
            })
            .collect();
        for run in runs(rows.len(), |i| &signatures[i]) {
            let width = new_rows[run.start].columns.len();
            let ranges = chunks(run.len(), 0, usize::MAX, |i| {
                (
                    width,
                    new_rows[run.start + i].params.iter().map(weight).sum(),
                )
            });
            for range in ranges {
                let range = run.start + range.start..run.start + range.end;
                self.insert_chunk(table, rows, &mut new_rows, range, &mut inserted)
                    .await
                    .map_err(context)?;
            }
        }
        // Without RETURNING, the rows as written are read back by their keys.
        let unread: Vec<usize> = (0..rows.len())
            .filter(|i| inserted[*i].row.is_none())
            .collect();
        let mut keys = Vec::with_capacity(rows.len());
        for item in &inserted {
            keys.push(item.key.clone().ok_or_else(|| {
                context(ConnectorError::internal("a row was left without its key"))
            })?);
        }
        if !unread.is_empty() {
            let wanted: Vec<Key> = unread.iter().map(|i| keys[*i].clone()).collect();
            let found = self.locked_rows(table, &wanted).await.map_err(context)?;
            for (i, row) in unread.into_iter().zip(found) {
                inserted[i].row = Some(row.ok_or_else(|| {
                    ConnectorError::data(format!(
                        "{} {} vanished after writing it (a trigger or policy of the database?)",
                        table.name, keys[i]
                    ))
                })?);
            }
        }
        let links: Vec<IdMapRow> = copies
            .iter()
            .zip(&keys)
            .map(|(copy, key)| copy.link(&key.encode()))
            .collect();
        self.record_links(&links).await?;
        inserted
            .into_iter()
            .map(|item| item.row)
            .collect::<Option<Vec<Row>>>()
            .ok_or_else(|| context(ConnectorError::internal("a row was left unread")))
    }

    async fn update_many(
        &mut self,
        table: &TableSchema,
        updates: &[(Key, Row)],
    ) -> Result<Vec<Option<Row>>> {
        let context = |e: ConnectorError| {
            e.context(format!(
                "update {} row(s) of table {}",
                updates.len(),
                table.name
            ))
        };
        let mut planned = Vec::with_capacity(updates.len());
        for (key, row) in updates {
            let key_params = key_params(table, key).map_err(context)?;
            let (columns, values) = written(table, row, |column, _| {
                table.primary_key.contains(&column.name)
            })
            .map_err(context)?;
            planned.push((key_params, columns, values));
        }
        // Neighbours writing the same columns share a statement when their
        // values reach the server as they would one by one (see `BulkTypes`,
        // `WireMix`).
        let bulk = self.flavour == Flavour::MariaDb;
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut mix = WireMix::new(&[]);
        let mut types = BulkTypes::default();
        for (i, (key, columns, values)) in planned.iter().enumerate() {
            let admit = |mix: &mut WireMix, types: &mut BulkTypes| {
                if bulk {
                    types.admit(values.iter().chain(key))
                } else {
                    mix.admit(values)
                }
            };
            match groups.last_mut() {
                Some(group)
                    if same_columns(&planned[group.start].1, columns)
                        && admit(&mut mix, &mut types) =>
                {
                    group.end = i + 1;
                }
                _ => {
                    mix = WireMix::new(columns);
                    types = BulkTypes::default();
                    admit(&mut mix, &mut types);
                    groups.push(i..i + 1);
                }
            }
        }
        let width = table.primary_key.len();
        for group in groups {
            let columns = planned[group.start].1.clone();
            if columns.is_empty() {
                // Nothing to set: the read below finds and locks the rows.
                continue;
            }
            if bulk {
                // The one-row UPDATE's parameters: the values, then the key.
                let rows = planned[group]
                    .iter()
                    .map(|(key, _, values)| values.iter().chain(key).cloned().collect())
                    .collect();
                self.exec_bulk(&update_sql(table, &columns), rows)
                    .await
                    .map_err(context)?;
                continue;
            }
            let per_row = columns.len() * (width + 1) + width;
            let ranges = chunks(group.len(), 0, MAX_UPDATE_ROWS, |i| {
                let (key, _, values) = &planned[group.start + i];
                let key_bytes: usize = key.iter().map(weight).sum();
                let value_bytes: usize = values.iter().map(weight).sum();
                (per_row, key_bytes * (columns.len() + 1) + value_bytes)
            });
            for range in ranges {
                let rows = &planned[group.start + range.start..group.start + range.end];
                let mut params = Vec::with_capacity(per_row * rows.len());
                for column in 0..columns.len() {
                    // The last of several updates of one row wins, as it
                    // would one by one: CASE takes the first match.
                    for (key, _, values) in rows.iter().rev() {
                        params.extend(key.iter().cloned());
                        params.push(values[column].clone());
                    }
                }
                for (key, _, _) in rows {
                    params.extend(key.iter().cloned());
                }
                self.exec(&update_many_sql(table, &columns, rows.len()), params)
                    .await
                    .map_err(context)?;
            }
        }
        let keys: Vec<Key> = updates.iter().map(|(key, _)| key.clone()).collect();
        self.locked_rows(table, &keys).await.map_err(context)
    }

    async fn delete_many(&mut self, table: &TableSchema, keys: &[Key]) -> Result<u64> {
        let context = |e: ConnectorError| {
            e.context(format!(
                "delete {} row(s) of table {}",
                keys.len(),
                table.name
            ))
        };
        let params = keys
            .iter()
            .map(|key| key_params(table, key))
            .collect::<Result<Vec<_>>>()
            .map_err(context)?;
        let width = table.primary_key.len();
        let mut deleted = 0;
        for range in chunks(keys.len(), 0, MAX_KEYS, |i| {
            (width, params[i].iter().map(weight).sum())
        }) {
            let sql = delete_many_sql(table, range.len());
            let flat = params[range].iter().flatten().cloned().collect();
            deleted += self.exec(&sql, flat).await.map_err(context)?;
        }
        Ok(deleted)
    }

    async fn forget_links(&mut self, pair: &str, keys: &[(String, String)]) -> Result<()> {
        let keys: Vec<(&str, &str)> = keys
            .iter()
            .map(|(source, target)| (source.as_str(), target.as_str()))
            .collect();
        self.forget_keys(pair, &keys)
            .await
            .map_err(|e| e.context(format!("forget links of pair {pair}")))
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
    use crate::schema::TableName;

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
            "SELECT `a`, `b`, `c` FROM `Order ``s``` FORCE INDEX (PRIMARY) WHERE (`a`, `b`) IN ((?, ?), (?, ?))"
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

/// What a batch costs against the same rows one by one, on the local server:
/// `cargo test -p tandem-connectors --lib batch_cost -- --ignored --nocapture`
/// (`TANDEM_TEST_MYSQL_URL` names another server). The applying session
/// counts its own commands (`Questions`: round trips, the prepares aside),
/// prepares and statement executions.
#[cfg(test)]
mod cost {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::connector::{Connector, EndpointConfig, TlsConfig};
    use crate::engine::Engine;
    use crate::mysql::MysqlConnector;
    use crate::schema::TableName;

    const ROWS: usize = 2_000;

    /// The default batch methods of the trait over the connector's
    /// transaction: one statement (or two) per row.
    struct OneByOne(MysqlTransaction);

    #[async_trait]
    impl Transaction for OneByOne {
        async fn fetch_for_update(&mut self, t: &TableSchema, k: &Key) -> Result<Option<Row>> {
            self.0.fetch_for_update(t, k).await
        }
        async fn insert(&mut self, t: &TableSchema, r: &Row) -> Result<Key> {
            self.0.insert(t, r).await
        }
        async fn update(&mut self, t: &TableSchema, k: &Key, r: &Row) -> Result<bool> {
            self.0.update(t, k, r).await
        }
        async fn delete(&mut self, t: &TableSchema, k: &Key) -> Result<bool> {
            self.0.delete(t, k).await
        }
        async fn record_link(&mut self, link: &IdMapRow) -> Result<()> {
            self.0.record_link(link).await
        }
        async fn forget_link(&mut self, p: &str, s: &str, t: &str) -> Result<()> {
            self.0.forget_link(p, s, t).await
        }
        async fn savepoint(&mut self) -> Result<()> {
            self.0.savepoint().await
        }
        async fn rollback_to_savepoint(&mut self) -> Result<()> {
            self.0.rollback_to_savepoint().await
        }
        async fn release_savepoint(&mut self) -> Result<()> {
            self.0.release_savepoint().await
        }
        async fn commit(self: Box<Self>) -> Result<()> {
            Box::new(self.0).commit().await
        }
        async fn rollback(self: Box<Self>) -> Result<()> {
            Box::new(self.0).rollback().await
        }
    }

    /// (commands, prepared, executed statements) of the session so far. A
    /// command is one round trip (the `SHOW` itself is one); a bulk
    /// execution is one command but executes its statement once per row.
    async fn counters(tx: &mut MysqlTransaction) -> [u64; 3] {
        let rows: Vec<(String, u64)> = tx
            .conn()
            .unwrap()
            .query(
                "SHOW SESSION STATUS WHERE Variable_name IN \
                 ('Questions', 'Com_stmt_prepare', 'Com_stmt_execute')",
            )
            .await
            .unwrap();
        let get = |name: &str| {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .unwrap()
                .1
        };
        [
            get("Questions"),
            get("Com_stmt_prepare"),
            get("Com_stmt_execute"),
        ]
    }

    /// One batch call and its arguments.
    enum Call<'a> {
        InsertCopies(&'a [Row], &'a [CopyOf]),
        UpdateMany(&'a [(Key, Row)]),
        FetchMany(&'a [Key]),
        DeleteMany(&'a [Key]),
    }

    impl Call<'_> {
        fn name(&self) -> &'static str {
            match self {
                Call::InsertCopies(..) => "insert_copies",
                Call::UpdateMany(_) => "update_many",
                Call::FetchMany(_) => "fetch_many_for_update",
                Call::DeleteMany(_) => "delete_many",
            }
        }

        /// Makes the call and checks that every row was written or found.
        async fn run(&self, tx: &mut dyn Transaction, table: &TableSchema) {
            match self {
                Call::InsertCopies(rows, copies) => {
                    let written = tx.insert_copies(table, rows, copies).await.unwrap();
                    assert_eq!(written.len(), rows.len());
                }
                Call::UpdateMany(updates) => {
                    let written = tx.update_many(table, updates).await.unwrap();
                    assert!(written.iter().all(Option::is_some));
                }
                Call::FetchMany(keys) => {
                    let found = tx.fetch_many_for_update(table, keys).await.unwrap();
                    assert_eq!(found.len(), keys.len());
                }
                Call::DeleteMany(keys) => {
                    let deleted = tx.delete_many(table, keys).await.unwrap();
                    assert_eq!(deleted, keys.len() as u64);
                }
            }
        }
    }

    /// Makes `call` in a new transaction that then commits, one by one or
    /// batched, and prints its statements and wall time (commit included).
    async fn measure(
        connector: &MysqlConnector,
        table: &TableSchema,
        call: Call<'_>,
        by_one: bool,
    ) {
        let conn = connector.client.conn().await.unwrap();
        let mut tx = MysqlTransaction::begin(conn, connector.flavour(), KeptSessions::default())
            .await
            .unwrap();
        let before = counters(&mut tx).await;
        let started = Instant::now();
        let after = if by_one {
            let mut one = OneByOne(tx);
            call.run(&mut one, table).await;
            let after = counters(&mut one.0).await;
            Box::new(one).commit().await.unwrap();
            after
        } else {
            call.run(&mut tx, table).await;
            let after = counters(&mut tx).await;
            Box::new(tx).commit().await.unwrap();
            after
        };
        let elapsed = started.elapsed();
        // (less the SHOW that read the counters)
        let commands = after[0] - before[0] - 1;
        println!(
            "| {:<8} {:<22} | {:<10} | {:>8} | {:>8} | {:>8} | {:>9.1} |",
            connector.flavour().product(),
            call.name(),
            if by_one { "one by one" } else { "batched" },
            commands,
            after[1] - before[1],
            after[2] - before[2],
            elapsed.as_secs_f64() * 1000.0
        );
    }

    #[tokio::test]
    #[ignore = "a measurement: run with --ignored --nocapture"]
    async fn batch_cost_against_one_by_one() {
        let admin_url = std::env::var("TANDEM_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned());
        let name = format!("tandem_b_{}", uuid::Uuid::new_v4().simple());
        let mut admin = Conn::new(mysql_async::Opts::from_url(&admin_url).unwrap())
            .await
            .unwrap();
        admin
            .query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        let config = EndpointConfig {
            engine: Engine::Mysql,
            url: url.to_string(),
            password: None,
            poll_interval: Duration::from_millis(50),
            max_connections: 2,
            tls: TlsConfig::default_for(Engine::Mysql, url.as_str()).unwrap(),
            http: None,
        };
        println!(
            "\n{ROWS} rows of (id AUTO_INCREMENT, name, qty, price DECIMAL, at DATETIME(6), note); capture installed\n"
        );
        println!(
            "| {:<31} | {:<10} | {:>8} | {:>8} | {:>8} | {:>9} |",
            "call", "path", "commands", "prepared", "executed", "wall ms"
        );
        println!(
            "|{:-<33}|{:-<12}|{:-<10}|{:-<10}|{:-<10}|{:-<11}|",
            "", "", "", "", "", ""
        );
        for flavour in [Flavour::MariaDb, Flavour::MySql] {
            let connector = MysqlConnector::connect(&config)
                .await
                .unwrap()
                .with_flavour(flavour);
            let mut tables = Vec::new();
            for t in ["one", "batch"] {
                let table = format!("{t}_{flavour:?}");
                let script = vec![format!(
                    "CREATE TABLE `{table}` (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL, \
                     qty INT, price DECIMAL(10,2), at DATETIME(6), note TEXT)"
                )];
                connector.run_script(&script).await.unwrap();
                tables.push(
                    connector
                        .describe(&TableName::new(None, &table))
                        .await
                        .unwrap(),
                );
            }
            let script = connector.install_script(&tables).await.unwrap();
            connector.run_script(&script).await.unwrap();
            let rows: Vec<Row> = (0..ROWS)
                .map(|i| {
                    [
                        ("name", Value::Text(format!("customer {i}"))),
                        ("qty", Value::Int(i as i64)),
                        ("price", Value::Decimal(format!("{i}.25"))),
                        (
                            "note",
                            if i % 3 == 0 {
                                Value::Null
                            } else {
                                Value::Text("n".repeat(i % 50))
                            },
                        ),
                        (
                            "at",
                            Value::Timestamp(
                                chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 1000)
                                    .unwrap()
                                    .naive_utc(),
                            ),
                        ),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect()
                })
                .collect();
            let copies: Vec<CopyOf> = (0..ROWS)
                .map(|i| CopyOf {
                    pair: format!("p_{flavour:?}"),
                    origin_key: format!("[{i}]"),
                    copy_is_target: true,
                })
                .collect();
            let updates: Vec<(Key, Row)> = (0..ROWS)
                .map(|i| {
                    let mut row = rows[i].clone();
                    row.insert("qty".into(), Value::Int(-(i as i64)));
                    row.insert("note".into(), Value::Text(format!("updated {i}")));
                    (Key(vec![Value::Int(i as i64 + 1)]), row)
                })
                .collect();
            let keys: Vec<Key> = updates.iter().map(|(k, _)| k.clone()).collect();
            for (table, by_one) in [(&tables[0], true), (&tables[1], false)] {
                for call in [
                    Call::InsertCopies(&rows, &copies),
                    Call::UpdateMany(&updates),
                    Call::FetchMany(&keys),
                    Call::DeleteMany(&keys),
                ] {
                    measure(&connector, table, call, by_one).await;
                }
            }
        }
        admin
            .query_drop(format!("DROP DATABASE `{name}`"))
            .await
            .unwrap();
        admin.disconnect().await.unwrap();
    }
}
