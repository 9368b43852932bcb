//! A DBA's story: `install-triggers` adds only Tandem's objects, running it
//! again changes nothing, `--print` shows the SQL without running it, and
//! `uninstall-triggers` leaves the catalog exactly as it found it.

mod harness;

use harness::{Agent, Db, SCENARIO_PAIRS};

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
