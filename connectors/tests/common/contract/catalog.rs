//! What the connector reads of the catalog, and what it installs there.

use tandem_connectors::connector::{Installation, SCHEMA_VERSION};
use tandem_connectors::{Charset, DataType};

use super::ODD;
use crate::common::*;

/// GIVEN a parent keyed by two columns out of column order, and an
/// odd-named child with a generated key, a column name with a space, a
/// composite foreign key and one to itself, WHEN described, THEN the key
/// keeps its order, the columns theirs, the foreign keys their column
/// order, and a missing table is a schema error naming it and the
/// database.
pub async fn describe_reads_odd_names_keys_and_foreign_keys<S: Server>() {
    let odd = S::quote(ODD);
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE parent (a INT NOT NULL, b {b} NOT NULL, PRIMARY KEY (b, a));
         CREATE TABLE {odd} (
            id {key}, {first} {name} NOT NULL, pa INT, pb {b}, manager INT,
            CONSTRAINT fk_parent FOREIGN KEY (pb, pa) REFERENCES parent (b, a),
            CONSTRAINT fk_self FOREIGN KEY (manager) REFERENCES {odd} (id))",
        b = S::varchar(10),
        key = S::GENERATED_KEY,
        first = S::quote("First Name"),
        name = S::varchar(50),
    ))
    .await;
    let connector = db.connector().await;

    let [parent, child] = describe_all(&connector, ["parent", ODD]).await;

    assert_eq!(child.name, connector.table_name(ODD));
    assert_eq!(child.name.name, ODD);
    assert_eq!(parent.primary_key, vec!["b", "a"]);
    let columns: Vec<(&str, DataType, bool, bool, bool)> = column_summary(&child)
        .into_iter()
        .map(|(name, data_type, _, nullable, generated, always)| {
            (name, data_type, nullable, generated, always)
        })
        .collect();
    assert_eq!(
        columns,
        vec![
            ("id", DataType::Int, false, true, false),
            ("First Name", DataType::Text, false, false, false),
            ("pa", DataType::Int, true, false, false),
            ("pb", DataType::Text, true, false, false),
            ("manager", DataType::Int, true, false, false),
        ]
    );
    assert_eq!(child.primary_key, vec!["id"]);
    assert!(child.key_is_generated());
    let mut fks = foreign_keys(&child);
    let mut expected = vec![
        (vec!["pb", "pa"], parent.name.clone(), vec!["b", "a"]),
        (vec!["manager"], child.name.clone(), vec!["id"]),
    ];
    if !S::FOREIGN_KEYS_IN_DECLARATION_ORDER {
        fks.sort();
        expected.sort();
    }
    assert_eq!(fks, expected);

    let nope = connector.table_name("nope").to_string();
    assert_missing_table(&connector, &nope, &S::database_shown(&db.name, &db.url)).await;
}

/// GIVEN three tables (an odd-named one, one keyed by three columns, one
/// that will leave the configuration) and a trigger of the user's own,
/// WHEN capture is installed twice, THEN the second run changes nothing,
/// every table has its capture triggers and Tandem its tables; a trigger
/// dropped (or tampered with) by hand is reported and put back by the next
/// install; and uninstalling, with one table no longer configured, leaves
/// the catalog exactly as before, the user's trigger included.
pub async fn install_twice_equals_once_and_uninstall_restores_the_catalog<S: Server>() {
    let odd = S::quote(ODD);
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE {odd} (id {key}, {first} {text});
         CREATE TABLE link (a INT, b {b}, c {bytes}, PRIMARY KEY (a, b, c));
         CREATE TABLE dropped_later (id INT PRIMARY KEY)",
        key = S::GENERATED_KEY,
        first = S::quote("First Name"),
        text = S::TEXT,
        b = S::varchar(20),
        bytes = S::BYTES,
    ))
    .await;
    // (its own batch: some engines want a trigger's definition alone)
    db.exec(S::USER_TRIGGER).await;
    let connector = db.connector().await;
    let all = describe_all(&connector, [ODD, "link", "dropped_later"]).await;
    let (odd_table, link, still_configured) = (&all[0], &all[1], &all[..2]);

    let before = db.catalog().await;
    assert_eq!(
        connector.installation(&all).await.unwrap(),
        Installation {
            version: None,
            missing_triggers: all.iter().map(|t| t.name.clone()).collect()
        }
    );

    install(&connector, &all).await;
    let once = db.catalog().await;
    install(&connector, &all).await;
    let twice = db.catalog().await;

    assert_ne!(before, once);
    assert_eq!(once, twice);
    let triggers = once.iter().filter(|l| S::is_capture_trigger(l)).count();
    assert_eq!(
        triggers,
        S::CAPTURE_TRIGGERS_PER_TABLE * all.len(),
        "{once:#?}"
    );
    for needed in S::installed_objects() {
        assert!(once.contains(&needed), "{needed} missing from {once:#?}");
    }
    let installed = connector.installation(&all).await.unwrap();
    assert_eq!(installed.version, Some(SCHEMA_VERSION));
    assert!(installed.missing_triggers.is_empty(), "{installed:?}");

    // A trigger dropped by hand is reported, and so is one tampered with
    db.exec(&S::drop_capture_trigger("link")).await;
    assert_eq!(
        connector.installation(&all).await.unwrap().missing_triggers,
        vec![link.name.clone()]
    );
    if let Some(tamper) = S::tamper_with_capture_trigger(ODD) {
        db.exec(&tamper).await;
        assert_eq!(
            connector.installation(&all).await.unwrap().missing_triggers,
            vec![odd_table.name.clone(), link.name.clone()]
        );
    }
    // AND installing again puts everything back as it was
    install(&connector, &all).await;
    assert_eq!(db.catalog().await, once);
    let repaired = connector.installation(&all).await.unwrap();
    assert!(repaired.missing_triggers.is_empty(), "{repaired:?}");

    // WHEN a change is captured, and capture uninstalled with one table
    // no longer configured
    db.exec(&format!(
        "INSERT INTO link VALUES (1, 'x', {})",
        S::bytes(&[0])
    ))
    .await;
    assert_eq!(
        changes(&connector, std::slice::from_ref(&link.name))
            .await
            .len(),
        1
    );
    uninstall(&connector, still_configured).await;

    assert_eq!(db.catalog().await, before);
    assert_eq!(connector.installation(&all).await.unwrap().version, None);
    // AND uninstalling again is harmless
    uninstall(&connector, still_configured).await;
    assert_eq!(db.catalog().await, before);
}

/// GIVEN two tables, one with a default, a bounded and an unbounded text
/// column, and capture installed, WHEN the tables are listed, THEN
/// Tandem's own are not among them; AND each column says whether it has a
/// default (a generated key has none), how long its text may be and in
/// what character set.
pub async fn the_catalog_lists_the_tables_and_which_columns_have_defaults<S: Server>() {
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE customer (id {key}, code {code} NOT NULL DEFAULT 'new',
                                name {text} NOT NULL, visits INT);
         CREATE TABLE order_line (id INT PRIMARY KEY)",
        key = S::GENERATED_KEY,
        code = S::varchar(12),
        text = S::TEXT,
    ))
    .await;
    let connector = db.connector().await;
    let [customer, order_line] = install_capture(&connector, ["customer", "order_line"]).await;

    assert_eq!(
        connector.list_tables().await.unwrap(),
        vec![customer.name.clone(), order_line.name.clone()]
    );
    let column = |name: &str| customer.column(name).unwrap().clone();
    assert!(column("code").has_default && !column("name").has_default);
    assert!(
        !column("id").has_default,
        "a generated key is not a default"
    );
    let bound = S::ENFORCES_WIDTHS.then_some(12);
    assert_eq!(column("code").capacity.max_chars, bound);
    assert_eq!(column("name").capacity.max_chars, None);
    assert_eq!(column("code").capacity.charset, Some(Charset::Unicode));
    assert_eq!(column("name").capacity.charset, Some(Charset::Unicode));
    assert_eq!(column("visits").capacity.charset, None);
}
