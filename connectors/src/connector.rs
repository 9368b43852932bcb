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
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{TableName, TableSchema};
use crate::value::{Key, Row};

/// How to reach one endpoint.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Which engine.
    pub engine: Engine,
    /// Connection URL, as in the config file (may hold a password).
    pub url: String,
    /// A password given apart from the URL (from the config's `password`
    /// keys, the environment or a file); wins over one in the URL. Read
    /// only where it is handed to the driver or put in a header.
    pub password: Option<SecretString>,
    /// How often to look for changes when the engine cannot wake us.
    pub poll_interval: Duration,
    /// Largest number of pooled connections.
    pub max_connections: usize,
    /// Whether and how connections are encrypted (see [`TlsConfig`]).
    pub tls: TlsConfig,
    /// The API description of an `http` endpoint; `None` for databases.
    pub http: Option<Arc<crate::http::HttpOptions>>,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written by hand for the URL alone, which may still carry a
        // password (a URL given to `init`, or built by a test): it is shown
        // without its credentials.
        f.debug_struct("EndpointConfig")
            .field("engine", &self.engine)
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("poll_interval", &self.poll_interval)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls)
            .field("http", &self.http)
            .finish()
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

/// How an endpoint's connections use TLS (the config's `tls` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// No TLS: everything, the login included, travels in the clear.
    Disable,
    /// TLS when the server offers it, plain otherwise. The certificate is not
    /// checked: this stops eavesdropping, not a man in the middle.
    Prefer,
    /// TLS or no connection. The certificate is not checked.
    Require,
    /// TLS or no connection, and the server's certificate must chain to the
    /// CA file (or, without one, to the system's trust store) and name the
    /// host of the URL.
    VerifyFull,
}

impl TlsMode {
    /// Every mode, in the order of the docs.
    pub const ALL: [TlsMode; 4] = [
        TlsMode::Disable,
        TlsMode::Prefer,
        TlsMode::Require,
        TlsMode::VerifyFull,
    ];

    /// The name the config file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<TlsMode, String> {
        TlsMode::ALL
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not a TLS mode (expected \"disable\", \"prefer\", \"require\" or \"verify-full\")"
                )
            })
    }
}

/// TLS settings of one endpoint, resolved (see [`TlsConfig::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Whether TLS is used and how the server is checked.
    pub mode: TlsMode,
    /// PEM file of the CA certificate(s) that sign the server's certificate
    /// (only with [`TlsMode::VerifyFull`]); `None`: the system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
}

impl TlsConfig {
    /// No TLS at all.
    pub fn disabled() -> TlsConfig {
        TlsConfig {
            mode: TlsMode::Disable,
            ca_file: None,
        }
    }

    /// What an endpoint gets when its config has no `tls` key: see
    /// [`TlsConfig::resolve`].
    pub fn default_for(engine: Engine, url: &str) -> std::result::Result<TlsConfig, String> {
        TlsConfig::resolve(engine, url, None, None)
    }

    /// The TLS settings of an endpoint from its URL and its `tls` and
    /// `tls_ca_file` keys. The mode is, first found:
    ///
    /// 1. the `tls` key;
    /// 2. the URL's own TLS option: PostgreSQL `sslmode` (`disable`,
    ///    `allow`/`prefer`, `require`, `verify-full`), SQL Server `encrypt`
    ///    (`encrypt=true` is `verify-full`, with
    ///    `trust_server_certificate=true` it is `require`, `encrypt=false` is
    ///    `disable`);
    /// 3. `verify-full` when `tls_ca_file` is set;
    /// 4. `prefer` when the host is this machine (`localhost`, a loopback
    ///    address, a Unix socket), `verify-full` for every other host.
    ///
    /// SQLite opens a file: it has no TLS and refuses the keys. The key and
    /// the URL must not disagree, a CA file only goes with `verify-full`,
    /// and MySQL's URL TLS options (`require_ssl`, ...) are refused in favour
    /// of the key. Errors start with the offending key (`tls: ...`,
    /// `tls_ca_file: ...`, `url: ...`).
    pub fn resolve(
        engine: Engine,
        url: &str,
        mode: Option<TlsMode>,
        ca_file: Option<std::path::PathBuf>,
    ) -> std::result::Result<TlsConfig, String> {
        if engine == Engine::Sqlite {
            if mode.is_some() || ca_file.is_some() {
                return Err(
                    "tls: SQLite opens a local file, there is no connection to encrypt".to_owned(),
                );
            }
            return Ok(TlsConfig::disabled());
        }
        let parsed = url::Url::parse(url).ok();
        let from_url = match &parsed {
            Some(parsed) => url_tls_mode(engine, parsed)?,
            None => None,
        };
        let mode = match (mode, from_url) {
            (Some(key), Some((option, in_url))) if key != in_url => {
                return Err(format!(
                    "tls: tls = \"{key}\" disagrees with {option} in the URL (set TLS in one place)"
                ))
            }
            (Some(key), _) => key,
            (None, Some((_, in_url))) => in_url,
            (None, None) if ca_file.is_some() => TlsMode::VerifyFull,
            (None, None) if parsed.as_ref().is_some_and(|u| is_local(engine, u)) => TlsMode::Prefer,
            (None, None) => TlsMode::VerifyFull,
        };
        if ca_file.is_some() && mode != TlsMode::VerifyFull {
            return Err(format!(
                "tls_ca_file: only used with tls = \"verify-full\" (this endpoint's TLS mode is \"{mode}\")"
            ));
        }
        Ok(TlsConfig { mode, ca_file })
    }
}

/// The TLS mode the URL asks for, with the option that says it.
fn url_tls_mode(
    engine: Engine,
    url: &url::Url,
) -> std::result::Result<Option<(String, TlsMode)>, String> {
    let option = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let flag = |name: &str| -> std::result::Result<Option<bool>, String> {
        match option(name) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Some(true)),
                "false" | "no" | "0" => Ok(Some(false)),
                _ => Err(format!("url: option {name} takes true or false, not {v:?}")),
            },
        }
    };
    match engine {
        Engine::Postgres => {
            let Some(value) = option("sslmode") else {
                return Ok(None);
            };
            let mode = match value.as_str() {
                "disable" => TlsMode::Disable,
                "allow" | "prefer" => TlsMode::Prefer,
                "require" => TlsMode::Require,
                "verify-full" => TlsMode::VerifyFull,
                "verify-ca" => {
                    return Err("url: sslmode=verify-ca is not supported: use tls = \"verify-full\" (the host name is checked too) or \"require\"".to_owned())
                }
                other => {
                    return Err(format!(
                        "url: sslmode={other} is not a PostgreSQL TLS mode (use the tls key: \"disable\", \"prefer\", \"require\" or \"verify-full\")"
                    ))
                }
            };
            Ok(Some((format!("sslmode={value}"), mode)))
        }
        Engine::Mssql => {
            let trust = flag("trust_server_certificate")?;
            match flag("encrypt")? {
                Some(false) => Ok(Some(("encrypt=false".to_owned(), TlsMode::Disable))),
                Some(true) if trust == Some(true) => Ok(Some((
                    "encrypt=true&trust_server_certificate=true".to_owned(),
                    TlsMode::Require,
                ))),
                Some(true) => Ok(Some(("encrypt=true".to_owned(), TlsMode::VerifyFull))),
                None if trust == Some(true) => Err(
                    "url: trust_server_certificate=true needs encrypt=true (or use tls = \"require\")"
                        .to_owned(),
                ),
                None => Ok(None),
            }
        }
        Engine::Mysql => {
            for name in [
                "require_ssl",
                "verify_ca",
                "verify_identity",
                "built_in_roots",
            ] {
                if option(name).is_some() {
                    return Err(format!(
                        "url: TLS is set with the tls key (tls = \"require\" or \"verify-full\"), not {name} in the URL"
                    ));
                }
            }
            Ok(None)
        }
        Engine::Sqlite | Engine::Http => Ok(None),
    }
}

/// Whether the URL reaches a server on this machine (loopback or a Unix
/// socket), where the default TLS mode is `prefer`.
fn is_local(engine: Engine, url: &url::Url) -> bool {
    let local_name = |host: &str| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.is_empty()
            || host.eq_ignore_ascii_case("localhost")
            || host.starts_with('/')
            || host.starts_with("%2F")
            || host.starts_with("%2f")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    // PostgreSQL may name the host (or a socket directory) in a parameter.
    if engine == Engine::Postgres {
        if let Some((_, host)) = url.query_pairs().find(|(k, _)| k == "host") {
            return host.split(',').all(local_name);
        }
    }
    url.host_str().is_none_or(local_name)
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
    /// The whole table was truncated (PostgreSQL only: the other engines'
    /// triggers cannot see a TRUNCATE). The key is empty.
    Truncate,
}

impl ChangeOp {
    /// Reads the one-letter code the triggers write.
    pub fn from_code(code: &str) -> Result<ChangeOp> {
        match code {
            "I" => Ok(ChangeOp::Insert),
            "U" => Ok(ChangeOp::Update),
            "D" => Ok(ChangeOp::Delete),
            "T" => Ok(ChangeOp::Truncate),
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

impl CapturedChange {
    /// A change from the parts of a change-table row as an engine reads
    /// them: the key as JSON text, the capture time as a canonical value
    /// (`None` when it could not be read). Errors name the change.
    pub fn from_parts(
        seq: i64,
        table: String,
        op: &str,
        key_json: &str,
        captured_at: Option<crate::Value>,
    ) -> Result<CapturedChange> {
        let key = serde_json::from_str(key_json).map_err(|e| {
            ConnectorError::internal(format!(
                "change {seq} holds an unreadable key {key_json:?}: {e}"
            ))
        })?;
        let captured_at = match captured_at {
            Some(crate::Value::TimestampTz(t)) => t,
            other => {
                return Err(ConnectorError::internal(format!(
                    "change {seq} has an unreadable capture time: {other:?}"
                )))
            }
        };
        Ok(CapturedChange {
            seq,
            table,
            op: ChangeOp::from_code(op)?,
            key,
            captured_at,
        })
    }
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

/// The record a new copy copies (see [`Transaction::insert_copy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOf {
    /// The table pair's name in the config.
    pub pair: String,
    /// The copied record's key ([`Key::encode`]).
    pub origin_key: String,
    /// Whether the copy is made on the target side.
    pub copy_is_target: bool,
}

impl CopyOf {
    /// The key pair once the copy has `new_key` (encoded).
    pub fn link(&self, new_key: &str) -> IdMapRow {
        let (source_key, target_key) = if self.copy_is_target {
            (self.origin_key.clone(), new_key.to_owned())
        } else {
            (new_key.to_owned(), self.origin_key.clone())
        };
        IdMapRow {
            pair: self.pair.clone(),
            source_key,
            target_key,
        }
    }
}

/// Tables the statistics call smaller than this are counted exactly by
/// [`Connector::estimate_rows`].
pub const EXACT_COUNT_BELOW: u64 = 100_000;

/// How many rows a table has, and whether they were counted (or taken
/// from the catalog's statistics, an estimate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    /// The rows.
    pub rows: u64,
    /// Whether they were counted.
    pub exact: bool,
}

impl RowCount {
    /// Rows counted.
    pub fn counted(rows: u64) -> RowCount {
        RowCount { rows, exact: true }
    }

    /// Rows as the statistics say.
    pub fn estimated(rows: u64) -> RowCount {
        RowCount { rows, exact: false }
    }
}

/// Rows per page of [`Connector::read_id_map`].
pub const ID_MAP_PAGE: usize = 10_000;

/// What `install-triggers` left in a database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installation {
    /// The installed schema version; `None` when nothing is installed.
    pub version: Option<i32>,
    /// Tables among those asked about that have no capture trigger.
    pub missing_triggers: Vec<TableName>,
}

/// The version of the installed objects this build writes and expects:
/// the number of the last upgrade step of every engine (see
/// [`crate::upgrade`]). Version 2: PostgreSQL's capture functions notify
/// only while an agent waits (`tandem.waiting`), and its change table has
/// no check on `op`. `install-triggers` runs the steps a database lacks, in
/// place, change rows kept.
pub const SCHEMA_VERSION: i32 = 2;

/// One thing [`Connector::probe`] found: a problem that stops the sync,
/// or a warning worth reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The line shown, with its fix.
    pub message: String,
    /// Whether it stops the sync.
    pub fatal: bool,
}

impl Finding {
    /// A problem that stops the sync.
    pub fn problem(message: impl Into<String>) -> Finding {
        Finding {
            message: message.into(),
            fatal: true,
        }
    }

    /// A warning: the sync runs, perhaps not as the user expects.
    pub fn warning(message: impl Into<String>) -> Finding {
        Finding {
            message: message.into(),
            fatal: false,
        }
    }
}

/// One database engine, seen by the agent. See the module docs for the
/// contract.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Which engine this is.
    fn engine(&self) -> Engine;

    /// Whether writes wait for [`Transaction::commit`] and a rollback undoes
    /// them. An API's requests take effect one by one: the agent then
    /// never rolls back work it means to do again.
    fn transactional(&self) -> bool {
        true
    }

    /// Resolves a table name written in the config (`customers`,
    /// `sales.customers`) to the engine's name, with the default schema.
    fn table_name(&self, configured: &str) -> TableName;

    /// The tables a config may name here (Tandem's own left out), for
    /// matching the configured names and suggesting the closest ones.
    async fn list_tables(&self) -> Result<Vec<TableName>>;

    /// Reads the table's columns, key and foreign keys from the catalog.
    /// A missing table is a [`crate::ErrorKind::Schema`] error naming it.
    async fn describe(&self, table: &TableName) -> Result<TableSchema>;

    /// The statements that install (or bring up to date) the change table,
    /// mapping table, version row and one capture trigger per table: the
    /// upgrade steps above the version the database records (see
    /// [`crate::upgrade`]), then the triggers. Running them twice changes
    /// nothing. A database whose version is newer than
    /// [`SCHEMA_VERSION`] is refused ([`crate::ErrorKind::Schema`]).
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

    /// What keeps the agent from syncing `tables` that only a request can
    /// tell, one line each with the fix: an API that refuses the
    /// credentials, a wrong URL, path or field name. The default finds
    /// none (databases say it through [`Connector::describe`] and
    /// [`Connector::missing_privileges`]).
    async fn probe(&self, tables: &[TableSchema]) -> Result<Vec<Finding>> {
        let _ = tables;
        Ok(Vec::new())
    }

    /// Lets go of the creates in flight of `pair`'s records with these
    /// keys ([`Key::encode`]) on the side they come from, which held their
    /// records because their outcome is unknown (an operator's
    /// `dead-letters retry`); returns how many. Databases have none: a
    /// create commits with its key pair.
    async fn release_creates(&self, pair: &str, keys: &[String]) -> Result<usize> {
        let _ = (pair, keys);
        Ok(0)
    }

    /// Key pairs this endpoint found by itself since the agent last took
    /// them: copies it made whose keys it learnt only later (an API's
    /// create whose answer could not be read, recognised in a listing).
    /// The agent adopts them and says so with
    /// [`Connector::found_links_adopted`]; until then they are offered
    /// again. Databases have none: a copy commits with its key pair.
    async fn found_links(&self) -> Result<Vec<IdMapRow>> {
        Ok(Vec::new())
    }

    /// The agent holds these found key pairs now.
    async fn found_links_adopted(&self, rows: &[IdMapRow]) -> Result<()> {
        let _ = rows;
        Ok(())
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

    /// The number of rows, for progress reports: the catalog's statistics
    /// for a large table, an exact count below [`EXACT_COUNT_BELOW`] (the
    /// statistics of a freshly loaded table can be far off, and counting a
    /// small one is cheap); which of the two it is, is said.
    async fn estimate_rows(&self, table: &TableSchema) -> Result<RowCount>;

    /// Up to `limit` rows of this database's mapping table in (pair,
    /// source key) order, starting after the (pair, source key) `after`:
    /// pages, so that a mapping table of millions of records is read in
    /// bounded memory.
    async fn read_id_map_page(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<IdMapRow>>;

    /// Every row of this database's mapping table (for small tables and
    /// tests; see [`Connector::read_id_map_page`]).
    async fn read_id_map(&self) -> Result<Vec<IdMapRow>> {
        let mut all: Vec<IdMapRow> = Vec::new();
        loop {
            let after = all.last().map(|r| (r.pair.as_str(), r.source_key.as_str()));
            let page = self.read_id_map_page(after, ID_MAP_PAGE).await?;
            let done = page.len() < ID_MAP_PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

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

    /// Inserts `row` as the new copy of the other side's record `copy`
    /// names and records the key pair in the same transaction; returns the
    /// new key. Engines without transactions override it to journal the
    /// pair the moment the record exists.
    async fn insert_copy(&mut self, table: &TableSchema, row: &Row, copy: &CopyOf) -> Result<Key> {
        let key = self.insert(table, row).await?;
        self.record_link(&copy.link(&key.encode())).await?;
        Ok(key)
    }

    /// Records a key pair in this database's mapping table.
    async fn record_link(&mut self, link: &IdMapRow) -> Result<()>;

    /// The rows with `keys` that exist, locked until the transaction ends,
    /// in any order. Engines override it to read them in one statement.
    async fn fetch_many_for_update(
        &mut self,
        table: &TableSchema,
        keys: &[Key],
    ) -> Result<Vec<Row>> {
        let mut rows = Vec::with_capacity(keys.len());
        for key in keys {
            rows.extend(self.fetch_for_update(table, key).await?);
        }
        Ok(rows)
    }

    /// Inserts `rows`, each the new copy of the record the `copies` entry
    /// at the same position names, records the key pairs, and returns the
    /// copies as written (read back, with their keys), in the same order.
    /// Engines override it to write many rows per statement; a data error
    /// may then not say which row was at fault (the caller tries them one
    /// by one).
    async fn insert_copies(
        &mut self,
        table: &TableSchema,
        rows: &[Row],
        copies: &[CopyOf],
    ) -> Result<Vec<Row>> {
        let mut written = Vec::with_capacity(rows.len());
        for (row, copy) in rows.iter().zip(copies) {
            let key = self.insert_copy(table, row, copy).await?;
            written.push(self.fetch_for_update(table, &key).await?.ok_or_else(|| {
                ConnectorError::data(format!(
                    "{} {key} vanished after writing it (a trigger or policy of the database?)",
                    table.name
                ))
            })?);
        }
        Ok(written)
    }

    /// Sets the columns of each row (key columns excepted) on the row with
    /// its key, and returns the rows as written (read back), in the same
    /// order; `None` where no such row exists. Every row holds the same
    /// columns. Engines override it as [`Transaction::insert_copies`].
    async fn update_many(
        &mut self,
        table: &TableSchema,
        updates: &[(Key, Row)],
    ) -> Result<Vec<Option<Row>>> {
        let mut written = Vec::with_capacity(updates.len());
        for (key, row) in updates {
            written.push(if self.update(table, key, row).await? {
                self.fetch_for_update(table, key).await?
            } else {
                None
            });
        }
        Ok(written)
    }

    /// Removes a pair's mapping rows that name this source or target key.
    async fn forget_link(&mut self, pair: &str, source_key: &str, target_key: &str) -> Result<()>;

    /// Deletes the rows with `keys`; returns how many there were. Engines
    /// override it as [`Transaction::insert_copies`].
    async fn delete_many(&mut self, table: &TableSchema, keys: &[Key]) -> Result<u64> {
        let mut deleted = 0;
        for key in keys {
            deleted += u64::from(self.delete(table, key).await?);
        }
        Ok(deleted)
    }

    /// [`Transaction::forget_link`] for many `(source_key, target_key)`
    /// pairs of `pair`.
    async fn forget_links(&mut self, pair: &str, keys: &[(String, String)]) -> Result<()> {
        for (source_key, target_key) in keys {
            self.forget_link(pair, source_key, target_key).await?;
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(engine: Engine, url: &str) -> std::result::Result<TlsMode, String> {
        TlsConfig::default_for(engine, url).map(|tls| tls.mode)
    }

    #[test]
    fn tls_defaults_to_prefer_for_this_machine_only() {
        for url in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]:5432/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
            "postgres://u@db.example/db?host=/var/run/postgresql",
            "mysql://root@127.0.0.2:3306/db",
            "mssql://sa@LOCALHOST/db",
        ] {
            let engine = match &url[..5] {
                "postg" => Engine::Postgres,
                "mysql" => Engine::Mysql,
                _ => Engine::Mssql,
            };
            assert_eq!(mode(engine, url), Ok(TlsMode::Prefer), "{url}");
        }
        for url in [
            "postgres://u@db.example/db",
            "postgres://u@127.0.0.1/db?host=db.example",
            "postgres://u@10.0.0.5/db",
        ] {
            assert_eq!(
                mode(Engine::Postgres, url),
                Ok(TlsMode::VerifyFull),
                "{url}"
            );
        }
        assert_eq!(mode(Engine::Sqlite, "sqlite:///x.db"), Ok(TlsMode::Disable));
    }

    #[test]
    fn the_urls_own_tls_option_is_read() {
        for (value, expected) in [
            ("disable", TlsMode::Disable),
            ("allow", TlsMode::Prefer),
            ("prefer", TlsMode::Prefer),
            ("require", TlsMode::Require),
            ("verify-full", TlsMode::VerifyFull),
        ] {
            let url = format!("postgres://u@db.example/db?sslmode={value}");
            assert_eq!(mode(Engine::Postgres, &url), Ok(expected), "{url}");
        }
        assert!(
            mode(Engine::Postgres, "postgres://u@h/db?sslmode=verify-ca")
                .unwrap_err()
                .starts_with("url: sslmode=verify-ca is not supported")
        );
        assert_eq!(
            mode(Engine::Mssql, "mssql://sa@h/db?encrypt=true"),
            Ok(TlsMode::VerifyFull)
        );
        assert_eq!(
            mode(
                Engine::Mssql,
                "mssql://sa@h/db?encrypt=yes&trust_server_certificate=true"
            ),
            Ok(TlsMode::Require)
        );
        assert_eq!(
            mode(Engine::Mssql, "mssql://sa@h/db?encrypt=false"),
            Ok(TlsMode::Disable)
        );
        assert!(mode(
            Engine::Mssql,
            "mssql://sa@h/db?trust_server_certificate=true"
        )
        .is_err());
        assert!(mode(Engine::Mysql, "mysql://u@h/db?verify_ca=false")
            .unwrap_err()
            .starts_with("url: TLS is set with the tls key"));
    }

    #[test]
    fn keys_and_url_must_agree_and_a_ca_file_means_verify_full() {
        let url = "postgres://u@127.0.0.1/db";
        let ca = Some(std::path::PathBuf::from("/etc/ca.pem"));
        let tls = TlsConfig::resolve(Engine::Postgres, url, None, ca.clone()).unwrap();
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(tls.ca_file, ca);
        let err = TlsConfig::resolve(Engine::Postgres, url, Some(TlsMode::Prefer), ca.clone())
            .unwrap_err();
        assert!(err.starts_with("tls_ca_file: only used with"), "{err}");
        let with_option = "postgres://u@h/db?sslmode=require";
        assert_eq!(
            TlsConfig::resolve(Engine::Postgres, with_option, Some(TlsMode::Require), None)
                .unwrap()
                .mode,
            TlsMode::Require
        );
        assert!(
            TlsConfig::resolve(Engine::Postgres, with_option, Some(TlsMode::Disable), None)
                .unwrap_err()
                .starts_with("tls: tls = \"disable\" disagrees with sslmode=require")
        );
        assert!(TlsConfig::resolve(Engine::Sqlite, "sqlite:///x.db", None, ca).is_err());
        assert_eq!("verify-full".parse::<TlsMode>(), Ok(TlsMode::VerifyFull));
        assert!("verify_full".parse::<TlsMode>().is_err());
    }

    #[test]
    fn debug_shows_tls_but_no_password() {
        let config = EndpointConfig {
            engine: Engine::Postgres,
            url: "postgres://u:hunter2@h/db".to_owned(),
            password: Some("other-secret".into()),
            poll_interval: Duration::from_secs(1),
            max_connections: 2,
            tls: TlsConfig::default_for(Engine::Postgres, "postgres://u@h/db").unwrap(),
            http: None,
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("VerifyFull"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("other-secret"),
            "{shown}"
        );
        // An API: its token (the password) and a key in a header.
        let raw: crate::http::config::RawHttp = toml::from_str(
            "headers = { \"X-Api-Key\" = \"header-key\" }\nauth = { scheme = \"bearer\" }\n\
             [[objects]]\nname = \"O\"\npath = \"/o\"\nmodified = \"m\"\nsince = { s = \"{since}\" }\n",
        )
        .unwrap();
        let url = "https://api.example.com/v1";
        let api = EndpointConfig {
            engine: Engine::Http,
            url: url.to_owned(),
            password: Some("api-token".into()),
            poll_interval: Duration::from_secs(1),
            max_connections: 2,
            tls: TlsConfig::default_for(Engine::Http, url).unwrap(),
            http: Some(Arc::new(
                raw.validate("target", std::path::Path::new(".")).unwrap(),
            )),
        };
        let shown = format!("{api:?}");
        assert!(shown.contains("Bearer"), "{shown}");
        assert!(
            !shown.contains("api-token") && !shown.contains("header-key"),
            "{shown}"
        );
    }
}
