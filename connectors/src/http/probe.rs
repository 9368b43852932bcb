//! What `check` asks an API before anything is synced: one page of every
//! object, read as polling reads it, so that a wrong token, URL, path,
//! query or field name shows as a line with its fix instead of as a
//! failure mid-sync.

use chrono::{DateTime, Utc};

use super::{capture, types, Endpoint};
use crate::error::{ErrorKind, Result};
use crate::schema::TableSchema;

/// The problems of `tables` (objects) that requests show, one line each.
/// Only a problem of the whole endpoint (it cannot be reached, or refuses
/// the credentials) is said once, not per object.
pub async fn probe(endpoint: &Endpoint, tables: &[TableSchema]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for table in tables {
        let object = endpoint.object(&table.name)?;
        let query = capture::page_query(object, DateTime::<Utc>::UNIX_EPOCH, 1, 0);
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
        if types::modified_of(object, record).is_none() {
            lines.push(format!(
                "{}: a listed record holds no modification time at {:?} (check modified; the record's fields: {})",
                object.name,
                object.modified_path.join("."),
                fields()
            ));
        }
    }
    Ok(lines)
}
