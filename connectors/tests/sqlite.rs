//! The SQLite connector, SQLite running in-process: the connector
//! contract, and what only SQLite does (types it stores in any column,
//! file locking, journal modes, files that are no database).
//!
//! Each test works on its own database file `test.db` in a directory
//! `tandem_t_<uuid>` of its own under the system's temporary directory,
//! removed when its guard goes out of scope, failed test included.

mod common;

use std::path::{Path, PathBuf};
use std::slice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use common::contract::capture::assert_a_case_only_key_change_was_captured;
use common::contract::values::portable_samples;
use common::*;
use rusqlite::types::Value as SqlValue;
use serde_json::json;
use tandem_connectors::sqlite::SqliteConnector;
use tandem_connectors::{
    ChangeOp, Connector, DataType, EndpointConfig, Engine, ErrorKind, Key, Row, TableName,
    TableSchema, Value,
};

struct Sqlite;

type TestDb = common::TestDb<Sqlite>;

common::contract::contract_tests!(Sqlite);

/// The file (or directory) a `sqlite://` URL names.
fn path_of(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("sqlite://").expect("a sqlite:// URL"))
}

/// A plain connection, as an application has: no foreign keys, waits up to
/// five seconds for a lock.
fn app_connection(path: &Path) -> rusqlite::Connection {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// The first column of every row of `sql`, as text.
async fn strings(path: PathBuf, sql: &str) -> Vec<String> {
    let sql = sql.to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = app_connection(&path);
        let mut statement = conn.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rows = statement
            .query_map([], |r| r.get::<_, SqlValue>(0))
            .unwrap()
            .map(|v| match v.unwrap() {
                SqlValue::Null => String::new(),
                SqlValue::Integer(i) => i.to_string(),
                SqlValue::Real(f) => f.to_string(),
                SqlValue::Text(s) => s,
                SqlValue::Blob(b) => format!("{b:?}"),
            })
            .collect();
        rows
    })
    .await
    .unwrap()
}

async fn has_table(path: &Path, name: &str) -> bool {
    let sql = format!("SELECT count(*) FROM sqlite_schema WHERE name = '{name}'");
    strings(path.to_owned(), &sql).await == ["1"]
}

impl Server for Sqlite {
    const ENGINE: Engine = Engine::Sqlite;
    const NAME: &'static str = "SQLite";
    const POLL_INTERVAL: Duration = Duration::from_millis(50);
    const EMBEDDED: bool = true;
    const BYTES: &'static str = "BLOB";
    const UUID: &'static str = "UUID";
    const GENERATED_KEY: &'static str = "INTEGER PRIMARY KEY";
    /// (in the form the agent writes a UUID, so that both compare equal)
    const GENERATED_UUID_KEY: &'static str = "UUID PRIMARY KEY DEFAULT (lower(
        hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-'
        || hex(randomblob(2)) || '-' || hex(randomblob(6))))";
    const LOCK_TIMEOUT: &'static str = "PRAGMA busy_timeout = 5000";
    const WRITES_COPIES_IN_BATCHES: bool = false;
    const ENFORCES_WIDTHS: bool = false;
    const CHECKS_PASSWORDS: bool = false;
    const CAPTURE_TRIGGERS_PER_TABLE: usize = 3;
    const USER_TRIGGER: &'static str = "CREATE TABLE audit (n INT);
        CREATE TRIGGER audit_link AFTER INSERT ON link BEGIN INSERT INTO audit VALUES (1); END";

    const EVERY_TYPE: &'static str = "CREATE TABLE vals (
        id INTEGER PRIMARY KEY,
        i BIGINT, flag BOOLEAN, dec_ DECIMAL(30,6), big NUMERIC, f REAL, d DOUBLE,
        t VARCHAR(100), tx TEXT, b BLOB, bl BLOB, untyped, dt DATE, tm TIME,
        ts DATETIME, tz TIMESTAMPTZ, j JSON, uu UUID, other GEOMETRY)";

    fn every_type_rows() -> Vec<Row> {
        let mut full = portable_samples();
        full.extend(row(&[
            ("flag", Value::Bool(true)),
            ("dec_", Value::Decimal("-1234567890.12345".into())),
            ("big", Value::Decimal("9223372036854775807".into())),
            ("t", text("Grüße 🎉 'q' \"x\" \\ `")),
            ("untyped", Value::Bytes(vec![1, 2])),
            ("j", Value::Json(json!({"a": [1, "b"], "c": null}))),
            ("other", text("POINT(1 2)")),
        ]));
        vec![full]
    }

    fn admin_url() -> String {
        format!("sqlite://{}", std::env::temp_dir().display())
    }

    async fn create_database(admin_url: &str, name: &str) {
        let dir = path_of(admin_url).join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // An empty file is an empty SQLite database.
        std::fs::File::create(dir.join("test.db")).unwrap();
    }

    async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
        std::fs::remove_dir_all(path_of(admin_url).join(name)).map_err(|e| e.to_string())
    }

    fn database_url(admin_url: &str, name: &str) -> String {
        let file = path_of(admin_url).join(name).join("test.db");
        format!("sqlite://{}", file.display())
    }

    async fn execute(url: &str, sql: &str) {
        let (path, sql) = (path_of(url), sql.to_owned());
        tokio::task::spawn_blocking(move || {
            app_connection(&path)
                .execute_batch(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
        .await
        .unwrap();
    }

    async fn try_execute(url: &str, sql: &str) -> bool {
        let (path, sql) = (path_of(url), sql.to_owned());
        tokio::task::spawn_blocking(move || app_connection(&path).execute_batch(&sql).is_ok())
            .await
            .unwrap()
    }

    /// Every object with its SQL, the AUTOINCREMENT sequences, Tandem's
    /// version row and the journal mode.
    async fn catalog(url: &str, _name: &str) -> Vec<String> {
        let path = path_of(url);
        let mut out = strings(
            path.clone(),
            "SELECT type || '|' || name || '|' || tbl_name || '|' || coalesce(sql, '') \
             FROM sqlite_schema",
        )
        .await;
        if has_table(&path, "sqlite_sequence").await {
            let sql = "SELECT 'sequence|' || name || '|' || seq FROM sqlite_sequence";
            out.extend(strings(path.clone(), sql).await);
        }
        if has_table(&path, "tandem_version").await {
            let sql = "SELECT 'version|' || id || '|' || version FROM tandem_version";
            out.extend(strings(path.clone(), sql).await);
        }
        let modes = strings(path, "PRAGMA journal_mode").await;
        out.extend(modes.into_iter().map(|mode| format!("journal|{mode}")));
        out.sort();
        out
    }

    /// SQLite checks no declared length: a CHECK does.
    fn length_check(column: &str, chars: usize) -> String {
        format!(" CHECK (length({column}) <= {chars})")
    }

    fn database_shown(_name: &str, url: &str) -> String {
        path_of(url).display().to_string()
    }

    /// A capture trigger replaced by one of the same name that captures
    /// nothing.
    fn tamper_with_capture_trigger(table: &str) -> Option<String> {
        let trigger = Self::quote(&format!("tandem_upd_{table}"));
        Some(format!(
            "DROP TRIGGER {trigger};
             CREATE TRIGGER {trigger} AFTER UPDATE ON {} BEGIN SELECT 1; END",
            Self::quote(table)
        ))
    }

    fn analyze(table: &str) -> String {
        format!("ANALYZE {table}")
    }

    /// The write waits for the agent's lock: returns once it does.
    async fn start_concurrent_write(url: &str, sql: &str) -> Option<tokio::task::JoinHandle<()>> {
        let writer = waiting_writer(path_of(url), sql.to_owned());
        eventually("the application to wait for the lock", || async {
            WRITER_WAITED.load(Ordering::SeqCst)
        })
        .await;
        assert!(!writer.is_finished());
        Some(tokio::task::spawn_blocking(move || writer.join().unwrap()))
    }
}

impl TestDb {
    /// The database file.
    fn path(&self) -> PathBuf {
        path_of(&self.url)
    }

    /// The first column of every row of `sql`, as text.
    async fn strings(&self, sql: &str) -> Vec<String> {
        strings(self.path(), sql).await
    }

    async fn has_table(&self, name: &str) -> bool {
        has_table(&self.path(), name).await
    }
}

/// Set by the busy handler of [`waiting_writer`]'s connection.
static WRITER_WAITED: AtomicBool = AtomicBool::new(false);

/// Waits for the lock 10 ms at a time, for at most ten seconds, and says
/// that it waited.
fn wait_for_lock(attempt: i32) -> bool {
    WRITER_WAITED.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(10));
    attempt < 1_000
}

/// An application write on a thread of its own, from a connection that
/// records when it has to wait for the lock.
fn waiting_writer(path: PathBuf, sql: String) -> std::thread::JoinHandle<()> {
    WRITER_WAITED.store(false, Ordering::SeqCst);
    std::thread::spawn(move || {
        let conn = app_connection(&path);
        conn.busy_handler(Some(wait_for_lock)).unwrap();
        conn.execute_batch(&sql).unwrap();
    })
}

fn table(name: &str) -> TableName {
    TableName::new(None, name)
}

const ODD: &str = common::contract::ODD;
#[tokio::test]
async fn describe_maps_declared_types_and_only_a_rowid_key_is_generated() {
    // GIVEN a table of types of every kind, and tables keyed by text, by a
    // BIGINT and WITHOUT ROWID, with references SQLite resolves or not
    let db = TestDb::with(
        "CREATE TABLE parent (a INT NOT NULL, b VARCHAR(10) NOT NULL, PRIMARY KEY (b, a));
         CREATE TABLE every_type (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            \"First Name\" VARCHAR(50) NOT NULL,
            pa INT, pb TEXT,
            manager INTEGER,
            doc JSON, total DECIMAL(12,2), ratio DOUBLE PRECISION, flag BOOLEAN,
            born DATE, at_time TIME, created DATETIME, stamped TIMESTAMP WITH TIME ZONE,
            raw BLOB, token UUID NOT NULL DEFAULT (lower(hex(randomblob(16)))), untyped,
            doubled INT GENERATED ALWAYS AS (pa * 2) VIRTUAL, tripled INT AS (pa * 3) STORED,
            shape GEOMETRY);
         CREATE TABLE coded (code TEXT PRIMARY KEY, n BIGINT REFERENCES BIG, p INT REFERENCES parent);
         CREATE TABLE big (id BIGINT PRIMARY KEY);
         CREATE TABLE clustered (id INTEGER PRIMARY KEY, v) WITHOUT ROWID;",
    )
    .await;
    let connector = db.connector().await;

    // WHEN they are described
    let [parent, every, coded, big, clustered] = describe_all(
        &connector,
        ["parent", "every_type", "coded", "big", "clustered"],
    )
    .await;

    // THEN each declared type maps to its kind, kept as declared
    #[rustfmt::skip]
    let expected = vec![
        ("id", DataType::Int, "INTEGER", false, true, false),
        ("First Name", DataType::Text, "VARCHAR", false, false, false),
        ("pa", DataType::Int, "INT", true, false, false),
        ("pb", DataType::Text, "TEXT", true, false, false),
        ("manager", DataType::Int, "INTEGER", true, false, false),
        ("doc", DataType::Json, "JSON", true, false, false),
        ("total", DataType::Decimal, "DECIMAL", true, false, false),
        ("ratio", DataType::Float, "DOUBLE PRECISION", true, false, false),
        ("flag", DataType::Bool, "BOOLEAN", true, false, false),
        ("born", DataType::Date, "DATE", true, false, false),
        ("at_time", DataType::Time, "TIME", true, false, false),
        ("created", DataType::Timestamp, "DATETIME", true, false, false),
        ("stamped", DataType::TimestampTz, "TIMESTAMP WITH TIME ZONE", true, false, false),
        ("raw", DataType::Bytes, "BLOB", true, false, false),
        ("token", DataType::Uuid, "UUID", false, true, false),
        ("untyped", DataType::Bytes, "", true, false, false),
        ("doubled", DataType::Int, "INT", true, true, true),
        ("tripled", DataType::Int, "INT", true, true, true),
        ("shape", DataType::Other, "GEOMETRY", true, false, false),
    ];
    assert_eq!(column_summary(&every), expected);
    assert_eq!(every.primary_key, vec!["id"]);
    assert!(every.key_is_generated());
    // AND an implicit reference to a key is resolved (a reference to a
    // two-column key from one column cannot be, and is left out)
    assert_eq!(
        foreign_keys(&coded),
        vec![(vec!["n"], table("big"), vec!["id"])]
    );
    // AND only a rowid key is generated: a text key may even be NULL, a
    // WITHOUT ROWID key may not
    fn summary(t: &TableSchema) -> (&str, DataType, &str, bool, bool, bool) {
        column_summary(t)[0]
    }
    assert_eq!(
        summary(&coded),
        ("code", DataType::Text, "TEXT", true, false, false)
    );
    assert_eq!(
        summary(&big),
        ("id", DataType::Int, "BIGINT", true, false, false)
    );
    assert_eq!(
        summary(&clustered),
        ("id", DataType::Int, "INTEGER", false, false, false)
    );
    assert!(!big.key_is_generated() && !clustered.key_is_generated());

    // AND tables are found as SQLite finds them, named as the catalog has it
    let upper = connector.describe(&table("PARENT")).await.unwrap();
    assert_eq!(upper, parent);
}

#[tokio::test]
async fn a_second_install_creates_no_trigger_and_uninstall_keeps_sqlites_own_sequence() {
    // GIVEN an AUTOINCREMENT table in use (so SQLite's own sqlite_sequence
    // is there before) and a table keyed by three columns
    let db = TestDb::with(
        "CREATE TABLE \"Customer \"\"Orders\"\" ü\" (id INTEGER PRIMARY KEY AUTOINCREMENT, \"First Name\" TEXT);
         CREATE TABLE link (a INT, b VARCHAR(20), c BLOB, PRIMARY KEY (a, b, c));
         INSERT INTO \"Customer \"\"Orders\"\" ü\" (\"First Name\") VALUES ('Ann')",
    )
    .await;
    let connector = db.connector().await;
    let tables = describe_all(&connector, [ODD, "link"]).await;
    let before = db.catalog().await;
    assert!(
        before.iter().any(|l| l.starts_with("sequence|")),
        "{before:#?}"
    );

    // WHEN installed, THEN a second install script only holds the
    // idempotent statements
    install(&connector, &tables).await;
    let again = connector.install_script(&tables).await.unwrap();
    assert!(
        again.iter().all(|s| !s.contains("CREATE TRIGGER")),
        "{again:#?}"
    );

    // WHEN a change is captured (the change table's sequence starts) and
    // everything is uninstalled with only one table still configured
    db.exec("INSERT INTO link VALUES (1, 'x', X'00')").await;
    assert_eq!(changes(&connector, &[table("link")]).await.len(), 1);
    uninstall(&connector, &tables[..1]).await;

    // THEN the catalog is exactly as before install, the sequence kept
    assert_eq!(db.catalog().await, before);
}

#[tokio::test]
async fn a_rollback_journal_database_keeps_its_mode_and_never_commits_the_marker() {
    let db = TestDb::create().await;
    common::contract::capture::agent_and_application_write_together(&db).await;
    assert_eq!(db.strings("PRAGMA journal_mode").await, ["delete"]);
    assert_eq!(
        db.strings("SELECT count(*) FROM tandem_applying").await,
        ["0"]
    );
}

#[tokio::test]
async fn a_wal_database_stays_wal_and_captures_the_same() {
    // GIVEN a database in WAL mode
    let db = TestDb::create().await;
    db.exec("PRAGMA journal_mode = WAL").await;

    // WHEN the agent installs, writes and an application writes
    common::contract::capture::agent_and_application_write_together(&db).await;

    // THEN it is still in WAL mode, and the marker was never committed
    assert_eq!(db.strings("PRAGMA journal_mode").await, ["wal"]);
    assert_eq!(
        db.strings("SELECT count(*) FROM tandem_applying").await,
        ["0"]
    );
}

#[tokio::test]
async fn autoincrement_keys_given_uuids_and_uuids_in_text_come_back_as_stored() {
    // GIVEN an AUTOINCREMENT table, one keyed by random text read as a UUID,
    // and a link table that holds UUIDs as TEXT
    let db = TestDb::with(
        "CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE tag (id UUID PRIMARY KEY DEFAULT (lower(hex(randomblob(16)))), label TEXT);
         CREATE TABLE counter (n INTEGER PRIMARY KEY AUTOINCREMENT);
         CREATE TABLE person_tag (person INT, tag TEXT, PRIMARY KEY (person, tag),
            FOREIGN KEY (person) REFERENCES person (id), FOREIGN KEY (tag) REFERENCES tag (id));
         INSERT INTO person (name) VALUES ('a'), ('b')",
    )
    .await;
    let connector = db.connector().await;
    let [tag, counter, link] = describe_all(&connector, ["tag", "counter", "person_tag"]).await;
    assert!(counter.key_is_generated());

    // WHEN a row of nothing but its key, a tag with a key given as hex and
    // one without, and a link to the given one are inserted
    let mut tx = connector.begin().await.unwrap();
    let counted = tx.insert(&counter, &Row::new()).await.unwrap();
    let tag_id = Value::Text(db.strings("SELECT hex(randomblob(16))").await[0].clone());
    let given = tx
        .insert(
            &tag,
            &row(&[("id", tag_id.clone()), ("label", text("given"))]),
        )
        .await
        .unwrap();
    let made = tx
        .insert(&tag, &row(&[("label", text("x"))]))
        .await
        .unwrap();
    let tagged = row(&[("person", text(" 2")), ("tag", given.0[0].clone())]);
    let link_key = tx.insert(&link, &tagged).await.unwrap();
    tx.commit().await.unwrap();

    // THEN the AUTOINCREMENT key is the engine's, the given hex a UUID
    assert_eq!(counted, key(&[Value::Int(1)]));
    let Value::Text(hex) = &tag_id else {
        unreachable!()
    };
    assert_eq!(
        given,
        key(&[Value::Uuid(uuid::Uuid::parse_str(hex).unwrap())])
    );
    assert!(matches!(made.0[0], Value::Uuid(_)), "{made:?}");
    assert_ne!(made, given);
    // AND a UUID in a TEXT column is its text
    let given_text = text(&given.0[0].to_string());
    assert_eq!(link_key, key(&[Value::Int(2), given_text]));
    let rows = connector
        .fetch_rows(&tag, slice::from_ref(&made))
        .await
        .unwrap();
    assert_eq!(rows[0]["label"], text("x"));
    let links = connector.fetch_rows(&link, &[link_key]).await.unwrap();
    assert_eq!(links.len(), 1);
}

#[tokio::test]
async fn a_without_rowid_table_scans_and_is_counted_as_a_rowid_one_is() {
    // GIVEN rows inserted out of key order, in a rowid table and in a
    // WITHOUT ROWID one
    let db = TestDb::with(
        "CREATE TABLE pairs (a INT, b VARCHAR(5), PRIMARY KEY (a, b));
         INSERT INTO pairs VALUES (2, 'a'), (1, 'b'), (1, 'a'), (3, 'a'), (2, 'b');
         CREATE TABLE clustered (a INT, b TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
         INSERT INTO clustered SELECT * FROM pairs",
    )
    .await;
    let connector = db.connector().await;
    let [pairs, clustered] = describe_all(&connector, ["pairs", "clustered"]).await;

    // WHEN scanned two at a time
    // THEN every row comes once, in key order
    let expected = vec!["(1, a)", "(1, b)", "(2, a)", "(2, b)", "(3, a)"];
    assert_eq!(scanned_keys(&connector, &pairs, 2).await, expected);
    assert_eq!(scanned_keys(&connector, &clustered, 2).await, expected);
    // AND the estimates are cheap and close, with statistics or without
    // (a small table is counted)
    for table in [&pairs, &clustered] {
        assert_eq!(
            connector.estimate_rows(table).await.unwrap(),
            tandem_connectors::RowCount::counted(5)
        );
    }
    db.exec("ANALYZE").await;
    assert_eq!(connector.estimate_rows(&clustered).await.unwrap().rows, 5);
}

#[tokio::test]
async fn strict_tables_held_locks_and_files_that_are_no_database_have_their_errors() {
    let db = TestDb::with("CREATE TABLE strict_t (id INTEGER PRIMARY KEY, n INTEGER) STRICT").await;
    let connector = db.connector().await;
    let strict = describe(&connector, "strict_t").await;

    // a value of the wrong type for a STRICT table: data
    let mut tx = connector.begin().await.unwrap();
    let mut loose = strict.clone();
    loose.columns[1].data_type = DataType::Text;
    let err = tx
        .insert(&loose, &row(&[("n", text("x"))]))
        .await
        .unwrap_err();
    assert_error(&err, ErrorKind::Data, &["strict_t"]);
    tx.rollback().await.unwrap();

    // the write lock held elsewhere beyond the busy timeout: transient
    let path = db.path();
    let (release, locked) = std::sync::mpsc::channel::<()>();
    let (held, wait_held) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let conn = app_connection(&path);
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        held.send(()).unwrap();
        let _ = locked.recv();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    tokio::task::spawn_blocking(move || wait_held.recv().unwrap())
        .await
        .unwrap();
    let err = connector.begin().await.err().expect("the lock is held");
    assert_error(&err, ErrorKind::Transient, &["locked"]);
    release.send(()).unwrap();
    tokio::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();
    connector.begin().await.unwrap().rollback().await.unwrap();

    // a missing file: config, naming it, and it is not created
    let missing = db.url_with(|url| {
        url.set_path(&format!(
            "{}/missing.db",
            db.path().parent().unwrap().display()
        ))
    });
    let err = db.connect_error(&missing).await;
    assert_error(&err, ErrorKind::Config, &["missing.db", "does not exist"]);
    assert!(!path_of(&missing).exists());
    // a relative path: config
    let err = db.connect_error("sqlite://relative.db").await;
    assert_error(&err, ErrorKind::Config, &["absolute"]);
    // a file that is no database: config
    let junk = db.path().with_file_name("junk.db");
    std::fs::write(&junk, "this is not a database, just some text. ".repeat(30)).unwrap();
    let err = db
        .connect_error(&format!("sqlite://{}", junk.display()))
        .await;
    assert_error(&err, ErrorKind::Config, &["junk.db", "not a database"]);
    // a directory: config
    let dir = db.path().parent().unwrap().display().to_string();
    let err = db.connect_error(&format!("sqlite://{dir}")).await;
    assert_error(&err, ErrorKind::Config, &["not a file"]);
}

#[tokio::test]
async fn the_connector_ignores_a_configured_password_and_never_shows_it() {
    let db = TestDb::create().await;
    let config = EndpointConfig {
        password: Some("s3cret-pw".into()),
        ..db.config()
    };

    let connector = SqliteConnector::connect(&config).await.unwrap();

    assert_eq!(connector.engine(), Engine::Sqlite);
    assert!(!format!("{connector:?} {config:?}").contains("s3cret-pw"));
}

#[tokio::test]
async fn uninstall_leaves_no_trace_in_a_database_without_autoincrement() {
    // GIVEN a database without any AUTOINCREMENT table
    let db = TestDb::with("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").await;
    let connector = db.connector().await;
    let before = db.catalog().await;

    // WHEN installed, used and uninstalled
    let tables = install_capture(&connector, ["t"]).await;
    db.exec("INSERT INTO t (v) VALUES ('a')").await;
    uninstall(&connector, &tables).await;

    // THEN not even SQLite's own sqlite_sequence was created
    assert!(!db.has_table("sqlite_sequence").await);
    assert_eq!(db.catalog().await, before);
}

#[tokio::test]
async fn odd_values_in_key_columns_never_fail_an_applications_write() {
    // GIVEN an installed table whose key column holds what the application
    // puts there (SQLite checks no types)
    let db = TestDb::with(
        "CREATE TABLE loose (id INT PRIMARY KEY, f REAL, v);
         CREATE TABLE floats (f REAL PRIMARY KEY)",
    )
    .await;
    let connector = db.connector().await;
    let [_, floats] = install_capture(&connector, ["loose", "floats"]).await;

    // WHEN it writes a blob, text and a fraction into the integer key
    db.exec(
        "INSERT INTO loose VALUES (X'00FF', X'01', 1), ('abc', 'x', 2), (1.5, 2, 3);
         INSERT INTO floats VALUES (0.1), (123456.78901234567), (-2.5e-10)",
    )
    .await;

    // THEN the writes went through, each captured
    assert_eq!(
        changes(&connector, &[table("loose")]).await,
        vec![
            (ChangeOp::Insert, json!(["\\x00ff"])),
            (ChangeOp::Insert, json!(["abc"])),
            (ChangeOp::Insert, json!([1.5])),
        ]
    );
    // AND float keys are captured with every digit, so they find their row
    let read = connector
        .read_changes(&[table("floats")], 10)
        .await
        .unwrap();
    let keys: Vec<Key> = read
        .iter()
        .map(|c| Key::from_captured(&floats.key_types(), &c.key).unwrap())
        .collect();
    assert_eq!(
        keys,
        vec![
            key(&[Value::Float(0.1)]),
            key(&[Value::Float(123_456.789_012_345_67)]),
            key(&[Value::Float(-2.5e-10)])
        ]
    );
    assert_eq!(connector.fetch_rows(&floats, &keys).await.unwrap().len(), 3);
}

#[tokio::test]
async fn captured_keys_decode_to_the_stored_key() {
    // GIVEN a table keyed by bytes, an instant, a decimal, case-insensitive
    // text and a float
    let db = TestDb::with(
        "CREATE TABLE k (b BLOB, z TIMESTAMPTZ, d DECIMAL(8,3), t TEXT COLLATE NOCASE, f REAL,
                         v INT, PRIMARY KEY (b, z, d, t, f))",
    )
    .await;
    let connector = db.connector().await;
    let [schema] = install_capture(&connector, ["k"]).await;

    // WHEN an application writes a row, then changes only the case of the
    // text key (the same key to SQLite's NOCASE, not to the agent)
    db.exec(
        "INSERT INTO k VALUES (X'00FF27', '2024-03-01 12:00:00.250000+00:00', 1.5, 'Ab', 0.1, 1)",
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
            Value::parse_text(DataType::TimestampTz, "2024-03-01 12:00:00.25+00").unwrap(),
            Value::Decimal("1.5".into()),
            text("AB"),
            Value::Float(0.1),
        ])
    );
}

#[tokio::test]
async fn values_are_stored_as_sqlites_functions_expect_them_and_never_rounded() {
    // GIVEN the table of every type, a row of every type in it, and one
    // whose decimal has a scale to drop, a UUID into a blob and a false flag
    let db = TestDb::with(Sqlite::EVERY_TYPE).await;
    let connector = db.connector().await;
    let vals = describe(&connector, "vals").await;
    let uuid = uuid::Uuid::new_v4();
    let scaled = row(&[
        ("dec_", Value::Decimal("1.50".into())),
        ("b", Value::Uuid(uuid)),
        ("flag", Value::Bool(false)),
    ]);
    let mut tx = connector.begin().await.unwrap();
    let full = tx
        .insert(&vals, &Sqlite::every_type_rows()[0])
        .await
        .unwrap();
    let scaled = tx.insert(&vals, &scaled).await.unwrap();
    tx.commit().await.unwrap();

    // THEN a decimal's scale is SQLite's to drop; a UUID into a blob is its
    // bytes
    let rows = connector.fetch_rows(&vals, &[scaled]).await.unwrap();
    assert_eq!(rows[0]["dec_"], Value::Decimal("1.5".into()));
    assert_eq!(rows[0]["b"], Value::Bytes(uuid.as_bytes().to_vec()));
    assert_eq!(rows[0]["flag"], Value::Bool(false));
    // AND values are stored as SQLite's own functions expect them
    let stored = db
        .strings(&format!(
            "SELECT typeof(flag) || ' ' || flag || ' | ' || typeof(dec_) || ' | ' || ts || ' | ' \
             || tz || ' | ' || typeof(b) || ' | ' || datetime(tz) FROM vals WHERE id = {}",
            full.0[0]
        ))
        .await;
    assert_eq!(
        stored,
        ["integer 1 | real | 1999-12-31 01:02:03.456789 | 2030-01-01 00:00:00.123456+00:00 | blob | 2030-01-01 00:00:00"]
    );

    // AND a value SQLite would round, or cannot read, is a data error naming
    // table, column and value
    let mut tx = connector.begin().await.unwrap();
    for (column, value) in [
        ("dec_", Value::Decimal("1234567890.123456".into())),
        ("dt", text("someday")),
        ("f", Value::Float(f64::NAN)),
    ] {
        let err = tx
            .insert(&vals, &row(&[(column, value.clone())]))
            .await
            .unwrap_err();
        assert_error(&err, ErrorKind::Data, &[&format!("`{column}`"), "vals"]);
        assert!(err.to_string().contains(&value.to_string()), "{err}");
    }
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn values_applications_store_are_read() {
    // GIVEN rows written by an application in the forms apps use
    let db = TestDb::with(
        "CREATE TABLE app (id INTEGER PRIMARY KEY, f REAL, n INTEGER, flag BOOLEAN,
            ts DATETIME, tz TIMESTAMPTZ, d DATE, uu UUID, j JSON, dec_ DECIMAL(10,2));
         INSERT INTO app VALUES
            (1, 3, 4.0, 'true', '2024-01-02T03:04:05', '2024-01-02T05:04:05+02:00', '2024-01-02',
             X'000102030405060708090A0B0C0D0E0F', '[1,2]', '12.50'),
            (2, '2.5', ' 7', 0, 1700000000, '2024-01-02 03:04:05Z', '2024-01-02 00:00:00',
             '00010203-0405-0607-0809-0A0B0C0D0E0F', 12, 3);
         INSERT INTO app (id, n) VALUES (3, 'many')",
    )
    .await;
    let connector = db.connector().await;
    let schema = describe(&connector, "app").await;

    // WHEN they are read
    let rows = connector.scan(&schema, None, 2).await.unwrap();

    // THEN each is its canonical value
    let at = NaiveDate::from_ymd_opt(2024, 1, 2)
        .unwrap()
        .and_hms_opt(3, 4, 5)
        .unwrap();
    let uu = Value::Uuid(uuid::Uuid::from_u128(
        0x0001_0203_0405_0607_0809_0a0b_0c0d_0e0f,
    ));
    let date = Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap());
    assert_eq!(
        rows[0],
        row(&[
            ("id", Value::Int(1)),
            ("f", Value::Float(3.0)),
            ("n", Value::Int(4)),
            ("flag", Value::Bool(true)),
            ("ts", Value::Timestamp(at)),
            ("tz", Value::TimestampTz(at.and_utc())),
            ("d", date.clone()),
            ("uu", uu.clone()),
            ("j", Value::Json(json!([1, 2]))),
            ("dec_", Value::Decimal("12.5".into())),
        ])
    );
    let unix = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    assert_eq!(
        rows[1],
        row(&[
            ("id", Value::Int(2)),
            ("f", Value::Float(2.5)),
            ("n", Value::Int(7)),
            ("flag", Value::Bool(false)),
            ("ts", Value::Timestamp(unix.naive_utc())),
            ("tz", Value::TimestampTz(at.and_utc())),
            ("d", date),
            ("uu", uu),
            ("j", Value::Json(json!(12))),
            ("dec_", Value::Decimal("3".into())),
        ])
    );
    // AND what cannot be read as its column's type is a data error
    let err = connector
        .fetch_rows(&schema, &[key(&[Value::Int(3)])])
        .await
        .unwrap_err();
    assert_error(&err, ErrorKind::Data, &["`n`", "app", "many"]);
}

#[tokio::test]
async fn keys_applications_wrote_in_other_forms_find_their_rows() {
    // GIVEN installed tables keyed by a timestamp, a UUID and bytes, whose
    // keys an application wrote in forms of its own
    let db = TestDb::with(
        "CREATE TABLE reading (sensor INT, at DATETIME, v REAL, PRIMARY KEY (sensor, at));
         CREATE TABLE thing (id UUID PRIMARY KEY, v INT);
         CREATE TABLE blobbed (id BLOB PRIMARY KEY, v INT)",
    )
    .await;
    let connector = db.connector().await;
    let [reading, thing, blobbed] =
        install_capture(&connector, ["reading", "thing", "blobbed"]).await;
    db.exec(
        "INSERT INTO reading VALUES (1, '2024-01-02T03:04:05.250Z', 1), (1, 1704164645, 2),
                                    (1, '2024-01-02 03:04', 3), (2, '2024-01-02 03:04:05', 4);
         INSERT INTO thing VALUES ('000102030405060708090A0B0C0D0E0F', 1),
                                  ('00000000-0000-0000-0000-00000000000A', 2),
                                  (X'000000000000000000000000000000FF', 3);
         INSERT INTO blobbed VALUES ('text key', 1), (42, 2), (X'00', 3)",
    )
    .await;

    for (schema, rows) in [(&reading, 4), (&thing, 3), (&blobbed, 3)] {
        // WHEN the rows are read, a page of one at a time
        let keys = scanned_keys(&connector, schema, 1).await;
        assert_eq!(keys.len(), rows, "{keys:?}");
        let all = connector.scan(schema, None, 10).await.unwrap();
        let read_keys: Vec<Key> = all.iter().map(|r| schema.key_of(r).unwrap()).collect();

        // THEN each key read finds its row again, as do the captured keys
        let found = connector.fetch_rows(schema, &read_keys).await.unwrap();
        assert_eq!(found, all, "{}", schema.name);
        let mut captured: Vec<Key> = connector
            .read_changes(slice::from_ref(&schema.name), 10)
            .await
            .unwrap()
            .iter()
            .map(|c| Key::from_captured(&schema.key_types(), &c.key).unwrap())
            .collect();
        // (the table's order is by storage class first: an integer before
        // text)
        let mut sorted = read_keys.clone();
        sorted.sort_by_key(|k| k.encode());
        captured.sort_by_key(|k| k.encode());
        assert_eq!(captured, sorted, "{}", schema.name);
        // AND the agent updates them where they are
        let mut tx = connector.begin().await.unwrap();
        for key in &read_keys {
            let locked = tx.fetch_for_update(schema, key).await.unwrap();
            assert!(locked.is_some(), "{key}");
            assert!(tx
                .update(schema, key, &row(&[("v", Value::Int(9))]))
                .await
                .unwrap());
        }
        tx.commit().await.unwrap();
    }
    assert_eq!(
        db.strings(
            "SELECT (SELECT count(*) FROM reading WHERE v = 9) + (SELECT count(*) FROM thing WHERE v = 9)
                    + (SELECT count(*) FROM blobbed WHERE v = 9)"
        )
        .await,
        ["10"]
    );
}
