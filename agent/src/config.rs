//! The integration's configuration file (TOML).
//!
//! Parsing is strict (`deny_unknown_fields`) and validation names the file,
//! the field and the rule it broke, on one line. Validation here reads only
//! the environment and password files; whether tables exist is checked once
//! the agent connects.
//!
//! # Secrets
//!
//! An endpoint's password comes from one of: the URL
//! (`postgres://user:PASSWORD@...`), `password = "..."`, `password_env =
//! "VAR"` or `password_file = "/path"`. In the URL and in `password`, a value
//! written `${VAR}` is read from the environment variable `VAR` instead. A
//! password written out (not `${VAR}`) in a file that every user can read is
//! refused by [`Config::load`]. Passwords never reach `Debug` output or
//! error messages: the URL is shown through
//! [`tandem_connectors::connector::redact_url`].

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tandem_connectors::connector::redact_url;
use tandem_connectors::http::config as http;
use tandem_connectors::{EndpointConfig, Engine, TlsConfig, TlsMode};

use crate::mapping::{DirectionConfig, NameMatching, SplitConfig};

/// Default interval between polls of an engine that cannot notify.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default longest wait between passes of an idle PostgreSQL endpoint (it
/// notifies, so polling is only the fallback).
pub const DEFAULT_NOTIFY_FALLBACK: Duration = Duration::from_secs(2);
/// Default interval between polls of a cloud application's API (each poll
/// is a request per object, under the API's rate limit).
pub const DEFAULT_HTTP_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Default number of records applied in one transaction.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// Default size of each endpoint's connection pool.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

/// What is wrong with a config file: every problem found, each shown on a
/// line of its own naming the file and what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    file: String,
    messages: Vec<String>,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        Self::many(file, vec![message.into()])
    }

    pub(crate) fn many(file: &Path, messages: Vec<String>) -> Self {
        Self {
            file: file.display().to_string(),
            messages,
        }
    }

    /// The problems, without the file's name.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, message) in self.messages.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {message}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects the problems of a config file, to report them all at once.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// The value of `result`, or `None` with its problems kept.
    fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.0.extend(e.messages);
                None
            }
        }
    }

    fn push(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    kind: String,
    url: String,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    poll_interval: Option<String>,
    max_connections: Option<usize>,
    tls: Option<String>,
    tls_ca_file: Option<PathBuf>,
    // The `http` kind's keys (see `tandem_connectors::http::config`).
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    auth: Option<http::RawAuth>,
    requests_per_second: Option<f64>,
    concurrency: Option<usize>,
    timeout: Option<String>,
    attempts: Option<u32>,
    reconcile_interval: Option<String>,
    #[serde(default)]
    objects: Vec<http::RawObject>,
}

impl RawEndpoint {
    /// The `http` keys, taken out of the section.
    fn take_http(&mut self) -> http::RawHttp {
        http::RawHttp {
            headers: std::mem::take(&mut self.headers),
            auth: self.auth.take(),
            requests_per_second: self.requests_per_second.take(),
            concurrency: self.concurrency.take(),
            timeout: self.timeout.take(),
            attempts: self.attempts.take(),
            reconcile_interval: self.reconcile_interval.take(),
            objects: std::mem::take(&mut self.objects),
        }
    }
}

impl fmt::Debug for RawEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL and `password` may hold a secret: never shown.
        f.debug_struct("RawEndpoint")
            .field("kind", &self.kind)
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    source: String,
    target: Option<String>,
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
    names: Option<NameMatching>,
}

/// The file's sections, each with where it is: each is read on its own, so
/// that a problem in one does not hide those of the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    state_dir: Option<toml::Spanned<toml::Value>>,
    source: Option<toml::Spanned<toml::Value>>,
    target: Option<toml::Spanned<toml::Value>>,
    #[serde(default)]
    tables: Vec<toml::Spanned<toml::Value>>,
    sync: Option<toml::Spanned<toml::Value>>,
    metrics: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

/// One side of the integration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, Deserialize,
)]
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
    /// The table on the target side, as written; `None`: the table named
    /// like the source's (see [`TablePairConfig::table`]).
    pub target: Option<String>,
    /// Columns that identify the same record on both sides before the first
    /// sync (empty: no matching, every record is copied).
    pub match_on: Vec<String>,
    /// Mapping by the side a change comes from: `to_target`, `to_source`.
    pub directions: [DirectionConfig; 2],
    /// Extra tables a row is split into (or joined back from).
    pub splits: Vec<SplitConfig>,
}

impl TablePairConfig {
    /// The table to look for on `side`, as written. A target not written
    /// is looked for under the source table's name, its schema left out
    /// (matched as `[sync] names` says).
    pub fn table(&self, side: Side) -> &str {
        match (side, &self.target) {
            (Side::Source, _) => &self.source,
            (Side::Target, Some(target)) => target,
            (Side::Target, None) => self
                .source
                .rsplit_once('.')
                .map_or(self.source.as_str(), |(_, name)| name),
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
    /// How names of the two sides are matched.
    pub names: NameMatching,
    /// Address for `/health` and `/metrics`, when set.
    pub metrics_listen: Option<String>,
}

impl Config {
    /// Reads and validates the file at `path`. A file every user may read
    /// (mode `o+r`) is refused when it holds a password written out.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let cannot_read =
            |e: std::io::Error| ConfigError::new(path, format!("cannot read the file: {e}"));
        let mut file = std::fs::File::open(path).map_err(cannot_read)?;
        let mode = file_mode(&file.metadata().map_err(cannot_read)?);
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(cannot_read)?;
        let (config, literal_secrets) = Config::parse_with_secrets(path, &text)?;
        refuse_readable_secrets(path, mode, &literal_secrets)?;
        Ok(config)
    }

    /// Parses and validates `text` as if read from `path` (without the
    /// file-mode check of [`Config::load`]).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with_secrets(path, text).map(|(config, _)| config)
    }

    /// Parses `text`; also returns where it holds passwords written out
    /// (`source.url`, `target.password`). Every problem is reported, not
    /// only the first.
    fn parse_with_secrets(path: &Path, text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        // Only a file that does not split into sections stops here.
        let sections: Sections =
            toml::from_str(text).map_err(|e| ConfigError::new(path, located(text, &e, 0, None)))?;
        let mut problems = Problems::default();
        for (field, present) in [
            ("state_dir", sections.state_dir.is_some()),
            ("source", sections.source.is_some()),
            ("target", sections.target.is_some()),
        ] {
            if !present {
                problems.push(format!("missing field `{field}`"));
            }
        }
        let raw_state_dir: Option<PathBuf> = section(
            text,
            "state_dir",
            sections.state_dir.as_ref(),
            &mut problems,
        );
        let raw_source: Option<RawEndpoint> =
            section(text, "source", sections.source.as_ref(), &mut problems);
        let raw_target: Option<RawEndpoint> =
            section(text, "target", sections.target.as_ref(), &mut problems);
        let raw_tables: Vec<Option<RawTable>> = sections
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| section(text, &format!("tables[{i}]"), Some(t), &mut problems))
            .collect();
        let raw_sync: RawSync =
            section(text, "sync", sections.sync.as_ref(), &mut problems).unwrap_or_default();
        let raw_metrics: Option<RawMetrics> =
            section(text, "metrics", sections.metrics.as_ref(), &mut problems);
        let names_matching = raw_sync.names.unwrap_or_default();

        let base = path.parent().unwrap_or(Path::new("."));
        if raw_state_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            problems.push("state_dir: must not be empty");
        }
        let raw_state_dir = raw_state_dir.unwrap_or_default();
        let state_dir = if raw_state_dir.is_relative() {
            base.join(&raw_state_dir)
        } else {
            raw_state_dir.clone()
        };
        let mut literal_secrets = Vec::new();
        let mut endpoint_of = |at: &str, raw: Option<RawEndpoint>, problems: &mut Problems| {
            problems.take(endpoint(
                path,
                base,
                &state_dir,
                at,
                raw?,
                &mut literal_secrets,
            ))
        };
        let source = endpoint_of("source", raw_source, &mut problems);
        let target = endpoint_of("target", raw_target, &mut problems);
        if raw_tables.is_empty() {
            problems.push(
                "tables: no table pair configured (add a [[tables]] section naming a source table)",
            );
        }
        let mut names = HashSet::new();
        let mut sources = HashSet::new();
        let mut targets = HashSet::new();
        let mut tables = Vec::new();
        for (i, t) in raw_tables.into_iter().enumerate() {
            let Some(t) = t else { continue };
            let at = format!("tables[{i}]");
            for (field, value) in [("source", Some(&t.source)), ("target", t.target.as_ref())] {
                if value.is_some_and(|v| v.trim().is_empty()) {
                    problems.push(format!("{at}.{field}: must name a table"));
                }
            }
            let name = t.name.unwrap_or_else(|| t.source.clone());
            if !names.insert(name.clone()) {
                problems.push(format!("{at}.name: pair name {name:?} is used twice"));
            }
            if !sources.insert(t.source.clone()) {
                problems.push(format!(
                    "{at}.source: table {:?} is already in another pair",
                    t.source
                ));
            }
            // (A target not written is the source's name; names that fold
            // alike are one table.)
            let target = t.target.clone().unwrap_or_else(|| {
                t.source
                    .rsplit_once('.')
                    .map_or(t.source.clone(), |(_, n)| n.to_owned())
            });
            let folded = match names_matching {
                NameMatching::Fold => crate::mapping::names::fold(&target),
                NameMatching::Exact => target.clone(),
            };
            if !targets.insert(folded) {
                problems.push(format!(
                    "{at}.target: table {target:?} is already in another pair"
                ));
            }
            let mut direction = |section: &str, raw: Option<toml::Value>| match raw {
                Some(raw) => problems
                    .take(crate::mapping::rules::parse_direction(
                        path,
                        &format!("{at}.{section}"),
                        raw,
                    ))
                    .unwrap_or_default(),
                None => DirectionConfig::default(),
            };
            let directions = [
                direction("to_target", t.to_target),
                direction("to_source", t.to_source),
            ];
            let match_on = t.match_on.unwrap_or_default();
            if match_on.iter().any(|c| c.trim().is_empty()) {
                problems.push(format!("{at}.match: column names must not be empty"));
            }
            let splits = t
                .split
                .into_iter()
                .enumerate()
                .filter_map(|(j, raw)| {
                    problems.take(crate::mapping::rules::parse_split(
                        path,
                        &format!("{at}.split[{j}]"),
                        raw,
                    ))
                })
                .collect();
            tables.push(TablePairConfig {
                name,
                source: t.source,
                target: t.target,
                match_on,
                directions,
                splits,
            });
        }
        let batch_size = raw_sync.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            problems.push("sync.batch_size: must be at least 1");
        }
        let (Some(source), Some(target), true) = (source, target, problems.0.is_empty()) else {
            return Err(ConfigError::many(path, problems.0));
        };
        let config = Config {
            path: path.to_owned(),
            state_dir,
            endpoints: [source, target],
            tables,
            conflict: raw_sync.conflict.unwrap_or_default(),
            batch_size,
            names: names_matching,
            metrics_listen: raw_metrics.map(|m| m.listen),
        };
        Ok((config, literal_secrets))
    }

    /// The endpoint on `side`.
    pub fn endpoint(&self, side: Side) -> &EndpointConfig {
        &self.endpoints[side.index()]
    }
}

/// The line of `text` that `offset` falls on, counted from 1.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A deserialization error as one line: `line N: ` (of `text`, `offset`
/// bytes into it) and the message, `at` naming where when the error has no
/// place of its own.
fn located(text: &str, e: &toml::de::Error, offset: usize, at: Option<(&str, usize)>) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match (e.span(), at) {
        (Some(span), _) => format!("line {}: {message}", line_of(text, offset + span.start)),
        (None, Some((at, start))) => format!("line {}: {at}: {message}", line_of(text, start)),
        (None, None) => message,
    }
}

/// Reads one section of the file, or notes its problem (with the line of
/// the key at fault where it can be found) and gives `None`.
fn section<T: serde::de::DeserializeOwned>(
    text: &str,
    at: &str,
    spanned: Option<&toml::Spanned<toml::Value>>,
    problems: &mut Problems,
) -> Option<T> {
    let spanned = spanned?;
    let error = match T::deserialize(spanned.get_ref().clone()) {
        Ok(value) => return Some(value),
        Err(e) => e,
    };
    // The value has lost its places: the section's own text, read again,
    // says where (a table's keys follow its header; the text of an array
    // of tables is one element).
    let span = spanned.span();
    let own = &text[span.clone()];
    let precise = match spanned.get_ref() {
        toml::Value::Table(_) if own.trim_start().starts_with("[[") => {
            toml::from_str::<std::collections::HashMap<String, Vec<T>>>(own).err()
        }
        toml::Value::Table(_) if own.trim_start().starts_with('[') => {
            toml::from_str::<std::collections::HashMap<String, T>>(own).err()
        }
        _ => None,
    };
    // A key that is missing has no line of its own: the section is named.
    let missing = error.message().starts_with("missing field");
    problems.push(match precise.filter(|e| e.span().is_some() && !missing) {
        Some(e) => located(text, &e, span.start, None),
        None => located(text, &error, 0, Some((at, span.start))),
    });
    None
}

fn endpoint(
    path: &Path,
    base: &Path,
    state_dir: &Path,
    at: &str,
    mut raw: RawEndpoint,
    literal_secrets: &mut Vec<String>,
) -> Result<EndpointConfig, ConfigError> {
    let engine = match raw.kind.as_str() {
        "postgres" | "postgresql" => Engine::Postgres,
        "mysql" | "mariadb" => Engine::Mysql,
        "sqlite" => Engine::Sqlite,
        "mssql" | "sqlserver" => Engine::Mssql,
        "http" => Engine::Http,
        other => {
            return Err(ConfigError::new(
                path,
                format!(
                    "{at}.kind: unknown kind {other:?} (expected \"postgres\", \"mysql\", \"sqlite\", \"mssql\" or \"http\")"
                ),
            ))
        }
    };
    let raw_http = raw.take_http();
    let http = if engine == Engine::Http {
        let mut options = raw_http
            .validate(at, base)
            .map_err(|e| ConfigError::new(path, e))?;
        // The endpoint's journal (its position and mapping table) lives
        // with the rest of the state.
        options.state_dir = Some(state_dir.join(format!("{at}-http")));
        Some(std::sync::Arc::new(options))
    } else if !raw_http.is_empty() {
        return Err(ConfigError::new(
            path,
            format!(
                "{at}: headers, auth, objects and the other API keys are only for kind = \"http\""
            ),
        ));
    } else {
        None
    };
    let scheme_ok = match engine {
        Engine::Postgres => {
            raw.url.starts_with("postgres://") || raw.url.starts_with("postgresql://")
        }
        Engine::Mysql => raw.url.starts_with("mysql://") || raw.url.starts_with("mariadb://"),
        Engine::Sqlite => raw.url.starts_with("sqlite://") && raw.url.len() > "sqlite://".len(),
        Engine::Mssql => raw.url.starts_with("mssql://") || raw.url.starts_with("sqlserver://"),
        Engine::Http => raw.url.starts_with("http://") || raw.url.starts_with("https://"),
    };
    if !scheme_ok || url::Url::parse(&raw.url).is_err() {
        let expected = match engine {
            Engine::Sqlite => {
                "sqlite:///absolute/path.db or sqlite://relative/to/this/file.db".to_owned()
            }
            Engine::Http => "https://host/base/path of the API".to_owned(),
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
        Engine::Postgres | Engine::Http => raw.url.clone(),
    };
    // From here on, every problem of the section is reported.
    let mut problems = Problems::default();
    let secrets = problems.take(secrets(
        path,
        base,
        at,
        engine,
        url.clone(),
        &raw,
        literal_secrets,
    ));
    let (url, password) = secrets.unwrap_or((url, None));
    let tls_mode = problems
        .take(
            raw.tls
                .as_deref()
                .map(|text| text.parse::<TlsMode>())
                .transpose()
                .map_err(|e| ConfigError::new(path, format!("{at}.tls: {e}"))),
        )
        .flatten();
    let tls_ca_file = raw.tls_ca_file.map(|file| {
        if file.is_relative() {
            base.join(file)
        } else {
            file
        }
    });
    let tls = problems.take(
        TlsConfig::resolve(engine, &url, tls_mode, tls_ca_file)
            .map_err(|e| ConfigError::new(path, format!("{at}.{e}"))),
    );
    let default_poll = match engine {
        Engine::Postgres => DEFAULT_NOTIFY_FALLBACK,
        Engine::Mysql | Engine::Sqlite | Engine::Mssql => DEFAULT_POLL_INTERVAL,
        Engine::Http => DEFAULT_HTTP_POLL_INTERVAL,
    };
    let poll_interval = match raw.poll_interval {
        Some(text) => humantime::parse_duration(&text).unwrap_or_else(|e| {
            problems.push(format!(
                "{at}.poll_interval: {text:?} is not a duration like \"250ms\": {e}"
            ));
            default_poll
        }),
        None => default_poll,
    };
    if poll_interval.is_zero() {
        problems.push(format!("{at}.poll_interval: must be more than zero"));
    }
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections < 2 {
        problems.push(format!("{at}.max_connections: must be at least 2"));
    }
    let (Some(tls), true) = (tls, problems.0.is_empty()) else {
        return Err(ConfigError::many(path, problems.0));
    };
    Ok(EndpointConfig {
        engine,
        url,
        password,
        poll_interval,
        max_connections,
        tls,
        http,
    })
}

/// The name `${NAME}` refers to, when `text` is such a reference; an error
/// when it holds `${` otherwise (a typo would otherwise become a password).
fn env_reference(text: &str) -> Result<Option<&str>, String> {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return if text.contains("${") {
            Err("write an environment variable as the whole value, ${NAME}".to_owned())
        } else {
            Ok(None)
        };
    };
    let valid = inner
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(Some(inner))
    } else {
        Err(format!(
            "{text:?} is not an environment variable reference like ${{NAME}}"
        ))
    }
}

/// The value of the environment variable `name`, for the field `field`.
fn env_secret(path: &Path, field: &str, name: &str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|e| {
        let why = match e {
            std::env::VarError::NotPresent => "is not set",
            std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
        };
        ConfigError::new(path, format!("{field}: environment variable {name} {why}"))
    })
}

/// `%XX` escapes decoded (URL passwords hold `$`, `{`, `}` that way).
pub(crate) fn percent_decoded(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(part.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The endpoint's URL and separate password, with `${VAR}` references
/// resolved: a `${VAR}` password in the URL is taken out of the URL and
/// becomes the separate password. Fields holding a password written out are
/// added to `literal_secrets`. At most one of `password`, `password_env` and
/// `password_file` may be set; it wins over a password in the URL.
fn secrets(
    path: &Path,
    base: &Path,
    at: &str,
    engine: Engine,
    mut url: String,
    raw: &RawEndpoint,
    literal_secrets: &mut Vec<String>,
) -> Result<(String, Option<String>), ConfigError> {
    let keys = [
        raw.password.is_some(),
        raw.password_env.is_some(),
        raw.password_file.is_some(),
    ];
    if keys.iter().filter(|set| **set).count() > 1 {
        return Err(ConfigError::new(
            path,
            format!("{at}: set one of password, password_env and password_file, not several"),
        ));
    }
    // The URL's own password (SQLite URLs have none).
    let mut url_password = None;
    if engine != Engine::Sqlite {
        let mut parsed = url::Url::parse(&url).map_err(|_| {
            ConfigError::new(path, format!("{at}.url: {} is not a URL", redact_url(&url)))
        })?;
        if let Some(written) = parsed.password() {
            let written = percent_decoded(written).unwrap_or_else(|| written.to_owned());
            let field = format!("{at}.url");
            match env_reference(&written)
                .map_err(|e| ConfigError::new(path, format!("{field}: password: {e}")))?
            {
                Some(name) => {
                    url_password = Some(env_secret(path, &field, name)?);
                    // The reference is not a password: out of the URL.
                    let _ = parsed.set_password(None);
                    url = parsed.to_string();
                }
                None => literal_secrets.push(field),
            }
        }
    }
    let separate = if let Some(text) = &raw.password {
        let field = format!("{at}.password");
        match env_reference(text).map_err(|e| ConfigError::new(path, format!("{field}: {e}")))? {
            Some(name) => Some(env_secret(path, &field, name)?),
            None => {
                literal_secrets.push(field);
                Some(text.clone())
            }
        }
    } else if let Some(var) = &raw.password_env {
        Some(env_secret(path, &format!("{at}.password_env"), var)?)
    } else if let Some(file) = &raw.password_file {
        let file = if file.is_relative() {
            base.join(file)
        } else {
            file.clone()
        };
        let secret = std::fs::read_to_string(&file).map_err(|e| {
            ConfigError::new(
                path,
                format!("{at}.password_file: cannot read {}: {e}", file.display()),
            )
        })?;
        Some(secret.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        None
    };
    Ok((url, separate.or(url_password)))
}

/// The permission bits of a file (`None` where there are none to read).
fn file_mode(metadata: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(metadata.permissions().mode())
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// Refuses a config file that every user may read (`mode & 0o004`) when it
/// holds a password written out.
fn refuse_readable_secrets(
    path: &Path,
    mode: Option<u32>,
    literal_secrets: &[String],
) -> Result<(), ConfigError> {
    match mode {
        Some(mode) if mode & 0o004 != 0 && !literal_secrets.is_empty() => Err(ConfigError::new(
            path,
            format!(
                "every user can read this file and it holds a password ({}): run `chmod 640 {}`, or take the password from password_file or an environment variable (${{VAR}})",
                literal_secrets.join(", "),
                path.display()
            ),
        )),
        _ => Ok(()),
    }
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
                format!(
                    "{GOOD}[[tables]]\nname = \"customers\"\nsource = \"orders\"\ntarget = \"x\"\n"
                ),
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
    fn every_problem_of_the_file_is_reported_each_on_a_line() {
        // Values: each one named.
        let text = GOOD
            .replace("\"100ms\"", "\"soon\"")
            .replace("kind = \"postgres\"", "kind = \"oracle\"")
            .replace(
                "target = \"clients\"",
                "target = \"clients\"\n[sync]\nbatch_size = 0",
            );
        let err = parse(&text).unwrap_err().to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].contains("source.kind: unknown kind \"oracle\""),
            "{err}"
        );
        assert!(lines[1].contains("target.poll_interval: \"soon\""), "{err}");
        assert!(
            lines[2].contains("sync.batch_size: must be at least 1"),
            "{err}"
        );
        // Unknown keys: the first with its line, the other sections' too.
        let text = GOOD.replace("poll_interval", "poll_intervall").replace(
            "target = \"clients\"",
            "target = \"clients\"\nmatch_on = [\"email\"]",
        );
        let err = parse(&text).unwrap_err().to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines[0].starts_with("/etc/tandem/crm.toml: line 9: unknown field `poll_intervall`"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("/etc/tandem/crm.toml: line 13: unknown field `match_on`"),
            "{err}"
        );
        // A section missing and a section's key missing are two problems;
        // a section's value and another's key too.
        let text = GOOD
            .replace("[source]\nkind = \"postgres\"\nurl = \"postgres://tandem:secret@127.0.0.1:5432/crm\"\n", "")
            .replace("source = \"customers\"\n", "")
            .replace("\"100ms\"", "\"soon\"");
        let err = parse(&text).unwrap_err().to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(lines[0].ends_with(": missing field `source`"), "{err}");
        assert!(
            lines[1].contains("line 7: tables[0]: missing field `source`"),
            "{err}"
        );
        assert!(lines[2].contains("target.poll_interval: \"soon\""), "{err}");
        // A pair may name its source table only.
        let config = parse(&GOOD.replace("target = \"clients\"\n", "")).unwrap();
        assert_eq!(config.tables[0].target, None);
        assert_eq!(config.tables[0].table(Side::Target), "customers");
        let schema = parse(&GOOD.replace(
            "source = \"customers\"\ntarget = \"clients\"\n",
            "source = \"sales.customers\"\n",
        ));
        assert_eq!(schema.unwrap().tables[0].table(Side::Target), "customers");
        // Names as written, when asked.
        let exact = format!("{GOOD}[sync]\nnames = \"exact\"\n");
        assert_eq!(parse(&exact).unwrap().names, NameMatching::Exact);
        assert_eq!(parse(GOOD).unwrap().names, NameMatching::Fold);
    }

    /// GOOD with the source endpoint's lines replaced by `source`.
    fn with_source(source: &str) -> String {
        GOOD.replace(
            "kind = \"postgres\"\nurl = \"postgres://tandem:secret@127.0.0.1:5432/crm\"",
            source,
        )
    }

    #[test]
    fn env_references_in_the_url_become_the_separate_password() {
        std::env::set_var("TANDEM_TEST_CFG_URL_PW", "from-env p@ss");
        let text = with_source(
            "kind = \"postgres\"\nurl = \"postgres://tandem:${TANDEM_TEST_CFG_URL_PW}@db.example:5432/crm\"",
        );
        let config = parse(&text).unwrap();
        let source = config.endpoint(Side::Source);
        assert_eq!(source.password.as_deref(), Some("from-env p@ss"));
        assert_eq!(source.url, "postgres://tandem@db.example:5432/crm");
        assert!(!format!("{config:?}").contains("from-env"));
        // A reference to a variable that is not set names it, not a value.
        let err = parse(&text.replace("TANDEM_TEST_CFG_URL_PW", "TANDEM_TEST_CFG_UNSET"))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("source.url: environment variable TANDEM_TEST_CFG_UNSET is not set"),
            "{err}"
        );
        // Half a reference is an error, not a password.
        let err = parse(&text.replace("${TANDEM_TEST_CFG_URL_PW}", "x${Y}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.url: password: write an environment variable"),
            "{err}"
        );
    }

    #[test]
    fn the_password_key_takes_a_reference_or_a_literal() {
        std::env::set_var("TANDEM_TEST_CFG_KEY_PW", "key-secret");
        let text = with_source(
            "kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"\npassword = \"${TANDEM_TEST_CFG_KEY_PW}\"",
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.endpoint(Side::Source).password.as_deref(),
            Some("key-secret")
        );
        let literal = text.replace("${TANDEM_TEST_CFG_KEY_PW}", "written-out");
        assert_eq!(
            parse(&literal)
                .unwrap()
                .endpoint(Side::Source)
                .password
                .as_deref(),
            Some("written-out")
        );
        // One source of password only.
        let both = literal.replace(
            "password = \"written-out\"",
            "password = \"written-out\"\npassword_env = \"HOME\"",
        );
        let err = parse(&both).unwrap_err().to_string();
        assert!(
            err.contains("source: set one of password, password_env"),
            "{err}"
        );
        // The key wins over the URL's password.
        let over = with_source(
            "kind = \"postgres\"\nurl = \"postgres://tandem:in-url@db.example/crm\"\npassword = \"${TANDEM_TEST_CFG_KEY_PW}\"",
        );
        assert_eq!(
            parse(&over)
                .unwrap()
                .endpoint(Side::Source)
                .password
                .as_deref(),
            Some("key-secret")
        );
    }

    #[test]
    fn password_env_and_password_file_still_work() {
        std::env::set_var("TANDEM_TEST_CFG_ENV_PW", "env-secret");
        let text = with_source(
            "kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"\npassword_env = \"TANDEM_TEST_CFG_ENV_PW\"",
        );
        assert_eq!(
            parse(&text)
                .unwrap()
                .endpoint(Side::Source)
                .password
                .as_deref(),
            Some("env-secret")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "file-secret\n").unwrap();
        let text = with_source(
            "kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"\npassword_file = \"pw\"",
        );
        let config = Config::parse(&dir.path().join("t.toml"), &text).unwrap();
        assert_eq!(
            config.endpoint(Side::Source).password.as_deref(),
            Some("file-secret")
        );
    }

    /// Writes `text` to a file with `mode` and loads it.
    #[cfg(unix)]
    fn load_with_mode(text: &str, mode: u32) -> Result<Config, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crm.toml");
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        Config::load(&file)
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_file_with_a_written_out_password_is_refused() {
        // GOOD holds "secret" in the source URL.
        let err = load_with_mode(GOOD, 0o644).unwrap_err().to_string();
        assert!(
            err.contains("crm.toml: every user can read this file"),
            "{err}"
        );
        assert!(err.contains("(source.url)"), "{err}");
        assert!(err.contains("run `chmod 640 /"), "{err}");
        assert!(err.contains("password_file"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(err.lines().count(), 1);
        // A literal `password` key is refused the same way.
        let key = with_source(
            "kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"\npassword = \"hunter2\"",
        );
        let err = load_with_mode(&key, 0o604).unwrap_err().to_string();
        assert!(err.contains("(source.password)"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        // Not readable by others: fine.
        load_with_mode(GOOD, 0o640).unwrap();
        load_with_mode(&key, 0o600).unwrap();
        // Readable by all but without a written-out password: fine.
        std::env::set_var("TANDEM_TEST_CFG_MODE_PW", "x");
        let reference = with_source(
            "kind = \"postgres\"\nurl = \"postgres://tandem:${TANDEM_TEST_CFG_MODE_PW}@db.example/crm\"",
        );
        load_with_mode(&reference, 0o644).unwrap();
        let no_password =
            with_source("kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"");
        load_with_mode(&no_password, 0o644).unwrap();
    }

    #[test]
    fn tls_defaults_to_prefer_on_this_machine_and_verify_full_elsewhere() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.endpoint(Side::Source).tls.mode, TlsMode::Prefer);
        assert_eq!(config.endpoint(Side::Target).tls.mode, TlsMode::Prefer);
        let remote = GOOD.replace("@127.0.0.1:5432", "@db.example:5432");
        let tls = &parse(&remote).unwrap().endpoints[0].tls;
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(tls.ca_file, None);
        let sqlite = GOOD.replace(
            "kind = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/shop\"",
            "kind = \"sqlite\"\nurl = \"sqlite://shop.db\"",
        );
        assert_eq!(
            parse(&sqlite).unwrap().endpoint(Side::Target).tls.mode,
            TlsMode::Disable
        );
    }

    #[test]
    fn tls_keys_set_the_mode_and_the_ca_file() {
        let text = GOOD.replace(
            "url = \"postgres://tandem:secret@127.0.0.1:5432/crm\"",
            "url = \"postgres://tandem:secret@127.0.0.1:5432/crm\"\ntls = \"require\"",
        );
        assert_eq!(
            parse(&text).unwrap().endpoint(Side::Source).tls.mode,
            TlsMode::Require
        );
        let ca = GOOD.replace(
            "poll_interval = \"100ms\"",
            "poll_interval = \"100ms\"\ntls_ca_file = \"certs/ca.pem\"",
        );
        let tls = parse(&ca).unwrap().endpoint(Side::Target).tls.clone();
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(Path::new("/etc/tandem/certs/ca.pem"))
        );
        // The URL's own option is read.
        let url = GOOD.replace("5432/crm", "5432/crm?sslmode=verify-full");
        assert_eq!(
            parse(&url).unwrap().endpoint(Side::Source).tls.mode,
            TlsMode::VerifyFull
        );
    }

    #[test]
    fn bad_tls_settings_name_the_key() {
        let cases = [
            (
                GOOD.replace("poll_interval = \"100ms\"", "tls = \"on\""),
                "target.tls: \"on\" is not a TLS mode (expected \"disable\", \"prefer\", \"require\" or \"verify-full\")",
            ),
            (
                GOOD.replace(
                    "poll_interval = \"100ms\"",
                    "tls = \"require\"\ntls_ca_file = \"/ca.pem\"",
                ),
                "target.tls_ca_file: only used with tls = \"verify-full\"",
            ),
            (
                GOOD.replace("5432/crm\"", "5432/crm?sslmode=require\"\ntls = \"disable\""),
                "source.tls: tls = \"disable\" disagrees with sslmode=require in the URL",
            ),
            (
                GOOD.replace("3306/shop", "3306/shop?require_ssl=true"),
                "target.url: TLS is set with the tls key",
            ),
            (
                GOOD.replace(
                    "kind = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/shop\"",
                    "kind = \"sqlite\"\nurl = \"sqlite://shop.db\"\ntls = \"require\"",
                ),
                "target.tls: SQLite opens a local file",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(!err.contains("secret"), "{err}");
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
