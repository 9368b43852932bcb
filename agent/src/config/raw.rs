//! The file as written: its sections, each read on its own.

use std::path::PathBuf;

use serde::Deserialize;
use tandem_connectors::http::config as http;
use tandem_connectors::SecretString;

use super::{ConflictPolicy, Problems};
use crate::mapping::NameMatching;

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
pub(super) struct Sections {
    pub(super) state_dir: Option<toml::Spanned<toml::Value>>,
    pub(super) source: Option<toml::Spanned<toml::Value>>,
    pub(super) target: Option<toml::Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) tables: Vec<toml::Spanned<toml::Value>>,
    pub(super) sync: Option<toml::Spanned<toml::Value>>,
    pub(super) metrics: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: String,
}

/// The line of `text` that `offset` falls on, counted from 1.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A deserialization error as one line: `line N: ` (of `text`, `offset`
/// bytes into it) and the message, `at` naming where when the error has no
/// place of its own.
pub(super) fn located(
    text: &str,
    e: &toml::de::Error,
    offset: usize,
    at: Option<(&str, usize)>,
) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match (e.span(), at) {
        (Some(span), _) => format!("line {}: {message}", line_of(text, offset + span.start)),
        (None, Some((at, start))) => format!("line {}: {at}: {message}", line_of(text, start)),
        (None, None) => message,
    }
}

/// Reads one section of the file, or notes its problem (with the line of
/// the key at fault where it can be found) and gives `None`.
pub(super) fn section<T: serde::de::DeserializeOwned>(
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
