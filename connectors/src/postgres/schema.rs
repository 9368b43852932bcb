//! `describe`: a table's columns, key and foreign keys from `pg_catalog`.

use tokio_postgres::Client;

use crate::error::{ConnectorError, Result};
use crate::schema::{Capacity, Charset, Column, ForeignKey, TableName, TableSchema};

use super::client::{pg_error, schema_of};
use super::types::data_type;

/// The table's oid; ordinary and partitioned tables only.
const TABLE_OID: &str = "\
select c.oid
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')";

/// Columns in catalog order, with the base type of domains (domains over
/// domains included) and what generates their value.
const COLUMNS: &str = "\
with recursive cols as (
    select a.attnum, a.attname, a.atttypid, a.attnotnull, a.attidentity, a.attgenerated,
           -- A domain keeps its length or precision on the type.
           case when a.atttypmod >= 0 then a.atttypmod
                else (select t.typtypmod from pg_catalog.pg_type t where t.oid = a.atttypid)
           end as typmod,
           -- Without a length: `character` and `bit` alone mean length 1, so
           -- their unlimited forms are used instead.
           case a.atttypid
               when 'pg_catalog.bpchar'::pg_catalog.regtype then 'bpchar'
               when 'pg_catalog._bpchar'::pg_catalog.regtype then 'bpchar[]'
               when 'pg_catalog.bit'::pg_catalog.regtype then 'bit varying'
               when 'pg_catalog._bit'::pg_catalog.regtype then 'bit varying[]'
               else pg_catalog.format_type(a.atttypid, null)
           end as native_type,
           pg_catalog.pg_get_expr(d.adbin, d.adrelid) as default_expr
    from pg_catalog.pg_attribute a
    left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped
), base as (
    select c.attnum, t.oid as type_oid, t.typtype, t.typbasetype
    from cols c join pg_catalog.pg_type t on t.oid = c.atttypid
    union all
    select b.attnum, t.oid, t.typtype, t.typbasetype
    from base b join pg_catalog.pg_type t on t.oid = b.typbasetype
    where b.typtype = 'd'
)
select c.attname::text, c.native_type, c.attnotnull, c.attidentity::text, c.attgenerated::text,
       c.default_expr, bt.typname::text, bn.nspname::text, bt.typtype::text, c.typmod,
       (select pg_catalog.pg_encoding_to_char(d.encoding)::text from pg_catalog.pg_database d
        where d.datname = pg_catalog.current_database())
from cols c
join base b on b.attnum = c.attnum and b.typtype <> 'd'
join pg_catalog.pg_type bt on bt.oid = b.type_oid
join pg_catalog.pg_namespace bn on bn.oid = bt.typnamespace
order by c.attnum";

/// Primary-key columns in key order.
const PRIMARY_KEY: &str = "\
select a.attname::text
from pg_catalog.pg_index i
cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
where i.indrelid = $1 and i.indisprimary
order by k.ord";

/// Foreign keys, one row per column pair, in constraint column order.
const FOREIGN_KEYS: &str = "\
select con.conname::text, a.attname::text, fn.nspname::text, fc.relname::text, fa.attname::text
from pg_catalog.pg_constraint con
cross join lateral unnest(con.conkey, con.confkey) with ordinality as k(attnum, fattnum, ord)
join pg_catalog.pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.attnum
join pg_catalog.pg_class fc on fc.oid = con.confrelid
join pg_catalog.pg_namespace fn on fn.oid = fc.relnamespace
join pg_catalog.pg_attribute fa on fa.attrelid = con.confrelid and fa.attnum = k.fattnum
where con.conrelid = $1 and con.contype = 'f'
order by con.conname, k.ord";

/// Ordinary and partitioned tables outside the system schemas and Tandem's.
const TABLES: &str = "\
select n.nspname::text, c.relname::text
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and not c.relispartition
  and n.nspname not in ('pg_catalog', 'information_schema', 'tandem')
  and n.nspname not like 'pg\\_%'
order by 1, 2";

/// The tables a config may name.
pub(crate) async fn list_tables(client: &Client) -> Result<Vec<TableName>> {
    Ok(client
        .query(TABLES, &[])
        .await
        .map_err(|e| pg_error(e, "cannot list the tables".to_owned()))?
        .iter()
        .map(|row| TableName::new(Some(row.get(0)), row.get(1)))
        .collect())
}

/// Defaults that generate a fresh key: sequences and UUID generators.
fn default_generates(default: &str) -> bool {
    ["nextval(", "gen_random_uuid(", "uuid_generate_"]
        .iter()
        .any(|marker| default.contains(marker))
}

/// What a column of base type `base` with type modifier `typmod` can hold,
/// text stored in the database's `encoding`.
fn capacity(base: &str, typmod: i32, encoding: &str) -> Capacity {
    let mut capacity = Capacity::default();
    match base {
        "int2" => capacity.int_range = Some(Capacity::signed(2)),
        "int4" => capacity.int_range = Some(Capacity::signed(4)),
        "int8" => capacity.int_range = Some(Capacity::signed(8)),
        "numeric" if typmod >= 4 => {
            let packed = (typmod - 4) as u32;
            capacity.digits = Some((packed >> 16, packed & 0x7ff));
        }
        _ => {}
    }
    if matches!(base, "text" | "varchar" | "bpchar" | "name" | "citext") {
        if matches!(base, "varchar" | "bpchar") && typmod >= 4 {
            capacity.max_chars = Some((typmod - 4) as u32);
        }
        capacity.charset = Some(match encoding {
            "UTF8" => Charset::Unicode,
            other => Charset::Legacy(other.to_owned()),
        });
    }
    capacity
}

/// Reads `table` from the catalog.
pub(crate) async fn describe(client: &Client, table: &TableName) -> Result<TableSchema> {
    let context = || format!("cannot describe table {table}");
    let schema = schema_of(table);
    let oid: u32 = match client
        .query_opt(TABLE_OID, &[&schema, &table.name])
        .await
        .map_err(|e| pg_error(e, context()))?
    {
        Some(row) => row.get(0),
        None => {
            let database: String = client
                .query_one("select pg_catalog.current_database()::text", &[])
                .await
                .map_err(|e| pg_error(e, context()))?
                .get(0);
            return Err(ConnectorError::schema(format!(
                "table {table} does not exist in database {database}"
            )));
        }
    };

    let columns = client
        .query(COLUMNS, &[&oid])
        .await
        .map_err(|e| pg_error(e, context()))?
        .iter()
        .map(|row| {
            let identity: String = row.get(3);
            let generated_kind: String = row.get(4);
            let default: Option<String> = row.get(5);
            let base_name: String = row.get(6);
            let base_schema: String = row.get(7);
            let typtype: String = row.get(8);
            let typmod: i32 = row.get(9);
            let encoding: String = row.get(10);
            let always = identity == "a" || generated_kind == "s";
            let generated =
                always || identity == "d" || default.as_deref().is_some_and(default_generates);
            Column {
                name: row.get(0),
                data_type: data_type(&base_name, &base_schema, &typtype),
                native_type: row.get(1),
                nullable: !row.get::<_, bool>(2),
                generated,
                always_generated: always,
                has_default: default.is_some() && !generated,
                capacity: capacity(&base_name, typmod, &encoding),
            }
        })
        .collect();

    let primary_key = client
        .query(PRIMARY_KEY, &[&oid])
        .await
        .map_err(|e| pg_error(e, context()))?
        .iter()
        .map(|row| row.get(0))
        .collect();

    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    let mut current: Option<String> = None;
    for row in client
        .query(FOREIGN_KEYS, &[&oid])
        .await
        .map_err(|e| pg_error(e, context()))?
    {
        let name: String = row.get(0);
        if current.as_deref() != Some(name.as_str()) {
            let referenced_schema: String = row.get(2);
            let referenced_name: String = row.get(3);
            foreign_keys.push(ForeignKey {
                columns: Vec::new(),
                referenced_table: TableName::new(Some(&referenced_schema), &referenced_name),
                referenced_columns: Vec::new(),
            });
            current = Some(name);
        }
        if let Some(fk) = foreign_keys.last_mut() {
            fk.columns.push(row.get(1));
            fk.referenced_columns.push(row.get(4));
        }
    }

    Ok(TableSchema {
        name: TableName::new(Some(schema), &table.name),
        columns,
        primary_key,
        foreign_keys,
    })
}
