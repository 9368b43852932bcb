//! Many rows per statement: the SQL of the applying transaction's batch
//! methods.
//!
//! Values travel as one text array per column and come back out of
//! `unnest`, so a statement's text depends on the table and the columns
//! written, never on the number of rows: it is prepared once and reused for
//! every batch, and no batch can run into the limit of 65,535 parameters.

use crate::error::Result;
use crate::schema::{Column, TableSchema};
use crate::sql::comma;
use crate::value::{Key, Row};

use super::client::SQL;
use super::types::{key_params, write_text};

/// `u.c0::integer, u.c1::text`: the unnested text columns named `prefix`
/// plus a position, cast to the columns' types.
fn casts(prefix: &str, columns: &[&Column]) -> Vec<String> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("u.{prefix}{i}::{}", c.native_type))
        .collect()
}

/// `unnest($1::text[], $2::text[]) as u(k0, k1, c0)` for the given column
/// name prefixes and counts, parameters numbered from `first`.
fn unnest(first: usize, names: &[(&str, usize)], ordinality: bool) -> String {
    let mut params = Vec::new();
    let mut aliases = Vec::new();
    for (prefix, count) in names {
        for i in 0..*count {
            params.push(format!("${}::text[]", first + params.len()));
            aliases.push(format!("{prefix}{i}"));
        }
    }
    if ordinality {
        aliases.push("n".to_owned());
    }
    format!(
        "unnest({}){} as u({})",
        params.join(", "),
        if ordinality { " with ordinality" } else { "" },
        aliases.join(", ")
    )
}

/// The select list of [`super::types::select_list`], qualified by `alias`.
fn select_list_of(table: &TableSchema, alias: &str) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("{alias}.{}::text", SQL.ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(t."a", t."b")`
fn key_tuple(columns: &[&Column], alias: &str) -> String {
    let names = columns.iter().map(|c| SQL.column(Some(alias), &c.name));
    format!("({})", comma(names))
}

/// Column-wise text arrays of `keys`: one array per key column.
pub(super) fn key_arrays(
    table: &TableSchema,
    columns: &[&Column],
    keys: &[Key],
) -> Result<Vec<Vec<Option<String>>>> {
    let mut arrays = vec![Vec::with_capacity(keys.len()); columns.len()];
    for key in keys {
        for (array, value) in arrays.iter_mut().zip(key_params(table, columns, key)?) {
            array.push(value);
        }
    }
    Ok(arrays)
}

/// Column-wise text arrays of the `columns` of `rows` (a column a row does
/// not hold is NULL; callers pass rows holding the same columns).
pub(super) fn row_arrays(
    table: &TableSchema,
    columns: &[&Column],
    rows: &[&Row],
) -> Result<Vec<Vec<Option<String>>>> {
    let mut arrays = vec![Vec::with_capacity(rows.len()); columns.len()];
    for row in rows {
        for (array, column) in arrays.iter_mut().zip(columns) {
            let value = row.get(&column.name).cloned().unwrap_or(crate::Value::Null);
            array.push(write_text(&table.name, column, &value)?);
        }
    }
    Ok(arrays)
}

/// Locks and reads the rows whose keys are in the arrays (`$1..`).
pub(super) fn fetch_many_sql(table: &TableSchema, key: &[&Column]) -> String {
    format!(
        "select {} from {} as t where {} in (select {} from {}) for update of t",
        select_list_of(table, "t"),
        SQL.table(&table.name),
        key_tuple(key, "t"),
        casts("k", key).join(", "),
        unnest(1, &[("k", key.len())], false)
    )
}

/// Inserts the rows of the arrays (`$1..`, one per column of `columns`) in
/// array order and returns them as written, in the same order.
pub(super) fn insert_many_sql(table: &TableSchema, columns: &[&Column]) -> String {
    let overriding = columns.iter().any(|c| c.always_generated);
    format!(
        "insert into {} as t ({}){} select {} from {} order by u.n returning {}",
        SQL.table(&table.name),
        SQL.columns(columns.iter().map(|c| c.name.as_str())),
        if overriding {
            " overriding system value"
        } else {
            ""
        },
        casts("c", columns).join(", "),
        unnest(1, &[("c", columns.len())], true),
        select_list_of(table, "t")
    )
}

/// Sets `columns` from the arrays on the rows with the keys of the arrays
/// (`$1..` the key columns, then one per column) and returns the rows as
/// written, in no particular order.
pub(super) fn update_many_sql(table: &TableSchema, key: &[&Column], columns: &[&Column]) -> String {
    let sets: Vec<String> = columns
        .iter()
        .zip(casts("c", columns))
        .map(|(c, cast)| format!("{} = {cast}", SQL.ident(&c.name)))
        .collect();
    let matches: Vec<String> = key
        .iter()
        .zip(casts("k", key))
        .map(|(c, cast)| format!("t.{} = {cast}", SQL.ident(&c.name)))
        .collect();
    format!(
        "update {} as t set {} from {} where {} returning {}",
        SQL.table(&table.name),
        sets.join(", "),
        unnest(1, &[("k", key.len()), ("c", columns.len())], false),
        matches.join(" and "),
        select_list_of(table, "t")
    )
}

/// Deletes the rows whose keys are in the arrays (`$1..`).
pub(super) fn delete_many_sql(table: &TableSchema, key: &[&Column]) -> String {
    format!(
        "delete from {} as t where {} in (select {} from {})",
        SQL.table(&table.name),
        key_tuple(key, "t"),
        casts("k", key).join(", "),
        unnest(1, &[("k", key.len())], false)
    )
}

/// Removes a pair's (`$1`) mapping rows naming any of the source keys
/// (`$2`) or target keys (`$3`).
///
/// Two deletes, each with the full condition of one key index, rather than
/// one `... or ...`. What keeps them fast as the table grows is its
/// statistics (see `statistics.rs`): without any, either form scanned the
/// whole pair (330 ms per batch of 1,000 at a million rows). A row matching
/// both is deleted once.
pub(super) const FORGET_LINKS_SQL: &str = "with by_source as (
         delete from tandem.id_map where pair = $1::text and source_key = any($2::text[])
     )
     delete from tandem.id_map where pair = $1::text and target_key = any($3::text[])";

/// Records a pair's (`$1`) key pairs, source keys `$2`, target keys `$3`,
/// when none of them is in the table yet (a unique violation otherwise).
/// A third cheaper than [`record_copies_sql`]'s upsert, whose conflict
/// check costs an extra look into the index for every row.
pub(super) const INSERT_COPIES_SQL: &str =
    "insert into tandem.id_map (pair, source_key, target_key)
     select $1::text, u.s, u.t from unnest($2::text[], $3::text[]) as u(s, t)";

/// Records a pair's (`$1`) key pairs, source keys `$2`, target keys `$3`,
/// of copies made on the side given by `copies_on_target`. A row that
/// already names a copied record (the pair of an earlier copy of it, gone
/// since) is taken over by the new pair: one statement instead of a delete
/// and an insert, and the delete was the costlier (the planner scans the
/// table for a thousand keys while it is small). A stale row naming the
/// new copy's key fails the statement instead (the caller applies such a
/// batch again a record at a time, which forgets first).
pub(super) fn record_copies_sql(copies_on_target: bool) -> &'static str {
    if copies_on_target {
        "insert into tandem.id_map (pair, source_key, target_key)
         select $1::text, u.s, u.t from unnest($2::text[], $3::text[]) as u(s, t)
         on conflict (pair, source_key) do update
         set target_key = excluded.target_key, created_at = excluded.created_at"
    } else {
        "insert into tandem.id_map (pair, source_key, target_key)
         select $1::text, u.s, u.t from unnest($2::text[], $3::text[]) as u(s, t)
         on conflict (pair, target_key) do update
         set source_key = excluded.source_key, created_at = excluded.created_at"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DataType, TableName};

    fn table() -> TableSchema {
        TableSchema::new(
            TableName::new(Some("app"), "order line"),
            vec![
                Column::new("id", DataType::Int, "bigint").not_null(),
                Column::new("name", DataType::Text, "text"),
            ],
            vec!["id".into()],
        )
    }

    #[test]
    fn statements_do_not_depend_on_the_number_of_rows_and_quote_every_name() {
        let t = table();
        let key: Vec<&Column> = vec![&t.columns[0]];
        let cols: Vec<&Column> = vec![&t.columns[1]];
        assert_eq!(
            fetch_many_sql(&t, &key),
            "select t.\"id\"::text, t.\"name\"::text from \"app\".\"order line\" as t \
             where (t.\"id\") in (select u.k0::bigint from unnest($1::text[]) as u(k0)) for update of t"
        );
        assert_eq!(
            insert_many_sql(&t, &cols),
            "insert into \"app\".\"order line\" as t (\"name\") select u.c0::text \
             from unnest($1::text[]) with ordinality as u(c0, n) order by u.n \
             returning t.\"id\"::text, t.\"name\"::text"
        );
        assert_eq!(
            update_many_sql(&t, &key, &cols),
            "update \"app\".\"order line\" as t set \"name\" = u.c0::text \
             from unnest($1::text[], $2::text[]) as u(k0, c0) where t.\"id\" = u.k0::bigint \
             returning t.\"id\"::text, t.\"name\"::text"
        );
        assert_eq!(
            delete_many_sql(&t, &key),
            "delete from \"app\".\"order line\" as t where (t.\"id\") in \
             (select u.k0::bigint from unnest($1::text[]) as u(k0))"
        );
    }
}
