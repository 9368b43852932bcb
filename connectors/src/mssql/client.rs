//! Reaching SQL Server: URL parsing, the pool (a small deadpool manager over
//! tiberius), session setup, identifier quoting, and the one place that
//! turns a driver error into an [`ErrorKind`].
//!
//! Every connection this connector opens is made by [`Server::connect`], so
//! TLS is configured in this file alone (see [`encryption_level`]). Each new session gets the same SET
//! options (ANSI behaviour, no implicit transactions, a lock timeout), and a
//! session handed out again by the pool first runs [`SESSION_RESET`]: no open
//! transaction, no applying marker.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, Pool, PoolError, RecycleResult};
use secrecy::ExposeSecret;
use tiberius::error::Error as TdsError;
use tiberius::{AuthMethod, ColumnData, Config, EncryptionLevel, IntoSql, Query};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::connector::{redact_url, EndpointConfig, TlsMode};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::TableName;
use crate::sql::Dialect;

/// A tiberius session over a tokio TCP stream.
pub(crate) type TdsClient = tiberius::Client<Compat<TcpStream>>;

/// A pooled session.
pub(crate) type Conn = Object<Manager>;

/// The port when the URL names none.
const DEFAULT_PORT: u16 = 1433;

/// The schema of a configured table name without one.
pub(crate) const DEFAULT_SCHEMA: &str = match SQL.default_schema() {
    Some(schema) => schema,
    None => panic!("SQL Server tables are in schemas"),
};

/// How long opening a session (TCP, pre-login, login, setup) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the server may stay silent while we wait for an answer. Lock
/// waits end earlier (`SET LOCK_TIMEOUT`, error 1222, a transient error).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The options every session starts with: the ANSI settings that indexed
/// views, filtered indexes and the capture triggers expect, statement-level
/// (not transaction-level) errors so savepoints work, and lock waits bounded
/// to 30 seconds.
pub(crate) const SESSION_SETUP: &str = "SET ANSI_NULLS ON; SET ANSI_PADDING ON; \
SET ANSI_WARNINGS ON; SET ARITHABORT ON; SET CONCAT_NULL_YIELDS_NULL ON; \
SET QUOTED_IDENTIFIER ON; SET NUMERIC_ROUNDABORT OFF; SET XACT_ABORT OFF; \
SET IMPLICIT_TRANSACTIONS OFF; SET LOCK_TIMEOUT 30000";

/// Clears what a session must never carry back into the pool: an open
/// transaction and the applying marker. Run whenever the pool hands a
/// session out again (which also proves the session is alive).
pub(crate) const SESSION_RESET: &str = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION; \
EXEC sys.sp_set_session_context @key = N'tandem.applying', @value = NULL";

/// One bound parameter (`@P1`, `@P2`, ...), already of the SQL Server type
/// the target column takes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Param(pub(crate) ColumnData<'static>);

impl<'a> IntoSql<'a> for Param {
    fn into_sql(self) -> ColumnData<'a> {
        self.0
    }
}

/// Where and how to connect, parsed from an [`EndpointConfig`].
#[derive(Clone)]
pub(crate) struct Server {
    /// Driver configuration (holds the password: never print it).
    config: Config,
    /// `host:port`, safe to show; also what the TCP connection dials.
    pub(crate) address: String,
    /// The database of the URL.
    pub(crate) database: String,
    /// The endpoint's TLS mode.
    pub(crate) tls_mode: TlsMode,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .field("database", &self.database)
            .field("tls_mode", &self.tls_mode)
            .finish_non_exhaustive()
    }
}

/// `%XX` escapes of a URL part decoded (user names and passwords may hold
/// `@`, `:` or `/` that way).
fn percent_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a `true`/`false` URL option.
fn flag(name: &str, value: &str, redacted: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(ConnectorError::config(format!(
            "invalid SQL Server URL {redacted}: option {name} takes true or false, not {value:?}"
        ))),
    }
}

impl Server {
    /// Parses `mssql://user[:password]@host[:port]/database[?options]`; the
    /// endpoint's separate password wins over the URL's. The options
    /// `encrypt` and `trust_server_certificate` are checked here, but TLS
    /// follows the endpoint's [`crate::TlsConfig`] (which read them, see
    /// [`crate::TlsConfig::resolve`]).
    pub(crate) fn from_endpoint(endpoint: &EndpointConfig) -> Result<Server> {
        let redacted = redact_url(&endpoint.url);
        let invalid =
            |why: &str| ConnectorError::config(format!("invalid SQL Server URL {redacted}: {why}"));
        let url = url::Url::parse(&endpoint.url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "mssql" | "sqlserver") {
            return Err(invalid("the scheme must be mssql://"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("it names no host"))?;
        let port = url.port().unwrap_or(DEFAULT_PORT);
        let address = format!("{host}:{port}");
        let database = percent_decode(url.path().trim_start_matches('/'))
            .ok_or_else(|| invalid("the database name is not valid UTF-8"))?;
        if database.is_empty() || database.contains('/') {
            return Err(invalid(
                "it must name one database (mssql://user@host:port/DATABASE)",
            ));
        }
        let user = percent_decode(url.username())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| invalid("it names no user (mssql://USER@host:port/database)"))?;
        let password = match &endpoint.password {
            Some(password) => password.expose_secret().to_owned(),
            None => url
                .password()
                .map(|p| {
                    percent_decode(p).ok_or_else(|| invalid("the password is not valid UTF-8"))
                })
                .transpose()?
                .unwrap_or_default(),
        };

        for (name, value) in url.query_pairs() {
            match name.as_ref() {
                "encrypt" | "trust_server_certificate" => {
                    flag(&name, &value, &redacted)?;
                }
                other => {
                    return Err(invalid(&format!(
                        "unknown option {other:?} (known: encrypt, trust_server_certificate)"
                    )))
                }
            }
        }

        let mut config = Config::new();
        // Without brackets: the name the server and TLS see.
        config.host(host.trim_start_matches('[').trim_end_matches(']'));
        config.port(port);
        config.database(&database);
        config.authentication(AuthMethod::sql_server(user, password));
        config.application_name("tandem");
        config.command_timeout(Some(COMMAND_TIMEOUT));
        let tls = &endpoint.tls;
        config.encryption(encryption_level(tls.mode));
        match (tls.mode, &tls.ca_file) {
            (TlsMode::Disable, _) => {}
            (TlsMode::Prefer | TlsMode::Require, _) => config.trust_cert(),
            (TlsMode::VerifyFull, Some(ca_file)) => {
                // tiberius reads the file at each connect: fail early and
                // clearly when it is not there.
                std::fs::metadata(ca_file).map_err(|e| {
                    ConnectorError::config(format!(
                        "tls_ca_file: cannot read {}: {e}",
                        ca_file.display()
                    ))
                })?;
                config.trust_cert_ca(ca_file.display());
            }
            // The system's trust store, tiberius' default.
            (TlsMode::VerifyFull, None) => {}
        }
        // tiberius asks rustls for the process's default crypto provider.
        crate::tls::crypto_provider();
        Ok(Server {
            config,
            address,
            database,
            tls_mode: tls.mode,
        })
    }

    /// Opens one session and sets it up (see [`SESSION_SETUP`]). A server
    /// that redirects (Azure gateways) is followed once.
    pub(crate) async fn connect(&self) -> Result<TdsClient> {
        let attempt = async {
            let mut config = self.config.clone();
            let mut address = self.address.clone();
            let mut downgraded = false;
            for _ in 0..3 {
                let tcp = TcpStream::connect(&address).await?;
                tcp.set_nodelay(true)?;
                match tiberius::Client::connect(config.clone(), tcp.compat_write()).await {
                    Ok(mut client) => {
                        client
                            .simple_query(SESSION_SETUP)
                            .await?
                            .into_results()
                            .await?;
                        return Ok::<TdsClient, TdsError>(client);
                    }
                    Err(TdsError::Routing { host, port }) => {
                        config.host(&host);
                        config.port(port);
                        address = format!("{host}:{port}");
                    }
                    // tls = "prefer" and a server that does not encrypt: once
                    // more, in the clear.
                    Err(TdsError::Protocol(message))
                        if self.tls_mode == TlsMode::Prefer
                            && !downgraded
                            && message.contains("does not allow the requested encryption") =>
                    {
                        downgraded = true;
                        config.encryption(EncryptionLevel::NotSupported);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(TdsError::Protocol(Cow::Borrowed(
                "the server redirected the connection more than once",
            )))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(connect_error(e, &self.address)),
            Err(_) => Err(ConnectorError::new(
                ErrorKind::Connection,
                format!(
                    "cannot connect to SQL Server at {}: timed out",
                    self.address
                ),
            )),
        }
    }

    /// A pool of at most `max_connections` sessions (none opened yet).
    pub(crate) fn pool(&self, max_connections: usize) -> Result<Pool<Manager>> {
        Pool::builder(Manager {
            server: self.clone(),
        })
        .max_size(max_connections.max(1))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| ConnectorError::internal(format!("cannot build the SQL Server pool: {e}")))
    }
}

/// What tiberius is asked for: `disable` is no TLS at all (not `Off`, which
/// would still encrypt the login), `prefer` encrypts when the server can
/// (`On`; [`Server::connect`] retries in the clear when it cannot), and
/// `require` and `verify-full` encrypt or fail. The certificate is checked
/// only with `verify-full` (against the CA file *in addition to* the system's
/// trust store: that is how tiberius trusts a CA file); the other modes
/// trust it as is.
pub(crate) fn encryption_level(mode: TlsMode) -> EncryptionLevel {
    match mode {
        TlsMode::Disable => EncryptionLevel::NotSupported,
        TlsMode::Prefer => EncryptionLevel::On,
        TlsMode::Require | TlsMode::VerifyFull => EncryptionLevel::Required,
    }
}

/// Opens and recycles pooled sessions.
pub(crate) struct Manager {
    server: Server,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("server", &self.server)
            .finish()
    }
}

impl managed::Manager for Manager {
    type Type = TdsClient;
    type Error = ConnectorError;

    async fn create(&self) -> Result<TdsClient> {
        self.server.connect().await
    }

    async fn recycle(&self, client: &mut TdsClient, _: &Metrics) -> RecycleResult<ConnectorError> {
        batch(client, SESSION_RESET)
            .await
            .map_err(|e| managed::RecycleError::Backend(classify(e)))
    }
}

/// A pool of sessions to one database, and what the URL said.
pub(crate) struct Client {
    /// The pool.
    pub(crate) pool: Pool<Manager>,
    /// `host:port`, for messages.
    pub(crate) address: String,
    /// The database of the URL, for messages.
    pub(crate) database: String,
    /// How long `wait_for_changes` sleeps at most.
    pub(crate) poll_interval: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Parses the URL, builds the pool and checks that the server answers.
    pub(crate) async fn open(config: &EndpointConfig) -> Result<Client> {
        let server = Server::from_endpoint(config)?;
        let pool = server.pool(config.max_connections)?;
        let client = Client {
            pool,
            address: server.address.clone(),
            database: server.database.clone(),
            poll_interval: config.poll_interval,
        };
        let mut conn = client.conn().await?;
        let rows = query_rows(&mut conn, "SELECT 1, @@VERSION", Vec::new())
            .await
            .map_err(|e| {
                let err = classify(e);
                ConnectorError::new(
                    err.kind(),
                    format!("cannot connect to SQL Server at {}: {err}", client.address),
                )
            })?;
        let version: Option<&str> = rows.first().and_then(|r| r.get(1));
        tracing::debug!(
            address = %client.address,
            database = %client.database,
            version = version.and_then(|v| v.lines().next()).unwrap_or(""),
            "connected to SQL Server"
        );
        Ok(client)
    }

    /// A pooled session.
    pub(crate) async fn conn(&self) -> Result<Conn> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(e, &self.address))
    }

    /// Runs a parameterized statement on a pooled session; its first result
    /// set.
    pub(crate) async fn rows(&self, sql: &str, params: Vec<Param>) -> Result<Vec<tiberius::Row>> {
        let mut conn = self.conn().await?;
        query_rows(&mut conn, sql, params).await.map_err(classify)
    }
}

/// Runs `sql` with bound parameters (through `sp_executesql`) and returns
/// the rows of its first result set; the whole answer is read, so the
/// session is ready for the next request even when the statement failed.
pub(crate) async fn query_rows(
    client: &mut TdsClient,
    sql: &str,
    params: Vec<Param>,
) -> std::result::Result<Vec<tiberius::Row>, TdsError> {
    let mut query = Query::new(sql);
    for param in params {
        query.bind(param);
    }
    query.query(client).await?.into_first_result().await
}

/// Runs a batch without parameters as is (not through `sp_executesql`, so
/// its SET options and transaction statements stay in force).
pub(crate) async fn batch(client: &mut TdsClient, sql: &str) -> std::result::Result<(), TdsError> {
    client.simple_query(sql).await?.into_results().await?;
    Ok(())
}

/// How SQL Server spells identifiers, literals and parameters.
pub(crate) const SQL: Dialect = Dialect::SqlServer;

/// Quotes an identifier for SQL Server: in brackets, `]` doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    SQL.ident(name)
}

/// A Unicode string literal, quotes doubled: `N'it''s'`.
pub(crate) fn quote_literal(text: &str) -> String {
    SQL.literal(text)
}

/// The table's schema, `dbo` when it has none.
pub(crate) fn schema_of(table: &TableName) -> &str {
    table.schema.as_deref().unwrap_or(DEFAULT_SCHEMA)
}

/// `[schema].[table]`.
pub(crate) fn qualified(table: &TableName) -> String {
    SQL.table(table)
}

/// The name as the triggers record it and `read_changes` matches it:
/// `schema.table`, the schema always written.
pub(crate) fn display_name(table: &TableName) -> String {
    format!("{}.{}", schema_of(table), table.name)
}

/// What a server error number means to the agent.
pub(crate) fn kind_of_code(code: u32) -> ErrorKind {
    match code {
        // Deadlock victim, lock request timeout, snapshot update conflicts,
        // and the "service busy / database unavailable" family (Azure SQL,
        // failovers).
        1205 | 1222 | 3960 | 3961 | 40197 | 40501 | 40613 | 49918 | 49919 | 49920 | 10928
        | 10929 | 41302 | 41305 | 41325 | 41839 => ErrorKind::Transient,
        // Duplicate key (constraint, unique index), foreign key or CHECK
        // violated, NULL into NOT NULL, data too long (before and since
        // 2019), arithmetic overflow, value out of range for its type,
        // text that is not a number / date / uuid, date out of range,
        // explicit value into an identity or computed column, divide by 0.
        2627 | 2601 | 547 | 515 | 8152 | 2628 | 220 | 232 | 8115 | 245 | 8114 | 8169 | 241
        | 242 | 295 | 296 | 298 | 517 | 544 | 8102 | 271 | 8134 | 9455 | 6522 => ErrorKind::Data,
        // Invalid object name, invalid column name, columns and values do
        // not match, object not found.
        208 | 207 | 213 | 4902 | 3701 => ErrorKind::Schema,
        // Permission denied on an object / column / statement, login failed,
        // server principal cannot access the database.
        229 | 230 | 262 | 297 | 300 | 916 | 18456 | 1088 => ErrorKind::Permission,
        // The database of the URL cannot be opened.
        4060 | 911 => ErrorKind::Config,
        _ => ErrorKind::Internal,
    }
}

/// The reason an I/O error gives, short.
fn io_reason(kind: std::io::ErrorKind, message: &str) -> String {
    match kind {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::TimedOut => "timed out".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset by the server".to_owned(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => {
            "the server closed the connection".to_owned()
        }
        _ => one_line(message),
    }
}

/// Classifies a driver or server error. The message is one line and never
/// holds a password (neither the server nor the driver repeat it).
pub(crate) fn classify(err: TdsError) -> ConnectorError {
    let (kind, message) = match &err {
        TdsError::Server(token) => (
            kind_of_code(token.code()),
            format!("error {}: {}", token.code(), token.message()),
        ),
        TdsError::Io { kind, message } => (ErrorKind::Connection, io_reason(*kind, message)),
        TdsError::Tls(message) => (ErrorKind::Connection, format!("TLS: {message}")),
        // The session is out of step with the server: only a new one helps.
        TdsError::Protocol(_) | TdsError::Routing { .. } => {
            (ErrorKind::Connection, err.to_string())
        }
        _ => (ErrorKind::Internal, err.to_string()),
    };
    ConnectorError::new(kind, one_line(&message)).with_source(err)
}

/// A failure to open a session: "cannot connect to SQL Server at
/// host:port: connection refused".
pub(crate) fn connect_error(err: TdsError, address: &str) -> ConnectorError {
    let classified = classify(err);
    let kind = match classified.kind() {
        // A refused login is a permission problem, an unknown database a
        // configuration one; anything else is worth retrying.
        ErrorKind::Permission | ErrorKind::Config => classified.kind(),
        _ => ErrorKind::Connection,
    };
    ConnectorError::new(
        kind,
        format!("cannot connect to SQL Server at {address}: {classified}"),
    )
    .with_source(classified)
}

/// A failure to get a pooled session.
pub(crate) fn pool_error(err: PoolError<ConnectorError>, address: &str) -> ConnectorError {
    match err {
        PoolError::Backend(e) => e,
        PoolError::Timeout(_) => ConnectorError::new(
            ErrorKind::Connection,
            format!("no SQL Server session to {address}: timed out"),
        ),
        PoolError::Closed => ConnectorError::new(
            ErrorKind::Connection,
            format!("no SQL Server session to {address}: the pool is closed"),
        ),
        other => ConnectorError::internal(format!("no SQL Server session to {address}: {other}")),
    }
}

/// Collapses a message onto one line.
pub(crate) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, password: Option<&str>) -> EndpointConfig {
        EndpointConfig {
            engine: crate::Engine::Mssql,
            url: url.to_owned(),
            password: password.map(Into::into),
            poll_interval: Duration::from_secs(1),
            max_connections: 2,
            tls: crate::TlsConfig::default_for(crate::Engine::Mssql, url)
                .unwrap_or_else(|_| crate::TlsConfig::disabled()),
            http: None,
        }
    }

    fn sql_auth(server: &Server) -> String {
        // The config's Debug redacts the password; the auth method's fields
        // are what the login sends.
        format!("{:?}", server.config)
    }

    #[test]
    fn urls_are_parsed_with_defaults() {
        let server = Server::from_endpoint(&endpoint(
            "mssql://sa:Passw0rd!@127.0.0.1:1433/master",
            None,
        ))
        .unwrap();
        assert_eq!(server.address, "127.0.0.1:1433");
        assert_eq!(server.database, "master");
        assert_eq!(server.tls_mode, TlsMode::Prefer);
        let server =
            Server::from_endpoint(&endpoint("sqlserver://app@db.example/Sales%20DB", None))
                .unwrap();
        assert_eq!(server.address, "db.example:1433");
        assert_eq!(server.database, "Sales DB");
        let v6 = Server::from_endpoint(&endpoint("mssql://app@[::1]:14330/db", None)).unwrap();
        assert_eq!(v6.address, "[::1]:14330");
    }

    #[test]
    fn the_tls_mode_decides_the_encryption() {
        assert_eq!(
            encryption_level(TlsMode::Disable),
            EncryptionLevel::NotSupported
        );
        assert_eq!(encryption_level(TlsMode::Prefer), EncryptionLevel::On);
        assert_eq!(
            encryption_level(TlsMode::Require),
            EncryptionLevel::Required
        );
        assert_eq!(
            encryption_level(TlsMode::VerifyFull),
            EncryptionLevel::Required
        );
        // The URL's options, read by TlsConfig::default_for.
        let server = Server::from_endpoint(&endpoint(
            "mssql://sa@h/db?encrypt=true&trust_server_certificate=true",
            None,
        ))
        .unwrap();
        assert_eq!(server.tls_mode, TlsMode::Require);
        let plain =
            Server::from_endpoint(&endpoint("mssql://sa@h/db?encrypt=false", None)).unwrap();
        assert_eq!(plain.tls_mode, TlsMode::Disable);
        // verify-full with a CA file that is not there fails at once.
        let mut config = endpoint("mssql://sa@db.example/db", None);
        config.tls = crate::TlsConfig {
            mode: TlsMode::VerifyFull,
            ca_file: Some("/nonexistent/tandem-ca.pem".into()),
        };
        let err = Server::from_endpoint(&config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string().contains("/nonexistent/tandem-ca.pem"),
            "{err}"
        );
        // With a CA file there, the certificate is checked against it (and
        // not trusted as is).
        let ca = std::env::temp_dir().join(format!("tandem-ms-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&ca, "").unwrap();
        config.tls.ca_file = Some(ca.clone());
        let server = Server::from_endpoint(&config).unwrap();
        assert_eq!(server.tls_mode, TlsMode::VerifyFull);
        let shown = format!("{:?}", server.config);
        assert!(shown.contains("tandem-ms-"), "{shown}");
        std::fs::remove_file(ca).unwrap();
    }

    #[test]
    fn passwords_never_show_and_the_separate_one_wins() {
        let server = Server::from_endpoint(&endpoint(
            "mssql://sa:url%40pw@h:1/db",
            Some("given-secret"),
        ))
        .unwrap();
        let shown = format!("{server:?} {}", sql_auth(&server));
        assert!(!shown.contains("given-secret"), "{shown}");
        assert!(!shown.contains("url@pw"), "{shown}");
        assert!(!format!("{:?}", Manager { server }).contains("given-secret"));
    }

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        for url in [
            "mssql://sa:hunter2@h:notaport/db",
            "mssql://sa:hunter2@h:1433",
            "mssql://sa:hunter2@h:1433/a/b",
            "mssql://:hunter2@h:1433/db",
            "postgres://sa:hunter2@h/db",
            "mssql://sa:hunter2@h/db?encrypt=maybe",
            "mssql://sa:hunter2@h/db?tls=1",
        ] {
            let err = Server::from_endpoint(&endpoint(url, None)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(
                err.to_string().starts_with("invalid SQL Server URL"),
                "{err}"
            );
        }
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("a%40b%3Ac").as_deref(), Some("a@b:c"));
        assert_eq!(percent_decode("%C3%BC").as_deref(), Some("ü"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("we]ird ü"), "[we]]ird ü]");
        assert_eq!(quote_ident("[x]"), "[[x]]]");
        assert_eq!(quote_literal("it's"), "N'it''s'");
        let odd = TableName::new(Some("Sa]es"), "we]ird ü");
        assert_eq!(qualified(&odd), "[Sa]]es].[we]]ird ü]");
        assert_eq!(display_name(&odd), "Sa]es.we]ird ü");
        let plain = TableName::new(None, "t");
        assert_eq!(qualified(&plain), "[dbo].[t]");
        assert_eq!(display_name(&plain), "dbo.t");
    }

    #[test]
    fn server_error_numbers_map_to_kinds() {
        for code in [2627, 2601, 547, 515, 8152, 2628, 220, 8115, 245, 8114] {
            assert_eq!(kind_of_code(code), ErrorKind::Data, "{code}");
        }
        for code in [1205, 1222] {
            assert_eq!(kind_of_code(code), ErrorKind::Transient, "{code}");
        }
        for code in [208, 207] {
            assert_eq!(kind_of_code(code), ErrorKind::Schema, "{code}");
        }
        for code in [229, 230, 262, 18456] {
            assert_eq!(kind_of_code(code), ErrorKind::Permission, "{code}");
        }
        assert_eq!(kind_of_code(4060), ErrorKind::Config);
        assert_eq!(kind_of_code(50000), ErrorKind::Internal);
    }

    #[test]
    fn driver_errors_are_classified() {
        let refused = classify(TdsError::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            message: "Connection refused (os error 111)".into(),
        });
        assert_eq!(refused.kind(), ErrorKind::Connection);
        assert_eq!(refused.to_string(), "connection refused");
        let protocol = classify(TdsError::Protocol("bad\ntoken".into()));
        assert_eq!(protocol.kind(), ErrorKind::Connection);
        assert!(!protocol.to_string().contains('\n'));
        let conversion = classify(TdsError::Conversion("no".into()));
        assert_eq!(conversion.kind(), ErrorKind::Internal);

        let at = connect_error(
            TdsError::Io {
                kind: std::io::ErrorKind::ConnectionRefused,
                message: String::new(),
            },
            "127.0.0.1:1",
        );
        assert_eq!(at.kind(), ErrorKind::Connection);
        assert_eq!(
            at.to_string(),
            "cannot connect to SQL Server at 127.0.0.1:1: connection refused"
        );
        let odd = connect_error(TdsError::Utf16, "h:1");
        assert_eq!(odd.kind(), ErrorKind::Connection);
    }

    #[test]
    fn pool_errors_keep_the_backend_error() {
        let backend = PoolError::Backend(ConnectorError::new(ErrorKind::Permission, "denied"));
        assert_eq!(pool_error(backend, "h:1").kind(), ErrorKind::Permission);
        let timeout = pool_error(PoolError::Timeout(managed::TimeoutType::Wait), "h:1");
        assert_eq!(timeout.kind(), ErrorKind::Connection);
    }

    #[test]
    fn session_statements_reset_what_a_pooled_session_may_carry() {
        assert!(SESSION_SETUP.contains("SET XACT_ABORT OFF"));
        assert!(SESSION_SETUP.contains("SET LOCK_TIMEOUT 30000"));
        assert!(SESSION_RESET.starts_with("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;"));
        assert!(SESSION_RESET.contains("@key = N'tandem.applying', @value = NULL"));
    }
}
