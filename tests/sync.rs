//! A user's story: two databases, one PostgreSQL and one MariaDB, kept in
//! step both ways by `tandem-agent run --once`. Every scenario runs with
//! PostgreSQL as the source and again with MariaDB as the source.

mod harness;

use harness::{Agent, Db, Engine, SCENARIO_PAIRS};

/// customers <- orders, employees -> employees, posts <-> tags, notes.
async fn create_shop(db: &Db) {
    let (id, text) = (db.id(), db.text());
    let decimal = "DECIMAL(12,2)";
    for ddl in [
        format!("CREATE TABLE customers (id {id}, name {text}, email {text}, phone {text})"),
        format!(
            "CREATE TABLE orders (id {id}, customer_id BIGINT NOT NULL, amount {decimal}, note {text}, \
             FOREIGN KEY (customer_id) REFERENCES customers (id))"
        ),
        format!(
            "CREATE TABLE employees (id {id}, name {text}, manager_id BIGINT NULL, \
             FOREIGN KEY (manager_id) REFERENCES employees (id))"
        ),
        format!("CREATE TABLE posts (id {id}, title {text})"),
        format!("CREATE TABLE tags (id {id}, label {text})"),
        "CREATE TABLE post_tags (post_id BIGINT NOT NULL, tag_id BIGINT NOT NULL, PRIMARY KEY (post_id, tag_id), \
         FOREIGN KEY (post_id) REFERENCES posts (id), FOREIGN KEY (tag_id) REFERENCES tags (id))"
            .to_owned(),
        format!("CREATE TABLE notes (id {id}, body {text})"),
    ] {
        db.exec(&ddl).await;
    }
}

const SHOP: &[(&str, &str)] = &[
    ("orders", "orders"),
    ("customers", "customers"),
    ("employees", "employees"),
    ("post_tags", "post_tags"),
    ("posts", "posts"),
    ("tags", "tags"),
    ("notes", "notes"),
];

/// Each table by its natural content, references followed by name: equal
/// on both sides exactly when the records and their relations are.
async fn shop_content(db: &Db) -> Vec<Vec<Vec<Option<String>>>> {
    let mut out = Vec::new();
    for sql in [
        "SELECT name, email, phone FROM customers ORDER BY name, email",
        "SELECT c.name, o.amount, o.note FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY c.name, o.note",
        "SELECT e.name, m.name FROM employees e LEFT JOIN employees m ON m.id = e.manager_id ORDER BY e.name",
        "SELECT p.title, t.label FROM post_tags pt JOIN posts p ON p.id = pt.post_id JOIN tags t ON t.id = pt.tag_id ORDER BY 1, 2",
        "SELECT title FROM posts ORDER BY title",
        "SELECT label FROM tags ORDER BY label",
        "SELECT body FROM notes ORDER BY body",
    ] {
        out.push(normalized(db.rows(sql).await));
    }
    out
}

/// Numbers as numbers: `10.50` (PostgreSQL, MariaDB) and `10.5` (SQLite
/// keeps a decimal as a REAL) are the same amount.
fn normalized(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|cell| cell.map(|text| text.parse::<f64>().map_or(text, |n| n.to_string())))
                .collect()
        })
        .collect()
}

async fn assert_in_step(source: &Db, target: &Db) {
    let (s, t) = (shop_content(source).await, shop_content(target).await);
    assert_eq!(s, t, "source and target differ");
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sync_then_every_kind_of_change_both_ways() {
    for (source_engine, target_engine) in SCENARIO_PAIRS {
        let source = Db::create(source_engine).await;
        let target = Db::create(target_engine).await;
        create_shop(&source).await;
        create_shop(&target).await;

        // GIVEN a source with customers, orders, a reporting chain and
        // tagged posts, and a target that already has a record of its own.
        source
            .exec("INSERT INTO customers (name, email, phone) VALUES ('Ada', 'ada@example.com', '1'), ('Bob', 'bob@example.com', '2')")
            .await;
        source
            .exec("INSERT INTO orders (customer_id, amount, note) SELECT id, 10.50, 'first' FROM customers WHERE name = 'Ada'")
            .await;
        source
            .exec("INSERT INTO orders (customer_id, amount, note) SELECT id, 99.99, 'bob''s' FROM customers WHERE name = 'Bob'")
            .await;
        source
            .exec("INSERT INTO employees (name) VALUES ('Boss')")
            .await;
        source
            .exec("INSERT INTO employees (name, manager_id) SELECT 'Mid', id FROM employees WHERE name = 'Boss'")
            .await;
        source
            .exec("INSERT INTO employees (name, manager_id) SELECT 'Low', id FROM employees WHERE name = 'Mid'")
            .await;
        source
            .exec("INSERT INTO posts (title) VALUES ('hello'), ('again')")
            .await;
        source
            .exec("INSERT INTO tags (label) VALUES ('rust'), ('sql')")
            .await;
        source
            .exec("INSERT INTO post_tags (post_id, tag_id) SELECT p.id, t.id FROM posts p, tags t WHERE p.title = 'hello'")
            .await;
        source
            .exec("INSERT INTO notes (body) VALUES ('keep me')")
            .await;
        target
            .exec("INSERT INTO customers (name, email, phone) VALUES ('Cy', 'cy@example.com', '3')")
            .await;
        target
            .exec("INSERT INTO orders (customer_id, amount, note) SELECT id, 1.00, 'cy order' FROM customers WHERE name = 'Cy'")
            .await;
        target
            .exec("INSERT INTO employees (name) VALUES ('Solo')")
            .await;

        // WHEN the agent installs its triggers and runs once
        let agent = Agent::new(&source, &target, SHOP, "");
        agent.install().await;
        let report = agent.once().await;

        // THEN both sides hold every record, relations intact
        assert!(report.contains("in step"), "{report}");
        assert_in_step(&source, &target).await;
        assert_eq!(
            target.count("SELECT count(*) FROM customers").await,
            3,
            "{source_engine:?} -> {target_engine:?}"
        );
        assert_eq!(source.count("SELECT count(*) FROM employees").await, 4);

        // WHEN both sides change: inserts, updates, deletes, a key change
        source
            .exec(
                "INSERT INTO customers (name, email, phone) VALUES ('Dee', 'dee@example.com', '4')",
            )
            .await;
        source
            .exec("INSERT INTO orders (customer_id, amount, note) SELECT id, 5.25, 'dee order' FROM customers WHERE name = 'Dee'")
            .await;
        source
            .exec("UPDATE customers SET phone = '111' WHERE name = 'Ada'")
            .await;
        source
            .exec("DELETE FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE name = 'Bob')")
            .await;
        source
            .exec("DELETE FROM customers WHERE name = 'Bob'")
            .await;
        source.exec("UPDATE notes SET id = id + 1000").await;
        source
            .exec("INSERT INTO post_tags (post_id, tag_id) SELECT p.id, t.id FROM posts p, tags t WHERE p.title = 'again' AND t.label = 'sql'")
            .await;
        target
            .exec(
                "INSERT INTO customers (name, email, phone) VALUES ('Eve', 'eve@example.com', '5')",
            )
            .await;
        target
            .exec("UPDATE customers SET email = 'cy@new.example' WHERE name = 'Cy'")
            .await;
        target.exec("DELETE FROM orders WHERE note = 'first'").await;
        target
            .exec("UPDATE employees SET manager_id = (SELECT id FROM (SELECT id FROM employees WHERE name = 'Solo') s) WHERE name = 'Low'")
            .await;
        target
            .exec(
                "DELETE FROM post_tags WHERE tag_id IN (SELECT id FROM tags WHERE label = 'rust')",
            )
            .await;
        agent.once().await;

        // THEN they are in step again
        assert_in_step(&source, &target).await;
        assert_eq!(
            target
                .rows("SELECT phone FROM customers WHERE name = 'Ada'")
                .await,
            vec![vec![Some("111".into())]]
        );
        assert_eq!(
            target
                .count("SELECT count(*) FROM customers WHERE name = 'Bob'")
                .await,
            0
        );
        assert_eq!(
            source
                .count("SELECT count(*) FROM orders WHERE note = 'first'")
                .await,
            0
        );
        assert_eq!(target.count("SELECT count(*) FROM notes").await, 1);

        // AND nothing echoes: the agent's own writes were not captured, so
        // another pass applies nothing.
        assert_eq!(source.pending_changes().await, 0);
        assert_eq!(target.pending_changes().await, 0);
        let before = agent.applied().await;
        agent.once().await;
        assert_eq!(
            agent.applied().await,
            before,
            "a pass with no changes applied something"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_contact_example_source_wins_whole() {
    for (source_engine, target_engine) in SCENARIO_PAIRS {
        let source = Db::create(source_engine).await;
        let target = Db::create(target_engine).await;
        for db in [&source, &target] {
            db.exec(&format!(
                "CREATE TABLE contacts (id {}, first_name {t}, last_name {t}, email {t}, phone {t})",
                db.id(),
                t = db.text()
            ))
            .await;
        }
        // GIVEN John Doe, synced to both sides
        source
            .exec("INSERT INTO contacts (first_name, last_name, email, phone) VALUES ('John', 'Doe', 'john.doe@example.com', '123-456-7890')")
            .await;
        let agent = Agent::new(&source, &target, &[("contacts", "contacts")], "");
        agent.install().await;
        agent.once().await;

        // WHEN the source changes the email and the target the phone
        source
            .exec("UPDATE contacts SET email = 'john.new@example.com'")
            .await;
        target
            .exec("UPDATE contacts SET phone = '987-654-3210'")
            .await;
        let report = agent.once().await;

        // THEN both sides hold the new email and the OLD phone
        let expected = vec![vec![
            Some("John".to_owned()),
            Some("Doe".to_owned()),
            Some("john.new@example.com".to_owned()),
            Some("123-456-7890".to_owned()),
        ]];
        let sql = "SELECT first_name, last_name, email, phone FROM contacts";
        assert_eq!(
            source.rows(sql).await,
            expected,
            "source, {source_engine:?}"
        );
        assert_eq!(
            target.rows(sql).await,
            expected,
            "target, {target_engine:?}"
        );
        // AND the conflict was counted
        let status = agent.ok(&["status", "--json"]).await;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["pairs"][0]["conflicts"], 1, "{report}\n{status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn target_wins_when_configured() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE contacts (id {}, email {t}, phone {t})",
            db.id(),
            t = db.text()
        ))
        .await;
    }
    source
        .exec("INSERT INTO contacts (email, phone) VALUES ('a@x', '1')")
        .await;
    let agent = Agent::new(
        &source,
        &target,
        &[("contacts", "contacts")],
        "[sync]\nconflict = \"target-wins\"\n",
    );
    agent.install().await;
    agent.once().await;
    source.exec("UPDATE contacts SET email = 'b@x'").await;
    target.exec("UPDATE contacts SET phone = '2'").await;
    agent.once().await;
    let expected = vec![vec![Some("a@x".to_owned()), Some("2".to_owned())]];
    assert_eq!(
        source.rows("SELECT email, phone FROM contacts").await,
        expected
    );
    assert_eq!(
        target.rows("SELECT email, phone FROM contacts").await,
        expected
    );
}

/// Reads a table with Tandem's own connector: canonical values by label.
async fn canonical_rows(
    db: &Db,
    table: &str,
) -> std::collections::BTreeMap<String, tandem_connectors::Row> {
    let connector = connector_of(db).await;
    let schema = connector
        .describe(&connector.table_name(table))
        .await
        .expect("describe");
    connector
        .scan(&schema, None, 1000)
        .await
        .expect("scan")
        .into_iter()
        .map(|row| {
            let label = match row.get("label") {
                Some(tandem_connectors::Value::Text(label)) => label.clone(),
                other => panic!("label {other:?}"),
            };
            (label, row)
        })
        .collect()
}

/// Equal as the engines can hold them: MySQL's BOOLEAN is a TINYINT(1), a
/// decimal's scale is the column's (`1.50` in a NUMERIC(10,2), `1.5` in
/// SQLite).
fn same_value(a: &tandem_connectors::Value, b: &tandem_connectors::Value) -> bool {
    use tandem_connectors::Value::*;
    let exact = |d: &str| {
        if d.contains('.') {
            d.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            d.to_owned()
        }
    };
    match (a, b) {
        (Bool(x), Int(y)) | (Int(y), Bool(x)) => *y == *x as i64,
        (Float(x), Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Decimal(x), Decimal(y)) => exact(x) == exact(y),
        (Decimal(x), Int(y)) | (Int(y), Decimal(x)) => exact(x) == y.to_string(),
        _ => a == b,
    }
}

/// A table with a column of every canonical type, in each engine's words.
fn kinds_table(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "CREATE TABLE kinds (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label TEXT, \
             i16 SMALLINT, i32 INTEGER, i64 BIGINT, amount NUMERIC(20,4), f64 DOUBLE PRECISION, flag BOOLEAN, \
             txt TEXT, bin BYTEA, day DATE, clock TIME, ts TIMESTAMP, tstz TIMESTAMPTZ, doc JSONB, uid UUID)"
        }
        Engine::Mysql => {
            "CREATE TABLE kinds (id BIGINT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(50), \
             i16 SMALLINT, i32 INT, i64 BIGINT, amount DECIMAL(20,4), f64 DOUBLE, flag BOOLEAN, \
             txt TEXT, bin BLOB, day DATE, clock TIME(6), ts DATETIME(6), tstz TIMESTAMP(6) NULL, doc JSON, uid UUID)"
        }
        Engine::Sqlite => {
            "CREATE TABLE kinds (id INTEGER PRIMARY KEY, label TEXT, i16 SMALLINT, i32 INTEGER, i64 BIGINT, \
             amount NUMERIC(20,4), f64 DOUBLE, flag BOOLEAN, txt TEXT, bin BLOB, day DATE, clock TIME, \
             ts TIMESTAMP, tstz TIMESTAMPTZ, doc JSON, uid UUID)"
        }
    }
}

/// Sample rows: extremes, awkward text, and NULL in every column.
fn sample_rows(prefix: &str) -> Vec<tandem_connectors::Row> {
    use chrono::{NaiveDate, NaiveTime};
    use tandem_connectors::Value::*;
    let day = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let full = |label: &str, sign: i64| -> tandem_connectors::Row {
        [
            ("label", Text(format!("{prefix} {label}"))),
            ("i16", Int(32767 * sign)),
            ("i32", Int(2_147_483_647 * sign)),
            ("i64", Int(if sign > 0 { i64::MAX } else { i64::MIN })),
            (
                "amount",
                Decimal(if sign > 0 {
                    "12345.6789".into()
                } else {
                    "-0.0001".into()
                }),
            ),
            ("f64", Float(0.1 * sign as f64)),
            ("flag", Bool(sign > 0)),
            ("txt", Text("Grüße 🎉 'q' \"dq\" a\\b".into())),
            ("bin", Bytes(vec![0, 255, 10])),
            ("day", Date(day)),
            (
                "clock",
                Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 123_456).unwrap()),
            ),
            (
                "ts",
                Timestamp(day.and_hms_micro_opt(1, 2, 3, 456_789).unwrap()),
            ),
            (
                "tstz",
                TimestampTz(day.and_hms_opt(12, 0, 0).unwrap().and_utc()),
            ),
            (
                "doc",
                Json(serde_json::json!({"a": [1, 2, {"b": null}], "u": "ü"})),
            ),
            (
                "uid",
                Uuid(uuid::Uuid::from_u128(
                    0x6f1c_2a3e_9d4b_4c5e_8f7a_1b2c_3d4e_5f60,
                )),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let nulls: tandem_connectors::Row = full("nulls", 1)
        .into_keys()
        .map(|k| {
            let value = if k == "label" {
                Text(format!("{prefix} nulls"))
            } else {
                Null
            };
            (k, value)
        })
        .collect();
    vec![full("max", 1), full("min", -1), nulls]
}

async fn connector_of(db: &Db) -> std::sync::Arc<dyn tandem_connectors::Connector> {
    let engine = match db.engine {
        Engine::Postgres => tandem_connectors::Engine::Postgres,
        Engine::Mysql => tandem_connectors::Engine::Mysql,
        Engine::Sqlite => tandem_connectors::Engine::Sqlite,
    };
    tandem_connectors::connect(&tandem_connectors::EndpointConfig {
        engine,
        url: db.url.clone(),
        password: None,
        poll_interval: std::time::Duration::from_millis(100),
        max_connections: 2,
        tls: tandem_connectors::TlsConfig::default_for(engine, &db.url)
            .expect("TLS settings of the test URL"),
        http: None,
    })
    .await
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread")]
async fn values_of_every_type_survive_every_pair_of_engines() {
    for (source_engine, target_engine) in SCENARIO_PAIRS {
        let source = Db::create(source_engine).await;
        let target = Db::create(target_engine).await;
        source.exec(kinds_table(source_engine)).await;
        target.exec(kinds_table(target_engine)).await;
        // GIVEN the same values written on each side
        for (db, prefix) in [(&source, "from source"), (&target, "from target")] {
            let connector = connector_of(db).await;
            let table = connector
                .describe(&connector.table_name("kinds"))
                .await
                .unwrap();
            let mut tx = connector.begin().await.unwrap();
            for row in sample_rows(prefix) {
                tx.insert(&table, &row).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        // WHEN synced both ways
        let agent = Agent::new(&source, &target, &[("kinds", "kinds")], "");
        agent.install().await;
        agent.once().await;
        // THEN every value reads back the same on both sides
        let (on_source, on_target) = (
            canonical_rows(&source, "kinds").await,
            canonical_rows(&target, "kinds").await,
        );
        assert_eq!(on_source.len(), 6, "{source_engine:?} -> {target_engine:?}");
        for (label, row) in &on_source {
            let copy = on_target
                .get(label)
                .unwrap_or_else(|| panic!("{label} missing on the target"));
            for (column, value) in row.iter().filter(|(c, _)| *c != "id") {
                assert!(
                    same_value(value, &copy[column]),
                    "{source_engine:?} -> {target_engine:?}: {label}.{column}: source {value:?}, target {:?}",
                    copy[column]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn values_of_every_type_round_trip_both_ways() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    source
        .exec(
            "CREATE TABLE kinds (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label TEXT, \
             i16 SMALLINT, i32 INTEGER, i64 BIGINT, amount NUMERIC(30,10), f64 DOUBLE PRECISION, f32 REAL, \
             flag BOOLEAN, txt TEXT, bin BYTEA, day DATE, clock TIME, ts TIMESTAMP, tstz TIMESTAMPTZ, doc JSONB, uid UUID)",
        )
        .await;
    target
        .exec(
            "CREATE TABLE kinds (id BIGINT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(50), \
             i16 SMALLINT, i32 INT, i64 BIGINT, amount DECIMAL(30,10), f64 DOUBLE, f32 FLOAT, \
             flag BOOLEAN, txt TEXT, bin BLOB, day DATE, clock TIME(6), ts DATETIME(6), tstz TIMESTAMP(6) NULL, doc JSON, uid UUID)",
        )
        .await;
    let columns =
        "label, i16, i32, i64, amount, f64, f32, flag, txt, bin, day, clock, ts, tstz, doc, uid";
    // The same values, written in each engine's literal syntax.
    source
        .exec(&format!(
            "INSERT INTO kinds ({columns}) VALUES \
             ('max from pg', 32767, 2147483647, 9223372036854775807, 12345678901234567890.0123456789, 0.1, 0.5, true, \
              'Grüße 🎉 ''q'' \"dq\" a\\b', '\\x00ff10', '2024-02-29', '23:59:59.123456', '1999-12-31 23:59:59.999999', \
              '2030-01-01 12:00:00+00', '{{\"a\": [1, 2, {{\"b\": null}}], \"u\": \"ü\"}}', '6f1c2a3e-9d4b-4c5e-8f7a-1b2c3d4e5f60'), \
             ('min from pg', -32768, -2147483648, -9223372036854775808, -0.0000000001, -1.5e300, -0.25, false, \
              '', '\\x', '1000-01-01', '00:00:00', '1970-01-01 00:00:01', '1970-01-02 00:00:00+00', '[]', \
              '00000000-0000-0000-0000-000000000000'), \
             ('nulls from pg', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ))
        .await;
    let session = target.session().await;
    session.exec("SET time_zone = '+00:00'").await;
    session
        .exec(&format!(
            "INSERT INTO kinds ({columns}) VALUES \
             ('max from mariadb', 32767, 2147483647, 9223372036854775807, 12345678901234567890.0123456789, 0.1, 0.5, true, \
              'Grüße 🎉 ''q'' \"dq\" a\\\\b', X'00FF10', '2024-02-29', '23:59:59.123456', '1999-12-31 23:59:59.999999', \
              '2030-01-01 12:00:00', '{{\"a\": [1, 2, {{\"b\": null}}], \"u\": \"ü\"}}', '6f1c2a3e-9d4b-4c5e-8f7a-1b2c3d4e5f60'), \
             ('min from mariadb', -32768, -2147483648, -9223372036854775808, -0.0000000001, -1.5e300, -0.25, false, \
              '', X'', '1000-01-01', '00:00:00', '1970-01-01 00:00:01', '1970-01-02 00:00:00', '[]', \
              '00000000-0000-0000-0000-000000000000'), \
             ('nulls from mariadb', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ))
        .await;

    let agent = Agent::new(&source, &target, &[("kinds", "kinds")], "");
    agent.install().await;
    agent.once().await;

    let (on_source, on_target) = (
        canonical_rows(&source, "kinds").await,
        canonical_rows(&target, "kinds").await,
    );
    assert_eq!(on_source.len(), 6, "{on_source:?}");
    assert_eq!(
        on_source.keys().collect::<Vec<_>>(),
        on_target.keys().collect::<Vec<_>>()
    );
    for (label, row) in &on_source {
        let copy = &on_target[label];
        for (column, value) in row {
            if column == "id" {
                continue;
            }
            assert!(
                same_value(value, &copy[column]),
                "{label}.{column}: source {value:?}, target {:?}",
                copy[column]
            );
        }
    }
    // Every column of the full rows holds a value (nothing was dropped to NULL).
    for label in ["max from pg", "min from mariadb"] {
        let nulls: Vec<_> = on_target[label]
            .iter()
            .filter(|(_, v)| v.is_null())
            .collect();
        assert!(nulls.is_empty(), "{label}: {nulls:?}");
    }
    assert_eq!(
        on_target["max from pg"]["amount"],
        tandem_connectors::Value::Decimal("12345678901234567890.0123456789".into())
    );
    assert_eq!(
        on_source["min from mariadb"]["i64"],
        tandem_connectors::Value::Int(i64::MIN)
    );
    // Both directions produced the same values from the same literals.
    for (a, b) in [
        ("max from pg", "max from mariadb"),
        ("min from pg", "min from mariadb"),
    ] {
        for (column, value) in &on_source[a] {
            if column != "id" && column != "label" {
                assert!(
                    same_value(value, &on_source[b][column]),
                    "{a} vs {b}: {column}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_other_side_refuses_waits_in_dead_letters_until_retried() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    source.exec("CREATE TABLE items (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, code TEXT)").await;
    target
        .exec("CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(5))")
        .await;
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;
    agent.once().await;

    // GIVEN a value the target cannot hold, next to one it can
    source
        .exec("INSERT INTO items (code) VALUES ('far too long'), ('ok')")
        .await;
    let out = agent.output(&["run", "--once"]).await;

    // THEN the good record arrives, the bad one is dead-lettered with the
    // reason, and the run says the sides are not in step
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        target.rows("SELECT code FROM items").await,
        vec![vec![Some("ok".to_owned())]]
    );
    let listed = agent.ok(&["dead-letters", "list"]).await;
    assert!(
        listed.contains("items source key") && listed.contains("code"),
        "{listed}"
    );

    // AND its later changes wait behind it
    source
        .exec("UPDATE items SET code = 'still too long' WHERE code = 'far too long'")
        .await;
    assert_eq!(
        agent.output(&["run", "--once"]).await.status.code(),
        Some(3)
    );
    assert!(agent
        .ok(&["dead-letters", "list"])
        .await
        .contains("2 change(s)"));

    // WHEN the cause is fixed and the record retried, THEN its latest value arrives
    target
        .exec("ALTER TABLE items MODIFY code VARCHAR(50)")
        .await;
    agent.ok(&["dead-letters", "retry"]).await;
    agent.once().await;
    assert_eq!(
        target.rows("SELECT code FROM items ORDER BY code").await,
        vec![
            vec![Some("ok".to_owned())],
            vec![Some("still too long".to_owned())]
        ]
    );
    assert!(agent
        .ok(&["dead-letters", "list"])
        .await
        .contains("no dead letters"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_record_amid_good_ones_sets_aside_only_itself_and_copies_the_rest_once() {
    // PostgreSQL as the target: a failed statement aborts its whole
    // transaction there, so the records before the bad one must be written
    // again, once, in the transaction that sets the bad one aside.
    let source = Db::create(Engine::Mysql).await;
    let target = Db::create(Engine::Postgres).await;
    source
        .exec("CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(50))")
        .await;
    target
        .exec("CREATE TABLE items (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, code VARCHAR(5))")
        .await;
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;
    agent.once().await;

    // GIVEN a value the target cannot hold between two it can
    source
        .exec("INSERT INTO items (code) VALUES ('ok1'), ('far too long'), ('ok2')")
        .await;
    let out = agent.output(&["run", "--once"]).await;

    // THEN the good records arrive exactly once each and the bad one is a
    // dead letter
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        target.rows("SELECT code FROM items ORDER BY code").await,
        vec![vec![Some("ok1".to_owned())], vec![Some("ok2".to_owned())]]
    );
    assert_eq!(
        target.count("SELECT count(*) FROM tandem.id_map").await,
        2,
        "one link per copy"
    );
    assert!(agent
        .ok(&["dead-letters", "list"])
        .await
        .contains("items source key"));
}
