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

/// Values that columns of the same names take on every SQL engine: `i`
/// (64-bit integer), `f` and `d` (floats), `tx` (long text), `b` and `bl`
/// (bytes, `bl` empty), `dt` (date), `tm` (time, microseconds), `ts`
/// (timestamp), `tz` (instant) and `uu` (UUID). An engine's sample row
/// starts from these.
pub fn portable_samples() -> Row {
    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let time = |h, m, s, micro| chrono::NaiveTime::from_hms_micro_opt(h, m, s, micro).unwrap();
    row(&[
        ("i", Value::Int(i64::MIN)),
        ("f", Value::Float(0.1)),
        ("d", Value::Float(-1.5e300)),
        ("tx", text("long\ntext")),
        ("b", Value::Bytes(vec![0, 255, 10, 39, 92])),
        ("bl", Value::Bytes(vec![])),
        ("dt", Value::Date(date(2024, 2, 29))),
        ("tm", Value::Time(time(23, 59, 1, 5))),
        (
            "ts",
            Value::Timestamp(date(1999, 12, 31).and_time(time(1, 2, 3, 456_789))),
        ),
        (
            "tz",
            Value::TimestampTz(date(2030, 1, 1).and_time(time(0, 0, 0, 123_456)).and_utc()),
        ),
        ("uu", Value::Uuid(uuid::Uuid::new_v4())),
    ])
}
