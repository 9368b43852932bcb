//! The `mysql` engine: MySQL 8 and MariaDB 10.5+, through mysql_async.
//!
//! The database of the URL is the namespace: a table is `TableName { schema:
//! None, name }`, and Tandem's own tables (`tandem_changes`, `tandem_id_map`,
//! `tandem_version`) live beside the synced ones. Changes are captured by
//! three triggers per table and polled. The flavour (MariaDB or MySQL) is
//! read once at connect and decides the SQL where the two differ.
//!
//! Files: `client` (URL, pool, session, errors), `schema` (describe),
//! `types` (values), `install` (scripts), `capture` (change rows), `apply`
//! (the applying transaction and row SQL), `batch` (its multi-row
//! statements).

mod apply;
mod batch;
mod capture;
mod client;
mod install;
mod schema;
pub(crate) mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::Value as MyValue;

use self::apply::{key_params, row_of, scan_sql, select_by_keys_sql, MysqlTransaction};
pub use self::client::Flavour;
use self::client::{int_of, text_of, Client};
use crate::connector::{
    CapturedChange, Connector, EndpointConfig, IdMapRow, Installation, RowCount, Transaction,
    EXACT_COUNT_BELOW,
};
use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{TableName, TableSchema};
use crate::value::{Key, Row, Value};

/// Most keys looked up by one statement.
const FETCH_CHUNK: usize = 500;

/// Connects to MySQL or MariaDB and returns the connector.
pub async fn connect(config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    Ok(Arc::new(MysqlConnector::connect(config).await?))
}

/// A MySQL or MariaDB database, reached through a pool.
#[derive(Debug)]
pub struct MysqlConnector {
    client: Client,
}

impl MysqlConnector {
    /// Connects (see [`connect`]) and keeps the concrete type.
    pub async fn connect(config: &EndpointConfig) -> Result<MysqlConnector> {
        Ok(MysqlConnector {
            client: Client::open(config).await?,
        })
    }

    /// MariaDB or MySQL, as the server said at connect.
    pub fn flavour(&self) -> Flavour {
        self.client.flavour
    }

    /// Uses the SQL of `flavour` whatever the server said: lets the tests
    /// run the MySQL 8 statements against MariaDB, which understands both.
    #[doc(hidden)]
    pub fn with_flavour(mut self, flavour: Flavour) -> Self {
        self.client.flavour = flavour;
        self
    }
}

#[async_trait]
impl Connector for MysqlConnector {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn table_name(&self, configured: &str) -> TableName {
        TableName::new(None, configured)
    }

    async fn list_tables(&self) -> Result<Vec<TableName>> {
        schema::list_tables(&self.client).await
    }

    async fn describe(&self, table: &TableName) -> Result<TableSchema> {
        schema::describe(&self.client, table).await
    }

    async fn install_script(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        let installed = install::installed_version(&self.client).await?;
        install::install_statements(self.client.flavour, installed, tables)
    }

    async fn uninstall_script(&self, _tables: &[TableSchema]) -> Result<Vec<String>> {
        // Every tandem_ trigger of the database, configured tables or not.
        let triggers = install::installed_triggers(&self.client).await?;
        Ok(install::uninstall_statements(&triggers))
    }

    async fn run_script(&self, statements: &[String]) -> Result<()> {
        // DDL commits by itself in MySQL: the statements just run in order.
        let mut conn = self.client.conn().await?;
        for (i, statement) in statements.iter().enumerate() {
            conn.query_drop(statement.as_str()).await.map_err(|e| {
                client::classify(e).context(format!(
                    "statement {} of {} of the script",
                    i + 1,
                    statements.len()
                ))
            })?;
        }
        Ok(())
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

    async fn count_changes(&self, tables: &[TableName]) -> Result<Vec<(String, u64)>> {
        capture::count_changes(&self.client, tables).await
    }

    fn generated_key_fix(&self, table: &TableSchema) -> Option<String> {
        let [key] = table.primary_key.as_slice() else {
            return None;
        };
        let column = table.column(key)?;
        matches!(column.data_type, crate::DataType::Int).then(|| {
            format!(
                "ALTER TABLE {} MODIFY {} {} NOT NULL AUTO_INCREMENT;",
                client::SQL.table(&table.name),
                client::SQL.ident(key),
                column.native_type.to_uppercase()
            )
        })
    }

    async fn missing_privileges(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        // Privileges can come from the global, database or table level: the
        // union of the three is what the user has on a table.
        let sql = "SELECT p.PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES p \
                   WHERE p.GRANTEE = CONCAT(\"'\", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), \"'@'\", SUBSTRING_INDEX(CURRENT_USER(), '@', -1), \"'\") \
                   UNION SELECT s.PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES s \
                   WHERE s.TABLE_SCHEMA = DATABASE() AND s.GRANTEE = CONCAT(\"'\", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), \"'@'\", SUBSTRING_INDEX(CURRENT_USER(), '@', -1), \"'\")";
        let rows = self.client.rows(sql, Vec::new()).await?;
        let broad: Vec<String> = rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter_map(|v| match v {
                mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            })
            .collect();
        let mut missing = Vec::new();
        for table in tables {
            let rows = self
                .client
                .rows(
                    "SELECT t.PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES t \
                     WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME = ? \
                     AND t.GRANTEE = CONCAT(\"'\", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), \"'@'\", SUBSTRING_INDEX(CURRENT_USER(), '@', -1), \"'\")",
                    vec![mysql_async::Value::from(table.name.name.clone())],
                )
                .await?;
            let on_table: Vec<String> = rows
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .filter_map(|v| match v {
                    mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                })
                .collect();
            let lacking: Vec<&str> = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRIGGER"]
                .into_iter()
                .filter(|p| !broad.iter().chain(&on_table).any(|g| g == p))
                .collect();
            if !lacking.is_empty() {
                missing.push(format!(
                    "the agent's user lacks {} on table {}: GRANT {} ON {} TO <the agent's user>;",
                    lacking.join(", "),
                    table.name,
                    lacking.join(", "),
                    client::SQL.table(&table.name)
                ));
            }
        }
        Ok(missing)
    }

    async fn find_rows(
        &self,
        table: &TableSchema,
        columns: &[String],
        values: &[Value],
    ) -> Result<Vec<Row>> {
        if values.iter().any(Value::is_null) || columns.is_empty() {
            return Ok(Vec::new());
        }
        let context = |e: ConnectorError| e.context(format!("read rows of table {}", table.name));
        let mut params = Vec::with_capacity(values.len());
        for (name, value) in columns.iter().zip(values) {
            let column = table.column(name).ok_or_else(|| {
                ConnectorError::schema(format!("table {} has no column {name}", table.name))
            })?;
            params.push(types::write_value(&table.name, column, value).map_err(context)?);
        }
        let sql = format!(
            "{} WHERE {}",
            apply::select_all_sql(table),
            client::SQL.key_match(columns.iter().map(String::as_str), 1)
        );
        let found = self.client.rows(&sql, params).await.map_err(context)?;
        found
            .into_iter()
            .map(|values| row_of(table, values))
            .collect()
    }

    async fn fetch_rows(&self, table: &TableSchema, keys: &[Key]) -> Result<Vec<Row>> {
        let context = |e: ConnectorError| e.context(format!("read rows of table {}", table.name));
        let mut rows = Vec::with_capacity(keys.len());
        if keys.is_empty() {
            return Ok(rows);
        }
        let mut conn = self.client.conn().await?;
        for chunk in keys.chunks(FETCH_CHUNK) {
            let mut params = Vec::with_capacity(chunk.len() * table.primary_key.len());
            for key in chunk {
                params.extend(key_params(table, key).map_err(context)?);
            }
            let found =
                client::exec_rows(&mut conn, &select_by_keys_sql(table, chunk.len()), params)
                    .await
                    .map_err(context)?;
            for values in found {
                rows.push(row_of(table, values)?);
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
        let context = |e: ConnectorError| e.context(format!("scan table {}", table.name));
        if table.primary_key.is_empty() {
            return Err(ConnectorError::schema(format!(
                "table {} has no primary key and cannot be scanned in key order",
                table.name
            )));
        }
        let mut params = match after {
            Some(key) => key_params(table, key).map_err(context)?,
            None => Vec::new(),
        };
        params.push(MyValue::UInt(limit as u64));
        let found = self
            .client
            .rows(&scan_sql(table, after.is_some()), params)
            .await
            .map_err(context)?;
        found
            .into_iter()
            .map(|values| row_of(table, values))
            .collect()
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<RowCount> {
        let rows = self
            .client
            .rows(
                "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                vec![table.name.name.as_str().into()],
            )
            .await
            .map_err(|e| e.context(format!("estimate rows of table {}", table.name)))?;
        let estimate = rows
            .iter()
            .find(|r| text_of(&r[0]) == table.name.name)
            .and_then(|r| int_of(&r[1]))
            .unwrap_or(0)
            .max(0) as u64;
        if estimate >= EXACT_COUNT_BELOW {
            return Ok(RowCount::estimated(estimate));
        }
        let counted = self
            .client
            .rows(
                &format!("SELECT count(*) FROM {}", client::SQL.table(&table.name)),
                Vec::new(),
            )
            .await
            .map_err(|e| e.context(format!("count the rows of table {}", table.name)))?;
        Ok(RowCount::counted(
            counted
                .first()
                .and_then(|r| int_of(&r[0]))
                .unwrap_or(0)
                .max(0) as u64,
        ))
    }

    async fn read_id_map_page(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<IdMapRow>> {
        let limit = mysql_async::Value::UInt(limit as u64);
        let (sql, params) = match after {
            None => (
                "SELECT pair, source_key, target_key FROM tandem_id_map \
                 ORDER BY pair, source_key LIMIT ?",
                vec![limit],
            ),
            Some((pair, source_key)) => (
                "SELECT pair, source_key, target_key FROM tandem_id_map \
                 WHERE (pair, source_key) > (?, ?) ORDER BY pair, source_key LIMIT ?",
                vec![pair.into(), source_key.into(), limit],
            ),
        };
        let rows = self
            .client
            .rows(sql, params)
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
        let kept = self.client.kept.clone();
        if let Some(conn) = kept.take() {
            match MysqlTransaction::begin(conn, self.client.flavour, kept.clone()).await {
                Ok(tx) => return Ok(Box::new(tx)),
                // Gone while kept (a server restart, its idle timeout).
                Err(e) => {
                    tracing::debug!(error = %e, "a kept session could not begin; taking one from the pool")
                }
            }
        }
        let conn = self.client.conn().await?;
        Ok(Box::new(
            MysqlTransaction::begin(conn, self.client.flavour, kept).await?,
        ))
    }

    async fn wait_for_changes(&self, timeout: Duration) {
        capture::wait_for_changes(&self.client, timeout).await
    }
}
