//! Values: what the agent writes reads back as written, in every type.

use std::collections::BTreeMap;

use tandem_connectors::{ErrorKind, Row, Value};

use crate::common::*;

/// GIVEN the engine's table of every type ([`Server::EVERY_TYPE`]), WHEN
/// the agent writes its sample rows and one of NULLs, THEN each reads back
/// as written, every column read, the key the one generated; AND a value
/// the column cannot take is a data error naming table, column and value.
pub async fn values_of_every_type_round_trip_and_null_in_each<S: Server>() {
    let db = TestDb::<S>::with(S::EVERY_TYPE).await;
    let connector = db.connector().await;
    let vals = describe(&connector, "vals").await;
    let mut samples = S::every_type_rows();
    let nulls: Row = samples[0]
        .keys()
        .map(|column| (column.clone(), Value::Null))
        .collect();
    samples.push(nulls);

    let mut tx = connector.begin().await.unwrap();
    let mut keys = Vec::new();
    for sample in &samples {
        keys.push(tx.insert(&vals, sample).await.unwrap());
    }
    tx.commit().await.unwrap();

    let rows = connector.fetch_rows(&vals, &keys).await.unwrap();
    assert_eq!(rows.len(), samples.len());
    let by_key: BTreeMap<String, &Row> = rows
        .iter()
        .map(|r| (vals.key_of(r).unwrap().encode(), r))
        .collect();
    for (sample, key) in samples.iter().zip(&keys) {
        let read = by_key[&key.encode()];
        assert_eq!(read.len(), vals.columns.len(), "every column is read");
        assert_eq!(Some(&read["id"]), key.0.first());
        for column in vals.columns.iter().filter(|c| c.name != "id") {
            let expected = sample.get(&column.name).cloned().unwrap_or(Value::Null);
            assert_eq!(read[&column.name], expected, "column {}", column.name);
        }
    }

    let mut tx = connector.begin().await.unwrap();
    let err = tx
        .insert(&vals, &row(&[("dt", text("someday"))]))
        .await
        .unwrap_err();
    assert_error(
        &err,
        ErrorKind::Data,
        &[&S::column_shown("dt"), "vals", "someday"],
    );
    tx.rollback().await.unwrap();
}
