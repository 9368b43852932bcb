//! The `mssql` engine: Microsoft SQL Server 2016 and later, through tiberius.
//!
//! # What is verified, and what is not
//!
//! **Never run against a live SQL Server.** No server could run where this
//! connector was written (no Docker, no Microsoft packages), so not one
//! statement below has been executed by SQL Server. What the tests prove:
//!
//! - Unit tests (`cargo test -p tandem-connectors mssql`) check the exact
//!   T-SQL text the connector generates: the install script (schema, change
//!   table, mapping table, version row), the uninstall script (every
//!   `tandem_capture_%` trigger, then tables and schema), the capture
//!   trigger (set-based D/U/I logic, the key JSON of every type, the byte
//!   comparison of text keys, the session-context check), every apply
//!   statement (insert with `OUTPUT ... INTO` a table variable, update and
//!   delete counting matched rows, `UPDLOCK` fetch, keyset scan, fetch by a
//!   key list, the id map), the quoting of odd names (`[we]]ird ü]`, quotes
//!   in literals, template placeholders and statement separators in names),
//!   URL parsing and password redaction, the error-number classification,
//!   and the value conversions both ways (tiberius `ColumnData` to canonical
//!   `Value` and back, typed NULLs, ranges, `datetime`'s 1/300 s rounding),
//!   including that the key texts SQL Server's documented CONVERT styles
//!   print decode to the values read from the columns.
//! - A refused connection is checked for real (it needs no server).
//! - The integration tests in `connectors/tests/mssql.rs` cover everything
//!   the other engines' tests cover, but run only when
//!   `TANDEM_TEST_MSSQL_URL` is set; without it they print `SKIPPED` and
//!   pass. So far they have never run.
//!
//! Not verified, and worth checking first on a real server: that every
//! generated statement parses (`CREATE OR ALTER TRIGGER`, `STRING_ESCAPE`,
//! `CONVERT` styles 3, 23, 126, 127, `SWITCHOFFSET`, the uninstall cursor);
//! the exact texts the CONVERT styles print; that install twice leaves the
//! catalog as once and uninstall as before; that `sp_set_session_context`
//! suppresses echo and never leaks through the pool; lock and deadlock
//! behaviour (`UPDLOCK`, `READPAST`, `LOCK_TIMEOUT`, `XACT_STATE()` after an
//! error); `IDENTITY_INSERT` inside `sp_executesql`; and tiberius' wire
//! handling of every type (notably `datetimeoffset`, `time`, `money`).
//!
//! # Design
//!
//! - Names: `schema.table` in the config (split at the first dot), `dbo`
//!   when no schema is given; identifiers in brackets, `]` doubled.
//! - Capture: one set-based `AFTER INSERT, UPDATE, DELETE` trigger per table
//!   writes keys as JSON arrays into `tandem.changes`; polled.
//! - Echo: [`Connector::begin`] sets the session context key
//!   `tandem.applying`; the triggers skip sessions that carry it.
//! - Values are bound parameters of the column's own type; decimals travel
//!   as text cast in SQL, so they stay exact (see `types`).
//!
//! Files: `client` (URL, pool, session, errors), `schema` (describe),
//! `types` (values), `install` (scripts), `capture` (change rows), `apply`
//! (the applying transaction and row SQL).

mod apply;
mod capture;
mod client;
mod install;
mod schema;
pub(crate) mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tiberius::ColumnData;

use self::apply::{key_columns, scan_sql, select_by_keys_sql, MssqlTransaction};
use self::client::{Client, Param, DEFAULT_SCHEMA, SQL};
use self::types::{key_params, read_row};
use crate::connector::{
    CapturedChange, Connector, EndpointConfig, IdMapRow, Installation, RowCount, Transaction,
};
use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{TableName, TableSchema};
use crate::value::{Key, Row};

/// Most parameters of one statement (SQL Server takes 2100).
const MAX_PARAMS: usize = 2000;

/// Most keys looked up by one statement.
const FETCH_CHUNK: usize = 500;

/// Connects to SQL Server and returns the connector.
pub async fn connect(config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    Ok(Arc::new(MssqlConnector::connect(config).await?))
}

/// A SQL Server database, reached through a pool.
#[derive(Debug)]
pub struct MssqlConnector {
    client: Client,
}

impl MssqlConnector {
    /// Connects (see [`connect`]) and keeps the concrete type.
    pub async fn connect(config: &EndpointConfig) -> Result<MssqlConnector> {
        Ok(MssqlConnector {
            client: Client::open(config).await?,
        })
    }
}

/// The configured name as a [`TableName`]: `schema.table` splits at the
/// first dot, a name without one is in `dbo`.
pub fn table_name(configured: &str) -> TableName {
    match configured.split_once('.') {
        Some((schema, name)) => TableName::new(Some(schema), name),
        None => TableName::new(Some(DEFAULT_SCHEMA), configured),
    }
}

#[async_trait]
impl Connector for MssqlConnector {
    fn engine(&self) -> Engine {
        Engine::Mssql
    }

    fn table_name(&self, configured: &str) -> TableName {
        table_name(configured)
    }

    async fn list_tables(&self) -> Result<Vec<TableName>> {
        schema::list_tables(&self.client).await
    }

    async fn describe(&self, table: &TableName) -> Result<TableSchema> {
        schema::describe(&self.client, table).await
    }

    async fn install_script(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        let installed = install::installed_version(&self.client).await?;
        install::install_statements(installed, tables)
    }

    async fn uninstall_script(&self, _tables: &[TableSchema]) -> Result<Vec<String>> {
        // Drops every tandem_capture_ trigger of the database, configured
        // tables or not.
        Ok(install::uninstall_statements())
    }

    async fn run_script(&self, statements: &[String]) -> Result<()> {
        install::run_script(&self.client, statements).await
    }

    async fn installation(&self, tables: &[TableSchema]) -> Result<Installation> {
        install::installation(&self.client, tables).await
    }

    async fn read_changes(
        &self,
        tables: &[TableName],
        limit: usize,
    ) -> Result<Vec<CapturedChange>> {
        capture::read_changes(&self.client, tables, limit).await
    }

    async fn delete_changes(&self, seqs: &[i64]) -> Result<()> {
        capture::delete_changes(&self.client, seqs).await
    }

    fn generated_key_fix(&self, table: &TableSchema) -> Option<String> {
        // SQL Server cannot add IDENTITY to an existing column: a new table
        // (or column) is needed, so there is no one statement to give.
        let _ = table;
        None
    }

    async fn missing_privileges(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        let user = self
            .client
            .rows("SELECT USER_NAME()", Vec::new())
            .await?
            .first()
            .and_then(|r| r.get::<&str, _>(0).map(str::to_owned))
            .unwrap_or_else(|| "<the agent's user>".to_owned());
        for table in tables {
            let name = SQL.table(&table.name);
            // CREATE TRIGGER needs ALTER on the table.
            let sql = "SELECT HAS_PERMS_BY_NAME(@P1, 'OBJECT', 'SELECT'), HAS_PERMS_BY_NAME(@P1, 'OBJECT', 'INSERT'), \
                       HAS_PERMS_BY_NAME(@P1, 'OBJECT', 'UPDATE'), HAS_PERMS_BY_NAME(@P1, 'OBJECT', 'DELETE'), \
                       HAS_PERMS_BY_NAME(@P1, 'OBJECT', 'ALTER')";
            let rows = self
                .client
                .rows(
                    sql,
                    vec![Param(ColumnData::String(Some(name.clone().into())))],
                )
                .await?;
            let Some(row) = rows.first() else { continue };
            let lacking: Vec<&str> = ["SELECT", "INSERT", "UPDATE", "DELETE", "ALTER"]
                .iter()
                .enumerate()
                .filter(|(i, _)| row.get::<i32, _>(*i) != Some(1))
                .map(|(_, p)| *p)
                .collect();
            if !lacking.is_empty() {
                missing.push(format!(
                    "user {user} lacks {} on table {}: GRANT {} ON {name} TO {};",
                    lacking.join(", "),
                    table.name,
                    lacking.join(", "),
                    client::SQL.ident(&user)
                ));
            }
        }
        Ok(missing)
    }

    async fn count_changes(&self, tables: &[TableName]) -> Result<Vec<(String, u64)>> {
        capture::count_changes(&self.client, tables).await
    }

    async fn fetch_rows(&self, table: &TableSchema, keys: &[Key]) -> Result<Vec<Row>> {
        let context = |e: ConnectorError| e.context(format!("cannot read table {}", table.name));
        let key = key_columns(table).map_err(context)?;
        // Keys with a NULL name no row; each key once.
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let unique: Vec<&Key> = keys
            .iter()
            .filter(|k| !k.has_null() && seen.insert(k.encode()))
            .collect();
        let mut rows = Vec::with_capacity(unique.len());
        if unique.is_empty() {
            return Ok(rows);
        }
        let chunk_size = FETCH_CHUNK.min(MAX_PARAMS / key.len()).max(1);
        let mut conn = self.client.conn().await?;
        for chunk in unique.chunks(chunk_size) {
            let mut params = Vec::with_capacity(chunk.len() * key.len());
            for k in chunk {
                params.extend(key_params(table, k).map_err(context)?);
            }
            let sql = select_by_keys_sql(table, &key, chunk.len());
            let found = client::query_rows(&mut conn, &sql, params)
                .await
                .map_err(|e| context(client::classify(e)))?;
            for row in found {
                rows.push(read_row(table, row)?);
            }
        }
        Ok(rows)
    }

    async fn scan(
        &self,
        table: &TableSchema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let context = |e: ConnectorError| e.context(format!("cannot scan table {}", table.name));
        let key = key_columns(table).map_err(context)?;
        let mut params = match after {
            Some(k) => key_params(table, k).map_err(context)?,
            None => Vec::new(),
        };
        params.push(Param(ColumnData::I64(Some(
            i64::try_from(limit).unwrap_or(i64::MAX),
        ))));
        let found = self
            .client
            .rows(&scan_sql(table, &key, after.is_some()), params)
            .await
            .map_err(context)?;
        found.into_iter().map(|row| read_row(table, row)).collect()
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<RowCount> {
        let rows = self
            .client
            .rows(
                "SELECT OBJECT_ID(@P1, N'U'), \
                 (SELECT CAST(SUM(p.rows) AS bigint) FROM sys.partitions AS p \
                  WHERE p.object_id = OBJECT_ID(@P1, N'U') AND p.index_id IN (0, 1))",
                vec![Param(ColumnData::String(Some(
                    SQL.table(&table.name).into(),
                )))],
            )
            .await
            .map_err(|e| e.context(format!("cannot estimate the rows of table {}", table.name)))?;
        let row = rows.first();
        if row.and_then(|r| r.get::<i32, _>(0)).is_none() {
            return Err(ConnectorError::schema(format!(
                "table {} does not exist in database {}",
                client::display_name(&table.name),
                self.client.database
            )));
        }
        let count: Option<i64> = row.and_then(|r| r.get(1));
        let estimate = u64::try_from(count.unwrap_or(0)).unwrap_or(0);
        if estimate >= crate::connector::EXACT_COUNT_BELOW {
            return Ok(RowCount::estimated(estimate));
        }
        // sys.partitions is documented as approximate: a small table is
        // counted.
        let counted = self
            .client
            .rows(
                &format!("SELECT COUNT_BIG(*) FROM {}", SQL.table(&table.name)),
                Vec::new(),
            )
            .await
            .map_err(|e| e.context(format!("cannot count the rows of table {}", table.name)))?;
        let rows: Option<i64> = counted.first().and_then(|r| r.get(0));
        Ok(RowCount::counted(
            u64::try_from(rows.unwrap_or(0)).unwrap_or(0),
        ))
    }

    async fn read_id_map_page(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<IdMapRow>> {
        // The columns' binary collation orders as the keys' bytes do.
        let limit = Param(ColumnData::I64(Some(limit as i64)));
        let (sql, params) = match after {
            None => (
                "SELECT TOP (@P1) pair, source_key, target_key FROM tandem.id_map \
                 ORDER BY pair, source_key",
                vec![limit],
            ),
            Some((pair, source_key)) => (
                "SELECT TOP (@P1) pair, source_key, target_key FROM tandem.id_map \
                 WHERE pair > @P2 OR (pair = @P2 AND source_key > @P3) \
                 ORDER BY pair, source_key",
                vec![
                    limit,
                    Param(ColumnData::String(Some(pair.to_owned().into()))),
                    Param(ColumnData::String(Some(source_key.to_owned().into()))),
                ],
            ),
        };
        let rows = self
            .client
            .rows(sql, params)
            .await
            .map_err(|e| e.context("cannot read tandem.id_map"))?;
        let text = |r: &tiberius::Row, i: usize| r.get::<&str, _>(i).unwrap_or_default().to_owned();
        Ok(rows
            .iter()
            .map(|r| IdMapRow {
                pair: text(r, 0),
                source_key: text(r, 1),
                target_key: text(r, 2),
            })
            .collect())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(MssqlTransaction::begin(&self.client).await?))
    }

    async fn wait_for_changes(&self, timeout: Duration) {
        capture::wait_for_changes(&self.client, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_names_split_at_the_first_dot() {
        assert_eq!(table_name("orders"), TableName::new(Some("dbo"), "orders"));
        assert_eq!(
            table_name("sales.orders"),
            TableName::new(Some("sales"), "orders")
        );
        assert_eq!(table_name("a.b.c"), TableName::new(Some("a"), "b.c"));
        assert_eq!(
            table_name("Customer \"Orders\" ü"),
            TableName::new(Some("dbo"), "Customer \"Orders\" ü")
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connection_error() {
        let config = EndpointConfig {
            engine: Engine::Mssql,
            url: "mssql://sa:hunter2@127.0.0.1:1/master".to_owned(),
            password: None,
            poll_interval: Duration::from_millis(50),
            max_connections: 1,
            tls: crate::TlsConfig::disabled(),
            http: None,
        };
        let err = connect(&config)
            .await
            .err()
            .expect("nothing listens on port 1");
        assert_eq!(err.kind(), crate::ErrorKind::Connection);
        assert_eq!(
            err.to_string(),
            "cannot connect to SQL Server at 127.0.0.1:1: connection refused"
        );
        assert!(!format!("{err:?}").contains("hunter2"));
    }
}
