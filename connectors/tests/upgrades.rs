//! The numbered upgrade steps of Tandem's own tables on real servers: the
//! local PostgreSQL (`TANDEM_TEST_PG_URL`) and MySQL / MariaDB
//! (`TANDEM_TEST_MYSQL_URL`), and SQLite in-process. One scenario per case,
//! run on every engine: from an empty database to this build's version,
//! from version 1 (step 1 only) to it with the change rows kept, a second
//! install that runs no step, an install over steps whose version row was
//! lost, and a database of a newer build refused.
//!
//! Each test creates its own database `tandem_t_<uuid>` (for SQLite, a file
//! in a directory of its own) and drops it when it ends, failed or not.

// This file uses a few of the shared helpers only.
#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use tandem_connectors::connector::SCHEMA_VERSION;
use tandem_connectors::{upgrade, Connector, Engine, ErrorKind, TableSchema};
use tokio_postgres::NoTls;

struct Postgres;
struct Mysql;
struct Sqlite;

async fn pg_client(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Server for Postgres {
    const ENGINE: Engine = Engine::Postgres;
    const POLL_INTERVAL: Duration = Duration::from_secs(1);

    async fn create_database(admin_url: &str, name: &str) {
        Self::execute(admin_url, &format!("create database {name}")).await;
    }

    async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
        pg_client(admin_url)
            .await
            .map_err(|e| e.to_string())?
            .batch_execute(&format!("drop database if exists {name} with (force)"))
            .await
            .map_err(|e| e.to_string())
    }

    async fn execute(url: &str, sql: &str) {
        pg_client(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn mysql_session(url: &str) -> mysql_async::Result<mysql_async::Conn> {
    mysql_async::Conn::new(mysql_async::Opts::from_url(url)?).await
}

impl Server for Mysql {
    const ENGINE: Engine = Engine::Mysql;
    const POLL_INTERVAL: Duration = Duration::from_millis(50);

    async fn create_database(admin_url: &str, name: &str) {
        let create =
            format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci");
        Self::execute(admin_url, &create).await;
    }

    async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
        let dropped: mysql_async::Result<()> = async {
            let mut admin = mysql_session(admin_url).await?;
            admin
                .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                .await?;
            admin.disconnect().await
        }
        .await;
        dropped.map_err(|e| e.to_string())
    }

    async fn execute(url: &str, sql: &str) {
        let mut conn = mysql_session(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.unwrap();
    }
}

/// The file (or directory) a `sqlite://` URL names.
fn sqlite_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("sqlite://").expect("a sqlite:// URL"))
}

impl Server for Sqlite {
    const ENGINE: Engine = Engine::Sqlite;
    const POLL_INTERVAL: Duration = Duration::from_millis(50);

    async fn create_database(admin_url: &str, name: &str) {
        let dir = sqlite_path(admin_url).join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        std::fs::File::create(dir.join("test.db")).unwrap();
    }

    async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
        std::fs::remove_dir_all(sqlite_path(admin_url).join(name)).map_err(|e| e.to_string())
    }

    fn database_url(admin_url: &str, name: &str) -> String {
        let file = sqlite_path(admin_url).join(name).join("test.db");
        format!("sqlite://{}", file.display())
    }

    async fn execute(url: &str, sql: &str) {
        let (path, sql) = (sqlite_path(url), sql.to_owned());
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(Path::new(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            conn.execute_batch(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
        .await
        .unwrap();
    }
}

/// Where an engine keeps Tandem's change rows and version row.
trait Installed: Server {
    const CHANGES: &'static str;
    const VERSION: &'static str;
}

impl Installed for Postgres {
    const CHANGES: &'static str = "tandem.changes";
    const VERSION: &'static str = "tandem.version";
}

impl Installed for Mysql {
    const CHANGES: &'static str = "tandem_changes";
    const VERSION: &'static str = "tandem_version";
}

impl Installed for Sqlite {
    const CHANGES: &'static str = "tandem_changes";
    const VERSION: &'static str = "tandem_version";
}

/// A new database with the table `items (id, label)` and no Tandem objects.
async fn items<S: Installed>() -> (TestDb<S>, Arc<dyn Connector>, TableSchema) {
    let db = TestDb::<S>::with("CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(20))").await;
    let connector = db.connector().await;
    let table = describe(&connector, "items").await;
    (db, connector, table)
}

/// The version the database records.
async fn version(connector: &Arc<dyn Connector>) -> Option<i32> {
    connector.installation(&[]).await.unwrap().version
}

/// The keys of the change rows of `table`, in order.
async fn captured(connector: &Arc<dyn Connector>, table: &TableSchema) -> Vec<String> {
    changes(connector, std::slice::from_ref(&table.name))
        .await
        .into_iter()
        .map(|(_, key)| key.to_string())
        .collect()
}

/// Runs `statements` as `install-triggers` runs its script.
async fn run(connector: &Arc<dyn Connector>, statements: &[String]) {
    connector
        .run_script(statements)
        .await
        .unwrap_or_else(|e| panic!("{statements:#?}: {e}"));
}

async fn from_nothing_to_this_version<S: Installed>() {
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

async fn from_version_one_to_this_version_keeping_changes<S: Installed>() {
    let (db, connector, table) = items::<S>().await;

    // GIVEN a database at version 1 (step 1 only) holding a change row
    run(&connector, &upgrade::script(S::ENGINE, None, 1).unwrap()).await;
    assert_eq!(version(&connector).await, Some(1));
    db.exec(&format!(
        "INSERT INTO {} (table_name, op, pk) VALUES ('{}', 'I', '[1]')",
        S::CHANGES,
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

async fn a_second_install_runs_no_step<S: Installed>() {
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
        !again.iter().any(|s| s.contains(S::VERSION)),
        "a step ran again: {again:#?}"
    );
    run(&connector, &again).await;
    let installed = connector.installation(tables).await.unwrap();
    assert_eq!(installed.version, Some(SCHEMA_VERSION));
    assert!(installed.missing_triggers.is_empty(), "{installed:?}");
    assert_eq!(captured(&connector, &table).await, ["[1]"]);
}

async fn steps_run_again_over_what_they_did_change_nothing<S: Installed>() {
    let (db, connector, table) = items::<S>().await;
    let tables = std::slice::from_ref(&table);
    install(&connector, tables).await;
    db.exec("INSERT INTO items (id, label) VALUES (1, 'a')")
        .await;

    // GIVEN the steps ran but their number was not recorded (MySQL commits
    // each DDL statement by itself: a step may fail before its number is
    // written)
    db.exec(&format!("DELETE FROM {}", S::VERSION)).await;
    assert_eq!(version(&connector).await, None);

    // WHEN installed, every step runs again, over objects already there
    install(&connector, tables).await;

    // THEN nothing is lost and the version is back
    assert_eq!(version(&connector).await, Some(SCHEMA_VERSION));
    assert_eq!(captured(&connector, &table).await, ["[1]"]);
}

async fn a_newer_installation_is_refused<S: Installed>() {
    let (db, connector, table) = items::<S>().await;
    let tables = std::slice::from_ref(&table);
    install(&connector, tables).await;
    let newer = SCHEMA_VERSION + 1;
    db.exec(&format!("UPDATE {} SET version = {newer}", S::VERSION))
        .await;

    // THEN what is installed says so, and no install script is made
    assert_eq!(version(&connector).await, Some(newer));
    let err = connector.install_script(tables).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Schema,
        &[
            &format!("{} records schema version {newer}", S::VERSION),
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

macro_rules! on_every_engine {
    ($($scenario:ident),+ $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario::<super::Postgres>().await;
            })+
        }
        mod mysql {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario::<super::Mysql>().await;
            })+
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario::<super::Sqlite>().await;
            })+
        }
    };
}

on_every_engine!(
    from_nothing_to_this_version,
    from_version_one_to_this_version_keeping_changes,
    a_second_install_runs_no_step,
    steps_run_again_over_what_they_did_change_nothing,
    a_newer_installation_is_refused,
);

/// What step 2 changed on PostgreSQL, seen in the catalog: the check on
/// `op` is gone and the waiting table is there. A writer mid-transaction
/// when the upgrade runs keeps its change.
#[tokio::test]
async fn postgres_step_2_drops_the_check_and_adds_the_waiting_table() {
    let (db, connector, table) = items::<Postgres>().await;
    let client = pg_client(&db.url).await.unwrap();
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let check = "select count(*) from pg_catalog.pg_constraint \
                 where conname = 'changes_op_check' \
                 and conrelid = 'tandem.changes'::regclass";
    let waiting = "select count(*) from pg_catalog.pg_class \
                   where relname = 'waiting' and relpersistence = 'u' \
                   and relnamespace = 'tandem'::regnamespace";
    run(
        &connector,
        &upgrade::script(Engine::Postgres, None, 1).unwrap(),
    )
    .await;
    assert_eq!((count(check).await, count(waiting).await), (1, 0));
    assert!(
        client
            .batch_execute(
                "insert into tandem.changes (table_name, op, pk) values ('x', '?', '[]')"
            )
            .await
            .is_err(),
        "version 1 checks op"
    );

    // GIVEN a writer in the middle of a transaction that captured a change
    let writer = pg_client(&db.url).await.unwrap();
    writer
        .batch_execute(
            "begin; insert into tandem.changes (table_name, op, pk) \
             values ('public.items', 'I', '[7]')",
        )
        .await
        .unwrap();

    // WHEN install-triggers upgrades, it waits for that transaction
    let script = connector
        .install_script(std::slice::from_ref(&table))
        .await
        .unwrap();
    let upgrading = {
        let connector = connector.clone();
        tokio::spawn(async move { connector.run_script(&script).await })
    };
    let blocked = format!(
        "select count(*) from pg_catalog.pg_stat_activity \
         where datname = '{}' and wait_event_type = 'Lock'",
        db.name
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client
        .query_one(&blocked, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(!upgrading.is_finished(), "the upgrade did not wait");
        assert!(
            std::time::Instant::now() < deadline,
            "the upgrade never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.batch_execute("commit").await.unwrap();
    upgrading.await.unwrap().unwrap();

    // THEN version 2's objects are in place and the change is kept
    assert_eq!((count(check).await, count(waiting).await), (0, 1));
    assert_eq!(version(&connector).await, Some(2));
    assert_eq!(captured(&connector, &table).await, ["[7]"]);
}
