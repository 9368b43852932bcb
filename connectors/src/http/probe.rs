//! What `check` asks an API before anything is synced: one page of every
//! object, read as polling reads it, so that a wrong token, URL, path,
//! query or field name shows as a line with its fix instead of as a
//! failure mid-sync.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::config::ObjectSpec;
use super::{capture, types, Endpoint};
use crate::connector::Finding;
use crate::error::{ErrorKind, Result};
use crate::schema::TableSchema;

/// Records a probe lists per object: enough to tell a misspelt field from
/// one that is merely unset in a few records.
const PROBE_PAGE: usize = 20;

/// The problems of `tables` (objects) that requests show, one line each,
/// and what is worth a warning.
/// Only a problem of the whole endpoint (it cannot be reached, or refuses
/// the credentials) is said once, not per object.
pub async fn probe(endpoint: &Endpoint, tables: &[TableSchema]) -> Result<Vec<Finding>> {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    for table in tables {
        let object = endpoint.object(&table.name)?;
        if object.order.is_empty() {
            warnings.push(Finding::warning(format!(
                "{}: no order is set, so listings come in the API's own order and records past its page size can be missed; set order (the query sorting by modification time, oldest first)",
                object.name
            )));
        }
        let query = capture::page_query(object, DateTime::<Utc>::UNIX_EPOCH, PROBE_PAGE, 0);
        let page = match endpoint.list_page(object, query).await {
            Ok(page) => page,
            Err(e) => {
                let line = match e.kind() {
                    ErrorKind::Connection => format!(
                        "cannot reach the API ({e}): check url, and that the server runs"
                    ),
                    ErrorKind::Permission => format!(
                        "the API refuses the credentials ({e}): check the password (or token) and auth"
                    ),
                    ErrorKind::Schema => format!("{e}"),
                    _ => format!(
                        "{}: the list request is refused ({e}): check since, order and limit_param",
                        object.name
                    ),
                };
                let whole_endpoint =
                    matches!(e.kind(), ErrorKind::Connection | ErrorKind::Permission);
                if !lines.contains(&line) {
                    lines.push(line);
                }
                if whole_endpoint {
                    break;
                }
                continue;
            }
        };
        if let (Some(path), None) = (&object.total, page.total) {
            lines.push(format!(
                "{}: the list answer holds no count at {:?} (check total)",
                object.name,
                path.join(".")
            ));
        }
        let Some(record) = page.records.first() else {
            // Nothing to read fields from.
            continue;
        };
        let fields = || match record {
            serde_json::Value::Object(map) => map.keys().cloned().collect::<Vec<_>>().join(", "),
            _ => String::new(),
        };
        if types::id_of(record, &object.id_path).is_none() {
            lines.push(format!(
                "{}: a listed record holds no id at {:?} (check id; the record's fields: {})",
                object.name,
                object.id_path.join("."),
                fields()
            ));
        }
        lines.extend(misspelt_fields(object, &page.records));
        if types::modified_of(object, record).is_none() {
            lines.push(format!(
                "{}: a listed record holds no modification time at {:?} (check modified; the record's fields: {})",
                object.name,
                object.modified_path.join("."),
                fields()
            ));
        }
    }
    let mut found: Vec<Finding> = lines.into_iter().map(Finding::problem).collect();
    found.extend(warnings);
    Ok(found)
}

/// Configured fields that no listed record holds while a record key that
/// no field claims is spelt almost alike: a typo, which the API would
/// otherwise take silently (most ignore unknown body fields). A field
/// without a look-alike is not reported, as many APIs leave unset fields
/// out of a record.
fn misspelt_fields(object: &ObjectSpec, records: &[serde_json::Value]) -> Vec<String> {
    let keys_of = |record: &serde_json::Value| -> Vec<String> {
        record
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default()
    };
    let keys: BTreeSet<String> = records.iter().flat_map(keys_of).collect();
    let claimed: BTreeSet<&str> = object
        .fields
        .iter()
        .filter_map(|f| f.path.first().map(String::as_str))
        .chain(
            [&object.id_path, &object.modified_path, &object.created_path]
                .into_iter()
                .filter_map(|p| p.first().map(String::as_str)),
        )
        .collect();
    let mut lines = Vec::new();
    for field in &object.fields {
        let Some(top) = field.path.first() else {
            continue;
        };
        if keys.contains(top) {
            continue;
        }
        let closest = keys
            .iter()
            .filter(|k| !claimed.contains(k.as_str()))
            .map(|k| (strsim::normalized_damerau_levenshtein(top, k), k))
            .filter(|(score, _)| *score >= 0.75)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, key)) = closest {
            lines.push(format!(
                "{}: no listed record holds field {top:?}; the records have {key:?} (check fields)",
                object.name
            ));
        }
    }
    lines
}
