//! SQL Server types: catalog type -> [`DataType`] and native type, and values
//! between tiberius' [`ColumnData`] and the canonical [`Value`].
//!
//! Values are bound as parameters of the type the target column takes
//! (`tinyint` as `tinyint`, `datetime` as `datetime`, ...), so comparisons
//! with key columns need no conversion of the column. Two kinds travel as
//! text and are cast in SQL (see [`param_expr`]): decimals, which stay exact
//! that way (`CAST(@P1 AS decimal(38, 2))`), and the types Tandem does not
//! know (`xml`, `sql_variant`, CLR types), which SQL Server parses. Reading
//! is the reverse; `money` is read through `decimal(19, 4)` because the
//! driver hands money out as a float, and unknown types as `nvarchar(max)`.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use tiberius::{ColumnData, FromSql, IntoSql};

use super::client::Param;
use crate::error::{ConnectorError, Result};
use crate::schema::{Column, DataType, TableName, TableSchema};
use crate::value::{Key, Row, Value};

/// The canonical category of a column, from the name of its system type
/// (alias types already resolved to their base type).
pub(crate) fn data_type_of(base: &str) -> DataType {
    match base.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "int" | "bigint" => DataType::Int,
        "bit" => DataType::Bool,
        "decimal" | "numeric" | "money" | "smallmoney" => DataType::Decimal,
        "float" | "real" => DataType::Float,
        "char" | "varchar" | "nchar" | "nvarchar" | "text" | "ntext" => DataType::Text,
        // `timestamp` is `rowversion`: eight bytes the server writes.
        "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => DataType::Bytes,
        "date" => DataType::Date,
        "time" => DataType::Time,
        "datetime" | "datetime2" | "smalldatetime" => DataType::Timestamp,
        "datetimeoffset" => DataType::TimestampTz,
        "uniqueidentifier" => DataType::Uuid,
        _ => DataType::Other,
    }
}

/// The type a value of the column is cast to or declared as (a table
/// variable column, a `CAST` target): the base type with the widest length
/// where a length matters, the column's scale for decimals.
pub(crate) fn native_type_of(base: &str, scale: u8) -> String {
    let base = base.to_ascii_lowercase();
    match base.as_str() {
        "decimal" | "numeric" => format!("decimal(38, {scale})"),
        "char" | "varchar" | "text" => "varchar(max)".to_owned(),
        "nchar" | "nvarchar" | "ntext" => "nvarchar(max)".to_owned(),
        "binary" | "varbinary" | "image" => "varbinary(max)".to_owned(),
        "timestamp" | "rowversion" => "binary(8)".to_owned(),
        "datetime2" => "datetime2(7)".to_owned(),
        "time" => "time(7)".to_owned(),
        "datetimeoffset" => "datetimeoffset(7)".to_owned(),
        _ => base,
    }
}

/// Whether values of the column travel as text cast in SQL.
fn cast_in_sql(column: &Column) -> bool {
    matches!(column.data_type, DataType::Decimal | DataType::Other)
}

/// The expression that puts parameter `@Pn` into `column`: the parameter
/// itself, or `CAST(@Pn AS <native type>)` for decimals and unknown types.
pub(crate) fn param_expr(n: usize, column: &Column) -> String {
    if cast_in_sql(column) {
        format!("CAST(@P{n} AS {})", column.native_type)
    } else {
        format!("@P{n}")
    }
}

/// The expression that reads `reference` (a column of `column`'s type) in a
/// form [`from_sql`] converts exactly.
pub(crate) fn read_expr(column: &Column, reference: &str) -> String {
    match column.native_type.as_str() {
        "money" => format!("CAST({reference} AS decimal(19, 4))"),
        "smallmoney" => format!("CAST({reference} AS decimal(10, 4))"),
        _ if column.data_type == DataType::Other => {
            format!("CONVERT(nvarchar(max), {reference})")
        }
        _ => reference.to_owned(),
    }
}

/// A value for messages: its text form, cut short.
pub(crate) fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(60).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Reads a value of `column` of `table` as the server sent it.
pub(crate) fn read_value(
    table: &TableName,
    column: &Column,
    data: ColumnData<'static>,
) -> Result<Value> {
    from_sql(column.data_type, data).map_err(|reason| {
        ConnectorError::data(format!(
            "cannot read column `{}` of table `{table}` ({}): {reason}",
            column.name, column.native_type
        ))
    })
}

/// A result row holding `columns` in order, converted to canonical values.
pub(crate) fn read_values<'c>(
    table: &TableName,
    columns: impl IntoIterator<Item = &'c Column>,
    row: tiberius::Row,
) -> Result<Vec<Value>> {
    let mut cells = row.into_iter();
    columns
        .into_iter()
        .map(|column| {
            let data = cells.next().ok_or_else(|| {
                ConnectorError::internal(format!(
                    "a row of table {table} lacks column `{}`",
                    column.name
                ))
            })?;
            read_value(table, column, data)
        })
        .collect()
}

/// A result row selected with every column of `table`, as a canonical row.
pub(crate) fn read_row(table: &TableSchema, row: tiberius::Row) -> Result<Row> {
    let values = read_values(&table.name, &table.columns, row)?;
    Ok(table
        .columns
        .iter()
        .map(|c| c.name.clone())
        .zip(values)
        .collect())
}

/// Canonical decimal text of `value / 10^scale`: `-12.340`, `0.05`, `7`.
pub(crate) fn numeric_text(value: i128, scale: u8) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
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

fn from_float(ty: DataType, f: f64) -> std::result::Result<Value, String> {
    Ok(match ty {
        DataType::Float => Value::Float(f),
        DataType::Decimal => Value::Decimal(f.to_string()),
        DataType::Text | DataType::Other => Value::Text(Value::Float(f).to_string()),
        _ => return Err(format!("float {f} is not a {}", ty.name())),
    })
}

fn from_text(ty: DataType, text: String) -> std::result::Result<Value, String> {
    Ok(match ty {
        DataType::Text | DataType::Other => Value::Text(text),
        DataType::Json => {
            Value::Json(serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?)
        }
        _ => Value::parse_text(ty, text.trim()).map_err(|e| e.to_string())?,
    })
}

fn from_timestamp(ty: DataType, at: NaiveDateTime) -> std::result::Result<Value, String> {
    Ok(match ty {
        DataType::Timestamp => Value::Timestamp(at),
        DataType::TimestampTz => Value::TimestampTz(at.and_utc()),
        DataType::Date if at.time() == NaiveTime::MIN => Value::Date(at.date()),
        DataType::Text | DataType::Other => Value::Text(Value::Timestamp(at).to_string()),
        _ => return Err(format!("timestamp {at} is not a {}", ty.name())),
    })
}

/// Converts what the server sent to the canonical form of `ty`; the error
/// says why not.
pub(crate) fn from_sql(
    ty: DataType,
    data: ColumnData<'static>,
) -> std::result::Result<Value, String> {
    let chrono_error = |e: tiberius::error::Error| e.to_string();
    Ok(match &data {
        ColumnData::U8(Some(v)) => from_int(ty, i64::from(*v))?,
        ColumnData::I16(Some(v)) => from_int(ty, i64::from(*v))?,
        ColumnData::I32(Some(v)) => from_int(ty, i64::from(*v))?,
        ColumnData::I64(Some(v)) => from_int(ty, *v)?,
        // The f32's shortest decimal text, read as f64: 0.1f32 is 0.1.
        ColumnData::F32(Some(f)) => from_float(
            ty,
            f.to_string()
                .parse()
                .map_err(|_| format!("bad float {f}"))?,
        )?,
        ColumnData::F64(Some(f)) => from_float(ty, *f)?,
        ColumnData::Bit(Some(b)) => match ty {
            DataType::Bool => Value::Bool(*b),
            _ => from_int(ty, i64::from(*b))?,
        },
        ColumnData::String(Some(s)) => from_text(ty, s.to_string())?,
        ColumnData::Guid(Some(u)) => match ty {
            DataType::Uuid => Value::Uuid(*u),
            DataType::Text | DataType::Other => Value::Text(u.hyphenated().to_string()),
            DataType::Bytes => Value::Bytes(u.as_bytes().to_vec()),
            _ => return Err(format!("uuid {u} is not a {}", ty.name())),
        },
        ColumnData::Binary(Some(b)) => match ty {
            DataType::Bytes | DataType::Other => Value::Bytes(b.to_vec()),
            DataType::Text => Value::Text(
                String::from_utf8(b.to_vec()).map_err(|_| "the bytes are not valid UTF-8")?,
            ),
            _ => return Err(format!("bytes are not a {}", ty.name())),
        },
        ColumnData::Numeric(Some(n)) => {
            let text = numeric_text(n.value(), n.scale());
            match ty {
                DataType::Decimal => Value::Decimal(text),
                DataType::Text | DataType::Other => Value::Text(text),
                _ => Value::parse_text(ty, &text).map_err(|e| e.to_string())?,
            }
        }
        ColumnData::Xml(Some(xml)) => from_text(ty, xml.to_string())?,
        ColumnData::DateTime(Some(_))
        | ColumnData::SmallDateTime(Some(_))
        | ColumnData::DateTime2(Some(_)) => match NaiveDateTime::from_sql(&data) {
            Ok(Some(at)) => from_timestamp(ty, at)?,
            Ok(None) => Value::Null,
            Err(e) => return Err(chrono_error(e)),
        },
        ColumnData::Date(Some(_)) => match NaiveDate::from_sql(&data) {
            Ok(Some(date)) => match ty {
                DataType::Date => Value::Date(date),
                _ => from_timestamp(ty, date.and_time(NaiveTime::MIN))?,
            },
            Ok(None) => Value::Null,
            Err(e) => return Err(chrono_error(e)),
        },
        ColumnData::Time(Some(_)) => match NaiveTime::from_sql(&data) {
            Ok(Some(time)) => match ty {
                DataType::Time => Value::Time(time),
                DataType::Text | DataType::Other => Value::Text(Value::Time(time).to_string()),
                _ => return Err(format!("time {time} is not a {}", ty.name())),
            },
            Ok(None) => Value::Null,
            Err(e) => return Err(chrono_error(e)),
        },
        ColumnData::DateTimeOffset(Some(_)) => match DateTime::<Utc>::from_sql(&data) {
            Ok(Some(at)) => match ty {
                DataType::TimestampTz => Value::TimestampTz(at),
                DataType::Timestamp => Value::Timestamp(at.naive_utc()),
                DataType::Text | DataType::Other => Value::Text(Value::TimestampTz(at).to_string()),
                _ => return Err(format!("instant {at} is not a {}", ty.name())),
            },
            Ok(None) => Value::Null,
            Err(e) => return Err(chrono_error(e)),
        },
        // Every variant without a value is NULL.
        _ => Value::Null,
    })
}

/// How a value is bound for a column: the SQL Server parameter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    /// Text, cast in SQL to the column's decimal type.
    DecimalText,
    Float,
    Text,
    Binary,
    Date,
    Time,
    DateTime2,
    /// `datetime` and `smalldatetime`: bound as `datetime` (1/300 s), so a
    /// key read back from such a column compares equal.
    DateTime,
    DateTimeOffset,
    Guid,
    /// Text (or bytes), cast in SQL to the column's type.
    Other,
}

impl Bind {
    fn of(column: &Column) -> Bind {
        match column.data_type {
            DataType::Int => match column.native_type.as_str() {
                "tinyint" => Bind::TinyInt,
                "smallint" => Bind::SmallInt,
                "int" => Bind::Int,
                _ => Bind::BigInt,
            },
            DataType::Bool => Bind::Bit,
            DataType::Decimal => Bind::DecimalText,
            DataType::Float => Bind::Float,
            DataType::Text | DataType::Json => Bind::Text,
            DataType::Bytes => Bind::Binary,
            DataType::Date => Bind::Date,
            DataType::Time => Bind::Time,
            DataType::Timestamp => match column.native_type.as_str() {
                "datetime" | "smalldatetime" => Bind::DateTime,
                _ => Bind::DateTime2,
            },
            DataType::TimestampTz => Bind::DateTimeOffset,
            DataType::Uuid => Bind::Guid,
            DataType::Other => Bind::Other,
        }
    }

    /// NULL, typed for the column (SQL Server refuses an `nvarchar` NULL
    /// for a `varbinary` column).
    fn null(self) -> ColumnData<'static> {
        match self {
            Bind::TinyInt => ColumnData::U8(None),
            Bind::SmallInt => ColumnData::I16(None),
            Bind::Int => ColumnData::I32(None),
            Bind::BigInt => ColumnData::I64(None),
            Bind::Bit => ColumnData::Bit(None),
            Bind::DecimalText | Bind::Text | Bind::Other => ColumnData::String(None),
            Bind::Float => ColumnData::F64(None),
            Bind::Binary => ColumnData::Binary(None),
            Bind::Date => ColumnData::Date(None),
            Bind::Time => ColumnData::Time(None),
            Bind::DateTime2 => ColumnData::DateTime2(None),
            Bind::DateTime => ColumnData::DateTime(None),
            Bind::DateTimeOffset => ColumnData::DateTimeOffset(None),
            Bind::Guid => ColumnData::Guid(None),
        }
    }
}

/// Converts a canonical value for writing into `column` of `table`; an
/// unconvertible value is a data error naming the table, column and value.
pub(crate) fn write_value(table: &TableName, column: &Column, value: &Value) -> Result<Param> {
    to_sql(column, value).map(Param).map_err(|reason| {
        ConnectorError::data(format!(
            "cannot write {} value {} into column `{}` of table `{table}` ({}): {reason}",
            value.type_name(),
            shown(value),
            column.name,
            column.native_type
        ))
    })
}

/// The parameters of `key`, converted by the key columns' types.
pub(crate) fn key_params(table: &TableSchema, key: &Key) -> Result<Vec<Param>> {
    if table.primary_key.is_empty() {
        return Err(ConnectorError::schema(format!(
            "table {} has no primary key",
            table.name
        )));
    }
    if key.0.len() != table.primary_key.len() {
        return Err(ConnectorError::internal(format!(
            "key {key} has {} value(s) but table {} has {} key column(s)",
            key.0.len(),
            table.name,
            table.primary_key.len()
        )));
    }
    table
        .key_columns()
        .zip(&key.0)
        .map(|(column, value)| write_value(&table.name, column, value))
        .collect()
}

const NOT_FINITE: &str = "SQL Server cannot store NaN or infinity";

/// The value as a whole number, whatever canonical form it has.
fn integer_of(value: &Value) -> std::result::Result<i64, String> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Decimal(d) => {
            let digits = d.strip_prefix(['-', '+']).unwrap_or(d);
            let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
            if whole.is_empty() || fraction.bytes().any(|b| b != b'0') {
                return Err("it is not a whole number".to_owned());
            }
            let sign = if d.starts_with('-') { "-" } else { "" };
            format!("{sign}{whole}")
                .parse()
                .map_err(|_| "it is out of range for a 64-bit integer".to_owned())
        }
        Value::Float(f) => {
            if f.is_finite() && f.fract() == 0.0 && f.abs() <= 9.007_199_254_740_992e15 {
                Ok(*f as i64)
            } else {
                Err("it is not a whole number".to_owned())
            }
        }
        Value::Text(s) => match Value::parse_text(DataType::Int, s.trim()) {
            Ok(Value::Int(i)) => Ok(i),
            Ok(_) => Err("it is out of range for a 64-bit integer".to_owned()),
            Err(e) => Err(e.to_string()),
        },
        other => Err(format!("a {} is not an integer", other.type_name())),
    }
}

fn bool_of(value: &Value) -> std::result::Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::Int(i) => Err(format!("{i} is not 0 or 1")),
        Value::Text(s) => match Value::parse_text(DataType::Bool, s.trim()) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(_) => Err("it is not a boolean".to_owned()),
            Err(e) => Err(e.to_string()),
        },
        other => Err(format!("a {} is not a boolean", other.type_name())),
    }
}

fn decimal_text_of(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::Decimal(d) if d == "NaN" => Err(NOT_FINITE.to_owned()),
        Value::Decimal(d) => Ok(d.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_owned()),
        // Display never uses an exponent, which CAST would refuse.
        Value::Float(f) if f.is_finite() => Ok(f.to_string()),
        Value::Float(_) => Err(NOT_FINITE.to_owned()),
        Value::Text(s) => match Value::parse_text(DataType::Decimal, s.trim()) {
            Ok(parsed) => decimal_text_of(&parsed),
            Err(e) => Err(e.to_string()),
        },
        other => Err(format!("a {} is not a number", other.type_name())),
    }
}

fn float_of(value: &Value) -> std::result::Result<f64, String> {
    let f = match value {
        Value::Float(f) => *f,
        Value::Int(i) => *i as f64,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Decimal(d) => d.parse().map_err(|_| format!("{d} is not a number"))?,
        Value::Text(s) => match Value::parse_text(DataType::Float, s.trim()) {
            Ok(Value::Float(f)) => f,
            Ok(_) => return Err("it is not a number".to_owned()),
            Err(e) => return Err(e.to_string()),
        },
        other => return Err(format!("a {} is not a number", other.type_name())),
    };
    if f.is_finite() {
        Ok(f)
    } else {
        Err(NOT_FINITE.to_owned())
    }
}

fn text_of(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::Text(s) => Ok(s.clone()),
        Value::Json(serde_json::Value::String(s)) => Ok(s.clone()),
        Value::Bytes(b) => {
            String::from_utf8(b.clone()).map_err(|_| "the bytes are not valid UTF-8".to_owned())
        }
        other => Ok(other.to_sql_text().unwrap_or_default()),
    }
}

fn bytes_of(value: &Value) -> std::result::Result<Vec<u8>, String> {
    match value {
        Value::Bytes(b) => Ok(b.clone()),
        Value::Text(s) => Ok(s.as_bytes().to_vec()),
        Value::Uuid(u) => Ok(u.as_bytes().to_vec()),
        other => Err(format!("a {} is not bytes", other.type_name())),
    }
}

fn parsed(ty: DataType, text: &str) -> std::result::Result<Value, String> {
    Value::parse_text(ty, text.trim()).map_err(|e| e.to_string())
}

fn date_of(value: &Value) -> std::result::Result<NaiveDate, String> {
    match value {
        Value::Date(d) => Ok(*d),
        Value::Timestamp(t) if t.time() == NaiveTime::MIN => Ok(t.date()),
        Value::TimestampTz(t) if t.time() == NaiveTime::MIN => Ok(t.date_naive()),
        Value::Text(s) => date_of(&parsed(DataType::Date, s)?),
        other => Err(format!("a {} is not a date", other.type_name())),
    }
}

fn time_of(value: &Value) -> std::result::Result<NaiveTime, String> {
    match value {
        Value::Time(t) => Ok(*t),
        Value::Text(s) => time_of(&parsed(DataType::Time, s)?),
        other => Err(format!("a {} is not a time of day", other.type_name())),
    }
}

fn timestamp_of(value: &Value) -> std::result::Result<NaiveDateTime, String> {
    match value {
        Value::Timestamp(t) => Ok(*t),
        Value::TimestampTz(t) => Ok(t.naive_utc()),
        Value::Date(d) => Ok(d.and_time(NaiveTime::MIN)),
        Value::Text(s) => timestamp_of(&parsed(DataType::Timestamp, s)?),
        other => Err(format!("a {} is not a timestamp", other.type_name())),
    }
}

fn instant_of(value: &Value) -> std::result::Result<DateTime<Utc>, String> {
    match value {
        Value::TimestampTz(t) => Ok(*t),
        // A timestamp without zone written into a zoned column is UTC.
        Value::Timestamp(t) => Ok(t.and_utc()),
        Value::Date(d) => Ok(d.and_time(NaiveTime::MIN).and_utc()),
        Value::Text(s) => instant_of(&parsed(DataType::TimestampTz, s)?),
        other => Err(format!("a {} is not an instant", other.type_name())),
    }
}

fn uuid_of(value: &Value) -> std::result::Result<uuid::Uuid, String> {
    match value {
        Value::Uuid(u) => Ok(*u),
        Value::Text(s) => uuid_of(&parsed(DataType::Uuid, s)?),
        Value::Bytes(b) if b.len() == 16 => uuid::Uuid::from_slice(b).map_err(|e| e.to_string()),
        other => Err(format!("a {} is not a uuid", other.type_name())),
    }
}

/// The years `date`, `datetime2` and `datetimeoffset` hold.
fn check_year(date: NaiveDate, first: i32) -> std::result::Result<(), String> {
    if (first..=9999).contains(&date.year()) {
        Ok(())
    } else {
        Err(format!("the year {} is outside {first}..9999", date.year()))
    }
}

fn check_time(time: NaiveTime) -> std::result::Result<(), String> {
    if time.nanosecond() >= 1_000_000_000 {
        Err("a leap second cannot be stored".to_owned())
    } else {
        Ok(())
    }
}

/// `datetime`'s form: days since 1900-01-01 and 1/300 seconds since
/// midnight, rounded to the nearest as SQL Server rounds.
pub(crate) fn legacy_datetime(
    at: NaiveDateTime,
) -> std::result::Result<tiberius::time::DateTime, String> {
    check_year(at.date(), 1753)?;
    check_time(at.time())?;
    let epoch = NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date");
    let mut days = (at.date() - epoch).num_days();
    let nanos =
        u64::from(at.num_seconds_from_midnight()) * 1_000_000_000 + u64::from(at.nanosecond());
    let mut fragments = (nanos * 3 + 5_000_000) / 10_000_000;
    if fragments == 300 * 86_400 {
        days += 1;
        fragments = 0;
    }
    let last = (NaiveDate::from_ymd_opt(9999, 12, 31).expect("a valid date") - epoch).num_days();
    if days > last {
        return Err("the value rounds past 9999-12-31".to_owned());
    }
    Ok(tiberius::time::DateTime::new(
        i32::try_from(days).map_err(|_| "the date is out of range".to_owned())?,
        u32::try_from(fragments).map_err(|_| "the time is out of range".to_owned())?,
    ))
}

/// Converts a canonical value to the parameter `column` takes; the error
/// says why it cannot.
pub(crate) fn to_sql(
    column: &Column,
    value: &Value,
) -> std::result::Result<ColumnData<'static>, String> {
    let bind = Bind::of(column);
    if value.is_null() {
        return Ok(bind.null());
    }
    let out_of_range = |i: i64| format!("{i} is out of range for {}", column.native_type);
    Ok(match bind {
        Bind::TinyInt => {
            let i = integer_of(value)?;
            ColumnData::U8(Some(u8::try_from(i).map_err(|_| out_of_range(i))?))
        }
        Bind::SmallInt => {
            let i = integer_of(value)?;
            ColumnData::I16(Some(i16::try_from(i).map_err(|_| out_of_range(i))?))
        }
        Bind::Int => {
            let i = integer_of(value)?;
            ColumnData::I32(Some(i32::try_from(i).map_err(|_| out_of_range(i))?))
        }
        Bind::BigInt => ColumnData::I64(Some(integer_of(value)?)),
        Bind::Bit => ColumnData::Bit(Some(bool_of(value)?)),
        Bind::DecimalText => ColumnData::String(Some(decimal_text_of(value)?.into())),
        Bind::Float => ColumnData::F64(Some(float_of(value)?)),
        Bind::Text => ColumnData::String(Some(text_of(value)?.into())),
        Bind::Binary => ColumnData::Binary(Some(bytes_of(value)?.into())),
        Bind::Date => {
            let date = date_of(value)?;
            check_year(date, 1)?;
            date.into_sql()
        }
        Bind::Time => {
            let time = time_of(value)?;
            check_time(time)?;
            time.into_sql()
        }
        Bind::DateTime2 => {
            let at = timestamp_of(value)?;
            check_year(at.date(), 1)?;
            check_time(at.time())?;
            at.into_sql()
        }
        Bind::DateTime => ColumnData::DateTime(Some(legacy_datetime(timestamp_of(value)?)?)),
        Bind::DateTimeOffset => {
            let at = instant_of(value)?;
            check_year(at.date_naive(), 1)?;
            check_time(at.time())?;
            let utc = FixedOffset::east_opt(0).expect("a valid offset");
            at.with_timezone(&utc).into_sql()
        }
        Bind::Guid => ColumnData::Guid(Some(uuid_of(value)?)),
        Bind::Other => match value {
            Value::Bytes(b) => ColumnData::Binary(Some(b.clone().into())),
            other => ColumnData::String(Some(other.to_sql_text().unwrap_or_default().into())),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: DataType, native: &str) -> Column {
        Column::new(name, data_type, native)
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nano: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_nano_opt(h, mi, s, nano)
            .unwrap()
    }

    #[test]
    fn catalog_types_map_to_canonical_and_native_types() {
        let cases = [
            ("tinyint", 0, DataType::Int, "tinyint"),
            ("smallint", 0, DataType::Int, "smallint"),
            ("int", 0, DataType::Int, "int"),
            ("bigint", 0, DataType::Int, "bigint"),
            ("bit", 0, DataType::Bool, "bit"),
            ("decimal", 2, DataType::Decimal, "decimal(38, 2)"),
            ("numeric", 0, DataType::Decimal, "decimal(38, 0)"),
            ("money", 4, DataType::Decimal, "money"),
            ("smallmoney", 4, DataType::Decimal, "smallmoney"),
            ("float", 0, DataType::Float, "float"),
            ("real", 0, DataType::Float, "real"),
            ("char", 0, DataType::Text, "varchar(max)"),
            ("varchar", 0, DataType::Text, "varchar(max)"),
            ("text", 0, DataType::Text, "varchar(max)"),
            ("nchar", 0, DataType::Text, "nvarchar(max)"),
            ("nvarchar", 0, DataType::Text, "nvarchar(max)"),
            ("ntext", 0, DataType::Text, "nvarchar(max)"),
            ("binary", 0, DataType::Bytes, "varbinary(max)"),
            ("varbinary", 0, DataType::Bytes, "varbinary(max)"),
            ("image", 0, DataType::Bytes, "varbinary(max)"),
            ("timestamp", 0, DataType::Bytes, "binary(8)"),
            ("date", 0, DataType::Date, "date"),
            ("time", 7, DataType::Time, "time(7)"),
            ("datetime", 3, DataType::Timestamp, "datetime"),
            ("smalldatetime", 0, DataType::Timestamp, "smalldatetime"),
            ("datetime2", 7, DataType::Timestamp, "datetime2(7)"),
            (
                "datetimeoffset",
                7,
                DataType::TimestampTz,
                "datetimeoffset(7)",
            ),
            ("uniqueidentifier", 0, DataType::Uuid, "uniqueidentifier"),
            ("xml", 0, DataType::Other, "xml"),
            ("sql_variant", 0, DataType::Other, "sql_variant"),
            ("geography", 0, DataType::Other, "geography"),
            ("hierarchyid", 0, DataType::Other, "hierarchyid"),
        ];
        for (base, scale, ty, native) in cases {
            assert_eq!(data_type_of(base), ty, "{base}");
            assert_eq!(native_type_of(base, scale), native, "{base}");
        }
        assert_eq!(data_type_of("NVARCHAR"), DataType::Text);
    }

    #[test]
    fn decimals_and_unknown_types_are_cast_in_sql() {
        let dec = column("d", DataType::Decimal, "decimal(38, 2)");
        assert_eq!(param_expr(3, &dec), "CAST(@P3 AS decimal(38, 2))");
        let xml = column("x", DataType::Other, "xml");
        assert_eq!(param_expr(1, &xml), "CAST(@P1 AS xml)");
        let int = column("i", DataType::Int, "int");
        assert_eq!(param_expr(2, &int), "@P2");
        assert_eq!(read_expr(&int, "t.[i]"), "t.[i]");
        let money = column("m", DataType::Decimal, "money");
        assert_eq!(read_expr(&money, "t.[m]"), "CAST(t.[m] AS decimal(19, 4))");
        let small = column("m", DataType::Decimal, "smallmoney");
        assert_eq!(read_expr(&small, "k1"), "CAST(k1 AS decimal(10, 4))");
        assert_eq!(read_expr(&xml, "t.[x]"), "CONVERT(nvarchar(max), t.[x])");
    }

    #[test]
    fn numerics_print_exactly() {
        assert_eq!(numeric_text(-1234, 2), "-12.34");
        assert_eq!(numeric_text(5, 3), "0.005");
        assert_eq!(numeric_text(-5, 1), "-0.5");
        assert_eq!(numeric_text(0, 2), "0.00");
        assert_eq!(numeric_text(7, 0), "7");
        assert_eq!(numeric_text(-7, 0), "-7");
        let big = 10i128.pow(37) + 1;
        assert_eq!(
            numeric_text(big, 6),
            "10000000000000000000000000000000.000001"
        );
    }

    #[test]
    fn reads_follow_the_column_type() {
        let read = |ty, data| from_sql(ty, data).unwrap();
        assert_eq!(
            read(DataType::Int, ColumnData::U8(Some(255))),
            Value::Int(255)
        );
        assert_eq!(
            read(DataType::Int, ColumnData::I16(Some(-2))),
            Value::Int(-2)
        );
        assert_eq!(read(DataType::Int, ColumnData::I32(Some(7))), Value::Int(7));
        assert_eq!(
            read(DataType::Int, ColumnData::I64(Some(i64::MIN))),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            read(DataType::Bool, ColumnData::Bit(Some(true))),
            Value::Bool(true)
        );
        assert_eq!(
            read(DataType::Float, ColumnData::F32(Some(0.1))),
            Value::Float(0.1)
        );
        assert_eq!(
            read(DataType::Float, ColumnData::F64(Some(-1.5e300))),
            Value::Float(-1.5e300)
        );
        assert_eq!(
            read(
                DataType::Decimal,
                ColumnData::Numeric(Some(tiberius::numeric::Numeric::new_with_scale(-150, 2)))
            ),
            Value::Decimal("-1.50".into())
        );
        assert_eq!(
            read(DataType::Text, ColumnData::String(Some("Grüße 🎉".into()))),
            Value::Text("Grüße 🎉".into())
        );
        assert_eq!(
            read(
                DataType::Bytes,
                ColumnData::Binary(Some(vec![0, 255].into()))
            ),
            Value::Bytes(vec![0, 255])
        );
        let u = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            read(DataType::Uuid, ColumnData::Guid(Some(u))),
            Value::Uuid(u)
        );
        assert_eq!(
            read(DataType::Other, ColumnData::String(Some("<a/>".into()))),
            Value::Text("<a/>".into())
        );
        assert_eq!(
            read(
                DataType::Other,
                ColumnData::Xml(Some(std::borrow::Cow::Owned(tiberius::xml::XmlData::new(
                    "<b/>"
                ))))
            ),
            Value::Text("<b/>".into())
        );
        // Every NULL, whatever its type.
        for null in [
            ColumnData::I32(None),
            ColumnData::String(None),
            ColumnData::Binary(None),
            ColumnData::Numeric(None),
            ColumnData::DateTime2(None),
            ColumnData::DateTimeOffset(None),
            ColumnData::Guid(None),
        ] {
            assert_eq!(read(DataType::Text, null), Value::Null);
        }
    }

    #[test]
    fn dates_and_times_read_back_what_was_bound() {
        let stamp = at(1999, 12, 31, 1, 2, 3, 456_789_100);
        let instant = at(2030, 1, 1, 0, 0, 0, 123_456_000).and_utc();
        let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let time = NaiveTime::from_hms_micro_opt(23, 59, 1, 5).unwrap();
        let cases = [
            (
                column("ts", DataType::Timestamp, "datetime2(7)"),
                Value::Timestamp(stamp),
            ),
            (
                column("tz", DataType::TimestampTz, "datetimeoffset(7)"),
                Value::TimestampTz(instant),
            ),
            (column("d", DataType::Date, "date"), Value::Date(date)),
            (column("t", DataType::Time, "time(7)"), Value::Time(time)),
        ];
        for (col, value) in cases {
            let bound = to_sql(&col, &value).unwrap();
            assert_eq!(
                from_sql(col.data_type, bound).unwrap(),
                value,
                "{}",
                col.name
            );
        }
        // datetimeoffset is bound in UTC (offset 0).
        let col = column("tz", DataType::TimestampTz, "datetimeoffset(7)");
        match to_sql(&col, &Value::TimestampTz(instant)).unwrap() {
            ColumnData::DateTimeOffset(Some(dto)) => assert_eq!(dto.offset(), 0),
            other => panic!("{other:?}"),
        }
        // A timestamp without zone into a zoned column is taken as UTC.
        assert_eq!(
            from_sql(
                DataType::TimestampTz,
                to_sql(&col, &Value::Timestamp(stamp)).unwrap()
            )
            .unwrap(),
            Value::TimestampTz(stamp.and_utc())
        );
    }

    #[test]
    fn legacy_datetime_rounds_to_three_hundredths() {
        let col = column("dt", DataType::Timestamp, "datetime");
        let written = Value::Timestamp(at(2024, 1, 2, 3, 4, 5, 3_000_000));
        let bound = to_sql(&col, &written).unwrap();
        let dt = match &bound {
            ColumnData::DateTime(Some(dt)) => *dt,
            other => panic!("{other:?}"),
        };
        assert_eq!(dt.seconds_fragments() % 300, 1, ".003 is one 1/300 s");
        // What the server sends back (1/300 s exactly) binds to the same.
        let read = from_sql(DataType::Timestamp, bound).unwrap();
        assert_eq!(read, Value::Timestamp(at(2024, 1, 2, 3, 4, 5, 3_333_333)));
        match to_sql(&col, &read).unwrap() {
            ColumnData::DateTime(Some(again)) => assert_eq!(again, dt),
            other => panic!("{other:?}"),
        }
        // 23:59:59.999 rounds to the next day.
        let late = legacy_datetime(at(2024, 1, 2, 23, 59, 59, 999_000_000)).unwrap();
        let midnight = legacy_datetime(at(2024, 1, 3, 0, 0, 0, 0)).unwrap();
        assert_eq!(late, midnight);
        assert_eq!(midnight.seconds_fragments(), 0);
        assert!(legacy_datetime(at(1700, 1, 1, 0, 0, 0, 0)).is_err());
        assert!(legacy_datetime(at(9999, 12, 31, 23, 59, 59, 999_000_000)).is_err());
        let small = column("sdt", DataType::Timestamp, "smalldatetime");
        assert!(matches!(
            to_sql(&small, &written).unwrap(),
            ColumnData::DateTime(Some(_))
        ));
    }

    #[test]
    fn writes_bind_the_type_of_the_target_column() {
        let bind = |native: &str, ty, value: Value| to_sql(&column("c", ty, native), &value);
        assert_eq!(
            bind("tinyint", DataType::Int, Value::Int(255)).unwrap(),
            ColumnData::U8(Some(255))
        );
        assert!(bind("tinyint", DataType::Int, Value::Int(256)).is_err());
        assert!(bind("tinyint", DataType::Int, Value::Int(-1)).is_err());
        assert_eq!(
            bind("smallint", DataType::Int, Value::Text(" -7".into())).unwrap(),
            ColumnData::I16(Some(-7))
        );
        assert_eq!(
            bind("int", DataType::Int, Value::Bool(true)).unwrap(),
            ColumnData::I32(Some(1))
        );
        assert_eq!(
            bind("bigint", DataType::Int, Value::Decimal("12.000".into())).unwrap(),
            ColumnData::I64(Some(12))
        );
        assert!(bind("bigint", DataType::Int, Value::Decimal("1.5".into())).is_err());
        assert!(bind(
            "bigint",
            DataType::Int,
            Value::Decimal("18446744073709551615".into())
        )
        .is_err());
        assert!(bind("int", DataType::Int, Value::Text("x".into())).is_err());
        assert_eq!(
            bind("bit", DataType::Bool, Value::Int(0)).unwrap(),
            ColumnData::Bit(Some(false))
        );
        assert!(bind("bit", DataType::Bool, Value::Int(2)).is_err());
        assert_eq!(
            bind(
                "decimal(38, 6)",
                DataType::Decimal,
                Value::Decimal("-123456789012345678901234.123456".into())
            )
            .unwrap(),
            ColumnData::String(Some("-123456789012345678901234.123456".into()))
        );
        assert_eq!(
            bind("decimal(38, 2)", DataType::Decimal, Value::Float(0.1)).unwrap(),
            ColumnData::String(Some("0.1".into()))
        );
        assert!(bind(
            "decimal(38, 2)",
            DataType::Decimal,
            Value::Decimal("NaN".into())
        )
        .is_err());
        assert!(bind(
            "decimal(38, 2)",
            DataType::Decimal,
            Value::Text("1.2.3".into())
        )
        .is_err());
        assert_eq!(
            bind("float", DataType::Float, Value::Float(0.1)).unwrap(),
            ColumnData::F64(Some(0.1))
        );
        assert!(bind("float", DataType::Float, Value::Float(f64::NAN)).is_err());
        assert!(bind("float", DataType::Float, Value::Float(f64::INFINITY)).is_err());
        assert_eq!(
            bind("nvarchar(max)", DataType::Text, Value::Text("é 'q'".into())).unwrap(),
            ColumnData::String(Some("é 'q'".into()))
        );
        assert_eq!(
            bind("nvarchar(max)", DataType::Text, Value::Int(5)).unwrap(),
            ColumnData::String(Some("5".into()))
        );
        assert_eq!(
            bind(
                "nvarchar(max)",
                DataType::Text,
                Value::Json(serde_json::json!({"a": 1}))
            )
            .unwrap(),
            ColumnData::String(Some(r#"{"a":1}"#.into()))
        );
        let u = uuid::Uuid::from_u128(1);
        assert_eq!(
            bind("varbinary(max)", DataType::Bytes, Value::Uuid(u)).unwrap(),
            ColumnData::Binary(Some(u.as_bytes().to_vec().into()))
        );
        assert_eq!(
            bind(
                "uniqueidentifier",
                DataType::Uuid,
                Value::Text(u.to_string())
            )
            .unwrap(),
            ColumnData::Guid(Some(u))
        );
        assert!(bind("date", DataType::Date, Value::Bytes(vec![1])).is_err());
        assert!(bind("date", DataType::Date, Value::Text("someday".into())).is_err());
        let ancient = NaiveDate::from_ymd_opt(-5, 1, 1).unwrap();
        assert!(bind("date", DataType::Date, Value::Date(ancient)).is_err());
        assert_eq!(
            bind("xml", DataType::Other, Value::Text("<a/>".into())).unwrap(),
            ColumnData::String(Some("<a/>".into()))
        );
    }

    #[test]
    fn nulls_are_typed_for_the_column() {
        let cases = [
            ("tinyint", DataType::Int, ColumnData::U8(None)),
            ("bigint", DataType::Int, ColumnData::I64(None)),
            ("bit", DataType::Bool, ColumnData::Bit(None)),
            (
                "decimal(38, 2)",
                DataType::Decimal,
                ColumnData::String(None),
            ),
            ("float", DataType::Float, ColumnData::F64(None)),
            ("nvarchar(max)", DataType::Text, ColumnData::String(None)),
            ("varbinary(max)", DataType::Bytes, ColumnData::Binary(None)),
            ("date", DataType::Date, ColumnData::Date(None)),
            ("time(7)", DataType::Time, ColumnData::Time(None)),
            (
                "datetime2(7)",
                DataType::Timestamp,
                ColumnData::DateTime2(None),
            ),
            ("datetime", DataType::Timestamp, ColumnData::DateTime(None)),
            (
                "datetimeoffset(7)",
                DataType::TimestampTz,
                ColumnData::DateTimeOffset(None),
            ),
            ("uniqueidentifier", DataType::Uuid, ColumnData::Guid(None)),
        ];
        for (native, ty, expected) in cases {
            assert_eq!(
                to_sql(&column("c", ty, native), &Value::Null).unwrap(),
                expected,
                "{native}"
            );
        }
    }

    #[test]
    fn write_errors_name_table_column_and_value() {
        let table = TableName::new(Some("dbo"), "orders");
        let err = write_value(
            &table,
            &column("qty", DataType::Int, "int"),
            &Value::Text("many".into()),
        )
        .unwrap_err();
        let message = err.to_string();
        assert_eq!(err.kind(), crate::ErrorKind::Data);
        assert!(
            message.contains("`qty`") && message.contains("dbo.orders") && message.contains("many"),
            "{message}"
        );
    }

    #[test]
    fn keys_must_match_the_table() {
        let table = TableSchema::new(
            TableName::new(Some("dbo"), "t"),
            vec![
                column("a", DataType::Int, "int"),
                column("b", DataType::Text, "nvarchar(max)"),
            ],
            vec!["a".into(), "b".into()],
        );
        let params =
            key_params(&table, &Key(vec![Value::Int(1), Value::Text("x".into())])).unwrap();
        assert_eq!(
            params,
            vec![
                Param(ColumnData::I32(Some(1))),
                Param(ColumnData::String(Some("x".into())))
            ]
        );
        let err = key_params(&table, &Key(vec![Value::Int(1)])).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Internal);
        let keyless = TableSchema {
            primary_key: Vec::new(),
            ..table
        };
        let err = key_params(&keyless, &Key(vec![])).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
    }
}
