//! The applying [`Transaction`], and the SQL that reads and writes rows by
//! key (also used by `fetch_rows` and `scan`).
//!
//! [`MssqlTransaction::begin`] sets the session context key
//! `tandem.applying` to 1 and begins a transaction; the capture triggers
//! skip sessions that carry it. Commit and rollback clear it again (the
//! context is not transactional). A session whose state is in doubt (a
//! failed reset, a transaction dropped unfinished) is taken out of the pool
//! and closed, which makes the server roll back.
//!
//! SQL Server refuses `OUTPUT` without `INTO` on a table with triggers, so
//! inserted keys and affected rows are collected in table variables
//! (`OUTPUT ... INTO @tandem_key`) and selected from there.

use async_trait::async_trait;
use deadpool::managed::Object;
use tiberius::error::Error as TdsError;
use tiberius::ColumnData;

use super::client::{batch, classify, query_rows, Client, Conn, Param, SESSION_RESET, SQL};
use super::types::{key_params, param_expr, read_expr, read_row, read_values, write_value};
use crate::connector::{IdMapRow, Transaction};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::{Column, DataType, TableSchema};
use crate::value::{Key, Row, Value};

/// The one savepoint name (nesting is not needed).
const SAVEPOINT: &str = "tandem_sp";

/// Marks the session as the agent's and begins the transaction.
pub(crate) const BEGIN: &str =
    "EXEC sys.sp_set_session_context @key = N'tandem.applying', @value = 1; BEGIN TRANSACTION";

/// Removes a pair's mapping rows naming the source or the target key.
pub(crate) const FORGET_LINK: &str =
    "DELETE FROM tandem.id_map WHERE pair = @P1 AND (source_key = @P2 OR target_key = @P3)";

/// Replaces a pair's mapping rows naming either key by one row.
pub(crate) const RECORD_LINK: &str =
    "DELETE FROM tandem.id_map WHERE pair = @P1 AND (source_key = @P2 OR target_key = @P3); \
     INSERT INTO tandem.id_map (pair, source_key, target_key) VALUES (@P1, @P2, @P3);";

/// The key columns, all described; a table without a key is a schema error
/// (its rows cannot be addressed).
pub(crate) fn key_columns(table: &TableSchema) -> Result<Vec<&Column>> {
    if table.primary_key.is_empty() {
        return Err(ConnectorError::schema(format!(
            "table {} has no primary key",
            table.name
        )));
    }
    let columns: Vec<&Column> = table.key_columns().collect();
    if columns.len() != table.primary_key.len() {
        return Err(ConnectorError::internal(format!(
            "the primary key of table {} names a column it does not describe",
            table.name
        )));
    }
    Ok(columns)
}

/// Every column of `table`, in catalog order, read through alias `t`.
pub(crate) fn select_list(table: &TableSchema) -> String {
    table
        .columns
        .iter()
        .map(|c| read_expr(c, &format!("t.{}", SQL.ident(&c.name))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `t.[k1] = @P{first} AND t.[k2] = CAST(@P{first + 1} AS decimal(38, 2))`.
pub(crate) fn key_match(key: &[&Column], alias: Option<&str>, first: usize) -> String {
    key.iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{} = {}",
                SQL.column(alias, &c.name),
                param_expr(first + i, c)
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn key_order(key: &[&Column]) -> String {
    key.iter()
        .map(|c| SQL.column(Some("t"), &c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows with any of `count` keys, in key order: `IN (...)` for one key
/// column, a join with a `VALUES` list for several (SQL Server has no row
/// value comparisons).
pub(crate) fn select_by_keys_sql(table: &TableSchema, key: &[&Column], count: usize) -> String {
    let width = key.len();
    let source = SQL.table(&table.name);
    let select = select_list(table);
    let order = key_order(key);
    if let [column] = key {
        let params: Vec<String> = (1..=count).map(|n| param_expr(n, column)).collect();
        return format!(
            "SELECT {select} FROM {source} AS t WHERE {} IN ({}) ORDER BY {order}",
            SQL.column(Some("t"), &column.name),
            params.join(", ")
        );
    }
    let tuples: Vec<String> = (0..count)
        .map(|row| {
            let params: Vec<String> = key
                .iter()
                .enumerate()
                .map(|(i, c)| param_expr(row * width + i + 1, c))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let names: Vec<String> = (1..=width).map(|i| format!("k{i}")).collect();
    let on: Vec<String> = key
        .iter()
        .zip(&names)
        .map(|(c, k)| format!("{} = k.{k}", SQL.column(Some("t"), &c.name)))
        .collect();
    format!(
        "SELECT {select} FROM {source} AS t JOIN (VALUES {}) AS k ({}) ON {} ORDER BY {order}",
        tuples.join(", "),
        names.join(", "),
        on.join(" AND ")
    )
}

/// One page of a keyset scan: the first `@P<last>` rows in key order, after
/// the key in `@P1..` when `after`.
pub(crate) fn scan_sql(table: &TableSchema, key: &[&Column], after: bool) -> String {
    let limit = if after { key.len() + 1 } else { 1 };
    let condition = if after {
        // (a > @P1) OR (a = @P1 AND b > @P2) OR ...
        let branches: Vec<String> = (0..key.len())
            .map(|last| {
                let mut parts: Vec<String> = key[..last]
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        format!(
                            "{} = {}",
                            SQL.column(Some("t"), &c.name),
                            param_expr(i + 1, c)
                        )
                    })
                    .collect();
                let c = key[last];
                parts.push(format!(
                    "{} > {}",
                    SQL.column(Some("t"), &c.name),
                    param_expr(last + 1, c)
                ));
                format!("({})", parts.join(" AND "))
            })
            .collect();
        format!(" WHERE {}", branches.join(" OR "))
    } else {
        String::new()
    };
    format!(
        "SELECT TOP (@P{limit}) {} FROM {} AS t{condition} ORDER BY {}",
        select_list(table),
        SQL.table(&table.name),
        key_order(key)
    )
}

/// The row with one key, update-locked until the transaction ends.
pub(crate) fn select_for_update_sql(table: &TableSchema, key: &[&Column]) -> String {
    format!(
        "SELECT {} FROM {} AS t WITH (UPDLOCK, ROWLOCK) WHERE {}",
        select_list(table),
        SQL.table(&table.name),
        key_match(key, Some("t"), 1)
    )
}

/// Whether a column is an identity column: generated but not always (so not
/// computed), and numeric (a NEWID() default is a uuid).
pub(crate) fn is_identity(column: &Column) -> bool {
    column.generated
        && !column.always_generated
        && matches!(column.data_type, DataType::Int | DataType::Decimal)
}

/// `INSERT` of `columns` (`@P1..` in order); the key of the new row is
/// selected from a table variable filled by `OUTPUT ... INTO`. An explicit
/// value for an identity column is let in with `IDENTITY_INSERT`.
pub(crate) fn insert_sql(table: &TableSchema, key: &[&Column], columns: &[&Column]) -> String {
    let target = SQL.table(&table.name);
    let identity = columns.iter().any(|c| is_identity(c));
    let mut sql = String::new();
    let names: Vec<String> = (1..=key.len()).map(|i| format!("k{i}")).collect();
    if !key.is_empty() {
        let declared: Vec<String> = key
            .iter()
            .zip(&names)
            .map(|(c, k)| format!("{k} {}", c.native_type))
            .collect();
        sql.push_str(&format!(
            "DECLARE @tandem_key TABLE ({});\n",
            declared.join(", ")
        ));
    }
    if identity {
        sql.push_str(&format!("SET IDENTITY_INSERT {target} ON;\n"));
    }
    sql.push_str(&format!("INSERT INTO {target}"));
    if !columns.is_empty() {
        let list = SQL.columns(columns.iter().map(|c| c.name.as_str()));
        sql.push_str(&format!(" ({list})"));
    }
    if !key.is_empty() {
        let output: Vec<String> = key
            .iter()
            .map(|c| format!("inserted.{}", SQL.ident(&c.name)))
            .collect();
        sql.push_str(&format!(
            " OUTPUT {} INTO @tandem_key ({})",
            output.join(", "),
            names.join(", ")
        ));
    }
    if columns.is_empty() {
        sql.push_str(" DEFAULT VALUES;");
    } else {
        let values: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| param_expr(i + 1, c))
            .collect();
        sql.push_str(&format!(" VALUES ({});", values.join(", ")));
    }
    if identity {
        sql.push_str(&format!("\nSET IDENTITY_INSERT {target} OFF;"));
    }
    if !key.is_empty() {
        let read: Vec<String> = key
            .iter()
            .zip(&names)
            .map(|(c, k)| read_expr(c, k))
            .collect();
        sql.push_str(&format!("\nSELECT {} FROM @tandem_key;", read.join(", ")));
    }
    sql
}

/// `UPDATE` of `columns` (`@P1..`) of the row whose key follows; selects
/// the number of rows matched (changed or not).
pub(crate) fn update_sql(table: &TableSchema, key: &[&Column], columns: &[&Column]) -> String {
    let sets: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = {}", SQL.ident(&c.name), param_expr(i + 1, c)))
        .collect();
    format!(
        "DECLARE @tandem_n TABLE (n int);\n\
         UPDATE {} SET {} OUTPUT 1 INTO @tandem_n (n) WHERE {};\n\
         SELECT COUNT(*) FROM @tandem_n;",
        SQL.table(&table.name),
        sets.join(", "),
        key_match(key, None, columns.len() + 1)
    )
}

/// Whether the row with one key exists, update-locking it.
pub(crate) fn exists_sql(table: &TableSchema, key: &[&Column]) -> String {
    format!(
        "SELECT COUNT(*) FROM {} WITH (UPDLOCK, ROWLOCK) WHERE {}",
        SQL.table(&table.name),
        key_match(key, None, 1)
    )
}

/// `DELETE` of the row with one key; selects the number of rows deleted.
pub(crate) fn delete_sql(table: &TableSchema, key: &[&Column]) -> String {
    format!(
        "DECLARE @tandem_n TABLE (n int);\n\
         DELETE FROM {} OUTPUT 1 INTO @tandem_n (n) WHERE {};\n\
         SELECT COUNT(*) FROM @tandem_n;",
        SQL.table(&table.name),
        key_match(key, None, 1)
    )
}

/// The columns of `row` to write with their parameters, unknown columns a
/// schema error, columns the server computes left out, and `skip` ones too.
fn written<'t>(
    table: &'t TableSchema,
    row: &Row,
    skip: impl Fn(&Column, &Value) -> bool,
) -> Result<(Vec<&'t Column>, Vec<Param>)> {
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

/// The first cell of the first row as a count.
fn count_of(rows: &[tiberius::Row]) -> i64 {
    rows.first()
        .and_then(|r| r.get::<i32, _>(0))
        .map(i64::from)
        .unwrap_or(0)
}

fn text_param(text: &str) -> Param {
    Param(ColumnData::String(Some(text.to_owned().into())))
}

/// One applying transaction on its own pooled session.
pub(crate) struct MssqlTransaction {
    conn: Option<Conn>,
    /// Set when the server ended or doomed the transaction (deadlock, lost
    /// session): nothing more may run, or it would run outside it.
    aborted: Option<(ErrorKind, String)>,
}

impl MssqlTransaction {
    /// Takes a pooled session, marks it and begins the transaction.
    pub(crate) async fn begin(client: &Client) -> Result<MssqlTransaction> {
        let mut conn = client.conn().await?;
        if let Err(e) = batch(&mut conn, BEGIN).await {
            drop(Object::take(conn));
            return Err(classify(e).context("cannot begin an applying transaction"));
        }
        Ok(MssqlTransaction {
            conn: Some(conn),
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
            .ok_or_else(|| ConnectorError::internal("the transaction has already ended"))
    }

    /// Classifies `err`, remembering whether it ended or doomed the
    /// transaction (`XACT_STATE()` is then not 1).
    async fn fail(&mut self, err: TdsError) -> ConnectorError {
        let err = classify(err);
        let alive = match (err.kind(), self.conn.as_mut()) {
            (ErrorKind::Connection, _) | (_, None) => false,
            (_, Some(conn)) => {
                let state = query_rows(conn, "SELECT CAST(XACT_STATE() AS int)", Vec::new()).await;
                matches!(state.as_deref(), Ok([row]) if row.get::<i32, _>(0) == Some(1))
            }
        };
        if !alive {
            self.aborted = Some((err.kind(), err.to_string()));
        }
        err
    }

    async fn rows(&mut self, sql: &str, params: Vec<Param>) -> Result<Vec<tiberius::Row>> {
        let conn = self.conn()?;
        match query_rows(conn, sql, params).await {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn control(&mut self, sql: &str) -> Result<()> {
        let conn = self.conn()?;
        match batch(conn, sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await.context(format!("cannot run {sql}"))),
        }
    }

    /// Ends the transaction (COMMIT when `commit` and nothing failed it),
    /// then rolls back whatever is left and clears the marker; a session
    /// that cannot be cleared is closed instead of pooled.
    async fn finish(mut self, commit: bool) -> Result<()> {
        let mut conn = self
            .conn
            .take()
            .ok_or_else(|| ConnectorError::internal("the transaction has already ended"))?;
        let outcome = match (&self.aborted, commit) {
            (Some((kind, why)), true) => Err(ConnectorError::new(
                *kind,
                format!("cannot commit: the transaction was ended by the server ({why})"),
            )),
            (None, true) => batch(&mut conn, "COMMIT TRANSACTION")
                .await
                .map_err(|e| classify(e).context("cannot commit the transaction")),
            (_, false) => Ok(()),
        };
        if let Err(e) = batch(&mut conn, SESSION_RESET).await {
            // Closing the session rolls back whatever is still open.
            tracing::warn!(
                "closing a SQL Server session that could not be reset: {}",
                classify(e)
            );
            drop(Object::take(conn));
        }
        outcome
    }

    async fn insert_row(&mut self, table: &TableSchema, row: &Row) -> Result<Key> {
        let key = if table.primary_key.is_empty() {
            Vec::new()
        } else {
            key_columns(table)?
        };
        let key_in_row = table.key_of(row).filter(|k| !k.has_null());
        // Without a full key, NULL key values are left to the engine.
        let (columns, params) = written(table, row, |column, value| {
            key_in_row.is_none() && value.is_null() && table.primary_key.contains(&column.name)
        })?;
        let sql = insert_sql(table, &key, &columns);
        let conn = self.conn()?;
        let rows = match query_rows(conn, &sql, params).await {
            Ok(rows) => rows,
            Err(e) => {
                if columns.iter().any(|c| is_identity(c)) {
                    // The batch may have stopped before switching it off.
                    let off = format!("SET IDENTITY_INSERT {} OFF", SQL.table(&table.name));
                    let _ = batch(conn, &off).await;
                }
                return Err(self.fail(e).await);
            }
        };
        if key.is_empty() {
            return Ok(Key(Vec::new()));
        }
        let row = rows.into_iter().next().ok_or_else(|| {
            ConnectorError::internal(format!("insert into {} returned no key", table.name))
        })?;
        read_values(&table.name, key.iter().copied(), row).map(Key)
    }
}

impl Drop for MssqlTransaction {
    fn drop(&mut self) {
        // Dropped without commit or rollback: the session leaves the pool
        // and is closed, so the server rolls back and the marked session is
        // never handed out again.
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

#[async_trait]
impl Transaction for MssqlTransaction {
    async fn fetch_for_update(&mut self, table: &TableSchema, key: &Key) -> Result<Option<Row>> {
        let context =
            |e: ConnectorError| e.context(format!("lock row {key} of table {}", table.name));
        let columns = key_columns(table).map_err(context)?;
        let params = key_params(table, key).map_err(context)?;
        let rows = self
            .rows(&select_for_update_sql(table, &columns), params)
            .await
            .map_err(context)?;
        rows.into_iter()
            .next()
            .map(|r| read_row(table, r))
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
        let columns = key_columns(table).map_err(context)?;
        let key_values = key_params(table, key).map_err(context)?;
        // Key columns are not set; identity columns cannot be.
        let (written, mut params) = written(table, row, |column, _| {
            table.primary_key.contains(&column.name) || is_identity(column)
        })
        .map_err(context)?;
        let rows = if written.is_empty() {
            self.rows(&exists_sql(table, &columns), key_values)
                .await
                .map_err(context)?
        } else {
            params.extend(key_values);
            self.rows(&update_sql(table, &columns, &written), params)
                .await
                .map_err(context)?
        };
        Ok(count_of(&rows) > 0)
    }

    async fn delete(&mut self, table: &TableSchema, key: &Key) -> Result<bool> {
        let context =
            |e: ConnectorError| e.context(format!("delete row {key} of table {}", table.name));
        let columns = key_columns(table).map_err(context)?;
        let params = key_params(table, key).map_err(context)?;
        let rows = self
            .rows(&delete_sql(table, &columns), params)
            .await
            .map_err(context)?;
        Ok(count_of(&rows) > 0)
    }

    async fn record_link(&mut self, link: &IdMapRow) -> Result<()> {
        self.rows(
            RECORD_LINK,
            vec![
                text_param(&link.pair),
                text_param(&link.source_key),
                text_param(&link.target_key),
            ],
        )
        .await
        .map_err(|e| e.context(format!("cannot record a link of pair {:?}", link.pair)))?;
        Ok(())
    }

    async fn forget_link(&mut self, pair: &str, source_key: &str, target_key: &str) -> Result<()> {
        self.rows(
            FORGET_LINK,
            vec![
                text_param(pair),
                text_param(source_key),
                text_param(target_key),
            ],
        )
        .await
        .map_err(|e| e.context(format!("cannot forget a link of pair {pair:?}")))?;
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        self.control(&format!("SAVE TRANSACTION {SAVEPOINT}")).await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.control(&format!("ROLLBACK TRANSACTION {SAVEPOINT}"))
            .await
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        // SQL Server cannot release a savepoint; the next SAVE TRANSACTION
        // of the same name replaces it.
        self.conn().map(|_| ())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.finish(true).await
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        self.finish(false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TableName;

    fn column(name: &str, data_type: DataType, native: &str) -> Column {
        Column::new(name, data_type, native)
    }

    /// `[Sa]es].[we]ird ü]` keyed by `key`, with more columns.
    fn table(key: &[Column], other: &[Column]) -> TableSchema {
        TableSchema::new(
            TableName::new(Some("Sa]es"), "we]ird ü"),
            key.iter().chain(other).cloned().collect(),
            key.iter().map(|c| c.name.clone()).collect(),
        )
    }

    fn int(name: &str) -> Column {
        column(name, DataType::Int, "int")
    }

    fn dec(name: &str) -> Column {
        column(name, DataType::Decimal, "decimal(38, 2)")
    }

    fn text(name: &str) -> Column {
        column(name, DataType::Text, "nvarchar(max)")
    }

    #[test]
    fn rows_are_fetched_by_key_lists() {
        let t = table(
            &[int("Order Id")],
            &[column("m", DataType::Decimal, "money")],
        );
        let key = key_columns(&t).unwrap();
        assert_eq!(
            select_by_keys_sql(&t, &key, 3),
            "SELECT t.[Order Id], CAST(t.[m] AS decimal(19, 4)) FROM [Sa]]es].[we]]ird ü] AS t \
             WHERE t.[Order Id] IN (@P1, @P2, @P3) ORDER BY t.[Order Id]"
        );
        let t = table(&[int("a"), dec("b]")], &[text("c")]);
        let key = key_columns(&t).unwrap();
        assert_eq!(
            select_by_keys_sql(&t, &key, 2),
            "SELECT t.[a], t.[b]]], t.[c] FROM [Sa]]es].[we]]ird ü] AS t \
             JOIN (VALUES (@P1, CAST(@P2 AS decimal(38, 2))), (@P3, CAST(@P4 AS decimal(38, 2)))) AS k (k1, k2) \
             ON t.[a] = k.k1 AND t.[b]]] = k.k2 ORDER BY t.[a], t.[b]]]"
        );
    }

    #[test]
    fn scans_page_through_the_key_in_order() {
        let t = table(&[int("a"), text("b"), dec("c")], &[]);
        let key = key_columns(&t).unwrap();
        assert_eq!(
            scan_sql(&t, &key, false),
            "SELECT TOP (@P1) t.[a], t.[b], t.[c] FROM [Sa]]es].[we]]ird ü] AS t \
             ORDER BY t.[a], t.[b], t.[c]"
        );
        assert_eq!(
            scan_sql(&t, &key, true),
            "SELECT TOP (@P4) t.[a], t.[b], t.[c] FROM [Sa]]es].[we]]ird ü] AS t \
             WHERE (t.[a] > @P1) OR (t.[a] = @P1 AND t.[b] > @P2) \
             OR (t.[a] = @P1 AND t.[b] = @P2 AND t.[c] > CAST(@P3 AS decimal(38, 2))) \
             ORDER BY t.[a], t.[b], t.[c]"
        );
    }

    #[test]
    fn rows_are_locked_with_updlock() {
        let t = table(&[int("id")], &[text("v")]);
        let key = key_columns(&t).unwrap();
        assert_eq!(
            select_for_update_sql(&t, &key),
            "SELECT t.[id], t.[v] FROM [Sa]]es].[we]]ird ü] AS t WITH (UPDLOCK, ROWLOCK) \
             WHERE t.[id] = @P1"
        );
        assert_eq!(
            exists_sql(&t, &key),
            "SELECT COUNT(*) FROM [Sa]]es].[we]]ird ü] WITH (UPDLOCK, ROWLOCK) WHERE [id] = @P1"
        );
    }

    #[test]
    fn inserts_output_the_key_into_a_table_variable() {
        let mut id = int("id");
        id.generated = true;
        let t = table(
            &[id],
            &[
                text("First Name"),
                dec("total"),
                column("m", DataType::Decimal, "money"),
            ],
        );
        let key = key_columns(&t).unwrap();
        let columns = [&t.columns[1], &t.columns[2]];
        assert_eq!(
            insert_sql(&t, &key, &columns),
            "DECLARE @tandem_key TABLE (k1 int);\n\
             INSERT INTO [Sa]]es].[we]]ird ü] ([First Name], [total]) \
             OUTPUT inserted.[id] INTO @tandem_key (k1) VALUES (@P1, CAST(@P2 AS decimal(38, 2)));\n\
             SELECT k1 FROM @tandem_key;"
        );
        assert_eq!(
            insert_sql(&t, &key, &[]),
            "DECLARE @tandem_key TABLE (k1 int);\n\
             INSERT INTO [Sa]]es].[we]]ird ü] OUTPUT inserted.[id] INTO @tandem_key (k1) DEFAULT VALUES;\n\
             SELECT k1 FROM @tandem_key;"
        );
        // An explicit identity value goes in with IDENTITY_INSERT.
        assert_eq!(
            insert_sql(&t, &key, &[&t.columns[0]]),
            "DECLARE @tandem_key TABLE (k1 int);\n\
             SET IDENTITY_INSERT [Sa]]es].[we]]ird ü] ON;\n\
             INSERT INTO [Sa]]es].[we]]ird ü] ([id]) OUTPUT inserted.[id] INTO @tandem_key (k1) VALUES (@P1);\n\
             SET IDENTITY_INSERT [Sa]]es].[we]]ird ü] OFF;\n\
             SELECT k1 FROM @tandem_key;"
        );
        // A money key is declared as money and read as an exact decimal.
        let m = table(&[column("m", DataType::Decimal, "money"), text("s")], &[]);
        let key = key_columns(&m).unwrap();
        assert_eq!(
            insert_sql(&m, &key, &[&m.columns[0], &m.columns[1]]),
            "DECLARE @tandem_key TABLE (k1 money, k2 nvarchar(max));\n\
             INSERT INTO [Sa]]es].[we]]ird ü] ([m], [s]) OUTPUT inserted.[m], inserted.[s] \
             INTO @tandem_key (k1, k2) VALUES (CAST(@P1 AS money), @P2);\n\
             SELECT CAST(k1 AS decimal(19, 4)), k2 FROM @tandem_key;"
        );
        // A table without key: a plain insert.
        let keyless = table(&[], &[text("x")]);
        assert_eq!(
            insert_sql(&keyless, &[], &[&keyless.columns[0]]),
            "INSERT INTO [Sa]]es].[we]]ird ü] ([x]) VALUES (@P1);"
        );
    }

    #[test]
    fn updates_and_deletes_count_matched_rows() {
        let t = table(&[int("a"), dec("b")], &[text("v"), int("w")]);
        let key = key_columns(&t).unwrap();
        assert_eq!(
            update_sql(&t, &key, &[&t.columns[2], &t.columns[3]]),
            "DECLARE @tandem_n TABLE (n int);\n\
             UPDATE [Sa]]es].[we]]ird ü] SET [v] = @P1, [w] = @P2 OUTPUT 1 INTO @tandem_n (n) \
             WHERE [a] = @P3 AND [b] = CAST(@P4 AS decimal(38, 2));\n\
             SELECT COUNT(*) FROM @tandem_n;"
        );
        assert_eq!(
            delete_sql(&t, &key),
            "DECLARE @tandem_n TABLE (n int);\n\
             DELETE FROM [Sa]]es].[we]]ird ü] OUTPUT 1 INTO @tandem_n (n) \
             WHERE [a] = @P1 AND [b] = CAST(@P2 AS decimal(38, 2));\n\
             SELECT COUNT(*) FROM @tandem_n;"
        );
    }

    #[test]
    fn session_marker_and_id_map_statements() {
        assert_eq!(
            BEGIN,
            "EXEC sys.sp_set_session_context @key = N'tandem.applying', @value = 1; BEGIN TRANSACTION"
        );
        assert!(RECORD_LINK.starts_with(FORGET_LINK));
        assert!(RECORD_LINK.ends_with(
            "INSERT INTO tandem.id_map (pair, source_key, target_key) VALUES (@P1, @P2, @P3);"
        ));
    }

    #[test]
    fn written_columns_skip_computed_and_refuse_unknown() {
        let mut computed = int("c");
        computed.generated = true;
        computed.always_generated = true;
        let t = table(&[int("id")], &[text("v"), computed]);
        let row: Row = [
            ("c".to_owned(), Value::Int(1)),
            ("id".to_owned(), Value::Int(2)),
            ("v".to_owned(), Value::Text("x".into())),
        ]
        .into();
        let (columns, params) = written(&t, &row, |_, _| false).unwrap();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["id", "v"]);
        assert_eq!(params.len(), 2);
        let unknown: Row = [("nope".to_owned(), Value::Int(1))].into();
        let err = written(&t, &unknown, |_, _| false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Schema);
        let bad: Row = [("id".to_owned(), Value::Text("x".into()))].into();
        assert_eq!(
            written(&t, &bad, |_, _| false).unwrap_err().kind(),
            ErrorKind::Data
        );
    }

    #[test]
    fn identity_columns_are_told_from_uuid_defaults() {
        let mut id = int("id");
        id.generated = true;
        assert!(is_identity(&id));
        let mut token = column("t", DataType::Uuid, "uniqueidentifier");
        token.generated = true;
        assert!(!is_identity(&token));
        let mut computed = int("c");
        computed.generated = true;
        computed.always_generated = true;
        assert!(!is_identity(&computed));
        assert!(!is_identity(&int("plain")));
    }

    #[test]
    fn tables_without_key_cannot_be_addressed() {
        let t = table(&[], &[text("x")]);
        assert_eq!(key_columns(&t).unwrap_err().kind(), ErrorKind::Schema);
    }
}
