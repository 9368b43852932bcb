//! The installed SQL: schema `tandem` (change table, mapping table, version
//! row) from the upgrade steps in `sql/postgres/upgrade/`, and one capture
//! trigger per table, from the files in `sql/postgres/`.

use deadpool_postgres::Pool;
use tokio_postgres::Client;

use crate::connector::{Installation, SCHEMA_VERSION};
use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{Column, DataType, TableName, TableSchema};
use crate::{template, upgrade};

use super::client::{pg_error, pool_error, qualified, quote_ident, quote_literal, schema_of};

const CAPTURE_TRIGGER_SQL: &str = include_str!("../../../sql/postgres/capture_trigger.sql");
const UNINSTALL_TRIGGER_SQL: &str = include_str!("../../../sql/postgres/uninstall_trigger.sql");
const UNINSTALL_SQL: &str = include_str!("../../../sql/postgres/uninstall.sql");

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1), in bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The name a table has in the change table: `schema.table`.
pub(crate) fn display_name(table: &TableName) -> String {
    format!("{}.{}", schema_of(table), table.name)
}

/// The unquoted name of a table's capture function in schema `tandem`:
/// `schema.table` when that fits and is unambiguous (exactly one dot),
/// otherwise a prefix of it plus `..` and a hash of both names. A plain name
/// has one dot and a hashed one at least two, so two tables never share a
/// function.
pub(crate) fn capture_function_name(table: &TableName) -> String {
    let schema = schema_of(table);
    let plain = display_name(table);
    if !schema.contains('.') && !table.name.contains('.') && plain.len() <= MAX_IDENTIFIER_BYTES {
        return plain;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(schema.len() as u64).to_le_bytes());
    hasher.update(schema.as_bytes());
    hasher.update(table.name.as_bytes());
    let hash = hasher.finalize().to_hex();
    let suffix = format!("..{}", &hash[..8]);
    let mut end = plain.len().min(MAX_IDENTIFIER_BYTES - suffix.len());
    while !plain.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &plain[..end])
}

/// `tandem."schema.table"`: the capture function, quoted.
pub(crate) fn capture_function(table: &TableName) -> String {
    format!("tandem.{}", quote_ident(&capture_function_name(table)))
}

/// One key column as a `jsonb_build_array` element. Decimals go as text
/// (a JSON number would lose digits), bytes as `\x` hex whatever the
/// session's `bytea_output`; the rest as themselves (JSON prints dates and
/// times in ISO form).
fn key_json(record: &str, column: &Column) -> String {
    let value = format!("{record}.{}", quote_ident(&column.name));
    match column.data_type {
        DataType::Decimal => format!("{value}::text"),
        DataType::Bytes => format!("E'\\\\x' || pg_catalog.encode({value}, 'hex')"),
        _ => value,
    }
}

/// The statements that install the capture function and trigger of `table`.
pub(crate) fn capture_statements(table: &TableSchema) -> Result<Vec<String>> {
    if table.primary_key.is_empty() {
        return Err(ConnectorError::schema(format!(
            "table {} has no primary key: Tandem needs one to capture its changes",
            table.name
        )));
    }
    let key: Vec<&Column> = table.key_columns().collect();
    if key.len() != table.primary_key.len() {
        return Err(ConnectorError::internal(format!(
            "the primary key of table {} names a column it does not describe",
            table.name
        )));
    }
    let list =
        |f: &dyn Fn(&Column) -> String| key.iter().map(|c| f(c)).collect::<Vec<_>>().join(", ");
    let function = capture_function(&table.name);
    let relation = qualified(&table.name);
    let values = [
        ("function", function.clone()),
        (
            "function_regprocedure",
            quote_literal(&format!("{function}()")),
        ),
        ("table", relation.clone()),
        ("table_regclass", quote_literal(&relation)),
        ("table_name", quote_literal(&display_name(&table.name))),
        (
            "old_key",
            list(&|c| format!("old.{}", quote_ident(&c.name))),
        ),
        (
            "new_key",
            list(&|c| format!("new.{}", quote_ident(&c.name))),
        ),
        ("old_key_json", list(&|c| key_json("old", c))),
        ("new_key_json", list(&|c| key_json("new", c))),
    ];
    // A dollar-quote tag that no name contains.
    let mut tag = "$tandem$".to_owned();
    let mut n = 0;
    while values.iter().any(|(_, v)| v.contains(&tag)) {
        n += 1;
        tag = format!("$tandem{n}$");
    }
    let mut values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    values.push(("tag", &tag));
    Ok(template::fill_statements(CAPTURE_TRIGGER_SQL, &values))
}

/// The full install script for a database at version `installed`: the
/// upgrade steps it lacks, then the capture triggers of `tables`.
pub(crate) fn install_statements(
    installed: Option<i32>,
    tables: &[TableSchema],
) -> Result<Vec<String>> {
    let mut statements = upgrade::script(Engine::Postgres, installed, SCHEMA_VERSION)?;
    for table in tables {
        statements.extend(capture_statements(table)?);
    }
    Ok(statements)
}

/// The full uninstall script: the configured tables' triggers, then the
/// schema (whose functions take every other capture trigger with them).
pub(crate) fn uninstall_statements(tables: &[TableSchema]) -> Vec<String> {
    let mut statements = Vec::new();
    for table in tables {
        let relation = qualified(&table.name);
        statements.extend(template::fill_statements(
            UNINSTALL_TRIGGER_SQL,
            &[("table", &relation)],
        ));
    }
    statements.extend(template::statements(UNINSTALL_SQL));
    statements
}

/// Runs `statements` in one transaction (PostgreSQL DDL is transactional).
pub(crate) async fn run_script(pool: &Pool, address: &str, statements: &[String]) -> Result<()> {
    let mut client = pool.get().await.map_err(|e| pool_error(e, address))?;
    let transaction = client
        .transaction()
        .await
        .map_err(|e| pg_error(e, "cannot start the script's transaction"))?;
    // The script is idempotent: its `if exists` / `if not exists` notices
    // ("... does not exist, skipping") are expected, not news for the log.
    transaction
        .batch_execute("set local client_min_messages = warning")
        .await
        .map_err(|e| pg_error(e, "cannot start the script's transaction"))?;
    for (i, statement) in statements.iter().enumerate() {
        transaction.batch_execute(statement).await.map_err(|e| {
            pg_error(
                e,
                format!(
                    "script statement {} of {} ({}) failed",
                    i + 1,
                    statements.len(),
                    first_line(statement)
                ),
            )
        })?;
    }
    transaction
        .commit()
        .await
        .map_err(|e| pg_error(e, "cannot commit the script"))
}

/// The first line of a statement that is not a comment, shortened.
fn first_line(statement: &str) -> String {
    let line = statement
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--"))
        .unwrap_or("");
    let short: String = line.chars().take(60).collect();
    if short.len() < line.len() {
        format!("{short}...")
    } else {
        short
    }
}

const INSTALLATION_CONTEXT: &str = "cannot read what is installed";

/// The version `tandem.version` records; `None` when nothing is installed.
pub(crate) async fn installed_version(client: &Client) -> Result<Option<i32>> {
    let context = INSTALLATION_CONTEXT;
    let installed: bool = client
        .query_one(
            "select pg_catalog.to_regclass('tandem.version') is not null",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, context))?
        .get(0);
    if !installed {
        return Ok(None);
    }
    Ok(client
        .query_opt("select version from tandem.version", &[])
        .await
        .map_err(|e| pg_error(e, context))?
        .map(|row| row.get::<_, i32>(0)))
}

/// The installed version and the tables without an up-to-date trigger.
pub(crate) async fn installation(client: &Client, tables: &[TableSchema]) -> Result<Installation> {
    let context = INSTALLATION_CONTEXT;
    let version = installed_version(client).await?;
    let relations: Vec<String> = tables.iter().map(|t| qualified(&t.name)).collect();
    let functions: Vec<String> = tables
        .iter()
        .map(|t| format!("{}()", capture_function(&t.name)))
        .collect();
    let missing = client
        .query(
            "select u.n from unnest($1::text[], $2::text[]) with ordinality as u(rel, fn, n)
             where (select count(*) from pg_catalog.pg_trigger t
                 where t.tgrelid = pg_catalog.to_regclass(u.rel)
                   and t.tgname in ('tandem_capture', 'tandem_truncate')
                   and t.tgfoid = pg_catalog.to_regprocedure(u.fn)) < 2
             order by u.n",
            &[&relations, &functions],
        )
        .await
        .map_err(|e| pg_error(e, context))?
        .iter()
        .filter_map(|row| {
            let n: i64 = row.get(0);
            tables
                .get(usize::try_from(n - 1).ok()?)
                .map(|t| t.name.clone())
        })
        .collect();
    Ok(Installation {
        version,
        missing_triggers: missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: DataType) -> Column {
        Column::new(name, data_type, "integer").not_null()
    }

    fn table(schema: &str, name: &str, key: &[(&str, DataType)]) -> TableSchema {
        TableSchema::new(
            TableName::new(Some(schema), name),
            key.iter().map(|(n, t)| column(n, *t)).collect(),
            key.iter().map(|(n, _)| (*n).to_owned()).collect(),
        )
    }

    #[test]
    fn odd_names_are_quoted_in_trigger_and_function() {
        let t = table(
            "Sales",
            "we\"ird ü",
            &[("Order Id", DataType::Int), ("n", DataType::Decimal)],
        );
        let statements = capture_statements(&t).unwrap();
        assert_eq!(statements.len(), 2);
        let (function, trigger) = (&statements[0], &statements[1]);
        assert!(
            function.contains(
                "create or replace function tandem.\"Sales.we\"\"ird ü\"() returns trigger"
            ),
            "{function}"
        );
        assert!(function.contains("values ('Sales.we\"ird ü', 'I', pg_catalog.jsonb_build_array(new.\"Order Id\", new.\"n\"::text))"), "{function}");
        assert!(function.contains("row(old.\"Order Id\", old.\"n\") is distinct from row(new.\"Order Id\", new.\"n\")"), "{function}");
        assert!(
            function.contains("as $tandem$") && function.ends_with("$tandem$;"),
            "{function}"
        );
        assert!(
            trigger.contains("tgrelid = '\"Sales\".\"we\"\"ird ü\"'::regclass"),
            "{trigger}"
        );
        assert!(
            trigger.contains("tgfoid = 'tandem.\"Sales.we\"\"ird ü\"()'::regprocedure"),
            "{trigger}"
        );
        assert!(
            trigger.contains("after insert or update or delete on \"Sales\".\"we\"\"ird ü\""),
            "{trigger}"
        );
        assert!(
            trigger.contains("for each row execute function tandem.\"Sales.we\"\"ird ü\"()"),
            "{trigger}"
        );
        assert!(!statements.iter().any(|s| s.contains("{{")));

        let uninstall = uninstall_statements(&[t]);
        assert_eq!(
            uninstall,
            vec![
                "-- Removes the capture trigger of one configured table.\ndrop trigger if exists tandem_capture on \"Sales\".\"we\"\"ird ü\";".to_owned(),
                "drop trigger if exists tandem_truncate on \"Sales\".\"we\"\"ird ü\";".to_owned(),
                "-- Removes everything the upgrade steps and capture_trigger.sql created, at\n-- any version. The capture functions live in schema tandem, so dropping it\n-- also drops the triggers of tables that are no longer configured (they\n-- depend on those functions).\ndrop schema if exists tandem cascade;".to_owned(),
            ]
        );
    }

    #[test]
    fn names_cannot_break_out_of_quotes_templates_or_statements() {
        let name = "x{{table}}\n-- ;;\ndrop table y; $tandem$ 'q' \\";
        let t = table("s", name, &[("id", DataType::Bytes)]);
        let statements = capture_statements(&t).unwrap();
        assert_eq!(statements.len(), 2, "a name must not add statements");
        let function = &statements[0];
        // The name stays inside its quotes, unfilled, and the tag changed.
        assert!(
            function.contains("tandem.\"s.x{{table}}\n-- ;;\ndrop table y; $tandem$ 'q' \\\"()"),
            "{function}"
        );
        assert!(
            function.contains("as $tandem1$") && !function.contains("as $tandem$"),
            "{function}"
        );
        // The literal doubles quotes and escapes the backslash.
        assert!(
            function.contains("E's.x{{table}}\n-- ;;\ndrop table y; $tandem$ ''q'' \\\\'"),
            "{function}"
        );
        assert!(
            function.contains("E'\\\\x' || pg_catalog.encode(new.\"id\", 'hex')"),
            "{function}"
        );
    }

    #[test]
    fn long_names_are_truncated_with_a_hash() {
        let long = "ä".repeat(40); // 80 bytes
        let a = capture_function_name(&TableName::new(Some("public"), &format!("{long}a")));
        let b = capture_function_name(&TableName::new(Some("public"), &format!("{long}b")));
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.len() <= MAX_IDENTIFIER_BYTES, "{name}");
            assert!(name.starts_with("public.ää"), "{name}");
            assert!(name.matches('.').count() >= 2, "{name}");
        }
        // Exactly 63 bytes fits without a hash.
        let fits = "t".repeat(MAX_IDENTIFIER_BYTES - "public.".len());
        assert_eq!(
            capture_function_name(&TableName::new(Some("public"), &fits)),
            format!("public.{fits}")
        );
        // Dots in names could collide: `a.b`.`c` vs `a`.`b.c`.
        let x = capture_function_name(&TableName::new(Some("a.b"), "c"));
        let y = capture_function_name(&TableName::new(Some("a"), "b.c"));
        assert_ne!(x, y);
        assert_eq!(
            capture_function_name(&TableName::new(None, "orders")),
            "public.orders"
        );
    }

    #[test]
    fn tables_without_key_are_refused() {
        let t = table("public", "log", &[]);
        let err = capture_statements(&t).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
    }

    #[test]
    fn install_script_runs_the_steps_the_database_lacks() {
        let v = SCHEMA_VERSION;
        let empty = install_statements(None, &[]).unwrap();
        assert_eq!(empty, upgrade::script(Engine::Postgres, None, v).unwrap());
        assert!(empty[0].contains("create schema if not exists tandem;"));
        assert!(empty
            .last()
            .unwrap()
            .contains(&format!("values (true, {v})")));
        assert!(empty.iter().all(|s| !s.contains("{{")));
        // Version 1: step 2 only, which keeps the change table.
        let from_one = install_statements(Some(1), &[]).unwrap();
        assert_eq!(from_one.len(), 3, "{from_one:#?}");
        assert!(from_one[0].contains("drop constraint if exists changes_op_check"));
        assert!(from_one[1].contains("create unlogged table if not exists tandem.waiting"));
        assert!(from_one[2].contains("values (true, 2)"));
        assert!(!from_one.iter().any(|s| s.contains("create table")));
        // Up to date: only the triggers.
        let t = table("public", "t", &[("id", DataType::Int)]);
        assert_eq!(
            install_statements(Some(v), std::slice::from_ref(&t)).unwrap(),
            capture_statements(&t).unwrap()
        );
        // Newer: refused, nothing installed.
        let err = install_statements(Some(v + 1), &[t]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
        assert!(
            err.to_string().contains("written by a newer tandem-agent"),
            "{err}"
        );
    }
}
