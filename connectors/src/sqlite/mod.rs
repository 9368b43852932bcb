//! The `sqlite` engine: SQLite 3 in-process, through rusqlite.
//!
//! - The URL names an existing file: `sqlite:///absolute/path.db`. Tandem
//!   never creates a database; `config.password` is ignored.
//! - The file is the namespace: a table is `TableName { schema: None, name }`
//!   and Tandem's own tables (`tandem_changes`, `tandem_id_map`,
//!   `tandem_version`, `tandem_applying`) live beside the synced ones.
//! - Capture: three triggers per table, polled. Echo: the agent's write
//!   transactions hold a marker row the triggers look for (see [`apply`]).
//! - rusqlite is blocking: every call runs on a blocking thread with a
//!   pooled connection (see [`client`]). The journal mode is the database's.
//! - Values are converted by the column's declared type (see [`types`]).
//!   A key is looked up in every form an application commonly stores it in
//!   (a timestamp with a `T` or a `Z`, a UUID without hyphens or as bytes),
//!   so a key read from a row finds that row again.
//!
//! Files: `client` (URL, pool, errors), `schema` (describe), `types`
//! (values), `install` (scripts), `capture` (change rows), `apply` (the
//! applying transaction and row SQL).

mod apply;
mod capture;
mod client;
mod install;
mod schema;
pub(crate) mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::TransactionBehavior;

use self::apply::{row_of, scan_sql, select_by_keys, stored_key, SqliteTransaction};
use self::client::{classify, int_of, query, quote_ident, text_of, Client};
use crate::connector::{
    CapturedChange, Connector, EndpointConfig, IdMapRow, Installation, RowCount, Transaction,
    EXACT_COUNT_BELOW,
};
use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{TableName, TableSchema};
use crate::value::{Key, Row};

/// Most keys looked up by one statement (each value may come in a few
/// stored forms, each a parameter).
const FETCH_CHUNK: usize = 200;

/// Connects to a SQLite database file and returns the connector.
pub async fn connect(config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    Ok(Arc::new(SqliteConnector::connect(config).await?))
}

/// A SQLite database file, reached through a pool of connections.
#[derive(Debug)]
pub struct SqliteConnector {
    client: Client,
}

impl SqliteConnector {
    /// Connects (see [`connect`]) and keeps the concrete type.
    pub async fn connect(config: &EndpointConfig) -> Result<SqliteConnector> {
        Ok(SqliteConnector {
            client: Client::open(config).await?,
        })
    }

    fn database(&self) -> String {
        self.client.path.display().to_string()
    }
}

#[async_trait]
impl Connector for SqliteConnector {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn table_name(&self, configured: &str) -> TableName {
        TableName::new(None, configured)
    }

    async fn list_tables(&self) -> Result<Vec<TableName>> {
        self.client
            .run(|conn| schema::list_tables(conn))
            .await
            .map_err(|e| e.context("list the tables"))
    }

    async fn describe(&self, table: &TableName) -> Result<TableSchema> {
        let (table, database) = (table.clone(), self.database());
        let shown = table.to_string();
        self.client
            .run(move |conn| schema::describe(conn, &table, &database))
            .await
            .map_err(|e| match e.kind() {
                crate::ErrorKind::Schema => e,
                _ => e.context(format!("describe table `{shown}`")),
            })
    }

    async fn install_script(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        let (installed, present) = self
            .client
            .run(|conn| Ok((install::installed_version(conn)?, install::triggers(conn)?)))
            .await?;
        install::install_statements(tables, installed, &present)
    }

    async fn uninstall_script(&self, _tables: &[TableSchema]) -> Result<Vec<String>> {
        // Every tandem_ trigger of the database, configured tables or not.
        let triggers = self
            .client
            .run(|conn| install::installed_triggers(conn))
            .await?;
        Ok(install::uninstall_statements(&triggers))
    }

    async fn run_script(&self, statements: &[String]) -> Result<()> {
        // DDL is transactional in SQLite: the whole script or nothing.
        let statements = statements.to_vec();
        self.client
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(classify)?;
                for (i, statement) in statements.iter().enumerate() {
                    tx.execute_batch(statement).map_err(|e| {
                        classify(e).context(format!(
                            "statement {} of {} of the script",
                            i + 1,
                            statements.len()
                        ))
                    })?;
                }
                tx.commit()
                    .map_err(|e| classify(e).context("commit the script"))
            })
            .await
    }

    async fn installation(&self, tables: &[TableSchema]) -> Result<Installation> {
        let tables = tables.to_vec();
        self.client
            .run(move |conn| install::installation(conn, &tables))
            .await
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

    async fn count_changes(&self, tables: &[TableName]) -> Result<Vec<(String, u64)>> {
        capture::count_changes(&self.client, tables).await
    }

    async fn fetch_rows(&self, table: &TableSchema, keys: &[Key]) -> Result<Vec<Row>> {
        let context = |e: ConnectorError| e.context(format!("read rows of table {}", table.name));
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let lookups = keys
            .chunks(FETCH_CHUNK)
            .map(|chunk| select_by_keys(table, chunk))
            .collect::<Result<Vec<_>>>()
            .map_err(context)?;
        // One read transaction: every chunk sees the same state.
        let found = self
            .client
            .run(move |conn| {
                let tx = conn.transaction().map_err(classify)?;
                let mut found = Vec::new();
                for (sql, params) in &lookups {
                    found.extend(query(&tx, sql, params)?);
                }
                Ok(found)
            })
            .await
            .map_err(context)?;
        found
            .into_iter()
            .map(|values| row_of(table, values))
            .collect()
    }

    async fn scan(
        &self,
        table: &TableSchema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let context = |e: ConnectorError| e.context(format!("scan table {}", table.name));
        if table.primary_key.is_empty() {
            return Err(ConnectorError::schema(format!(
                "table {} has no primary key and cannot be scanned in key order",
                table.name
            )));
        }
        let after = after
            .map(|key| stored_key(table, key))
            .transpose()
            .map_err(context)?;
        let sql = scan_sql(table, after.is_some());
        let limit = SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
        let found = self
            .client
            .run(move |conn| {
                let tx = conn.transaction().map_err(classify)?;
                let mut params = Vec::new();
                if let Some((lookup, forms, written)) = after {
                    // Continue after the key as the table stores it (its
                    // order is the stored values'); a key no longer there
                    // continues after the form Tandem writes.
                    params = query(&tx, &lookup, &forms)?.pop().unwrap_or(written);
                }
                params.push(limit);
                query(&tx, &sql, &params)
            })
            .await
            .map_err(context)?;
        found
            .into_iter()
            .map(|values| row_of(table, values))
            .collect()
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<RowCount> {
        let name = table.name.name.clone();
        self.client
            .run(move |conn| estimate(conn, &name))
            .await
            .map_err(|e| e.context(format!("estimate rows of table {}", table.name)))
    }

    async fn read_id_map_page(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<IdMapRow>> {
        let limit = SqlValue::Integer(limit as i64);
        let (sql, params) = match after {
            None => (
                "SELECT pair, source_key, target_key FROM tandem_id_map \
                 ORDER BY pair, source_key LIMIT ?",
                vec![limit],
            ),
            Some((pair, source_key)) => (
                "SELECT pair, source_key, target_key FROM tandem_id_map \
                 WHERE (pair, source_key) > (?, ?) ORDER BY pair, source_key LIMIT ?",
                vec![
                    SqlValue::Text(pair.to_owned()),
                    SqlValue::Text(source_key.to_owned()),
                    limit,
                ],
            ),
        };
        let rows = self
            .client
            .rows(sql.to_owned(), params)
            .await
            .map_err(|e| e.context("read tandem_id_map"))?;
        Ok(rows
            .iter()
            .map(|r| IdMapRow {
                pair: text_of(&r[0]),
                source_key: text_of(&r[1]),
                target_key: text_of(&r[2]),
            })
            .collect())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let conn = self.client.conn().await?;
        Ok(Box::new(SqliteTransaction::begin(conn).await?))
    }

    async fn wait_for_changes(&self, timeout: Duration) {
        capture::wait_for_changes(&self.client, timeout).await
    }
}

/// The row count for progress reports: `ANALYZE`'s statistics when there
/// are some, else the span of rowids (two index probes); a count when
/// either says the table is small, or for a `WITHOUT ROWID` table.
fn estimate(conn: &rusqlite::Connection, table: &str) -> Result<RowCount> {
    let name = || vec![SqlValue::Text(table.to_owned())];
    let number = |sql: &str| -> Result<u64> {
        Ok(query(conn, sql, &[])?
            .first()
            .and_then(|r| int_of(&r[0]))
            .unwrap_or(0)
            .max(0) as u64)
    };
    let quoted = quote_ident(table);
    let count = || number(&format!("SELECT count(*) FROM {quoted}")).map(RowCount::counted);
    if install::has_table(conn, "sqlite_stat1")? {
        let stats = query(
            conn,
            "SELECT stat FROM sqlite_stat1 WHERE tbl = ?1 ORDER BY idx IS NOT NULL",
            &name(),
        )?;
        let first = stats.first().and_then(|r| {
            text_of(&r[0])
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        });
        if let Some(rows) = first {
            return if rows >= EXACT_COUNT_BELOW {
                Ok(RowCount::estimated(rows))
            } else {
                count()
            };
        }
    }
    let without_rowid = query(
        conn,
        "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
        &name(),
    )?
    .first()
    .and_then(|r| int_of(&r[0]))
    .unwrap_or(0)
        != 0;
    if without_rowid {
        return count();
    }
    let span = number(&format!(
        "SELECT coalesce(max(rowid) - min(rowid) + 1, 0) FROM {quoted}"
    ))?;
    if span >= EXACT_COUNT_BELOW {
        Ok(RowCount::estimated(span))
    } else {
        count()
    }
}
