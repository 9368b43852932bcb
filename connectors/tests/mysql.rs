//! The MySQL connector against the local server (MariaDB or MySQL 8,
//! `TANDEM_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/mysql`):
//! the connector contract, and what only MySQL does (its types, TLS, its two
//! flavours of SQL, batches cut to its limits).
//!
//! Each test creates its own database `tandem_t_<uuid>` and drops it when
//! its guard goes out of scope, failed test included.

mod common;

use std::slice;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use common::contract::capture::assert_a_case_only_key_change_was_captured;
use common::contract::values::portable_samples;
use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use serde_json::json;
use tandem_connectors::mysql::{Flavour, MysqlConnector};
use tandem_connectors::{
    ChangeOp, Charset, Connector, CopyOf, DataType, EndpointConfig, Engine, ErrorKind, IdMapRow,
    Key, Row, TableName, TableSchema, TlsMode, Transaction, Value,
};

struct Mysql;

type TestDb = common::TestDb<Mysql>;

common::contract::contract_tests!(Mysql);

async fn session(url: &str) -> mysql_async::Result<Conn> {
    Conn::new(Opts::from_url(url)?).await
}

/// The first column of every row of `sql`, as text.
async fn strings(url: &str, sql: &str) -> Vec<String> {
    let mut conn = session(url).await.unwrap();
    let out: Vec<Option<String>> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.disconnect().await.unwrap();
    out.into_iter().map(Option::unwrap_or_default).collect()
}

impl Server for Mysql {
    const ENGINE: Engine = Engine::Mysql;
    const NAME: &'static str = "MySQL";
    const POLL_INTERVAL: Duration = Duration::from_millis(50);
    const BYTES: &'static str = "VARBINARY(4)";
    const UUID: &'static str = "UUID";
    const GENERATED_KEY: &'static str = "INT AUTO_INCREMENT PRIMARY KEY";
    const GENERATED_UUID_KEY: &'static str = "UUID DEFAULT uuid() PRIMARY KEY";
    const LOCK_TIMEOUT: &'static str = "SET innodb_lock_wait_timeout = 5";
    const WRITES_COPIES_IN_BATCHES: bool = true;
    const CHECKS_PASSWORDS: bool = true;
    const CAPTURE_TRIGGERS_PER_TABLE: usize = 3;
    const USER_TRIGGER: &'static str =
        "CREATE TRIGGER audit BEFORE INSERT ON link FOR EACH ROW SET @audited = 1";

    const EVERY_TYPE: &'static str = "CREATE TABLE vals (
        id INT AUTO_INCREMENT PRIMARY KEY,
        i BIGINT, u BIGINT UNSIGNED, small SMALLINT UNSIGNED, dec_ DECIMAL(30,6), f FLOAT, d DOUBLE,
        t VARCHAR(100), tx LONGTEXT, b VARBINARY(50), bl BLOB, dt DATE, tm TIME(6),
        ts DATETIME(6), tz TIMESTAMP(6) NULL, j JSON, uu UUID, e ENUM('x','y'), y YEAR,
        bits BIT(8), bin16 BINARY(16))";

    fn every_type_rows() -> Vec<Row> {
        let uuid = uuid::Uuid::new_v4();
        let mut full = portable_samples();
        full.extend(row(&[
            ("u", Value::Decimal("18446744073709551615".into())),
            ("small", Value::Int(65535)),
            (
                "dec_",
                Value::Decimal("-123456789012345678901234.123456".into()),
            ),
            ("t", text("Grüße 🎉 'q' \"x\" \\ `")),
            ("j", Value::Json(json!({"a": [1, "b"], "c": null}))),
            ("e", text("y")),
            ("y", Value::Int(2024)),
            ("bits", Value::Bytes(vec![0b1010_0101])),
            ("bin16", Value::Bytes(uuid.as_bytes().to_vec())),
        ]));
        vec![full]
    }

    fn admin_url() -> String {
        std::env::var("TANDEM_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned())
    }

    async fn create_database(admin_url: &str, name: &str) {
        let create =
            format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci");
        Self::execute(admin_url, &create).await;
    }

    async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
        let dropped: mysql_async::Result<()> = async {
            let mut admin = session(admin_url).await?;
            // Sessions left behind by a failed test must not block the drop.
            let ids: Vec<u64> = admin
                .exec(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
                    (name,),
                )
                .await?;
            for id in ids {
                let _ = admin.query_drop(format!("KILL {id}")).await;
            }
            admin.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await?;
            admin.disconnect().await
        }
        .await;
        dropped.map_err(|e| e.to_string())
    }

    async fn execute(url: &str, sql: &str) {
        let mut conn = session(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.unwrap();
    }

    async fn try_execute(url: &str, sql: &str) -> bool {
        let Ok(mut conn) = session(url).await else {
            return false;
        };
        let worked = conn.query_drop(sql).await.is_ok();
        let _ = conn.disconnect().await;
        worked
    }

    async fn catalog(url: &str, db: &str) -> Vec<String> {
        let queries = [
            format!("SELECT CONCAT_WS('|', 'table', TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}'"),
            format!("SELECT CONCAT_WS('|', 'column', TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE, IFNULL(COLUMN_DEFAULT, '<null>'), EXTRA, IFNULL(COLLATION_NAME, '')) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}'"),
            format!("SELECT CONCAT_WS('|', 'index', TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{db}'"),
            format!("SELECT CONCAT_WS('|', 'constraint', TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE) FROM information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = '{db}'"),
            format!("SELECT CONCAT_WS('|', 'trigger', TRIGGER_NAME, EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER, ACTION_STATEMENT, SQL_MODE, DEFINER) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}'"),
            format!("SELECT CONCAT_WS('|', 'routine', ROUTINE_NAME, ROUTINE_TYPE) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{db}'"),
            format!("SELECT CONCAT_WS('|', 'event', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{db}'"),
        ];
        let mut out = Vec::new();
        for q in &queries {
            out.extend(strings(url, q).await);
        }
        let has_version = out.iter().any(|l| l.starts_with("table|tandem_version|"));
        if has_version {
            let sql = "SELECT CONCAT('version|', id, '|', version) FROM tandem_version";
            out.extend(strings(url, sql).await);
        }
        out.sort();
        out
    }

    fn quote(name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    fn analyze(table: &str) -> String {
        format!("ANALYZE TABLE {table}")
    }
}

impl TestDb {
    /// A plain session to the test database (not the agent's).
    async fn conn(&self) -> Conn {
        session(&self.url).await.unwrap()
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        strings(&self.url, sql).await
    }

    async fn is_mariadb(&self) -> bool {
        self.strings("SELECT VERSION()").await[0].contains("MariaDB")
    }
}

fn table(name: &str) -> TableName {
    TableName::new(None, name)
}

#[tokio::test]
async fn describe_maps_every_mysql_type() {
    // GIVEN a column of every kind of type, generated ones included
    let db = TestDb::with(
        "CREATE TABLE every_type (
            id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
            `First Name` VARCHAR(50) NOT NULL,
            pa INT, pb VARCHAR(10),
            manager BIGINT UNSIGNED,
            doc JSON,
            total DECIMAL(12,2),
            ratio DOUBLE,
            born DATE, at_time TIME(6), created DATETIME(6), stamped TIMESTAMP(6) NULL,
            raw VARBINARY(16), token UUID DEFAULT uuid(),
            doubled INT AS (pa * 2) VIRTUAL, tripled INT AS (pa * 3) STORED,
            flag TINYINT(1), kind ENUM('a','b'), shape POINT)",
    )
    .await;
    let connector = db.connector().await;

    // WHEN described
    let every = describe(&connector, "every_type").await;

    // THEN each column has its type and says whether it is generated
    #[rustfmt::skip]
    let expected = vec![
        ("id", DataType::Int, "bigint", false, true, false),
        ("First Name", DataType::Text, "varchar", false, false, false),
        ("pa", DataType::Int, "int", true, false, false),
        ("pb", DataType::Text, "varchar", true, false, false),
        ("manager", DataType::Int, "bigint", true, false, false),
        ("doc", DataType::Json, "longtext", true, false, false),
        ("total", DataType::Decimal, "decimal", true, false, false),
        ("ratio", DataType::Float, "double", true, false, false),
        ("born", DataType::Date, "date", true, false, false),
        ("at_time", DataType::Time, "time", true, false, false),
        ("created", DataType::Timestamp, "datetime", true, false, false),
        ("stamped", DataType::TimestampTz, "timestamp", true, false, false),
        ("raw", DataType::Bytes, "varbinary", true, false, false),
        ("token", DataType::Uuid, "uuid", true, true, false),
        ("doubled", DataType::Int, "int", true, true, true),
        ("tripled", DataType::Int, "int", true, true, true),
        ("flag", DataType::Int, "tinyint", true, false, false),
        ("kind", DataType::Text, "enum", true, false, false),
        ("shape", DataType::Other, "point", true, false, false),
    ];
    assert_eq!(column_summary(&every), expected);
    assert_eq!(every.primary_key, vec!["id"]);
    assert!(every.key_is_generated());
    // AND a table's name is matched with its case
    assert_missing_table(&connector, "Every_Type", &db.name).await;
}

#[tokio::test]
async fn the_servers_flavour_is_detected() {
    let db = TestDb::create().await;

    let connector = MysqlConnector::connect(&db.config()).await.unwrap();

    let expected = if db.is_mariadb().await {
        Flavour::MariaDb
    } else {
        Flavour::MySql
    };
    assert_eq!(connector.flavour(), expected);
    assert_eq!(connector.engine(), Engine::Mysql);
}

#[tokio::test]
async fn columns_say_the_widths_and_character_sets_mysql_allows() {
    // GIVEN a table with unsigned, tiny and medium integers, three
    // character sets and digits
    let db = TestDb::with(
        "CREATE TABLE Customer (
            Id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
            Name VARCHAR(100) CHARACTER SET utf8mb3 NOT NULL,
            Legacy VARCHAR(20) CHARACTER SET latin1,
            Note TEXT,
            `Rank` TINYINT,
            Visits MEDIUMINT DEFAULT 0,
            Credit DECIMAL(12, 2))",
    )
    .await;
    let connector = db.connector().await;

    let customer = describe(&connector, "Customer").await;

    let column = |name: &str| customer.column(name).unwrap().clone();
    assert_eq!(column("Id").capacity.int_range, Some((0, u32::MAX.into())));
    assert_eq!(column("Name").capacity.charset, Some(Charset::Bmp));
    assert_eq!(
        column("Legacy").capacity.charset,
        Some(Charset::Legacy("latin1".into()))
    );
    assert_eq!(column("Note").capacity.max_chars, None);
    assert_eq!(column("Rank").capacity.int_range, Some((-128, 127)));
    assert_eq!(
        column("Visits").capacity.int_range,
        Some((-(1 << 23), (1 << 23) - 1))
    );
    assert_eq!(column("Credit").capacity.digits, Some((12, 2)));
}

#[tokio::test]
async fn captured_keys_decode_to_the_stored_key() {
    // GIVEN a table keyed by bytes, an instant, a decimal and text
    let db = TestDb::with(
        "CREATE TABLE k (b VARBINARY(8), z TIMESTAMP(6), d DECIMAL(8,3), t VARCHAR(20), v INT,
                         PRIMARY KEY (b, z, d, t))",
    )
    .await;
    let connector = db.connector().await;
    let [schema] = install_capture(&connector, ["k"]).await;

    // WHEN an application writes from a session in another time zone, and
    // changes only the case of the text key
    db.exec(
        "SET time_zone = '+05:00';
         INSERT INTO k VALUES (X'00FF27', '2024-03-01 12:00:00.250000', 1.5, 'Ab', 1)",
    )
    .await;
    db.exec("UPDATE k SET t = 'AB'").await;

    // THEN the captured keys decode to the key the table holds
    let stored_key =
        assert_a_case_only_key_change_was_captured(&connector, &schema, 3, Key::eq).await;
    assert_eq!(
        stored_key,
        key(&[
            Value::Bytes(vec![0, 255, 39]),
            Value::parse_text(DataType::TimestampTz, "2024-03-01 07:00:00.25+00").unwrap(),
            Value::Decimal("1.500".into()),
            text("AB"),
        ])
    );
}

#[tokio::test]
async fn a_uuid_written_into_binary_16_is_its_bytes() {
    let db =
        TestDb::with("CREATE TABLE vals (id INT AUTO_INCREMENT PRIMARY KEY, bin16 BINARY(16))")
            .await;
    let connector = db.connector().await;
    let vals = describe(&connector, "vals").await;
    let uuid = uuid::Uuid::new_v4();

    let mut tx = connector.begin().await.unwrap();
    let key = tx
        .insert(&vals, &row(&[("bin16", Value::Uuid(uuid))]))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let rows = connector.fetch_rows(&vals, &[key]).await.unwrap();
    assert_eq!(rows[0]["bin16"], Value::Bytes(uuid.as_bytes().to_vec()));
}

#[tokio::test]
async fn tls_modes_against_the_local_server() {
    let db = TestDb::create().await;
    let have_ssl = db.strings("SELECT @@have_ssl").await.remove(0);
    let with = |mode| EndpointConfig {
        tls: tandem_connectors::TlsConfig {
            mode,
            ca_file: None,
        },
        ..db.config()
    };
    // prefer connects whatever the server offers
    MysqlConnector::connect(&with(TlsMode::Prefer))
        .await
        .expect("tls = prefer");
    if have_ssl == "YES" {
        // (checked live only where the server has TLS set up)
        MysqlConnector::connect(&with(TlsMode::Require))
            .await
            .expect("tls = require");
        return;
    }
    // a server without TLS refuses require and verify-full, in one line
    eprintln!(
        "mysql: the server has no TLS (have_ssl = {have_ssl}): only the refusals are checked"
    );
    for mode in [TlsMode::Require, TlsMode::VerifyFull] {
        let err = MysqlConnector::connect(&with(mode))
            .await
            .err()
            .unwrap_or_else(|| panic!("tls = {mode} without TLS on the server"));
        let message = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Connection, "{message}");
        assert!(
            message.starts_with("cannot connect to MySQL at ")
                && message.contains(&format!("the server offers no TLS (tls = \"{mode}\"")),
            "{message}"
        );
        assert_eq!(message.lines().count(), 1);
    }
}

#[tokio::test]
async fn mysql8_statements_work_on_a_server_that_knows_both() {
    // GIVEN the connector forced to MySQL 8's SQL (no CREATE OR REPLACE
    // TRIGGER, no RETURNING, checks read through TABLE_CONSTRAINTS)
    let db = TestDb::with(
        "CREATE TABLE t (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, doc JSON, v TEXT)",
    )
    .await;
    let connector: Arc<dyn Connector> = Arc::new(
        MysqlConnector::connect(&db.config())
            .await
            .unwrap()
            .with_flavour(Flavour::MySql),
    );
    let schema = describe(&connector, "t").await;
    let expected_doc = if db.is_mariadb().await {
        "longtext"
    } else {
        "json"
    };
    assert_eq!(schema.column("doc").unwrap().data_type, DataType::Json);
    assert_eq!(schema.column("doc").unwrap().native_type, expected_doc);
    let before = db.catalog().await;

    // WHEN installed twice (drop + create)
    let tables = slice::from_ref(&schema);
    install(&connector, tables).await;
    let once = db.catalog().await;
    install(&connector, tables).await;
    assert_eq!(db.catalog().await, once);
    let installation = connector.installation(tables).await.unwrap();
    assert!(installation.missing_triggers.is_empty());

    // THEN capture works, and an insert learns its key from LAST_INSERT_ID()
    db.exec("INSERT INTO t (id, v) VALUES (41, 'app')").await;
    let mut tx = connector.begin().await.unwrap();
    let key = tx
        .insert(&schema, &row(&[("doc", Value::Json(json!([1])))]))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(key, Key(vec![Value::Int(42)]));
    assert_eq!(
        changes(&connector, &[table("t")]).await,
        vec![(ChangeOp::Insert, json!([41]))]
    );

    // AND uninstall leaves the catalog as before
    uninstall(&connector, &[]).await;
    assert_eq!(db.catalog().await, before);
}

/// A transaction that only forwards the one-row methods, so the batch
/// methods run the trait's defaults (one statement per row): what the
/// connector's own batch methods must equal.
struct OneByOne(Box<dyn Transaction>);

#[async_trait::async_trait]
impl Transaction for OneByOne {
    async fn fetch_for_update(
        &mut self,
        table: &TableSchema,
        key: &Key,
    ) -> tandem_connectors::Result<Option<Row>> {
        self.0.fetch_for_update(table, key).await
    }

    async fn insert(&mut self, table: &TableSchema, row: &Row) -> tandem_connectors::Result<Key> {
        self.0.insert(table, row).await
    }

    async fn update(
        &mut self,
        table: &TableSchema,
        key: &Key,
        row: &Row,
    ) -> tandem_connectors::Result<bool> {
        self.0.update(table, key, row).await
    }

    async fn delete(&mut self, table: &TableSchema, key: &Key) -> tandem_connectors::Result<bool> {
        self.0.delete(table, key).await
    }

    async fn record_link(&mut self, link: &IdMapRow) -> tandem_connectors::Result<()> {
        self.0.record_link(link).await
    }

    async fn forget_link(
        &mut self,
        pair: &str,
        source_key: &str,
        target_key: &str,
    ) -> tandem_connectors::Result<()> {
        self.0.forget_link(pair, source_key, target_key).await
    }

    async fn savepoint(&mut self) -> tandem_connectors::Result<()> {
        self.0.savepoint().await
    }

    async fn rollback_to_savepoint(&mut self) -> tandem_connectors::Result<()> {
        self.0.rollback_to_savepoint().await
    }

    async fn release_savepoint(&mut self) -> tandem_connectors::Result<()> {
        self.0.release_savepoint().await
    }

    async fn commit(self: Box<Self>) -> tandem_connectors::Result<()> {
        self.0.commit().await
    }

    async fn rollback(self: Box<Self>) -> tandem_connectors::Result<()> {
        self.0.rollback().await
    }
}

/// Copies of the records `[origin]` of `pair`, made on the target side.
fn copies(pair: &str, origins: &[&str]) -> Vec<CopyOf> {
    origins
        .iter()
        .map(|origin| CopyOf {
            pair: pair.to_owned(),
            origin_key: format!("[{origin:?}]"),
            copy_is_target: true,
        })
        .collect()
}

/// A connector of `flavour` for the database.
async fn connector_of(db: &TestDb, flavour: Flavour) -> Arc<dyn Connector> {
    Arc::new(
        MysqlConnector::connect(&db.config())
            .await
            .unwrap()
            .with_flavour(flavour),
    )
}

/// The columns of a table of every type, and a few awkward ones.
const BATCH_TABLE: &str = "(
    id INT AUTO_INCREMENT PRIMARY KEY,
    i BIGINT, u BIGINT UNSIGNED, small SMALLINT UNSIGNED, dec_ DECIMAL(30,6), f FLOAT, d DOUBLE,
    t VARCHAR(100), tx LONGTEXT, b VARBINARY(50), bl BLOB, dt DATE, tm TIME(6),
    ts DATETIME(6), ts0 DATETIME, tz TIMESTAMP(6) NULL, j JSON, uu UUID, e ENUM('x','y'), y YEAR,
    bits BIT(8), bin16 BINARY(16), c CHAR(5), lat VARCHAR(20) CHARACTER SET latin1,
    twice INT AS (small * 2) VIRTUAL)";

/// Rows of every type: every value kind a column takes, NULLs, values
/// given as text, and values that differ only in precision.
fn batch_rows_of_every_type() -> Vec<Row> {
    let at = |y, mo, d, h, mi, s, micro| {
        let date = NaiveDate::from_ymd_opt(y, mo, d).unwrap();
        date.and_hms_micro_opt(h, mi, s, micro).unwrap()
    };
    let uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef);
    let full = row(&[
        ("i", Value::Int(i64::MIN)),
        ("u", Value::Decimal("18446744073709551615".into())),
        ("small", Value::Int(65535)),
        (
            "dec_",
            Value::Decimal("-123456789012345678901234.123456".into()),
        ),
        ("f", Value::Float(0.1)),
        ("d", Value::Float(-1.5e300)),
        ("t", text("Grüße 🎉 'q' \"x\" \\ `")),
        ("tx", text("long\ntext")),
        ("b", Value::Bytes(vec![0, 255, 10, 39, 92, 0xfe])),
        ("bl", Value::Bytes(vec![])),
        (
            "dt",
            Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
        ),
        (
            "tm",
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 1, 5).unwrap()),
        ),
        ("ts", Value::Timestamp(at(1999, 12, 31, 1, 2, 3, 456_789))),
        ("ts0", Value::Timestamp(at(2001, 1, 1, 0, 0, 59, 999_999))),
        (
            "tz",
            Value::TimestampTz(at(2030, 1, 1, 0, 0, 0, 123_456).and_utc()),
        ),
        (
            "j",
            Value::Json(json!({"a": [1, "b"], "c": null, "d": 1.5})),
        ),
        ("uu", Value::Uuid(uuid)),
        ("e", text("y")),
        ("y", Value::Int(2024)),
        ("bits", Value::Bytes(vec![0b1010_0101])),
        ("bin16", Value::Uuid(uuid)),
        ("c", text("ab  ")),
        ("lat", text("Grüße")),
    ]);
    let nulls: Row = full.keys().map(|k| (k.clone(), Value::Null)).collect();
    let as_text = row(&[
        ("i", text("42")),
        ("u", Value::Int(7)),
        ("small", Value::Bool(true)),
        ("dec_", Value::Int(-5)),
        ("f", Value::Int(3)),
        ("d", Value::Decimal("0.1".into())),
        ("t", Value::Int(12)),
        ("tx", Value::Json(json!([1, 2]))),
        ("b", text("plain")),
        ("bl", Value::Bytes(vec![0; 300])),
        ("dt", text("2024-01-02")),
        ("tm", text("00:00:00")),
        ("ts", text("2024-03-01 12:00:00")),
        (
            "ts0",
            Value::Date(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()),
        ),
        ("tz", Value::Timestamp(at(2024, 6, 1, 8, 30, 0, 0))),
        ("j", text("[\"x\", {\"y\": 2}]")),
        ("uu", text("00000000-0000-0000-0000-000000000001")),
        ("e", text("x")),
        ("y", text("1999")),
        ("bits", Value::Bytes(vec![0])),
        ("bin16", Value::Bytes(vec![7; 16])),
        ("c", text("")),
        ("lat", text("plain")),
    ]);
    let precise = row(&[
        ("i", Value::Int(i64::MAX)),
        ("u", Value::Int(0)),
        ("small", Value::Int(0)),
        ("dec_", Value::Decimal("1.5".into())),
        ("f", Value::Float(-3.4e38)),
        ("d", Value::Float(5e-324)),
        ("t", text("")),
        ("tx", text("")),
        ("b", Value::Bytes(vec![])),
        ("bl", Value::Bytes(vec![0xff; 3])),
        (
            "dt",
            Value::Date(NaiveDate::from_ymd_opt(1000, 1, 1).unwrap()),
        ),
        (
            "tm",
            Value::Time(NaiveTime::from_hms_micro_opt(0, 0, 0, 1).unwrap()),
        ),
        (
            "ts",
            Value::Timestamp(at(9999, 12, 31, 23, 59, 59, 999_999)),
        ),
        ("ts0", Value::Timestamp(at(2001, 1, 1, 0, 0, 0, 0))),
        (
            "tz",
            Value::TimestampTz(at(1970, 1, 1, 0, 0, 1, 0).and_utc()),
        ),
        ("j", Value::Json(json!(null))),
        ("uu", Value::Uuid(uuid::Uuid::nil())),
        ("e", Value::Null),
        ("y", Value::Int(2155)),
        ("bits", Value::Bytes(vec![0xff])),
        ("bin16", Value::Null),
        ("c", text("é")),
        ("lat", Value::Null),
    ]);
    vec![full, nulls, as_text, precise]
}

/// GIVEN twin tables `a` and `b` of every type, WHEN the same rows are
/// inserted and then updated one by one in `a` and in batches in `b`, THEN
/// both give back the same rows, in the order asked, leave the same tables
/// and the same links, and what they return is what a later read finds.
async fn batches_equal_one_by_one(flavour: Flavour) {
    let db = TestDb::with(&format!(
        "CREATE TABLE a {BATCH_TABLE}; CREATE TABLE b {BATCH_TABLE}"
    ))
    .await;
    let connector = connector_of(&db, flavour).await;
    install(&connector, &[]).await;
    let [a, b] = describe_all(&connector, ["a", "b"]).await;
    let rows = batch_rows_of_every_type();
    let origins = ["o1", "o2", "o3", "o4"];

    // WHEN the rows are inserted
    let mut one = OneByOne(connector.begin().await.unwrap());
    let by_one = one
        .insert_copies(&a, &rows, &copies("pa", &origins))
        .await
        .unwrap();
    Box::new(one).commit().await.unwrap();
    let mut tx = connector.begin().await.unwrap();
    let batched = tx
        .insert_copies(&b, &rows, &copies("pb", &origins))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // THEN the written rows are the same, generated keys in order
    assert_eq!(batched, by_one);
    let ids: Vec<&Value> = batched.iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [1, 2, 3, 4].map(Value::Int).iter().collect::<Vec<_>>());
    assert_eq!(batched[0]["twice"], Value::Int(131_070));
    // AND they are what the table holds (fingerprints will match)
    assert_eq!(all_rows(&connector, &b).await, batched);
    assert_eq!(
        links_of(&connector, "pb").await,
        links_of(&connector, "pa").await
    );
    assert_eq!(links_of(&connector, "pb").await.len(), 4);

    // WHEN every row is updated with another row's values, a missing key
    // and the same row twice among them
    let key_of = |i: i64| key(&[Value::Int(i)]);
    let mut updates: Vec<(Key, Row)> = vec![
        (key_of(3), rows[0].clone()),
        (key_of(1), rows[2].clone()),
        (key_of(99), rows[1].clone()),
        (key_of(2), rows[3].clone()),
        (key_of(4), rows[1].clone()),
        (key_of(3), rows[3].clone()),
    ];
    // (a key column in the row is not written)
    updates[0].1.insert("id".into(), Value::Int(3));
    let mut one = OneByOne(connector.begin().await.unwrap());
    let by_one = one.update_many(&a, &updates).await.unwrap();
    Box::new(one).commit().await.unwrap();
    let mut tx = connector.begin().await.unwrap();
    let batched = tx.update_many(&b, &updates).await.unwrap();
    tx.commit().await.unwrap();

    // THEN both say the same, None for the missing key
    assert_eq!(batched.len(), updates.len());
    assert_eq!(batched[2], None);
    for (i, (got, want)) in batched.iter().zip(&by_one).enumerate() {
        if i == 0 {
            // One by one, the first update of row 3 is read before the
            // second; in a batch, every update is read after all of them.
            continue;
        }
        assert_eq!(got, want, "update {i}");
    }
    assert_eq!(batched[0], batched[5]);
    // AND the tables are the same, and as returned
    let written = all_rows(&connector, &b).await;
    assert_eq!(written, all_rows(&connector, &a).await);
    assert_eq!(written[2], batched[5].clone().unwrap());
    assert_eq!(written[0], batched[1].clone().unwrap());
}

#[tokio::test]
async fn mariadb_batches_equal_one_by_one_for_every_type() {
    batches_equal_one_by_one(Flavour::MariaDb).await;
}

#[tokio::test]
async fn mysql8_batches_equal_one_by_one_for_every_type() {
    // (MySQL 8's statements: no RETURNING, keys from LAST_INSERT_ID())
    batches_equal_one_by_one(Flavour::MySql).await;
}

/// GIVEN tables keyed by AUTO_INCREMENT, by uuid() and by two columns, and
/// links already recorded for some origins, WHEN copies are inserted in
/// batches THEN keys are generated or taken from the rows, rows come back in
/// the order given, and the links are those one by one would leave.
async fn batch_inserts_keep_keys_order_and_links(flavour: Flavour) {
    let tables = "(id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20) NOT NULL);
        CREATE TABLE pairs_{t} (a INT, b VARCHAR(10), v TEXT, PRIMARY KEY (a, b))";
    let db = TestDb::with(&format!(
        "CREATE TABLE person_a {}; CREATE TABLE person_b {}",
        tables.replace("{t}", "a"),
        tables.replace("{t}", "b"),
    ))
    .await;
    let connector = connector_of(&db, flavour).await;
    install(&connector, &[]).await;
    let [person_a, person_b, pairs_a, pairs_b] =
        describe_all(&connector, ["person_a", "person_b", "pairs_a", "pairs_b"]).await;
    let name = |n: &str| ("name", text(n));
    // generated, generated, given, generated (neighbours share statements)
    let people = [
        row(&[name("ann")]),
        row(&[("id", Value::Null), name("bob")]),
        row(&[("id", Value::Int(100)), name("cy")]),
        row(&[name("di")]),
    ];
    let pair_rows: Vec<Row> = [(2, "z"), (1, "b"), (1, "a"), (3, "é")]
        .iter()
        .map(|(a, b)| row(&[("a", Value::Int(*a)), ("b", text(b)), ("v", text(b))]))
        .collect();
    let origins = ["o1", "o2", "o3", "o4"];

    for (suffix, person, pairs) in [("a", &person_a, &pairs_a), ("b", &person_b, &pairs_b)] {
        let people_pair = format!("people_{suffix}");
        let pairs_pair = format!("pairs_{suffix}");
        // a stale link: origin o2 was copied before, to a record gone since
        let stale = IdMapRow {
            pair: people_pair.clone(),
            source_key: "[\"o2\"]".into(),
            target_key: "[7]".into(),
        };
        let mut tx = connector.begin().await.unwrap();
        tx.record_link(&stale).await.unwrap();
        let mut tx: Box<dyn Transaction> = if suffix == "a" {
            Box::new(OneByOne(tx))
        } else {
            tx
        };
        let written = tx
            .insert_copies(person, &people, &copies(&people_pair, &origins))
            .await
            .unwrap();
        let ids: Vec<Value> = written.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, [1, 2, 100, 101].map(Value::Int), "{suffix}");
        let names: Vec<Value> = written.iter().map(|r| r["name"].clone()).collect();
        assert_eq!(names, ["ann", "bob", "cy", "di"].map(text), "{suffix}");
        let written = tx
            .insert_copies(pairs, &pair_rows, &copies(&pairs_pair, &origins))
            .await
            .unwrap();
        assert_eq!(written, pair_rows, "{suffix}");
        tx.commit().await.unwrap();
    }
    for pair in ["people", "pairs"] {
        let by_one = links_of(&connector, &format!("{pair}_a")).await;
        assert_eq!(links_of(&connector, &format!("{pair}_b")).await, by_one);
    }
    let link = |origin: &str, key: &[Value]| (format!("[{origin:?}]"), Key(key.to_vec()).encode());
    assert_eq!(
        links_of(&connector, "people_b").await,
        vec![
            link("o1", &[Value::Int(1)]),
            link("o2", &[Value::Int(2)]),
            link("o3", &[Value::Int(100)]),
            link("o4", &[Value::Int(101)]),
        ]
    );
    assert_eq!(
        links_of(&connector, "pairs_b").await[0],
        link("o1", &[Value::Int(2), text("z")])
    );
}

#[tokio::test]
async fn mariadb_batch_inserts_keep_keys_order_and_links() {
    batch_inserts_keep_keys_order_and_links(Flavour::MariaDb).await;
}

#[tokio::test]
async fn mysql8_batch_inserts_keep_keys_order_and_links() {
    batch_inserts_keep_keys_order_and_links(Flavour::MySql).await;
}

#[tokio::test]
async fn batch_updates_find_rows_as_the_key_lookup_does() {
    // GIVEN rows keyed by case-insensitive text and a decimal, and a
    // composite key
    let db = TestDb::with(
        "CREATE TABLE people (name VARCHAR(20) PRIMARY KEY, age INT, note TEXT)
           COLLATE utf8mb4_unicode_ci;
         CREATE TABLE prices (amount DECIMAL(8,3) PRIMARY KEY, label TEXT);
         CREATE TABLE pairs (a INT, b INT, v INT, PRIMARY KEY (a, b));
         INSERT INTO people VALUES ('ann', 30, 'x'), ('bob', 40, 'y'), ('cy', 50, NULL);
         INSERT INTO prices VALUES (1.5, 'one and a half');
         INSERT INTO pairs VALUES (1, 1, 11), (1, 2, 12), (2, 1, 21)",
    )
    .await;
    let connector = db.connector().await;
    let [people, prices, pairs] = describe_all(&connector, ["people", "prices", "pairs"]).await;
    let named = |n: &str| key(&[text(n)]);
    let age = |a: i64| row(&[("age", Value::Int(a))]);

    let mut tx = connector.begin().await.unwrap();
    // WHEN updated by keys in another case, missing, and given as text
    let updated = tx
        .update_many(
            &people,
            &[
                (named("BOB"), age(41)),
                (named("nobody"), age(1)),
                (named("ann"), age(31)),
            ],
        )
        .await
        .unwrap();
    // THEN each is found as `WHERE key = ?` finds it, in the order asked
    let ages: Vec<Option<Value>> = updated
        .iter()
        .map(|r| r.as_ref().map(|r| r["age"].clone()))
        .collect();
    assert_eq!(ages, vec![Some(Value::Int(41)), None, Some(Value::Int(31))]);
    assert_eq!(updated[0].as_ref().unwrap()["name"], text("bob"));
    let priced = tx
        .update_many(
            &prices,
            &[(
                key(&[Value::Decimal("1.5".into())]),
                row(&[("label", text("1.5"))]),
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        priced[0].as_ref().unwrap()["amount"],
        Value::Decimal("1.500".into())
    );

    // AND rows with nothing but their key are only found and locked
    let pair = |a: i64, b: i64| key(&[Value::Int(a), Value::Int(b)]);
    let only_key = |a: i64, b: i64| row(&[("a", Value::Int(a)), ("b", Value::Int(b))]);
    let found = tx
        .update_many(
            &pairs,
            &[
                (pair(2, 1), only_key(2, 1)),
                (pair(9, 9), only_key(9, 9)),
                (key(&[text(" 1"), Value::Int(2)]), only_key(1, 2)),
            ],
        )
        .await
        .unwrap();
    let values: Vec<Option<Value>> = found
        .iter()
        .map(|r| r.as_ref().map(|r| r["v"].clone()))
        .collect();
    assert_eq!(
        values,
        vec![Some(Value::Int(21)), None, Some(Value::Int(12))]
    );
    assert_row_is_locked(&db, "UPDATE pairs SET v = 0 WHERE a = 2 AND b = 1").await;
    tx.commit().await.unwrap();

    let rows = all_rows(&connector, &people).await;
    let ages: Vec<&Value> = rows.iter().map(|r| &r["age"]).collect();
    assert_eq!(
        ages,
        [31, 41, 50].map(Value::Int).iter().collect::<Vec<_>>()
    );
    assert_eq!(all_rows(&connector, &pairs).await.len(), 3);
}

/// Another session cannot run `sql` within a second: a row it needs is
/// locked.
async fn assert_row_is_locked(db: &TestDb, sql: &str) {
    let mut conn = db.conn().await;
    conn.query_drop("SET innodb_lock_wait_timeout = 1")
        .await
        .unwrap();
    let err = conn.query_drop(sql).await.unwrap_err();
    assert!(err.to_string().contains("Lock wait timeout"), "{err}");
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn fetch_many_for_update_reads_and_locks_the_rows_that_exist() {
    // GIVEN rows with a composite key
    let db = TestDb::with(
        "CREATE TABLE pairs (a INT, b VARCHAR(5), v INT, PRIMARY KEY (a, b));
         INSERT INTO pairs VALUES (1, 'x', 1), (1, 'y', 2), (2, 'x', 3)",
    )
    .await;
    let connector = db.connector().await;
    let pairs = describe(&connector, "pairs").await;
    let pair = |a: i64, b: &str| key(&[Value::Int(a), text(b)]);

    // WHEN two of them and a missing one are fetched for update
    let mut tx = connector.begin().await.unwrap();
    let mut rows = tx
        .fetch_many_for_update(&pairs, &[pair(2, "x"), pair(5, "x"), pair(1, "x")])
        .await
        .unwrap();
    rows.sort_by_key(|r| r["v"].to_string());

    // THEN the two come back, locked (whether the optimizer also locks
    // their neighbours depends on its plan)
    let values: Vec<&Value> = rows.iter().map(|r| &r["v"]).collect();
    assert_eq!(values, vec![&Value::Int(1), &Value::Int(3)]);
    assert_row_is_locked(&db, "UPDATE pairs SET v = 0 WHERE a = 2").await;
    assert_row_is_locked(&db, "DELETE FROM pairs WHERE a = 1 AND b = 'x'").await;
    assert!(tx
        .fetch_many_for_update(&pairs, &[])
        .await
        .unwrap()
        .is_empty());
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_bad_row_fails_the_batch_as_a_data_error_and_leaves_nothing() {
    // GIVEN a table with a unique, NOT NULL and short name and a latin1
    // column, two rows, and a savepoint
    let db = TestDb::with(
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(5) NOT NULL UNIQUE,
                         lat VARCHAR(10) CHARACTER SET latin1);
         INSERT INTO t (name) VALUES ('taken'), ('other')",
    )
    .await;
    let connector = db.connector().await;
    install(&connector, &[]).await;
    let t = describe(&connector, "t").await;
    let before = all_rows(&connector, &t).await;
    let named = |n: &str| row(&[("name", text(n))]);
    let mut tx = connector.begin().await.unwrap();
    tx.savepoint().await.unwrap();

    // WHEN a batch holds a duplicate, a NULL for NOT NULL, a value too long
    for bad in [
        vec![named("a"), named("taken"), named("b")],
        vec![named("a"), named("b"), named("a")],
        vec![named("a"), row(&[("name", Value::Null)])],
        vec![named("a"), named("toolong")],
    ] {
        let origins: Vec<String> = (0..bad.len()).map(|i| format!("o{i}")).collect();
        let origins: Vec<&str> = origins.iter().map(String::as_str).collect();
        let err = tx
            .insert_copies(&t, &bad, &copies("p", &origins))
            .await
            .unwrap_err();
        // THEN it is a one-line data error naming the table
        assert_error(&err, ErrorKind::Data, &["table t"]);
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
        tx.rollback_to_savepoint().await.unwrap();
    }
    // AND so are bad updates: NULL for NOT NULL, a duplicate, a character
    // latin1 cannot hold (each after an update that would work)
    let id = |i: i64| key(&[Value::Int(i)]);
    let lat = |v: &str| row(&[("lat", text(v))]);
    for bad in [
        vec![
            (id(2), named("new")),
            (id(1), row(&[("name", Value::Null)])),
        ],
        vec![(id(2), named("same")), (id(1), named("same"))],
        vec![(id(2), lat("fine")), (id(1), lat("🎉"))],
    ] {
        let err = tx.update_many(&t, &bad).await.unwrap_err();
        assert_error(&err, ErrorKind::Data, &["table t"]);
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
        tx.rollback_to_savepoint().await.unwrap();
    }
    tx.commit().await.unwrap();

    // THEN nothing of the batches was written
    assert_eq!(all_rows(&connector, &t).await, before);
    assert!(connector.read_id_map().await.unwrap().is_empty());
}

/// GIVEN a table, WHEN batches too big for one statement are applied (more
/// than a megabyte of values, more keys than one IN list takes, more rows
/// than one CASE update takes) THEN they are cut into statements without
/// changing what they do: keys in order, the last update of a row wins,
/// missing keys found missing.
async fn big_batches_are_cut_without_changing_the_result(flavour: Flavour) {
    let db =
        TestDb::with("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT, doc MEDIUMTEXT)")
            .await;
    let connector = connector_of(&db, flavour).await;
    install(&connector, &[]).await;
    let t = describe(&connector, "t").await;
    let id = |i: usize| key(&[Value::Int(i as i64)]);
    let rows: Vec<Row> = (0..400)
        .map(|i| row(&[("v", Value::Int(i)), ("doc", text(&"x".repeat(4_000)))]))
        .collect();
    let origins: Vec<String> = (0..400).map(|i| format!("o{i}")).collect();
    let origins: Vec<&str> = origins.iter().map(String::as_str).collect();

    let mut tx = connector.begin().await.unwrap();
    let written = tx
        .insert_copies(&t, &rows, &copies("p", &origins))
        .await
        .unwrap();
    let ids: Vec<Value> = written.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, (1..=400).map(Value::Int).collect::<Vec<_>>());
    assert_eq!(
        links_of(&connector, "p").await.len(),
        0,
        "not committed yet"
    );

    // every row updated in reverse order, row 1 first and last, 50 missing
    let v = |v: i64| row(&[("v", Value::Int(v))]);
    let mut updates: Vec<(Key, Row)> = vec![(id(1), v(-1))];
    updates.extend((1..=400).rev().map(|i| (id(i), v(1_000 + i as i64))));
    updates.extend((1_000..1_050).map(|i| (id(i), v(0))));
    updates.push((id(1), v(-2)));
    let updated = tx.update_many(&t, &updates).await.unwrap();
    assert_eq!(updated.len(), updates.len());
    for ((key, _), got) in updates.iter().zip(&updated) {
        let want = match key.0[0] {
            Value::Int(1) => Some(Value::Int(-2)),
            Value::Int(i) if i <= 400 => Some(Value::Int(1_000 + i)),
            _ => None,
        };
        assert_eq!(got.as_ref().map(|r| r["v"].clone()), want, "{key}");
    }

    let keys: Vec<Key> = (1..=6_000).map(id).collect();
    let locked = tx.fetch_many_for_update(&t, &keys).await.unwrap();
    assert_eq!(locked.len(), 400);
    assert_eq!(tx.delete_many(&t, &keys).await.unwrap(), 400);
    tx.commit().await.unwrap();
    assert!(all_rows(&connector, &t).await.is_empty());
    assert_eq!(links_of(&connector, "p").await.len(), 400);
}

#[tokio::test]
async fn mariadb_big_batches_are_cut_without_changing_the_result() {
    big_batches_are_cut_without_changing_the_result(Flavour::MariaDb).await;
}

#[tokio::test]
async fn mysql8_big_batches_are_cut_without_changing_the_result() {
    big_batches_are_cut_without_changing_the_result(Flavour::MySql).await;
}
