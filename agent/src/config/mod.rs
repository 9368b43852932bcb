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
//! error messages: each is read into a [`tandem_connectors::SecretString`]
//! (no `Display`, a `Debug` without it) and exposed only where the
//! connector sends it, and the URL is shown through
//! [`tandem_connectors::connector::redact_url`].

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tandem_connectors::EndpointConfig;

use crate::mapping::{DirectionConfig, NameMatching, SplitConfig};

mod endpoint;
mod raw;
mod secrets;
#[cfg(test)]
mod tests;

use endpoint::endpoint;
use raw::{located, section, RawEndpoint, RawMetrics, RawSync, RawTable, Sections};
pub(crate) use secrets::percent_decoded;
use secrets::{file_mode, refuse_readable_secrets};

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
