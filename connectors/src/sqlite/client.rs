//! Connection setup for SQLite: URL, pool, session, the hop onto a blocking
//! thread, and the classification of SQLite errors into [`ErrorKind`].
//!
//! rusqlite is blocking, so every call runs on `tokio::task::spawn_blocking`
//! with a connection taken from a small deadpool pool. Every connection
//! waits up to [`BUSY_TIMEOUT`] for another writer's lock and enforces
//! foreign keys; the journal mode is left as the database has it (a WAL
//! database stays WAL). A connection that comes back with a transaction
//! still open (a dropped transaction, a cancelled call) is rolled back on
//! the spot, or closed if that fails: it never sits in the pool holding the
//! write lock. Encryption or other open options, when they come, go here.

use std::ops::{Deref, DerefMut};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use rusqlite::types::Value as SqlValue;
use rusqlite::{ffi, Connection, OpenFlags};

use crate::connector::{redact_url, EndpointConfig};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::sql::Dialect;

/// How long a statement waits for another connection's lock before it
/// fails with `SQLITE_BUSY` (a transient error).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The URL scheme and its separator.
const SCHEME: &str = "sqlite://";

/// Opens the connections of one database file.
#[derive(Debug)]
pub struct Manager {
    path: PathBuf,
}

impl Manager {
    /// Opens and sets up one connection (blocking).
    fn open(path: &Path) -> Result<Connection> {
        // Read-write, never create: a missing file is the user's mistake,
        // not an empty database. No URI parsing: the path is a path.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .map_err(classify)?;
        Ok(conn)
    }
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = ConnectorError;

    async fn create(&self) -> Result<Connection> {
        let path = self.path.clone();
        blocking(move || Manager::open(&path)).await?
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<ConnectorError> {
        // [`Conn`] rolls back before a connection comes back; this only
        // catches what slipped through.
        if conn.is_autocommit() {
            Ok(())
        } else {
            Err(RecycleError::message(
                "the connection is inside a transaction",
            ))
        }
    }
}

/// The pool of one database's connections.
pub type Pool = managed::Pool<Manager>;

/// A pooled connection. Dropped inside a transaction, it rolls the
/// transaction back (or closes the connection if that fails) before the
/// pool gets it back. Drop it on a blocking thread where possible.
pub struct Conn(Option<Object<Manager>>);

impl Deref for Conn {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0.as_ref().expect("a connection until dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Connection {
        self.0.as_mut().expect("a connection until dropped")
    }
}

impl Conn {
    /// Closes the connection instead of returning it to the pool.
    pub fn discard(mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(object) = self.0.take() else { return };
        if object.is_autocommit() {
            return;
        }
        let rolled_back = object.execute_batch("ROLLBACK").is_ok() && object.is_autocommit();
        if !rolled_back {
            // Closing the connection rolls back whatever is left.
            drop(Object::take(object));
        }
    }
}

/// One database file, reached through a pool.
#[derive(Debug)]
pub struct Client {
    pool: Pool,
    /// The database file (absolute), for messages.
    pub path: PathBuf,
    /// How long `wait_for_changes` sleeps at most.
    pub poll_interval: Duration,
}

impl Client {
    /// Parses the URL, checks the file is a SQLite database we can open and
    /// builds the pool.
    pub async fn open(config: &EndpointConfig) -> Result<Client> {
        let path = path_of(&config.url)?;
        if !path.exists() {
            return Err(ConnectorError::config(format!(
                "SQLite database {} does not exist (Tandem never creates one: check the path)",
                path.display()
            )));
        }
        if !path.is_file() {
            return Err(ConnectorError::config(format!(
                "SQLite database {} is not a file",
                path.display()
            )));
        }
        let shown = path.display().to_string();
        let at = move |e: ConnectorError| {
            let kind = match e.kind() {
                ErrorKind::Config | ErrorKind::Permission => e.kind(),
                _ => ErrorKind::Connection,
            };
            ConnectorError::new(kind, format!("cannot open SQLite database {shown}: {e}"))
        };
        let manager = Manager { path: path.clone() };
        let pool = Pool::builder(manager)
            .max_size(config.max_connections.max(1))
            .build()
            .map_err(|e| ConnectorError::internal(format!("cannot build the pool: {e}")))?;
        let client = Client {
            pool,
            path,
            poll_interval: config.poll_interval,
        };
        // Reading the catalog proves the file is a database.
        client
            .rows("SELECT count(*) FROM sqlite_schema".to_owned(), Vec::new())
            .await
            .map_err(at)?;
        tracing::debug!(path = %client.path.display(), "opened SQLite database");
        Ok(client)
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<Conn> {
        match self.pool.get().await {
            Ok(object) => Ok(Conn(Some(object))),
            Err(PoolError::Backend(e)) => Err(e.context(format!(
                "cannot open SQLite database {}",
                self.path.display()
            ))),
            Err(e) => Err(ConnectorError::new(
                ErrorKind::Connection,
                format!(
                    "no connection to SQLite database {}: {e}",
                    self.path.display()
                ),
            )),
        }
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let mut conn = self.conn().await?;
        // The connection goes back to the pool from the blocking thread.
        blocking(
            move || match std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut conn))) {
                Ok(result) => result,
                Err(_) => {
                    conn.discard();
                    Err(ConnectorError::internal("a SQLite call panicked"))
                }
            },
        )
        .await?
    }

    /// Runs a query and returns its rows as plain values.
    pub async fn rows(&self, sql: String, params: Vec<SqlValue>) -> Result<Vec<Vec<SqlValue>>> {
        self.run(move |conn| query(conn, &sql, &params)).await
    }
}

/// Runs `f` on a blocking thread.
pub async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::internal(format!("a SQLite call did not finish: {e}")))
}

/// Runs `f` with `conn` on a blocking thread and hands the connection back.
/// A panic in `f` closes the connection (its state is unknown) and is an
/// internal error. Should the caller stop waiting, the connection is
/// dropped on the blocking thread, which rolls back what it left open.
pub async fn with_conn<T, F>(mut conn: Conn, f: F) -> Result<(Conn, Result<T>)>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
{
    blocking(
        move || match std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut conn))) {
            Ok(result) => Some((conn, result)),
            Err(_) => {
                conn.discard();
                None
            }
        },
    )
    .await?
    .ok_or_else(|| ConnectorError::internal("a SQLite call panicked"))
}

/// Runs a query on `conn` and returns its rows as plain values.
pub fn query(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>> {
    let mut statement = conn.prepare_cached(sql).map_err(classify)?;
    let width = statement.column_count();
    let mut rows = statement
        .query(rusqlite::params_from_iter(params))
        .map_err(classify)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(classify)? {
        let values = (0..width)
            .map(|i| row.get::<_, SqlValue>(i))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify)?;
        out.push(values);
    }
    Ok(out)
}

/// Runs a statement on `conn` that returns no rows; the number of rows it
/// changed (rows matched, for an UPDATE; trigger writes not counted).
pub fn execute(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<usize> {
    let mut statement = conn.prepare_cached(sql).map_err(classify)?;
    statement
        .execute(rusqlite::params_from_iter(params))
        .map_err(classify)
}

/// The absolute path a `sqlite:///absolute/path.db` URL names.
pub fn path_of(url: &str) -> Result<PathBuf> {
    let bad = |why: &str| {
        ConnectorError::config(format!(
            "invalid SQLite URL {}: {why} (expected sqlite:///absolute/path.db)",
            redact_url(url)
        ))
    };
    let path = url
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad("it does not start with sqlite://"))?;
    if path.is_empty() {
        return Err(bad("it names no file"));
    }
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(bad("the path is not absolute"));
    }
    Ok(path)
}

/// How SQLite spells identifiers, literals and parameters.
pub(crate) const SQL: Dialect = Dialect::Sqlite;

/// Quotes an identifier for SQLite: in double quotes, double quotes
/// doubled.
pub fn quote_ident(name: &str) -> String {
    SQL.ident(name)
}

/// A string literal: in single quotes, single quotes doubled (SQLite knows
/// no backslash escapes).
pub fn text_literal(text: &str) -> String {
    SQL.literal(text)
}

/// Text of a catalog value.
pub fn text_of(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => String::new(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(s) => s.clone(),
        SqlValue::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Integer of a catalog value, for counts and sequence numbers.
pub fn int_of(value: &SqlValue) -> Option<i64> {
    match value {
        SqlValue::Integer(i) => Some(*i),
        SqlValue::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The error kind for an SQLite result code and message.
pub fn kind_of(code: ffi::ErrorCode, message: &str) -> ErrorKind {
    use ffi::ErrorCode as C;
    match code {
        C::DatabaseBusy | C::DatabaseLocked | C::OperationInterrupted | C::SchemaChanged => {
            ErrorKind::Transient
        }
        // UNIQUE, FOREIGN KEY, NOT NULL, CHECK, a STRICT table's datatype;
        // datatype mismatch (a non-integer for a rowid), string or blob too
        // big.
        C::ConstraintViolation | C::TypeMismatch | C::TooBig => ErrorKind::Data,
        C::ReadOnly | C::PermissionDenied | C::AuthorizationForStatementDenied => {
            ErrorKind::Permission
        }
        C::CannotOpen
        | C::SystemIoFailure
        | C::DiskFull
        | C::FileLockingProtocolFailed
        | C::NoLargeFileSupport => ErrorKind::Connection,
        C::NotADatabase => ErrorKind::Config,
        C::Unknown => {
            let message = message.to_ascii_lowercase();
            if ["no such table", "no such column", "has no column named"]
                .iter()
                .any(|m| message.contains(m))
            {
                ErrorKind::Schema
            } else {
                ErrorKind::Internal
            }
        }
        _ => ErrorKind::Internal,
    }
}

/// Classifies a rusqlite error. The message is one line.
pub fn classify(err: rusqlite::Error) -> ConnectorError {
    let (kind, message) = match &err {
        rusqlite::Error::SqliteFailure(code, message) => {
            let message = one_line(
                message
                    .as_deref()
                    .unwrap_or_else(|| ffi::code_to_str(code.extended_code)),
            );
            (kind_of(code.code, &message), message)
        }
        rusqlite::Error::SqlInputError { error, msg, .. } => {
            let message = one_line(msg);
            (kind_of(error.code, &message), message)
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(_) => (ErrorKind::Data, err.to_string()),
        rusqlite::Error::InvalidPath(_) => (ErrorKind::Config, err.to_string()),
        _ => (ErrorKind::Internal, err.to_string()),
    };
    ConnectorError::new(kind, one_line(&message)).with_source(err)
}

/// Collapses a message onto one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32, message: &str) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message.to_owned()))
    }

    #[test]
    fn urls_name_absolute_files() {
        assert_eq!(
            path_of("sqlite:///var/lib/shop db.sqlite").unwrap(),
            PathBuf::from("/var/lib/shop db.sqlite")
        );
        for bad in ["sqlite://relative.db", "sqlite://", "postgres://x/y"] {
            let err = path_of(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn identifiers_and_literals_are_safe() {
        assert_eq!(quote_ident("a\"b c"), "\"a\"\"b c\"");
        assert_eq!(text_literal("it's \\"), "'it''s \\'");
    }

    #[test]
    fn sqlite_codes_map_to_kinds() {
        let cases = [
            (ffi::SQLITE_BUSY, "database is locked", ErrorKind::Transient),
            (
                ffi::SQLITE_LOCKED,
                "database table is locked",
                ErrorKind::Transient,
            ),
            (
                ffi::SQLITE_CONSTRAINT_UNIQUE,
                "UNIQUE constraint failed: t.id",
                ErrorKind::Data,
            ),
            (
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
                "FOREIGN KEY constraint failed",
                ErrorKind::Data,
            ),
            (
                ffi::SQLITE_CONSTRAINT_NOTNULL,
                "NOT NULL constraint failed: t.v",
                ErrorKind::Data,
            ),
            (ffi::SQLITE_MISMATCH, "datatype mismatch", ErrorKind::Data),
            (
                ffi::SQLITE_TOOBIG,
                "string or blob too big",
                ErrorKind::Data,
            ),
            (
                ffi::SQLITE_ERROR,
                "no such table: main.t",
                ErrorKind::Schema,
            ),
            (ffi::SQLITE_ERROR, "no such column: x", ErrorKind::Schema),
            (
                ffi::SQLITE_ERROR,
                "table t has no column named x",
                ErrorKind::Schema,
            ),
            (
                ffi::SQLITE_ERROR,
                "near \"x\": syntax error",
                ErrorKind::Internal,
            ),
            (
                ffi::SQLITE_IOERR_WRITE,
                "disk I/O error",
                ErrorKind::Connection,
            ),
            (
                ffi::SQLITE_CANTOPEN,
                "unable to open database file",
                ErrorKind::Connection,
            ),
            (
                ffi::SQLITE_READONLY,
                "attempt to write a readonly database",
                ErrorKind::Permission,
            ),
            (
                ffi::SQLITE_NOTADB,
                "file is not a database",
                ErrorKind::Config,
            ),
        ];
        for (code, message, kind) in cases {
            let err = classify(failure(code, message));
            assert_eq!(err.kind(), kind, "{message}");
            assert_eq!(err.to_string(), message);
        }
        let multi = classify(failure(ffi::SQLITE_ERROR, "no such\ntable: t"));
        assert_eq!(multi.to_string(), "no such table: t");
        assert_eq!(multi.kind(), ErrorKind::Schema);
    }
}
