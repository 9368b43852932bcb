//! The integration's configuration file (TOML).
//!
//! Parsing is strict (`deny_unknown_fields`) and validation names the file,
//! the field and the rule it broke, on one line. Loading goes in three
//! steps, each reporting every problem it finds:
//!
//! 1. `RawConfig::validate`: the file's sections (`RawConfig::read`) are
//!    checked without reading anything else, into a `Validated` that knows
//!    where each password is read;
//! 2. `Validated::resolve_secrets`: the passwords are read (environment
//!    variables, password files);
//! 3. `Validated::build`: the runtime [`Config`].
//!
//! A file with problems in step 1 still has the passwords it places read,
//! so that one run reports them all. Whether tables exist is checked once
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

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tandem_connectors::EndpointConfig;

use crate::mapping::{DirectionConfig, NameMatching, SplitConfig};

mod endpoint;
mod raw;
mod secrets;
#[cfg(test)]
mod tests;
mod validate;

use raw::RawConfig;
pub(crate) use secrets::percent_decoded;
use secrets::{file_mode, refuse_readable_secrets};

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
    /// only the first: those of the file's values (step 1) and those of
    /// reading its passwords (step 2).
    fn parse_with_secrets(path: &Path, text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let raw = RawConfig::read(path, text)?;
        let validated = match raw.validate() {
            Ok(validated) => validated,
            Err(invalid) => return Err(invalid.report()),
        };
        let passwords = validated.resolve_secrets()?;
        let literal_secrets = validated.literal_secrets.clone();
        Ok((validated.build(passwords), literal_secrets))
    }

    /// The endpoint on `side`.
    pub fn endpoint(&self, side: Side) -> &EndpointConfig {
        &self.endpoints[side.index()]
    }
}
