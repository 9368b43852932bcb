//! Capture: what applications write is recorded, in order, once; what the
//! agent writes is not.

use std::slice;

use chrono::NaiveDate;
use serde_json::json;
use tandem_connectors::{ChangeOp, Key, Value};

use super::ODD;
use crate::common::*;

/// GIVEN an odd-named table and one keyed by text and a date, WHEN an
/// application inserts, updates, changes keys and deletes, THEN each row
/// changed is one change row, a key change a delete and an insert, an
/// update of nothing nothing, and the keys decode to the rows' keys.
pub async fn captures_inserts_updates_deletes_and_key_changes<S: Server>() {
    let (odd, first) = (S::quote(ODD), S::quote("First Name"));
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE {odd} (id INT PRIMARY KEY, {first} {text});
         CREATE TABLE pairs (a {a}, b DATE, v INT, PRIMARY KEY (a, b))",
        text = S::TEXT,
        a = S::varchar(10),
    ))
    .await;
    let connector = db.connector().await;
    let [orders, pairs] = install_capture(&connector, [ODD, "pairs"]).await;

    db.exec(&format!(
        "INSERT INTO {odd} VALUES (2, 'Bob'), (1, 'Ann');
         UPDATE {odd} SET {first} = 'Anna' WHERE id = 1;
         UPDATE {odd} SET id = 3 WHERE id = 2;
         DELETE FROM {odd} WHERE id = 1;
         UPDATE {odd} SET id = 4 WHERE id = 99;
         INSERT INTO pairs VALUES ('x', '2024-02-29', 1);
         UPDATE pairs SET b = '2024-03-01' WHERE a = 'x'"
    ))
    .await;

    let read = connector
        .read_changes(&[orders.name.clone(), pairs.name.clone()], 100)
        .await
        .unwrap();
    assert!(read.windows(2).all(|w| w[0].seq < w[1].seq));
    let age = chrono::Utc::now() - read[0].captured_at;
    assert!(
        age.num_seconds().abs() < 60,
        "captured at {}",
        read[0].captured_at
    );
    let seen: Vec<(String, ChangeOp, Key)> = read
        .iter()
        .map(|c| {
            let table = if c.table == orders.name.to_string() {
                &orders
            } else {
                &pairs
            };
            let key = Key::from_captured(&table.key_types(), &c.key).unwrap();
            (c.table.clone(), c.op, key)
        })
        .collect();
    let o = |op, id| (orders.name.to_string(), op, key(&[Value::Int(id)]));
    let p = |op, m, d| {
        let date = Value::Date(NaiveDate::from_ymd_opt(2024, m, d).unwrap());
        (pairs.name.to_string(), op, key(&[text("x"), date]))
    };
    // The two rows of one INSERT come in the order the engine captures them.
    let (one, two) = if S::CAPTURES_A_STATEMENT_IN_KEY_ORDER {
        (1, 2)
    } else {
        (2, 1)
    };
    assert_eq!(
        seen,
        vec![
            o(ChangeOp::Insert, one),
            o(ChangeOp::Insert, two),
            o(ChangeOp::Update, 1),
            o(ChangeOp::Delete, 2),
            o(ChangeOp::Insert, 3),
            o(ChangeOp::Delete, 1),
            p(ChangeOp::Insert, 2, 29),
            p(ChangeOp::Delete, 2, 29),
            p(ChangeOp::Insert, 3, 1),
        ]
    );
    // AND a single-column key is captured as a JSON array of its value
    assert_eq!(read[2].key, json!([1]));
    assert_eq!(
        connector
            .count_changes(&[orders.name.clone(), pairs.name.clone()])
            .await
            .unwrap(),
        vec![(orders.name.to_string(), 6), (pairs.name.to_string(), 3)]
    );
}

/// GIVEN a table keyed by a generated key, WHEN the agent writes in its
/// transaction while an application writes too, and later again with the
/// same pooled connection, THEN only the application's writes are
/// captured.
pub async fn own_writes_are_not_captured_but_concurrent_ones_are<S: Server>() {
    let db = TestDb::<S>::create().await;
    agent_and_application_write_together(&db).await;
}

/// The body of [`own_writes_are_not_captured_but_concurrent_ones_are`], on
/// a database of the caller's (one in a mode of its own, say).
pub async fn agent_and_application_write_together<S: Server>(db: &TestDb<S>) {
    let (connector, t) = super::captured_t(db).await;

    // WHEN the agent writes in its transaction while an application writes
    let mut tx = connector.begin().await.unwrap();
    let own = tx.insert(&t, &row(&[("v", text("agent"))])).await.unwrap();
    let app = S::with_explicit_keys("t", "INSERT INTO t (id, v) VALUES (100, 'app')");
    let writer = S::start_concurrent_write(&db.url, &app).await;
    let agent2 = row(&[("v", text("agent2"))]);
    assert!(tx.update(&t, &own, &agent2).await.unwrap());
    tx.commit().await.unwrap();
    if let Some(writer) = writer {
        writer.await.unwrap();
    }
    let rows = connector
        .fetch_rows(&t, slice::from_ref(&own))
        .await
        .unwrap();
    assert_eq!(rows[0]["v"], text("agent2"));

    // AND the pooled connection is reused after the transaction
    let mut tx = connector.begin().await.unwrap();
    assert!(tx.delete(&t, &own).await.unwrap());
    tx.commit().await.unwrap();
    db.exec(&S::with_explicit_keys(
        "t",
        "INSERT INTO t (id, v) VALUES (101, 'app after')",
    ))
    .await;
    db.exec("UPDATE t SET v = 'app 2' WHERE id = 100").await;

    // THEN only the application's writes were captured
    assert_eq!(
        changes(&connector, slice::from_ref(&t.name)).await,
        vec![
            (ChangeOp::Insert, json!([100])),
            (ChangeOp::Insert, json!([101])),
            (ChangeOp::Update, json!([100])),
        ]
    );
}

/// GIVEN a pool of one connection, WHEN the agent's transactions commit,
/// roll back or are dropped unfinished, THEN the connection writes
/// unmarked again (its writes are captured), and a dropped transaction
/// leaves nothing and holds no lock.
pub async fn the_marker_never_leaks_into_the_pool<S: Server>() {
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE t (id INT PRIMARY KEY, v {})",
        S::TEXT
    ))
    .await;
    let connector = db.connector_with(|c| c.max_connections = 1).await;
    let [t] = install_capture(&connector, ["t"]).await;
    let id = |i| row(&[("id", Value::Int(i))]);
    let plain = |id: i64| vec![format!("INSERT INTO t (id) VALUES ({id})")];
    let inserted = |id: i64| (ChangeOp::Insert, json!([id]));

    // WHEN a transaction commits
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&t, &id(1)).await.unwrap();
    tx.commit().await.unwrap();
    // THEN the one pooled connection writes unmarked again
    connector.run_script(&plain(3)).await.unwrap();
    assert_eq!(
        changes(&connector, slice::from_ref(&t.name)).await,
        vec![inserted(3)]
    );

    // WHEN a transaction rolls back, or is dropped unfinished
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&t, &id(5)).await.unwrap();
    tx.rollback().await.unwrap();
    connector.run_script(&plain(6)).await.unwrap();
    let mut tx = connector.begin().await.unwrap();
    tx.insert(&t, &id(2)).await.unwrap();
    drop(tx);
    // THEN the pool gets a clean connection back
    tokio::time::timeout(Duration::from_secs(10), connector.run_script(&plain(4)))
        .await
        .expect("the pool got its connection back")
        .unwrap();
    assert_eq!(
        changes(&connector, slice::from_ref(&t.name)).await,
        vec![inserted(3), inserted(6), inserted(4)]
    );
    // AND the dropped transaction left nothing and holds no lock
    let keys = [key(&[Value::Int(1)]), key(&[Value::Int(2)])];
    assert_eq!(connector.fetch_rows(&t, &keys).await.unwrap().len(), 1);
    db.exec(&format!(
        "{}; INSERT INTO t (id) VALUES (2)",
        S::LOCK_TIMEOUT
    ))
    .await;
}

/// GIVEN changes of two tables, interleaved, WHEN one table's are read
/// with a limit and some deleted, THEN they come in order, only that
/// table's, and exactly the rows deleted are gone; once all are consumed,
/// later changes are still read, in write order.
pub async fn change_rows_are_read_per_table_and_deleted_by_identity<S: Server>() {
    let db = TestDb::<S>::with(
        "CREATE TABLE a (id INT PRIMARY KEY);
         CREATE TABLE b (id INT PRIMARY KEY)",
    )
    .await;
    let connector = db.connector().await;
    let [a, b] = install_capture(&connector, ["a", "b"]).await;
    db.exec(
        "INSERT INTO a VALUES (1); INSERT INTO b VALUES (1); INSERT INTO a VALUES (2);
         INSERT INTO a VALUES (3)",
    )
    .await;
    let both = [a.name.clone(), b.name.clone()];

    // Only table a's rows, in order, up to the limit
    let first_two = connector.read_changes(&both[..1], 2).await.unwrap();
    assert_eq!(
        first_two.iter().map(|c| c.key.clone()).collect::<Vec<_>>(),
        vec![json!([1]), json!([2])]
    );
    assert!(first_two.iter().all(|c| c.table == a.name.to_string()));
    let all_a = connector.read_changes(&both[..1], 10).await.unwrap();
    assert_eq!(all_a.len(), 3);
    assert_eq!(
        connector.count_changes(&both).await.unwrap(),
        vec![(a.name.to_string(), 3), (b.name.to_string(), 1)]
    );

    // Deleting the first and third leaves exactly the second
    connector
        .delete_changes(&[all_a[0].seq, all_a[2].seq])
        .await
        .unwrap();
    connector.delete_changes(&[]).await.unwrap();
    assert_eq!(
        connector.read_changes(&both[..1], 10).await.unwrap(),
        vec![all_a[1].clone()]
    );
    assert_eq!(
        changes(&connector, &both[1..]).await,
        vec![(ChangeOp::Insert, json!([1]))]
    );
    assert_eq!(
        connector.count_changes(&both).await.unwrap(),
        vec![(a.name.to_string(), 1), (b.name.to_string(), 1)]
    );
    assert!(connector.read_changes(&[], 10).await.unwrap().is_empty());

    // AND once every row is consumed, later changes are still read (a
    // number may be used again: its row was consumed by identity)
    let all = connector.read_changes(&both, 10).await.unwrap();
    let seqs: Vec<i64> = all.iter().map(|c| c.seq).collect();
    connector.delete_changes(&seqs).await.unwrap();
    db.exec("INSERT INTO b VALUES (2)").await;
    db.exec("INSERT INTO b VALUES (3)").await;
    let next = connector.read_changes(&both[1..], 10).await.unwrap();
    assert_eq!(next.len(), 2);
    assert!(
        next[0].seq < next[1].seq,
        "rows present are numbered in write order"
    );
}

/// What an application's case-only change of a text key leaves, once it
/// wrote one row to `table` with `'Ab'` in the text key column at
/// `text_key`, then set it to `'AB'`: an insert, a delete and an insert
/// captured, the first with the old case, the last decoding to a key that
/// finds the row (`same` compares it with the stored key as the engine
/// binds keys). Returns the stored key, for the engine's own checks.
pub async fn assert_a_case_only_key_change_was_captured(
    connector: &Arc<dyn Connector>,
    table: &TableSchema,
    text_key: usize,
    same: impl Fn(&Key, &Key) -> bool,
) -> Key {
    let stored = connector.scan(table, None, 10).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let stored_key = table.key_of(&stored[0]).unwrap();
    let read = connector
        .read_changes(slice::from_ref(&table.name), 10)
        .await
        .unwrap();
    let ops: Vec<ChangeOp> = read.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        vec![ChangeOp::Insert, ChangeOp::Delete, ChangeOp::Insert]
    );
    let captured = |i: usize| Key::from_captured(&table.key_types(), &read[i].key).unwrap();
    assert_eq!(captured(0).0[text_key], text("Ab"));
    let last = captured(2);
    assert!(same(&last, &stored_key), "{last} is not {stored_key}");
    assert_eq!(connector.fetch_rows(table, &[last]).await.unwrap(), stored);
    stored_key
}
