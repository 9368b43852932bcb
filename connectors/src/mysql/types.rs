//! MySQL types: catalog type -> [`DataType`], and values between
//! `mysql_async::Value` (binary protocol) and the canonical [`Value`].

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use mysql_async::Value as MyValue;

use crate::error::{ConnectorError, Result};
use crate::schema::{Column, DataType, TableName};
use crate::value::Value;

/// The canonical type of a column, from `information_schema.COLUMNS.DATA_TYPE`
/// (`json_checked`: a MariaDB JSON column, LONGTEXT with `json_valid`).
pub fn data_type_of(native: &str, json_checked: bool) -> DataType {
    match native.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            DataType::Int
        }
        "decimal" | "numeric" => DataType::Decimal,
        "float" | "double" | "real" => DataType::Float,
        "longtext" | "text" | "mediumtext" | "tinytext" if json_checked => DataType::Json,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            DataType::Text
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit" => {
            DataType::Bytes
        }
        "date" => DataType::Date,
        "time" => DataType::Time,
        "datetime" => DataType::Timestamp,
        "timestamp" => DataType::TimestampTz,
        "json" => DataType::Json,
        "uuid" => DataType::Uuid,
        _ => DataType::Other,
    }
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

/// Reads a value of `column` of `table` as the server sent it.
pub fn read_value(table: &TableName, column: &Column, value: MyValue) -> Result<Value> {
    from_mysql(column.data_type, value).map_err(|reason| {
        ConnectorError::data(format!(
            "cannot read column `{}` of table `{table}` ({}): {reason}",
            column.name, column.native_type
        ))
    })
}

/// Converts a value to the canonical form of `ty`; the error says why not.
pub fn from_mysql(ty: DataType, value: MyValue) -> std::result::Result<Value, String> {
    Ok(match value {
        MyValue::NULL => Value::Null,
        MyValue::Bytes(bytes) => from_bytes(ty, bytes)?,
        MyValue::Int(i) => from_int(ty, i)?,
        MyValue::UInt(u) => match i64::try_from(u) {
            Ok(i) => from_int(ty, i)?,
            Err(_) => match ty {
                DataType::Int | DataType::Decimal => Value::Decimal(u.to_string()),
                DataType::Float => Value::Float(u as f64),
                DataType::Text | DataType::Other => Value::Text(u.to_string()),
                _ => return Err(format!("integer {u} is not a {}", ty.name())),
            },
        },
        MyValue::Float(f) => {
            // The f32's shortest decimal text, read as f64: 0.1f32 is 0.1.
            let text = f.to_string();
            match ty {
                DataType::Decimal => Value::Decimal(text),
                DataType::Text | DataType::Other => Value::Text(text),
                _ => Value::Float(text.parse().map_err(|_| format!("bad float {text}"))?),
            }
        }
        MyValue::Double(d) => match ty {
            DataType::Text | DataType::Other => Value::Text(Value::Float(d).to_string()),
            _ => Value::Float(d),
        },
        MyValue::Date(year, month, day, hour, minute, second, micro) => {
            let date = NaiveDate::from_ymd_opt(year.into(), month.into(), day.into())
                .ok_or_else(|| format!("{year:04}-{month:02}-{day:02} is not a calendar date"))?;
            let time =
                NaiveTime::from_hms_micro_opt(hour.into(), minute.into(), second.into(), micro)
                    .ok_or_else(|| {
                        format!("{hour:02}:{minute:02}:{second:02} is not a time of day")
                    })?;
            let at = date.and_time(time);
            match ty {
                DataType::Date => Value::Date(date),
                DataType::Timestamp => Value::Timestamp(at),
                // The session is in UTC, so the server sent UTC.
                DataType::TimestampTz => Value::TimestampTz(at.and_utc()),
                DataType::Text | DataType::Other => Value::Text(Value::Timestamp(at).to_string()),
                _ => return Err(format!("date {at} is not a {}", ty.name())),
            }
        }
        MyValue::Time(negative, days, hours, minutes, seconds, micros) => {
            let time = (!negative && days == 0)
                .then(|| {
                    NaiveTime::from_hms_micro_opt(
                        hours.into(),
                        minutes.into(),
                        seconds.into(),
                        micros,
                    )
                })
                .flatten();
            let text = format!(
                "{}{}:{minutes:02}:{seconds:02}.{micros:06}",
                if negative { "-" } else { "" },
                u64::from(days) * 24 + u64::from(hours)
            );
            match (ty, time) {
                (DataType::Time, Some(time)) => Value::Time(time),
                (DataType::Text | DataType::Other, _) => Value::Text(text),
                _ => return Err(format!("duration {text} is not a time of day")),
            }
        }
    })
}

fn from_int(ty: DataType, i: i64) -> std::result::Result<Value, String> {
    Ok(match ty {
        DataType::Int => Value::Int(i),
        DataType::Bool => Value::Bool(i != 0),
        DataType::Decimal => Value::Decimal(i.to_string()),
        DataType::Float => Value::Float(i as f64),
        DataType::Text | DataType::Other => Value::Text(i.to_string()),
        _ => return Err(format!("integer {i} is not a {}", ty.name())),
    })
}

fn from_bytes(ty: DataType, bytes: Vec<u8>) -> std::result::Result<Value, String> {
    let text = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| "the bytes are not valid UTF-8".to_owned())
    };
    Ok(match ty {
        DataType::Bytes => Value::Bytes(bytes),
        DataType::Text => Value::Text(text(bytes)?),
        DataType::Other => match String::from_utf8(bytes) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        DataType::Json => {
            Value::Json(serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON: {e}"))?)
        }
        DataType::Uuid if bytes.len() == 16 => {
            Value::Uuid(uuid::Uuid::from_slice(&bytes).map_err(|e| e.to_string())?)
        }
        DataType::Decimal => {
            let s = text(bytes)?;
            // The server sends its own canonical text; only check it.
            Value::parse_text(DataType::Decimal, &s).map_err(|e| e.to_string())?
        }
        _ => {
            let s = text(bytes)?;
            Value::parse_text(ty, s.trim()).map_err(|e| e.to_string())?
        }
    })
}

/// Converts a canonical value for writing into `column` of `table`.
pub fn write_value(table: &TableName, column: &Column, value: &Value) -> Result<MyValue> {
    to_mysql(column.data_type, value).map_err(|reason| {
        ConnectorError::data(format!(
            "cannot write {} value {} into column `{}` of table `{table}` ({}): {reason}",
            value.type_name(),
            shown(value),
            column.name,
            column.native_type
        ))
    })
}

fn text_bytes(text: String) -> MyValue {
    MyValue::Bytes(text.into_bytes())
}

fn date_value(at: NaiveDateTime) -> std::result::Result<MyValue, String> {
    let year = u16::try_from(at.year())
        .ok()
        .filter(|y| *y <= 9999)
        .ok_or_else(|| "the year is outside 0..9999".to_owned())?;
    let micro = at.nanosecond() / 1_000;
    if micro >= 1_000_000 {
        return Err("a leap second cannot be stored".to_owned());
    }
    Ok(MyValue::Date(
        year,
        at.month() as u8,
        at.day() as u8,
        at.hour() as u8,
        at.minute() as u8,
        at.second() as u8,
        micro,
    ))
}

fn time_value(time: NaiveTime) -> std::result::Result<MyValue, String> {
    let micro = time.nanosecond() / 1_000;
    if micro >= 1_000_000 {
        return Err("a leap second cannot be stored".to_owned());
    }
    Ok(MyValue::Time(
        false,
        0,
        time.hour() as u8,
        time.minute() as u8,
        time.second() as u8,
        micro,
    ))
}

/// Converts a canonical value to what a column of type `ty` takes; the
/// error says why it cannot.
pub fn to_mysql(ty: DataType, value: &Value) -> std::result::Result<MyValue, String> {
    let mismatch = || {
        Err(format!(
            "a {} does not fit a {} column",
            value.type_name(),
            ty.name()
        ))
    };
    let parsed = |text: &str| Value::parse_text(ty, text).map_err(|e| e.to_string());
    Ok(match (ty, value) {
        (_, Value::Null) => MyValue::NULL,
        (DataType::Int | DataType::Bool, Value::Int(i)) => MyValue::Int(*i),
        (DataType::Int | DataType::Bool | DataType::Decimal | DataType::Float, Value::Bool(b)) => {
            MyValue::Int(i64::from(*b))
        }
        (DataType::Int, Value::Decimal(d)) => {
            // Exact integers (unsigned 64-bit ones too) are passed as text;
            // the server refuses what does not fit.
            let digits = d.strip_prefix('-').unwrap_or(d);
            let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
            if whole.is_empty() || frac.bytes().any(|b| b != b'0') {
                return Err("it is not a whole number".to_owned());
            }
            text_bytes(d.clone())
        }
        (DataType::Int, Value::Float(f)) => {
            if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.007_199_254_740_992e15 {
                return Err("it is not a whole number".to_owned());
            }
            MyValue::Int(*f as i64)
        }
        (DataType::Int | DataType::Decimal | DataType::Float, Value::Text(s)) => {
            match parsed(s.trim())? {
                Value::Int(i) => MyValue::Int(i),
                Value::Float(f) if f.is_finite() => MyValue::Double(f),
                Value::Float(_) => return Err("MySQL cannot store NaN or infinity".to_owned()),
                other => text_bytes(other.to_string()),
            }
        }
        (DataType::Decimal, Value::Decimal(d)) => text_bytes(d.clone()),
        (DataType::Decimal, Value::Int(i)) => MyValue::Int(*i),
        (DataType::Decimal, Value::Float(f)) => {
            if !f.is_finite() {
                return Err("MySQL cannot store NaN or infinity".to_owned());
            }
            text_bytes(value.to_string())
        }
        (DataType::Float, Value::Float(f)) => {
            if !f.is_finite() {
                return Err("MySQL cannot store NaN or infinity".to_owned());
            }
            MyValue::Double(*f)
        }
        (DataType::Float, Value::Int(i)) => MyValue::Double(*i as f64),
        (DataType::Float, Value::Decimal(d)) => MyValue::Double(
            d.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| "it is not a finite number".to_owned())?,
        ),
        (DataType::Text, Value::Bytes(b)) => text_bytes(
            String::from_utf8(b.clone()).map_err(|_| "the bytes are not valid UTF-8".to_owned())?,
        ),
        (DataType::Text, Value::Float(f)) if !f.is_finite() => {
            return Err("MySQL cannot store NaN or infinity".to_owned())
        }
        (DataType::Text, other) => text_bytes(other.to_sql_text().unwrap_or_default()),
        (DataType::Bytes, Value::Bytes(b)) => MyValue::Bytes(b.clone()),
        (DataType::Bytes, Value::Text(s)) => MyValue::Bytes(s.as_bytes().to_vec()),
        (DataType::Bytes, Value::Uuid(u)) => MyValue::Bytes(u.as_bytes().to_vec()),
        (DataType::Date, Value::Date(d)) => date_value(d.and_time(NaiveTime::MIN))?,
        (DataType::Date, Value::Timestamp(t)) if t.time() == NaiveTime::MIN => date_value(*t)?,
        (DataType::Date, Value::TimestampTz(t)) if t.time() == NaiveTime::MIN => {
            date_value(t.naive_utc())?
        }
        (DataType::Time, Value::Time(t)) => time_value(*t)?,
        (DataType::Timestamp | DataType::TimestampTz, Value::Timestamp(t)) => date_value(*t)?,
        // The session is in UTC: the UTC wall time is the instant.
        (DataType::Timestamp | DataType::TimestampTz, Value::TimestampTz(t)) => {
            date_value(t.naive_utc())?
        }
        (DataType::Timestamp | DataType::TimestampTz, Value::Date(d)) => {
            date_value(d.and_time(NaiveTime::MIN))?
        }
        (
            DataType::Date | DataType::Time | DataType::Timestamp | DataType::TimestampTz,
            Value::Text(s),
        ) => return to_mysql(ty, &parsed(s.trim())?),
        (DataType::Json, Value::Json(j)) => text_bytes(j.to_string()),
        (DataType::Json, Value::Text(s)) => {
            serde_json::from_str::<serde_json::Value>(s)
                .map_err(|_| "the text is not a JSON document".to_owned())?;
            text_bytes(s.clone())
        }
        (DataType::Json, Value::Int(_) | Value::Decimal(_) | Value::Bool(_)) => {
            text_bytes(value.to_string())
        }
        (DataType::Json, Value::Float(f)) if f.is_finite() => text_bytes(value.to_string()),
        (DataType::Uuid, Value::Uuid(u)) => text_bytes(u.hyphenated().to_string()),
        (DataType::Uuid, Value::Text(s)) => match parsed(s.trim())? {
            Value::Uuid(u) => text_bytes(u.hyphenated().to_string()),
            _ => return mismatch(),
        },
        (DataType::Uuid, Value::Bytes(b)) if b.len() == 16 => text_bytes(
            uuid::Uuid::from_slice(b)
                .map_err(|e| e.to_string())?
                .hyphenated()
                .to_string(),
        ),
        (DataType::Other, Value::Bytes(b)) => MyValue::Bytes(b.clone()),
        (DataType::Other, other) => text_bytes(other.to_sql_text().unwrap_or_default()),
        _ => return mismatch(),
    })
}

/// A key as the server would give it back: each value converted for its
/// column and read again, so that keys taken from a row compare equal to
/// keys read from the table (`Text("5")` for an integer column becomes
/// `Int(5)`).
pub fn normalize(ty: DataType, value: &Value) -> std::result::Result<Value, String> {
    from_mysql(ty, to_mysql(ty, value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_map_to_canonical_types() {
        assert_eq!(data_type_of("bigint", false), DataType::Int);
        assert_eq!(data_type_of("year", false), DataType::Int);
        assert_eq!(data_type_of("longtext", true), DataType::Json);
        assert_eq!(data_type_of("longtext", false), DataType::Text);
        assert_eq!(data_type_of("enum", false), DataType::Text);
        assert_eq!(data_type_of("bit", false), DataType::Bytes);
        assert_eq!(data_type_of("timestamp", false), DataType::TimestampTz);
        assert_eq!(data_type_of("datetime", false), DataType::Timestamp);
        assert_eq!(data_type_of("uuid", false), DataType::Uuid);
        assert_eq!(data_type_of("geometry", false), DataType::Other);
    }

    #[test]
    fn reads_follow_the_column_type() {
        assert_eq!(
            from_mysql(DataType::Float, MyValue::Float(0.1)).unwrap(),
            Value::Float(0.1)
        );
        assert_eq!(
            from_mysql(DataType::Int, MyValue::UInt(u64::MAX)).unwrap(),
            Value::Decimal("18446744073709551615".into())
        );
        assert_eq!(
            from_mysql(DataType::Int, MyValue::UInt(7)).unwrap(),
            Value::Int(7)
        );
        assert_eq!(
            from_mysql(DataType::Decimal, MyValue::Bytes(b"-1.50".to_vec())).unwrap(),
            Value::Decimal("-1.50".into())
        );
        assert_eq!(
            from_mysql(DataType::Time, MyValue::Time(false, 0, 23, 59, 58, 7)).unwrap(),
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 58, 7).unwrap())
        );
        assert!(from_mysql(DataType::Time, MyValue::Time(false, 1, 1, 0, 0, 0)).is_err());
        assert!(from_mysql(DataType::Time, MyValue::Time(true, 0, 1, 0, 0, 0)).is_err());
        assert!(from_mysql(DataType::Date, MyValue::Date(0, 0, 0, 0, 0, 0, 0)).is_err());
        assert_eq!(
            from_mysql(DataType::Json, MyValue::Bytes(br#"{"a":[1]}"#.to_vec())).unwrap(),
            Value::Json(serde_json::json!({"a": [1]}))
        );
    }

    #[test]
    fn writes_follow_the_target_column_type() {
        assert_eq!(
            to_mysql(DataType::Int, &Value::Bool(true)).unwrap(),
            MyValue::Int(1)
        );
        assert_eq!(
            to_mysql(DataType::Decimal, &Value::Decimal("1.20".into())).unwrap(),
            MyValue::Bytes(b"1.20".to_vec())
        );
        assert_eq!(
            to_mysql(DataType::Text, &Value::Text("é".into())).unwrap(),
            MyValue::Bytes("é".as_bytes().to_vec())
        );
        let u = uuid::Uuid::from_u128(1);
        assert_eq!(
            to_mysql(DataType::Bytes, &Value::Uuid(u)).unwrap(),
            MyValue::Bytes(u.as_bytes().to_vec())
        );
        assert_eq!(
            to_mysql(DataType::Uuid, &Value::Uuid(u)).unwrap(),
            MyValue::Bytes(u.hyphenated().to_string().into_bytes())
        );
        let at = NaiveDate::from_ymd_opt(2024, 5, 1)
            .unwrap()
            .and_hms_micro_opt(13, 45, 0, 5)
            .unwrap();
        assert_eq!(
            to_mysql(DataType::TimestampTz, &Value::TimestampTz(at.and_utc())).unwrap(),
            MyValue::Date(2024, 5, 1, 13, 45, 0, 5)
        );
        assert!(to_mysql(DataType::Int, &Value::Text("x".into())).is_err());
        assert!(to_mysql(DataType::Int, &Value::Decimal("1.5".into())).is_err());
        assert!(to_mysql(DataType::Float, &Value::Float(f64::NAN)).is_err());
        assert!(to_mysql(DataType::Json, &Value::Text("{".into())).is_err());
        assert!(to_mysql(DataType::Date, &Value::Bytes(vec![1])).is_err());
    }

    #[test]
    fn write_errors_name_table_column_and_value() {
        let column = Column::new("qty", DataType::Int, "int");
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
    fn keys_normalize_to_what_the_server_returns() {
        assert_eq!(
            normalize(DataType::Int, &Value::Text("5".into())).unwrap(),
            Value::Int(5)
        );
        assert_eq!(
            normalize(
                DataType::Int,
                &Value::Decimal("18446744073709551615".into())
            )
            .unwrap(),
            Value::Decimal("18446744073709551615".into())
        );
        assert_eq!(
            normalize(DataType::Text, &Value::Int(5)).unwrap(),
            Value::Text("5".into())
        );
    }
}
