//! A DBA's story: `install-triggers` adds only Tandem's objects, running it
//! again changes nothing, `--print` shows the SQL without running it, and
//! `uninstall-triggers` leaves the catalog exactly as it found it.

mod harness;

use std::time::Duration;

use harness::{eventually, Agent, Db, Engine, SCENARIO_PAIRS};

async fn create_tables(db: &Db) {
    db.exec(&format!(
        "CREATE TABLE customers (id {}, name {})",
        db.id(),
        db.text()
    ))
    .await;
    // An awkward name: spaces, quotes, mixed case and non-ASCII.
    let odd = db.q("Odd \"Name\" ü");
    let col = db.q("First Name");
    db.exec(&format!(
        "CREATE TABLE {odd} (id {}, {col} {})",
        db.id(),
        db.text()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn install_is_idempotent_and_uninstall_leaves_no_trace() {
    for (source_engine, target_engine) in SCENARIO_PAIRS {
        let source = Db::create(source_engine).await;
        let target = Db::create(target_engine).await;
        create_tables(&source).await;
        create_tables(&target).await;
        let agent = Agent::new(
            &source,
            &target,
            &[
                ("customers", "customers"),
                ("Odd \"Name\" ü", "Odd \"Name\" ü"),
            ],
            "",
        );
        let before = [source.catalog().await, target.catalog().await];

        // --print shows SQL naming the tables and changes nothing
        let printed = agent.ok(&["install-triggers", "--print"]).await;
        assert!(
            printed.contains("customers") && printed.contains("Odd"),
            "{printed}"
        );
        assert_eq!([source.catalog().await, target.catalog().await], before);

        // --side installs one side only
        agent.ok(&["install-triggers", "--side", "target"]).await;
        assert_eq!(source.catalog().await, before[0]);
        assert_ne!(target.catalog().await, before[1]);

        agent.install().await;
        let once = [source.catalog().await, target.catalog().await];
        assert_ne!(once[0], before[0], "install added nothing to the source");
        agent.install().await;
        assert_eq!(
            [source.catalog().await, target.catalog().await],
            once,
            "a second install changed the catalog"
        );

        // Capture works on the awkward table
        source
            .exec(&format!(
                "INSERT INTO {} ({}) VALUES ('x')",
                source.q("Odd \"Name\" ü"),
                source.q("First Name")
            ))
            .await;
        assert_eq!(source.pending_changes().await, 1);
        agent.ok(&["check"]).await;

        agent.ok(&["uninstall-triggers"]).await;
        assert_eq!(
            [source.catalog().await, target.catalog().await],
            before,
            "uninstall left something behind"
        );
    }
}

/// What version 1 installed on PostgreSQL for `public.customers`, over what
/// this build installs: a check on `op` (parsed again for every captured
/// row), a notification on every capture, and no `tandem.waiting`.
const POSTGRES_VERSION_1: &str = r#"
DROP TABLE tandem.waiting;
ALTER TABLE tandem.changes ADD CONSTRAINT changes_op_check CHECK (op IN ('I', 'U', 'D', 'T'));
UPDATE tandem.version SET version = 1;
CREATE OR REPLACE FUNCTION tandem."public.customers"() RETURNS trigger LANGUAGE plpgsql AS $f$
begin
    if pg_catalog.current_setting('tandem.applying', true) = 'on' then
        return null;
    end if;
    if tg_op = 'TRUNCATE' then
        insert into tandem.changes (table_name, op, pk) values ('public.customers', 'T', '[]'::jsonb);
    elsif tg_op = 'INSERT' then
        insert into tandem.changes (table_name, op, pk)
        values ('public.customers', 'I', pg_catalog.jsonb_build_array(new.id));
    elsif tg_op = 'UPDATE' then
        insert into tandem.changes (table_name, op, pk)
        values ('public.customers', 'U', pg_catalog.jsonb_build_array(new.id));
    else
        insert into tandem.changes (table_name, op, pk)
        values ('public.customers', 'D', pg_catalog.jsonb_build_array(old.id));
    end if;
    perform pg_catalog.pg_notify('tandem_changes', '');
    return null;
end $f$;
"#;

#[tokio::test(flavor = "multi_thread")]
async fn install_upgrades_version_1_in_place_and_loses_no_change() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE customers (id {}, name {})",
            db.id(),
            db.text()
        ))
        .await;
    }
    let agent = Agent::new(&source, &target, &[("customers", "customers")], "");
    agent.install().await;
    agent.once().await;
    source.exec(POSTGRES_VERSION_1).await;
    source
        .exec("INSERT INTO customers (name) VALUES ('before')")
        .await;
    assert_eq!(source.pending_changes().await, 1, "version 1 captures");

    // This build refuses to run on version 1 and says what to do
    let out = agent.output(&["run", "--once"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran on version 1: {err}");
    assert!(
        err.contains("version 1") && err.contains("install-triggers"),
        "{err}"
    );

    // A writer is mid-transaction while install-triggers runs: the upgrade
    // waits for it, and its change is kept
    let writer = source.session().await;
    writer.exec("BEGIN").await;
    writer
        .exec("INSERT INTO customers (name) VALUES ('during')")
        .await;
    let install = agent.command(&["install-triggers"]).spawn().expect("spawn");
    let blocked = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock'",
        source.name
    );
    eventually(
        "install-triggers waits for the writer",
        Duration::from_secs(60),
        || async { source.count(&blocked).await > 0 },
    )
    .await;
    writer.exec("COMMIT").await;
    let out = install.wait_with_output().await.expect("install-triggers");
    assert!(
        out.status.success(),
        "install-triggers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    source
        .exec("INSERT INTO customers (name) VALUES ('after')")
        .await;

    // Version 2 in place: no check on op, the waiting table, every change
    assert_eq!(
        source
            .value("SELECT version FROM tandem.version")
            .await
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        source
            .count("SELECT count(*) FROM pg_constraint WHERE conname = 'changes_op_check'")
            .await,
        0
    );
    assert_eq!(
        source
            .count("SELECT count(*) FROM pg_class WHERE oid = 'tandem.waiting'::regclass")
            .await,
        1
    );
    assert_eq!(source.pending_changes().await, 3);
    agent.once().await;
    assert_eq!(
        target
            .rows("SELECT name FROM customers ORDER BY id")
            .await
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["before", "during", "after"]
    );
    assert_eq!(source.pending_changes().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_older_and_newer_installations_and_install_never_downgrades() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE customers (id {}, name {})",
            db.id(),
            db.text()
        ))
        .await;
    }
    let agent = Agent::new(&source, &target, &[("customers", "customers")], "");
    agent.install().await;

    // GIVEN the source records version 1 and the target a version a newer
    // build installed
    source.exec("UPDATE tandem.version SET version = 1").await;
    target.exec("UPDATE tandem_version SET version = 3").await;

    // WHEN checked, THEN each is named with what to do
    let out = agent.output(&["check"]).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(
            "source: installed Tandem objects are version 1, this build needs 2: run \
             `tandem-agent install-triggers --config"
        ) && said.contains("to upgrade them from 1 to 2"),
        "{said}"
    );
    assert!(
        said.contains(
            "target: installed Tandem objects are version 3, written by a newer tandem-agent \
             (this build knows versions up to 2): upgrade tandem-agent"
        ),
        "{said}"
    );

    // AND install-triggers refuses before installing anything on either side
    let before = source.catalog().await;
    let out = agent.output(&["install-triggers"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "target: preparing the install script: tandem_version records schema version 3, \
             written by a newer tandem-agent"
        ),
        "{err}"
    );
    assert_eq!(source.catalog().await, before);
    assert_eq!(
        source
            .value("SELECT version FROM tandem.version")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        target
            .value("SELECT version FROM tandem_version")
            .await
            .as_deref(),
        Some("3")
    );

    // WHEN only the source is upgraded, THEN it is at this build's version
    agent.ok(&["install-triggers", "--side", "source"]).await;
    assert_eq!(
        source
            .value("SELECT version FROM tandem.version")
            .await
            .as_deref(),
        Some("2")
    );
}
