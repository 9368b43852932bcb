//! The file as written: its sections, each read on its own, before any
//! value is checked.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tandem_connectors::http::config as http;
use tandem_connectors::SecretString;

use super::{ConfigError, ConflictPolicy, Problems};
use crate::mapping::NameMatching;

/// A config file split into its sections, each as written. A section that
/// cannot be read (an unknown key, a value of the wrong type) is `None` and
/// its problem waits in `problems`, to be reported with validation's.
pub(super) struct RawConfig {
    /// Where the file was read from.
    pub(super) path: PathBuf,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) source: Option<RawEndpoint>,
    pub(super) target: Option<RawEndpoint>,
    pub(super) tables: Vec<Option<RawTable>>,
    pub(super) sync: RawSync,
    pub(super) metrics: Option<RawMetrics>,
    /// The sections missing or unreadable.
    pub(super) problems: Problems,
}

impl RawConfig {
    /// Reads `text` (the file at `path`) section by section. Only a file
    /// that does not split into sections is an error here.
    pub(super) fn read(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
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
        let state_dir = section(
            text,
            "state_dir",
            sections.state_dir.as_ref(),
            &mut problems,
        );
        let source = section(text, "source", sections.source.as_ref(), &mut problems);
        let target = section(text, "target", sections.target.as_ref(), &mut problems);
        let tables = sections
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| section(text, &format!("tables[{i}]"), Some(t), &mut problems))
            .collect();
        let sync = section(text, "sync", sections.sync.as_ref(), &mut problems).unwrap_or_default();
        let metrics = section(text, "metrics", sections.metrics.as_ref(), &mut problems);
        Ok(RawConfig {
            path: path.to_owned(),
            state_dir,
            source,
            target,
            tables,
            sync,
            metrics,
            problems,
        })
    }
}

/// `[source]` or `[target]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub(super) kind: String,
    pub(super) url: String,
    pub(super) password: Option<SecretString>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) poll_interval: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) tls: Option<String>,
    pub(super) tls_ca_file: Option<PathBuf>,
    // The `http` kind's keys (see `tandem_connectors::http::config`).
    #[serde(default)]
    pub(super) headers: std::collections::BTreeMap<String, String>,
    pub(super) auth: Option<http::RawAuth>,
    pub(super) requests_per_second: Option<f64>,
    pub(super) concurrency: Option<usize>,
    pub(super) timeout: Option<String>,
    pub(super) attempts: Option<u32>,
    pub(super) reconcile_interval: Option<String>,
    #[serde(default)]
    pub(super) objects: Vec<http::RawObject>,
}

impl RawEndpoint {
    /// The `http` keys, taken out of the section.
    pub(super) fn take_http(&mut self) -> http::RawHttp {
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

/// A `[[tables]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTable {
    pub(super) source: String,
    pub(super) target: Option<String>,
    pub(super) name: Option<String>,
    #[serde(rename = "match")]
    pub(super) match_on: Option<Vec<String>>,
    pub(super) to_target: Option<toml::Value>,
    pub(super) to_source: Option<toml::Value>,
    #[serde(default)]
    pub(super) split: Vec<toml::Value>,
}

/// `[sync]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) conflict: Option<ConflictPolicy>,
    pub(super) batch_size: Option<usize>,
    pub(super) names: Option<NameMatching>,
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

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: String,
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
