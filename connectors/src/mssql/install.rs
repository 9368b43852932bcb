//! The install and uninstall scripts, filled from the files under
//! `sql/mssql/` (Tandem's tables from the upgrade steps in
//! `sql/mssql/upgrade/`), running them, and what an installation looks like
//! now.
//!
//! Tandem's tables live in schema `tandem` (`changes`, `id_map`, `version`);
//! each synced table gets one set-based trigger `tandem_capture_<table>` in
//! its own schema. `CREATE OR ALTER TRIGGER` makes installing idempotent;
//! uninstalling drops every `tandem_capture_` trigger of the database, so
//! tables no longer configured lose theirs too.

use deadpool::managed::Object;
use tiberius::ColumnData;

use super::client::{
    batch, classify, display_name, qualified, query_rows, quote_ident, quote_literal, schema_of,
    Client, Param, SESSION_RESET,
};
use crate::connector::{Installation, SCHEMA_VERSION};
use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{Column, DataType, TableSchema};
use crate::{template, upgrade};

const CAPTURE_TRIGGER_SQL: &str = include_str!("../../../sql/mssql/capture_trigger.sql");
const UNINSTALL_SQL: &str = include_str!("../../../sql/mssql/uninstall.sql");

/// Every capture trigger's name starts with this.
pub(crate) const TRIGGER_PREFIX: &str = "tandem_capture_";

/// Longest identifier SQL Server accepts, in characters.
const MAX_NAME: usize = 128;

/// The statements of a script, split first and then filled in one pass
/// ([`template::fill_statements`]), without the comment lines that open
/// them (the file's own comments; a trigger's stored definition then starts
/// with `CREATE`).
fn fill_statements(script: &str, values: &[(&str, &str)]) -> Vec<String> {
    template::fill_statements(script, values)
        .iter()
        .map(|statement| bare(statement))
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

/// The name of `table`'s capture trigger: `tandem_capture_<table>`; a name
/// that would be too long keeps the head of the table's name and ends with
/// a short hash of all of it, so two tables never share a trigger.
pub(crate) fn trigger_name(table: &str) -> String {
    let plain = format!("{TRIGGER_PREFIX}{table}");
    if plain.chars().count() <= MAX_NAME {
        return plain;
    }
    let hash = blake3::hash(table.as_bytes()).to_hex();
    let suffix = format!("_{}", &hash[..8]);
    let room = MAX_NAME - TRIGGER_PREFIX.len() - suffix.len();
    let head: String = table.chars().take(room).collect();
    format!("{TRIGGER_PREFIX}{head}{suffix}")
}

/// `[schema].[tandem_capture_<table>]`: the trigger lives in the table's
/// schema.
fn qualified_trigger(table: &TableSchema) -> String {
    format!(
        "{}.{}",
        quote_ident(schema_of(&table.name)),
        quote_ident(&trigger_name(&table.name.name))
    )
}

/// The JSON text of one key column of row `alias` (`i` inserted, `d`
/// deleted), built without JSON functions SQL Server 2016 lacks: numbers as
/// numbers, everything else as a JSON string in the text form
/// [`crate::Value::parse_text`] reads back exactly (ISO dates, instants in
/// UTC, `\x` hex for bytes), NULL as `null`.
pub(crate) fn key_json(column: &Column, alias: &str) -> String {
    let col = format!("{alias}.{}", quote_ident(&column.name));
    let string = |text: String| format!("N'\"' + {text} + N'\"'");
    let expr = match column.data_type {
        DataType::Int => format!("CONVERT(nvarchar(50), {col})"),
        DataType::Bool => format!("CASE {col} WHEN 1 THEN N'true' WHEN 0 THEN N'false' END"),
        // Style 3: 17 digits, every float its own text.
        DataType::Float => format!("CONVERT(nvarchar(50), {col}, 3)"),
        // Money with all four decimals (style 2), decimals as they are;
        // both as strings, which JSON numbers would not keep exact.
        DataType::Decimal if column.native_type.ends_with("money") => {
            string(format!("CONVERT(nvarchar(50), {col}, 2)"))
        }
        DataType::Decimal => string(format!("CONVERT(nvarchar(50), {col})")),
        DataType::Text | DataType::Json => string(format!("STRING_ESCAPE({col}, 'json')")),
        DataType::Bytes => format!("N'\"\\\\x' + CONVERT(varchar(max), {col}, 2) + N'\"'"),
        DataType::Date => string(format!("CONVERT(nvarchar(10), {col}, 23)")),
        DataType::Time => string(format!("CONVERT(nvarchar(30), {col})")),
        DataType::Timestamp => string(format!("CONVERT(nvarchar(30), {col}, 126)")),
        DataType::TimestampTz => string(format!(
            "CONVERT(nvarchar(40), SWITCHOFFSET({col}, '+00:00'), 127)"
        )),
        DataType::Uuid => string(format!("CONVERT(nvarchar(36), {col})")),
        DataType::Other => string(format!(
            "STRING_ESCAPE(CONVERT(nvarchar(max), {col}), 'json')"
        )),
    };
    format!("COALESCE({expr}, N'null')")
}

/// The JSON array of the key of row `alias`, as `nvarchar(max)` (so long
/// keys are never cut at 4000 characters).
fn key_array(key: &[&Column], alias: &str) -> String {
    let items: Vec<String> = key.iter().map(|c| key_json(c, alias)).collect();
    format!(
        "CAST(N'[' AS nvarchar(max)) + {} + N']'",
        items.join(" + N',' + ")
    )
}

/// Whether inserted row `i` and deleted row `d` have the same key; text
/// compares as bytes, so a change of case is a change of key.
fn key_match(key: &[&Column]) -> String {
    key.iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            match c.data_type {
                DataType::Text | DataType::Json | DataType::Other => {
                    format!("CAST(i.{name} AS varbinary(max)) = CAST(d.{name} AS varbinary(max))")
                }
                _ => format!("i.{name} = d.{name}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn key_order(key: &[&Column], alias: &str) -> String {
    key.iter()
        .map(|c| format!("{alias}.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
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

/// The trigger statement of `table` with `fingerprint` in its body.
fn trigger_with(table: &TableSchema, fingerprint: &str) -> Result<Vec<String>> {
    let key = key_columns(table)?;
    let values = [
        ("trigger", qualified_trigger(table)),
        ("table", qualified(&table.name)),
        ("table_name", quote_literal(&display_name(&table.name))),
        ("old_key_json", key_array(&key, "d")),
        ("new_key_json", key_array(&key, "i")),
        ("key_match", key_match(&key)),
        ("old_key_order", key_order(&key, "d")),
        ("new_key_order", key_order(&key, "i")),
        ("fingerprint", fingerprint.to_owned()),
    ];
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(fill_statements(CAPTURE_TRIGGER_SQL, &values))
}

/// What marks the trigger this build writes for `table`: the schema version
/// and a hash of the trigger's text (names, key, template), so a trigger of
/// an older build or of another key is told apart.
pub(crate) fn fingerprint(table: &TableSchema) -> Result<String> {
    let text = trigger_with(table, "")?.concat();
    let hash = blake3::hash(text.as_bytes()).to_hex();
    Ok(format!("v{SCHEMA_VERSION}-{}", &hash[..16]))
}

/// The statements that create or replace `table`'s capture trigger and
/// enable it.
pub(crate) fn capture_statements(table: &TableSchema) -> Result<Vec<String>> {
    trigger_with(table, &fingerprint(table)?)
}

/// The whole install script for `tables` in a database at version
/// `installed`: the upgrade steps it lacks, then the triggers.
pub(crate) fn install_statements(
    installed: Option<i32>,
    tables: &[TableSchema],
) -> Result<Vec<String>> {
    let mut statements: Vec<String> = upgrade::script(Engine::Mssql, installed, SCHEMA_VERSION)?
        .iter()
        .map(|s| bare(s))
        .collect();
    for table in tables {
        statements.extend(capture_statements(table)?);
    }
    Ok(statements)
}

/// The whole uninstall script: every capture trigger of the database, then
/// the tables and the schema.
pub(crate) fn uninstall_statements() -> Vec<String> {
    fill_statements(UNINSTALL_SQL, &[])
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

/// Runs `statements` in order, each as its own batch, in one transaction
/// (SQL Server DDL is transactional): all or nothing.
pub(crate) async fn run_script(client: &Client, statements: &[String]) -> Result<()> {
    let mut conn = client.conn().await?;
    batch(&mut conn, "BEGIN TRANSACTION")
        .await
        .map_err(|e| classify(e).context("cannot start the script's transaction"))?;
    for (i, statement) in statements.iter().enumerate() {
        if let Err(e) = batch(&mut conn, statement).await {
            let err = classify(e).context(format!(
                "script statement {} of {} ({}) failed",
                i + 1,
                statements.len(),
                first_line(statement)
            ));
            if batch(&mut conn, SESSION_RESET).await.is_err() {
                // In doubt: the session never goes back to the pool.
                drop(Object::take(conn));
            }
            return Err(err);
        }
    }
    if let Err(e) = batch(&mut conn, "COMMIT TRANSACTION").await {
        drop(Object::take(conn));
        return Err(classify(e).context("cannot commit the script"));
    }
    Ok(())
}

fn installation_error(e: tiberius::error::Error) -> ConnectorError {
    classify(e).context("cannot read what is installed")
}

/// The version `tandem.version` records; `None` when nothing is installed.
pub(crate) async fn installed_version(client: &Client) -> Result<Option<i32>> {
    let mut conn = client.conn().await?;
    let exists = query_rows(
        &mut conn,
        "SELECT CAST(CASE WHEN OBJECT_ID(N'tandem.version', N'U') IS NULL THEN 0 ELSE 1 END AS bit)",
        Vec::new(),
    )
    .await
    .map_err(installation_error)?;
    let installed = exists
        .first()
        .and_then(|r| r.get::<bool, _>(0))
        .unwrap_or(false);
    if !installed {
        return Ok(None);
    }
    Ok(query_rows(
        &mut conn,
        "SELECT version FROM tandem.version WHERE id = 1",
        Vec::new(),
    )
    .await
    .map_err(installation_error)?
    .first()
    .and_then(|r| r.get::<i32, _>(0)))
}

/// The installed version, and the tables whose trigger is missing, disabled,
/// or not the one this build writes.
pub(crate) async fn installation(client: &Client, tables: &[TableSchema]) -> Result<Installation> {
    let context = installation_error;
    let version = installed_version(client).await?;
    let mut conn = client.conn().await?;

    let mut missing_triggers = Vec::new();
    for table in tables {
        let expected = match fingerprint(table) {
            Ok(expected) => expected,
            Err(_) => {
                missing_triggers.push(table.name.clone());
                continue;
            }
        };
        let rows = query_rows(
            &mut conn,
            "SELECT OBJECT_DEFINITION(tr.object_id), tr.is_disabled FROM sys.triggers AS tr \
             WHERE tr.parent_id = OBJECT_ID(@P1) AND tr.name = @P2",
            vec![
                Param(ColumnData::String(Some(qualified(&table.name).into()))),
                Param(ColumnData::String(Some(
                    trigger_name(&table.name.name).into(),
                ))),
            ],
        )
        .await
        .map_err(context)?;
        let current = rows.iter().any(|r| {
            let definition: Option<&str> = r.get(0);
            let disabled: bool = r.get(1).unwrap_or(true);
            !disabled && definition.is_some_and(|d| d.contains(&expected))
        });
        if !current {
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

    fn column(name: &str, data_type: DataType, native: &str) -> Column {
        Column::new(name, data_type, native).not_null()
    }

    fn table(schema: &str, name: &str, key: &[(&str, DataType, &str)]) -> TableSchema {
        TableSchema::new(
            TableName::new(Some(schema), name),
            key.iter()
                .map(|(n, t, native)| column(n, *t, native))
                .collect(),
            key.iter().map(|(n, _, _)| (*n).to_owned()).collect(),
        )
    }

    #[test]
    fn install_script_creates_schema_tables_and_version_idempotently() {
        let statements = install_statements(None, &[]).unwrap();
        assert_eq!(statements.len(), 4 + 2, "{statements:#?}");
        assert_eq!(
            statements[0],
            "IF SCHEMA_ID(N'tandem') IS NULL EXEC(N'CREATE SCHEMA tandem')"
        );
        let changes = &statements[1];
        assert!(
            changes.starts_with(
                "IF OBJECT_ID(N'tandem.changes', N'U') IS NULL\nCREATE TABLE tandem.changes ("
            ),
            "{changes}"
        );
        for part in [
            "seq bigint IDENTITY(1, 1) NOT NULL CONSTRAINT tandem_changes_pk PRIMARY KEY",
            "table_name nvarchar(300) COLLATE Latin1_General_BIN2 NOT NULL",
            "op char(1) NOT NULL",
            "pk nvarchar(max) NOT NULL",
            "captured_at datetime2 NOT NULL CONSTRAINT tandem_changes_captured_at DEFAULT SYSUTCDATETIME()",
        ] {
            assert!(changes.contains(part), "{part} not in {changes}");
        }
        let id_map = &statements[2];
        assert!(id_map.starts_with(
            "IF OBJECT_ID(N'tandem.id_map', N'U') IS NULL\nCREATE TABLE tandem.id_map ("
        ));
        for part in [
            "pair nvarchar(128) COLLATE Latin1_General_BIN2 NOT NULL",
            "source_key nvarchar(400) COLLATE Latin1_General_BIN2 NOT NULL",
            "target_key nvarchar(400) COLLATE Latin1_General_BIN2 NOT NULL",
            "created_at datetime2 NOT NULL",
            "CONSTRAINT tandem_id_map_pk PRIMARY KEY NONCLUSTERED (pair, source_key)",
            "CONSTRAINT tandem_id_map_target UNIQUE NONCLUSTERED (pair, target_key)",
        ] {
            assert!(id_map.contains(part), "{part} not in {id_map}");
        }
        assert!(statements[3].starts_with(
            "IF OBJECT_ID(N'tandem.version', N'U') IS NULL\nCREATE TABLE tandem.version"
        ));
        // Each step's number, recorded after it and never lowered: step 2
        // brought nothing to SQL Server.
        for (at, version) in [(4, 1), (5, 2)] {
            let write = &statements[at];
            assert!(
                write.starts_with("IF EXISTS (SELECT 1 FROM tandem.version WHERE id = 1)"),
                "{write}"
            );
            assert!(write.contains(&format!(
                "UPDATE tandem.version SET version = {version} WHERE id = 1 AND version < {version};"
            )));
            assert!(write.contains(&format!(
                "INSERT INTO tandem.version (id, version) VALUES (1, {version});"
            )));
        }
        assert!(statements
            .iter()
            .all(|s| !s.contains("{{") && !s.starts_with("--")));
    }

    #[test]
    fn install_script_runs_the_steps_the_database_lacks() {
        let v = SCHEMA_VERSION;
        let t = table("dbo", "t", &[("id", DataType::Int, "int")]);
        let tables = std::slice::from_ref(&t);
        let triggers = capture_statements(&t).unwrap();
        assert_eq!(install_statements(Some(v), tables).unwrap(), triggers);
        let from_one = install_statements(Some(1), tables).unwrap();
        assert_eq!(from_one.len(), (v as usize - 1) + triggers.len());
        assert!(from_one[0].contains("SET version = 2 WHERE id = 1 AND version < 2;"));
        assert_eq!(
            install_statements(None, tables).unwrap(),
            [install_statements(None, &[]).unwrap(), triggers].concat()
        );
        let err = install_statements(Some(v + 1), tables).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
        assert_eq!(
            err.to_string(),
            format!(
                "tandem.version records schema version {}, written by a newer tandem-agent \
                 (this build knows versions up to {v}): upgrade tandem-agent",
                v + 1
            )
        );
    }

    #[test]
    fn uninstall_drops_every_capture_trigger_then_tables_and_schema() {
        let statements = uninstall_statements();
        assert_eq!(statements.len(), 5, "{statements:#?}");
        let triggers = &statements[0];
        assert!(
            triggers.starts_with("DECLARE @trigger nvarchar(600);"),
            "{triggers}"
        );
        assert!(triggers.contains("FROM sys.triggers AS tr"));
        assert!(triggers
            .contains("WHERE tr.parent_class = 1 AND tr.name LIKE N'tandem[_]capture[_]%';"));
        assert!(triggers.contains("SELECT QUOTENAME(s.name) + N'.' + QUOTENAME(tr.name)"));
        assert!(triggers.contains("EXEC (N'DROP TRIGGER ' + @trigger);"));
        assert!(triggers.ends_with("DEALLOCATE tandem_triggers;"));
        assert_eq!(
            statements[1..],
            [
                "DROP TABLE IF EXISTS tandem.changes",
                "DROP TABLE IF EXISTS tandem.id_map",
                "DROP TABLE IF EXISTS tandem.version",
                "DROP SCHEMA IF EXISTS tandem",
            ]
        );
    }

    #[test]
    fn capture_trigger_is_set_based_and_quotes_odd_names() {
        let t = table(
            "Sa]es",
            "we]ird ü",
            &[
                ("Order Id", DataType::Int, "int"),
                ("co'de", DataType::Text, "nvarchar(max)"),
            ],
        );
        let statements = capture_statements(&t).unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[1],
            "ENABLE TRIGGER [Sa]]es].[tandem_capture_we]]ird ü] ON [Sa]]es].[we]]ird ü]"
        );
        let sql = &statements[0];
        let expected_head = "CREATE OR ALTER TRIGGER [Sa]]es].[tandem_capture_we]]ird ü] ON [Sa]]es].[we]]ird ü]\nAFTER INSERT, UPDATE, DELETE\nAS\nBEGIN\n";
        assert!(sql.starts_with(expected_head), "{sql}");
        assert!(sql.contains("    SET NOCOUNT ON;\n    IF CAST(SESSION_CONTEXT(N'tandem.applying') AS int) = 1 RETURN;"), "{sql}");
        let new_key = "CAST(N'[' AS nvarchar(max)) + COALESCE(CONVERT(nvarchar(50), i.[Order Id]), N'null') + N',' + COALESCE(N'\"' + STRING_ESCAPE(i.[co'de], 'json') + N'\"', N'null') + N']'";
        let old_key = new_key.replace("i.[", "d.[");
        let matched = "i.[Order Id] = d.[Order Id] AND CAST(i.[co'de] AS varbinary(max)) = CAST(d.[co'de] AS varbinary(max))";
        let expected_body = format!(
            "    INSERT INTO tandem.changes (table_name, op, pk)
    SELECT N'Sa]es.we]ird ü', 'D', {old_key}
    FROM deleted AS d
    WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE {matched})
    ORDER BY d.[Order Id], d.[co'de];
    INSERT INTO tandem.changes (table_name, op, pk)
    SELECT N'Sa]es.we]ird ü', 'U', {new_key}
    FROM inserted AS i
    WHERE EXISTS (SELECT 1 FROM deleted AS d WHERE {matched})
    ORDER BY i.[Order Id], i.[co'de];
    INSERT INTO tandem.changes (table_name, op, pk)
    SELECT N'Sa]es.we]ird ü', 'I', {new_key}
    FROM inserted AS i
    WHERE NOT EXISTS (SELECT 1 FROM deleted AS d WHERE {matched})
    ORDER BY i.[Order Id], i.[co'de];
END"
        );
        assert!(sql.ends_with(&expected_body), "{sql}\n---\n{expected_body}");
        // The fingerprint of this build is in the body.
        let fp = fingerprint(&t).unwrap();
        assert!(fp.starts_with(&format!("v{SCHEMA_VERSION}-")));
        assert!(
            sql.contains(&format!("    -- tandem capture trigger {fp}\n")),
            "{sql}"
        );
        assert!(!sql.contains("{{"));
    }

    #[test]
    fn quotes_in_table_names_are_doubled_in_the_literal() {
        let t = table("dbo", "it's", &[("id", DataType::Int, "int")]);
        let sql = &capture_statements(&t).unwrap()[0];
        assert!(sql.contains("SELECT N'dbo.it''s', 'I', "), "{sql}");
        assert!(sql.contains("ON [dbo].[it's]\n"), "{sql}");
    }

    #[test]
    fn names_cannot_break_out_of_templates_or_statements() {
        let name = "x{{table}}\n-- ;;\nDROP TABLE y; ] ' --";
        let t = table("dbo", name, &[("id", DataType::Int, "int")]);
        let statements = capture_statements(&t).unwrap();
        assert_eq!(statements.len(), 2, "a name must not add statements");
        let sql = &statements[0];
        assert!(
            sql.contains("ON [dbo].[x{{table}}\n-- ;;\nDROP TABLE y; ]] ' --]"),
            "{sql}"
        );
        assert!(
            sql.contains("N'dbo.x{{table}}\n-- ;;\nDROP TABLE y; ] '' --'"),
            "{sql}"
        );
    }

    #[test]
    fn fingerprints_follow_the_key() {
        let a = table("dbo", "t", &[("id", DataType::Int, "int")]);
        let b = table("dbo", "t", &[("id", DataType::Text, "nvarchar(max)")]);
        let c = table("sales", "t", &[("id", DataType::Int, "int")]);
        assert_eq!(fingerprint(&a).unwrap(), fingerprint(&a.clone()).unwrap());
        assert_ne!(fingerprint(&a).unwrap(), fingerprint(&b).unwrap());
        assert_ne!(fingerprint(&a).unwrap(), fingerprint(&c).unwrap());
    }

    #[test]
    fn key_json_reads_back_exactly() {
        let cases = [
            (DataType::Int, "bigint", "COALESCE(CONVERT(nvarchar(50), i.[k]), N'null')"),
            (DataType::Bool, "bit", "COALESCE(CASE i.[k] WHEN 1 THEN N'true' WHEN 0 THEN N'false' END, N'null')"),
            (DataType::Float, "float", "COALESCE(CONVERT(nvarchar(50), i.[k], 3), N'null')"),
            (DataType::Decimal, "decimal(38, 3)", "COALESCE(N'\"' + CONVERT(nvarchar(50), i.[k]) + N'\"', N'null')"),
            (DataType::Decimal, "money", "COALESCE(N'\"' + CONVERT(nvarchar(50), i.[k], 2) + N'\"', N'null')"),
            (DataType::Text, "nvarchar(max)", "COALESCE(N'\"' + STRING_ESCAPE(i.[k], 'json') + N'\"', N'null')"),
            (DataType::Bytes, "varbinary(max)", "COALESCE(N'\"\\\\x' + CONVERT(varchar(max), i.[k], 2) + N'\"', N'null')"),
            (DataType::Date, "date", "COALESCE(N'\"' + CONVERT(nvarchar(10), i.[k], 23) + N'\"', N'null')"),
            (DataType::Time, "time(7)", "COALESCE(N'\"' + CONVERT(nvarchar(30), i.[k]) + N'\"', N'null')"),
            (DataType::Timestamp, "datetime2(7)", "COALESCE(N'\"' + CONVERT(nvarchar(30), i.[k], 126) + N'\"', N'null')"),
            (DataType::TimestampTz, "datetimeoffset(7)", "COALESCE(N'\"' + CONVERT(nvarchar(40), SWITCHOFFSET(i.[k], '+00:00'), 127) + N'\"', N'null')"),
            (DataType::Uuid, "uniqueidentifier", "COALESCE(N'\"' + CONVERT(nvarchar(36), i.[k]) + N'\"', N'null')"),
            (DataType::Other, "sql_variant", "COALESCE(N'\"' + STRING_ESCAPE(CONVERT(nvarchar(max), i.[k]), 'json') + N'\"', N'null')"),
        ];
        for (ty, native, expected) in cases {
            assert_eq!(
                key_json(&column("k", ty, native), "i"),
                expected,
                "{native}"
            );
        }
    }

    /// What SQL Server prints for each key type (the documented styles)
    /// decodes to the value the connector reads from the column.
    #[test]
    fn server_key_texts_decode_to_canonical_values() {
        use crate::value::{Key, Value};
        let types = [
            DataType::Int,
            DataType::Bool,
            DataType::Decimal,
            DataType::Text,
            DataType::Bytes,
            DataType::Date,
            DataType::Time,
            DataType::Timestamp,
            DataType::Timestamp,
            DataType::TimestampTz,
            DataType::Uuid,
            DataType::Float,
        ];
        let captured: serde_json::Value = serde_json::from_str(
            r#"[-42, true, "-1.500", "a \"q\" \/ \u000a ü", "\\x00FF27", "2024-02-29",
                "23:59:01.0000050", "1999-12-31T01:02:03.4567891", "2024-03-01T12:00:00",
                "2024-03-01T07:00:00.2500000Z", "6F9619FF-8B86-D011-B42D-00C04FC964FF",
                1.0000000000000001E-1]"#,
        )
        .unwrap();
        let key = Key::from_captured(&types, &captured).unwrap();
        let ts = |text: &str| Value::parse_text(DataType::Timestamp, text).unwrap();
        assert_eq!(
            key.0,
            vec![
                Value::Int(-42),
                Value::Bool(true),
                Value::Decimal("-1.500".into()),
                Value::Text("a \"q\" / \n ü".into()),
                Value::Bytes(vec![0, 255, 39]),
                Value::parse_text(DataType::Date, "2024-02-29").unwrap(),
                Value::parse_text(DataType::Time, "23:59:01.000005").unwrap(),
                ts("1999-12-31 01:02:03.4567891"),
                ts("2024-03-01 12:00:00"),
                Value::parse_text(DataType::TimestampTz, "2024-03-01 07:00:00.25+00").unwrap(),
                Value::Uuid(uuid::Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap()),
                Value::Float(0.1),
            ]
        );
    }

    #[test]
    fn trigger_names_fit_and_never_collide() {
        assert_eq!(trigger_name("orders"), "tandem_capture_orders");
        let long_a = "a".repeat(120) + "x";
        let long_b = "a".repeat(120) + "y";
        let a = trigger_name(&long_a);
        let b = trigger_name(&long_b);
        assert_eq!(a.chars().count(), MAX_NAME);
        assert_ne!(a, b);
        assert!(a.starts_with(TRIGGER_PREFIX));
        let odd = trigger_name(&"ü".repeat(200));
        assert_eq!(odd.chars().count(), MAX_NAME);
        let fits = "t".repeat(MAX_NAME - TRIGGER_PREFIX.len());
        assert_eq!(trigger_name(&fits), format!("{TRIGGER_PREFIX}{fits}"));
    }

    #[test]
    fn tables_without_key_cannot_be_captured() {
        let t = table("dbo", "log", &[]);
        assert_eq!(
            capture_statements(&t).unwrap_err().kind(),
            crate::ErrorKind::Schema
        );
        assert!(install_statements(None, &[t]).is_err());
    }

    #[test]
    fn first_lines_name_the_statement() {
        assert_eq!(
            first_line("-- c\n\n  CREATE TABLE x (\n a int)"),
            "CREATE TABLE x ("
        );
        assert_eq!(first_line(&"x".repeat(70)).len(), 63);
    }
}
