//! The PostgreSQL connector against the local server.
//!
//! Every test creates its own database (`tandem_t_<uuid>`) from the admin
//! URL in `TANDEM_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drops it when the test
//! ends, passing or failing.

mod common;

use std::collections::BTreeMap;
use std::slice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use common::*;
use serde_json::json;
use tandem_connectors::connector::{IdMapRow, Installation, SCHEMA_VERSION};
use tandem_connectors::{
    ChangeOp, Charset, Connector, CopyOf, DataType, Engine, ErrorKind, Key, Row, TableName,
    TableSchema, Value,
};
use tokio_postgres::NoTls;

struct Postgres;

type TestDb = common::TestDb<Postgres>;

async fn try_client(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn raw_client(url: &str) -> tokio_postgres::Client {
    try_client(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

impl Server for Postgres {
    const ENGINE: Engine = Engine::Postgres;
    const POLL_INTERVAL: Duration = Duration::from_secs(1);

    async fn create_database(admin_url: &str, name: &str) {
        raw_client(admin_url)
            .await
            .batch_execute(&format!("create database {name}"))
            .await
            .expect("create the test database");
    }

    async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
        try_client(admin_url)
            .await
            .map_err(|e| e.to_string())?
            .batch_execute(&format!("drop database if exists {name} with (force)"))
            .await
            .map_err(|e| e.to_string())
    }

    async fn execute(url: &str, sql: &str) {
        raw_client(url)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl TestDb {
    /// A plain session (not the agent's): its writes are captured.
    async fn client(&self) -> tokio_postgres::Client {
        raw_client(&self.url).await
    }
}

/// Everything a user could see of the database's catalog, by name.
async fn catalog_dump(client: &tokio_postgres::Client) -> Vec<String> {
    let queries = [
        "select 'schema ' || nspname from pg_namespace",
        "select 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')",
        "select 'column ' || a.attrelid::regclass::text || '.' || a.attname || ' '
                || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
                || a.attidentity::text || a.attgenerated::text || ' '
                || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
         from pg_attribute a
         join pg_class c on c.oid = a.attrelid
         join pg_namespace n on n.oid = c.relnamespace
         left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
         where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
           and a.attnum > 0 and not a.attisdropped",
        "select 'constraint ' || conrelid::regclass::text || ' ' || conname || ' '
                || pg_get_constraintdef(oid)
         from pg_constraint where connamespace not in
             (select oid from pg_namespace where nspname in ('pg_catalog', 'information_schema'))",
        "select 'index ' || pg_get_indexdef(indexrelid) from pg_index i
         join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
         where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')",
        "select 'trigger ' || pg_get_triggerdef(oid) from pg_trigger where not tgisinternal",
        "select 'function ' || pg_get_functiondef(p.oid) from pg_proc p
         join pg_namespace n on n.oid = p.pronamespace
         where n.nspname not in ('pg_catalog', 'information_schema')",
        "select 'type ' || t.oid::regtype::text from pg_type t
         join pg_namespace n on n.oid = t.typnamespace
         where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')",
    ];
    let mut dump = Vec::new();
    for query in queries {
        for row in client.query(query, &[]).await.expect(query) {
            dump.push(row.get::<_, String>(0));
        }
    }
    dump.sort();
    dump
}

#[tokio::test]
async fn describe_reads_odd_names_types_generated_columns_keys_and_foreign_keys() {
    // GIVEN tables with odd names, a composite key out of column order, a
    // dropped column, generated columns and composite / self foreign keys.
    let db = TestDb::with(
        r#"
        create schema "Sales";
        create table "Sales"."Parent" (id1 int, id2 text, primary key (id2, id1));
        create table "Customer ""Orders"" ü" (
            "Order Id" bigint generated always as identity,
            gone int,
            "First Name" varchar(50) not null,
            ref uuid default gen_random_uuid(),
            counter serial,
            by_default int generated by default as identity,
            total numeric(10, 2),
            doubled numeric generated always as (total * 2) stored,
            created timestamptz default now(),
            p1 text,
            p2 int,
            parent_id bigint,
            primary key ("Order Id"),
            foreign key (p1, p2) references "Sales"."Parent" (id2, id1),
            foreign key (parent_id) references "Customer ""Orders"" ü" ("Order Id")
        );
        alter table "Customer ""Orders"" ü" drop column gone;
        "#,
    )
    .await;
    let connector = db.connector().await;

    // WHEN described
    let [table, parent] = describe_all(&connector, ["Customer \"Orders\" ü", "Sales.Parent"]).await;

    // THEN columns come in catalog order with their types and generation
    assert_eq!(
        table.name,
        TableName::new(Some("public"), "Customer \"Orders\" ü")
    );
    #[rustfmt::skip]
    let expected = vec![
        ("Order Id", DataType::Int, "bigint", false, true, true),
        ("First Name", DataType::Text, "character varying", false, false, false),
        ("ref", DataType::Uuid, "uuid", true, true, false),
        ("counter", DataType::Int, "integer", false, true, false),
        ("by_default", DataType::Int, "integer", false, true, false),
        ("total", DataType::Decimal, "numeric", true, false, false),
        ("doubled", DataType::Decimal, "numeric", true, true, true),
        ("created", DataType::TimestampTz, "timestamp with time zone", true, false, false),
        ("p1", DataType::Text, "text", true, false, false),
        ("p2", DataType::Int, "integer", true, false, false),
        ("parent_id", DataType::Int, "bigint", true, false, false),
    ];
    assert_eq!(column_summary(&table), expected);
    assert_eq!(table.primary_key, vec!["Order Id"]);
    assert!(table.key_is_generated());
    // AND its foreign keys, composite and to itself (in any order)
    let mut fks = foreign_keys(&table);
    fks.sort();
    assert_eq!(
        fks,
        vec![
            (
                vec!["p1", "p2"],
                TableName::new(Some("Sales"), "Parent"),
                vec!["id2", "id1"]
            ),
            (vec!["parent_id"], table.name.clone(), vec!["Order Id"]),
        ]
    );
    // AND a composite key keeps its key order, not the column order
    assert_eq!(parent.name, TableName::new(Some("Sales"), "Parent"));
    assert_eq!(parent.primary_key, vec!["id2", "id1"]);

    // AND a missing table is a schema error naming it and the database
    assert_missing_table(&connector, "nope.missing", &db.name).await;
}

#[tokio::test]
async fn describe_maps_every_type_domains_and_enums() {
    let db = TestDb::with(
        "
        create type mood as enum ('happy', 'sad');
        create domain positive_int as integer check (value > 0);
        create domain small_positive as positive_int check (value < 100);
        create table every_type (
            id int primary key, b boolean, i2 smallint, i8 bigint, d numeric(12, 3),
            f4 real, f8 double precision, t text, vc varchar(3), c char(3), n name,
            by bytea, dt date, tm time(3), ts timestamp, tz timestamptz, j json, jb jsonb,
            u uuid, e mood, dom small_positive, arr integer[], iv interval, ttz timetz);",
    )
    .await;
    let connector = db.connector().await;
    let table = describe(&connector, "every_type").await;
    let types: Vec<(&str, DataType, &str)> = column_summary(&table)
        .into_iter()
        .map(|(name, data_type, native, ..)| (name, data_type, native))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", DataType::Int, "integer"),
            ("b", DataType::Bool, "boolean"),
            ("i2", DataType::Int, "smallint"),
            ("i8", DataType::Int, "bigint"),
            ("d", DataType::Decimal, "numeric"),
            ("f4", DataType::Float, "real"),
            ("f8", DataType::Float, "double precision"),
            ("t", DataType::Text, "text"),
            ("vc", DataType::Text, "character varying"),
            ("c", DataType::Text, "bpchar"),
            ("n", DataType::Text, "name"),
            ("by", DataType::Bytes, "bytea"),
            ("dt", DataType::Date, "date"),
            ("tm", DataType::Time, "time without time zone"),
            ("ts", DataType::Timestamp, "timestamp without time zone"),
            ("tz", DataType::TimestampTz, "timestamp with time zone"),
            ("j", DataType::Json, "json"),
            ("jb", DataType::Json, "jsonb"),
            ("u", DataType::Uuid, "uuid"),
            ("e", DataType::Text, "mood"),
            ("dom", DataType::Int, "small_positive"),
            ("arr", DataType::Other, "integer[]"),
            ("iv", DataType::Other, "interval"),
            ("ttz", DataType::Other, "time with time zone"),
        ]
    );
}

#[tokio::test]
async fn install_twice_equals_once_and_uninstall_restores_the_catalog() {
    let db = TestDb::with(
        r#"
        create table kept (id int primary key);
        create table "We""ird ü" (a text, b int, primary key (a, b));
        create table dropped_later (id int primary key);"#,
    )
    .await;
    let client = db.client().await;
    let connector = db.connector().await;
    let all = describe_all(&connector, ["kept", "We\"ird ü", "dropped_later"]).await;
    let (weird, still_configured) = (&all[1], &all[..2]);

    let before = catalog_dump(&client).await;
    assert_eq!(
        connector.installation(&all).await.unwrap(),
        Installation {
            version: None,
            missing_triggers: all.iter().map(|t| t.name.clone()).collect()
        }
    );

    // WHEN installed once, then again
    install(&connector, &all).await;
    let once = catalog_dump(&client).await;
    install(&connector, &all).await;
    let twice = catalog_dump(&client).await;

    // THEN the second run changed nothing, and everything is in place
    assert_ne!(before, once);
    assert_eq!(once, twice);
    for needed in [
        "schema tandem",
        "relation tandem.changes r",
        "relation tandem.id_map r",
        "relation tandem.version r",
    ] {
        assert!(
            once.iter().any(|l| l == needed),
            "{needed} missing from {once:#?}"
        );
    }
    // Per table: the row trigger and the TRUNCATE trigger.
    assert_eq!(once.iter().filter(|l| l.starts_with("trigger ")).count(), 6);
    let installation = connector.installation(&all).await.unwrap();
    assert_eq!(installation.version, Some(SCHEMA_VERSION));
    assert!(installation.missing_triggers.is_empty());

    // AND a trigger dropped by hand is reported missing and put back
    client
        .batch_execute(r#"drop trigger tandem_capture on "We""ird ü""#)
        .await
        .unwrap();
    assert_eq!(
        connector.installation(&all).await.unwrap().missing_triggers,
        vec![weird.name.clone()]
    );
    install(&connector, &all).await;
    assert_eq!(catalog_dump(&client).await, once);

    // WHEN uninstalled with one table no longer configured
    uninstall(&connector, still_configured).await;

    // THEN the catalog is exactly as before, its trigger included
    assert_eq!(catalog_dump(&client).await, before);
    assert_eq!(connector.installation(&all).await.unwrap().version, None);
    // AND uninstalling again is harmless
    uninstall(&connector, still_configured).await;
}

#[tokio::test]
async fn captures_insert_update_delete_and_key_changes() {
    let db = TestDb::with(
        r#"
        create schema "Sales";
        create table "Sales"."Customer ""Orders"" ü" (
            id int primary key, "First Name" text, amount numeric, bin bytea unique);
        create table pairs (a text, b date, v int, primary key (a, b));"#,
    )
    .await;
    let connector = db.connector().await;
    let [orders, pairs] =
        install_capture(&connector, ["Sales.Customer \"Orders\" ü", "pairs"]).await;

    db.exec(
        r#"
        insert into "Sales"."Customer ""Orders"" ü" values (1, 'Ann', 1.50, '\x00ff');
        update "Sales"."Customer ""Orders"" ü" set "First Name" = 'Anne' where id = 1;
        update "Sales"."Customer ""Orders"" ü" set id = 2 where id = 1;
        delete from "Sales"."Customer ""Orders"" ü" where id = 2;
        insert into pairs values ('x', '2024-02-29', 1);
        update pairs set b = '2024-03-01' where a = 'x';"#,
    )
    .await;

    let changes = connector
        .read_changes(&[orders.name.clone(), pairs.name.clone()], 100)
        .await
        .unwrap();
    let seen: Vec<(String, ChangeOp, Key)> = changes
        .iter()
        .map(|c| {
            let types = if c.table == orders.name.to_string() {
                orders.key_types()
            } else {
                pairs.key_types()
            };
            (
                c.table.clone(),
                c.op,
                Key::from_captured(&types, &c.key).unwrap(),
            )
        })
        .collect();
    let o = |op, id| {
        let table = "Sales.Customer \"Orders\" ü".to_owned();
        (table, op, key(&[Value::Int(id)]))
    };
    let p = |op, m, d| {
        let date = Value::Date(NaiveDate::from_ymd_opt(2024, m, d).unwrap());
        ("public.pairs".to_owned(), op, key(&[text("x"), date]))
    };
    assert_eq!(
        seen,
        vec![
            o(ChangeOp::Insert, 1),
            o(ChangeOp::Update, 1),
            o(ChangeOp::Delete, 1),
            o(ChangeOp::Insert, 2),
            o(ChangeOp::Delete, 2),
            p(ChangeOp::Insert, 2, 29),
            p(ChangeOp::Delete, 2, 29),
            p(ChangeOp::Insert, 3, 1),
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn keys_of_every_type_are_captured_exactly() {
    // Decimal and bytes keys travel as text so no digit is lost.
    let db = TestDb::with(
        "create table k (d numeric, by bytea, tz timestamptz, u uuid, b boolean, f float8,
                         primary key (d, by, tz, u, b, f));",
    )
    .await;
    let connector = db.connector().await;
    let [table] = install_capture(&connector, ["k"]).await;
    db.exec(
        "set timezone = 'Asia/Kolkata';
         insert into k values (12345678901234567890.123456789, '\\x00ff', '2024-01-02 03:04:05.123456+00',
                               '6f1c1f5e-8a43-4d2f-9f0e-9b1d6a6a3b11', true, 0.1);",
    )
    .await;
    let changes = connector
        .read_changes(slice::from_ref(&table.name), 10)
        .await
        .unwrap();
    assert_eq!(changes.len(), 1);
    let captured = Key::from_captured(&table.key_types(), &changes[0].key).unwrap();
    assert_eq!(
        captured,
        key(&[
            Value::Decimal("12345678901234567890.123456789".into()),
            Value::Bytes(vec![0, 255]),
            Value::parse_text(DataType::TimestampTz, "2024-01-02 03:04:05.123456+00").unwrap(),
            Value::Uuid("6f1c1f5e-8a43-4d2f-9f0e-9b1d6a6a3b11".parse().unwrap()),
            Value::Bool(true),
            Value::Float(0.1),
        ])
    );
    // AND the captured key finds the row
    let rows = connector.fetch_rows(&table, &[captured]).await.unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn writes_through_a_transaction_are_not_captured_but_concurrent_ones_are() {
    let db = TestDb::with("create table t (id int primary key, v text)").await;
    let connector = db.connector().await;
    let [table] = install_capture(&connector, ["t"]).await;

    // WHEN the agent writes while a plain session writes too
    let one = key(&[Value::Int(1)]);
    let mut tx = connector.begin().await.unwrap();
    let agent = row(&[("id", Value::Int(1)), ("v", text("agent"))]);
    tx.insert(&table, &agent).await.unwrap();
    db.exec("insert into t values (2, 'app')").await;
    let agent_2 = row(&[("v", text("agent 2"))]);
    tx.update(&table, &one, &agent_2).await.unwrap();
    tx.commit().await.unwrap();
    // AND the pooled connection is reused after the transaction
    let mut tx = connector.begin().await.unwrap();
    tx.delete(&table, &one).await.unwrap();
    tx.commit().await.unwrap();
    db.exec("update t set v = 'app 2' where id = 2").await;

    // THEN only the plain session's changes were captured
    assert_eq!(
        changes(&connector, slice::from_ref(&table.name)).await,
        vec![
            (ChangeOp::Insert, json!([2])),
            (ChangeOp::Update, json!([2])),
        ]
    );
}

#[tokio::test]
async fn change_rows_are_read_per_table_and_deleted_by_identity() {
    let db =
        TestDb::with("create table a (id int primary key); create table b (id int primary key);")
            .await;
    let connector = db.connector().await;
    let [a, b] = install_capture(&connector, ["a", "b"]).await;
    db.exec(
        "
        insert into a values (1); insert into b values (1); insert into a values (2);
        insert into a values (3);",
    )
    .await;
    let read = |table: &TableSchema, limit| {
        let name = table.name.clone();
        let connector = connector.clone();
        async move { connector.read_changes(&[name], limit).await.unwrap() }
    };

    // Only table a's rows, in seq order, up to the limit
    let first_two = read(&a, 2).await;
    assert_eq!(
        first_two.iter().map(|c| c.key.clone()).collect::<Vec<_>>(),
        vec![json!([1]), json!([2])]
    );
    assert!(first_two.iter().all(|c| c.table == "public.a"));
    let all_a = read(&a, 10).await;
    assert_eq!(all_a.len(), 3);
    assert_eq!(
        connector
            .count_changes(&[a.name.clone(), b.name.clone()])
            .await
            .unwrap(),
        vec![("public.a".to_owned(), 3), ("public.b".to_owned(), 1)]
    );

    // Deleting the first and third leaves exactly the second
    connector
        .delete_changes(&[all_a[0].seq, all_a[2].seq])
        .await
        .unwrap();
    assert_eq!(read(&a, 10).await, vec![all_a[1].clone()]);
    assert_eq!(read(&b, 10).await.len(), 1);
    assert!(connector.read_changes(&[], 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn values_of_every_type_round_trip_and_null_in_each() {
    let db = TestDb::with(
        "
        create type mood as enum ('happy', 'sad');
        create domain positive_int as integer check (value > 0);
        create table every_type (
            id bigint generated by default as identity primary key,
            b boolean, i2 smallint, i4 integer, i8 bigint, d numeric, f8 float8, f4 real,
            t text, vc varchar(20), c char(3), by bytea, dt date, tm time, ts timestamp,
            tz timestamptz, j json, jb jsonb, u uuid, e mood, dom positive_int,
            arr integer[], iv interval);",
    )
    .await;
    let connector = db.connector().await;
    let table = describe(&connector, "every_type").await;
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let at = |h, m, s, micro| date.and_hms_micro_opt(h, m, s, micro).unwrap();
    let samples = vec![
        row(&[
            ("b", Value::Bool(true)),
            ("i2", Value::Int(-32768)),
            ("i4", Value::Int(2_147_483_647)),
            ("i8", Value::Int(i64::MIN)),
            ("d", Value::Decimal("-12345678901234567890.000123".into())),
            ("f8", Value::Float(0.1)),
            ("f4", Value::Float(1.5)),
            ("t", text("Grüße 🎉 'q' \\ \"x\" $$")),
            ("vc", text("abc")),
            ("c", text("ab")),
            ("by", Value::Bytes(vec![0, 255, 10])),
            ("dt", Value::Date(date)),
            (
                "tm",
                Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 1, 5).unwrap()),
            ),
            ("ts", Value::Timestamp(at(1, 2, 3, 456_789))),
            ("tz", Value::TimestampTz(at(23, 0, 0, 1).and_utc())),
            ("j", Value::Json(json!({"a": [1, "b"], "n": null}))),
            ("jb", Value::Json(json!([{"ü": 1.5}, true]))),
            ("u", Value::Uuid(uuid::Uuid::new_v4())),
            ("e", text("sad")),
            ("dom", Value::Int(5)),
            ("arr", text("{1,2,3}")),
            ("iv", text("1 day 02:00:00")),
        ]),
        row(&[
            ("f8", Value::Float(-1.5e300)),
            ("f4", Value::Float(f64::INFINITY)),
            ("d", Value::Decimal("0.000".into())),
            ("t", text("")),
            ("by", Value::Bytes(Vec::new())),
            ("jb", Value::Json(json!("just a string"))),
        ]),
    ];
    let mut tx = connector.begin().await.unwrap();
    let mut keys = Vec::new();
    for sample in &samples {
        keys.push(tx.insert(&table, sample).await.unwrap());
    }
    // Every column NULL (the key generated)
    let nulls: Row = table
        .columns
        .iter()
        .filter(|c| c.name != "id")
        .map(|c| (c.name.clone(), Value::Null))
        .collect();
    keys.push(tx.insert(&table, &nulls).await.unwrap());
    tx.commit().await.unwrap();

    let rows = connector.fetch_rows(&table, &keys).await.unwrap();
    assert_eq!(rows.len(), 3);
    let by_key: BTreeMap<String, &Row> = rows
        .iter()
        .map(|r| (table.key_of(r).unwrap().encode(), r))
        .collect();
    for (sample, key) in samples.iter().chain([&nulls]).zip(&keys) {
        let read = by_key[&key.encode()];
        assert_eq!(read.len(), table.columns.len(), "every column is read");
        for column in &table.columns {
            let expected = sample.get(&column.name).cloned().unwrap_or(Value::Null);
            if column.name == "id" {
                assert_eq!(Some(&read["id"]), key.0.first());
                continue;
            }
            assert_eq!(read[&column.name], expected, "column {}", column.name);
        }
    }
}

#[tokio::test]
async fn values_convert_between_bools_and_integers() {
    let db = TestDb::with("create table t (id int primary key, flag boolean, n int, m int)").await;
    let connector = db.connector().await;
    let table = describe(&connector, "t").await;
    let one = key(&[Value::Int(1)]);
    let mut tx = connector.begin().await.unwrap();
    let converted = row(&[
        ("id", Value::Decimal("1".into())),
        ("flag", Value::Int(1)),
        ("n", Value::Bool(true)),
        ("m", Value::Float(7.0)),
    ]);
    tx.insert(&table, &converted).await.unwrap();
    let not_a_bool = row(&[("flag", Value::Int(2))]);
    let err = tx.update(&table, &one, &not_a_bool).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data);
    tx.commit().await.unwrap();
    assert_eq!(
        connector.fetch_rows(&table, &[one]).await.unwrap(),
        vec![row(&[
            ("id", Value::Int(1)),
            ("flag", Value::Bool(true)),
            ("n", Value::Int(1)),
            ("m", Value::Int(7)),
        ])]
    );
}

#[tokio::test]
async fn insert_returns_generated_or_given_keys() {
    let db = TestDb::with(
        "
        create table parent (id serial primary key, name text);
        create table tag (id int generated always as identity primary key, name text,
                          twice int generated always as (length(name) * 2) stored);
        create table link (parent_id int references parent (id),
                           tag_id int references tag (id), primary key (parent_id, tag_id));
        create table uuids (id uuid primary key default gen_random_uuid());",
    )
    .await;
    let connector = db.connector().await;
    let [parent, tag, link, uuids] =
        describe_all(&connector, ["parent", "tag", "link", "uuids"]).await;
    assert!(link.key_is_references());

    let mut tx = connector.begin().await.unwrap();
    // Engine-generated keys
    let mut generated = Vec::new();
    for name in ["a", "b"] {
        let named = row(&[("name", text(name))]);
        generated.push(tx.insert(&parent, &named).await.unwrap());
    }
    assert_eq!(
        generated,
        vec![key(&[Value::Int(1)]), key(&[Value::Int(2)])]
    );
    let u = tx.insert(&uuids, &Row::new()).await.unwrap();
    assert!(matches!(u.0.as_slice(), [Value::Uuid(_)]), "{u:?}");
    // An explicit key into an identity ALWAYS column; a computed column in
    // the row is left to the engine
    let given = row(&[
        ("id", Value::Int(42)),
        ("name", text("abc")),
        ("twice", Value::Int(99)),
    ]);
    let t = tx.insert(&tag, &given).await.unwrap();
    assert_eq!(t, key(&[Value::Int(42)]));
    // A link table's key is the row's
    let linked = row(&[("parent_id", Value::Int(1)), ("tag_id", Value::Int(42))]);
    let l = tx.insert(&link, &linked).await.unwrap();
    assert_eq!(l, key(&[Value::Int(1), Value::Int(42)]));
    tx.commit().await.unwrap();

    let tags = connector.fetch_rows(&tag, &[t]).await.unwrap();
    assert_eq!(tags[0]["twice"], Value::Int(6));
    assert_eq!(connector.fetch_rows(&link, &[l]).await.unwrap().len(), 1);
    let mut tx = connector.begin().await.unwrap();
    assert_eq!(
        tx.fetch_for_update(&parent, &generated[0]).await.unwrap(),
        Some(row(&[("id", Value::Int(1)), ("name", text("a"))]))
    );
    let missing = key(&[Value::Int(99)]);
    assert_eq!(tx.fetch_for_update(&parent, &missing).await.unwrap(), None);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn update_and_delete_report_whether_the_row_existed() {
    let db = TestDb::with(
        "
        create table t (id int primary key, v text);
        create table only_key (a int, b int, primary key (a, b));
        insert into t values (1, 'x'); insert into only_key values (1, 2);",
    )
    .await;
    let connector = db.connector().await;
    let [t, only_key] = describe_all(&connector, ["t", "only_key"]).await;
    let (one, two) = (key(&[Value::Int(1)]), key(&[Value::Int(2)]));
    let one_two = key(&[Value::Int(1), Value::Int(2)]);
    let two_one = key(&[Value::Int(2), Value::Int(1)]);
    let same_values = row(&[("id", Value::Int(1)), ("v", text("x"))]);
    let y = row(&[("v", text("y"))]);
    let mut tx = connector.begin().await.unwrap();
    assert_updates(
        &mut tx,
        &[
            // The same values still count
            (&t, &one, same_values, true),
            (&t, &one, y.clone(), true),
            (&t, &two, y, false),
            (&only_key, &one_two, Row::new(), true),
            (&only_key, &two_one, Row::new(), false),
        ],
    )
    .await;
    assert!(tx.delete(&t, &one).await.unwrap());
    assert!(!tx.delete(&t, &one).await.unwrap());
    tx.commit().await.unwrap();
    assert!(connector.fetch_rows(&t, &[one]).await.unwrap().is_empty());
}

/// A database with table `item` (a generated key `id`, a text `name`),
/// captured.
async fn with_items() -> (TestDb, Arc<dyn Connector>, TableSchema) {
    let (db, connector) = TestDb::installed().await;
    db.exec("create table item (id bigint generated by default as identity primary key, name text not null)").await;
    let [item] = describe_all(&connector, ["item"]).await;
    install(&connector, slice::from_ref(&item)).await;
    (db, connector, item)
}

/// Copies of `pair`'s records with single-column keys `origins`, made on
/// the target (`copy_is_target`) or the source.
fn copies_of(
    pair: &str,
    origins: impl IntoIterator<Item = impl std::fmt::Display>,
    copy_is_target: bool,
) -> Vec<CopyOf> {
    origins
        .into_iter()
        .map(|key| CopyOf {
            pair: pair.into(),
            origin_key: format!("[{key}]"),
            copy_is_target,
        })
        .collect()
}

#[tokio::test]
async fn a_new_copy_takes_over_the_mapping_row_of_an_earlier_copy() {
    let (_db, connector, item) = with_items().await;
    new_copies_take_over_stale_pairs(&connector, &item, true).await;
}

/// A first-sync-sized batch records its mapping rows with a plain insert;
/// one stale row among them (an earlier copy of a record, gone since) has
/// the batch take it over all the same, in the same transaction.
#[tokio::test]
async fn a_large_batch_of_copies_takes_over_a_stale_mapping_row() {
    let (_db, connector, item) = with_items().await;
    let mut tx = connector.begin().await.unwrap();
    record_links(&mut tx, "items [50]=[9000]").await;
    tx.commit().await.unwrap();

    let rows: Vec<Row> = (1..=200)
        .map(|i| row(&[("name", text(&format!("item {i}")))]))
        .collect();
    let copies = copies_of("items", 1..=200, true);
    let mut tx = connector.begin().await.unwrap();
    let written = tx.insert_copies(&item, &rows, &copies).await.unwrap();
    // The transaction goes on after the savepoint was rolled back to.
    tx.record_link(&IdMapRow {
        pair: "other".into(),
        source_key: "[1]".into(),
        target_key: "[2]".into(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let id_map = connector.read_id_map().await.unwrap();
    assert_eq!(id_map.len(), 201, "{id_map:?}");
    let of_50 = id_map
        .iter()
        .find(|l| l.pair == "items" && l.source_key == "[50]")
        .expect("the stale row taken over");
    assert_eq!(
        of_50.target_key,
        item.key_of(&written[49]).unwrap().encode()
    );
    assert_eq!(connector.scan(&item, None, 1000).await.unwrap().len(), 200);
}

#[tokio::test]
async fn links_are_recorded_replaced_forgotten_and_read() {
    let (_db, connector) = TestDb::installed().await;
    let mut tx = connector.begin().await.unwrap();
    record_links(&mut tx, "p [1]=[10], p [2]=[20], q [1]=[10]").await;
    // Same source key: replaces; same target key: replaces
    record_links(&mut tx, "p [1]=[11], p [3]=[20]").await;
    tx.commit().await.unwrap();
    assert_links(&connector, "p [1]=[11], p [3]=[20], q [1]=[10]").await;

    // A rolled-back link is not there
    record_links_then_roll_back(&connector, "p [9]=[90]").await;
    // forget_link matches the source key OR the target key, in one pair
    let mut tx = connector.begin().await.unwrap();
    tx.forget_link("p", "[1]", "[none]").await.unwrap();
    tx.forget_link("p", "[none]", "[20]").await.unwrap();
    tx.commit().await.unwrap();
    assert_links(&connector, "q [1]=[10]").await;
}

#[tokio::test]
async fn batches_write_many_rows_per_statement_as_one_by_one_would() {
    let (db, connector) = TestDb::installed().await;
    db.exec(
        "create table item (id bigint generated by default as identity primary key,
             name text not null, price numeric(10,2), at timestamptz, tags jsonb, raw bytea,
             twice int generated always as (length(name) * 2) stored);
         create table pairing (a int, b text, note text, primary key (a, b));",
    )
    .await;
    let [item, pairing] = describe_all(&connector, ["item", "pairing"]).await;
    install(&connector, &[item.clone(), pairing.clone()]).await;
    let at = NaiveDate::from_ymd_opt(2026, 11, 26)
        .unwrap()
        .and_hms_micro_opt(14, 0, 0, 123_456)
        .unwrap()
        .and_utc();
    let items: Vec<Row> = (0..300)
        .map(|i| {
            row(&[
                ("name", text(&format!("item 'n{i}' ü"))),
                ("price", Value::Decimal(format!("{i}.50"))),
                (
                    "at",
                    if i % 3 == 0 {
                        Value::Null
                    } else {
                        Value::TimestampTz(at)
                    },
                ),
                ("tags", Value::Json(json!({"i": i, "odd": i % 2 == 1}))),
                ("raw", Value::Bytes(vec![0, i as u8, 255])),
            ])
        })
        .collect();
    let copies = copies_of("items", 1000..1000 + items.len(), true);

    // Inserts: keys generated in row order, rows read back as written, the
    // key pairs recorded, and none of it captured.
    let mut tx = connector.begin().await.unwrap();
    let written = tx.insert_copies(&item, &items, &copies).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(written.len(), items.len());
    let keys: Vec<Key> = written.iter().map(|r| item.key_of(r).unwrap()).collect();
    for (i, (written, sent)) in written.iter().zip(&items).enumerate() {
        assert_eq!(
            written["id"],
            Value::Int(i as i64 + 1),
            "keys follow row order"
        );
        for (column, value) in sent {
            assert_eq!(&written[column], value, "row {i} column {column}");
        }
        assert_eq!(
            written["twice"],
            Value::Int(2 * (text_len(&sent["name"]) as i64))
        );
    }
    let fetched = connector.fetch_rows(&item, &keys).await.unwrap();
    let by_key: BTreeMap<String, Row> = fetched
        .into_iter()
        .map(|r| (item.key_of(&r).unwrap().encode(), r))
        .collect();
    for row in &written {
        assert_eq!(
            &by_key[&item.key_of(row).unwrap().encode()],
            row,
            "read back = fetched"
        );
    }
    let ids = connector.read_id_map().await.unwrap();
    assert_eq!(ids.len(), items.len());
    assert!(ids.contains(&IdMapRow {
        pair: "items".into(),
        source_key: "[1299]".into(),
        target_key: keys[299].encode(),
    }));
    assert!(
        changes(&connector, slice::from_ref(&item.name))
            .await
            .is_empty(),
        "applied writes are not captured"
    );

    // Updates: every row at once; a missing key comes back as None.
    let mut updates: Vec<(Key, Row)> = keys
        .iter()
        .map(|k| {
            (
                k.clone(),
                row(&[("name", text("renamed")), ("price", Value::Null)]),
            )
        })
        .collect();
    updates.push((
        key(&[Value::Int(99_999)]),
        row(&[("name", text("x")), ("price", Value::Null)]),
    ));
    let mut tx = connector.begin().await.unwrap();
    let locked = tx
        .fetch_many_for_update(
            &item,
            &updates.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(
        locked.len(),
        keys.len(),
        "only existing rows are locked and read"
    );
    let updated = tx.update_many(&item, &updates).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(updated.len(), updates.len());
    assert_eq!(updated.last().unwrap(), &None);
    for (k, row) in keys.iter().zip(&updated) {
        let row = row.as_ref().expect("existing rows are updated");
        assert_eq!(&item.key_of(row).unwrap(), k, "results in the order asked");
        assert_eq!(row["name"], text("renamed"));
        assert_eq!(row["twice"], Value::Int(14));
        assert_eq!(row["price"], Value::Null);
    }

    // Composite keys, a key-only update, deletes and forgotten links.
    let pairs: Vec<Row> = (0..5)
        .map(|i| {
            row(&[
                ("a", Value::Int(i)),
                ("b", text(&format!("b{i}"))),
                ("note", Value::Null),
            ])
        })
        .collect();
    let pair_copies = copies_of("pairs", 0..5, false);
    let mut tx = connector.begin().await.unwrap();
    let written = tx
        .insert_copies(&pairing, &pairs, &pair_copies)
        .await
        .unwrap();
    assert_eq!(written, pairs);
    let pair_keys: Vec<Key> = pairs.iter().map(|r| pairing.key_of(r).unwrap()).collect();
    let only_keys: Vec<(Key, Row)> = pair_keys.iter().map(|k| (k.clone(), Row::new())).collect();
    assert!(tx
        .update_many(&pairing, &only_keys)
        .await
        .unwrap()
        .iter()
        .all(Option::is_some));
    assert_eq!(tx.delete_many(&pairing, &pair_keys[..3]).await.unwrap(), 3);
    assert_eq!(tx.delete_many(&pairing, &pair_keys[..3]).await.unwrap(), 0);
    let forgotten: Vec<(String, String)> = (0..3)
        .map(|i| (pair_keys[i].encode(), format!("[{i}]")))
        .collect();
    tx.forget_links("pairs", &forgotten).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        connector
            .fetch_rows(&pairing, &pair_keys)
            .await
            .unwrap()
            .len(),
        2
    );
    let ids = connector.read_id_map().await.unwrap();
    assert_eq!(ids.iter().filter(|l| l.pair == "pairs").count(), 2);

    // A batch with one bad row fails as a data error and writes nothing.
    let mut bad = items[..3].to_vec();
    bad[1].insert("name".into(), Value::Null);
    let mut tx = connector.begin().await.unwrap();
    let err = tx
        .insert_copies(&item, &bad, &copies[..3])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    assert!(err.to_string().contains("item"), "{err}");
    tx.rollback().await.unwrap();
    let client = db.client().await;
    let count: i64 = client
        .query_one("select count(*) from item", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 300);
}

fn text_len(value: &Value) -> usize {
    match value {
        Value::Text(s) => s.chars().count(),
        other => panic!("not text: {other:?}"),
    }
}

#[tokio::test]
async fn savepoints_undo_one_record_and_a_failed_statement_blocks_commit() {
    let db = TestDb::with("create table t (id int primary key)").await;
    let connector = db.connector().await;
    let t = describe(&connector, "t").await;
    let id = |i| row(&[("id", Value::Int(i))]);

    let mut tx = connector.begin().await.unwrap();
    tx.insert(&t, &id(1)).await.unwrap();
    tx.savepoint().await.unwrap();
    let duplicate = tx.insert(&t, &id(1)).await.unwrap_err();
    assert_eq!(duplicate.kind(), ErrorKind::Data);
    tx.rollback_to_savepoint().await.unwrap();
    tx.savepoint().await.unwrap();
    tx.insert(&t, &id(2)).await.unwrap();
    tx.release_savepoint().await.unwrap();
    tx.commit().await.unwrap();

    // A failure not rolled back to the savepoint: commit refuses
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&t, &id(3)).await.unwrap();
    assert!(tx.insert(&t, &id(3)).await.is_err());
    assert!(tx.commit().await.is_err());

    let keys: Vec<Key> = (1..=3).map(|i| key(&[Value::Int(i)])).collect();
    let rows = connector.fetch_rows(&t, &keys).await.unwrap();
    let mut ids: Vec<Value> = rows.iter().map(|r| r["id"].clone()).collect();
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, vec![Value::Int(1), Value::Int(2)]);
}

#[tokio::test]
async fn a_dropped_transaction_is_rolled_back_and_its_connection_not_reused() {
    let db = TestDb::with("create table t (id int primary key)").await;
    let connector = db.connector_with(|c| c.max_connections = 1).await;
    let [t] = install_capture(&connector, ["t"]).await;
    let one = key(&[Value::Int(1)]);

    let mut tx = connector.begin().await.unwrap();
    tx.insert(&t, &row(&[("id", Value::Int(1))])).await.unwrap();
    drop(tx);

    // The only pooled connection: a fresh one, no transaction open
    let fetched = connector
        .fetch_rows(&t, slice::from_ref(&one))
        .await
        .unwrap();
    assert!(fetched.is_empty());
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&t, &row(&[("id", Value::Int(1))])).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(connector.fetch_rows(&t, &[one]).await.unwrap().len(), 1);
    // The server has no session left inside a transaction of ours
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open: i64 = client
            .query_one(
                "select count(*) from pg_stat_activity
                 where datname = $1 and state like 'idle in transaction%'",
                &[&db.name],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "a transaction stayed open");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn fetch_and_scan_by_single_and_composite_keys() {
    let db = TestDb::with(
        "
        create table single (id int primary key, v text);
        insert into single select g, 'v' || g from generate_series(1, 1200) g;
        create table composite (a text, b int, primary key (a, b));
        insert into composite values ('x', 2), ('x', 1), ('y', 1), ('a', 9), ('x', 10);",
    )
    .await;
    let connector = db.connector().await;
    let [single, composite] = describe_all(&connector, ["single", "composite"]).await;

    // More keys than one statement takes, some missing, one NULL
    let mut keys: Vec<Key> = (1..=1500).map(|i| key(&[Value::Int(i)])).collect();
    keys.push(key(&[Value::Null]));
    let rows = connector.fetch_rows(&single, &keys).await.unwrap();
    assert_eq!(rows.len(), 1200);
    let pair = |a: &str, b| key(&[text(a), Value::Int(b)]);
    let rows = connector
        .fetch_rows(&composite, &[pair("x", 1), pair("y", 2), pair("a", 9)])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);

    // Keyset pagination in key order
    assert_eq!(
        scanned_keys(&connector, &composite, 2).await,
        vec!["(a, 9)", "(x, 1)", "(x, 2)", "(x, 10)", "(y, 1)"]
    );
    let first = connector.scan(&single, None, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        vec![Value::Int(1), Value::Int(2), Value::Int(3)]
    );

    // Row counts: a small table is counted, analyzed or not
    let counted = tandem_connectors::RowCount::counted(1200);
    assert_eq!(connector.estimate_rows(&single).await.unwrap(), counted);
    db.exec("analyze single").await;
    assert_eq!(connector.estimate_rows(&single).await.unwrap(), counted);
}

#[tokio::test]
async fn errors_have_kinds_and_name_what_is_at_fault() {
    let db = TestDb::with(
        "
        create table t (id int primary key, email text unique, n int, code varchar(3),
                        note varchar(3), must text not null default 'x');
        insert into t (id, email) values (1, 'a@b');",
    )
    .await;
    let connector = db.connector().await;
    let t = describe(&connector, "t").await;
    // Every message is one line
    let check = |err: &tandem_connectors::ConnectorError, kind: ErrorKind, needles: &[&str]| {
        assert!(!err.to_string().contains('\n'), "{err}");
        assert_error(err, kind, needles);
    };

    let mut tx = connector.begin().await.unwrap();
    tx.savepoint().await.unwrap();
    let id = |i| ("id", Value::Int(i));
    let bad_rows: [(Row, ErrorKind, &[&str]); 5] = [
        (
            row(&[id(2), ("email", text("a@b"))]),
            ErrorKind::Data,
            &["public.t", "a@b"],
        ),
        (
            row(&[id(3), ("n", text("12x"))]),
            ErrorKind::Data,
            &["public.t", "column \"n\"", "\"12x\""],
        ),
        (
            row(&[id(3), ("code", text("ab")), ("note", text("abcd"))]),
            ErrorKind::Data,
            &["public.t", "column \"note\"", "\"abcd\""],
        ),
        (
            row(&[id(4), ("must", Value::Null)]),
            ErrorKind::Data,
            &["public.t", "column \"must\""],
        ),
        (
            row(&[id(5), ("nope", Value::Int(1))]),
            ErrorKind::Schema,
            &["nope", "public.t"],
        ),
    ];
    for (bad, kind, needles) in &bad_rows {
        let err = tx.insert(&t, bad).await.unwrap_err();
        check(&err, *kind, needles);
        tx.rollback_to_savepoint().await.unwrap();
    }
    tx.rollback().await.unwrap();

    // A table dropped under us
    let missing = TableSchema {
        name: TableName::new(Some("public"), "gone"),
        ..t.clone()
    };
    let err = connector
        .fetch_rows(&missing, &[key(&[Value::Int(1)])])
        .await
        .unwrap_err();
    check(&err, ErrorKind::Schema, &["public.gone"]);

    // A refused connection, with the password kept out of the message
    let refused = db
        .connect_error("postgres://postgres:hunter2@127.0.0.1:5999/postgres")
        .await;
    assert_eq!(refused.kind(), ErrorKind::Connection);
    assert_eq!(
        refused.to_string(),
        "cannot connect to PostgreSQL at 127.0.0.1:5999: connection refused"
    );
    // A database that does not exist is a configuration error
    let err = db
        .connect_error(&db.url_with(|url| url.set_path("/tandem_no_such_database")))
        .await;
    check(&err, ErrorKind::Config, &["tandem_no_such_database"]);
}

/// Waits (while waiting for changes) until the agent's LISTEN connection,
/// other than `not`, has entered `tandem.waiting`; returns its pid.
async fn wait_for_listener(
    connector: &Arc<dyn Connector>,
    client: &tokio_postgres::Client,
    not: Option<i32>,
) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pid: Option<i32> = client
            .query_opt(
                "select w.pid from tandem.waiting w join pg_stat_activity a using (pid)
                 where w.pid is distinct from $1",
                &[&not],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        if let Some(pid) = pid {
            return pid;
        }
        assert!(Instant::now() < deadline, "no LISTEN connection waiting");
        connector.wait_for_changes(Duration::from_millis(10)).await;
    }
}

/// Waits for changes with an hour-long timeout: returns well before it.
async fn wait_for_changes_returns(connector: &Arc<dyn Connector>, why: &str) {
    tokio::time::timeout(
        Duration::from_secs(30),
        connector.wait_for_changes(Duration::from_secs(3600)),
    )
    .await
    .unwrap_or_else(|_| panic!("not {why}"));
}

/// Returns once an agent has entered `tandem.waiting` (fails after 30 s).
async fn until_an_agent_waits(client: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .query_one("select count(*) from tandem.waiting", &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the agent never entered tandem.waiting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts an hour-long wait, runs `write` once the wait has begun, and
/// asserts the wait returns.
async fn woken_by(connector: &Arc<dyn Connector>, db: &TestDb, write: &str, why: &str) {
    let waiting = {
        let connector = Arc::clone(connector);
        tokio::spawn(async move { connector.wait_for_changes(Duration::from_secs(3600)).await })
    };
    // Written once the wait has entered tandem.waiting: from then on the
    // write notifies it (or the wait's own look at the change table sees it).
    until_an_agent_waits(&db.client().await).await;
    assert!(!waiting.is_finished(), "the wait returned before {why}");
    db.exec(write).await;
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .unwrap_or_else(|_| panic!("not {why}"))
        .unwrap();
}

#[tokio::test]
async fn wait_for_changes_wakes_on_notify_and_never_outwaits_the_poll_interval() {
    let db = TestDb::with("create table t (id int primary key)").await;
    let client = db.client().await;
    let connector = db
        .connector_with(|c| c.poll_interval = Duration::from_secs(3600))
        .await;
    let [t] = install_capture(&connector, ["t"]).await;

    // The LISTEN connection opens on the first wait and enters itself
    let first = wait_for_listener(&connector, &client, None).await;

    // A captured change wakes a waiter long before its hour-long timeout
    woken_by(
        &connector,
        &db,
        "insert into t values (1)",
        "woken by the notification",
    )
    .await;

    // The LISTEN connection comes back by itself when the server drops it
    client
        .execute("select pg_terminate_backend($1)", &[&first])
        .await
        .unwrap();
    let second = wait_for_listener(&connector, &client, Some(first)).await;
    assert_ne!(first, second);
    // Back, it wakes waiters once (changes made meanwhile sent nothing):
    // a short wait takes that wake-up.
    connector.wait_for_changes(Duration::from_millis(10)).await;
    // Reading the change takes the agent out: it is busy
    connector
        .read_changes(slice::from_ref(&t.name), 10)
        .await
        .unwrap();
    let waiting: i64 = client
        .query_one("select count(*) from tandem.waiting", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "an agent that reads is not waiting");
    woken_by(
        &connector,
        &db,
        "insert into t values (2)",
        "woken after reconnecting",
    )
    .await;

    // A change committed while the agent was busy sent no notification:
    // the next wait finds it and returns at once
    connector
        .read_changes(slice::from_ref(&t.name), 10)
        .await
        .unwrap();
    db.exec("insert into t values (3)").await;
    wait_for_changes_returns(&connector, "returning for a change made while busy").await;

    // Without notifications, the poll interval bounds the wait
    let polling = db
        .connector_with(|c| c.poll_interval = Duration::from_millis(50))
        .await;
    wait_for_changes_returns(&polling, "bounded by the poll interval").await;
}

/// The `tandem_changes` notifications received before a marker notification
/// sent by `writer` after its writes (notifications of one session arrive in
/// commit order).
async fn notified(
    writer: &tokio_postgres::Client,
    received: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> usize {
    writer.batch_execute("notify tandem_marker").await.unwrap();
    let mut tandem = 0;
    loop {
        let channel = tokio::time::timeout(Duration::from_secs(30), received.recv())
            .await
            .expect("the marker arrives")
            .expect("the listener is open");
        if channel == "tandem_marker" {
            return tandem;
        }
        assert_eq!(channel, "tandem_changes");
        tandem += 1;
    }
}

#[tokio::test]
async fn writers_notify_only_while_an_agent_waits() {
    let db = TestDb::with("create table t (id int primary key)").await;
    let connector = db.connector().await;
    let [t] = install_capture(&connector, ["t"]).await;
    // Our own listener counts the notifications the writers send.
    let (listener, mut connection) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (sent, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = sent.send(n.channel().to_owned());
            }
        }
    });
    listener
        .batch_execute("listen tandem_changes")
        .await
        .unwrap();
    listener
        .batch_execute("listen tandem_marker")
        .await
        .unwrap();
    let writer = db.client().await;

    // Nobody waits: writes send nothing
    writer
        .batch_execute("insert into t values (1); insert into t values (2)")
        .await
        .unwrap();
    assert_eq!(
        notified(&writer, &mut received).await,
        0,
        "notified with nobody waiting"
    );

    // An agent that read them waits: one notification per transaction, not
    // per row
    connector
        .read_changes(slice::from_ref(&t.name), 100)
        .await
        .unwrap();
    let waiting = {
        let connector = Arc::clone(&connector);
        tokio::spawn(async move { connector.wait_for_changes(Duration::from_secs(3600)).await })
    };
    until_an_agent_waits(&writer).await;
    writer
        .batch_execute("begin; insert into t values (3); update t set id = 4 where id = 3; insert into t values (5); commit")
        .await
        .unwrap();
    assert_eq!(
        notified(&writer, &mut received).await,
        1,
        "one notification per transaction"
    );
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the agent was woken")
        .unwrap();

    // Once the agent reads, it is busy: writes send nothing again, and its
    // changes are all there
    let read = connector
        .read_changes(slice::from_ref(&t.name), 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 6, "{read:?}");
    writer
        .batch_execute("insert into t values (6)")
        .await
        .unwrap();
    assert_eq!(
        notified(&writer, &mut received).await,
        0,
        "notified a busy agent"
    );
}

#[tokio::test]
async fn entries_of_agents_gone_are_cleared_when_listening_starts() {
    let db = TestDb::with("create table t (id int primary key)").await;
    let connector = db
        .connector_with(|c| c.poll_interval = Duration::from_millis(20))
        .await;
    install_capture(&connector, ["t"]).await;
    let client = db.client().await;
    // A pid no backend has (pids are positive and below 2^22 on Linux).
    client
        .execute("insert into tandem.waiting (pid) values (-7)", &[])
        .await
        .unwrap();
    let pid = wait_for_listener(&connector, &client, None).await;
    let pids: Vec<i32> = client
        .query("select pid from tandem.waiting order by pid", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pids, vec![pid], "the entry of an agent gone stays");
}

#[tokio::test]
async fn table_names_default_to_public_and_split_at_the_first_dot() {
    let db = TestDb::create().await;
    let connector = db.connector().await;
    assert_eq!(connector.engine(), Engine::Postgres);
    for (configured, schema, name) in [
        ("orders", "public", "orders"),
        ("Sales.Orders", "Sales", "Orders"),
        ("a.b.c", "a", "b.c"),
    ] {
        assert_eq!(
            connector.table_name(configured),
            TableName::new(Some(schema), name)
        );
    }
}

#[tokio::test]
async fn rows_are_found_by_any_columns() {
    let db = TestDb::with(
        "CREATE TABLE companies (id SERIAL PRIMARY KEY, name TEXT, founded DATE);
         INSERT INTO companies (name, founded) VALUES ('Acme', '1990-01-01'), ('Acme', '2001-02-03'), ('Initech', '1990-01-01')",
    )
    .await;
    let connector = db.connector().await;
    let schema = describe(&connector, "companies").await;
    let columns = ["name".to_owned(), "founded".to_owned()];
    let founded = Value::Date(chrono::NaiveDate::from_ymd_opt(2001, 2, 3).unwrap());
    let found = connector
        .find_rows(&schema, &columns, &[text("Acme"), founded.clone()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["founded"], founded);
    assert_eq!(
        connector
            .find_rows(&schema, &columns[..1], &[text("Acme")])
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(connector
        .find_rows(&schema, &columns[..1], &[Value::Null])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_mapping_table_gets_statistics_as_copies_pile_up() {
    // GIVEN a table copied into in batches, and no autovacuum to rely on.
    let (db, connector) = TestDb::installed().await;
    db.exec(
        "create table item (id bigint generated by default as identity primary key, name text)",
    )
    .await;
    let [item] = describe_all(&connector, ["item"]).await;
    install(&connector, slice::from_ref(&item)).await;
    let client = db.client().await;
    client
        .batch_execute("alter table tandem.id_map set (autovacuum_enabled = false)")
        .await
        .unwrap();
    let analyzed = || async {
        client
            .query_one(
                "select reltuples::bigint from pg_class where oid = 'tandem.id_map'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert!(analyzed().await <= 0, "a new table has no statistics");

    // WHEN 12 batches of 1,000 copies are recorded.
    for batch in 0..12 {
        let rows: Vec<Row> = (0..1000)
            .map(|i| row(&[("name", text(&format!("n{batch}-{i}")))]))
            .collect();
        let copies = copies_of("items", batch * 1000..(batch + 1) * 1000, true);
        let mut tx = connector.begin().await.unwrap();
        tx.insert_copies(&item, &rows, &copies).await.unwrap();
        tx.commit().await.unwrap();
    }

    // THEN the table was analyzed once it held 10,000 of them, and the
    // planner reads a batch's key pairs through the key indexes, not the
    // whole pair.
    let tuples = analyzed().await;
    assert!((9_000..=12_000).contains(&tuples), "reltuples {tuples}");
    let plan: Vec<String> = client
        .query(
            "explain delete from tandem.id_map where pair = 'items'
             and source_key = any(array(select '[' || g || ']' from generate_series(1, 1000) g))",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("id_map_pkey")),
        "{}",
        plan.join("\n")
    );
    assert_eq!(connector.read_id_map().await.unwrap().len(), 12_000);
}

#[tokio::test]
async fn the_catalog_lists_the_tables_and_what_each_column_can_hold() {
    // GIVEN tables in two schemas, with lengths, widths, digits and defaults
    let db = TestDb::with(
        r#"
        create schema "Sales";
        create table "Sales".order_line (id serial primary key);
        create table customer (
            id bigint generated by default as identity primary key,
            code varchar(12) not null default 'new',
            name text not null,
            rank smallint,
            visits integer default 0,
            credit numeric(12, 2),
            loose numeric,
            letter char(1)
        );
        "#,
    )
    .await;
    let connector = db.connector().await;
    let [customer] = install_capture(&connector, ["customer"]).await;

    // WHEN the tables are listed, THEN Tandem's own are not among them
    assert_eq!(
        connector.list_tables().await.unwrap(),
        vec![
            TableName::new(Some("Sales"), "order_line"),
            TableName::new(Some("public"), "customer"),
        ]
    );
    // AND each column says what it can hold, and whether it has a default
    let column = |name: &str| customer.column(name).unwrap().clone();
    assert_eq!(column("code").capacity.max_chars, Some(12));
    assert_eq!(column("code").capacity.charset, Some(Charset::Unicode));
    assert!(column("code").has_default && !column("name").has_default);
    assert!(
        !column("id").has_default,
        "a generated key is not a default"
    );
    assert_eq!(column("name").capacity.max_chars, None);
    assert_eq!(column("letter").capacity.max_chars, Some(1));
    assert_eq!(column("rank").capacity.int_range, Some((-32768, 32767)));
    assert_eq!(
        column("visits").capacity.int_range,
        Some((i32::MIN.into(), i32::MAX.into()))
    );
    assert_eq!(column("credit").capacity.digits, Some((12, 2)));
    assert_eq!(column("loose").capacity.digits, None);
}
