//! The contract between the agent and a database engine.
//!
//! # Contract
//!
//! - **Capture.** After [`Connector::run_script`] has run the
//!   [`Connector::install_script`], every committed insert, update and delete
//!   of an installed table leaves one row in the change table, except writes
//!   made through a [`Transaction`] of this crate (they are marked as the
//!   agent's own and skipped, so nothing echoes).
//! - **Tailing.** [`Connector::read_changes`] returns committed change rows in
//!   sequence order but makes no promise that a lower sequence cannot become
//!   visible later (transactions commit out of order). Change rows are
//!   consumed by identity: [`Connector::delete_changes`] deletes exactly the
//!   rows named and nothing else; until then a change row is returned again.
//! - **Applying.** A [`Transaction`] is one database transaction with the
//!   session marked as applying. Nothing it wrote is visible or durable until
//!   [`Transaction::commit`] returns `Ok`; if the agent dies before, nothing
//!   of it happened. Rows written by [`Transaction::record_link`] commit
//!   atomically with the data they describe.
//! - **Idempotence.** Update and delete by key can be repeated with the same
//!   result. Insert cannot, which is why a created row's key pair is recorded
//!   in the same transaction and reconciled at start-up.
//! - **Errors.** Every error carries an [`crate::ErrorKind`]; only
//!   connection and transient errors are worth retrying by themselves.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ConnectorError, Result};
use crate::schema::{TableName, TableSchema};
use crate::value::{Key, Row};

/// The database engines Tandem talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL 12 and later.
    Postgres,
    /// MySQL 8 and MariaDB 10.5 and later.
    Mysql,
    /// SQLite 3 (embedded, through rusqlite).
    Sqlite,
    /// Microsoft SQL Server 2016 and later.
    Mssql,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite",
            Engine::Mssql => "mssql",
        })
    }
}

/// How to reach one endpoint.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Which engine.
    pub engine: Engine,
    /// Connection URL, as in the config file (may hold a password).
    pub url: String,
    /// A password given apart from the URL (from the environment or a file);
    /// wins over one in the URL.
    pub password: Option<String>,
    /// How often to look for changes when the engine cannot wake us.
    pub poll_interval: Duration,
    /// Largest number of pooled connections.
    pub max_connections: usize,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password: the URL is shown without its credentials.
        f.debug_struct("EndpointConfig")
            .field("engine", &self.engine)
            .field("url", &redact_url(&self.url))
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// The URL with any password replaced by `***`, safe to log.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// What a captured change row says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOp {
    /// A row was inserted.
    Insert,
    /// A row was updated (its key unchanged).
    Update,
    /// A row was deleted.
    Delete,
}

impl ChangeOp {
    /// Reads the one-letter code the triggers write.
    pub fn from_code(code: &str) -> Result<ChangeOp> {
        match code {
            "I" => Ok(ChangeOp::Insert),
            "U" => Ok(ChangeOp::Update),
            "D" => Ok(ChangeOp::Delete),
            other => Err(ConnectorError::internal(format!(
                "change table holds unknown operation {other:?}"
            ))),
        }
    }
}

/// One row of the change table.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedChange {
    /// The change row's own identity (its sequence number).
    pub seq: i64,
    /// The table as the trigger recorded it (the [`TableName`]'s display form).
    pub table: String,
    /// What happened.
    pub op: ChangeOp,
    /// The key columns' values as a JSON array (decode with
    /// [`Key::from_captured`]).
    pub key: serde_json::Value,
    /// When the change was captured (the database's clock, UTC).
    pub captured_at: DateTime<Utc>,
}

/// One row of a database's mapping table: a record the agent created there,
/// and the record it copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMapRow {
    /// The table pair's name in the config.
    pub pair: String,
    /// The record's key on the source side ([`Key::encode`]).
    pub source_key: String,
    /// The record's key on the target side ([`Key::encode`]).
    pub target_key: String,
}

/// What `install-triggers` left in a database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installation {
    /// The installed schema version; `None` when nothing is installed.
    pub version: Option<i32>,
    /// Tables among those asked about that have no capture trigger.
    pub missing_triggers: Vec<TableName>,
}

/// The version of the installed objects this build writes and expects.
pub const SCHEMA_VERSION: i32 = 1;

/// One database engine, seen by the agent. See the module docs for the
/// contract.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Which engine this is.
    fn engine(&self) -> Engine;

    /// Resolves a table name written in the config (`customers`,
    /// `sales.customers`) to the engine's name, with the default schema.
    fn table_name(&self, configured: &str) -> TableName;

    /// Reads the table's columns, key and foreign keys from the catalog.
    /// A missing table is a [`crate::ErrorKind::Schema`] error naming it.
    async fn describe(&self, table: &TableName) -> Result<TableSchema>;

    /// The statements that install (or bring up to date) the change table,
    /// mapping table, version row and one capture trigger per table.
    /// Running them twice changes nothing.
    async fn install_script(&self, tables: &[TableSchema]) -> Result<Vec<String>>;

    /// The statements that remove everything `install_script` created,
    /// triggers of tables no longer configured included.
    async fn uninstall_script(&self, tables: &[TableSchema]) -> Result<Vec<String>>;

    /// Runs statements in order, in one transaction where the engine allows.
    async fn run_script(&self, statements: &[String]) -> Result<()>;

    /// What is installed: schema version and tables lacking a trigger.
    async fn installation(&self, tables: &[TableSchema]) -> Result<Installation>;

    /// The statement that makes `table`'s single-column key auto-generated,
    /// where the engine has one.
    fn generated_key_fix(&self, table: &TableSchema) -> Option<String> {
        let _ = table;
        None
    }

    /// Privileges the agent's user lacks to sync `tables`, one line each with
    /// the statement that grants it. The default finds none (engines without
    /// a check yet).
    async fn missing_privileges(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        let _ = tables;
        Ok(Vec::new())
    }

    /// Up to `limit` committed change rows of `tables`, lowest sequence first.
    async fn read_changes(&self, tables: &[TableName], limit: usize)
        -> Result<Vec<CapturedChange>>;

    /// Deletes exactly the change rows with these sequence numbers.
    async fn delete_changes(&self, seqs: &[i64]) -> Result<()>;

    /// Change rows waiting per table (captured but not yet tailed).
    async fn count_changes(&self, tables: &[TableName]) -> Result<Vec<(String, u64)>>;

    /// The current rows with these keys; keys without a row are left out.
    async fn fetch_rows(&self, table: &TableSchema, keys: &[Key]) -> Result<Vec<Row>>;

    /// The rows whose `columns` equal `values` (NULL matches nothing). The
    /// default reads the whole table; engines override it with a query.
    async fn find_rows(
        &self,
        table: &TableSchema,
        columns: &[String],
        values: &[crate::Value],
    ) -> Result<Vec<Row>> {
        if values.iter().any(crate::Value::is_null) {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let rows = self.scan(table, after.as_ref(), 1000).await?;
            let done = rows.len() < 1000;
            for row in rows {
                after = table.key_of(&row);
                if columns
                    .iter()
                    .zip(values)
                    .all(|(c, v)| row.get(c) == Some(v))
                {
                    found.push(row);
                }
            }
            if done {
                return Ok(found);
            }
        }
    }

    /// Up to `limit` rows in key order, starting after `after`.
    async fn scan(
        &self,
        table: &TableSchema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Row>>;

    /// A cheap estimate of the number of rows, for progress reports.
    async fn estimate_rows(&self, table: &TableSchema) -> Result<u64>;

    /// Every row of this database's mapping table.
    async fn read_id_map(&self) -> Result<Vec<IdMapRow>>;

    /// Starts a transaction whose writes the capture triggers skip.
    async fn begin(&self) -> Result<Box<dyn Transaction>>;

    /// Returns when changes may be waiting, or after `timeout` at the latest.
    /// Engines that can notify (PostgreSQL LISTEN) return early; others sleep
    /// for the poll interval or `timeout`, whichever is shorter.
    async fn wait_for_changes(&self, timeout: Duration);
}

/// One applying transaction. Dropping it without commit rolls it back.
#[async_trait]
pub trait Transaction: Send {
    /// The row with `key`, locked until the transaction ends.
    async fn fetch_for_update(&mut self, table: &TableSchema, key: &Key) -> Result<Option<Row>>;

    /// Inserts `row` (only the columns it holds) and returns the new row's
    /// key, generated by the engine when the row holds no key.
    async fn insert(&mut self, table: &TableSchema, row: &Row) -> Result<Key>;

    /// Sets the columns of `row` (key columns excepted) on the row with
    /// `key`; `false` when no such row exists.
    async fn update(&mut self, table: &TableSchema, key: &Key, row: &Row) -> Result<bool>;

    /// Deletes the row with `key`; `false` when there was none.
    async fn delete(&mut self, table: &TableSchema, key: &Key) -> Result<bool>;

    /// Records a key pair in this database's mapping table.
    async fn record_link(&mut self, link: &IdMapRow) -> Result<()>;

    /// Removes a pair's mapping rows that name this source or target key.
    async fn forget_link(&mut self, pair: &str, source_key: &str, target_key: &str) -> Result<()>;

    /// Marks a point to roll back to if the next record fails.
    async fn savepoint(&mut self) -> Result<()>;

    /// Undoes everything since the last [`Transaction::savepoint`].
    async fn rollback_to_savepoint(&mut self) -> Result<()>;

    /// Forgets the last savepoint, keeping its work.
    async fn release_savepoint(&mut self) -> Result<()>;

    /// Commits. Only after `Ok` is the work durable.
    async fn commit(self: Box<Self>) -> Result<()>;

    /// Rolls back everything.
    async fn rollback(self: Box<Self>) -> Result<()>;
}

/// Connects to an endpoint: checks that the server answers and sets up a
/// pool. A refused connection is a [`crate::ErrorKind::Connection`] error
/// naming the host.
pub async fn connect(config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    Ok(match config.engine {
        Engine::Postgres => crate::postgres::connect(config).await?,
        Engine::Mysql => crate::mysql::connect(config).await?,
        Engine::Sqlite => crate::sqlite::connect(config).await?,
        Engine::Mssql => crate::mssql::connect(config).await?,
    })
}
