//! Reaching the server: URL parsing, session settings, the pool, the
//! dedicated LISTEN connection, identifier quoting, and the one place that
//! turns a driver error into an [`ErrorKind`].
//!
//! Every connection this connector opens is set up here, TLS included: the
//! endpoint's [`TlsMode`] becomes the driver's `sslmode` (`verify-full` is
//! `require` plus a rustls configuration that checks the certificate and the
//! host name), and both the pool and the LISTEN connection use the same
//! rustls connector.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use secrecy::ExposeSecret;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connector::{redact_url, EndpointConfig, TlsMode};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::TableName;
use crate::sql::Dialect;

/// Session settings every connection starts with, so that the text forms
/// the server prints are the ones [`crate::Value::parse_text`] reads.
const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO -c bytea_output=hex \
     -c IntervalStyle=postgres -c extra_float_digits=1";

/// How long to wait for a connection when the URL does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The notification channel the capture triggers signal.
pub(crate) const CHANGES_CHANNEL: &str = "tandem_changes";

/// The stream of a connection made through [`MakeRustlsConnect`]: TLS or
/// plain, as negotiated.
pub(crate) type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Where and how to connect, parsed from an [`EndpointConfig`].
#[derive(Clone)]
pub(crate) struct Server {
    /// Driver configuration (may hold the password: never print it).
    pub(crate) config: tokio_postgres::Config,
    /// `host:port`, safe to show.
    pub(crate) address: String,
    /// The endpoint's TLS mode.
    pub(crate) tls_mode: TlsMode,
    /// Makes the TLS session of each connection.
    tls: MakeRustlsConnect,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .field("tls_mode", &self.tls_mode)
            .finish_non_exhaustive()
    }
}

/// The URL without its `sslmode` parameters: the endpoint's [`TlsMode`]
/// (which read them) decides, and the driver knows neither `verify-full` nor
/// `allow`. Done on the text, so the other parameters stay byte for byte.
fn without_sslmode(url: &str) -> Cow<'_, str> {
    let Some((base, query)) = url.split_once('?') else {
        return Cow::Borrowed(url);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslmode=") && *p != "sslmode")
        .collect();
    if kept.len() == query.split('&').filter(|p| !p.is_empty()).count() {
        return Cow::Borrowed(url);
    }
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Cow::Owned(out)
}

impl Server {
    /// Parses the URL, applies the separate password, the session options
    /// and the TLS settings (reading the CA file, if any).
    pub(crate) fn from_endpoint(endpoint: &EndpointConfig) -> Result<Server> {
        let mut config: tokio_postgres::Config =
            without_sslmode(&endpoint.url).parse().map_err(|e| {
                ConnectorError::config(format!(
                    "invalid PostgreSQL URL {}: {}",
                    redact_url(&endpoint.url),
                    error_chain(&e)
                ))
            })?;
        if let Some(password) = &endpoint.password {
            config.password(password.expose_secret().as_bytes());
        }
        let options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => {
                format!("{existing} {SESSION_OPTIONS}")
            }
            _ => SESSION_OPTIONS.to_owned(),
        };
        config.options(options);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tandem");
        }
        config.ssl_mode(match endpoint.tls.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyFull => SslMode::Require,
        });
        let tls = MakeRustlsConnect::new(crate::tls::client_config(&endpoint.tls)?);
        let address = address_of(&config);
        Ok(Server {
            config,
            address,
            tls_mode: endpoint.tls.mode,
            tls,
        })
    }

    /// A pool of at most `max_connections` connections (none opened yet).
    pub(crate) fn pool(&self, max_connections: usize) -> Result<Pool> {
        let manager = Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_connections.max(1))
            .build()
            .map_err(|e| ConnectorError::internal(format!("cannot build the PostgreSQL pool: {e}")))
    }

    /// One connection outside the pool (for LISTEN). The caller drives the
    /// returned [`Connection`].
    pub(crate) async fn connect_unpooled(&self) -> Result<(Client, Connection<Socket, TlsStream>)> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| connect_error(e, &self.address))
    }
}

/// `host:port` of the first host (all of them, comma separated, when the URL
/// names several).
fn address_of(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port_at = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let mut hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) => format!("{name}:{}", port_at(i)),
            Host::Unix(path) => format!("{}:{}", path.display(), port_at(i)),
        })
        .collect();
    if hosts.is_empty() {
        hosts = config
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{addr}:{}", port_at(i)))
            .collect();
    }
    if hosts.is_empty() {
        format!("localhost:{}", port_at(0))
    } else {
        hosts.join(",")
    }
}

/// How PostgreSQL spells identifiers, literals and parameters.
pub(crate) const SQL: Dialect = Dialect::Postgres;

/// Quotes an identifier: `we"ird` -> `"we""ird"`.
pub(crate) fn quote_ident(name: &str) -> String {
    SQL.ident(name)
}

/// Quotes a string literal, safe whatever `standard_conforming_strings` is.
pub(crate) fn quote_literal(text: &str) -> String {
    SQL.literal(text)
}

/// The schema used when a table name has none.
pub(crate) const DEFAULT_SCHEMA: &str = match SQL.default_schema() {
    Some(schema) => schema,
    None => panic!("PostgreSQL tables are in schemas"),
};

/// The table's schema, `public` when it has none.
pub(crate) fn schema_of(table: &TableName) -> &str {
    table.schema.as_deref().unwrap_or(DEFAULT_SCHEMA)
}

/// `"schema"."table"`.
pub(crate) fn qualified(table: &TableName) -> String {
    SQL.table(table)
}

/// What an SQLSTATE means to the agent.
pub(crate) fn kind_of_code(code: &str) -> ErrorKind {
    match code {
        c if c.starts_with("08") => ErrorKind::Connection,
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" => ErrorKind::Transient,
        c if c.starts_with("22") || c.starts_with("23") => ErrorKind::Data,
        "42P01" | "42703" | "3F000" => ErrorKind::Schema,
        "42501" => ErrorKind::Permission,
        // Authentication failed: an operator must fix the credentials.
        c if c.starts_with("28") => ErrorKind::Permission,
        // The database named in the URL does not exist.
        "3D000" => ErrorKind::Config,
        _ => ErrorKind::Internal,
    }
}

/// Classifies a driver error.
pub(crate) fn kind_of(err: &tokio_postgres::Error) -> ErrorKind {
    if let Some(code) = err.code() {
        return kind_of_code(code.code());
    }
    if err.is_closed() || io_error_in(err).is_some() {
        return ErrorKind::Connection;
    }
    let text = err.to_string();
    if text.starts_with("error connecting")
        || text.starts_with("error communicating")
        || text.starts_with("timeout")
        || text.starts_with("error performing TLS")
    {
        return ErrorKind::Connection;
    }
    if text.starts_with("invalid connection string") || text.starts_with("invalid configuration") {
        return ErrorKind::Config;
    }
    ErrorKind::Internal
}

fn io_error_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// The error and its causes on one line (`a: b: c`).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut current = err.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    one_line(&parts.join(": "))
}

/// Newlines (from server messages) folded into spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.trim().replace(['\r', '\n'], " ")
}

/// The server's own words for an error: its message and detail, or the
/// driver's description when the server did not answer.
pub(crate) fn server_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => one_line(&format!("{} ({detail})", db.message())),
            None => one_line(db.message()),
        },
        None => error_chain(err),
    }
}

/// A driver error as a connector error, prefixed with what we were doing.
pub(crate) fn pg_error(err: tokio_postgres::Error, context: impl fmt::Display) -> ConnectorError {
    let kind = kind_of(&err);
    let message = format!("{context}: {}", server_message(&err));
    ConnectorError::new(kind, message).with_source(err)
}

/// A failure to open a connection: "cannot connect to PostgreSQL at
/// host:port: connection refused".
pub(crate) fn connect_error(err: tokio_postgres::Error, address: &str) -> ConnectorError {
    let kind = match kind_of(&err) {
        // Anything not clearly someone's mistake is worth retrying.
        ErrorKind::Internal => ErrorKind::Connection,
        kind => kind,
    };
    let reason = if err.as_db_error().is_some() {
        server_message(&err)
    } else if err.to_string().starts_with("error performing TLS") {
        // "error performing TLS handshake: invalid peer certificate: ..."
        error_chain(&err)
    } else if let Some(io) = io_error_in(&err) {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::TimedOut => "timed out".to_owned(),
            _ => one_line(&io.to_string()),
        }
    } else {
        error_chain(&err)
    };
    ConnectorError::new(
        kind,
        format!("cannot connect to PostgreSQL at {address}: {reason}"),
    )
    .with_source(err)
}

/// A failure to get a pooled connection.
pub(crate) fn pool_error(err: PoolError, address: &str) -> ConnectorError {
    match err {
        PoolError::Backend(e) => connect_error(e, address),
        other => ConnectorError::new(
            ErrorKind::Connection,
            format!("no PostgreSQL connection to {address}: {other}"),
        )
        .with_source(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, password: Option<&str>) -> EndpointConfig {
        EndpointConfig {
            engine: crate::Engine::Postgres,
            url: url.to_owned(),
            password: password.map(Into::into),
            poll_interval: Duration::from_secs(1),
            max_connections: 2,
            tls: crate::TlsConfig::disabled(),
            http: None,
        }
    }

    #[test]
    fn the_tls_mode_decides_the_sslmode_and_the_url_option_is_dropped() {
        for (mode, expected) in [
            (TlsMode::Disable, SslMode::Disable),
            (TlsMode::Prefer, SslMode::Prefer),
            (TlsMode::Require, SslMode::Require),
        ] {
            let mut config = endpoint("postgres://u@h/db?sslmode=verify-full", None);
            config.tls = crate::TlsConfig {
                mode,
                ca_file: None,
            };
            let server = Server::from_endpoint(&config).unwrap();
            assert_eq!(server.config.get_ssl_mode(), expected, "{mode}");
            assert_eq!(server.tls_mode, mode);
        }
        // verify-full is the driver's require plus a checking rustls config;
        // a CA file that is not there fails at once, naming the file.
        let mut config = endpoint("postgres://u@h/db", None);
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
    }

    #[test]
    fn sslmode_is_cut_from_the_url_text_only() {
        assert_eq!(without_sslmode("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            without_sslmode("postgres://u@h/db?sslmode=verify-full"),
            "postgres://u@h/db"
        );
        assert_eq!(
            without_sslmode(
                "postgres://u@h/db?options=-c%20search_path%3Dx&sslmode=allow&application_name=a+b"
            ),
            "postgres://u@h/db?options=-c%20search_path%3Dx&application_name=a+b"
        );
        assert!(matches!(
            without_sslmode("postgres://u@h/db?connect_timeout=3"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn password_option_wins_and_session_options_are_appended() {
        let server = Server::from_endpoint(&endpoint(
            "postgres://u:urlpw@db.example:6432/app?options=-c%20search_path%3Dx",
            Some("secret"),
        ))
        .unwrap();
        assert_eq!(server.config.get_password(), Some(&b"secret"[..]));
        let options = server.config.get_options().unwrap();
        assert!(
            options.starts_with("-c search_path=x -c TimeZone=UTC"),
            "{options}"
        );
        assert_eq!(server.address, "db.example:6432");
        assert!(!format!("{server:?}").contains("secret"));
    }

    #[test]
    fn bad_url_is_a_config_error_without_password() {
        let err = Server::from_endpoint(&endpoint("postgres://u:hunter2@h:notaport/db", None))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn sqlstates_map_to_kinds() {
        assert_eq!(kind_of_code("08006"), ErrorKind::Connection);
        assert_eq!(kind_of_code("40P01"), ErrorKind::Transient);
        assert_eq!(kind_of_code("23505"), ErrorKind::Data);
        assert_eq!(kind_of_code("22P02"), ErrorKind::Data);
        assert_eq!(kind_of_code("42P01"), ErrorKind::Schema);
        assert_eq!(kind_of_code("42501"), ErrorKind::Permission);
        assert_eq!(kind_of_code("XX000"), ErrorKind::Internal);
    }

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(quote_ident("we\"ird ü"), "\"we\"\"ird ü\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'c"), "E'a\\\\b''c'");
    }
}
