//! Connection setup for MySQL and MariaDB: URL, pool, session, and the
//! classification of server and driver errors into [`ErrorKind`].
//!
//! Every connection the pool hands out has its session in UTC (so
//! `TIMESTAMP` columns read and write UTC instants) and talks utf8mb4. The
//! pool resets a connection when it comes back (`COM_RESET_CONNECTION`:
//! user variables cleared, open transaction rolled back), and the session
//! setup is registered as *setup* statements, which mysql_async runs on every
//! new connection and again after every reset (*init* statements would run
//! only once and be lost at the first reset).
//!
//! TLS follows the endpoint's [`TlsMode`]: `require` and `prefer` encrypt
//! without checking the certificate, `verify-full` checks it against the CA
//! file (or the system's trust store) and the host name. With `prefer`, a
//! server that offers no TLS (MariaDB's default) is asked once at connect
//! and the pool is rebuilt without it. Connections to this machine that
//! mysql_async moves onto the Unix socket stay plain there.

use std::fmt;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, Row, SslOpts};
use secrecy::ExposeSecret;

use crate::connector::{redact_url, EndpointConfig, TlsConfig, TlsMode};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::sql::Dialect;

/// The statements every session runs before use.
const SESSION_SETUP: [&str; 2] = ["SET time_zone = '+00:00'", "SET NAMES utf8mb4"];

/// Which server we talk to; decides the SQL where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// MariaDB 10.5 and later: `RETURNING`, `CREATE OR REPLACE TRIGGER`,
    /// JSON as LONGTEXT with a `json_valid` check, a `uuid` type.
    MariaDb,
    /// MySQL 8: none of the above.
    MySql,
}

impl Flavour {
    /// The flavour a `SELECT VERSION()` answer names.
    pub fn from_version(version: &str) -> Flavour {
        if version.contains("MariaDB") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        }
    }

    /// The product name, for messages.
    pub fn product(self) -> &'static str {
        match self {
            Flavour::MariaDb => "MariaDB",
            Flavour::MySql => "MySQL",
        }
    }
}

/// A pool of sessions to one database, and what we learnt at connect.
pub struct Client {
    /// The pool; every connection is set up as described in the module docs.
    pub pool: Pool,
    /// MariaDB or MySQL.
    pub flavour: Flavour,
    /// The database of the URL: the namespace of every table.
    pub database: String,
    /// `host:port`, for messages.
    pub address: String,
    /// How long `wait_for_changes` sleeps at most.
    pub poll_interval: Duration,
    /// Applying sessions kept between transactions.
    pub kept: KeptSessions,
}

/// Applying sessions that ended their transaction cleanly (committed or
/// rolled back, unmarked), kept for the next transaction instead of going
/// back to the pool. The pool resets a session it takes back, and the reset
/// drops the session's prepared statements: every batch then prepared its
/// multi-row statements again, thousands of parameters each, which cost
/// the agent a tenth of its time in a first sync.
#[derive(Clone, Default)]
pub struct KeptSessions {
    sessions: std::sync::Arc<std::sync::Mutex<Vec<Conn>>>,
    /// How many may be kept: a kept session is out of the pool, and the
    /// pool must still have one for reads while a transaction is open.
    limit: usize,
}

impl KeptSessions {
    /// Keeps one session when the pool may hold `max_connections` (at
    /// least three; with two, none is kept).
    pub fn for_pool_of(max_connections: usize) -> KeptSessions {
        KeptSessions {
            sessions: Default::default(),
            limit: usize::from(max_connections >= 3),
        }
    }

    /// A kept session, if there is one.
    pub fn take(&self) -> Option<Conn> {
        self.sessions.lock().expect("kept sessions lock").pop()
    }

    /// Keeps `conn` for the next transaction, or lets it go back to the pool.
    pub fn keep(&self, conn: Conn) {
        let mut sessions = self.sessions.lock().expect("kept sessions lock");
        if sessions.len() < self.limit {
            sessions.push(conn);
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("flavour", &self.flavour)
            .field("database", &self.database)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Parses the URL, builds the pool and checks that the server answers.
    pub async fn open(config: &EndpointConfig) -> Result<Client> {
        let redacted = redact_url(&config.url);
        // `mariadb://` is accepted as a synonym of `mysql://`.
        let url = match config.url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => config.url.clone(),
        };
        let opts = Opts::from_url(&url)
            .map_err(|e| ConnectorError::config(format!("invalid MySQL URL {redacted}: {e}")))?;
        let address = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let database = match opts.db_name() {
            Some(db) if !db.is_empty() => db.to_owned(),
            _ => {
                return Err(ConnectorError::config(format!(
                    "the MySQL URL {redacted} names no database (mysql://user@host:port/DATABASE)"
                )))
            }
        };
        let max = config.max_connections.max(1);
        let url_constraints = opts.pool_opts().constraints();
        let constraints = PoolConstraints::new(url_constraints.min().min(max), max)
            .expect("min <= max and max > 0");
        let pool_opts = opts
            .pool_opts()
            .clone()
            .with_constraints(constraints)
            .with_reset_connection(true);
        let mut builder = OptsBuilder::from_opts(opts)
            .client_found_rows(true)
            .pool_opts(pool_opts)
            .setup(SESSION_SETUP.to_vec())
            .ssl_opts(ssl_opts(&config.tls)?);
        if let Some(password) = &config.password {
            builder = builder.pass(Some(password.expose_secret()));
        }

        let at = |e: mysql_async::Error| {
            let no_tls = matches!(
                e,
                mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
            );
            let err = classify(e);
            let kind = match err.kind() {
                // A refused login is a permission problem, not a lost link.
                ErrorKind::Connection | ErrorKind::Permission | ErrorKind::Config => err.kind(),
                _ => ErrorKind::Connection,
            };
            let reason = if no_tls {
                format!(
                    "the server offers no TLS (tls = \"{}\"; set up TLS on the server or use tls = \"disable\")",
                    config.tls.mode
                )
            } else {
                err.to_string()
            };
            ConnectorError::new(
                kind,
                format!("cannot connect to MySQL at {address}: {reason}"),
            )
        };
        let mut pool = Pool::new(builder.clone());
        let mut first = pool.get_conn().await;
        if config.tls.mode == TlsMode::Prefer
            && matches!(
                first,
                Err(mysql_async::Error::Driver(
                    mysql_async::DriverError::NoClientSslFlagFromServer
                ))
            )
        {
            tracing::debug!(%address, "the server offers no TLS; connecting without (tls = \"prefer\")");
            pool = Pool::new(builder.ssl_opts(None));
            first = pool.get_conn().await;
        }
        let mut conn = first.map_err(at)?;
        let row: Option<(i64, String)> =
            conn.query_first("SELECT 1, VERSION()").await.map_err(at)?;
        let version = row.map(|(_, v)| v).unwrap_or_default();
        drop(conn);
        let flavour = Flavour::from_version(&version);
        tracing::debug!(%address, %database, %version, "connected to {}", flavour.product());
        Ok(Client {
            pool,
            flavour,
            database,
            address,
            poll_interval: config.poll_interval,
            kept: KeptSessions::for_pool_of(max),
        })
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<Conn> {
        self.pool.get_conn().await.map_err(|e| {
            classify(e).context(format!("{} at {}", self.flavour.product(), self.address))
        })
    }

    /// Runs a prepared statement and returns its rows as plain values.
    pub async fn rows(
        &self,
        sql: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<Vec<Vec<mysql_async::Value>>> {
        let mut conn = self.conn().await?;
        exec_rows(&mut conn, sql, params).await
    }
}

/// mysql_async's TLS settings for `tls` (`None`: no TLS). The trust anchors
/// of `verify-full` are read here, so a bad CA file fails at connect.
pub fn ssl_opts(tls: &TlsConfig) -> Result<Option<SslOpts>> {
    // mysql_async asks rustls for the process's default crypto provider.
    crate::tls::crypto_provider();
    Ok(match tls.mode {
        TlsMode::Disable => None,
        TlsMode::Prefer | TlsMode::Require => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        TlsMode::VerifyFull => {
            let roots = crate::tls::trust_anchors(tls)?
                .into_iter()
                .map(|cert| cert.to_vec().into())
                .collect();
            Some(
                SslOpts::default()
                    .with_disable_built_in_roots(true)
                    .with_root_certs(roots),
            )
        }
    })
}

/// Runs a prepared statement on `conn` and returns its rows as plain values.
pub async fn exec_rows(
    conn: &mut Conn,
    sql: &str,
    params: Vec<mysql_async::Value>,
) -> Result<Vec<Vec<mysql_async::Value>>> {
    let rows: Vec<Row> = conn.exec(sql, params).await.map_err(classify)?;
    Ok(rows.into_iter().map(Row::unwrap).collect())
}

/// Runs a prepared statement on `conn` that returns no rows; the number of
/// matched (not only changed: `client_found_rows`) rows.
pub async fn exec_drop(conn: &mut Conn, sql: &str, params: Vec<mysql_async::Value>) -> Result<u64> {
    conn.exec_drop(sql, params).await.map_err(classify)?;
    Ok(conn.affected_rows())
}

/// How MySQL spells identifiers, literals and parameters.
pub const SQL: Dialect = Dialect::MySql;

/// Quotes an identifier for MySQL: in backticks, backticks doubled.
pub fn quote_ident(name: &str) -> String {
    SQL.ident(name)
}

/// A string literal that no quoting rule or `sql_mode` can break: the UTF-8
/// bytes as a hex literal, converted to utf8mb4.
pub fn text_literal(text: &str) -> String {
    SQL.literal(text)
}

/// Text of a database value, for catalog answers.
pub fn text_of(value: &mysql_async::Value) -> String {
    match value {
        mysql_async::Value::NULL => String::new(),
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        mysql_async::Value::Int(i) => i.to_string(),
        mysql_async::Value::UInt(u) => u.to_string(),
        other => format!("{other:?}"),
    }
}

/// Integer of a database value, for counts and sequence numbers.
pub fn int_of(value: &mysql_async::Value) -> Option<i64> {
    match value {
        mysql_async::Value::Int(i) => Some(*i),
        mysql_async::Value::UInt(u) => i64::try_from(*u).ok(),
        mysql_async::Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// The error kind for a server error code.
pub fn kind_of_code(code: u16) -> ErrorKind {
    match code {
        // Deadlock, lock wait timeout, server shutting down.
        1213 | 1205 | 1053 => ErrorKind::Transient,
        // Duplicate key, foreign key (parent / child), NOT NULL, no default,
        // too long, out of range, truncated, bad datetime, bad value for
        // type, CHECK violated (MySQL, MariaDB).
        1062 | 1451 | 1452 | 1048 | 1364 | 1406 | 1264 | 1265 | 1292 | 1366 | 3819 | 4025 => {
            ErrorKind::Data
        }
        // Unknown table, unknown column.
        1146 | 1054 => ErrorKind::Schema,
        // Table access denied, database access denied, login refused, needs
        // SUPER or similar.
        1142 | 1044 | 1045 | 1227 => ErrorKind::Permission,
        // Unknown database (the URL names one that does not exist).
        1049 => ErrorKind::Config,
        _ => ErrorKind::Internal,
    }
}

/// Classifies a driver or server error. The message is one line and never
/// holds a password (neither the server nor the driver repeat it).
pub fn classify(err: mysql_async::Error) -> ConnectorError {
    use mysql_async::{DriverError, Error, IoError};
    let (kind, message) = match &err {
        Error::Server(server) => (
            kind_of_code(server.code),
            format!(
                "error {} ({}): {}",
                server.code, server.state, server.message
            ),
        ),
        Error::Io(IoError::Io(io)) => (
            ErrorKind::Connection,
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
                _ => io.to_string(),
            },
        ),
        #[allow(unreachable_patterns)]
        Error::Io(other) => (ErrorKind::Connection, other.to_string()),
        Error::Driver(
            DriverError::StmtParamsMismatch { .. }
            | DriverError::StmtParamsNumberExceedsLimit { .. }
            | DriverError::Params(_)
            | DriverError::MixedParams
            | DriverError::NestedTransaction
            | DriverError::FromValue { .. }
            | DriverError::FromRow { .. },
        ) => (ErrorKind::Internal, err.to_string()),
        // A bulk execution refused before sending: its rows all have the
        // statement's parameters, so only a row too large to send remains.
        Error::Driver(DriverError::BulkExecute(_)) => (ErrorKind::Data, err.to_string()),
        Error::Driver(_) => (ErrorKind::Connection, err.to_string()),
        Error::Url(_) => (ErrorKind::Config, err.to_string()),
        Error::Other(_) => (ErrorKind::Internal, err.to_string()),
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

    #[test]
    fn tls_modes_become_ssl_options() {
        let mode = |mode| TlsConfig {
            mode,
            ca_file: None,
        };
        assert!(ssl_opts(&mode(TlsMode::Disable)).unwrap().is_none());
        for unchecked in [TlsMode::Prefer, TlsMode::Require] {
            let opts = ssl_opts(&mode(unchecked)).unwrap().expect("TLS");
            assert!(opts.accept_invalid_certs() && opts.skip_domain_validation());
        }
        let dir = std::env::temp_dir().join(format!("tandem-my-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        // A certificate rustls parses as PEM (it is not checked here).
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let opts = ssl_opts(&TlsConfig {
            mode: TlsMode::VerifyFull,
            ca_file: Some(ca),
        })
        .unwrap()
        .expect("TLS");
        assert!(!opts.accept_invalid_certs() && !opts.skip_domain_validation());
        assert!(opts.disable_built_in_roots());
        assert_eq!(opts.root_certs().len(), 1);
        let err = ssl_opts(&TlsConfig {
            mode: TlsMode::VerifyFull,
            ca_file: Some(dir.join("absent.pem")),
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flavour_is_read_from_the_version() {
        assert_eq!(
            Flavour::from_version("10.11.19-MariaDB-0+deb12u1"),
            Flavour::MariaDb
        );
        assert_eq!(Flavour::from_version("8.0.36"), Flavour::MySql);
    }

    #[test]
    fn identifiers_and_literals_are_safe() {
        assert_eq!(quote_ident("a`b c"), "`a``b c`");
        assert_eq!(text_literal("ü'"), "CONVERT(X'C3BC27' USING utf8mb4)");
    }

    #[test]
    fn server_codes_map_to_kinds() {
        assert_eq!(kind_of_code(1062), ErrorKind::Data);
        assert_eq!(kind_of_code(1213), ErrorKind::Transient);
        assert_eq!(kind_of_code(1146), ErrorKind::Schema);
        assert_eq!(kind_of_code(1045), ErrorKind::Permission);
        assert_eq!(kind_of_code(9999), ErrorKind::Internal);
        let err = classify(mysql_async::Error::Server(mysql_async::ServerError {
            code: 1452,
            message: "Cannot add\nor update".into(),
            state: "23000".into(),
        }));
        assert_eq!(err.kind(), ErrorKind::Data);
        assert_eq!(err.to_string(), "error 1452 (23000): Cannot add or update");
        let refused = classify(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::ErrorKind::ConnectionRefused.into(),
        )));
        assert_eq!(refused.kind(), ErrorKind::Connection);
        assert_eq!(refused.to_string(), "connection refused");
    }
}
