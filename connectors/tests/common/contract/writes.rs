//! The agent's transaction: rows written, read, locked and undone.

use std::slice;

use chrono::NaiveDate;
use serde_json::json;
use tandem_connectors::{ChangeOp, ErrorKind, Key, Row, RowCount, Value};

use crate::common::*;

/// GIVEN a table keyed by a generated integer, one keyed by a generated
/// UUID and a link table keyed by its references, WHEN the agent inserts
/// rows without keys, with a NULL key (where
/// the engine generates one for it), with a key of its own and a link row
/// with its key (given as text), THEN the keys are the engine's, the given
/// one kept, the link's the row's as stored, and nothing of it is captured.
pub async fn insert_returns_generated_or_given_keys<S: Server>() {
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE person (id {key}, name {text});
         CREATE TABLE tag (id {uuid_key}, label {text});
         CREATE TABLE person_tag (person INT, tag {uuid}, PRIMARY KEY (person, tag),
            FOREIGN KEY (person) REFERENCES person (id), FOREIGN KEY (tag) REFERENCES tag (id))",
        key = S::GENERATED_KEY,
        uuid_key = S::GENERATED_UUID_KEY,
        uuid = S::UUID,
        text = S::TEXT,
    ))
    .await;
    let connector = db.connector().await;
    let [person, tag, link] = describe_all(&connector, ["person", "tag", "person_tag"]).await;
    install(&connector, slice::from_ref(&person)).await;
    assert!(person.key_is_generated());
    assert!(tag.key_is_generated());
    assert!(link.key_is_references());

    let mut tx = connector.begin().await.unwrap();
    let mut people = Vec::new();
    let mut null_key = row(&[("name", text("b"))]);
    if S::A_NULL_KEY_IS_GENERATED {
        null_key.insert("id".into(), Value::Null);
    }
    for person_row in [
        row(&[("name", text("a"))]),
        null_key,
        row(&[("id", Value::Int(10)), ("name", text("c"))]),
    ] {
        people.push(tx.insert(&person, &person_row).await.unwrap());
    }
    let labelled = row(&[("label", text("x"))]);
    let tag_key = tx.insert(&tag, &labelled).await.unwrap();
    let unlabelled = tx.insert(&tag, &Row::new()).await.unwrap();
    let tagged = row(&[("person", text(" 2")), ("tag", tag_key.0[0].clone())]);
    let link_key = tx.insert(&link, &tagged).await.unwrap();
    // AND fetch_for_update finds a row by its generated key (or nothing)
    assert_eq!(
        tx.fetch_for_update(&person, &people[0]).await.unwrap(),
        Some(row(&[("id", Value::Int(1)), ("name", text("a"))]))
    );
    let missing = key(&[Value::Int(99)]);
    assert_eq!(tx.fetch_for_update(&person, &missing).await.unwrap(), None);
    tx.commit().await.unwrap();

    assert_eq!(
        people,
        vec![
            key(&[Value::Int(1)]),
            key(&[Value::Int(2)]),
            key(&[Value::Int(10)])
        ]
    );
    assert!(matches!(tag_key.0[0], Value::Uuid(_)), "{tag_key:?}");
    assert!(matches!(unlabelled.0[0], Value::Uuid(_)), "{unlabelled:?}");
    assert_ne!(unlabelled, tag_key);
    assert_eq!(link_key, key(&[Value::Int(2), tag_key.0[0].clone()]));
    let rows = connector
        .fetch_rows(&tag, slice::from_ref(&tag_key))
        .await
        .unwrap();
    assert_eq!(rows[0]["label"], text("x"));
    let links = connector.fetch_rows(&link, &[link_key]).await.unwrap();
    assert_eq!(links.len(), 1);
    // AND nothing the agent wrote was captured; an application's explicit
    // key is
    assert!(changes(&connector, slice::from_ref(&person.name))
        .await
        .is_empty());
    db.exec(&S::with_explicit_keys(
        "person",
        "INSERT INTO person (id, name) VALUES (20, 'd')",
    ))
    .await;
    assert_eq!(
        changes(&connector, slice::from_ref(&person.name)).await,
        vec![(ChangeOp::Insert, json!([20]))]
    );
}

/// GIVEN a row, and a row of a table that is all key, THEN updates and
/// deletes say whether the row existed (the same values still count), a
/// savepoint undoes only what came after it (a failed statement
/// included), and a rolled back transaction leaves nothing.
pub async fn updates_and_deletes_say_whether_the_row_existed_and_savepoints_undo<S: Server>() {
    let db = TestDb::<S>::with(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT);
         CREATE TABLE only_key (a INT, b INT, PRIMARY KEY (a, b));
         INSERT INTO t VALUES (1, 10); INSERT INTO only_key VALUES (1, 2)",
    )
    .await;
    let connector = db.connector().await;
    let [t, only_key] = describe_all(&connector, ["t", "only_key"]).await;
    let (one, missing) = (key(&[Value::Int(1)]), key(&[Value::Int(9)]));
    let one_two = key(&[Value::Int(1), Value::Int(2)]);
    let two_one = key(&[Value::Int(2), Value::Int(1)]);
    let id = |i| row(&[("id", Value::Int(i))]);

    let mut tx = connector.begin().await.unwrap();
    let locked = tx.fetch_for_update(&t, &one).await.unwrap().unwrap();
    assert_eq!(locked["v"], Value::Int(10));
    assert_eq!(tx.fetch_for_update(&t, &missing).await.unwrap(), None);
    assert_updates(
        &mut tx,
        &[
            (&t, &one, row(&[("v", Value::Int(10))]), true),
            (&t, &one, id(1), true),
            (&t, &missing, row(&[("v", Value::Int(1))]), false),
            (&only_key, &one_two, Row::new(), true),
            (&only_key, &two_one, Row::new(), false),
        ],
    )
    .await;
    tx.savepoint().await.unwrap();
    tx.insert(&t, &id(2)).await.unwrap();
    let duplicate = tx.insert(&t, &id(1)).await.unwrap_err();
    assert_eq!(duplicate.kind(), ErrorKind::Data, "{duplicate}");
    tx.rollback_to_savepoint().await.unwrap();
    tx.savepoint().await.unwrap();
    tx.insert(&t, &id(3)).await.unwrap();
    tx.release_savepoint().await.unwrap();
    assert!(tx.delete(&t, &one).await.unwrap());
    assert!(!tx.delete(&t, &one).await.unwrap());
    tx.commit().await.unwrap();

    assert_eq!(
        connector.scan(&t, None, 10).await.unwrap(),
        vec![row(&[("id", Value::Int(3)), ("v", Value::Null)])]
    );

    let mut tx = connector.begin().await.unwrap();
    tx.insert(&t, &id(4)).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(connector.scan(&t, None, 10).await.unwrap().len(), 1);
}

/// GIVEN a row changed by an agent's transaction that is then dropped,
/// THEN an application can soon write the row, the agent's change is lost,
/// and the one pooled connection takes a new transaction.
pub async fn a_dropped_transaction_releases_its_locks<S: Server>() {
    let db = TestDb::<S>::with(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0)",
    )
    .await;
    let connector = db.connector_with(|c| c.max_connections = 1).await;
    let t = describe(&connector, "t").await;
    let one = key(&[Value::Int(1)]);
    let mut tx = connector.begin().await.unwrap();
    tx.update(&t, &one, &row(&[("v", Value::Int(5))]))
        .await
        .unwrap();
    drop(tx);

    let update = format!("{}; UPDATE t SET v = v + 1 WHERE id = 1", S::LOCK_TIMEOUT);
    eventually("the dropped transaction to end", || db.try_exec(&update)).await;
    let rows = connector.scan(&t, None, 10).await.unwrap();
    assert_eq!(rows[0]["v"], Value::Int(1));

    let mut tx = connector.begin().await.unwrap();
    assert!(tx
        .update(&t, &one, &row(&[("v", Value::Int(7))]))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let rows = connector.fetch_rows(&t, &[one]).await.unwrap();
    assert_eq!(rows[0]["v"], Value::Int(7));
}

/// GIVEN rows inserted out of key order, under a composite key and under a
/// single one (more than one statement's worth), THEN a scan pages through
/// them in key order, every row once; a fetch by a key list finds each
/// row once (in key order, where the engine says so), whatever is missing, repeated or NULL; and a
/// small table's count is exact, with statistics or without.
pub async fn scan_pages_in_key_order_and_fetch_finds_each_row_once<S: Server>() {
    let values = |from: i64, to: i64| {
        let rows: Vec<String> = (from..=to).map(|i| format!("({i}, 'v{i}')")).collect();
        format!("INSERT INTO single VALUES {}", rows.join(", "))
    };
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE pairs (a INT, b {b}, PRIMARY KEY (a, b));
         INSERT INTO pairs VALUES (2, 'a'), (1, 'b'), (1, 'a'), (3, 'a'), (2, 'b');
         CREATE TABLE single (id INT PRIMARY KEY, v {v});
         {first}; {second}",
        b = S::varchar(5),
        v = S::varchar(10),
        // (at most 1,000 rows to an INSERT on some engines)
        first = values(1, 600),
        second = values(601, 1200),
    ))
    .await;
    let connector = db.connector().await;
    let [pairs, single] = describe_all(&connector, ["pairs", "single"]).await;

    assert_eq!(
        scanned_keys(&connector, &pairs, 2).await,
        vec!["(1, a)", "(1, b)", "(2, a)", "(2, b)", "(3, a)"]
    );
    let first = connector.scan(&single, None, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        vec![Value::Int(1), Value::Int(2), Value::Int(3)]
    );

    let pair = |a, b: &str| key(&[Value::Int(a), text(b)]);
    let found = connector
        .fetch_rows(
            &pairs,
            &[pair(3, "a"), pair(1, "b"), pair(1, "b"), pair(9, "z")],
        )
        .await
        .unwrap();
    let mut found: Vec<String> = found
        .iter()
        .map(|r| pairs.key_of(r).unwrap().to_string())
        .collect();
    if !S::FETCHES_IN_KEY_ORDER {
        found.sort();
    }
    assert_eq!(found, vec!["(1, b)", "(3, a)"]);
    let mut keys: Vec<Key> = (1..=1500).map(|i| key(&[Value::Int(i)])).collect();
    keys.push(key(&[Value::Null]));
    assert_eq!(
        connector.fetch_rows(&single, &keys).await.unwrap().len(),
        1200
    );

    assert_eq!(
        connector.estimate_rows(&pairs).await.unwrap(),
        RowCount::counted(5)
    );
    assert_eq!(
        connector.estimate_rows(&single).await.unwrap(),
        RowCount::counted(1200)
    );
    db.exec(&format!(
        "{}; {}",
        S::analyze("pairs"),
        S::analyze("single")
    ))
    .await;
    assert_eq!(connector.estimate_rows(&pairs).await.unwrap().rows, 5);
    assert_eq!(
        connector.estimate_rows(&single).await.unwrap(),
        RowCount::counted(1200)
    );
}

/// GIVEN companies that share names, countries and founding dates, THEN
/// rows are found by any columns' values, and a NULL finds nothing.
pub async fn rows_are_found_by_any_columns<S: Server>() {
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE companies (id {key}, name {name}, country CHAR(2), founded DATE);
         INSERT INTO companies (name, country, founded) VALUES ('Acme', 'GB', '1990-01-01'),
             ('Acme', 'FR', '2001-02-03'), ('Initech', 'GB', '1990-01-01')",
        key = S::GENERATED_KEY,
        name = S::varchar(20),
    ))
    .await;
    let connector = db.connector().await;
    let companies = describe(&connector, "companies").await;
    let columns = ["name", "country", "founded"].map(str::to_owned);
    let founded = Value::Date(NaiveDate::from_ymd_opt(2001, 2, 3).unwrap());
    let find = |columns: Vec<String>, values: Vec<Value>| {
        let (connector, companies) = (connector.clone(), companies.clone());
        async move {
            connector
                .find_rows(&companies, &columns, &values)
                .await
                .unwrap()
        }
    };

    let found = find(
        vec![columns[0].clone(), columns[2].clone()],
        vec![text("Acme"), founded.clone()],
    )
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["founded"], founded);
    let found = find(columns[..2].to_vec(), vec![text("Acme"), text("FR")]).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["country"], text("FR"));
    assert_eq!(
        find(columns[..1].to_vec(), vec![text("Acme")]).await.len(),
        2
    );
    assert!(find(columns[..1].to_vec(), vec![Value::Null])
        .await
        .is_empty());
}
