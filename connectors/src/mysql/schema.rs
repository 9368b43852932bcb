//! `describe`: a table's columns, key and foreign keys from
//! `information_schema`, in the database of the URL (`DATABASE()`).
//!
//! Catalog names compare case-insensitively in `information_schema`, so
//! every answer is filtered again here by the exact table name.

use mysql_async::Value as MyValue;

use super::client::{int_of, quote_ident, text_of, Client, Flavour};
use super::types::data_type_of;
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::{Capacity, Charset, Column, ForeignKey, TableName, TableSchema};

const COLUMNS: &str =
    "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, IS_NULLABLE, EXTRA, COLUMN_DEFAULT, \
     COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, CHARACTER_SET_NAME \
     FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? \
     ORDER BY ORDINAL_POSITION";

const KEY_COLUMNS: &str = "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, \
     REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME \
     FROM information_schema.KEY_COLUMN_USAGE \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? \
     ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION";

/// Base tables of the URL's database.
const TABLES: &str = "SELECT TABLE_NAME FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME";

/// The tables `install-triggers` creates.
const OWN_TABLES: [&str; 3] = ["tandem_changes", "tandem_id_map", "tandem_version"];

/// The tables a config may name.
pub async fn list_tables(client: &Client) -> Result<Vec<TableName>> {
    Ok(client
        .rows(TABLES, Vec::new())
        .await
        .map_err(|e| e.context("list the tables"))?
        .iter()
        .map(|row| text_of(&row[0]))
        .filter(|name| !OWN_TABLES.contains(&name.as_str()))
        .map(|name| TableName::new(None, &name))
        .collect())
}

/// The CHECK constraints of one table (their `TABLE_NAME`, `CHECK_CLAUSE`).
pub fn checks_sql(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::MariaDb => {
            "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = ?"
        }
        // MySQL's CHECK_CONSTRAINTS has no TABLE_NAME (names are unique
        // per database there).
        Flavour::MySql => {
            "SELECT tc.TABLE_NAME, cc.CHECK_CLAUSE \
             FROM information_schema.TABLE_CONSTRAINTS tc \
             JOIN information_schema.CHECK_CONSTRAINTS cc \
               ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME \
             WHERE tc.CONSTRAINT_SCHEMA = DATABASE() AND tc.TABLE_NAME = ? AND tc.CONSTRAINT_TYPE = 'CHECK'"
        }
    }
}

/// Whether `clause` makes `column` a JSON column (MariaDB's `JSON` is
/// LONGTEXT with `CHECK (json_valid(`column`))`).
pub fn is_json_check(clause: &str, column: &str) -> bool {
    clause.to_lowercase().contains(&format!(
        "json_valid({})",
        quote_ident(column).to_lowercase()
    ))
}

/// Whether a column default generates a UUID (`uuid()`, `sys_guid()`,
/// MySQL's `uuid_to_bin(uuid())`), as `COLUMN_DEFAULT` and `EXTRA` show it.
pub fn is_uuid_default(flavour: Flavour, default: Option<&str>, extra: &str) -> bool {
    let Some(default) = default else { return false };
    let default = default.trim().trim_start_matches('(').to_ascii_lowercase();
    let is_call = default.starts_with("uuid") || default.starts_with("sys_guid");
    // MariaDB quotes literal defaults; MySQL marks expression defaults.
    is_call
        && default.contains('(')
        && (flavour == Flavour::MariaDb || extra.to_ascii_uppercase().contains("DEFAULT_GENERATED"))
}

/// What a column can hold within its type, from its `information_schema`
/// row: `DATA_TYPE`, `COLUMN_TYPE`, `CHARACTER_MAXIMUM_LENGTH`,
/// `NUMERIC_PRECISION`, `NUMERIC_SCALE`, `CHARACTER_SET_NAME`.
pub fn capacity(
    data_type: &str,
    column_type: &str,
    max_chars: Option<i64>,
    precision: Option<i64>,
    scale: Option<i64>,
    charset: Option<&str>,
) -> Capacity {
    let mut capacity = Capacity::default();
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    let bytes = match data_type {
        "tinyint" => Some(1),
        "smallint" => Some(2),
        "mediumint" => Some(3),
        "int" | "integer" => Some(4),
        "bigint" => Some(8),
        _ => None,
    };
    capacity.int_range = bytes.map(|b| {
        if unsigned {
            Capacity::unsigned(b)
        } else {
            Capacity::signed(b)
        }
    });
    if matches!(data_type, "decimal" | "numeric") {
        if let (Some(p), Some(s)) = (precision, scale) {
            capacity.digits = Some((p.max(0) as u32, s.max(0) as u32));
        }
    }
    if matches!(data_type, "char" | "varchar") {
        capacity.max_chars = max_chars.and_then(|n| u32::try_from(n).ok());
    }
    if !matches!(data_type, "enum" | "set") {
        capacity.charset = charset.map(|name| match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf16" | "utf16le" | "utf32" => Charset::Unicode,
            "utf8mb3" | "utf8" | "ucs2" => Charset::Bmp,
            other => Charset::Legacy(other.to_owned()),
        });
    }
    capacity
}

fn same_table(row: &[MyValue], table: &TableName) -> bool {
    row.first().map(text_of).as_deref() == Some(table.name.as_str())
}

/// Reads a table's description from the catalog.
pub async fn describe(client: &Client, table: &TableName) -> Result<TableSchema> {
    let name = || vec![MyValue::from(table.name.as_str())];
    let context = |e: ConnectorError| e.context(format!("describe table `{table}`"));

    let columns = client.rows(COLUMNS, name()).await.map_err(context)?;
    let columns: Vec<_> = columns
        .into_iter()
        .filter(|r| same_table(r, table))
        .collect();
    if columns.is_empty() {
        return Err(ConnectorError::schema(format!(
            "table {table} does not exist in database {}",
            client.database
        )));
    }

    let checks = match client.rows(checks_sql(client.flavour), name()).await {
        Ok(rows) => rows
            .into_iter()
            .filter(|r| same_table(r, table))
            .map(|r| text_of(&r[1]))
            .collect(),
        // MySQL before 8.0.16 has no CHECK_CONSTRAINTS, and no checks.
        Err(e) if client.flavour == Flavour::MySql && e.kind() == ErrorKind::Schema => Vec::new(),
        Err(e) => return Err(context(e)),
    };

    let columns = columns
        .iter()
        .map(|row| {
            let column = text_of(&row[1]);
            let native = text_of(&row[2]).to_ascii_lowercase();
            let extra = text_of(&row[4]).to_ascii_uppercase();
            let default = match &row[5] {
                MyValue::NULL => None,
                value => Some(text_of(value)),
            };
            let json_checked = checks.iter().any(|c| is_json_check(c, &column));
            let computed = [
                "VIRTUAL GENERATED",
                "STORED GENERATED",
                "PERSISTENT GENERATED",
            ]
            .iter()
            .any(|g| extra.contains(g));
            let generated = extra.contains("AUTO_INCREMENT")
                || computed
                || is_uuid_default(client.flavour, default.as_deref(), &extra);
            let charset = match &row[10] {
                MyValue::NULL => None,
                value => Some(text_of(value)),
            };
            Column {
                data_type: data_type_of(&native, json_checked),
                capacity: capacity(
                    &native,
                    &text_of(&row[6]),
                    int_of(&row[7]),
                    int_of(&row[8]),
                    int_of(&row[9]),
                    charset.as_deref(),
                ),
                native_type: native,
                nullable: text_of(&row[3]).eq_ignore_ascii_case("YES"),
                generated,
                always_generated: computed,
                has_default: default.is_some() && !generated,
                name: column,
            }
        })
        .collect();

    let keys = client.rows(KEY_COLUMNS, name()).await.map_err(context)?;
    let mut primary_key = Vec::new();
    let mut foreign_keys: Vec<(String, ForeignKey)> = Vec::new();
    for row in keys.iter().filter(|r| same_table(r, table)) {
        let constraint = text_of(&row[1]);
        let column = text_of(&row[2]);
        if row[4] == MyValue::NULL {
            if constraint == "PRIMARY" {
                primary_key.push(column);
            }
            continue;
        }
        let referenced_schema = text_of(&row[3]);
        let referenced_table = TableName {
            schema: (referenced_schema != client.database).then_some(referenced_schema),
            name: text_of(&row[4]),
        };
        let referenced_column = text_of(&row[5]);
        match foreign_keys.last_mut() {
            Some((name, fk)) if *name == constraint => {
                fk.columns.push(column);
                fk.referenced_columns.push(referenced_column);
            }
            _ => foreign_keys.push((
                constraint,
                ForeignKey {
                    columns: vec![column],
                    referenced_table,
                    referenced_columns: vec![referenced_column],
                },
            )),
        }
    }

    Ok(TableSchema {
        name: table.clone(),
        columns,
        primary_key,
        foreign_keys: foreign_keys.into_iter().map(|(_, fk)| fk).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_checks_are_recognised() {
        assert!(is_json_check("json_valid(`doc`)", "doc"));
        assert!(is_json_check("JSON_VALID(`Doc`) and 1 = 1", "doc"));
        assert!(!is_json_check("json_valid(`other`)", "doc"));
        assert!(is_json_check("json_valid(`a``b`)", "a`b"));
    }

    #[test]
    fn uuid_defaults_are_generated_keys() {
        assert!(is_uuid_default(Flavour::MariaDb, Some("uuid()"), ""));
        assert!(!is_uuid_default(Flavour::MariaDb, Some("'uuid()'"), ""));
        assert!(is_uuid_default(
            Flavour::MySql,
            Some("uuid_to_bin(uuid())"),
            "DEFAULT_GENERATED"
        ));
        assert!(!is_uuid_default(Flavour::MySql, Some("uuid()"), ""));
        assert!(!is_uuid_default(Flavour::MySql, None, "DEFAULT_GENERATED"));
    }

    #[test]
    fn mysql_reads_checks_through_table_constraints() {
        assert!(checks_sql(Flavour::MySql).contains("TABLE_CONSTRAINTS"));
        assert!(!checks_sql(Flavour::MariaDb).contains("TABLE_CONSTRAINTS"));
    }
}
