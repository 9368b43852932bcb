//! The canonical value every engine converts to and from.
//!
//! Values travel between engines in this one form, so each connector only
//! knows its own engine's types. Conversions are lossless where both engines
//! can hold the value: decimals stay exact (kept as their decimal text),
//! timestamps keep microseconds, and a timestamp with a time zone is kept in
//! UTC.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ConnectorError, Result};
use crate::schema::DataType;

mod iso;

/// One value of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer of any width up to 64 bits signed.
    Int(i64),
    /// An exact decimal, as its canonical decimal text (`-12.3400`); also
    /// integers beyond 64 bits.
    Decimal(String),
    /// A binary floating-point number.
    #[serde(with = "stored_float")]
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A calendar date.
    Date(NaiveDate),
    /// A time of day, to the microsecond.
    Time(NaiveTime),
    /// A timestamp without time zone.
    Timestamp(NaiveDateTime),
    /// An instant, kept in UTC.
    TimestampTz(DateTime<Utc>),
    /// A JSON document.
    Json(serde_json::Value),
    /// A UUID.
    Uuid(uuid::Uuid),
}

impl Value {
    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short name of the variant, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "integer",
            Value::Decimal(_) => "decimal",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Json(_) => "json",
            Value::Uuid(_) => "uuid",
        }
    }

    /// The value as text in the ISO/SQL literal form both engines parse
    /// (`2024-05-01 13:45:00.5`, `\x0aff` for bytes, `+00` for UTC).
    /// Returns `None` for NULL.
    pub fn to_sql_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Text(s) | Value::Decimal(s) => Some(s.clone()),
            other => {
                let mut text = String::new();
                other
                    .write_sql_text(&mut text)
                    .expect("a String takes any text");
                Some(text)
            }
        }
    }

    /// Writes [`Value::to_sql_text`] to `out` (nothing for NULL).
    pub fn write_sql_text(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
            Value::Int(i) => write!(out, "{i}"),
            Value::Decimal(d) => out.write_str(d),
            Value::Float(f) => out.write_str(&format_float(*f)),
            Value::Text(s) => out.write_str(s),
            Value::Bytes(b) => {
                out.write_str("\\x")?;
                out.write_str(&hex::encode(b))
            }
            Value::Date(d) => {
                iso::write_date(out, *d).unwrap_or_else(|| write!(out, "{}", d.format("%Y-%m-%d")))
            }
            Value::Time(t) => iso::write_time(out, *t)
                .unwrap_or_else(|| write!(out, "{}", t.format("%H:%M:%S%.f"))),
            Value::Timestamp(t) => iso::write_timestamp(out, *t)
                .unwrap_or_else(|| write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S%.f"))),
            Value::TimestampTz(t) => {
                iso::write_timestamp(out, t.naive_utc()).unwrap_or_else(|| {
                    write!(out, "{}", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.f"))
                })?;
                out.write_str("+00")
            }
            Value::Json(j) => write!(out, "{j}"),
            Value::Uuid(u) => write!(out, "{}", u.hyphenated()),
        }
    }

    /// Parses `text` as a value of `data_type`, accepting the forms the
    /// engines print (ISO dates with a space or a `T`, optional zone offsets,
    /// `\x` hex for bytes). Used for keys and for engines that hand us text.
    pub fn parse_text(data_type: DataType, text: &str) -> Result<Value> {
        let bad = || {
            ConnectorError::data(format!(
                "value {text:?} cannot be read as {}",
                data_type.name()
            ))
        };
        Ok(match data_type {
            DataType::Bool => match text.to_ascii_lowercase().as_str() {
                "t" | "true" | "1" | "y" | "yes" | "on" => Value::Bool(true),
                "f" | "false" | "0" | "n" | "no" | "off" => Value::Bool(false),
                _ => return Err(bad()),
            },
            DataType::Int => match text.parse::<i64>() {
                Ok(i) => Value::Int(i),
                // Unsigned 64-bit values beyond i64 stay exact as decimals.
                Err(_) if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() => {
                    Value::Decimal(text.to_owned())
                }
                Err(_) => return Err(bad()),
            },
            DataType::Decimal => {
                if !is_decimal_text(text) {
                    return Err(bad());
                }
                Value::Decimal(text.to_owned())
            }
            DataType::Float => Value::Float(parse_float(text).ok_or_else(bad)?),
            DataType::Text | DataType::Other => Value::Text(text.to_owned()),
            DataType::Bytes => {
                let hex_digits = text.strip_prefix("\\x").ok_or_else(bad)?;
                Value::Bytes(hex::decode(hex_digits).map_err(|_| bad())?)
            }
            DataType::Date => Value::Date(parse_date(text).ok_or_else(bad)?),
            DataType::Time => Value::Time(parse_time(text).ok_or_else(bad)?),
            DataType::Timestamp => Value::Timestamp(parse_timestamp(text).ok_or_else(bad)?),
            DataType::TimestampTz => Value::TimestampTz(parse_timestamptz(text).ok_or_else(bad)?),
            DataType::Json => Value::Json(serde_json::from_str(text).map_err(|_| bad())?),
            DataType::Uuid => Value::Uuid(uuid::Uuid::parse_str(text).map_err(|_| bad())?),
        })
    }

    /// Converts one element of a key as the capture triggers recorded it
    /// (a JSON array element) into a value of `data_type`.
    pub fn from_key_json(data_type: DataType, json: &serde_json::Value) -> Result<Value> {
        match json {
            serde_json::Value::Null => Ok(Value::Null),
            serde_json::Value::String(s) => Value::parse_text(data_type, s),
            serde_json::Value::Bool(b) => Ok(Value::Bool(*b)),
            other => Value::parse_text(data_type, &other.to_string()),
        }
    }

    /// Appends what [`Fingerprint::of`] hashes of this value.
    fn fingerprint_bytes(&self, out: &mut Vec<u8>) {
        // A tag byte per variant keeps `Int(1)` and `Text("1")` apart.
        match self {
            Value::Null => out.push(0),
            Value::Bool(b) => out.extend_from_slice(&[1, *b as u8]),
            Value::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(3);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Bytes(b) => {
                out.push(4);
                out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                out.extend_from_slice(b);
            }
            other => {
                let name = other.type_name();
                out.extend_from_slice(&[5, name.len() as u8]);
                out.extend_from_slice(name.as_bytes());
                // The text's length goes first: written once the text is.
                let length_at = out.len();
                out.extend_from_slice(&[0; 8]);
                other
                    .write_sql_text(&mut ByteText(out))
                    .expect("a Vec takes any text");
                let length = (out.len() - length_at - 8) as u64;
                out[length_at..length_at + 8].copy_from_slice(&length.to_le_bytes());
            }
        }
    }
}

/// Text written into a byte buffer.
struct ByteText<'a>(&'a mut Vec<u8>);

impl fmt::Write for ByteText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_sql_text() {
            None => f.write_str("NULL"),
            Some(text) => f.write_str(&text),
        }
    }
}

/// How a float is stored (keys, dead letters, state): a JSON number when it
/// is finite, its text otherwise, as JSON has no NaN or infinity and would
/// write `null`, which reads back as nothing.
mod stored_float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(f: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if f.is_finite() {
            serializer.serialize_f64(*f)
        } else {
            serializer.serialize_str(&super::format_float(*f))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Number(f64),
            Text(String),
        }
        match Stored::deserialize(deserializer)? {
            Stored::Number(f) => Ok(f),
            Stored::Text(text) => super::parse_float(&text)
                .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a number"))),
        }
    }
}

/// Formats a float so that parsing it back gives the same bits.
fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        // Rust prints the shortest text that round-trips.
        format!("{f:?}")
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn is_decimal_text(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next().unwrap_or("");
    (!whole.is_empty() || !frac.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        || matches!(text, "NaN")
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    iso::parse_date(text.as_bytes()).or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    iso::parse_time(text.as_bytes()).or_else(|| NaiveTime::parse_from_str(text, "%H:%M:%S%.f").ok())
}

fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    iso::parse_timestamp(text.as_bytes()).or_else(|| {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
            .ok()
    })
}

fn parse_timestamptz(text: &str) -> Option<DateTime<Utc>> {
    // What PostgreSQL prints for a session in UTC, and what we write.
    if let Some(t) = text
        .strip_suffix("+00")
        .and_then(|naive| iso::parse_timestamp(naive.as_bytes()))
    {
        return Some(t.and_utc());
    }
    // PostgreSQL prints `+00` (hours only); RFC 3339 wants `+00:00`.
    let normalized;
    let text = match text.rfind(['+', '-']) {
        Some(pos) if pos > 10 && text.len() - pos == 3 => {
            normalized = format!("{text}:00");
            normalized.as_str()
        }
        _ => text,
    };
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    if let Some(stripped) = text.strip_suffix('Z') {
        return parse_timestamp(stripped).map(|t| t.and_utc());
    }
    // A zone-less text for a zoned column is taken as UTC.
    parse_timestamp(text).map(|t| t.and_utc())
}

/// The values of a record's primary-key columns, in key-column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key(pub Vec<Value>);

impl Key {
    /// The stable text form used in the ID map (sled and the mapping tables).
    pub fn encode(&self) -> String {
        // The most common key, one integer, written directly: the same text
        // serde writes, without its machinery (keys are encoded for every
        // link written and looked up).
        if let [Value::Int(i)] = self.0.as_slice() {
            return format!("[{{\"Int\":{i}}}]");
        }
        serde_json::to_string(&self.0).expect("values always serialize")
    }

    /// Reads a key written by [`Key::encode`].
    pub fn decode(text: &str) -> Result<Key> {
        let int = text
            .strip_prefix("[{\"Int\":")
            .and_then(|rest| rest.strip_suffix("}]"))
            .filter(|digits| !digits.starts_with('+'))
            .and_then(|digits| digits.parse::<i64>().ok());
        if let Some(i) = int {
            return Ok(Key(vec![Value::Int(i)]));
        }
        serde_json::from_str(text).map(Key).map_err(|e| {
            ConnectorError::internal(format!("stored key {text:?} is unreadable: {e}"))
        })
    }

    /// Reads a key as a capture trigger recorded it: a JSON array of the key
    /// columns' values, converted by the columns' types.
    pub fn from_captured(types: &[DataType], json: &serde_json::Value) -> Result<Key> {
        let items = json
            .as_array()
            .filter(|items| items.len() == types.len())
            .ok_or_else(|| {
                ConnectorError::internal(format!(
                    "captured key {json} does not have {} element(s)",
                    types.len()
                ))
            })?;
        items
            .iter()
            .zip(types)
            .map(|(item, ty)| Value::from_key_json(*ty, item))
            .collect::<Result<Vec<_>>>()
            .map(Key)
    }

    /// Whether any element is NULL (such a key links nothing).
    pub fn has_null(&self) -> bool {
        self.0.iter().any(Value::is_null)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [single] = self.0.as_slice() {
            return write!(f, "{single}");
        }
        f.write_str("(")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str(")")
    }
}

/// A record: column name to value. Ordered, so that fingerprints and
/// debugging output are stable.
pub type Row = BTreeMap<String, Value>;

/// A short, stable digest of a row as one side stores it: lets the agent
/// tell "this record changed since it was last synced" without keeping a
/// copy of every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// Digest of `row`.
    pub fn of(row: &Row) -> Fingerprint {
        // Hashed in one piece: blake3 takes many small updates slowly, and
        // the digest is the same.
        let mut bytes = Vec::with_capacity(512);
        for (name, value) in row {
            bytes.extend_from_slice(&(name.len() as u64).to_le_bytes());
            bytes.extend_from_slice(name.as_bytes());
            value.fingerprint_bytes(&mut bytes);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::hash(&bytes).as_bytes()[..16]);
        Fingerprint(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_encode_as_serde_would_and_read_back() {
        for i in [0, 7, -1, 1_234_567, i64::MIN, i64::MAX] {
            let key = Key(vec![Value::Int(i)]);
            let text = key.encode();
            assert_eq!(text, serde_json::to_string(&key.0).unwrap());
            assert_eq!(Key::decode(&text).unwrap(), key);
        }
        let two = Key(vec![Value::Int(1), Value::Text("a".into())]);
        assert_eq!(Key::decode(&two.encode()).unwrap(), two);
        // Not JSON: refused, as serde refuses it.
        assert!(Key::decode("[{\"Int\":+5}]").is_err());
    }

    /// Links store fingerprints: the digest of a row must not change from
    /// one release to the next, or every record would look changed after an
    /// upgrade. The digest below is what the first releases computed.
    #[test]
    fn fingerprints_stay_what_earlier_releases_stored() {
        let at = NaiveDate::from_ymd_opt(2026, 11, 26)
            .unwrap()
            .and_hms_micro_opt(14, 5, 9, 123_456)
            .unwrap();
        let row: Row = [
            ("b", Value::Bool(true)),
            ("i", Value::Int(-42)),
            ("d", Value::Decimal("-12.3400".into())),
            ("f", Value::Float(2.5)),
            ("t", Value::Text("ü 'x'".into())),
            ("y", Value::Bytes(vec![0, 10, 255])),
            ("da", Value::Date(at.date())),
            ("ti", Value::Time(at.time())),
            ("ts", Value::Timestamp(at)),
            ("tz", Value::TimestampTz(at.and_utc())),
            ("j", Value::Json(serde_json::json!({"a": [1, "b"]}))),
            (
                "u",
                Value::Uuid(uuid::Uuid::from_u128(
                    0x1234_5678_9abc_def0_1234_5678_9abc_def0,
                )),
            ),
            ("n", Value::Null),
            (
                "ms",
                Value::Time(NaiveTime::from_hms_milli_opt(1, 2, 3, 40).unwrap()),
            ),
            (
                "z",
                Value::Timestamp(at.date().and_hms_opt(0, 0, 0).unwrap()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            hex::encode(Fingerprint::of(&row).0),
            "da1faf8b75aa7b30c0875d93063b3a63"
        );
    }

    #[test]
    fn text_round_trips_for_every_type() {
        let samples = [
            (DataType::Bool, Value::Bool(true)),
            (DataType::Int, Value::Int(-9_223_372_036_854_775_808)),
            (
                DataType::Decimal,
                Value::Decimal("-12345678901234567890.000123".into()),
            ),
            (DataType::Float, Value::Float(0.1)),
            (DataType::Float, Value::Float(-1.5e300)),
            (DataType::Text, Value::Text("Grüße 🎉 'q'".into())),
            (DataType::Bytes, Value::Bytes(vec![0, 255, 10])),
            (
                DataType::Date,
                Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
            ),
            (
                DataType::Time,
                Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 1, 5).unwrap()),
            ),
            (
                DataType::Timestamp,
                Value::Timestamp(
                    NaiveDate::from_ymd_opt(1999, 12, 31)
                        .unwrap()
                        .and_hms_micro_opt(1, 2, 3, 456_789)
                        .unwrap(),
                ),
            ),
            (
                DataType::TimestampTz,
                Value::TimestampTz(
                    NaiveDate::from_ymd_opt(2030, 1, 1)
                        .unwrap()
                        .and_hms_opt(0, 0, 0)
                        .unwrap()
                        .and_utc(),
                ),
            ),
            (
                DataType::Json,
                Value::Json(serde_json::json!({"a": [1, "b"]})),
            ),
            (DataType::Uuid, Value::Uuid(uuid::Uuid::from_u128(42))),
        ];
        for (ty, value) in samples {
            let text = value.to_sql_text().unwrap();
            assert_eq!(Value::parse_text(ty, &text).unwrap(), value, "{text}");
        }
    }

    #[test]
    fn timestamptz_accepts_engine_forms() {
        let expected = Value::parse_text(DataType::TimestampTz, "2024-01-02 03:04:05+00").unwrap();
        for text in [
            "2024-01-02T03:04:05+00:00",
            "2024-01-02 05:04:05+02",
            "2024-01-02T03:04:05Z",
            "2024-01-02 03:04:05",
        ] {
            assert_eq!(
                Value::parse_text(DataType::TimestampTz, text).unwrap(),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn bad_text_names_the_value() {
        let err = Value::parse_text(DataType::Int, "12x").unwrap_err();
        assert!(err.to_string().contains("\"12x\""), "{err}");
        assert!(Value::parse_text(DataType::Decimal, "1.2.3").is_err());
    }

    #[test]
    fn fingerprint_tells_types_apart() {
        let a: Row = [("id".to_owned(), Value::Int(1))].into();
        let b: Row = [("id".to_owned(), Value::Text("1".into()))].into();
        assert_ne!(Fingerprint::of(&a), Fingerprint::of(&b));
        assert_eq!(Fingerprint::of(&a), Fingerprint::of(&a.clone()));
    }

    #[test]
    fn keys_round_trip_and_decode_captured_json() {
        let key = Key(vec![Value::Int(7), Value::Text("x".into())]);
        assert_eq!(Key::decode(&key.encode()).unwrap(), key);
        let captured = serde_json::json!([7, "x"]);
        assert_eq!(
            Key::from_captured(&[DataType::Int, DataType::Text], &captured).unwrap(),
            key
        );
    }
}
