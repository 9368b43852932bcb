//! The SQL Server connector against a real server: the connector
//! contract, and what only SQL Server does (its types, a key with a
//! decimal in it).
//!
//! They run only when `TANDEM_TEST_MSSQL_URL` names a server with a login
//! that may create databases, e.g.
//! `mssql://sa:Passw0rd!@127.0.0.1:1433/master`. Each test then creates its
//! own database `tandem_t_<uuid>` and drops it when its guard goes out of
//! scope, failed test included. Without the variable every test writes a
//! `SKIPPED` line to stderr (past the test harness' capture, so it shows in
//! `cargo test` output) and returns: nothing is skipped silently.
//!
//! One test needs no server and always runs: a refused connection.

mod common;

use std::io::Write;
use std::slice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use common::*;
use serde_json::json;
use tandem_connectors::connector::SCHEMA_VERSION;
use tandem_connectors::mssql::MssqlConnector;
use tandem_connectors::{
    connect, ChangeOp, Connector, DataType, EndpointConfig, Engine, ErrorKind, Key, Row, TableName,
    TableSchema, Value,
};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

struct Mssql;

type TestDb = common::TestDb<Mssql>;

common::contract::contract_tests!(Mssql);

const URL_VARIABLE: &str = "TANDEM_TEST_MSSQL_URL";

/// Returns from the test (after the SKIPPED line) when no server is set.
macro_rules! skip_without_a_server {
    ($test:literal) => {
        if Mssql::skipped($test) {
            return;
        }
    };
}

type Session = tiberius::Client<Compat<TcpStream>>;

/// A plain session (not the agent's): its writes are captured.
async fn try_session(url: &str) -> Result<Session, tiberius::error::Error> {
    let parsed = url::Url::parse(url).expect("a valid test URL");
    let host = parsed.host_str().expect("a host").to_owned();
    let port = parsed.port().unwrap_or(1433);
    let mut config = tiberius::Config::new();
    config.host(host.trim_start_matches('[').trim_end_matches(']'));
    config.port(port);
    config.database(percent_decode(parsed.path().trim_start_matches('/')));
    config.authentication(tiberius::AuthMethod::sql_server(
        percent_decode(parsed.username()),
        percent_decode(parsed.password().unwrap_or("")),
    ));
    let option = |name: &str| {
        parsed
            .query_pairs()
            .any(|(k, v)| k == name && v.eq_ignore_ascii_case("true"))
    };
    config.encryption(if option("encrypt") {
        tiberius::EncryptionLevel::Required
    } else {
        tiberius::EncryptionLevel::NotSupported
    });
    if option("trust_server_certificate") {
        config.trust_cert();
    }
    let tcp = TcpStream::connect(format!("{host}:{port}")).await?;
    tcp.set_nodelay(true)?;
    tiberius::Client::connect(config, tcp.compat_write()).await
}

async fn session(url: &str) -> Session {
    try_session(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
}

/// The first column of every row, as text.
async fn strings(url: &str, sql: &str) -> Vec<String> {
    let mut client = session(url).await;
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_first_result()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|r| r.get::<&str, _>(0).unwrap_or_default().to_owned())
        .collect()
}

impl Server for Mssql {
    const ENGINE: Engine = Engine::Mssql;
    const NAME: &'static str = "SQL Server";
    const POLL_INTERVAL: Duration = Duration::from_millis(50);
    const TEXT: &'static str = "NVARCHAR(MAX)";
    const BYTES: &'static str = "VARBINARY(4)";
    const UUID: &'static str = "UNIQUEIDENTIFIER";
    const GENERATED_KEY: &'static str = "INT IDENTITY PRIMARY KEY";
    const GENERATED_UUID_KEY: &'static str = "UNIQUEIDENTIFIER DEFAULT NEWID() PRIMARY KEY";
    const SMALL_INT: (&'static str, i64) = ("TINYINT", 300);
    const LOCK_TIMEOUT: &'static str = "SET LOCK_TIMEOUT 5000";
    const WRITES_COPIES_IN_BATCHES: bool = false;
    const CHECKS_PASSWORDS: bool = true;
    const CAPTURES_A_STATEMENT_IN_KEY_ORDER: bool = true;
    const FETCHES_IN_KEY_ORDER: bool = true;
    // One trigger for inserts, updates and deletes.
    const CAPTURE_TRIGGERS_PER_TABLE: usize = 1;
    const USER_TRIGGER: &'static str =
        "CREATE TRIGGER audit ON link AFTER INSERT AS SET NOCOUNT ON;";

    fn admin_url() -> String {
        std::env::var(URL_VARIABLE).expect("a SQL Server (skipped without one)")
    }

    /// Without a server, says so on stderr.
    fn skipped(test: &str) -> bool {
        match std::env::var(URL_VARIABLE) {
            Ok(url) if !url.trim().is_empty() => false,
            _ => {
                // Straight to the process' stderr (the harness captures
                // `eprintln!` of passing tests), in one write so that
                // parallel tests' lines do not interleave.
                let line = format!(
                    "SKIPPED mssql::{test}: {URL_VARIABLE} is not set; \
                     SQL Server integration tests did not run\n"
                );
                let _ = std::io::stderr().write_all(line.as_bytes());
                true
            }
        }
    }

    async fn create_database(admin_url: &str, name: &str) {
        Self::execute(admin_url, &format!("CREATE DATABASE [{name}]")).await;
    }

    async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
        let mut client = try_session(admin_url).await.map_err(|e| e.to_string())?;
        // Sessions left behind by a failed test must not block it.
        let sql = format!(
            "IF DB_ID(N'{name}') IS NOT NULL BEGIN \
             ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; \
             DROP DATABASE [{name}]; END"
        );
        let stream = client.simple_query(sql).await.map_err(|e| e.to_string())?;
        stream.into_results().await.map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn execute(url: &str, sql: &str) {
        let mut client = session(url).await;
        let stream = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        stream
            .into_results()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn try_execute(url: &str, sql: &str) -> bool {
        let Ok(mut client) = try_session(url).await else {
            return false;
        };
        let worked = match client.simple_query(sql).await {
            Ok(stream) => stream.into_results().await.is_ok(),
            Err(_) => false,
        };
        worked
    }

    /// Everything the catalog shows of the database, modification times
    /// aside.
    async fn catalog(url: &str, _name: &str) -> Vec<String> {
        let queries = [
            "SELECT CONCAT('schema|', name) FROM sys.schemas",
            "SELECT CONCAT('object|', SCHEMA_NAME(schema_id), '|', name, '|', type, '|', \
             OBJECT_NAME(parent_object_id)) FROM sys.objects WHERE is_ms_shipped = 0",
            "SELECT CONCAT('column|', OBJECT_SCHEMA_NAME(c.object_id), '|', OBJECT_NAME(c.object_id), \
             '|', c.column_id, '|', c.name, '|', TYPE_NAME(c.user_type_id), '|', c.max_length, '|', \
             c.precision, '|', c.scale, '|', c.is_nullable, '|', c.is_identity, '|', c.collation_name) \
             FROM sys.columns AS c JOIN sys.objects AS o ON o.object_id = c.object_id \
             WHERE o.is_ms_shipped = 0",
            "SELECT CONCAT('index|', OBJECT_SCHEMA_NAME(i.object_id), '|', OBJECT_NAME(i.object_id), \
             '|', i.name, '|', i.type_desc, '|', i.is_unique, '|', i.is_primary_key) \
             FROM sys.indexes AS i JOIN sys.objects AS o ON o.object_id = i.object_id \
             WHERE o.is_ms_shipped = 0",
            "SELECT CONCAT('trigger|', t.name, '|', OBJECT_NAME(t.parent_id), '|', t.is_disabled, \
             '|', t.is_instead_of_trigger) FROM sys.triggers AS t",
            "SELECT CONCAT('module|', OBJECT_SCHEMA_NAME(object_id), '|', OBJECT_NAME(object_id), \
             '|', definition) FROM sys.sql_modules",
            "IF OBJECT_ID(N'tandem.version', N'U') IS NOT NULL \
             SELECT CONCAT('version|', id, '|', version) FROM tandem.version \
             ELSE SELECT CAST(NULL AS nvarchar(1)) WHERE 1 = 0",
        ];
        let mut out = Vec::new();
        for q in queries {
            out.extend(strings(url, q).await);
        }
        out.sort();
        out
    }

    fn quote(name: &str) -> String {
        format!("[{}]", name.replace(']', "]]"))
    }

    fn bytes(bytes: &[u8]) -> String {
        format!("0x{}", hex::encode(bytes))
    }

    fn varchar(chars: usize) -> String {
        format!("NVARCHAR({chars})")
    }

    fn with_explicit_keys(table: &str, sql: &str) -> String {
        format!("SET IDENTITY_INSERT {table} ON; {sql}; SET IDENTITY_INSERT {table} OFF;")
    }

    fn is_capture_trigger(line: &str) -> bool {
        line.starts_with("trigger|tandem_capture_")
    }

    fn installed_objects() -> Vec<String> {
        vec![
            format!("version|1|{SCHEMA_VERSION}"),
            "schema|tandem".to_owned(),
        ]
    }

    fn drop_capture_trigger(table: &str) -> String {
        let trigger = Self::quote(&format!("tandem_capture_{table}"));
        format!("DROP TRIGGER dbo.{trigger}")
    }

    /// A disabled trigger captures nothing.
    fn tamper_with_capture_trigger(table: &str) -> Option<String> {
        let trigger = Self::quote(&format!("tandem_capture_{table}"));
        Some(format!(
            "DISABLE TRIGGER [dbo].{trigger} ON [dbo].{}",
            Self::quote(table)
        ))
    }

    fn analyze(table: &str) -> String {
        format!("UPDATE STATISTICS {table}")
    }
}

fn table(name: &str) -> TableName {
    TableName::new(Some("dbo"), name)
}

const ODD: &str = common::contract::ODD;

/// A table `t (id, v)` holding the row `(1, v)`.
async fn one_row(v: i64) -> (TestDb, Arc<dyn Connector>, TableSchema) {
    let db = TestDb::with(&format!(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, {v});"
    ))
    .await;
    let connector = db.connector().await;
    let schema = describe(&connector, "t").await;
    (db, connector, schema)
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_error_without_any_server() {
    // Runs always: nothing listens on port 1.
    let config = EndpointConfig {
        engine: Engine::Mssql,
        url: "mssql://sa:s3cret-pw@127.0.0.1:1/master".to_owned(),
        password: None,
        poll_interval: Duration::from_millis(50),
        max_connections: 1,
        tls: tandem_connectors::TlsConfig::disabled(),
        http: None,
    };
    let err = connect(&config)
        .await
        .err()
        .expect("the connection is refused");
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(
        err.to_string(),
        "cannot connect to SQL Server at 127.0.0.1:1: connection refused"
    );
    assert!(!format!("{err} {err:?} {config:?}").contains("s3cret-pw"));
    // A bad URL is a configuration error, without the password either.
    let bad = EndpointConfig {
        url: "mssql://sa:s3cret-pw@127.0.0.1:1433".to_owned(),
        ..config
    };
    let err = connect(&bad).await.err().expect("no database in the URL");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
}

#[tokio::test]
async fn describe_reads_odd_names_types_keys_and_foreign_keys() {
    skip_without_a_server!("describe_reads_odd_names_types_keys_and_foreign_keys");
    // GIVEN a parent with a key in non-column order and a child with odd names
    let db = TestDb::with("CREATE TABLE parent (a INT NOT NULL, b VARCHAR(10) NOT NULL, CONSTRAINT pk_parent PRIMARY KEY (b, a));
         CREATE TABLE [Customer \"Orders\" ü] (
            id BIGINT IDENTITY PRIMARY KEY,
            [First Name] NVARCHAR(50) NOT NULL,
            pa INT, pb VARCHAR(10),
            manager BIGINT,
            total DECIMAL(12, 2), price MONEY,
            ratio FLOAT, small REAL,
            born DATE, at_time TIME(6), created DATETIME2(6), legacy DATETIME,
            stamped DATETIMEOFFSET,
            raw VARBINARY(16), token UNIQUEIDENTIFIER DEFAULT NEWID(),
            doubled AS (pa * 2), tripled AS (pa * 3) PERSISTED,
            flag BIT, tiny TINYINT, doc XML, label SYSNAME NULL,
            CONSTRAINT fk_parent FOREIGN KEY (pb, pa) REFERENCES parent (b, a),
            CONSTRAINT fk_self FOREIGN KEY (manager) REFERENCES [Customer \"Orders\" ü] (id));",
    )
    .await;
    let connector = db.connector().await;
    assert_eq!(connector.table_name(ODD), table(ODD));
    assert_eq!(
        connector.table_name("sales.orders"),
        TableName::new(Some("sales"), "orders")
    );

    // WHEN both are described
    let [parent, odd] = describe_all(&connector, ["parent", ODD]).await;

    // THEN the key keeps its order, columns their catalog order and types
    assert_eq!(parent.primary_key, vec!["b", "a"]);
    #[rustfmt::skip]
    let expected = vec![
        ("id", DataType::Int, "bigint", false, true, false),
        ("First Name", DataType::Text, "nvarchar(max)", false, false, false),
        ("pa", DataType::Int, "int", true, false, false),
        ("pb", DataType::Text, "varchar(max)", true, false, false),
        ("manager", DataType::Int, "bigint", true, false, false),
        ("total", DataType::Decimal, "decimal(38, 2)", true, false, false),
        ("price", DataType::Decimal, "money", true, false, false),
        ("ratio", DataType::Float, "float", true, false, false),
        ("small", DataType::Float, "real", true, false, false),
        ("born", DataType::Date, "date", true, false, false),
        ("at_time", DataType::Time, "time(7)", true, false, false),
        ("created", DataType::Timestamp, "datetime2(7)", true, false, false),
        ("legacy", DataType::Timestamp, "datetime", true, false, false),
        ("stamped", DataType::TimestampTz, "datetimeoffset(7)", true, false, false),
        ("raw", DataType::Bytes, "varbinary(max)", true, false, false),
        ("token", DataType::Uuid, "uniqueidentifier", true, true, false),
        ("doubled", DataType::Int, "int", true, true, true),
        ("tripled", DataType::Int, "int", true, true, true),
        ("flag", DataType::Bool, "bit", true, false, false),
        ("tiny", DataType::Int, "tinyint", true, false, false),
        ("doc", DataType::Other, "xml", true, false, false),
        ("label", DataType::Text, "nvarchar(max)", true, false, false),
    ];
    assert_eq!(column_summary(&odd), expected);
    assert_eq!(odd.primary_key, vec!["id"]);
    assert!(odd.key_is_generated());
    // AND the foreign keys keep their column order, self-reference included
    assert_eq!(
        foreign_keys(&odd),
        vec![
            (vec!["pb", "pa"], table("parent"), vec!["b", "a"]),
            (vec!["manager"], table(ODD), vec!["id"]),
        ]
    );

    // AND a missing table is a schema error naming it and the database
    assert_missing_table(&connector, "dbo.nope", &db.name).await;
    // AND a name is matched exactly, whatever the collation
    let err = connector.describe(&table("PARENT")).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Schema,
        &["table dbo.PARENT does not exist"],
    );
}

#[tokio::test]
async fn install_is_idempotent_and_uninstall_leaves_no_trace() {
    skip_without_a_server!("install_is_idempotent_and_uninstall_leaves_no_trace");
    // GIVEN two tables, one of which will later leave the configuration,
    // and a trigger of the user's own
    let db = TestDb::with("CREATE TABLE [Customer \"Orders\" ü] (id INT IDENTITY PRIMARY KEY, [First Name] NVARCHAR(MAX));
         CREATE TABLE link (a INT, b NVARCHAR(20), c VARBINARY(4), PRIMARY KEY (a, b, c));",
    )
    .await;
    db.exec("CREATE TRIGGER audit ON link AFTER INSERT AS SET NOCOUNT ON;")
        .await;
    let connector = db.connector().await;
    let tables = describe_all(&connector, [ODD, "link"]).await;
    let before = db.catalog().await;
    let nothing = connector.installation(&tables).await.unwrap();
    assert_eq!(nothing.version, None);
    assert_eq!(nothing.missing_triggers, vec![table(ODD), table("link")]);

    // WHEN installed once, then twice
    install(&connector, &tables).await;
    let once = db.catalog().await;
    install(&connector, &tables).await;
    let twice = db.catalog().await;

    // THEN the second run changed nothing, and everything is in place
    assert_eq!(once, twice);
    let triggers = once
        .iter()
        .filter(|l| l.starts_with("trigger|tandem_capture_"));
    assert_eq!(triggers.count(), 2, "{once:#?}");
    assert!(
        once.contains(&format!("version|1|{SCHEMA_VERSION}")),
        "{once:#?}"
    );
    assert!(once.contains(&"schema|tandem".to_owned()), "{once:#?}");
    let installed = connector.installation(&tables).await.unwrap();
    assert_eq!(installed.version, Some(SCHEMA_VERSION));
    assert!(installed.missing_triggers.is_empty(), "{installed:?}");

    // AND a dropped or disabled trigger is reported
    db.exec("DROP TRIGGER dbo.tandem_capture_link").await;
    db.exec("DISABLE TRIGGER [dbo].[tandem_capture_Customer \"Orders\" ü] ON [dbo].[Customer \"Orders\" ü]")
        .await;
    let partial = connector.installation(&tables).await.unwrap();
    assert_eq!(partial.missing_triggers, vec![table(ODD), table("link")]);
    // AND installing again brings both back
    install(&connector, &tables).await;
    assert_eq!(db.catalog().await, once);
    let repaired = connector.installation(&tables).await.unwrap();
    assert!(repaired.missing_triggers.is_empty(), "{repaired:?}");

    // WHEN uninstalled with only one table still configured
    uninstall(&connector, &tables[..1]).await;

    // THEN the catalog is exactly as before install (the user's own
    // trigger kept)
    assert_eq!(db.catalog().await, before);
    assert_eq!(connector.installation(&tables).await.unwrap().version, None);
}

#[tokio::test]
async fn captures_insert_update_delete_and_key_change() {
    skip_without_a_server!("captures_insert_update_delete_and_key_change");
    // GIVEN an installed table with an odd name
    let db = TestDb::with(
        "CREATE TABLE [Customer \"Orders\" ü] (id INT PRIMARY KEY, [First Name] NVARCHAR(MAX));",
    )
    .await;
    let connector = db.connector().await;
    install_capture(&connector, [ODD]).await;

    // WHEN an application inserts, updates, changes a key and deletes
    db.exec(
        "INSERT INTO [Customer \"Orders\" ü] VALUES (2, N'Bob'), (1, N'Ann');
         UPDATE [Customer \"Orders\" ü] SET [First Name] = N'Anna' WHERE id = 1;
         UPDATE [Customer \"Orders\" ü] SET id = 3 WHERE id = 2;
         DELETE FROM [Customer \"Orders\" ü] WHERE id = 1;
         UPDATE [Customer \"Orders\" ü] SET id = 4 WHERE id = 99;",
    )
    .await;

    // THEN each is one change row, the key change as delete + insert, a
    // multi-row insert in key order, an update of nothing as nothing
    let read = connector.read_changes(&[table(ODD)], 100).await.unwrap();
    assert!(read.windows(2).all(|w| w[0].seq < w[1].seq));
    let display = format!("dbo.{ODD}");
    assert!(read.iter().all(|c| c.table == display));
    let got: Vec<_> = read.into_iter().map(|c| (c.op, c.key)).collect();
    assert_eq!(
        got,
        vec![
            (ChangeOp::Insert, json!([1])),
            (ChangeOp::Insert, json!([2])),
            (ChangeOp::Update, json!([1])),
            (ChangeOp::Delete, json!([2])),
            (ChangeOp::Insert, json!([3])),
            (ChangeOp::Delete, json!([1])),
        ]
    );
    assert_eq!(
        connector.count_changes(&[table(ODD)]).await.unwrap(),
        vec![(display, 6)]
    );
}

#[tokio::test]
async fn captured_keys_decode_to_the_stored_key() {
    skip_without_a_server!("captured_keys_decode_to_the_stored_key");
    // GIVEN a table keyed by bytes, an instant, a decimal, text, a uuid, a
    // datetime and money
    let db = TestDb::with(
        "CREATE TABLE k (b VARBINARY(8), z DATETIMEOFFSET(6), d DECIMAL(8, 3), t NVARCHAR(20),
                         u UNIQUEIDENTIFIER, l DATETIME, m MONEY, v INT,
                         PRIMARY KEY (b, z, d, t, u, l, m));",
    )
    .await;
    let connector = db.connector().await;
    let [schema] = install_capture(&connector, ["k"]).await;

    // WHEN an application writes with a zone offset, then changes only the
    // case of the text key
    db.exec(
        "INSERT INTO k VALUES (0x00FF27, '2024-03-01 12:00:00.25 +05:00', 1.5, N'Ab',
                              '6F9619FF-8B86-D011-B42D-00C04FC964FF', '2024-01-02 03:04:05.003',
                              -12.3456, 1);",
    )
    .await;
    db.exec("UPDATE k SET t = N'AB';").await;

    // THEN the captured keys decode to the keys the table holds
    let stored = connector.scan(&schema, None, 10).await.unwrap();
    let stored_key = schema.key_of(&stored[0]).unwrap();
    assert_eq!(stored_key.0[0], Value::Bytes(vec![0, 255, 39]));
    assert_eq!(
        stored_key.0[1],
        Value::parse_text(DataType::TimestampTz, "2024-03-01 07:00:00.25+00").unwrap()
    );
    assert_eq!(stored_key.0[2], Value::Decimal("1.500".into()));
    assert_eq!(stored_key.0[3], text("AB"));
    assert_eq!(stored_key.0[6], Value::Decimal("-12.3456".into()));
    let read = connector.read_changes(&[table("k")], 10).await.unwrap();
    let ops: Vec<ChangeOp> = read.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        vec![ChangeOp::Insert, ChangeOp::Delete, ChangeOp::Insert]
    );
    let captured = |i: usize| Key::from_captured(&schema.key_types(), &read[i].key).unwrap();
    assert_eq!(captured(0).0[3], text("Ab"));
    let last = captured(2);
    // The datetime key comes back at 1/300 s, the captured text at 1 ms:
    // both bind to the same datetime, so the row is found by either.
    assert_eq!(last.0[..4], stored_key.0[..4]);
    assert_eq!(last.0[4..5], stored_key.0[4..5]);
    assert_eq!(last.0[6], stored_key.0[6]);
    assert_eq!(
        connector.fetch_rows(&schema, &[last]).await.unwrap(),
        stored
    );
}

#[tokio::test]
async fn own_writes_are_not_captured_but_concurrent_ones_are() {
    skip_without_a_server!("own_writes_are_not_captured_but_concurrent_ones_are");
    // GIVEN an installed table
    let db = TestDb::with("CREATE TABLE t (id INT IDENTITY PRIMARY KEY, v NVARCHAR(MAX));").await;
    let connector = db.connector().await;
    let [schema] = install_capture(&connector, ["t"]).await;

    // WHEN the agent writes in its transaction while an application writes
    let mut tx = connector.begin().await.unwrap();
    let own = tx
        .insert(&schema, &row(&[("v", text("agent"))]))
        .await
        .unwrap();
    db.exec(
        "SET IDENTITY_INSERT t ON; INSERT INTO t (id, v) VALUES (100, N'app'); SET IDENTITY_INSERT t OFF;",
    )
    .await;
    let agent2 = row(&[("v", text("agent2"))]);
    assert!(tx.update(&schema, &own, &agent2).await.unwrap());
    tx.commit().await.unwrap();

    // THEN only the application's write is captured
    assert_eq!(
        changes(&connector, &[table("t")]).await,
        vec![(ChangeOp::Insert, json!([100]))]
    );
    let rows = connector.fetch_rows(&schema, &[own]).await.unwrap();
    assert_eq!(rows[0]["v"], text("agent2"));
}

#[tokio::test]
async fn the_marker_never_leaks_into_the_pool() {
    skip_without_a_server!("the_marker_never_leaks_into_the_pool");
    // GIVEN a pool of one session and an installed table
    let db = TestDb::with("CREATE TABLE t (id INT PRIMARY KEY, v NVARCHAR(MAX));").await;
    let connector = db.connector_with(|c| c.max_connections = 1).await;
    let [schema] = install_capture(&connector, ["t"]).await;
    let id = |i| row(&[("id", Value::Int(i))]);
    let plain = |id: i64| vec![format!("INSERT INTO t (id) VALUES ({id})")];

    // WHEN a transaction commits
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&schema, &id(1)).await.unwrap();
    tx.commit().await.unwrap();
    // THEN the one pooled session writes unmarked again (it is captured)
    connector.run_script(&plain(3)).await.unwrap();
    assert_eq!(
        changes(&connector, &[table("t")]).await,
        vec![(ChangeOp::Insert, json!([3]))]
    );

    // WHEN a transaction rolls back, or is dropped unfinished
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&schema, &id(5)).await.unwrap();
    tx.rollback().await.unwrap();
    connector.run_script(&plain(6)).await.unwrap();
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&schema, &id(2)).await.unwrap();
    drop(tx);
    // THEN the pool gets a clean session back
    tokio::time::timeout(Duration::from_secs(10), connector.run_script(&plain(4)))
        .await
        .expect("the pool got its session back")
        .unwrap();
    assert_eq!(
        changes(&connector, &[table("t")]).await,
        vec![
            (ChangeOp::Insert, json!([3])),
            (ChangeOp::Insert, json!([6])),
            (ChangeOp::Insert, json!([4])),
        ]
    );
    // AND the dropped transaction left nothing and holds no lock
    let keys = [key(&[Value::Int(1)]), key(&[Value::Int(2)])];
    assert_eq!(connector.fetch_rows(&schema, &keys).await.unwrap().len(), 1);
    db.exec("SET LOCK_TIMEOUT 5000; INSERT INTO t (id) VALUES (2);")
        .await;
}

#[tokio::test]
async fn changes_are_read_and_deleted_by_identity() {
    skip_without_a_server!("changes_are_read_and_deleted_by_identity");
    // GIVEN changes of two tables
    let db =
        TestDb::with("CREATE TABLE a (id INT PRIMARY KEY); CREATE TABLE b (id INT PRIMARY KEY);")
            .await;
    let connector = db.connector().await;
    install_capture(&connector, ["a", "b"]).await;
    db.exec("INSERT INTO a VALUES (1), (2), (3); INSERT INTO b VALUES (1);")
        .await;

    // WHEN only a's are read, with a limit, and one of them is deleted
    let read = connector.read_changes(&[table("a")], 2).await.unwrap();
    assert_eq!(
        read.iter().map(|c| c.key.clone()).collect::<Vec<_>>(),
        vec![json!([1]), json!([2])]
    );
    connector.delete_changes(&[read[1].seq]).await.unwrap();
    connector.delete_changes(&[]).await.unwrap();

    // THEN exactly that row is gone; b's are untouched
    let inserted = |id| (ChangeOp::Insert, json!([id]));
    assert_eq!(
        changes(&connector, &[table("a")]).await,
        vec![inserted(1), inserted(3)]
    );
    assert_eq!(changes(&connector, &[table("b")]).await, vec![inserted(1)]);
    assert_eq!(
        connector
            .count_changes(&[table("a"), table("b")])
            .await
            .unwrap(),
        vec![("dbo.a".to_owned(), 2), ("dbo.b".to_owned(), 1)]
    );
    assert!(connector.read_changes(&[], 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn values_round_trip_for_every_type() {
    skip_without_a_server!("values_round_trip_for_every_type");
    // GIVEN a column of every type
    let db = TestDb::with(
        "CREATE TABLE vals (
            id INT IDENTITY PRIMARY KEY,
            i BIGINT, small SMALLINT, tiny TINYINT, dec_ DECIMAL(30, 6), m MONEY, f REAL, d FLOAT,
            t NVARCHAR(100), vt VARCHAR(100), tx NVARCHAR(MAX), b VARBINARY(50), bl VARBINARY(MAX),
            dt DATE, tm TIME(6), ts DATETIME2(6), legacy DATETIME, tz DATETIMEOFFSET(6),
            uu UNIQUEIDENTIFIER, flag BIT, doc XML);",
    )
    .await;
    let connector = db.connector().await;
    let schema = describe(&connector, "vals").await;
    let at = |y, mo, d, h, mi, s, nano| {
        let date = NaiveDate::from_ymd_opt(y, mo, d).unwrap();
        date.and_hms_nano_opt(h, mi, s, nano).unwrap()
    };
    let full = row(&[
        ("i", Value::Int(i64::MIN)),
        ("small", Value::Int(-32768)),
        ("tiny", Value::Int(255)),
        (
            "dec_",
            Value::Decimal("-123456789012345678901234.123456".into()),
        ),
        ("m", Value::Decimal("-922337203685477.5808".into())),
        ("f", Value::Float(0.1)),
        ("d", Value::Float(-1.5e300)),
        ("t", text("Grüße 🎉 'q' \"x\" \\ ] [")),
        ("vt", text("plain ascii")),
        ("tx", text("long\ntext")),
        ("b", Value::Bytes(vec![0, 255, 10, 39, 92])),
        ("bl", Value::Bytes(vec![])),
        (
            "dt",
            Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
        ),
        (
            "tm",
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 1, 5).unwrap()),
        ),
        (
            "ts",
            Value::Timestamp(at(1999, 12, 31, 1, 2, 3, 456_789_000)),
        ),
        // datetime keeps 1/300 s: written as what it reads back.
        (
            "legacy",
            Value::Timestamp(at(2024, 1, 2, 3, 4, 5, 3_333_333)),
        ),
        (
            "tz",
            Value::TimestampTz(at(2030, 1, 1, 0, 0, 0, 123_456_000).and_utc()),
        ),
        ("uu", Value::Uuid(uuid::Uuid::new_v4())),
        ("flag", Value::Bool(true)),
        ("doc", text("<a>1</a>")),
    ]);
    let nulls: Row = full.keys().map(|k| (k.clone(), Value::Null)).collect();

    // WHEN both rows are written by the agent and read back
    let mut tx = connector.begin().await.unwrap();
    let full_key = tx.insert(&schema, &full).await.unwrap();
    let null_key = tx.insert(&schema, &nulls).await.unwrap();
    tx.commit().await.unwrap();
    let keys = [full_key, null_key];
    let rows = connector.fetch_rows(&schema, &keys).await.unwrap();

    // THEN every value comes back as written, NULL included
    assert_eq!(rows.len(), 2);
    for (i, written) in [full, nulls].into_iter().enumerate() {
        let mut expected = written;
        expected.insert("id".into(), keys[i].0[0].clone());
        assert_eq!(rows[i], expected);
    }
    // AND an unconvertible value is a data error naming table, column, value
    let mut tx = connector.begin().await.unwrap();
    let err = tx
        .insert(&schema, &row(&[("dt", text("someday"))]))
        .await
        .unwrap_err();
    assert_error(&err, ErrorKind::Data, &["`dt`", "vals", "someday"]);
    let err = tx
        .insert(&schema, &row(&[("d", Value::Float(f64::NAN))]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn insert_returns_generated_or_given_keys() {
    skip_without_a_server!("insert_returns_generated_or_given_keys");
    // GIVEN a table with an IDENTITY key, one with a NEWID() key, and a link
    // table keyed by its references
    let db = TestDb::with(
        "CREATE TABLE person (id INT IDENTITY PRIMARY KEY, name NVARCHAR(MAX));
         CREATE TABLE tag (id UNIQUEIDENTIFIER DEFAULT NEWID() PRIMARY KEY, label NVARCHAR(MAX));
         CREATE TABLE person_tag (person INT, tag UNIQUEIDENTIFIER, PRIMARY KEY (person, tag),
            FOREIGN KEY (person) REFERENCES person (id), FOREIGN KEY (tag) REFERENCES tag (id));",
    )
    .await;
    let connector = db.connector().await;
    let [person, tag, link] = describe_all(&connector, ["person", "tag", "person_tag"]).await;
    install(&connector, slice::from_ref(&person)).await;
    assert!(person.key_is_generated());
    assert!(tag.key_is_generated());
    assert!(link.key_is_references());

    // WHEN rows without keys, a row with an explicit identity key and a link
    // row with its key are inserted
    let mut tx = connector.begin().await.unwrap();
    let mut people = Vec::new();
    for person_row in [
        row(&[("name", text("a"))]),
        row(&[("id", Value::Null), ("name", text("b"))]),
        row(&[("id", Value::Int(10)), ("name", text("c"))]),
    ] {
        people.push(tx.insert(&person, &person_row).await.unwrap());
    }
    let labelled = row(&[("label", text("x"))]);
    let tag_key = tx.insert(&tag, &labelled).await.unwrap();
    let tagged = row(&[("person", text(" 2")), ("tag", tag_key.0[0].clone())]);
    let link_key = tx.insert(&link, &tagged).await.unwrap();
    tx.commit().await.unwrap();

    // THEN the keys are the engine's, the given ones kept, and the link's
    // is the row's (as stored)
    assert_eq!(
        people,
        vec![
            key(&[Value::Int(1)]),
            key(&[Value::Int(2)]),
            key(&[Value::Int(10)])
        ]
    );
    assert!(matches!(tag_key.0[0], Value::Uuid(_)), "{tag_key:?}");
    assert_eq!(link_key, key(&[Value::Int(2), tag_key.0[0].clone()]));
    let rows = connector
        .fetch_rows(&tag, slice::from_ref(&tag_key))
        .await
        .unwrap();
    assert_eq!(rows[0]["label"], text("x"));
    let links = connector.fetch_rows(&link, &[link_key]).await.unwrap();
    assert_eq!(links.len(), 1);
    // AND the identity insert was switched off again (another table can
    // use it), and nothing the agent wrote was captured
    db.exec("SET IDENTITY_INSERT person ON; SET IDENTITY_INSERT person OFF;")
        .await;
    assert!(changes(&connector, &[table("person")]).await.is_empty());
}

#[tokio::test]
async fn update_delete_savepoints_and_locks_report_what_happened() {
    skip_without_a_server!("update_delete_savepoints_and_locks_report_what_happened");
    // GIVEN one row
    let (_db, connector, schema) = one_row(10).await;
    let one = key(&[Value::Int(1)]);
    let missing = key(&[Value::Int(9)]);
    let id = |i| row(&[("id", Value::Int(i))]);

    let mut tx = connector.begin().await.unwrap();
    // THEN fetch_for_update finds it (or not)
    let locked = tx.fetch_for_update(&schema, &one).await.unwrap().unwrap();
    assert_eq!(locked["v"], Value::Int(10));
    assert_eq!(tx.fetch_for_update(&schema, &missing).await.unwrap(), None);
    // AND an update with the same values still counts as existing
    assert_updates(
        &mut tx,
        &[
            (&schema, &one, row(&[("v", Value::Int(10))]), true),
            (&schema, &one, id(1), true),
            (&schema, &missing, row(&[("v", Value::Int(1))]), false),
        ],
    )
    .await;
    // AND a savepoint undoes only what came after it, a failed statement
    // included
    tx.savepoint().await.unwrap();
    tx.insert(&schema, &id(2)).await.unwrap();
    assert!(tx.insert(&schema, &id(1)).await.is_err());
    tx.rollback_to_savepoint().await.unwrap();
    tx.savepoint().await.unwrap();
    tx.insert(&schema, &id(3)).await.unwrap();
    tx.release_savepoint().await.unwrap();
    // AND delete says whether there was a row
    assert!(tx.delete(&schema, &one).await.unwrap());
    assert!(!tx.delete(&schema, &one).await.unwrap());
    tx.commit().await.unwrap();

    let page = connector.scan(&schema, None, 10).await.unwrap();
    assert_eq!(
        page,
        vec![row(&[("id", Value::Int(3)), ("v", Value::Null)])]
    );

    // AND a rolled back transaction leaves nothing
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&schema, &id(4)).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(connector.scan(&schema, None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn scan_pages_through_a_composite_key_in_order() {
    skip_without_a_server!("scan_pages_through_a_composite_key_in_order");
    // GIVEN rows inserted out of key order
    let db = TestDb::with(
        "CREATE TABLE pairs (a INT, b NVARCHAR(5), c DECIMAL(5, 1), PRIMARY KEY (a, b, c));
         INSERT INTO pairs VALUES (2, N'a', 1), (1, N'b', 1), (1, N'a', 2.5), (3, N'a', 1),
                                  (2, N'b', 1), (1, N'a', 1);",
    )
    .await;
    let connector = db.connector().await;
    let schema = describe(&connector, "pairs").await;

    // WHEN scanned two at a time
    let seen = scanned_keys(&connector, &schema, 2).await;

    // THEN every row comes once, in key order
    assert_eq!(
        seen,
        vec![
            "(1, a, 1.0)",
            "(1, a, 2.5)",
            "(1, b, 1.0)",
            "(2, a, 1.0)",
            "(2, b, 1.0)",
            "(3, a, 1.0)"
        ]
    );
    let estimate = connector.estimate_rows(&schema).await.unwrap();
    assert_eq!(estimate, tandem_connectors::RowCount::counted(5));
    // AND fetching by a key list finds each row once, in key order
    let wanted = [
        key(&[Value::Int(3), text("a"), Value::Decimal("1.0".into())]),
        key(&[Value::Int(1), text("a"), Value::Decimal("2.5".into())]),
        key(&[Value::Int(1), text("a"), Value::Decimal("2.5".into())]),
        key(&[Value::Int(9), text("z"), Value::Decimal("1".into())]),
    ];
    let found = connector.fetch_rows(&schema, &wanted).await.unwrap();
    let found: Vec<String> = found
        .iter()
        .map(|r| schema.key_of(r).unwrap().to_string())
        .collect();
    assert_eq!(found, vec!["(1, a, 2.5)", "(3, a, 1.0)"]);
}

#[tokio::test]
async fn links_are_recorded_replaced_and_forgotten() {
    skip_without_a_server!("links_are_recorded_replaced_and_forgotten");
    // GIVEN an installed database
    let db = TestDb::create().await;
    let connector = db.connector().await;
    install(&connector, &[]).await;

    // WHEN links are recorded, some replacing others by source or target
    let mut tx = connector.begin().await.unwrap();
    record_links(
        &mut tx,
        "p [1]=[10], p [1]=[11], p [2]=[11], p [3]=[13], p [4]=[14], q [1]=[11], p [\"a\"]=[20], p [\"A\"]=[21]",
    )
    .await;
    tx.forget_link("p", "[3]", "[none]").await.unwrap();
    tx.forget_link("p", "[none]", "[14]").await.unwrap();
    tx.commit().await.unwrap();

    // THEN the mapping holds one row per source and per target, keys told
    // apart by case
    assert_links(
        &connector,
        "p [\"A\"]=[21], p [\"a\"]=[20], p [2]=[11], q [1]=[11]",
    )
    .await;
    // AND a rolled back link is not kept
    record_links_then_roll_back(&connector, "p [5]=[15]").await;
    assert_eq!(connector.read_id_map().await.unwrap().len(), 4);
}

#[tokio::test]
async fn errors_have_the_right_kind() {
    skip_without_a_server!("errors_have_the_right_kind");
    let db = TestDb::with(
        "CREATE TABLE parent (id INT PRIMARY KEY);
         CREATE TABLE child (id INT PRIMARY KEY, parent INT REFERENCES parent (id),
                             name NVARCHAR(3) NOT NULL, small TINYINT);",
    )
    .await;
    let connector = db.connector().await;
    let child = describe(&connector, "child").await;
    let name = |v: &str| ("name", text(v));

    let mut tx = connector.begin().await.unwrap();
    tx.insert(&child, &row(&[("id", Value::Int(1)), name("a")]))
        .await
        .unwrap();
    tx.savepoint().await.unwrap();
    // a unique violation, a foreign key violation, NOT NULL, too long: data
    for bad in [
        row(&[("id", Value::Int(1)), name("b")]),
        row(&[("id", Value::Int(2)), ("parent", Value::Int(7)), name("c")]),
        row(&[("id", Value::Int(3))]),
        row(&[("id", Value::Int(4)), name("toolong")]),
        row(&[("id", Value::Int(5)), name("d"), ("small", Value::Int(300))]),
    ] {
        let err = tx.insert(&child, &bad).await.unwrap_err();
        assert_error(&err, ErrorKind::Data, &["child"]);
        tx.rollback_to_savepoint().await.unwrap();
    }
    // an unknown column: schema
    let err = tx
        .insert(&child, &row(&[("nope", Value::Int(1))]))
        .await
        .unwrap_err();
    assert_error(&err, ErrorKind::Schema, &[]);
    tx.commit().await.unwrap();

    // an unknown table: schema
    db.exec("DROP TABLE child;").await;
    let err = connector
        .fetch_rows(&child, &[key(&[Value::Int(1)])])
        .await
        .unwrap_err();
    assert_error(&err, ErrorKind::Schema, &["child"]);
    let err = connector.describe(&table("child")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema);

    // a refused connection: connection, naming the address
    let err = db.connect_error("mssql://sa@127.0.0.1:1/x").await;
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(
        err.to_string(),
        "cannot connect to SQL Server at 127.0.0.1:1: connection refused"
    );

    // a wrong password: permission, and the password is never shown
    let denied = db.url_with(|url| {
        url.set_username("tandem_nobody").unwrap();
        url.set_password(Some("s3cret-pw")).unwrap();
    });
    let err = db.connect_error(&denied).await;
    assert_eq!(err.kind(), ErrorKind::Permission, "{err}");
    assert!(!format!("{err} {err:?}").contains("s3cret-pw"), "{err:?}");
}

#[tokio::test]
async fn config_password_wins_and_waits_are_bounded() {
    skip_without_a_server!("config_password_wins_and_waits_are_bounded");
    // GIVEN a URL with a wrong password and the right one given apart
    let db = TestDb::create().await;
    let mut url = url::Url::parse(&db.url).unwrap();
    let right = percent_decode(url.password().unwrap_or(""));
    url.set_password(Some("wrong")).unwrap();
    let config = EndpointConfig {
        url: url.to_string(),
        password: Some(right),
        ..db.config()
    };

    // WHEN connecting
    let connector = MssqlConnector::connect(&config).await.unwrap();

    // THEN the given password was used
    assert_eq!(connector.engine(), Engine::Mssql);

    // AND waiting for changes never outlasts the poll interval by much
    let started = Instant::now();
    connector.wait_for_changes(Duration::from_secs(60)).await;
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn dropped_transaction_releases_its_locks() {
    skip_without_a_server!("dropped_transaction_releases_its_locks");
    // GIVEN a row locked by an applying transaction that is then dropped
    let (db, connector, schema) = one_row(0).await;
    let mut tx = connector.begin().await.unwrap();
    let five = row(&[("v", Value::Int(5))]);
    tx.update(&schema, &key(&[Value::Int(1)]), &five)
        .await
        .unwrap();
    drop(tx);

    // THEN another session can soon update the row, and the update is lost
    eventually("the dropped transaction to end", || {
        db.try_exec("SET LOCK_TIMEOUT 1000; UPDATE t SET v = v + 1 WHERE id = 1;")
    })
    .await;
    let rows = connector.scan(&schema, None, 10).await.unwrap();
    assert_eq!(rows[0]["v"], Value::Int(1));
}
