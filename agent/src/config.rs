//! The integration's configuration file (TOML).
//!
//! Parsing is strict (`deny_unknown_fields`) and validation names the file,
//! the field and the rule it broke, on one line. Validation here needs no I/O;
//! whether tables exist is checked once the agent connects.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tandem_connectors::{EndpointConfig, Engine};

use crate::mapping::{DirectionConfig, SplitConfig};

/// Default interval between polls of an engine that cannot notify.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default longest wait between passes of an idle PostgreSQL endpoint (it
/// notifies, so polling is only the fallback).
pub const DEFAULT_NOTIFY_FALLBACK: Duration = Duration::from_secs(2);
/// Default number of records applied in one transaction.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// Default size of each endpoint's connection pool.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

/// A configuration error: one line naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    file: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.display().to_string(),
            message: message.into(),
        }
    }
}

/// Who wins when a linked record changed on both sides since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The source's version wins whole; the target's changes are lost (the
    /// seed's behaviour).
    #[default]
    SourceWins,
    /// The target's version wins whole.
    TargetWins,
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictPolicy::SourceWins => "source-wins",
            ConflictPolicy::TargetWins => "target-wins",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: PathBuf,
    source: RawEndpoint,
    target: RawEndpoint,
    #[serde(default)]
    tables: Vec<RawTable>,
    #[serde(default)]
    sync: RawSync,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    kind: String,
    url: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    poll_interval: Option<String>,
    max_connections: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    source: String,
    target: String,
    name: Option<String>,
    #[serde(rename = "match")]
    match_on: Option<Vec<String>>,
    to_target: Option<toml::Value>,
    to_source: Option<toml::Value>,
    #[serde(default)]
    split: Vec<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    conflict: Option<ConflictPolicy>,
    batch_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

/// One side of the integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The `[source]` endpoint.
    Source,
    /// The `[target]` endpoint.
    Target,
}

impl Side {
    /// Both sides, source first.
    pub const BOTH: [Side; 2] = [Side::Source, Side::Target];

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        }
    }

    /// 0 for the source, 1 for the target: an index into per-side arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// A table pair as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePairConfig {
    /// The pair's stable name (defaults to the source table); keys the ID map.
    pub name: String,
    /// The table on the source side, as written.
    pub source: String,
    /// The table on the target side, as written.
    pub target: String,
    /// Columns that identify the same record on both sides before the first
    /// sync (empty: no matching, every record is copied).
    pub match_on: Vec<String>,
    /// Mapping by the side a change comes from: `to_target`, `to_source`.
    pub directions: [DirectionConfig; 2],
    /// Extra tables a row is split into (or joined back from).
    pub splits: Vec<SplitConfig>,
}

impl TablePairConfig {
    /// The table on `side`.
    pub fn table(&self, side: Side) -> &str {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file was read from (for messages).
    pub path: PathBuf,
    /// The state directory (change log, ID map, checkpoints).
    pub state_dir: PathBuf,
    /// The two endpoints, source first.
    pub endpoints: [EndpointConfig; 2],
    /// Table pairs in file order.
    pub tables: Vec<TablePairConfig>,
    /// Conflict policy.
    pub conflict: ConflictPolicy,
    /// Records per applying transaction.
    pub batch_size: usize,
    /// Address for `/health` and `/metrics`, when set.
    pub metrics_listen: Option<String>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read the file: {e}")))?;
        Config::parse(path, &text)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let location = e
                .span()
                .map(|span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            ConfigError::new(
                path,
                format!("{location}{}", e.message().trim().replace('\n', "; ")),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let state_dir = if raw.state_dir.is_relative() {
            base.join(&raw.state_dir)
        } else {
            raw.state_dir.clone()
        };
        if raw.state_dir.as_os_str().is_empty() {
            return Err(ConfigError::new(path, "state_dir: must not be empty"));
        }
        let endpoints = [
            endpoint(path, base, "source", raw.source)?,
            endpoint(path, base, "target", raw.target)?,
        ];
        if raw.tables.is_empty() {
            return Err(ConfigError::new(
                path,
                "tables: no table pair configured (add a [[tables]] section with source and target)",
            ));
        }
        let mut names = HashSet::new();
        let mut sources = HashSet::new();
        let mut targets = HashSet::new();
        let mut tables = Vec::new();
        for (i, t) in raw.tables.into_iter().enumerate() {
            let at = format!("tables[{i}]");
            for (field, value) in [("source", &t.source), ("target", &t.target)] {
                if value.trim().is_empty() {
                    return Err(ConfigError::new(
                        path,
                        format!("{at}.{field}: must name a table"),
                    ));
                }
            }
            let name = t.name.unwrap_or_else(|| t.source.clone());
            if !names.insert(name.clone()) {
                return Err(ConfigError::new(
                    path,
                    format!("{at}.name: pair name {name:?} is used twice"),
                ));
            }
            if !sources.insert(t.source.clone()) {
                return Err(ConfigError::new(
                    path,
                    format!(
                        "{at}.source: table {:?} is already in another pair",
                        t.source
                    ),
                ));
            }
            if !targets.insert(t.target.clone()) {
                return Err(ConfigError::new(
                    path,
                    format!(
                        "{at}.target: table {:?} is already in another pair",
                        t.target
                    ),
                ));
            }
            let direction = |section: &str, raw: Option<toml::Value>| match raw {
                Some(raw) => {
                    crate::mapping::rules::parse_direction(path, &format!("{at}.{section}"), raw)
                }
                None => Ok(DirectionConfig::default()),
            };
            let directions = [
                direction("to_target", t.to_target)?,
                direction("to_source", t.to_source)?,
            ];
            let match_on = t.match_on.unwrap_or_default();
            if match_on.iter().any(|c| c.trim().is_empty()) {
                return Err(ConfigError::new(
                    path,
                    format!("{at}.match: column names must not be empty"),
                ));
            }
            let splits = t
                .split
                .into_iter()
                .enumerate()
                .map(|(j, raw)| {
                    crate::mapping::rules::parse_split(path, &format!("{at}.split[{j}]"), raw)
                })
                .collect::<Result<Vec<_>, _>>()?;
            tables.push(TablePairConfig {
                name,
                source: t.source,
                target: t.target,
                match_on,
                directions,
                splits,
            });
        }
        let batch_size = raw.sync.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(ConfigError::new(
                path,
                "sync.batch_size: must be at least 1",
            ));
        }
        Ok(Config {
            path: path.to_owned(),
            state_dir,
            endpoints,
            tables,
            conflict: raw.sync.conflict.unwrap_or_default(),
            batch_size,
            metrics_listen: raw.metrics.map(|m| m.listen),
        })
    }

    /// The endpoint on `side`.
    pub fn endpoint(&self, side: Side) -> &EndpointConfig {
        &self.endpoints[side.index()]
    }
}

fn endpoint(
    path: &Path,
    base: &Path,
    at: &str,
    raw: RawEndpoint,
) -> Result<EndpointConfig, ConfigError> {
    let engine = match raw.kind.as_str() {
        "postgres" | "postgresql" => Engine::Postgres,
        "mysql" | "mariadb" => Engine::Mysql,
        "sqlite" => Engine::Sqlite,
        "mssql" | "sqlserver" => Engine::Mssql,
        other => {
            return Err(ConfigError::new(
                path,
                format!(
                    "{at}.kind: unknown kind {other:?} (expected \"postgres\", \"mysql\", \"sqlite\" or \"mssql\")"
                ),
            ))
        }
    };
    let scheme_ok = match engine {
        Engine::Postgres => {
            raw.url.starts_with("postgres://") || raw.url.starts_with("postgresql://")
        }
        Engine::Mysql => raw.url.starts_with("mysql://") || raw.url.starts_with("mariadb://"),
        Engine::Sqlite => raw.url.starts_with("sqlite://") && raw.url.len() > "sqlite://".len(),
        Engine::Mssql => raw.url.starts_with("mssql://") || raw.url.starts_with("sqlserver://"),
    };
    if !scheme_ok || url::Url::parse(&raw.url).is_err() {
        let expected = match engine {
            Engine::Sqlite => {
                "sqlite:///absolute/path.db or sqlite://relative/to/this/file.db".to_owned()
            }
            _ => format!("{engine}://user[:password]@host:port/database"),
        };
        return Err(ConfigError::new(
            path,
            format!(
                "{at}.url: {} is not a {engine} URL (expected {expected})",
                tandem_connectors::connector::redact_url(&raw.url)
            ),
        ));
    }
    let url = match engine {
        Engine::Mysql => raw.url.replacen("mariadb://", "mysql://", 1),
        Engine::Mssql => raw.url.replacen("sqlserver://", "mssql://", 1),
        // A relative database file is relative to the config file, like
        // the state directory.
        Engine::Sqlite => {
            let file = Path::new(&raw.url["sqlite://".len()..]);
            format!("sqlite://{}", base.join(file).display())
        }
        Engine::Postgres => raw.url.clone(),
    };
    let password = match (raw.password_env, raw.password_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                format!("{at}: set password_env or password_file, not both"),
            ))
        }
        (Some(var), None) => Some(std::env::var(&var).map_err(|_| {
            ConfigError::new(
                path,
                format!("{at}.password_env: environment variable {var} is not set"),
            )
        })?),
        (None, Some(file)) => {
            let file = if file.is_relative() {
                base.join(file)
            } else {
                file
            };
            let secret = std::fs::read_to_string(&file).map_err(|e| {
                ConfigError::new(
                    path,
                    format!("{at}.password_file: cannot read {}: {e}", file.display()),
                )
            })?;
            Some(secret.trim_end_matches(['\n', '\r']).to_owned())
        }
        (None, None) => None,
    };
    let default_poll = match engine {
        Engine::Postgres => DEFAULT_NOTIFY_FALLBACK,
        Engine::Mysql | Engine::Sqlite | Engine::Mssql => DEFAULT_POLL_INTERVAL,
    };
    let poll_interval = match raw.poll_interval {
        Some(text) => humantime::parse_duration(&text).map_err(|e| {
            ConfigError::new(
                path,
                format!("{at}.poll_interval: {text:?} is not a duration like \"250ms\": {e}"),
            )
        })?,
        None => default_poll,
    };
    if poll_interval.is_zero() {
        return Err(ConfigError::new(
            path,
            format!("{at}.poll_interval: must be more than zero"),
        ));
    }
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections < 2 {
        return Err(ConfigError::new(
            path,
            format!("{at}.max_connections: must be at least 2"),
        ));
    }
    Ok(EndpointConfig {
        engine,
        url,
        password,
        poll_interval,
        max_connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "state"
[source]
kind = "postgres"
url = "postgres://tandem:secret@127.0.0.1:5432/crm"
[target]
kind = "mysql"
url = "mysql://root@127.0.0.1:3306/shop"
poll_interval = "100ms"
[[tables]]
source = "customers"
target = "clients"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/tandem/crm.toml"), text)
    }

    #[test]
    fn reads_a_minimal_config() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.state_dir, Path::new("/etc/tandem/state"));
        assert_eq!(config.tables[0].name, "customers");
        assert_eq!(
            config.endpoint(Side::Target).poll_interval,
            Duration::from_millis(100)
        );
        assert_eq!(
            config.endpoint(Side::Source).poll_interval,
            DEFAULT_NOTIFY_FALLBACK
        );
        assert_eq!(config.conflict, ConflictPolicy::SourceWins);
    }

    #[test]
    fn sqlite_files_are_relative_to_the_config() {
        let text = GOOD.replace(
            "kind = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/shop\"",
            "kind = \"sqlite\"\nurl = \"sqlite://data/shop.db\"",
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.endpoint(Side::Target).url,
            "sqlite:///etc/tandem/data/shop.db"
        );
        let absolute = text.replace("sqlite://data/shop.db", "sqlite:///var/lib/shop.db");
        assert_eq!(
            parse(&absolute).unwrap().endpoint(Side::Target).url,
            "sqlite:///var/lib/shop.db"
        );
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let err = parse(&GOOD.replace("poll_interval", "poll_intervall"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/tandem/crm.toml: line 9: unknown field `poll_intervall`"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                GOOD.replace("\"100ms\"", "\"soon\""),
                "target.poll_interval: \"soon\"",
            ),
            (
                GOOD.replace("kind = \"mysql\"", "kind = \"oracle\""),
                "target.kind: unknown kind \"oracle\"",
            ),
            (GOOD.replace("mysql://root", "http://root"), "target.url:"),
            (
                GOOD.replace(
                    "[[tables]]\nsource = \"customers\"\ntarget = \"clients\"",
                    "",
                ),
                "tables: no table pair",
            ),
            (
                format!("{GOOD}[[tables]]\nsource = \"customers\"\ntarget = \"x\"\n"),
                "tables[1].name: pair name \"customers\" is used twice",
            ),
            (
                GOOD.replace("state_dir = \"state\"", ""),
                "missing field `state_dir`",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn passwords_never_appear_in_errors() {
        let err = parse(&GOOD.replace("postgres://tandem", "mysql://tandem"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(format!("{:?}", parse(GOOD).unwrap()).contains("***"));
    }
}
