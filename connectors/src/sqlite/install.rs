//! The install and uninstall scripts, from the SQL files in `sql/sqlite/`
//! (Tandem's tables from the upgrade steps in `sql/sqlite/upgrade/`).
//!
//! Three triggers per table (`tandem_ins_<table>`, `tandem_upd_<table>`,
//! `tandem_del_<table>`). SQLite has no `CREATE OR REPLACE TRIGGER`, and it
//! keeps every `CREATE TRIGGER` as written, so the install script is made
//! against the catalog: a trigger that is already as this build would write
//! it is left alone, one that differs is dropped and created again, a
//! missing one is created. Run twice, the script changes nothing the second
//! time. (`install-triggers --print` hence prints what the database needs
//! now.)

use std::collections::HashMap;

use rusqlite::Connection;

use super::client::{int_of, query, quote_ident, text_literal, text_of};
use crate::connector::{Installation, SCHEMA_VERSION};
use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{Column, DataType, TableSchema};
use crate::template::{fill_statements, statements};
use crate::upgrade;

const CLEAR_APPLYING: &str = include_str!("../../../sql/sqlite/clear_applying.sql");
const CAPTURE_TRIGGER: &str = include_str!("../../../sql/sqlite/capture_trigger.sql");
const DROP_TRIGGER: &str = include_str!("../../../sql/sqlite/drop_trigger.sql");
const UNINSTALL: &str = include_str!("../../../sql/sqlite/uninstall.sql");

/// What every trigger Tandem installs is called.
pub const TRIGGER_PREFIX: &str = "tandem_";

/// The operations, in the order of the capture template's statements.
const OPERATIONS: [&str; 3] = ["ins", "upd", "del"];

/// Longest trigger name before a hash stands in for the table name's tail
/// (SQLite has no limit; long names are only unwieldy).
const MAX_NAME: usize = 64;

/// The name of the capture trigger for `op` (`ins`, `upd`, `del`) on
/// `table`: `tandem_<op>_<table>`, or, for a name too long, the head of the
/// table name and a short hash of all of it.
pub fn trigger_name(op: &str, table: &str) -> String {
    let prefix = format!("{TRIGGER_PREFIX}{op}_");
    let plain = format!("{prefix}{table}");
    if plain.chars().count() <= MAX_NAME {
        return plain;
    }
    let hash = blake3::hash(table.as_bytes()).to_hex();
    let suffix = format!("_{}", &hash[..8]);
    let room = MAX_NAME - prefix.chars().count() - suffix.len();
    let head: String = table.chars().take(room).collect();
    format!("{prefix}{head}{suffix}")
}

/// Whether `name` is one of the capture triggers' names (of any table).
fn is_capture_trigger(name: &str) -> bool {
    OPERATIONS
        .iter()
        .any(|op| name.starts_with(&format!("{TRIGGER_PREFIX}{op}_")))
}

/// The expression a trigger puts in the key array for `column` of `row`
/// (`NEW` or `OLD`): what `Key::from_captured` reads back as the value the
/// connector reads from the table. It never fails, whatever the column
/// holds (a failing trigger would fail the application's write): a blob
/// becomes `\x` hex text, which JSON can hold.
fn key_expr(column: &Column, row: &str) -> String {
    let col = format!("{row}.{}", quote_ident(&column.name));
    let hex = format!("'\\x' || lower(hex({col}))");
    match column.data_type {
        DataType::Bytes => format!("CASE WHEN {col} IS NULL THEN NULL ELSE {hex} END"),
        // Seventeen digits bring back the very same double.
        DataType::Float => format!(
            "CASE typeof({col}) WHEN 'real' THEN printf('%!.17g', {col}) \
             WHEN 'blob' THEN {hex} ELSE {col} END"
        ),
        // A REAL as SQLite writes it (exact for what Tandem writes, see
        // `types`), whole numbers and text as they are.
        DataType::Decimal => format!(
            "CASE typeof({col}) WHEN 'real' THEN CAST({col} AS TEXT) \
             WHEN 'blob' THEN {hex} ELSE {col} END"
        ),
        // A UUID kept as 16 bytes, in its text form.
        DataType::Uuid => format!(
            "CASE WHEN typeof({col}) = 'blob' AND length({col}) = 16 THEN lower(\
             substr(hex({col}), 1, 8) || '-' || substr(hex({col}), 9, 4) || '-' || \
             substr(hex({col}), 13, 4) || '-' || substr(hex({col}), 17, 4) || '-' || \
             substr(hex({col}), 21)) WHEN typeof({col}) = 'blob' THEN {hex} ELSE {col} END"
        ),
        // Texts `Value::parse_text` reads as they are; other forms (a `Z`,
        // an offset, no seconds, a Unix time) normalized by SQLite's date
        // functions, to the millisecond, as `types` reads them.
        DataType::Timestamp | DataType::TimestampTz => {
            let iso = format!(
                "{col} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]:[0-9][0-9]*'"
            );
            let readable = if column.data_type == DataType::Timestamp {
                format!(
                    "{iso} AND (length({col}) = 19 OR (substr({col}, 20, 1) = '.' \
                     AND length({col}) > 20 AND substr({col}, 21) NOT GLOB '*[^0-9]*'))"
                )
            } else {
                format!("{iso} AND {col} NOT GLOB '*[+-][0-9][0-9][0-9][0-9]'")
            };
            format!(
                "CASE WHEN typeof({col}) = 'integer' \
                 THEN strftime('%Y-%m-%d %H:%M:%S', {col}, 'unixepoch') \
                 WHEN typeof({col}) <> 'text' OR ({readable}) THEN {plain} \
                 ELSE coalesce(strftime('%Y-%m-%d %H:%M:%f', {col}), {col}) END",
                plain = plain(&col, &hex)
            )
        }
        DataType::Date => format!(
            "CASE WHEN typeof({col}) = 'text' AND length({col}) > 10 \
             THEN coalesce(date({col}), {col}) ELSE {plain} END",
            plain = plain(&col, &hex)
        ),
        DataType::Time => format!(
            "CASE WHEN typeof({col}) = 'text' AND length({col}) = 5 \
             THEN {col} || ':00' ELSE {plain} END",
            plain = plain(&col, &hex)
        ),
        _ => plain(&col, &hex),
    }
}

/// The value itself, a blob as `\x` hex.
fn plain(col: &str, hex: &str) -> String {
    format!("CASE typeof({col}) WHEN 'blob' THEN {hex} ELSE {col} END")
}

/// Whether the key stayed the same in an update (text compared byte by
/// byte, so a change of case is a change of key whatever the collation).
fn key_unchanged(key: &[&Column]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            format!("OLD.{name} IS NEW.{name} COLLATE BINARY")
        })
        .collect();
    format!("({})", parts.join(" AND "))
}

/// The key columns of `table`, or a schema error when it has none.
fn key_columns(table: &TableSchema) -> Result<Vec<&Column>> {
    if table.primary_key.is_empty() {
        return Err(ConnectorError::schema(format!(
            "table {} has no primary key: Tandem needs one to capture its changes",
            table.name
        )));
    }
    table
        .primary_key
        .iter()
        .map(|k| {
            table.column(k).ok_or_else(|| {
                ConnectorError::internal(format!(
                    "key column `{k}` of table {} is not described",
                    table.name
                ))
            })
        })
        .collect()
}

/// One capture trigger: its name and its `CREATE TRIGGER` statement.
struct Trigger {
    name: String,
    create: String,
}

impl Trigger {
    /// The statement as SQLite keeps it in `sqlite_schema.sql`: from
    /// `CREATE TRIGGER` on, the comments before it left out.
    fn kept(&self) -> &str {
        bare(&self.create)
    }
}

/// A statement without the comment lines before it.
fn bare(statement: &str) -> &str {
    let mut rest = statement.trim_start();
    while rest.starts_with("--") {
        rest = rest
            .split_once('\n')
            .map_or("", |(_, tail)| tail)
            .trim_start();
    }
    rest
}

/// The three capture triggers of `table`, in order: insert, update, delete.
fn triggers_of(table: &TableSchema) -> Result<Vec<Trigger>> {
    let key = key_columns(table)?;
    let list = |row: &str| {
        key.iter()
            .map(|c| key_expr(c, row))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = OPERATIONS.map(|op| trigger_name(op, &table.name.name));
    let quoted = names.clone().map(|n| quote_ident(&n));
    let creates = fill_statements(
        CAPTURE_TRIGGER,
        &[
            ("insert_trigger", &quoted[0]),
            ("update_trigger", &quoted[1]),
            ("delete_trigger", &quoted[2]),
            ("table", &quote_ident(&table.name.name)),
            ("table_literal", &text_literal(&table.name.to_string())),
            ("new_key", &list("NEW")),
            ("old_key", &list("OLD")),
            ("key_unchanged", &key_unchanged(&key)),
        ],
    );
    Ok(names
        .into_iter()
        .zip(creates)
        .map(|(name, create)| Trigger { name, create })
        .collect())
}

/// The statements that create the capture triggers of `table`,
/// unconditionally.
#[cfg(test)]
fn trigger_statements(table: &TableSchema) -> Result<Vec<String>> {
    Ok(triggers_of(table)?.into_iter().map(|t| t.create).collect())
}

/// `DROP TRIGGER IF EXISTS` for a trigger name.
fn drop_trigger(name: &str) -> String {
    let filled = fill_statements(DROP_TRIGGER, &[("trigger", &quote_ident(name))]).concat();
    bare(&filled).to_owned()
}

/// A trigger in the catalog: its table and statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    /// The table it is on.
    pub table: String,
    /// Its `CREATE TRIGGER` statement as kept.
    pub sql: String,
}

/// The whole install script for `tables`, given the version the database
/// records and the triggers now in it: the upgrade steps it lacks, then the
/// triggers that are missing or differ (and any other capture trigger on a
/// configured table, say one named after the table's name before a
/// rename).
pub fn install_statements(
    tables: &[TableSchema],
    installed: Option<i32>,
    present: &HashMap<String, Present>,
) -> Result<Vec<String>> {
    let mut out = upgrade::script(Engine::Sqlite, installed, SCHEMA_VERSION)?;
    out.extend(statements(CLEAR_APPLYING));
    let mut creates = Vec::new();
    let mut stale: Vec<&String> = Vec::new();
    for table in tables {
        let triggers = triggers_of(table)?;
        let ours: Vec<&str> = triggers.iter().map(|t| t.name.as_str()).collect();
        stale.extend(present.iter().filter_map(|(name, p)| {
            (p.table.eq_ignore_ascii_case(&table.name.name)
                && is_capture_trigger(name)
                && !ours.iter().any(|o| o.eq_ignore_ascii_case(name)))
            .then_some(name)
        }));
        for trigger in triggers {
            match present.get(&trigger.name) {
                Some(p) if p.table == table.name.name && p.sql == trigger.kept() => {}
                Some(_) => {
                    creates.push(drop_trigger(&trigger.name));
                    creates.push(trigger.create);
                }
                None => creates.push(trigger.create),
            }
        }
    }
    stale.sort();
    stale.dedup();
    // Stale triggers go first: their names are not ours (compared
    // case-insensitively, as SQLite does).
    out.extend(stale.into_iter().map(|name| drop_trigger(name)));
    out.extend(creates);
    Ok(out)
}

/// The uninstall script, given every `tandem_` trigger now in the database.
pub fn uninstall_statements(triggers: &[String]) -> Vec<String> {
    let mut out: Vec<String> = triggers.iter().map(|t| drop_trigger(t)).collect();
    out.extend(statements(UNINSTALL).iter().map(|s| bare(s).to_owned()));
    out
}

/// Every trigger of the database: name -> table and statement (blocking).
pub fn triggers(conn: &Connection) -> Result<HashMap<String, Present>> {
    let rows = query(
        conn,
        "SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'trigger'",
        &[],
    )
    .map_err(|e| e.context("list triggers"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                text_of(&r[0]),
                Present {
                    table: text_of(&r[1]),
                    sql: text_of(&r[2]),
                },
            )
        })
        .collect())
}

/// Names of every `tandem_` trigger in the database, configured or not
/// (blocking).
pub fn installed_triggers(conn: &Connection) -> Result<Vec<String>> {
    let mut names: Vec<String> = triggers(conn)?
        .into_keys()
        .filter(|n| n.starts_with(TRIGGER_PREFIX))
        .collect();
    names.sort();
    Ok(names)
}

/// Whether one of Tandem's tables exists (blocking).
pub fn has_table(conn: &Connection, name: &str) -> Result<bool> {
    Ok(!query(
        conn,
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        &[name.to_owned().into()],
    )?
    .is_empty())
}

/// The version `tandem_version` records; `None` when nothing is
/// installed (blocking).
pub fn installed_version(conn: &Connection) -> Result<Option<i32>> {
    if !has_table(conn, "tandem_version")? {
        return Ok(None);
    }
    Ok(
        query(conn, "SELECT version FROM tandem_version WHERE id = 1", &[])?
            .first()
            .and_then(|r| int_of(&r[0]))
            .and_then(|v| i32::try_from(v).ok()),
    )
}

/// What is installed: the version row and the tables whose triggers are
/// missing or differ from what this build would install (blocking).
pub fn installation(conn: &Connection, tables: &[TableSchema]) -> Result<Installation> {
    let version = installed_version(conn)?;
    let present = triggers(conn)?;
    let missing_triggers = tables
        .iter()
        .filter(|table| match triggers_of(table) {
            Ok(triggers) => !triggers.iter().all(|t| {
                present
                    .get(&t.name)
                    .is_some_and(|p| p.table == table.name.name && p.sql == t.kept())
            }),
            Err(_) => true,
        })
        .map(|table| table.name.clone())
        .collect();
    Ok(Installation {
        version,
        missing_triggers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TableName;

    fn table(name: &str, key: &[(&str, DataType)]) -> TableSchema {
        TableSchema::new(
            TableName::new(None, name),
            key.iter()
                .map(|(n, t)| Column::new(n, *t, "INTEGER").not_null())
                .collect(),
            key.iter().map(|(n, _)| (*n).to_owned()).collect(),
        )
    }

    #[test]
    fn trigger_names_fit_and_never_collide() {
        assert_eq!(trigger_name("ins", "orders"), "tandem_ins_orders");
        assert_eq!(trigger_name("upd", "Orders ü"), "tandem_upd_Orders ü");
        let long_a = "a".repeat(60) + "x";
        let long_b = "a".repeat(60) + "y";
        let a = trigger_name("ins", &long_a);
        assert_eq!(a.chars().count(), 64);
        assert_ne!(a, trigger_name("ins", &long_b));
        assert_eq!(trigger_name("del", &"ü".repeat(70)).chars().count(), 64);
    }

    #[test]
    fn triggers_quote_names_and_skip_the_agents_writes() {
        let t = table("Customer \"Orders\" ü", &[("id", DataType::Int)]);
        let sql = trigger_statements(&t).unwrap();
        assert_eq!(sql.len(), 3);
        assert!(sql[0].contains(
            "CREATE TRIGGER \"tandem_ins_Customer \"\"Orders\"\" ü\" AFTER INSERT ON \"Customer \"\"Orders\"\" ü\""
        ));
        assert!(sql
            .iter()
            .all(|s| s.contains("WHEN NOT EXISTS (SELECT 1 FROM tandem_applying)")));
        assert!(sql[0].contains("'Customer \"Orders\" ü', 'I'"));
        assert!(sql[1].contains("'D', json_array(CASE typeof(OLD.\"id\")"));
        assert!(sql[1].contains("WHERE NOT (OLD.\"id\" IS NEW.\"id\" COLLATE BINARY)"));
        assert!(sql[2].contains("AFTER DELETE"));
    }

    /// Statements an install of an up-to-date database runs besides the
    /// triggers.
    fn every_install() -> usize {
        install_statements(&[], Some(SCHEMA_VERSION), &HashMap::new())
            .unwrap()
            .len()
    }

    #[test]
    fn a_name_cannot_forge_a_statement() {
        let t = table("x\n-- ;;\nDROP TABLE y", &[("id\n-- ;;", DataType::Int)]);
        assert_eq!(trigger_statements(&t).unwrap().len(), 3);
        let sql = install_statements(&[t], Some(SCHEMA_VERSION), &HashMap::new()).unwrap();
        assert_eq!(sql.len(), every_install() + 3);
    }

    #[test]
    fn install_runs_the_steps_the_database_lacks() {
        let v = SCHEMA_VERSION;
        let none = HashMap::new();
        let fresh = install_statements(&[], None, &none).unwrap();
        assert!(fresh[0].contains("CREATE TABLE IF NOT EXISTS tandem_changes"));
        assert!(fresh
            .iter()
            .any(|s| s.contains(&format!("VALUES (1, {v})"))));
        // The marker is cleared by every install, after the steps.
        assert_eq!(fresh.last().unwrap(), &statements(CLEAR_APPLYING)[0]);
        assert_eq!(
            install_statements(&[], Some(v), &none).unwrap(),
            statements(CLEAR_APPLYING)
        );
        // Version 2 brought nothing to SQLite: from 1, its number only.
        let from_one = install_statements(&[], Some(1), &none).unwrap();
        assert_eq!(from_one.len(), 2, "{from_one:#?}");
        assert!(from_one[0].contains("VALUES (1, 2)"), "{}", from_one[0]);
        let err = install_statements(&[], Some(v + 1), &none).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
        assert!(
            err.to_string().contains("written by a newer tandem-agent"),
            "{err}"
        );
    }

    #[test]
    fn install_leaves_current_triggers_alone() {
        let t = table("link", &[("a", DataType::Int), ("b", DataType::Bytes)]);
        let base = every_install();
        let creates = triggers_of(&t).unwrap();
        let mut present: HashMap<String, Present> = creates
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    Present {
                        table: "link".into(),
                        sql: c.kept().to_owned(),
                    },
                )
            })
            .collect();
        assert!(creates[0]
            .kept()
            .starts_with("CREATE TRIGGER \"tandem_ins_link\""));
        let tables = [t];
        let v = Some(SCHEMA_VERSION);
        assert_eq!(
            install_statements(&tables, v, &present).unwrap().len(),
            base
        );

        // One differs, one is missing, one stale trigger is on the table.
        present.get_mut("tandem_upd_link").unwrap().sql.push(' ');
        present.remove("tandem_del_link");
        present.insert(
            "tandem_ins_old name".into(),
            Present {
                table: "LINK".into(),
                sql: String::new(),
            },
        );
        present.insert(
            "tandem_audit".into(),
            Present {
                table: "link".into(),
                sql: String::new(),
            },
        );
        let sql = install_statements(&tables, v, &present).unwrap();
        assert_eq!(sql.len(), base + 4, "{sql:#?}");
        assert_eq!(sql[base], "DROP TRIGGER IF EXISTS \"tandem_ins_old name\"");
        assert_eq!(sql[base + 1], "DROP TRIGGER IF EXISTS \"tandem_upd_link\"");
        assert!(sql[base + 2].contains("CREATE TRIGGER \"tandem_upd_link\""));
        assert!(sql[base + 3].contains("CREATE TRIGGER \"tandem_del_link\""));
    }

    #[test]
    fn key_expressions_never_fail_and_read_back_exactly() {
        let t = table(
            "k",
            &[
                ("b", DataType::Bytes),
                ("f", DataType::Float),
                ("d", DataType::Decimal),
                ("u", DataType::Uuid),
            ],
        );
        let sql = &trigger_statements(&t).unwrap()[0];
        assert!(sql.contains("'\\x' || lower(hex(NEW.\"b\"))"));
        assert!(sql.contains("printf('%!.17g', NEW.\"f\")"));
        assert!(sql.contains("CAST(NEW.\"d\" AS TEXT)"));
        assert!(sql.contains("substr(hex(NEW.\"u\"), 21)"));
    }

    #[test]
    fn a_table_without_key_cannot_be_captured() {
        let err = trigger_statements(&table("nokey", &[])).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
    }

    #[test]
    fn uninstall_drops_triggers_then_tables() {
        let sql = uninstall_statements(&["tandem_ins_x\"y".to_owned()]);
        assert_eq!(sql[0], "DROP TRIGGER IF EXISTS \"tandem_ins_x\"\"y\"");
        assert_eq!(sql.len(), 5);
        assert_eq!(sql[4], "DROP TABLE IF EXISTS tandem_applying");
    }
}
