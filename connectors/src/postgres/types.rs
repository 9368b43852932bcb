//! PostgreSQL types and canonical values.
//!
//! Every value travels as text: columns are read as `col::text` (in the
//! session's ISO/UTC/hex formats) and parsed with [`Value::parse_text`];
//! values are bound as text parameters and cast in SQL to the column's own
//! type (`$1::text::integer`), so the server does every conversion and
//! enforces the column's length and range.

use crate::error::{ConnectorError, Result};
use crate::schema::{Column, DataType, TableName, TableSchema};
use tokio_postgres::types::ToSql;

use crate::value::{Key, Row, Value};

use super::client::SQL;

/// The canonical category of a column, from its base type (domains already
/// resolved): `name` and `schema` of the base type, its `typtype`.
pub(crate) fn data_type(name: &str, schema: &str, typtype: &str) -> DataType {
    if typtype == "e" {
        return DataType::Text;
    }
    // An extension type: installed in whatever schema the DBA chose.
    if name == "citext" {
        return DataType::Text;
    }
    if schema != "pg_catalog" {
        return DataType::Other;
    }
    match name {
        "int2" | "int4" | "int8" => DataType::Int,
        "numeric" => DataType::Decimal,
        "float4" | "float8" => DataType::Float,
        "bool" => DataType::Bool,
        "text" | "varchar" | "bpchar" | "name" => DataType::Text,
        "bytea" => DataType::Bytes,
        "date" => DataType::Date,
        "time" => DataType::Time,
        "timestamp" => DataType::Timestamp,
        "timestamptz" => DataType::TimestampTz,
        "json" | "jsonb" => DataType::Json,
        "uuid" => DataType::Uuid,
        _ => DataType::Other,
    }
}

/// `$n::text::<native type>`: a bound text parameter cast to the column.
pub(crate) fn cast_param(n: usize, column: &Column) -> String {
    format!("${n}::text::{}", column.native_type)
}

/// The select list reading every column as text, in catalog order.
pub(crate) fn select_list(table: &TableSchema) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("{}::text", SQL.ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Converts a result row selected with [`select_list`] into a canonical row.
pub(crate) fn read_row(table: &TableSchema, row: &tokio_postgres::Row) -> Result<Row> {
    let mut out = Row::new();
    for (i, column) in table.columns.iter().enumerate() {
        // Borrowed from the message: parsed without a copy first.
        let text: Option<&str> = row.try_get(i).map_err(|e| {
            ConnectorError::internal(format!(
                "cannot read column {:?} of table {}: {e}",
                column.name, table.name
            ))
        })?;
        out.insert(column.name.clone(), read_value(&table.name, column, text)?);
    }
    Ok(out)
}

/// Parses one column's text (NULL when `None`).
pub(crate) fn read_value(table: &TableName, column: &Column, text: Option<&str>) -> Result<Value> {
    match text {
        None => Ok(Value::Null),
        Some(text) => Value::parse_text(column.data_type, text)
            .map_err(|e| e.context(format!("column {:?} of table {table}", column.name))),
    }
}

/// The text parameter that writes `value` into `column` (`None` for NULL).
/// Converts what the server would refuse but has one obvious meaning: a
/// bool into an integer column (0/1), 0/1 into a bool column, an integral
/// decimal or float into an integer column, a JSON string into a text
/// column. Everything else is the value's canonical text, cast by the
/// server.
pub(crate) fn write_text(
    table: &TableName,
    column: &Column,
    value: &Value,
) -> Result<Option<String>> {
    let text = match (column.data_type, value) {
        (_, Value::Null) => return Ok(None),
        (DataType::Int, Value::Bool(b)) => if *b { "1" } else { "0" }.to_owned(),
        (DataType::Bool, Value::Int(0)) => "false".to_owned(),
        (DataType::Bool, Value::Int(1)) => "true".to_owned(),
        (DataType::Bool, Value::Int(i)) => {
            let message = format!(
                "cannot write value {i} to column {:?} of table {table}: a boolean takes 0 or 1",
                column.name
            );
            return Err(ConnectorError::data(message));
        }
        (DataType::Int, Value::Decimal(d)) => integral_decimal(d).unwrap_or(d).to_owned(),
        (DataType::Int, Value::Float(f))
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18 =>
        {
            format!("{}", *f as i64)
        }
        (DataType::Text, Value::Json(serde_json::Value::String(s))) => s.clone(),
        (_, other) => other.to_sql_text().unwrap_or_default(),
    };
    Ok(Some(text))
}

/// The key columns, checked to be all described; a table without a key is
/// a schema error (rows cannot be addressed).
pub(crate) fn key_columns(table: &TableSchema) -> Result<Vec<&Column>> {
    if table.primary_key.is_empty() {
        return Err(ConnectorError::schema(format!(
            "table {} has no primary key",
            table.name
        )));
    }
    let columns: Vec<&Column> = table.key_columns().collect();
    if columns.len() != table.primary_key.len() {
        return Err(ConnectorError::internal(format!(
            "the primary key of table {} names a column it does not describe",
            table.name
        )));
    }
    Ok(columns)
}

/// `"k1" = $n::text::t1 and "k2" = $n+1::text::t2`.
pub(crate) fn key_condition(columns: &[&Column], first_param: usize) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{} = {}",
                SQL.ident(&c.name),
                cast_param(first_param + i, c)
            )
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The text parameters of `key`, in key order.
pub(crate) fn key_params(
    table: &TableSchema,
    columns: &[&Column],
    key: &Key,
) -> Result<Vec<Option<String>>> {
    if key.0.len() != columns.len() {
        return Err(ConnectorError::internal(format!(
            "key {key} has {} value(s) but table {} has {} key column(s)",
            key.0.len(),
            table.name,
            columns.len()
        )));
    }
    columns
        .iter()
        .zip(&key.0)
        .map(|(c, v)| write_text(&table.name, c, v))
        .collect()
}

/// Text parameters as the driver wants them.
pub(crate) fn params(values: &[Option<String>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// A key read back as text (`RETURNING k::text`).
pub(crate) fn read_key(
    table: &TableSchema,
    columns: &[&Column],
    row: &tokio_postgres::Row,
) -> Result<Key> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let text: Option<String> = row.try_get(i).map_err(|e| {
                ConnectorError::internal(format!(
                    "cannot read the key of table {}: {e}",
                    table.name
                ))
            })?;
            read_value(&table.name, c, text.as_deref())
        })
        .collect::<Result<Vec<_>>>()
        .map(Key)
}

/// `12.000` -> `12`; `None` when the decimal has a non-zero fraction.
fn integral_decimal(text: &str) -> Option<&str> {
    match text.split_once('.') {
        None => Some(text),
        Some((whole, frac)) if frac.bytes().all(|b| b == b'0') && !whole.is_empty() => Some(whole),
        Some(_) => None,
    }
}

/// A value shortened for an error message.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}

/// Which written column a server's data error is about, guessed from its
/// message: the column whose value the message quotes, or the only column
/// of the type the message names (`value too long for type character
/// varying(3)`).
pub(crate) fn column_in_message<'a>(
    message: &str,
    written: &'a [(&'a Column, Option<String>)],
) -> Option<&'a (&'a Column, Option<String>)> {
    if let Some(found) = written.iter().find(|(_, text)| {
        text.as_deref()
            .is_some_and(|t| !t.is_empty() && message.contains(&format!("\"{t}\"")))
    }) {
        return Some(found);
    }
    let type_text = message.split(" for type ").nth(1)?;
    let (type_name, limit) = match type_text.split_once('(') {
        Some((name, rest)) => (
            name.trim(),
            rest.split(')')
                .next()
                .and_then(|n| n.trim().parse::<usize>().ok()),
        ),
        None => (
            type_text.split(':').next().unwrap_or(type_text).trim(),
            None,
        ),
    };
    let candidates: Vec<_> = written
        .iter()
        .filter(|(c, text)| c.native_type == type_name && text.is_some())
        .filter(|(_, text)| match (limit, text) {
            (Some(n), Some(t)) => t.chars().count() > n,
            _ => true,
        })
        .collect();
    match candidates.as_slice() {
        [only] => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: DataType, native: &str) -> Column {
        Column::new(name, data_type, native)
    }

    #[test]
    fn base_types_map_to_categories() {
        assert_eq!(data_type("int8", "pg_catalog", "b"), DataType::Int);
        assert_eq!(data_type("bpchar", "pg_catalog", "b"), DataType::Text);
        assert_eq!(data_type("mood", "public", "e"), DataType::Text);
        assert_eq!(data_type("citext", "ext", "b"), DataType::Text);
        assert_eq!(data_type("_int4", "pg_catalog", "b"), DataType::Other);
        assert_eq!(data_type("interval", "pg_catalog", "b"), DataType::Other);
        assert_eq!(data_type("int4", "evil", "b"), DataType::Other);
    }

    #[test]
    fn bools_and_integers_convert_both_ways() {
        let t = TableName::new(Some("public"), "t");
        let int = column("n", DataType::Int, "integer");
        let boolean = column("b", DataType::Bool, "boolean");
        assert_eq!(
            write_text(&t, &int, &Value::Bool(true)).unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(
            write_text(&t, &boolean, &Value::Int(0)).unwrap().as_deref(),
            Some("false")
        );
        let err = write_text(&t, &boolean, &Value::Int(7)).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Data);
        assert!(
            err.to_string().contains("\"b\"") && err.to_string().contains('7'),
            "{err}"
        );
        assert_eq!(
            write_text(&t, &int, &Value::Decimal("12.000".into()))
                .unwrap()
                .as_deref(),
            Some("12")
        );
        assert_eq!(
            write_text(&t, &int, &Value::Decimal("12.5".into()))
                .unwrap()
                .as_deref(),
            Some("12.5")
        );
        assert_eq!(
            write_text(&t, &int, &Value::Float(3.0)).unwrap().as_deref(),
            Some("3")
        );
        assert_eq!(write_text(&t, &int, &Value::Null).unwrap(), None);
    }

    #[test]
    fn data_errors_find_their_column() {
        let a = column("a", DataType::Int, "integer");
        let b = column("b", DataType::Text, "character varying");
        let c = column("c", DataType::Text, "character varying");
        let written = vec![
            (&a, Some("x1".to_owned())),
            (&b, Some("abcd".to_owned())),
            (&c, Some("ab".to_owned())),
        ];
        let found = column_in_message("invalid input syntax for type integer: \"x1\"", &written);
        assert_eq!(found.map(|(c, _)| c.name.as_str()), Some("a"));
        let found = column_in_message("value too long for type character varying(3)", &written);
        assert_eq!(found.map(|(c, _)| c.name.as_str()), Some("b"));
        assert!(column_in_message("numeric field overflow", &written).is_none());
    }
}
