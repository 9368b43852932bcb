//! Copies and the mapping: rows written in batches, the key pairs
//! recorded, replaced and forgotten with them.

use std::slice;

use serde_json::json;
use tandem_connectors::{ChangeOp, Key, Row, Value};

use crate::common::*;

/// See [`new_copies_take_over_stale_pairs`], for a table of this engine.
pub async fn a_new_copy_takes_over_the_mapping_row_of_an_earlier_copy<S: Server>() {
    let (db, connector) = TestDb::<S>::installed().await;
    db.exec(&format!(
        "CREATE TABLE item (id {}, name {} NOT NULL)",
        S::GENERATED_KEY,
        S::varchar(20)
    ))
    .await;
    let [item] = describe_all(&connector, ["item"]).await;
    install(&connector, slice::from_ref(&item)).await;
    new_copies_take_over_stale_pairs(&connector, &item, S::WRITES_COPIES_IN_BATCHES).await;
}

/// GIVEN an installed database, WHEN links are recorded, some replacing
/// others by source or by target, and some forgotten by source or by
/// target, THEN the mapping holds one row per source and per target of a
/// pair, keys that differ only in case told apart, other pairs untouched,
/// and a link rolled back is not kept.
pub async fn links_are_recorded_replaced_and_forgotten<S: Server>() {
    let (_db, connector) = TestDb::<S>::installed().await;

    let mut tx = connector.begin().await.unwrap();
    record_links(
        &mut tx,
        "p [1]=[10], p [1]=[11], p [2]=[11], p [3]=[13], p [4]=[14], q [1]=[11], \
         q [5]=[15], p [\"a\"]=[20], p [\"A\"]=[21]",
    )
    .await;
    tx.forget_link("p", "[3]", "[none]").await.unwrap();
    tx.forget_link("p", "[none]", "[14]").await.unwrap();
    // (a key of another pair's only)
    tx.forget_link("p", "[5]", "[15]").await.unwrap();
    tx.commit().await.unwrap();

    assert_links(
        &connector,
        "p [\"A\"]=[21], p [\"a\"]=[20], p [2]=[11], q [1]=[11], q [5]=[15]",
    )
    .await;
    record_links_then_roll_back(&connector, "p [9]=[90]").await;
    assert_eq!(connector.read_id_map().await.unwrap().len(), 5);
}

/// GIVEN a table keyed by a generated UUID, WHEN copies are inserted in one
/// batch, THEN each comes back with its own key, in order, linked to its
/// origin, and found by that key.
pub async fn batch_inserts_return_generated_uuid_keys_in_order<S: Server>() {
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE tag (id {}, label {})",
        S::GENERATED_UUID_KEY,
        S::TEXT
    ))
    .await;
    let connector = db.connector().await;
    install(&connector, &[]).await;
    let tag = describe(&connector, "tag").await;
    let labels: Vec<Row> = (0..50)
        .map(|i| row(&[("label", text(&format!("l{i}")))]))
        .collect();
    let origins: Vec<String> = (0..50).map(|i| format!("\"o{i}\"")).collect();

    let mut tx = connector.begin().await.unwrap();
    let written = tx
        .insert_copies(&tag, &labels, &copies_of("tags", &origins, true))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(written.len(), 50);
    let links = links_of(&connector, "tags").await;
    for (i, row) in written.iter().enumerate() {
        assert_eq!(row["label"], text(&format!("l{i}")));
        let key = tag.key_of(row).unwrap();
        let link = (format!("[{}]", origins[i]), key.encode());
        assert!(links.contains(&link), "{link:?}");
        assert_eq!(
            connector.fetch_rows(&tag, &[key]).await.unwrap(),
            vec![row.clone()]
        );
    }
}

/// GIVEN an installed table, WHEN the agent inserts, updates and deletes in
/// batches while an application writes too, THEN only the application's
/// write is captured.
pub async fn batch_writes_are_not_captured<S: Server>() {
    let db = TestDb::<S>::create().await;
    let (connector, t) = super::captured_t(&db).await;

    let mut tx = connector.begin().await.unwrap();
    let rows: Vec<Row> = (0..10)
        .map(|i| row(&[("v", text(&i.to_string()))]))
        .collect();
    let written = tx
        .insert_copies(&t, &rows, &copies_of("p", 0..10, true))
        .await
        .unwrap();
    let keys: Vec<Key> = written.iter().map(|r| t.key_of(r).unwrap()).collect();
    let updates: Vec<(Key, Row)> = keys
        .iter()
        .map(|k| (k.clone(), row(&[("v", text("new"))])))
        .collect();
    tx.update_many(&t, &updates).await.unwrap();
    assert_eq!(tx.delete_many(&t, &keys[..5]).await.unwrap(), 5);
    tx.commit().await.unwrap();
    db.exec(&S::with_explicit_keys(
        "t",
        "INSERT INTO t (id, v) VALUES (100, 'app')",
    ))
    .await;

    assert_eq!(
        changes(&connector, slice::from_ref(&t.name)).await,
        vec![(ChangeOp::Insert, json!([100]))]
    );
    assert_eq!(all_rows(&connector, &t).await.len(), 6);
}

/// GIVEN rows and links, WHEN some rows are deleted in one batch (one
/// twice, one missing) and links forgotten by source or by target, THEN
/// exactly those are gone.
pub async fn delete_many_and_forget_links_take_one_batch<S: Server>() {
    let db = TestDb::<S>::with(
        "CREATE TABLE t (id INT PRIMARY KEY);
         INSERT INTO t VALUES (1), (2), (3), (4)",
    )
    .await;
    let connector = db.connector().await;
    install(&connector, &[]).await;
    let t = describe(&connector, "t").await;
    let mut tx = connector.begin().await.unwrap();
    record_links(
        &mut tx,
        "p [1]=[10], p [2]=[20], p [3]=[30], q [1]=[10], p [4]=[40]",
    )
    .await;

    let ids = |ids: &[i64]| {
        ids.iter()
            .map(|i| key(&[Value::Int(*i)]))
            .collect::<Vec<_>>()
    };
    let deleted = tx.delete_many(&t, &ids(&[3, 1, 9, 3])).await.unwrap();
    tx.forget_links(
        "p",
        &[
            ("[1]".into(), "[none]".into()),
            ("[none]".into(), "[30]".into()),
        ],
    )
    .await
    .unwrap();
    tx.forget_links("p", &[]).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(deleted, 2);
    assert_eq!(
        all_rows(&connector, &t).await,
        vec![row(&[("id", Value::Int(2))]), row(&[("id", Value::Int(4))])]
    );
    assert_links(&connector, "p [2]=[20], p [4]=[40], q [1]=[10]").await;
}
