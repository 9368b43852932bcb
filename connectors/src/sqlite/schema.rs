//! `describe`: a table's columns, key and foreign keys from SQLite's
//! catalog (`sqlite_schema` and the `table_xinfo`, `index_list`,
//! `foreign_key_list` pragmas).
//!
//! SQLite finds tables whatever the case of their ASCII letters; so does
//! `describe`, and the schema it returns carries the name as the catalog
//! keeps it.

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use super::client::{int_of, query, text_of};
use super::types::{data_type_of, native_type_of};
use crate::error::{ConnectorError, Result};
use crate::schema::{Capacity, Charset, Column, DataType, ForeignKey, TableName, TableSchema};

/// The table's name as the catalog keeps it, the exact spelling first.
const TABLE: &str = "SELECT name FROM sqlite_schema \
     WHERE type = 'table' AND name = ?1 COLLATE NOCASE \
     ORDER BY name = ?1 DESC LIMIT 1";

/// Tables other than SQLite's own.
const TABLES: &str = "SELECT name FROM sqlite_schema \
     WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name";

/// The tables `install-triggers` creates.
const OWN_TABLES: [&str; 4] = [
    "tandem_changes",
    "tandem_id_map",
    "tandem_version",
    "tandem_applying",
];

/// The tables a config may name (blocking).
pub fn list_tables(conn: &Connection) -> Result<Vec<TableName>> {
    Ok(query(conn, TABLES, &[])?
        .iter()
        .map(|row| text_of(&row[0]))
        .filter(|name| !OWN_TABLES.contains(&name.as_str()))
        .map(|name| TableName::new(None, &name))
        .collect())
}

/// Whether the table is `WITHOUT ROWID`.
const WITHOUT_ROWID: &str = "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1";

/// Every column, hidden ones of virtual tables aside: `hidden` 2 and 3 are
/// generated columns (virtual and stored).
const COLUMNS: &str = "SELECT name, type, \"notnull\", dflt_value, pk, hidden \
     FROM pragma_table_xinfo(?1) WHERE hidden <> 1 ORDER BY cid";

/// Indexes made for the primary key: none when the key is the rowid.
const KEY_INDEXES: &str = "SELECT count(*) FROM pragma_index_list(?1) WHERE origin = 'pk'";

/// Foreign keys: SQLite numbers the last declared 0, so descending `id` is
/// the order of declaration.
const FOREIGN_KEYS: &str = "SELECT id, \"table\", \"from\", \"to\" \
     FROM pragma_foreign_key_list(?1) ORDER BY id DESC, seq";

/// Key columns of a referenced table, in key order.
const KEY_COLUMNS: &str = "SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk";

fn param(text: &str) -> Vec<SqlValue> {
    vec![SqlValue::Text(text.to_owned())]
}

/// The catalog's spelling of a table name, if there is such a table.
pub fn catalog_name(conn: &Connection, name: &str) -> Result<Option<String>> {
    Ok(query(conn, TABLE, &param(name))?
        .first()
        .map(|row| text_of(&row[0])))
}

/// Whether a column default makes a new random value (a generated key such
/// as `lower(hex(randomblob(16)))`).
pub fn is_random_default(default: Option<&str>) -> bool {
    default.is_some_and(|d| d.to_ascii_lowercase().contains("randomblob("))
}

/// Reads a table's description from the catalog (blocking).
pub fn describe(conn: &Connection, table: &TableName, database: &str) -> Result<TableSchema> {
    let missing = || {
        ConnectorError::schema(format!(
            "table {table} does not exist in database {database}"
        ))
    };
    if table.schema.as_deref().is_some_and(|s| s != "main") {
        return Err(missing());
    }
    let name = catalog_name(conn, &table.name)?.ok_or_else(missing)?;
    let without_rowid = query(conn, WITHOUT_ROWID, &param(&name))?
        .first()
        .and_then(|row| int_of(&row[0]))
        .unwrap_or(0)
        != 0;

    let rows = query(conn, COLUMNS, &param(&name))?;
    let mut key: Vec<(i64, String)> = rows
        .iter()
        .filter_map(|r| {
            int_of(&r[4])
                .filter(|pk| *pk > 0)
                .map(|pk| (pk, text_of(&r[0])))
        })
        .collect();
    key.sort();
    let primary_key: Vec<String> = key.into_iter().map(|(_, name)| name).collect();
    // A single key column that is the rowid: SQLite makes no index for it.
    let rowid_key = !without_rowid
        && primary_key.len() == 1
        && query(conn, KEY_INDEXES, &param(&name))?
            .first()
            .and_then(|r| int_of(&r[0]))
            == Some(0);

    let columns = rows
        .iter()
        .map(|row| {
            let column = text_of(&row[0]);
            let declared = text_of(&row[1]);
            let in_key = primary_key.contains(&column);
            let computed = matches!(int_of(&row[5]), Some(2 | 3));
            let default = match &row[3] {
                SqlValue::Null => None,
                value => Some(text_of(value)),
            };
            let rowid = rowid_key && in_key;
            let data_type = data_type_of(&declared);
            let generated = rowid || computed || is_random_default(default.as_deref());
            Column {
                data_type,
                native_type: native_type_of(&declared),
                // The rowid is never NULL; nor is a WITHOUT ROWID table's key.
                nullable: int_of(&row[2]) == Some(0) && !rowid && !(without_rowid && in_key),
                generated,
                always_generated: computed,
                has_default: default.is_some() && !generated,
                // SQLite enforces no length, and stores any UTF-8.
                capacity: Capacity {
                    charset: (data_type == DataType::Text).then_some(Charset::Unicode),
                    ..Capacity::default()
                },
                name: column,
            }
        })
        .collect();

    let mut foreign_keys: Vec<(i64, ForeignKey)> = Vec::new();
    for row in query(conn, FOREIGN_KEYS, &param(&name))? {
        let id = int_of(&row[0]).unwrap_or(-1);
        let written = text_of(&row[1]);
        let referenced = catalog_name(conn, &written)?.unwrap_or(written);
        let column = text_of(&row[2]);
        // NULL: the referenced table's primary key, resolved below.
        let referenced_column = match &row[3] {
            SqlValue::Null => None,
            value => Some(text_of(value)),
        };
        match foreign_keys.last_mut() {
            Some((last, fk)) if *last == id => {
                fk.columns.push(column);
                fk.referenced_columns
                    .push(referenced_column.unwrap_or_default());
            }
            _ => foreign_keys.push((
                id,
                ForeignKey {
                    columns: vec![column],
                    referenced_table: TableName::new(None, &referenced),
                    referenced_columns: vec![referenced_column.unwrap_or_default()],
                },
            )),
        }
    }
    let mut resolved = Vec::with_capacity(foreign_keys.len());
    for (_, mut fk) in foreign_keys {
        if fk.referenced_columns.iter().any(String::is_empty) {
            let keys: Vec<String> = query(conn, KEY_COLUMNS, &param(&fk.referenced_table.name))?
                .iter()
                .map(|r| text_of(&r[0]))
                .collect();
            if keys.len() != fk.columns.len() {
                // SQLite itself refuses to use such a key ("foreign key
                // mismatch"): it references nothing.
                tracing::warn!(
                    table = %name,
                    referenced = %fk.referenced_table,
                    "foreign key ({}) does not match the referenced table's primary key; ignored",
                    fk.columns.join(", ")
                );
                continue;
            }
            fk.referenced_columns = keys;
        }
        resolved.push(fk);
    }

    Ok(TableSchema {
        name: TableName::new(None, &name),
        columns,
        primary_key,
        foreign_keys: resolved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_defaults_are_generated_keys() {
        assert!(is_random_default(Some("lower(hex(randomblob(16)))")));
        assert!(is_random_default(Some("(RANDOMBLOB(16))")));
        assert!(!is_random_default(Some("'randomblob'")));
        assert!(!is_random_default(None));
    }
}
