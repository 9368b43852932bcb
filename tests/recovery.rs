//! An operator's story after things went wrong outside the agent: someone
//! edited a database behind its back, or its state directory was lost.
//! `reconcile` finds every difference and `--repair` brings the sides back;
//! `rebuild-state` rebuilds the ID map from the databases, with no duplicate,
//! and is what the agent points at when it finds its state corrupt.

mod harness;

use harness::{Agent, Db, Engine};

async fn synced_items() -> (Db, Db, Agent) {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE items (id {}, label {}, qty INT)",
            db.id(),
            db.text()
        ))
        .await;
    }
    source
        .exec("INSERT INTO items (label, qty) VALUES ('a', 1), ('b', 2), ('c', 3)")
        .await;
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;
    agent.once().await;
    (source, target, agent)
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_finds_what_was_changed_behind_the_agents_back_and_repairs_it() {
    let (source, target, agent) = synced_items().await;
    assert_eq!(agent.output(&["reconcile"]).await.status.code(), Some(0));

    // GIVEN changes the capture triggers did not see (made as the agent
    // would make them): a value changed, a copy deleted, a record added
    let session = target.session().await;
    session.exec("SET @tandem_applying = 1").await;
    session
        .exec("UPDATE items SET qty = 20 WHERE label = 'b'")
        .await;
    session.exec("DELETE FROM items WHERE label = 'c'").await;
    source
        .exec("BEGIN; SET LOCAL tandem.applying = 'on'; INSERT INTO items (label, qty) VALUES ('d', 4); COMMIT")
        .await;

    // WHEN reconcile runs, THEN it lists each and exits 1, like diff
    let out = agent.output(&["reconcile"]).await;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("items: source") && l.contains("differ in qty")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("has lost its copy on the target")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("has no copy on the target")),
        "{report}"
    );
    assert_eq!(report.lines().count(), 3, "{report}");

    // WHEN repaired, THEN the sides are in step, the source winning
    let repaired = agent.ok(&["reconcile", "--repair"]).await;
    assert!(repaired.contains("in step"), "{repaired}");
    let sql = "SELECT label, qty FROM items ORDER BY label";
    assert_eq!(source.rows(sql).await, target.rows(sql).await);
    assert_eq!(target.count("SELECT count(*) FROM items").await, 4);
    assert_eq!(agent.output(&["reconcile"]).await.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_state_directory_is_rebuilt_from_the_databases_without_duplicates() {
    let (source, target, agent) = synced_items().await;
    target
        .exec("INSERT INTO items (label, qty) VALUES ('from target', 9)")
        .await;
    agent.once().await;

    // GIVEN the state directory is gone
    std::fs::remove_dir_all(agent.dir.path().join("state")).unwrap();

    // WHEN rebuilt, THEN every link comes back from the mapping tables
    let out = agent.ok(&["rebuild-state"]).await;
    assert!(out.contains("4 link(s)"), "{out}");

    // AND syncing goes on with no record twice
    source
        .exec("UPDATE items SET qty = 100 WHERE label = 'a'")
        .await;
    agent.once().await;
    let sql = "SELECT label, qty FROM items ORDER BY label";
    assert_eq!(source.rows(sql).await, target.rows(sql).await);
    assert_eq!(source.count("SELECT count(*) FROM items").await, 4);
    assert_eq!(target.count("SELECT count(*) FROM items").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_state_directory_is_refused_until_rebuilt() {
    let (source, target, agent) = synced_items().await;
    source
        .exec("UPDATE items SET qty = 10 WHERE label = 'a'")
        .await;
    agent.once().await;

    // GIVEN the state store's file is damaged (a bad disk, a bad copy)
    let db = agent.dir.path().join("state").join("store").join("db");
    let len = std::fs::metadata(&db).expect("sled's file").len() as usize;
    let garbage: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, garbage).unwrap();

    // WHEN the agent starts, as a command or as a service
    for args in [&["run", "--once"][..], &["run"][..]] {
        let out = agent.output(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // THEN it refuses, in one line naming the directory and the fix
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("corrupt"))
            .unwrap_or_else(|| panic!("{args:?}: no message about corruption: {stderr}"));
        assert!(
            line.contains(&agent.dir.path().join("state").display().to_string()),
            "{line}"
        );
        assert!(line.contains("tandem-agent rebuild-state"), "{line}");
    }
    // AND it wrote nothing in the meantime
    assert_eq!(target.count("SELECT count(*) FROM items").await, 3);

    // WHEN the state is rebuilt, THEN syncing goes on with no record twice
    agent.ok(&["rebuild-state"]).await;
    source
        .exec("INSERT INTO items (label, qty) VALUES ('d', 4)")
        .await;
    agent.once().await;
    let sql = "SELECT label, qty FROM items ORDER BY label";
    assert_eq!(source.rows(sql).await, target.rows(sql).await);
    assert_eq!(target.count("SELECT count(*) FROM items").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_directory_of_a_newer_release_is_refused_until_rebuilt() {
    use tandem_agent::store::{Batch, Kv, SledKv};

    let (source, target, agent) = synced_items().await;
    let state = agent.dir.path().join("state");

    // GIVEN a newer release ran on the state directory and marked it
    // with a format this build does not read
    let newer = tandem_agent::state::FORMAT_VERSION + 1;
    {
        let kv = SledKv::open(&state).expect("the state store");
        let mut batch = Batch::default();
        batch.put(b"meta/format".to_vec(), vec![newer]);
        kv.apply(batch).unwrap();
        kv.flush().unwrap();
    }
    source
        .exec("INSERT INTO items (label, qty) VALUES ('d', 4)")
        .await;

    // WHEN this build starts on it, THEN it refuses in one line naming the
    // directory, both formats and what to do
    let out = agent.output(&["run", "--once"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("newer tandem-agent"))
        .unwrap_or_else(|| panic!("no message about a newer release: {stderr}"));
    assert!(
        line.contains(&format!(
            "state directory {}: the store is in format {newer}",
            state.display()
        )),
        "{line}"
    );
    assert!(line.contains("upgrade tandem-agent"), "{line}");
    assert!(line.contains("tandem-agent rebuild-state"), "{line}");
    assert_eq!(target.count("SELECT count(*) FROM items").await, 3);

    // WHEN the state is rebuilt as it says, THEN syncing goes on with no
    // record twice, and the newer store is kept aside
    let rebuilt = agent.ok(&["rebuild-state"]).await;
    assert!(rebuilt.contains("kept in"), "{rebuilt}");
    agent.once().await;
    let sql = "SELECT label, qty FROM items ORDER BY label";
    assert_eq!(source.rows(sql).await, target.rows(sql).await);
    assert_eq!(target.count("SELECT count(*) FROM items").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_state_refuses_while_the_service_runs_and_moves_nothing() {
    let (_source, _target, agent) = synced_items().await;
    let mut service = agent
        .command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the service");
    let store = agent.dir.path().join("state").join("store");
    // GIVEN the service holds the store (`dead-letters retry`, with no
    // letter to retry, says when it does)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = agent.output(&["dead-letters", "retry"]).await;
        if String::from_utf8_lossy(&out.stderr).contains("the service runs") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // WHEN the state is rebuilt beside it, THEN that is refused in one line
    let out = agent.output(&["rebuild-state"]).await;
    let refused = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && refused.contains("stop it before rebuild-state"),
        "{refused}"
    );
    assert_eq!(refused.trim().lines().count(), 1, "one line: {refused}");
    harness::terminate(&mut service).await;
    assert!(store.exists(), "the store is where it was");
    let aside = std::fs::read_dir(agent.dir.path().join("state"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("store.replaced-")
        })
        .count();
    assert_eq!(aside, 0, "nothing moved aside under the service");
}
