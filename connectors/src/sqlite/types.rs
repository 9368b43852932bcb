//! SQLite types: declared type -> [`DataType`], and values between SQLite's
//! storage classes and the canonical [`Value`].
//!
//! SQLite stores each value in one of five classes (NULL, INTEGER, REAL,
//! TEXT, BLOB) whatever the column declares, so a value converts by the
//! column's [`DataType`]:
//!
//! - dates, times and timestamps are ISO-8601 TEXT (`2024-01-02 03:04:05`,
//!   a fraction of six digits only when there is one; a timestamp with time
//!   zone in UTC with `+00:00`), the forms SQLite's date functions read and
//!   that sort in time order;
//! - booleans are INTEGER 0/1; JSON and UUIDs are TEXT; bytes are BLOB;
//! - decimals: a DECIMAL/NUMERIC column has NUMERIC affinity, so SQLite
//!   itself turns any well-formed number into an INTEGER (when it is whole
//!   and fits 64 bits) or a REAL. Tandem writes a decimal only when that
//!   keeps its value exactly (a 64-bit integer, or at most 15 significant
//!   digits) and refuses it otherwise; the scale is not kept (`1.50` reads
//!   back as `1.5`).
//!
//! Reading accepts what applications commonly store: an integer in a REAL
//! column, a whole REAL in an INTEGER column, text dates with a `T` or
//! without seconds, an offset or `Z` on a timestamp, integer Unix times in
//! timestamp columns, booleans as text, UUIDs as 16-byte blobs.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use rusqlite::types::Value as SqlValue;

use crate::error::{ConnectorError, Result};
use crate::schema::{Column, DataType, TableName};
use crate::value::Value;

/// Largest integer a double holds exactly (2^53).
const EXACT_IN_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// Significant digits SQLite keeps of a REAL it shows as text.
const REAL_DIGITS: usize = 15;

/// The canonical type of a column from its declared type (case-insensitive;
/// SQLite's affinity rules decide where no name matches).
pub fn data_type_of(declared: &str) -> DataType {
    let upper = declared
        .to_ascii_uppercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let has = |part: &str| upper.contains(part);
    if has("INT") {
        DataType::Int
    } else if has("BOOL") {
        DataType::Bool
    } else if has("DECIMAL") || has("NUMERIC") || has("MONEY") {
        DataType::Decimal
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        DataType::Float
    } else if has("BLOB") || upper.is_empty() {
        DataType::Bytes
    } else if has("TIMESTAMPTZ") || has("TIMESTAMP WITH TIME ZONE") || has("DATETIMEOFFSET") {
        DataType::TimestampTz
    } else if has("DATETIME") || has("TIMESTAMP") {
        DataType::Timestamp
    } else if has("DATE") {
        DataType::Date
    } else if has("TIME") {
        DataType::Time
    } else if has("JSON") {
        DataType::Json
    } else if has("UUID") || has("GUID") {
        DataType::Uuid
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        DataType::Text
    } else {
        DataType::Other
    }
}

/// The declared type without length or precision: `DECIMAL(10,2)` ->
/// `DECIMAL`.
pub fn native_type_of(declared: &str) -> String {
    let base = declared.split('(').next().unwrap_or(declared);
    base.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A value for messages: its text form, cut short.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(60).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A stored value for messages.
fn shown_sql(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".to_owned(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => format!("{f:?}"),
        SqlValue::Text(s) => shown(&Value::Text(s.clone())),
        SqlValue::Blob(b) => shown(&Value::Bytes(b.clone())),
    }
}

/// Reads a value of `column` of `table` as SQLite stored it.
pub fn read_value(table: &TableName, column: &Column, value: SqlValue) -> Result<Value> {
    let stored = shown_sql(&value);
    from_sqlite(column.data_type, value).map_err(|reason| {
        ConnectorError::data(format!(
            "cannot read value {stored} of column `{}` of table `{table}` ({}): {reason}",
            column.name, column.native_type
        ))
    })
}

/// Converts a stored value to the canonical form of `ty`; the error says
/// why not.
pub fn from_sqlite(ty: DataType, value: SqlValue) -> std::result::Result<Value, String> {
    let not_a = |class: &str| Err(format!("a stored {class} is not a {}", ty.name()));
    Ok(match (ty, value) {
        (_, SqlValue::Null) => Value::Null,
        (DataType::Int, SqlValue::Integer(i)) => Value::Int(i),
        (DataType::Int, SqlValue::Real(f)) => {
            if f.fract() != 0.0 || !f.is_finite() || f.abs() > EXACT_IN_DOUBLE {
                return Err("it is not a whole number".to_owned());
            }
            Value::Int(f as i64)
        }
        (DataType::Bool, SqlValue::Integer(i)) => Value::Bool(i != 0),
        (DataType::Bool, SqlValue::Real(f)) => Value::Bool(f != 0.0),
        (DataType::Decimal, SqlValue::Integer(i)) => Value::Decimal(i.to_string()),
        (DataType::Decimal, SqlValue::Real(f)) => Value::Decimal(decimal_of_real(f)?),
        (DataType::Float, SqlValue::Integer(i)) => Value::Float(i as f64),
        (DataType::Float, SqlValue::Real(f)) => Value::Float(f),
        (DataType::Text, SqlValue::Integer(i)) => Value::Text(i.to_string()),
        (DataType::Text, SqlValue::Real(f)) => Value::Text(Value::Float(f).to_string()),
        (DataType::Text, SqlValue::Text(s)) => Value::Text(s),
        (DataType::Text, SqlValue::Blob(b)) => Value::Text(
            String::from_utf8(b).map_err(|_| "the bytes are not valid UTF-8".to_owned())?,
        ),
        (DataType::Bytes, SqlValue::Blob(b)) => Value::Bytes(b),
        (DataType::Bytes, SqlValue::Text(s)) => Value::Bytes(s.into_bytes()),
        (DataType::Bytes, SqlValue::Integer(i)) => Value::Bytes(i.to_string().into_bytes()),
        (DataType::Bytes, SqlValue::Real(f)) => {
            Value::Bytes(Value::Float(f).to_string().into_bytes())
        }
        (DataType::Timestamp | DataType::TimestampTz, SqlValue::Integer(seconds)) => {
            let at = DateTime::<Utc>::from_timestamp(seconds, 0)
                .ok_or_else(|| format!("{seconds} is out of range as a Unix time"))?;
            match ty {
                DataType::Timestamp => Value::Timestamp(at.naive_utc()),
                _ => Value::TimestampTz(at),
            }
        }
        (DataType::Json, SqlValue::Integer(i)) => Value::Json(i.into()),
        (DataType::Json, SqlValue::Real(f)) => Value::Json(
            serde_json::Number::from_f64(f)
                .ok_or_else(|| "JSON has no NaN or infinity".to_owned())?
                .into(),
        ),
        (DataType::Uuid, SqlValue::Blob(b)) if b.len() == 16 => {
            Value::Uuid(uuid::Uuid::from_slice(&b).map_err(|e| e.to_string())?)
        }
        (DataType::Other, SqlValue::Integer(i)) => Value::Text(i.to_string()),
        (DataType::Other, SqlValue::Real(f)) => Value::Text(Value::Float(f).to_string()),
        (DataType::Other, SqlValue::Text(s)) => Value::Text(s),
        (DataType::Other, SqlValue::Blob(b)) => match String::from_utf8(b) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        (_, SqlValue::Text(s)) => from_text(ty, &s)?,
        (_, SqlValue::Blob(b)) => match String::from_utf8(b) {
            Ok(s) => from_text(ty, &s)?,
            Err(_) => return not_a("blob"),
        },
        (_, SqlValue::Integer(_)) => return not_a("integer"),
        (_, SqlValue::Real(_)) => return not_a("real"),
    })
}

/// Reads text stored in a column of type `ty` (not Text, Bytes or Other).
fn from_text(ty: DataType, text: &str) -> std::result::Result<Value, String> {
    let trimmed = text.trim();
    let bad = || format!("the text is not a {}", ty.name());
    Ok(match ty {
        DataType::Date => Value::Date(parse_date(trimmed).ok_or_else(bad)?),
        DataType::Time => Value::Time(parse_time(trimmed).ok_or_else(bad)?),
        DataType::Timestamp => Value::Timestamp(parse_timestamp(trimmed).ok_or_else(bad)?),
        DataType::TimestampTz => Value::TimestampTz(parse_timestamptz(trimmed).ok_or_else(bad)?),
        DataType::Json => Value::Json(serde_json::from_str(text).map_err(|e| e.to_string())?),
        DataType::Int => match Value::parse_text(ty, trimmed).map_err(|e| e.to_string())? {
            Value::Int(i) => Value::Int(i),
            _ => return Err("it does not fit a 64-bit integer".to_owned()),
        },
        _ => Value::parse_text(ty, trimmed).map_err(|e| e.to_string())?,
    })
}

/// The plain decimal text of a double: shortest round-trip digits, never
/// an exponent.
fn decimal_of_real(f: f64) -> std::result::Result<String, String> {
    if !f.is_finite() {
        return Err("a decimal cannot be NaN or infinite".to_owned());
    }
    if f == 0.0 {
        return Ok("0".to_owned());
    }
    // Rust prints floats in full positional form, shortest digits first.
    Ok(format!("{f}"))
}

/// A date: `2024-01-02`, or a timestamp at midnight.
fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            parse_timestamp(text)
                .filter(|t| t.time() == NaiveTime::MIN)
                .map(|t| t.date())
        })
}

/// A time of day: `03:04:05`, `03:04:05.123456`, `03:04`.
fn parse_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .ok()
}

/// Splits a trailing `Z` or `+HH:MM`/`+HHMM`/`+HH` offset from a timestamp;
/// the offset in seconds east of UTC.
fn split_offset(text: &str) -> (&str, Option<i32>) {
    if let Some(rest) = text.strip_suffix(['Z', 'z']) {
        return (rest.trim_end(), Some(0));
    }
    // The date's own dashes are within the first 10 characters.
    let Some(at) = text.rfind(['+', '-']).filter(|at| *at > 10) else {
        return (text, None);
    };
    let (head, zone) = text.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return (text, None);
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok(), Some(0)),
        4 => (digits[..2].parse().ok(), digits[2..].parse().ok()),
        _ => (None, None),
    };
    match (hours, minutes) {
        (Some(h), Some(m)) if h < 24 && m < 60 => {
            (head.trim_end(), Some(sign * (h * 3600 + m * 60)))
        }
        _ => (text, None),
    }
}

/// A timestamp without zone, with a space or a `T`, with or without
/// seconds; a date alone is midnight.
fn parse_naive(text: &str) -> Option<NaiveDateTime> {
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN))
}

/// A timestamp without zone; one written with an offset is taken at UTC.
fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    parse_timestamptz(text).map(|t| t.naive_utc())
}

/// An instant; a text without an offset is UTC.
fn parse_timestamptz(text: &str) -> Option<DateTime<Utc>> {
    let (naive, offset) = split_offset(text);
    let at = parse_naive(naive)?;
    let seconds = offset.unwrap_or(0);
    Some((at - chrono::Duration::seconds(i64::from(seconds))).and_utc())
}

/// The fraction of a time written: nothing for whole seconds, else six
/// digits (so the text sorts in time order).
fn fraction(nanos: u32) -> std::result::Result<String, String> {
    if nanos >= 1_000_000_000 {
        return Err("a leap second cannot be stored".to_owned());
    }
    let micros = nanos / 1_000;
    Ok(if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    })
}

fn check_year(date: NaiveDate) -> std::result::Result<(), String> {
    use chrono::Datelike;
    if (0..=9999).contains(&date.year()) {
        Ok(())
    } else {
        Err("the year is outside 0..9999".to_owned())
    }
}

/// `2024-01-02`.
pub fn date_text(date: NaiveDate) -> std::result::Result<String, String> {
    check_year(date)?;
    Ok(date.format("%Y-%m-%d").to_string())
}

/// `03:04:05` or `03:04:05.123456`.
pub fn time_text(time: NaiveTime) -> std::result::Result<String, String> {
    Ok(format!(
        "{}{}",
        time.format("%H:%M:%S"),
        fraction(time.nanosecond())?
    ))
}

/// `2024-01-02 03:04:05` or `2024-01-02 03:04:05.123456`.
pub fn timestamp_text(at: NaiveDateTime) -> std::result::Result<String, String> {
    Ok(format!(
        "{} {}",
        date_text(at.date())?,
        time_text(at.time())?
    ))
}

/// `2024-01-02 03:04:05+00:00`, in UTC.
pub fn timestamptz_text(at: DateTime<Utc>) -> std::result::Result<String, String> {
    Ok(format!("{}+00:00", timestamp_text(at.naive_utc())?))
}

/// Converts a canonical value for writing into `column` of `table`.
pub fn write_value(table: &TableName, column: &Column, value: &Value) -> Result<SqlValue> {
    to_sqlite(column.data_type, value).map_err(|reason| {
        ConnectorError::data(format!(
            "cannot write {} value {} into column `{}` of table `{table}` ({}): {reason}",
            value.type_name(),
            shown(value),
            column.name,
            column.native_type
        ))
    })
}

/// What SQLite keeps of a decimal in a column with NUMERIC affinity: an
/// INTEGER when it is whole and fits 64 bits, else a REAL, which must hold
/// it exactly.
fn decimal_value(text: &str) -> std::result::Result<SqlValue, String> {
    let parsed = Value::parse_text(DataType::Decimal, text).map_err(|e| e.to_string())?;
    let Value::Decimal(text) = parsed else {
        unreachable!("a decimal parses as a decimal")
    };
    if text == "NaN" {
        return Err("SQLite cannot store NaN".to_owned());
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = frac.trim_end_matches('0');
    let whole = whole.trim_start_matches('0');
    if frac.is_empty() {
        let sign = if negative { "-" } else { "" };
        if let Ok(i) = format!("{sign}{}", if whole.is_empty() { "0" } else { whole }).parse() {
            return Ok(SqlValue::Integer(i));
        }
    }
    let significant = format!("{whole}{frac}");
    let significant = significant.trim_start_matches('0').trim_end_matches('0');
    if significant.len() > REAL_DIGITS {
        return Err(format!(
            "SQLite keeps a decimal that is not a 64-bit integer as a double, exact to {REAL_DIGITS} significant digits only"
        ));
    }
    let f: f64 = text.parse().map_err(|_| "it is not a number".to_owned())?;
    if !f.is_finite() || (f == 0.0 && !significant.is_empty()) {
        return Err("it is out of the range of a double".to_owned());
    }
    Ok(SqlValue::Real(f))
}

/// Converts a canonical value to what a column of type `ty` takes; the
/// error says why it cannot.
pub fn to_sqlite(ty: DataType, value: &Value) -> std::result::Result<SqlValue, String> {
    let mismatch = || {
        Err(format!(
            "a {} does not fit a {} column",
            value.type_name(),
            ty.name()
        ))
    };
    let parsed = |text: &str| -> std::result::Result<Value, String> {
        from_text(ty, text).map_err(|_| format!("the text is not a {}", ty.name()))
    };
    let text = |s: std::result::Result<String, String>| s.map(SqlValue::Text);
    Ok(match (ty, value) {
        (_, Value::Null) => SqlValue::Null,
        (DataType::Int, Value::Int(i)) => SqlValue::Integer(*i),
        (DataType::Int | DataType::Bool | DataType::Decimal | DataType::Other, Value::Bool(b)) => {
            SqlValue::Integer(i64::from(*b))
        }
        (DataType::Int, Value::Decimal(d)) => match decimal_value(d)? {
            SqlValue::Integer(i) => SqlValue::Integer(i),
            _ => return Err("it is not a 64-bit integer".to_owned()),
        },
        (DataType::Int, Value::Float(f)) => {
            if f.fract() != 0.0 || !f.is_finite() || f.abs() > EXACT_IN_DOUBLE {
                return Err("it is not a whole number".to_owned());
            }
            SqlValue::Integer(*f as i64)
        }
        (DataType::Bool, Value::Int(i @ (0 | 1))) => SqlValue::Integer(*i),
        (DataType::Decimal, Value::Decimal(d)) => decimal_value(d)?,
        (DataType::Decimal | DataType::Other, Value::Int(i)) => SqlValue::Integer(*i),
        (DataType::Decimal, Value::Float(f)) => {
            if !f.is_finite() {
                return Err("a decimal cannot be NaN or infinite".to_owned());
            }
            SqlValue::Real(*f)
        }
        (DataType::Float, Value::Float(f)) => {
            if f.is_nan() {
                return Err("SQLite cannot store NaN (it would be NULL)".to_owned());
            }
            SqlValue::Real(*f)
        }
        (DataType::Float, Value::Int(i)) => SqlValue::Real(*i as f64),
        (DataType::Float, Value::Bool(b)) => SqlValue::Real(f64::from(u8::from(*b))),
        (DataType::Float, Value::Decimal(d)) => SqlValue::Real(
            d.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| "it is not a finite number".to_owned())?,
        ),
        (
            DataType::Int
            | DataType::Bool
            | DataType::Decimal
            | DataType::Float
            | DataType::Date
            | DataType::Time
            | DataType::Timestamp
            | DataType::TimestampTz
            | DataType::Uuid,
            Value::Text(s),
        ) => return to_sqlite(ty, &parsed(s)?),
        (DataType::Text, Value::Text(s)) => SqlValue::Text(s.clone()),
        (DataType::Text, Value::Bytes(b)) => SqlValue::Text(
            String::from_utf8(b.clone()).map_err(|_| "the bytes are not valid UTF-8".to_owned())?,
        ),
        (DataType::Text, other) => SqlValue::Text(other.to_sql_text().unwrap_or_default()),
        (DataType::Bytes | DataType::Other, Value::Bytes(b)) => SqlValue::Blob(b.clone()),
        (DataType::Bytes, Value::Text(s)) => SqlValue::Blob(s.as_bytes().to_vec()),
        (DataType::Bytes, Value::Uuid(u)) => SqlValue::Blob(u.as_bytes().to_vec()),
        (DataType::Date, Value::Date(d)) => text(date_text(*d))?,
        (DataType::Date, Value::Timestamp(t)) if t.time() == NaiveTime::MIN => {
            text(date_text(t.date()))?
        }
        (DataType::Date, Value::TimestampTz(t)) if t.time() == NaiveTime::MIN => {
            text(date_text(t.date_naive()))?
        }
        (DataType::Time, Value::Time(t)) => text(time_text(*t))?,
        (DataType::Timestamp, Value::Timestamp(t)) => text(timestamp_text(*t))?,
        (DataType::Timestamp, Value::TimestampTz(t)) => text(timestamp_text(t.naive_utc()))?,
        (DataType::Timestamp, Value::Date(d)) => text(timestamp_text(d.and_time(NaiveTime::MIN)))?,
        (DataType::TimestampTz, Value::TimestampTz(t)) => text(timestamptz_text(*t))?,
        // A timestamp without zone is taken as UTC.
        (DataType::TimestampTz, Value::Timestamp(t)) => text(timestamptz_text(t.and_utc()))?,
        (DataType::TimestampTz, Value::Date(d)) => {
            text(timestamptz_text(d.and_time(NaiveTime::MIN).and_utc()))?
        }
        (DataType::Json, Value::Json(j)) => SqlValue::Text(j.to_string()),
        (DataType::Json, Value::Text(s)) => {
            serde_json::from_str::<serde_json::Value>(s)
                .map_err(|_| "the text is not a JSON document".to_owned())?;
            SqlValue::Text(s.clone())
        }
        (DataType::Json, Value::Int(_) | Value::Decimal(_) | Value::Bool(_)) => {
            SqlValue::Text(value.to_string())
        }
        (DataType::Json, Value::Float(f)) if f.is_finite() => SqlValue::Text(value.to_string()),
        (DataType::Uuid, Value::Uuid(u)) => SqlValue::Text(u.hyphenated().to_string()),
        (DataType::Uuid, Value::Bytes(b)) if b.len() == 16 => SqlValue::Text(
            uuid::Uuid::from_slice(b)
                .map_err(|e| e.to_string())?
                .hyphenated()
                .to_string(),
        ),
        (DataType::Other, Value::Float(f)) if !f.is_nan() => SqlValue::Real(*f),
        (DataType::Other, other) => SqlValue::Text(other.to_sql_text().unwrap_or_default()),
        _ => return mismatch(),
    })
}

/// Every form a key value may be stored in, the one Tandem writes first:
/// a key read from a row an application wrote (`2024-01-02T03:04:05Z`, a
/// UUID without hyphens or as 16 bytes, text in a BLOB column) must find
/// that row again. Lookups match any of them (`IN (...)`, index used).
pub fn key_forms(ty: DataType, value: &Value) -> std::result::Result<Vec<SqlValue>, String> {
    let canonical = to_sqlite(ty, value)?;
    let mut forms = vec![canonical.clone()];
    let text_forms = |texts: Vec<String>| texts.into_iter().map(SqlValue::Text);
    match (ty, &canonical) {
        (DataType::Uuid, SqlValue::Text(t)) => {
            let u = uuid::Uuid::parse_str(t).map_err(|e| e.to_string())?;
            let hyphenated = u.hyphenated().to_string();
            let simple = u.simple().to_string();
            forms.extend(text_forms(vec![
                hyphenated.to_uppercase(),
                simple.clone(),
                simple.to_uppercase(),
            ]));
            forms.push(SqlValue::Blob(u.as_bytes().to_vec()));
        }
        (DataType::Timestamp | DataType::TimestampTz, SqlValue::Text(t)) => {
            let at = parse_timestamptz(t).ok_or_else(|| format!("bad timestamp {t}"))?;
            let zones: &[&str] = if ty == DataType::Timestamp {
                &["", "Z"]
            } else {
                &["+00:00", "Z", ""]
            };
            let date = at.format("%Y-%m-%d").to_string();
            let times = time_forms(at.time());
            for separator in [" ", "T"] {
                for time in &times {
                    for zone in zones {
                        forms.push(SqlValue::Text(format!("{date}{separator}{time}{zone}")));
                    }
                }
            }
            if at.timestamp_subsec_micros() == 0 {
                forms.push(SqlValue::Integer(at.timestamp()));
            }
        }
        (DataType::Date, SqlValue::Text(d)) => {
            forms.extend(text_forms(vec![
                format!("{d} 00:00:00"),
                format!("{d}T00:00:00"),
            ]));
        }
        (DataType::Time, SqlValue::Text(t)) => {
            let time = parse_time(t).ok_or_else(|| format!("bad time {t}"))?;
            forms.extend(text_forms(time_forms(time)));
        }
        (DataType::Bytes, SqlValue::Blob(b)) => {
            if let Ok(text) = std::str::from_utf8(b) {
                forms.push(SqlValue::Text(text.to_owned()));
                if let Ok(i) = text.parse::<i64>() {
                    if i.to_string() == text {
                        forms.push(SqlValue::Integer(i));
                    }
                }
            }
        }
        _ => {}
    }
    let mut unique = Vec::with_capacity(forms.len());
    for form in forms {
        if !unique.contains(&form) {
            unique.push(form);
        }
    }
    Ok(unique)
}

/// A time of day as applications write it: whole seconds with no, three or
/// six zero digits, or the fraction in six, three or as few digits as it
/// needs; minutes alone when there are no seconds.
fn time_forms(time: NaiveTime) -> Vec<String> {
    let hms = time.format("%H:%M:%S").to_string();
    let micros = time.nanosecond() / 1_000;
    let mut out = Vec::new();
    if micros == 0 {
        out.extend([hms.clone(), format!("{hms}.000"), format!("{hms}.000000")]);
        if time.second() == 0 {
            out.push(time.format("%H:%M").to_string());
        }
    } else {
        let six = format!("{micros:06}");
        out.push(format!("{hms}.{six}"));
        if six.ends_with("000") {
            out.push(format!("{hms}.{}", &six[..3]));
        }
        out.push(format!("{hms}.{}", six.trim_end_matches('0')));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micro: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_micro_opt(h, mi, s, micro)
            .unwrap()
    }

    #[test]
    fn declared_types_map_to_canonical_types() {
        let cases = [
            ("INTEGER", DataType::Int),
            ("bigint unsigned", DataType::Int),
            ("POINT", DataType::Int),
            ("BOOLEAN", DataType::Bool),
            ("decimal(10,2)", DataType::Decimal),
            ("NUMERIC", DataType::Decimal),
            ("money", DataType::Decimal),
            ("REAL", DataType::Float),
            ("double precision", DataType::Float),
            ("FLOAT", DataType::Float),
            ("BLOB", DataType::Bytes),
            ("", DataType::Bytes),
            ("TIMESTAMPTZ", DataType::TimestampTz),
            ("timestamp  with time zone", DataType::TimestampTz),
            ("DATETIMEOFFSET", DataType::TimestampTz),
            ("timestamp without time zone", DataType::Timestamp),
            ("DATETIME", DataType::Timestamp),
            ("date", DataType::Date),
            ("TIME", DataType::Time),
            ("JSON", DataType::Json),
            ("jsonb", DataType::Json),
            ("UUID", DataType::Uuid),
            ("uniqueidentifier guid", DataType::Uuid),
            ("VARCHAR(20)", DataType::Text),
            ("CLOB", DataType::Text),
            ("TEXT", DataType::Text),
            ("GEOMETRY", DataType::Other),
        ];
        for (declared, expected) in cases {
            assert_eq!(data_type_of(declared), expected, "{declared}");
        }
        assert_eq!(native_type_of("decimal(10, 2)"), "decimal");
        assert_eq!(native_type_of("  double   precision "), "double precision");
    }

    #[test]
    fn stored_values_read_as_applications_store_them() {
        let read = |ty, v| from_sqlite(ty, v).unwrap();
        assert_eq!(
            read(DataType::Float, SqlValue::Integer(3)),
            Value::Float(3.0)
        );
        assert_eq!(read(DataType::Int, SqlValue::Real(3.0)), Value::Int(3));
        assert!(from_sqlite(DataType::Int, SqlValue::Real(3.5)).is_err());
        assert_eq!(
            read(DataType::Bool, SqlValue::Text("true".into())),
            Value::Bool(true)
        );
        assert_eq!(
            read(DataType::Bool, SqlValue::Integer(0)),
            Value::Bool(false)
        );
        let ts = Value::Timestamp(at(2024, 1, 2, 3, 4, 5, 123_456));
        for text in [
            "2024-01-02 03:04:05.123456",
            "2024-01-02T03:04:05.123456",
            "2024-01-02T05:04:05.123456+02:00",
            "2024-01-02T03:04:05.123456Z",
        ] {
            assert_eq!(
                read(DataType::Timestamp, SqlValue::Text(text.into())),
                ts,
                "{text}"
            );
        }
        assert_eq!(
            read(
                DataType::Timestamp,
                SqlValue::Text("2024-01-02 03:04".into())
            ),
            Value::Timestamp(at(2024, 1, 2, 3, 4, 0, 0))
        );
        assert_eq!(
            read(DataType::TimestampTz, SqlValue::Integer(0)),
            Value::TimestampTz(at(1970, 1, 1, 0, 0, 0, 0).and_utc())
        );
        assert_eq!(
            read(
                DataType::TimestampTz,
                SqlValue::Text("2024-01-02 01:04:05-0200".into())
            ),
            Value::TimestampTz(at(2024, 1, 2, 3, 4, 5, 0).and_utc())
        );
        assert_eq!(
            read(DataType::Date, SqlValue::Text("2024-02-29 00:00:00".into())),
            Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
        );
        assert_eq!(
            read(DataType::Time, SqlValue::Text("23:59".into())),
            Value::Time(NaiveTime::from_hms_opt(23, 59, 0).unwrap())
        );
        let u = uuid::Uuid::from_u128(7);
        assert_eq!(
            read(DataType::Uuid, SqlValue::Blob(u.as_bytes().to_vec())),
            Value::Uuid(u)
        );
        assert_eq!(
            read(
                DataType::Uuid,
                SqlValue::Text(u.hyphenated().to_string().to_uppercase())
            ),
            Value::Uuid(u)
        );
        assert_eq!(
            read(DataType::Json, SqlValue::Integer(12)),
            Value::Json(serde_json::json!(12))
        );
        assert_eq!(
            read(DataType::Bytes, SqlValue::Text("ab".into())),
            Value::Bytes(b"ab".to_vec())
        );
        assert_eq!(
            read(DataType::Other, SqlValue::Integer(5)),
            Value::Text("5".into())
        );
        assert!(from_sqlite(DataType::Date, SqlValue::Text("someday".into())).is_err());
    }

    #[test]
    fn decimals_read_as_plain_decimal_text() {
        let read = |v| from_sqlite(DataType::Decimal, v).unwrap();
        assert_eq!(read(SqlValue::Real(1.5)), Value::Decimal("1.5".into()));
        assert_eq!(read(SqlValue::Real(0.1)), Value::Decimal("0.1".into()));
        assert_eq!(read(SqlValue::Real(-0.0)), Value::Decimal("0".into()));
        assert_eq!(
            read(SqlValue::Real(1e20)),
            Value::Decimal("100000000000000000000".into())
        );
        assert_eq!(
            read(SqlValue::Real(1.5e-7)),
            Value::Decimal("0.00000015".into())
        );
        assert_eq!(read(SqlValue::Integer(-7)), Value::Decimal("-7".into()));
        assert_eq!(
            read(SqlValue::Text("1.50".into())),
            Value::Decimal("1.50".into())
        );
        assert!(from_sqlite(DataType::Decimal, SqlValue::Real(f64::INFINITY)).is_err());
    }

    #[test]
    fn decimals_are_written_only_when_kept_exactly() {
        let write = |d: &str| to_sqlite(DataType::Decimal, &Value::Decimal(d.into()));
        assert_eq!(write("12").unwrap(), SqlValue::Integer(12));
        assert_eq!(write("-3.000").unwrap(), SqlValue::Integer(-3));
        assert_eq!(
            write("9223372036854775807").unwrap(),
            SqlValue::Integer(i64::MAX)
        );
        assert_eq!(write("1.50").unwrap(), SqlValue::Real(1.5));
        assert_eq!(
            write("-1234567890.12345").unwrap(),
            SqlValue::Real(-1_234_567_890.123_45)
        );
        assert_eq!(write("0.000001").unwrap(), SqlValue::Real(0.000_001));
        assert!(write("1234567890.123456").is_err());
        assert!(write("92233720368547758070").is_err());
        assert!(write("NaN").is_err());
        assert!(to_sqlite(DataType::Decimal, &Value::Text("1.2.3".into())).is_err());
        assert_eq!(
            to_sqlite(DataType::Decimal, &Value::Text("2.5".into())).unwrap(),
            SqlValue::Real(2.5)
        );
    }

    #[test]
    fn writes_follow_the_target_column_type() {
        let write = |ty, v: Value| to_sqlite(ty, &v).unwrap();
        assert_eq!(
            write(DataType::Bool, Value::Bool(true)),
            SqlValue::Integer(1)
        );
        assert_eq!(
            write(DataType::Int, Value::Text("42".into())),
            SqlValue::Integer(42)
        );
        assert_eq!(
            write(
                DataType::Timestamp,
                Value::Timestamp(at(2024, 1, 2, 3, 4, 5, 0))
            ),
            SqlValue::Text("2024-01-02 03:04:05".into())
        );
        assert_eq!(
            write(
                DataType::TimestampTz,
                Value::TimestampTz(at(2024, 1, 2, 3, 4, 5, 120).and_utc())
            ),
            SqlValue::Text("2024-01-02 03:04:05.000120+00:00".into())
        );
        assert_eq!(
            write(
                DataType::TimestampTz,
                Value::Text("2024-01-02T05:04:05+02:00".into())
            ),
            SqlValue::Text("2024-01-02 03:04:05+00:00".into())
        );
        assert_eq!(
            write(
                DataType::Time,
                Value::Time(NaiveTime::from_hms_micro_opt(1, 2, 3, 500_000).unwrap())
            ),
            SqlValue::Text("01:02:03.500000".into())
        );
        let u = uuid::Uuid::from_u128(1);
        assert_eq!(
            write(DataType::Uuid, Value::Uuid(u)),
            SqlValue::Text(u.hyphenated().to_string())
        );
        assert_eq!(
            write(DataType::Bytes, Value::Uuid(u)),
            SqlValue::Blob(u.as_bytes().to_vec())
        );
        assert_eq!(
            write(DataType::Json, Value::Json(serde_json::json!({"a": 1}))),
            SqlValue::Text("{\"a\":1}".into())
        );
        assert!(to_sqlite(DataType::Float, &Value::Float(f64::NAN)).is_err());
        assert!(to_sqlite(DataType::Int, &Value::Text("x".into())).is_err());
        assert!(to_sqlite(DataType::Int, &Value::Float(1.5)).is_err());
        assert!(to_sqlite(DataType::Bool, &Value::Int(2)).is_err());
        assert!(to_sqlite(DataType::Json, &Value::Text("{".into())).is_err());
        assert!(to_sqlite(DataType::Date, &Value::Bytes(vec![1])).is_err());
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap();
        assert!(to_sqlite(DataType::Date, &Value::Date(far)).is_err());
    }

    #[test]
    fn write_errors_name_table_column_and_value() {
        let column = Column::new("qty", DataType::Int, "INTEGER");
        let err = write_value(
            &TableName::new(None, "orders"),
            &column,
            &Value::Text("many".into()),
        )
        .unwrap_err();
        let message = err.to_string();
        assert_eq!(err.kind(), crate::ErrorKind::Data);
        assert!(
            message.contains("`qty`") && message.contains("`orders`") && message.contains("many"),
            "{message}"
        );
    }

    #[test]
    fn keys_match_the_forms_applications_store() {
        let stamp = Value::Timestamp(at(2024, 1, 2, 3, 4, 5, 250_000));
        let forms = key_forms(DataType::Timestamp, &stamp).unwrap();
        assert_eq!(
            forms[0],
            SqlValue::Text("2024-01-02 03:04:05.250000".into())
        );
        for form in [
            "2024-01-02T03:04:05.250Z",
            "2024-01-02 03:04:05.25",
            "2024-01-02T03:04:05.250000",
        ] {
            assert!(forms.contains(&SqlValue::Text(form.into())), "{form}");
        }
        let whole = Value::TimestampTz(at(2024, 1, 2, 3, 4, 0, 0).and_utc());
        let forms = key_forms(DataType::TimestampTz, &whole).unwrap();
        assert_eq!(forms[0], SqlValue::Text("2024-01-02 03:04:00+00:00".into()));
        assert!(forms.contains(&SqlValue::Text("2024-01-02T03:04Z".into())));
        assert!(forms.contains(&SqlValue::Integer(1_704_164_640)));
        let u = uuid::Uuid::from_u128(0xabc);
        let forms = key_forms(DataType::Uuid, &Value::Uuid(u)).unwrap();
        assert_eq!(forms.len(), 5);
        assert!(forms.contains(&SqlValue::Text(u.simple().to_string())));
        assert!(forms.contains(&SqlValue::Blob(u.as_bytes().to_vec())));
        let forms = key_forms(DataType::Bytes, &Value::Bytes(b"42".to_vec())).unwrap();
        assert_eq!(
            forms,
            vec![
                SqlValue::Blob(b"42".to_vec()),
                SqlValue::Text("42".into()),
                SqlValue::Integer(42)
            ]
        );
        assert_eq!(
            key_forms(DataType::Int, &Value::Int(7)).unwrap(),
            vec![SqlValue::Integer(7)]
        );
        assert_eq!(
            key_forms(DataType::Int, &Value::Null).unwrap(),
            vec![SqlValue::Null]
        );
    }
}
