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
use std::time::Duration;

use chrono::NaiveDate;
use common::contract::capture::assert_a_case_only_key_change_was_captured;
use common::contract::values::portable_samples;
use common::*;
use tandem_connectors::connector::SCHEMA_VERSION;
use tandem_connectors::{
    connect, DataType, EndpointConfig, Engine, ErrorKind, Key, Row, TableName, Value,
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

    const EVERY_TYPE: &'static str = "CREATE TABLE vals (
            id INT IDENTITY PRIMARY KEY,
            i BIGINT, small SMALLINT, tiny TINYINT, dec_ DECIMAL(30, 6), m MONEY, f REAL, d FLOAT,
            t NVARCHAR(100), vt VARCHAR(100), tx NVARCHAR(MAX), b VARBINARY(50), bl VARBINARY(MAX),
            dt DATE, tm TIME(6), ts DATETIME2(6), legacy DATETIME, tz DATETIMEOFFSET(6),
            uu UNIQUEIDENTIFIER, flag BIT, doc XML);";

    fn every_type_rows() -> Vec<Row> {
        let at = |y, mo, d, h, mi, s, nano| {
            let date = NaiveDate::from_ymd_opt(y, mo, d).unwrap();
            date.and_hms_nano_opt(h, mi, s, nano).unwrap()
        };
        let mut full = portable_samples();
        full.extend(row(&[
            ("small", Value::Int(-32768)),
            ("tiny", Value::Int(255)),
            (
                "dec_",
                Value::Decimal("-123456789012345678901234.123456".into()),
            ),
            ("m", Value::Decimal("-922337203685477.5808".into())),
            ("t", text("Grüße 🎉 'q' \"x\" \\ ] [")),
            ("vt", text("plain ascii")),
            // datetime keeps 1/300 s: written as what it reads back.
            (
                "legacy",
                Value::Timestamp(at(2024, 1, 2, 3, 4, 5, 3_333_333)),
            ),
            ("flag", Value::Bool(true)),
            ("doc", text("<a>1</a>")),
        ]));
        vec![full]
    }

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
async fn describe_maps_every_sql_server_type_and_matches_names_exactly() {
    skip_without_a_server!("describe_maps_every_sql_server_type_and_matches_names_exactly");
    // GIVEN a column of every kind of type, generated ones included
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
            flag BIT, tiny TINYINT, doc XML, label SYSNAME NULL);",
    )
    .await;
    let connector = db.connector().await;
    assert_eq!(connector.table_name(ODD), table(ODD));
    assert_eq!(
        connector.table_name("sales.orders"),
        TableName::new(Some("sales"), "orders")
    );

    // WHEN described
    let [_, odd] = describe_all(&connector, ["parent", ODD]).await;

    // THEN the columns keep their catalog order, each with its type
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
    // AND a name is matched exactly, whatever the collation
    let err = connector.describe(&table("PARENT")).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Schema,
        &["table dbo.PARENT does not exist"],
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

    // THEN the captured keys decode to the keys the table holds. The
    // datetime key comes back at 1/300 s, the captured text at 1 ms: both
    // bind to the same datetime, so the row is found by either.
    let same = |captured: &Key, stored: &Key| {
        captured.0[..5] == stored.0[..5] && captured.0[6] == stored.0[6]
    };
    let stored_key = assert_a_case_only_key_change_was_captured(&connector, &schema, 3, same).await;
    assert_eq!(stored_key.0[0], Value::Bytes(vec![0, 255, 39]));
    assert_eq!(
        stored_key.0[1],
        Value::parse_text(DataType::TimestampTz, "2024-03-01 07:00:00.25+00").unwrap()
    );
    assert_eq!(stored_key.0[2], Value::Decimal("1.500".into()));
    assert_eq!(stored_key.0[3], text("AB"));
    assert_eq!(stored_key.0[6], Value::Decimal("-12.3456".into()));
}

#[tokio::test]
async fn a_float_that_is_not_a_number_is_a_data_error() {
    skip_without_a_server!("a_float_that_is_not_a_number_is_a_data_error");
    let db = TestDb::with("CREATE TABLE vals (id INT IDENTITY PRIMARY KEY, d FLOAT);").await;
    let connector = db.connector().await;
    let vals = describe(&connector, "vals").await;

    let mut tx = connector.begin().await.unwrap();
    let err = tx
        .insert(&vals, &row(&[("d", Value::Float(f64::NAN))]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_composite_key_with_a_decimal_scans_and_fetches_in_key_order() {
    skip_without_a_server!("a_composite_key_with_a_decimal_scans_and_fetches_in_key_order");
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
