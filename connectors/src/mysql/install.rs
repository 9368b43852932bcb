//! The install and uninstall scripts, filled from the files under
//! `sql/mysql/` (the tables from the upgrade steps in `sql/mysql/upgrade/`),
//! and what an installation looks like now.
//!
//! Tandem's tables live in the synced database (`tandem_changes`,
//! `tandem_id_map`, `tandem_version`); each synced table gets three triggers
//! (`tandem_ins_<table>`, `tandem_upd_<table>`, `tandem_del_<table>`). MariaDB
//! replaces a trigger in one statement; MySQL 8 drops and creates it.

use std::collections::HashMap;

use super::client::{int_of, one_line, quote_ident, text_literal, text_of, Client, Flavour};
use crate::connector::{Installation, SCHEMA_VERSION};
use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{Column, DataType, TableSchema};
use crate::{template, upgrade};

const CAPTURE_TRIGGER: &str = include_str!("../../../sql/mysql/capture_trigger.sql");
const DROP_TRIGGER: &str = include_str!("../../../sql/mysql/drop_trigger.sql");
const UNINSTALL: &str = include_str!("../../../sql/mysql/uninstall.sql");

/// Splits, strips the opening comments, then fills: see
/// [`template::fill_statements`].
fn fill_statements(script: &str, values: &[(&str, &str)]) -> Vec<String> {
    statements(script)
        .iter()
        .map(|s| template::fill(s, values))
        .collect()
}

/// The statements of a script, without the comment lines that open them.
fn statements(script: &str) -> Vec<String> {
    crate::template::statements(script)
        .iter()
        .map(|s| bare(s))
        .collect()
}

/// A statement without the comment lines that open it.
fn bare(statement: &str) -> String {
    statement
        .lines()
        .skip_while(|l| l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every trigger this crate creates starts with this.
pub const TRIGGER_PREFIX: &str = "tandem_";

/// Longest identifier MySQL accepts, in characters.
const MAX_NAME: usize = 64;

/// The three operations, as they appear in trigger names.
const OPERATIONS: [&str; 3] = ["ins", "upd", "del"];

/// The name of the capture trigger for `op` (`ins`, `upd`, `del`) on
/// `table`: `tandem_<op>_<table>`. A name that would be too long, or whose
/// table part has letters with a case (trigger names may compare
/// case-insensitively), gets a short hash of the table name instead of its
/// tail, so two tables never share a trigger name.
pub fn trigger_name(op: &str, table: &str) -> String {
    let prefix = format!("{TRIGGER_PREFIX}{op}_");
    let plain = format!("{prefix}{table}");
    let has_case = table.chars().any(|c| c.is_uppercase());
    if plain.chars().count() <= MAX_NAME && !has_case {
        return plain;
    }
    let hash = blake3::hash(table.as_bytes()).to_hex();
    let suffix = format!("_{}", &hash[..8]);
    let room = MAX_NAME - prefix.chars().count() - suffix.len();
    let head: String = table.chars().take(room).collect();
    format!("{prefix}{head}{suffix}")
}

/// The expression a trigger puts in the key array for `column` of `row`
/// (`NEW` or `OLD`): text the canonical parser reads back exactly.
fn key_expr(column: &Column, row: &str) -> String {
    let col = format!("{row}.{}", quote_ident(&column.name));
    match column.data_type {
        DataType::Int | DataType::Text => col,
        // `\x` hex, as `Value::parse_text` reads bytes.
        DataType::Bytes => format!("CONCAT(CHAR(92 USING utf8mb4), 'x', LOWER(HEX({col})))"),
        // In UTC whatever the writing session's time zone.
        DataType::TimestampTz => format!(
            "CAST(DATE_ADD(TIMESTAMP'1970-01-01 00:00:00', INTERVAL UNIX_TIMESTAMP({col}) SECOND) AS CHAR)"
        ),
        _ => format!("CAST({col} AS CHAR)"),
    }
}

/// Whether the key stayed the same in an update (text compared byte by
/// byte, so a change of case is a change of key).
fn key_unchanged(key: &[&Column]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            match c.data_type {
                DataType::Text | DataType::Other | DataType::Json => {
                    format!("CAST(OLD.{name} AS BINARY) <=> CAST(NEW.{name} AS BINARY)")
                }
                _ => format!("OLD.{name} <=> NEW.{name}"),
            }
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

/// The statements that create (or replace) the three capture triggers of
/// `table`, in order: insert, update, delete.
pub fn trigger_statements(flavour: Flavour, table: &TableSchema) -> Result<Vec<String>> {
    let key = key_columns(table)?;
    let list = |row: &str| {
        key.iter()
            .map(|c| key_expr(c, row))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = OPERATIONS.map(|op| quote_ident(&trigger_name(op, &table.name.name)));
    let create = match flavour {
        Flavour::MariaDb => "CREATE OR REPLACE TRIGGER",
        Flavour::MySql => "CREATE TRIGGER",
    };
    let creates = fill_statements(
        CAPTURE_TRIGGER,
        &[
            ("create_trigger", create),
            ("insert_trigger", &names[0]),
            ("update_trigger", &names[1]),
            ("delete_trigger", &names[2]),
            ("table", &quote_ident(&table.name.name)),
            ("table_literal", &text_literal(&table.name.to_string())),
            ("new_key", &list("NEW")),
            ("old_key", &list("OLD")),
            ("key_unchanged", &key_unchanged(&key)),
        ],
    );
    Ok(match flavour {
        Flavour::MariaDb => creates,
        Flavour::MySql => names
            .iter()
            .zip(creates)
            .flat_map(|(name, create)| [drop_trigger(name), create])
            .collect(),
    })
}

/// `DROP TRIGGER IF EXISTS` for an already quoted trigger name.
fn drop_trigger(quoted: &str) -> String {
    fill_statements(DROP_TRIGGER, &[("trigger", quoted)]).concat()
}

/// The whole install script for `tables` in a database at version
/// `installed`: the upgrade steps it lacks, then the triggers. Not one
/// transaction (MySQL commits DDL by itself): a step that fails half-way
/// is run again by the next install, and each changes nothing when it
/// already ran.
pub fn install_statements(
    flavour: Flavour,
    installed: Option<i32>,
    tables: &[TableSchema],
) -> Result<Vec<String>> {
    let mut out: Vec<String> = upgrade::script(Engine::Mysql, installed, SCHEMA_VERSION)?
        .iter()
        .map(|s| bare(s))
        .collect();
    for table in tables {
        out.extend(trigger_statements(flavour, table)?);
    }
    Ok(out)
}

/// The uninstall script, given every `tandem_` trigger now in the database.
pub fn uninstall_statements(triggers: &[String]) -> Vec<String> {
    let mut out: Vec<String> = triggers
        .iter()
        .map(|t| drop_trigger(&quote_ident(t)))
        .collect();
    out.extend(statements(UNINSTALL));
    out
}

/// Every trigger of this database: name -> (table, body).
async fn triggers(client: &Client) -> Result<HashMap<String, (String, String)>> {
    let rows = client
        .rows(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT \
             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()",
            Vec::new(),
        )
        .await
        .map_err(|e| e.context("list triggers"))?;
    Ok(rows
        .iter()
        .map(|r| (text_of(&r[0]), (text_of(&r[1]), text_of(&r[2]))))
        .collect())
}

/// Names of every `tandem_` trigger in the database, configured or not.
pub async fn installed_triggers(client: &Client) -> Result<Vec<String>> {
    let mut names: Vec<String> = triggers(client)
        .await?
        .into_keys()
        .filter(|n| n.starts_with(TRIGGER_PREFIX))
        .collect();
    names.sort();
    Ok(names)
}

/// The body of a `CREATE TRIGGER` statement (what the catalog keeps as
/// `ACTION_STATEMENT`), whitespace collapsed.
fn body_of(statement: &str) -> Option<String> {
    let at = statement.find("FOR EACH ROW")?;
    Some(one_line(&statement[at + "FOR EACH ROW".len()..]))
}

/// The version `tandem_version` records; `None` when nothing is installed.
pub async fn installed_version(client: &Client) -> Result<Option<i32>> {
    let exists = client
        .rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tandem_version'",
            Vec::new(),
        )
        .await?;
    if !exists.iter().any(|r| text_of(&r[0]) == "tandem_version") {
        return Ok(None);
    }
    let rows = client
        .rows(
            "SELECT version FROM tandem_version WHERE id = 1",
            Vec::new(),
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|r| int_of(&r[0]))
        .and_then(|v| i32::try_from(v).ok()))
}

/// What is installed: the version row and the tables whose triggers are
/// missing or differ from what this build would install.
pub async fn installation(client: &Client, tables: &[TableSchema]) -> Result<Installation> {
    let version = installed_version(client).await?;

    let present = triggers(client).await?;
    let mut missing_triggers = Vec::new();
    for table in tables {
        let complete = match trigger_statements(Flavour::MariaDb, table) {
            Ok(creates) => OPERATIONS.iter().zip(&creates).all(|(op, create)| {
                let name = trigger_name(op, &table.name.name);
                present.get(&name).is_some_and(|(on, body)| {
                    *on == table.name.name && Some(one_line(body)) == body_of(create)
                })
            }),
            Err(_) => false,
        };
        if !complete {
            missing_triggers.push(table.name.clone());
        }
    }
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
                .map(|(n, t)| Column::new(n, *t, "int").not_null())
                .collect(),
            key.iter().map(|(n, _)| (*n).to_owned()).collect(),
        )
    }

    #[test]
    fn trigger_names_fit_and_never_collide() {
        assert_eq!(trigger_name("ins", "orders"), "tandem_ins_orders");
        let long_a = "a".repeat(60) + "x";
        let long_b = "a".repeat(60) + "y";
        let a = trigger_name("ins", &long_a);
        let b = trigger_name("ins", &long_b);
        assert_eq!(a.chars().count(), 64);
        assert_ne!(a, b);
        assert_ne!(trigger_name("upd", "Orders"), trigger_name("upd", "ORDERS"));
        assert_ne!(
            trigger_name("upd", "Orders").to_lowercase(),
            trigger_name("upd", "orders")
        );
        let odd = trigger_name("del", &"ü".repeat(70));
        assert_eq!(odd.chars().count(), 64);
    }

    #[test]
    fn mariadb_replaces_triggers_in_one_statement() {
        let t = table("Customer \"Orders\" ü", &[("id", DataType::Int)]);
        let sql = trigger_statements(Flavour::MariaDb, &t).unwrap();
        assert_eq!(sql.len(), 3);
        assert!(sql.iter().all(|s| s.contains("CREATE OR REPLACE TRIGGER")));
        assert!(sql[0].contains("AFTER INSERT ON `Customer \"Orders\" ü`"));
        assert!(sql[0].contains(&text_literal("Customer \"Orders\" ü")));
        assert!(sql[0].contains("JSON_ARRAY(NEW.`id`)"));
        assert!(sql[1].contains("'D', JSON_ARRAY(OLD.`id`)"));
        assert!(sql[2].contains("AFTER DELETE"));
    }

    #[test]
    fn mysql_drops_then_creates_each_trigger() {
        let t = table("link", &[("a", DataType::Int), ("b", DataType::Text)]);
        let sql = trigger_statements(Flavour::MySql, &t).unwrap();
        assert_eq!(sql.len(), 6);
        for pair in sql.chunks(2) {
            assert!(
                pair[0].starts_with("DROP TRIGGER IF EXISTS `tandem_"),
                "{}",
                pair[0]
            );
            assert!(
                pair[1].starts_with("CREATE TRIGGER `tandem_"),
                "{}",
                pair[1]
            );
            assert!(!pair[1].contains("OR REPLACE"));
        }
        assert!(sql[3].contains(
            "OLD.`a` <=> NEW.`a` AND CAST(OLD.`b` AS BINARY) <=> CAST(NEW.`b` AS BINARY)"
        ));
        let all = install_statements(Flavour::MySql, None, std::slice::from_ref(&t)).unwrap();
        assert!(all[0].starts_with("CREATE TABLE IF NOT EXISTS tandem_changes"));
        assert!(all
            .iter()
            .any(|s| s.contains(&format!("VALUES (1, {SCHEMA_VERSION})"))));
        assert!(all.iter().all(|s| !s.starts_with("--")), "{all:#?}");
        assert_eq!(all[all.len() - 6..], sql[..]);
    }

    #[test]
    fn install_runs_the_steps_the_database_lacks() {
        let v = SCHEMA_VERSION;
        let t = table("t", &[("id", DataType::Int)]);
        let triggers = trigger_statements(Flavour::MariaDb, &t).unwrap();
        let tables = std::slice::from_ref(&t);
        // Version 2 brought nothing to MySQL: from 1, its number first.
        let from_one = install_statements(Flavour::MariaDb, Some(1), tables).unwrap();
        assert_eq!(
            from_one[0],
            "INSERT INTO tandem_version (id, version) VALUES (1, 2)\n  \
             ON DUPLICATE KEY UPDATE version = GREATEST(version, 2)"
        );
        assert_eq!(from_one[from_one.len() - 3..], triggers[..]);
        assert_eq!(
            install_statements(Flavour::MariaDb, Some(v), tables).unwrap(),
            triggers
        );
        let err = install_statements(Flavour::MariaDb, Some(v + 1), tables).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
        assert!(
            err.to_string()
                .starts_with("tandem_version records schema version"),
            "{err}"
        );
    }

    #[test]
    fn key_expressions_are_read_back_exactly() {
        let t = table(
            "k",
            &[
                ("b", DataType::Bytes),
                ("z", DataType::TimestampTz),
                ("d", DataType::Decimal),
            ],
        );
        let sql = trigger_statements(Flavour::MariaDb, &t).unwrap();
        assert!(sql[0].contains("CONCAT(CHAR(92 USING utf8mb4), 'x', LOWER(HEX(NEW.`b`)))"));
        assert!(sql[0].contains("UNIX_TIMESTAMP(NEW.`z`)"));
        assert!(sql[0].contains("CAST(NEW.`d` AS CHAR)"));
    }

    #[test]
    fn a_table_without_key_cannot_be_captured() {
        let t = table("nokey", &[]);
        let err = trigger_statements(Flavour::MariaDb, &t).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
    }

    #[test]
    fn uninstall_drops_triggers_then_tables() {
        let sql = uninstall_statements(&["tandem_ins_x`y".to_owned()]);
        assert_eq!(sql[0], "DROP TRIGGER IF EXISTS `tandem_ins_x``y`");
        assert_eq!(sql.len(), 4);
        assert_eq!(sql[3], "DROP TABLE IF EXISTS tandem_version");
    }
}
