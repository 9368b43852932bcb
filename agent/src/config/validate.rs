//! Checking a config file's sections (step 1 of loading: everything the
//! file says, without reading anything else) into a [`Validated`], and
//! what follows from one: its passwords read (step 2) and the runtime
//! config built (step 3). Each step reports every problem it finds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tandem_connectors::{EndpointConfig, SecretString};

use super::endpoint::endpoint;
use super::raw::{RawConfig, RawEndpoint};
use super::secrets::PasswordSources;
use super::{Config, ConfigError, ConflictPolicy, Problems, TablePairConfig, DEFAULT_BATCH_SIZE};
use crate::mapping::{DirectionConfig, NameMatching};

/// A config file whose every value checked out; the endpoints' passwords
/// are not read yet.
#[derive(Debug)]
pub(super) struct Validated {
    path: PathBuf,
    state_dir: PathBuf,
    /// The endpoints, source first, each without its password.
    endpoints: [EndpointConfig; 2],
    /// Where each endpoint's password is read, source first.
    passwords: [PasswordSources; 2],
    tables: Vec<TablePairConfig>,
    conflict: ConflictPolicy,
    batch_size: usize,
    names: NameMatching,
    metrics_listen: Option<String>,
    /// The fields that hold a password written out (`source.url`,
    /// `target.password`), for [`Config::load`]'s file-mode check.
    pub(super) literal_secrets: Vec<String>,
}

/// A config file that did not check out: its problems, and where the
/// passwords of the endpoints whose password keys did check out are read.
#[derive(Debug)]
pub(super) struct Invalid {
    path: PathBuf,
    problems: Vec<String>,
    passwords: Vec<PasswordSources>,
}

/// The endpoints' passwords, read, source first.
#[derive(Debug)]
pub(super) struct Passwords([Option<SecretString>; 2]);

impl RawConfig {
    /// Checks every section (step 1): values, names, the endpoints' URLs,
    /// TLS settings and password keys, the table pairs and their mapping.
    /// Reads no secret: a password's environment variable or file is only
    /// named here (an `http` endpoint's preset file is read, being part of
    /// its description).
    pub(super) fn validate(self) -> Result<Validated, Invalid> {
        let RawConfig {
            path,
            state_dir: raw_state_dir,
            source: raw_source,
            target: raw_target,
            tables: raw_tables,
            sync: raw_sync,
            metrics: raw_metrics,
            mut problems,
        } = self;
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
            let Some(raw) = raw else {
                return (None, None);
            };
            endpoint(
                &path,
                base,
                &state_dir,
                at,
                raw,
                &mut literal_secrets,
                problems,
            )
        };
        let (source, source_password) = endpoint_of("source", raw_source, &mut problems);
        let (target, target_password) = endpoint_of("target", raw_target, &mut problems);
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
                        &path,
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
                        &path,
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
        match (source, target, source_password, target_password) {
            (Some(source), Some(target), Some(source_password), Some(target_password))
                if problems.0.is_empty() =>
            {
                Ok(Validated {
                    path,
                    state_dir,
                    endpoints: [source, target],
                    passwords: [source_password, target_password],
                    tables,
                    conflict: raw_sync.conflict.unwrap_or_default(),
                    batch_size,
                    names: names_matching,
                    metrics_listen: raw_metrics.map(|m| m.listen),
                    literal_secrets,
                })
            }
            (_, _, source_password, target_password) => Err(Invalid {
                path,
                problems: problems.0,
                passwords: [source_password, target_password]
                    .into_iter()
                    .flatten()
                    .collect(),
            }),
        }
    }
}

impl Validated {
    /// Reads each endpoint's password from where step 1 found it (step 2):
    /// environment variables and files. Every problem is reported.
    pub(super) fn resolve_secrets(&self) -> Result<Passwords, ConfigError> {
        let mut problems = Problems::default();
        let [source, target] = self
            .passwords
            .each_ref()
            .map(|password| problems.take(password.read(&self.path)));
        match (source, target) {
            (Some(source), Some(target)) => Ok(Passwords([source, target])),
            _ => Err(ConfigError::many(&self.path, problems.0)),
        }
    }

    /// The runtime configuration, each endpoint with its password (step 3).
    pub(super) fn build(self, passwords: Passwords) -> Config {
        let mut endpoints = self.endpoints;
        for (endpoint, password) in endpoints.iter_mut().zip(passwords.0) {
            endpoint.password = password;
        }
        Config {
            path: self.path,
            state_dir: self.state_dir,
            endpoints,
            tables: self.tables,
            conflict: self.conflict,
            batch_size: self.batch_size,
            names: self.names,
            metrics_listen: self.metrics_listen,
        }
    }
}

impl Invalid {
    /// The error: every problem found, then those of reading the passwords
    /// that step 1 could place (read all the same, so that one run reports
    /// every problem of the file).
    pub(super) fn report(self) -> ConfigError {
        let mut problems = Problems(self.problems);
        for password in &self.passwords {
            problems.take(password.read(&self.path));
        }
        ConfigError::many(&self.path, problems.0)
    }
}
