//! `describe`: a table's columns, key and foreign keys from the catalog views
//! (`sys.tables`, `sys.columns`, `sys.types`, `sys.indexes`,
//! `sys.foreign_key_columns`).
//!
//! Catalog names compare by the database's collation, often case
//! insensitive; a table is found only under its exact name (the name the
//! triggers record and the agent asks for), and a near miss is named in the
//! error.

use tiberius::ColumnData;

use super::client::{classify, display_name, query_rows, schema_of, Client, Param, TdsClient};
use super::types::{data_type_of, native_type_of};
use crate::error::{ConnectorError, Result};
use crate::schema::{Capacity, Charset, Column, ForeignKey, TableName, TableSchema};

/// User tables with this schema and name (by the catalog's collation).
const TABLE: &str = "SELECT t.object_id, s.name, t.name \
     FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
     WHERE s.name = @P1 AND t.name = @P2";

/// Columns in catalog order: name, base type, scale, nullable, identity,
/// computed, a NEWID()/NEWSEQUENTIALID() default, temporal period column,
/// length in bytes (-1: `max`), precision, any default, collation.
const COLUMNS: &str = "SELECT c.name, ISNULL(bt.name, ut.name), c.scale, c.is_nullable, \
     c.is_identity, c.is_computed, \
     CAST(CASE WHEN LOWER(dc.definition) LIKE N'%newid()%' \
               OR LOWER(dc.definition) LIKE N'%newsequentialid()%' THEN 1 ELSE 0 END AS bit), \
     c.generated_always_type, c.max_length, c.precision, \
     CAST(CASE WHEN c.default_object_id <> 0 THEN 1 ELSE 0 END AS bit), c.collation_name \
     FROM sys.columns AS c \
     JOIN sys.types AS ut ON ut.user_type_id = c.user_type_id \
     LEFT JOIN sys.types AS bt ON bt.user_type_id = c.system_type_id \
     LEFT JOIN sys.default_constraints AS dc ON dc.object_id = c.default_object_id \
     WHERE c.object_id = @P1 \
     ORDER BY c.column_id";

/// Primary-key columns in key order.
const PRIMARY_KEY: &str = "SELECT c.name \
     FROM sys.indexes AS i \
     JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
     JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
     WHERE i.object_id = @P1 AND i.is_primary_key = 1 AND ic.key_ordinal > 0 \
     ORDER BY ic.key_ordinal";

/// Foreign keys, one row per column pair, in constraint column order.
const FOREIGN_KEYS: &str = "SELECT fk.object_id, pc.name, rs.name, rt.name, rc.name \
     FROM sys.foreign_keys AS fk \
     JOIN sys.foreign_key_columns AS fkc ON fkc.constraint_object_id = fk.object_id \
     JOIN sys.columns AS pc \
       ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id \
     JOIN sys.objects AS rt ON rt.object_id = fkc.referenced_object_id \
     JOIN sys.schemas AS rs ON rs.schema_id = rt.schema_id \
     JOIN sys.columns AS rc \
       ON rc.object_id = fkc.referenced_object_id AND rc.column_id = fkc.referenced_column_id \
     WHERE fk.parent_object_id = @P1 \
     ORDER BY fk.name, fk.object_id, fkc.constraint_column_id";

/// User tables outside Tandem's schema.
const TABLES: &str = "SELECT s.name, t.name FROM sys.tables AS t \
     JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
     WHERE t.is_ms_shipped = 0 AND s.name <> N'tandem' ORDER BY s.name, t.name";

/// The tables a config may name.
pub(crate) async fn list_tables(client: &Client) -> Result<Vec<TableName>> {
    let mut conn = client.conn().await?;
    Ok(query_rows(&mut conn, TABLES, Vec::new())
        .await
        .map_err(|e| classify(e).context("cannot list the tables"))?
        .iter()
        .map(|row| TableName::new(Some(&text(row, 0)), &text(row, 1)))
        .collect())
}

fn text(row: &tiberius::Row, i: usize) -> String {
    row.get::<&str, _>(i).unwrap_or_default().to_owned()
}

fn flag(row: &tiberius::Row, i: usize) -> bool {
    row.get::<bool, _>(i).unwrap_or(false)
}

fn int(row: &tiberius::Row, i: usize) -> i64 {
    match row.get_column_data(i) {
        Ok(ColumnData::U8(Some(v))) => i64::from(*v),
        Ok(ColumnData::I16(Some(v))) => i64::from(*v),
        Ok(ColumnData::I32(Some(v))) => i64::from(*v),
        Ok(ColumnData::I64(Some(v))) => *v,
        _ => 0,
    }
}

/// What the catalog says about one column (a row of [`COLUMNS`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct CatalogColumn {
    pub(crate) name: String,
    /// The system type, lowercase (alias types resolved).
    pub(crate) base: String,
    pub(crate) scale: u8,
    pub(crate) nullable: bool,
    pub(crate) identity: bool,
    pub(crate) computed: bool,
    /// A `NEWID()` or `NEWSEQUENTIALID()` default.
    pub(crate) uuid_default: bool,
    /// A system-versioning period column (`GENERATED ALWAYS AS ROW ...`).
    pub(crate) period: bool,
    /// Length in bytes; -1 for `max`.
    pub(crate) max_length: i64,
    pub(crate) precision: u8,
    /// Any default constraint.
    pub(crate) has_default: bool,
    /// The collation of a character column (its code page, or `_UTF8`).
    pub(crate) collation: String,
}

impl CatalogColumn {
    fn of(row: &tiberius::Row) -> CatalogColumn {
        CatalogColumn {
            name: text(row, 0),
            base: text(row, 1).to_ascii_lowercase(),
            scale: u8::try_from(int(row, 2)).unwrap_or(0),
            nullable: flag(row, 3),
            identity: flag(row, 4),
            computed: flag(row, 5),
            uuid_default: flag(row, 6),
            period: int(row, 7) != 0,
            max_length: int(row, 8),
            precision: u8::try_from(int(row, 9)).unwrap_or(0),
            has_default: flag(row, 10),
            collation: text(row, 11),
        }
    }

    /// What the column can hold within its type.
    fn capacity(&self) -> Capacity {
        let int_range = match self.base.as_str() {
            "tinyint" => Some(Capacity::unsigned(1)),
            "smallint" => Some(Capacity::signed(2)),
            "int" => Some(Capacity::signed(4)),
            "bigint" => Some(Capacity::signed(8)),
            _ => None,
        };
        let mut capacity = Capacity {
            int_range,
            ..Capacity::default()
        };
        if matches!(self.base.as_str(), "decimal" | "numeric") {
            capacity.digits = Some((u32::from(self.precision), u32::from(self.scale)));
        }
        // `text` and `ntext` report the size of a pointer, `max` -1: only
        // the (n)char and (n)varchar lengths are limits.
        let limited = self.max_length > 0 && !matches!(self.base.as_str(), "text" | "ntext");
        match self.base.as_str() {
            "nvarchar" | "nchar" | "ntext" => {
                capacity.charset = Some(Charset::Unicode);
                capacity.max_chars = limited.then_some((self.max_length / 2) as u32);
            }
            "varchar" | "char" | "text" => {
                let utf8 = self.collation.to_ascii_uppercase().ends_with("_UTF8");
                capacity.charset = Some(if utf8 {
                    Charset::Unicode
                } else {
                    Charset::Legacy(self.collation.clone())
                });
                // With a UTF-8 collation the length counts bytes, not
                // characters: no limit in characters is known.
                capacity.max_chars = (limited && !utf8).then_some(self.max_length as u32);
            }
            _ => {}
        }
        capacity
    }

    /// The column: identity columns and NEWID() defaults are generated;
    /// computed, rowversion and period columns are generated always (the
    /// server refuses values for them).
    pub(crate) fn column(self) -> Column {
        let rowversion = matches!(self.base.as_str(), "timestamp" | "rowversion");
        let always = self.computed || rowversion || self.period;
        let capacity = self.capacity();
        let generated = always || self.identity || self.uuid_default;
        Column {
            data_type: data_type_of(&self.base),
            native_type: native_type_of(&self.base, self.scale),
            nullable: self.nullable,
            generated,
            always_generated: always,
            has_default: self.has_default && !generated,
            capacity,
            name: self.name,
        }
    }
}

/// Runs one catalog query on `conn`.
async fn catalog(
    conn: &mut TdsClient,
    table: &TableName,
    sql: &str,
    params: Vec<Param>,
) -> Result<Vec<tiberius::Row>> {
    query_rows(conn, sql, params)
        .await
        .map_err(|e| classify(e).context(format!("cannot describe table {table}")))
}

/// Reads a table's description from the catalog.
pub(crate) async fn describe(client: &Client, table: &TableName) -> Result<TableSchema> {
    let schema = schema_of(table);
    let mut conn = client.conn().await?;

    let found = catalog(
        &mut conn,
        table,
        TABLE,
        vec![
            Param(ColumnData::String(Some(schema.to_owned().into()))),
            Param(ColumnData::String(Some(table.name.clone().into()))),
        ],
    )
    .await?;
    let exact = found
        .iter()
        .find(|r| text(r, 1) == schema && text(r, 2) == table.name);
    let object_id = match exact {
        Some(row) => row.get::<i32, _>(0).unwrap_or_default(),
        None => {
            let hint = found
                .first()
                .map(|r| {
                    format!(
                        " ({}.{} does: names are matched exactly)",
                        text(r, 1),
                        text(r, 2)
                    )
                })
                .unwrap_or_default();
            return Err(ConnectorError::schema(format!(
                "table {} does not exist in database {}{hint}",
                display_name(table),
                client.database
            )));
        }
    };
    let id = || vec![Param(ColumnData::I32(Some(object_id)))];

    let columns = catalog(&mut conn, table, COLUMNS, id())
        .await?
        .iter()
        .map(|row| CatalogColumn::of(row).column())
        .collect();

    let primary_key = catalog(&mut conn, table, PRIMARY_KEY, id())
        .await?
        .iter()
        .map(|row| text(row, 0))
        .collect();

    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    let mut current: Option<i32> = None;
    for row in catalog(&mut conn, table, FOREIGN_KEYS, id()).await? {
        let constraint = row.get::<i32, _>(0);
        if current != constraint {
            foreign_keys.push(ForeignKey {
                columns: Vec::new(),
                referenced_table: TableName::new(Some(&text(&row, 2)), &text(&row, 3)),
                referenced_columns: Vec::new(),
            });
            current = constraint;
        }
        if let Some(fk) = foreign_keys.last_mut() {
            fk.columns.push(text(&row, 1));
            fk.referenced_columns.push(text(&row, 4));
        }
    }

    Ok(TableSchema {
        name: TableName::new(Some(schema), &table.name),
        columns,
        primary_key,
        foreign_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::DataType;

    fn facts(base: &str) -> CatalogColumn {
        CatalogColumn {
            name: "c".into(),
            base: base.into(),
            ..CatalogColumn::default()
        }
    }

    #[test]
    fn generated_columns_are_recognised() {
        let identity = CatalogColumn {
            identity: true,
            ..facts("int")
        }
        .column();
        assert!(identity.generated && !identity.always_generated);
        assert_eq!(identity.data_type, DataType::Int);
        let computed = CatalogColumn {
            computed: true,
            ..facts("int")
        }
        .column();
        assert!(computed.generated && computed.always_generated);
        let token = CatalogColumn {
            uuid_default: true,
            ..facts("uniqueidentifier")
        }
        .column();
        assert!(token.generated && !token.always_generated);
        assert_eq!(token.data_type, DataType::Uuid);
        let version = facts("timestamp").column();
        assert!(version.generated && version.always_generated);
        assert_eq!(version.native_type, "binary(8)");
        let period = CatalogColumn {
            period: true,
            ..facts("datetime2")
        }
        .column();
        assert!(period.always_generated);
        let plain = CatalogColumn {
            scale: 3,
            nullable: true,
            ..facts("decimal")
        }
        .column();
        assert!(!plain.generated && plain.nullable);
        assert_eq!(plain.native_type, "decimal(38, 3)");
        assert_eq!(plain.name, "c");
    }

    #[test]
    fn columns_say_what_they_can_hold() {
        let name = CatalogColumn {
            max_length: 80,
            has_default: true,
            ..facts("nvarchar")
        }
        .column();
        assert_eq!(name.capacity.max_chars, Some(40));
        assert_eq!(name.capacity.charset, Some(Charset::Unicode));
        assert!(name.has_default);
        let legacy = CatalogColumn {
            max_length: 20,
            collation: "SQL_Latin1_General_CP1_CI_AS".into(),
            ..facts("varchar")
        }
        .column();
        assert_eq!(
            legacy.capacity.charset,
            Some(Charset::Legacy("SQL_Latin1_General_CP1_CI_AS".into()))
        );
        let utf8 = CatalogColumn {
            max_length: -1,
            collation: "Latin1_General_100_CI_AS_SC_UTF8".into(),
            ..facts("varchar")
        }
        .column();
        assert_eq!(utf8.capacity.charset, Some(Charset::Unicode));
        assert_eq!(utf8.capacity.max_chars, None);
        let notes = CatalogColumn {
            max_length: 16,
            ..facts("ntext")
        }
        .column();
        assert_eq!(
            notes.capacity.max_chars, None,
            "a pointer's size is no limit"
        );
        assert_eq!(facts("tinyint").column().capacity.int_range, Some((0, 255)));
        let money = CatalogColumn {
            precision: 12,
            scale: 2,
            ..facts("decimal")
        }
        .column();
        assert_eq!(money.capacity.digits, Some((12, 2)));
        let identity = CatalogColumn {
            identity: true,
            has_default: true,
            ..facts("int")
        }
        .column();
        assert!(!identity.has_default, "a generated key is not a default");
        assert!(TABLES.contains("N'tandem'"), "Tandem's schema is left out");
    }

    #[test]
    fn catalog_queries_are_parameterized_and_ordered() {
        for sql in [TABLE, COLUMNS, PRIMARY_KEY, FOREIGN_KEYS] {
            assert!(sql.contains("@P1"), "{sql}");
        }
        assert!(COLUMNS.ends_with("ORDER BY c.column_id"));
        assert!(PRIMARY_KEY.ends_with("ORDER BY ic.key_ordinal"));
        assert!(FOREIGN_KEYS.ends_with("fkc.constraint_column_id"));
        assert!(TABLE.contains("s.name = @P1 AND t.name = @P2"));
    }
}
