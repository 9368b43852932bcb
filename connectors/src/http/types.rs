//! Values between an API's JSON records and the canonical [`Value`].
//!
//! Each field's type comes from the config, so reading is strict: a JSON
//! value of the wrong kind is a data error naming the field, never a guess.
//! Timestamps keep their zone (read with their offset, kept in UTC, written
//! as `2024-05-01T13:45:00.123Z`); ids are strings.

use base64::Engine as _;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};

use super::config::{FieldSpec, ObjectSpec, TimeFormat, Wrap};
use crate::error::{ConnectorError, Result};
use crate::schema::DataType;
use crate::value::{Row, Value};

/// The JSON at `path` inside `value`.
pub fn get<'a>(value: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(value, |v, key| v.get(key.as_str()))
}

/// Sets the JSON at `path` inside `value`, creating objects on the way.
pub fn set(value: &mut Json, path: &[String], new: Json) {
    let Some((last, parents)) = path.split_last() else {
        *value = new;
        return;
    };
    let mut here = value;
    for key in parents {
        if !here.is_object() {
            *here = Json::Object(Map::new());
        }
        here = here
            .as_object_mut()
            .expect("made an object above")
            .entry(key.clone())
            .or_insert(Json::Null);
    }
    if !here.is_object() {
        *here = Json::Object(Map::new());
    }
    here.as_object_mut()
        .expect("made an object above")
        .insert(last.clone(), new);
}

/// A time as the API writes it: RFC 3339 with milliseconds and `Z`.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A time for a `{since}` query.
pub fn format_since(at: DateTime<Utc>, format: &TimeFormat) -> String {
    match format {
        TimeFormat::Rfc3339 => format_time(at),
        TimeFormat::Unix => at.timestamp().to_string(),
        TimeFormat::UnixMs => at.timestamp_millis().to_string(),
        TimeFormat::Pattern(pattern) => at.format(pattern).to_string(),
    }
}

/// Reads a time: RFC 3339 text with its offset (a string or wrapped as
/// `{"iso": ...}`), or a number of seconds (milliseconds when it is too
/// large to be seconds).
pub fn parse_time(json: &Json) -> Option<DateTime<Utc>> {
    match json {
        Json::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Json::Number(n) => {
            let n = n.as_f64()?;
            let millis = if n.abs() < 1e11 { n * 1000.0 } else { n };
            DateTime::from_timestamp_millis(millis as i64)
        }
        Json::Object(map) => map.get("iso").and_then(parse_time),
        _ => None,
    }
}

/// The id of a record, at `path`: a string (a number is taken as its
/// text).
pub fn id_of(record: &Json, path: &[String]) -> Option<String> {
    match get(record, path)? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The record in a single-record answer (at the object's `record`
/// path), when it holds one with an id.
pub fn answered_record<'a>(object: &ObjectSpec, body: &'a Json) -> Option<&'a Json> {
    get(body, &object.record).filter(|r| id_of(r, &object.id_path).is_some())
}

/// Whether `record` holds everything a row of `object` is made of (the
/// id, the time fields and every field, NULLs included): a write's answer
/// that does is the record as written, and need not be read back.
pub fn is_whole(object: &ObjectSpec, record: &Json) -> bool {
    id_of(record, &object.id_path).is_some()
        && get(record, &object.modified_path).is_some_and(|m| parse_time(m).is_some())
        && (object.created_path.is_empty() || get(record, &object.created_path).is_some())
        && object.fields.iter().all(|f| get(record, &f.path).is_some())
}

/// A record of `object` as a row: the id, the time fields and every
/// configured field (missing ones are NULL).
pub fn record_to_row(object: &ObjectSpec, record: &Json) -> Result<Row> {
    let at = |what: &str| format!("{} record: {what}", object.name);
    let id = id_of(record, &object.id_path).ok_or_else(|| {
        ConnectorError::data(at(&format!("no id at {:?}", object.id_path.join("."))))
    })?;
    let mut row = Row::new();
    row.insert(object.id.clone(), Value::Text(id.clone()));
    let times = std::iter::once((&object.modified, &object.modified_path)).chain(
        object
            .created
            .as_ref()
            .map(|column| (column, &object.created_path)),
    );
    for (field, path) in times {
        let value = match get(record, path) {
            None | Some(Json::Null) => Value::Null,
            Some(Json::String(s)) if s.is_empty() && object.empty_is_null => Value::Null,
            Some(json) => Value::TimestampTz(parse_time(json).ok_or_else(|| {
                ConnectorError::data(at(&format!("{id}: field {field} holds {json}, not a time")))
            })?),
        };
        row.insert(field.clone(), value);
    }
    for field in &object.fields {
        let value = match get(record, &field.path) {
            None => Value::Null,
            Some(Json::String(s)) if s.is_empty() && object.empty_is_null => Value::Null,
            Some(json) => read_field(field, json)
                .map_err(|e| e.context(format!("{} {id}, field {}", object.name, field.name)))?,
        };
        row.insert(field.name.clone(), value);
    }
    Ok(row)
}

/// Whether a listed record is a deleted one (its `deleted.flag` is true).
pub fn is_tombstone(object: &ObjectSpec, record: &Json) -> bool {
    object
        .deleted
        .as_ref()
        .and_then(|d| d.flag.as_ref())
        .is_some_and(|flag| get(record, flag) == Some(&Json::Bool(true)))
}

/// The modification time of a record.
pub fn modified_of(object: &ObjectSpec, record: &Json) -> Option<DateTime<Utc>> {
    get(record, &object.modified_path).and_then(parse_time)
}

/// Reads one field's JSON, unwrapping it when the field is wrapped.
fn read_field(field: &FieldSpec, json: &Json) -> Result<Value> {
    let json = match (&field.wrap, json) {
        (_, Json::Null) => return Ok(Value::Null),
        (Some(wrap), Json::Object(_)) => get(json, &wrap.at).unwrap_or(&Json::Null),
        _ => json,
    };
    from_json(field.data_type, json)
}

/// Converts JSON to a value of `data_type`; a JSON value of another kind is
/// a data error.
pub fn from_json(data_type: DataType, json: &Json) -> Result<Value> {
    let wrong = || {
        ConnectorError::data(format!(
            "JSON {} cannot be read as {}",
            short(json),
            data_type.name()
        ))
    };
    Ok(match (data_type, json) {
        (_, Json::Null) => Value::Null,
        (DataType::Json, json) => Value::Json(json.clone()),
        (DataType::Text | DataType::Other, Json::String(s)) => Value::Text(s.clone()),
        (DataType::Text | DataType::Other, Json::Number(n)) => Value::Text(n.to_string()),
        (DataType::Bool, Json::Bool(b)) => Value::Bool(*b),
        (DataType::Int, Json::Number(n)) => match n.as_i64() {
            Some(i) => Value::Int(i),
            // 3.0 is an integer an API wrote as a double.
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Int(f as i64),
                _ => return Err(wrong()),
            },
        },
        (DataType::Int, Json::String(s)) => Value::parse_text(DataType::Int, s)?,
        (DataType::Float, Json::Number(n)) => Value::Float(n.as_f64().ok_or_else(wrong)?),
        (DataType::Decimal, Json::Number(n)) => {
            Value::parse_text(DataType::Decimal, &n.to_string())?
        }
        (DataType::Decimal, Json::String(s)) => Value::parse_text(DataType::Decimal, s)?,
        (DataType::Uuid, Json::String(s)) => Value::parse_text(DataType::Uuid, s)?,
        (DataType::Date, Json::String(s)) => Value::Date(
            NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").map_err(|_| wrong())?,
        ),
        (DataType::Time, Json::String(s)) => {
            Value::Time(NaiveTime::parse_from_str(s, "%H:%M:%S%.f").map_err(|_| wrong())?)
        }
        (DataType::Timestamp, Json::String(s)) => Value::Timestamp(
            NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
                .map_err(|_| wrong())?,
        ),
        (DataType::TimestampTz, json) => Value::TimestampTz(parse_time(json).ok_or_else(wrong)?),
        (DataType::Bytes, Json::String(s)) => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| wrong())?,
        ),
        _ => return Err(wrong()),
    })
}

/// Converts a value to the JSON of `field` (wrapped when configured).
pub fn to_json(field: &FieldSpec, value: &Value) -> Result<Json> {
    let json = match value {
        Value::Null => return Ok(Json::Null),
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| {
                ConnectorError::data(format!(
                    "field {}: {f} cannot be written as a JSON number",
                    field.name
                ))
            })?,
        // JSON numbers are doubles to most APIs; a text field keeps the
        // decimal exact.
        Value::Decimal(d) => match field.data_type {
            DataType::Text => Json::String(d.clone()),
            _ => serde_json::from_str::<serde_json::Number>(d)
                .map(Json::Number)
                .map_err(|_| {
                    ConnectorError::data(format!(
                        "field {}: {d} cannot be written as a JSON number",
                        field.name
                    ))
                })?,
        },
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
        Value::Time(t) => Json::String(t.format("%H:%M:%S%.f").to_string()),
        Value::Timestamp(t) => Json::String(t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()),
        Value::TimestampTz(t) => Json::String(format_time(*t)),
        Value::Json(j) => j.clone(),
        Value::Uuid(u) => Json::String(u.hyphenated().to_string()),
    };
    Ok(match &field.wrap {
        Some(wrap) => wrapped(wrap, json),
        None => json,
    })
}

fn wrapped(wrap: &Wrap, json: Json) -> Json {
    let mut out = wrap.template.clone();
    set(&mut out, &wrap.at, json);
    out
}

/// The request body writing `row`'s configured fields (at the object's
/// `request_record` path); NULLs become the object's `clear` value on
/// update and are left out on create.
pub fn row_to_body(object: &ObjectSpec, row: &Row, create: bool) -> Result<Json> {
    let record = record_body(object, row, create)?;
    if object.request_record.is_empty() {
        return Ok(record);
    }
    let mut body = Json::Object(Map::new());
    set(&mut body, &object.request_record, record);
    Ok(body)
}

/// The record part of a request body.
fn record_body(object: &ObjectSpec, row: &Row, create: bool) -> Result<Json> {
    let mut body = Json::Object(Map::new());
    for field in &object.fields {
        let Some(value) = row.get(&field.name) else {
            continue;
        };
        let json = if value.is_null() {
            if create {
                continue;
            }
            object.clear.clone()
        } else {
            to_json(field, value).map_err(|e| e.context(&object.name))?
        };
        set(&mut body, &field.path, json);
    }
    Ok(body)
}

/// The configured fields of `row` that are set, as the JSON a create
/// sends for them (before wrapping), by field name.
pub fn sent_values(object: &ObjectSpec, row: &Row) -> BTreeMap<String, Json> {
    object
        .fields
        .iter()
        .filter_map(|field| {
            let value = row.get(&field.name).filter(|v| !v.is_null())?;
            let plain = FieldSpec {
                wrap: None,
                ..field.clone()
            };
            Some((field.name.clone(), to_json(&plain, value).ok()?))
        })
        .collect()
}

/// Whether `record` holds every value of `sent` ([`sent_values`]), each
/// compared as its field's type (an API may write a time or a number its
/// own way).
pub fn holds_sent(object: &ObjectSpec, record: &Json, sent: &BTreeMap<String, Json>) -> bool {
    !sent.is_empty()
        && sent.iter().all(|(name, json)| {
            let Some(field) = object.fields.iter().find(|f| &f.name == name) else {
                return false;
            };
            let listed = get(record, &field.path).and_then(|j| read_field(field, j).ok());
            let sent = from_json(field.data_type, json).ok();
            listed.is_some() && listed == sent
        })
}

/// At most 60 characters of a JSON value, for messages.
fn short(json: &Json) -> String {
    let text = json.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::config::RawHttp;

    fn object() -> ObjectSpec {
        let raw: RawHttp = toml::from_str(
            r#"
[[objects]]
name = "Deal"
path = "/classes/Deal"
id = "objectId"
modified = "updatedAt"
since = { where = "{since}" }
fields = { title = "text", amount = "decimal", count = "integer", closes = { type = "timestamptz", wrap = '{"__type":"Date","iso":"{}"}' }, meta = "json", nested = { type = "text", path = "a.b" } }
"#,
        )
        .unwrap();
        raw.validate("source", std::path::Path::new("."))
            .unwrap()
            .objects
            .remove(0)
    }

    #[test]
    fn a_record_reads_with_its_zones_and_wrappers() {
        let record = serde_json::json!({
            "objectId": "Xy12",
            "updatedAt": "2026-05-01T12:00:00.250+02:00",
            "title": "Big",
            "amount": 12.5,
            "count": 3.0,
            "closes": {"__type": "Date", "iso": "2026-06-01T00:00:00.000Z"},
            "meta": {"k": [1, 2]},
            "a": {"b": "deep"}
        });
        let row = record_to_row(&object(), &record).unwrap();
        assert_eq!(row["objectId"], Value::Text("Xy12".into()));
        assert_eq!(
            row["updatedAt"],
            Value::TimestampTz("2026-05-01T10:00:00.250Z".parse().unwrap())
        );
        assert_eq!(row["amount"], Value::Decimal("12.5".into()));
        assert_eq!(row["count"], Value::Int(3));
        assert_eq!(row["nested"], Value::Text("deep".into()));
        assert_eq!(
            row["closes"],
            Value::TimestampTz("2026-06-01T00:00:00Z".parse().unwrap())
        );
        let body = row_to_body(&object(), &row, true).unwrap();
        assert_eq!(body["closes"]["iso"], "2026-06-01T00:00:00.000Z");
        assert_eq!(body["a"]["b"], "deep");
        assert_eq!(body["amount"], 12.5);
        assert!(body.get("objectId").is_none() && body.get("updatedAt").is_none());
    }

    #[test]
    fn a_value_of_the_wrong_kind_names_the_field() {
        let record = serde_json::json!({"objectId": "A", "updatedAt": "2026-05-01T00:00:00Z", "count": "many"});
        let err = record_to_row(&object(), &record).unwrap_err().to_string();
        assert!(err.contains("Deal A, field count"), "{err}");
    }

    #[test]
    fn nulls_are_left_out_on_create_and_cleared_on_update() {
        let mut row = Row::new();
        row.insert("title".into(), Value::Null);
        assert_eq!(
            row_to_body(&object(), &row, true).unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            row_to_body(&object(), &row, false).unwrap(),
            serde_json::json!({"title": null})
        );
    }

    #[test]
    fn a_pocketbase_record_reads_through_its_preset() {
        let raw: RawHttp = toml::from_str(
            r#"
[[objects]]
name = "tasks"
preset = "pocketbase"
fields = { title = "text", due = "timestamptz", owner = { type = "reference", object = "tasks" } }
"#,
        )
        .unwrap();
        let object = raw
            .validate("target", std::path::Path::new("."))
            .unwrap()
            .objects
            .remove(0);
        let record = serde_json::json!({
            "id": "mqvgcyyv34e660l", "collectionName": "tasks",
            "created": "2026-12-07 21:40:13.299Z", "updated": "2026-12-07 21:40:14.001Z",
            "title": "", "due": "2025-01-02 03:04:05.678Z", "owner": ""
        });
        let row = record_to_row(&object, &record).unwrap();
        assert_eq!(
            row["updated"],
            Value::TimestampTz("2026-12-07T21:40:14.001Z".parse().unwrap())
        );
        assert_eq!(
            row["due"],
            Value::TimestampTz("2025-01-02T03:04:05.678Z".parse().unwrap())
        );
        // PocketBase has no NULL: "" is a field never set.
        assert_eq!(row["title"], Value::Null);
        assert_eq!(row["owner"], Value::Null);
        assert!(is_whole(&object, &record));
        assert_eq!(
            format_since(
                "2026-12-07T21:40:14.001Z".parse().unwrap(),
                &object.time_format
            ),
            "2026-12-07 21:40:14.001Z"
        );
        let id = object.own_ids.as_ref().unwrap().generate();
        assert!(
            id.len() == 15
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
