//! The engines, what is true of each (the facts a config, a message or
//! the agent needs: names, URL schemes, poll intervals, the change table's
//! name), and connecting to one: the only place that knows every engine.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::connector::{Connector, EndpointConfig};
use crate::error::Result;
use crate::sql::Dialect;

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
    /// A cloud application's REST API (see [`crate::http`]).
    Http,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kinds()[0])
    }
}

impl Engine {
    /// Every engine, in the order the docs list them.
    pub const ALL: [Engine; 5] = [
        Engine::Postgres,
        Engine::Mysql,
        Engine::Sqlite,
        Engine::Mssql,
        Engine::Http,
    ];

    /// The values of a config's `kind` that name this engine; the first is
    /// the one messages use.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Engine::Postgres => &["postgres", "postgresql"],
            Engine::Mysql => &["mysql", "mariadb"],
            Engine::Sqlite => &["sqlite"],
            Engine::Mssql => &["mssql", "sqlserver"],
            Engine::Http => &["http"],
        }
    }

    /// The engine a config's `kind` names.
    pub fn from_kind(kind: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.kinds().contains(&kind))
    }

    /// The URL schemes of this engine's endpoints; the first is the one
    /// connectors read.
    pub fn url_schemes(self) -> &'static [&'static str] {
        match self {
            Engine::Postgres => &["postgres", "postgresql"],
            Engine::Mysql => &["mysql", "mariadb"],
            Engine::Sqlite => &["sqlite"],
            Engine::Mssql => &["mssql", "sqlserver"],
            Engine::Http => &["https", "http"],
        }
    }

    /// The engine of a database URL, by its scheme (an API's URL names
    /// none: its scheme is the web's).
    pub fn of_database_url(url: &str) -> Option<Engine> {
        let scheme = url.split("://").next()?;
        Engine::ALL
            .into_iter()
            .filter(|e| *e != Engine::Http)
            .find(|e| e.url_schemes().contains(&scheme))
    }

    /// Whether `url` is written for this engine: one of its schemes, and
    /// for SQLite a file after it.
    pub fn accepts_url(self, url: &str) -> bool {
        self.url_schemes().iter().any(|scheme| {
            url.strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|rest| self != Engine::Sqlite || !rest.is_empty())
        })
    }

    /// What a URL of this engine looks like, for messages.
    pub fn url_example(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres://user[:password]@host:port/database",
            Engine::Mysql => "mysql://user[:password]@host:port/database",
            Engine::Sqlite => "sqlite:///absolute/path.db or sqlite://relative/to/this/file.db",
            Engine::Mssql => "mssql://user[:password]@host:port/database",
            Engine::Http => "https://host/base/path of the API",
        }
    }

    /// `url` with the scheme its connector reads (`mariadb://` becomes
    /// `mysql://`, `sqlserver://` becomes `mssql://`).
    pub fn canonical_url(self, url: &str) -> String {
        let canonical = self.url_schemes()[0];
        for alias in &self.url_schemes()[1..] {
            if self == Engine::Http {
                break; // http:// and https:// are different URLs
            }
            if let Some(rest) = url.strip_prefix(&format!("{alias}://")) {
                return format!("{canonical}://{rest}");
            }
        }
        url.to_owned()
    }

    /// How often a side is polled for changes unless its config says:
    /// for PostgreSQL, the fallback behind NOTIFY, which wakes the agent
    /// at once; for an API, not so often that it counts against its limits.
    pub fn default_poll_interval(self) -> Duration {
        match self {
            Engine::Postgres => Duration::from_secs(2),
            Engine::Mysql | Engine::Sqlite | Engine::Mssql => Duration::from_millis(250),
            Engine::Http => Duration::from_secs(2),
        }
    }

    /// The change table, as an operator names it in SQL.
    pub fn change_table(self) -> &'static str {
        match self {
            Engine::Mysql | Engine::Sqlite => "tandem_changes",
            Engine::Postgres | Engine::Mssql | Engine::Http => "tandem.changes",
        }
    }

    /// How the engine spells SQL; `None` for an API.
    pub fn dialect(self) -> Option<Dialect> {
        match self {
            Engine::Postgres => Some(Dialect::Postgres),
            Engine::Mysql => Some(Dialect::MySql),
            Engine::Sqlite => Some(Dialect::Sqlite),
            Engine::Mssql => Some(Dialect::SqlServer),
            Engine::Http => None,
        }
    }

    /// The schema a table named without one is in, where the engine has
    /// schemas.
    pub fn default_schema(self) -> Option<&'static str> {
        self.dialect().and_then(Dialect::default_schema)
    }
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
        Engine::Http => crate::http::connect(config).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_scheme_names_its_engine() {
        for engine in Engine::ALL {
            assert_eq!(engine.to_string(), engine.kinds()[0]);
            for kind in engine.kinds() {
                assert_eq!(Engine::from_kind(kind), Some(engine));
            }
        }
        assert_eq!(Engine::from_kind("oracle"), None);
        assert_eq!(
            Engine::of_database_url("mariadb://u@h/db"),
            Some(Engine::Mysql)
        );
        assert_eq!(Engine::of_database_url("https://api.example.com"), None);
    }

    #[test]
    fn urls_are_accepted_by_scheme_and_made_canonical() {
        assert!(Engine::Mysql.accepts_url("mariadb://u@h/db"));
        assert!(!Engine::Mysql.accepts_url("postgres://u@h/db"));
        assert!(!Engine::Sqlite.accepts_url("sqlite://"), "a file is needed");
        assert!(Engine::Http.accepts_url("http://127.0.0.1:8090"));
        assert_eq!(
            Engine::Mysql.canonical_url("mariadb://u@h/db"),
            "mysql://u@h/db"
        );
        assert_eq!(
            Engine::Mssql.canonical_url("sqlserver://u@h/db"),
            "mssql://u@h/db"
        );
        assert_eq!(
            Engine::Http.canonical_url("http://h/api"),
            "http://h/api",
            "http stays http"
        );
    }
}
