//! Tandem's own tables in numbered upgrade steps: from nothing, or from
//! version 1, to this build's version, a second install that runs no step,
//! steps run again over what they did, and a database of a newer build
//! refused.

use std::sync::Arc;

use tandem_connectors::connector::SCHEMA_VERSION;
use tandem_connectors::{upgrade, Connector, Engine, ErrorKind, TableSchema};

use crate::common::*;

/// The table that records the installed version.
fn version_table(engine: Engine) -> &'static str {
    match engine {
        Engine::Mysql | Engine::Sqlite => "tandem_version",
        _ => "tandem.version",
    }
}

/// A new database with the table `items (id, label)` and no Tandem objects.
pub(crate) async fn items<S: Server>() -> (TestDb<S>, Arc<dyn Connector>, TableSchema) {
    let db = TestDb::<S>::with("CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(20))").await;
    let connector = db.connector().await;
    let table = describe(&connector, "items").await;
    (db, connector, table)
}

/// The version the database records.
pub(crate) async fn version(connector: &Arc<dyn Connector>) -> Option<i32> {
    connector.installation(&[]).await.unwrap().version
}

/// The keys of the change rows of `table`, in order.
pub(crate) async fn captured(connector: &Arc<dyn Connector>, table: &TableSchema) -> Vec<String> {
    changes(connector, std::slice::from_ref(&table.name))
        .await
        .into_iter()
        .map(|(_, key)| key.to_string())
        .collect()
}

/// Runs `statements` as `install-triggers` runs its script.
pub(crate) async fn run(connector: &Arc<dyn Connector>, statements: &[String]) {
    connector
        .run_script(statements)
        .await
        .unwrap_or_else(|e| panic!("{statements:#?}: {e}"));
}

pub async fn from_nothing_to_this_version<S: Server>() {
    let (db, connector, table) = items::<S>().await;
    assert_eq!(version(&connector).await, None);

    // WHEN installed on an empty database
    install(&connector, std::slice::from_ref(&table)).await;

    // THEN every step ran and the last one's number is recorded
    let installed = connector
        .installation(std::slice::from_ref(&table))
        .await
        .unwrap();
    assert_eq!(installed.version, Some(SCHEMA_VERSION));
    assert!(installed.missing_triggers.is_empty(), "{installed:?}");
    db.exec("INSERT INTO items (id, label) VALUES (1, 'a')")
        .await;
    assert_eq!(captured(&connector, &table).await, ["[1]"]);
}

pub async fn from_version_one_to_this_version_keeping_changes<S: Server>() {
    let (db, connector, table) = items::<S>().await;

    // GIVEN a database at version 1 (step 1 only) holding a change row
    run(&connector, &upgrade::script(S::ENGINE, None, 1).unwrap()).await;
    assert_eq!(version(&connector).await, Some(1));
    db.exec(&format!(
        "INSERT INTO {} (table_name, op, pk) VALUES ('{}', 'I', '[1]')",
        S::ENGINE.change_table(),
        table.name
    ))
    .await;
    let script = connector
        .install_script(std::slice::from_ref(&table))
        .await
        .unwrap();
    assert!(
        !script
            .iter()
            .any(|s| s.contains("CREATE TABLE") || s.contains("create table")),
        "step 1 ran again: {script:#?}"
    );

    // WHEN install-triggers runs
    run(&connector, &script).await;

    // THEN the database is at this build's version, the change row kept
    assert_eq!(version(&connector).await, Some(SCHEMA_VERSION));
    db.exec("INSERT INTO items (id, label) VALUES (2, 'b')")
        .await;
    assert_eq!(captured(&connector, &table).await, ["[1]", "[2]"]);
}

pub async fn a_second_install_runs_no_step<S: Server>() {
    let (db, connector, table) = items::<S>().await;
    let tables = std::slice::from_ref(&table);
    install(&connector, tables).await;
    db.exec("INSERT INTO items (id, label) VALUES (1, 'a')")
        .await;

    // WHEN installed again
    let again = connector.install_script(tables).await.unwrap();

    // THEN no step and no version write is in it, and running it changes
    // nothing that counts
    assert!(
        !again.iter().any(|s| s.contains(version_table(S::ENGINE))),
        "a step ran again: {again:#?}"
    );
    run(&connector, &again).await;
    let installed = connector.installation(tables).await.unwrap();
    assert_eq!(installed.version, Some(SCHEMA_VERSION));
    assert!(installed.missing_triggers.is_empty(), "{installed:?}");
    assert_eq!(captured(&connector, &table).await, ["[1]"]);
}

pub async fn steps_run_again_over_what_they_did_change_nothing<S: Server>() {
    let (db, connector, table) = items::<S>().await;
    let tables = std::slice::from_ref(&table);
    install(&connector, tables).await;
    db.exec("INSERT INTO items (id, label) VALUES (1, 'a')")
        .await;

    // GIVEN the steps ran but their number was not recorded (MySQL commits
    // each DDL statement by itself: a step may fail before its number is
    // written)
    db.exec(&format!("DELETE FROM {}", version_table(S::ENGINE)))
        .await;
    assert_eq!(version(&connector).await, None);

    // WHEN installed, every step runs again, over objects already there
    install(&connector, tables).await;

    // THEN nothing is lost and the version is back
    assert_eq!(version(&connector).await, Some(SCHEMA_VERSION));
    assert_eq!(captured(&connector, &table).await, ["[1]"]);
}

pub async fn a_newer_installation_is_refused<S: Server>() {
    let (db, connector, table) = items::<S>().await;
    let tables = std::slice::from_ref(&table);
    install(&connector, tables).await;
    let newer = SCHEMA_VERSION + 1;
    db.exec(&format!(
        "UPDATE {} SET version = {newer}",
        version_table(S::ENGINE)
    ))
    .await;

    // THEN what is installed says so, and no install script is made
    assert_eq!(version(&connector).await, Some(newer));
    let err = connector.install_script(tables).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Schema,
        &[
            &format!(
                "{} records schema version {newer}",
                version_table(S::ENGINE)
            ),
            "written by a newer tandem-agent",
            &format!("this build knows versions up to {SCHEMA_VERSION}"),
            "upgrade tandem-agent",
        ],
    );

    // AND an older script run late never lowers the version
    run(
        &connector,
        &upgrade::script(S::ENGINE, None, SCHEMA_VERSION).unwrap(),
    )
    .await;
    assert_eq!(version(&connector).await, Some(newer));
}
