//! Tables changed under a running agent: a column dropped, renamed or
//! added back, a capture trigger dropped by hand, a table dropped, a table
//! truncated. The agent pauses only the affected table pair, says why and
//! what fixes it, keeps the other pairs going, and once the cause is gone
//! the pair catches up with everything captured meanwhile.

mod harness;

use std::time::Duration;

use harness::{eventually, two_pairs, Agent, Db, Engine, ENGINE_PAIRS};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Why `pair` is paused, as `status --json` reports it.
async fn paused(agent: &Agent, pair: &str) -> Option<String> {
    let status: serde_json::Value = serde_json::from_str(&agent.ok(&["status", "--json"]).await)
        .expect("status --json prints JSON");
    status["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .find(|p| p["pair"] == pair)
        .and_then(|p| p["paused"].as_str().map(str::to_owned))
}

/// Waits until `pair` is paused for a reason containing every one of
/// `words`; returns the reason.
async fn wait_paused(agent: &Agent, pair: &str, words: &[&str]) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let reason = paused(agent, pair).await;
        if let Some(reason) = reason.as_deref() {
            if words.iter().all(|w| reason.contains(w)) {
                return reason.to_owned();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for pair {pair} to pause for {words:?}; last: {reason:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_resumed(agent: &Agent, pair: &str) {
    eventually(&format!("pair {pair} resumed"), TIMEOUT, || async {
        paused(agent, pair).await.is_none()
    })
    .await;
}

async fn has(db: &Db, table: &str, column: &str, value: &str) -> bool {
    db.count(&format!(
        "SELECT count(*) FROM {table} WHERE {column} = '{value}'"
    ))
    .await
        == 1
}

async fn arrives(db: &Db, table: &str, column: &str, value: &str) {
    eventually(
        &format!("{table}.{column} = {value:?} arrives"),
        TIMEOUT,
        || has(db, table, column, value),
    )
    .await;
}

/// Drops every Tandem capture trigger of `table`, as someone tidying up
/// by hand would.
async fn drop_capture_triggers(db: &Db, table: &str) {
    match db.engine {
        Engine::Postgres => {
            db.exec(&format!("DROP TRIGGER tandem_capture ON {table}"))
                .await
        }
        _ => {
            for row in db
                .rows(&format!(
                    "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
                     WHERE TRIGGER_SCHEMA = '{}' AND EVENT_OBJECT_TABLE = '{table}'",
                    db.name
                ))
                .await
            {
                db.exec(&format!(
                    "DROP TRIGGER {}",
                    db.q(row[0].as_deref().expect("name"))
                ))
                .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_changed_under_the_agent_pauses_its_pair_and_the_others_go_on() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let (source, target, agent) = two_pairs(source_engine, target_engine).await;
        let mut child = agent.command(&["run"]).spawn().expect("spawn");
        source
            .exec("INSERT INTO items (label, qty) VALUES ('a', 1)")
            .await;
        arrives(&target, "items", "label", "a").await;

        // WHEN a column of a synced table is dropped
        source.exec("ALTER TABLE items DROP COLUMN qty").await;
        // THEN that pair is paused, with the table, the column and the fix
        let reason = wait_paused(&agent, "items", &["source table", "items", "qty"]).await;
        assert!(reason.contains("change the mapping"), "{reason}");
        // AND a change captured meanwhile waits while the other pair goes on
        source.exec("INSERT INTO items (label) VALUES ('b')").await;
        source.exec("INSERT INTO notes (body) VALUES ('n1')").await;
        arrives(&target, "notes", "body", "n1").await;
        assert!(!has(&target, "items", "label", "b").await);
        // AND once the column is back, the pair resumes and catches up
        source.exec("ALTER TABLE items ADD COLUMN qty INT").await;
        arrives(&target, "items", "label", "b").await;
        wait_resumed(&agent, "items").await;

        // WHEN a column is renamed, THEN the pair pauses and names both names
        source
            .exec("ALTER TABLE items RENAME COLUMN label TO title")
            .await;
        wait_paused(
            &agent,
            "items",
            &["label dropped or renamed", "new column title"],
        )
        .await;
        source.exec("INSERT INTO items (title) VALUES ('c')").await;
        source
            .exec("ALTER TABLE items RENAME COLUMN title TO label")
            .await;
        arrives(&target, "items", "label", "c").await;

        // WHEN a capture trigger is dropped by hand
        drop_capture_triggers(&source, "items").await;
        // THEN the pair pauses and the fix is to install the triggers again
        wait_paused(&agent, "items", &["capture trigger", "install-triggers"]).await;
        source.exec("INSERT INTO notes (body) VALUES ('n2')").await;
        arrives(&target, "notes", "body", "n2").await;
        agent.install().await;
        wait_resumed(&agent, "items").await;
        source.exec("INSERT INTO items (label) VALUES ('d')").await;
        arrives(&target, "items", "label", "d").await;

        // WHEN a synced table is dropped, THEN only its pair stops
        target.exec("DROP TABLE notes").await;
        wait_paused(&agent, "notes", &["target table", "notes", "restore it"]).await;
        source.exec("INSERT INTO items (label) VALUES ('e')").await;
        arrives(&target, "items", "label", "e").await;

        assert!(
            child.try_wait().unwrap().is_none(),
            "{source_engine:?} -> {target_engine:?}: the agent must keep running"
        );
        let _ = child.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_pair_with_a_long_backlog_holds_no_other_pair_back() {
    let (source, target, agent) = two_pairs(Engine::Postgres, Engine::Mysql).await;
    agent.once().await;
    // GIVEN more changes of one pair in the change log than a drain takes
    // at once, tailed but not applied when the agent stopped
    let bulk = tandem_agent::sync::apply::DRAIN_WINDOW as i64 + 50;
    source
        .exec(&format!(
            "INSERT INTO items (label, qty) SELECT 'bulk', g FROM generate_series(1, {bulk}) g"
        ))
        .await;
    agent.once_until_crash("tailed:1").await;
    // WHEN that pair pauses (its source table truncated) and the other pair
    // has a change behind the backlog
    source.exec("TRUNCATE items").await;
    source
        .exec("INSERT INTO notes (body) VALUES ('behind')")
        .await;
    let out = agent.output(&["run", "--once"]).await;
    // THEN the other pair's change is applied all the same
    assert!(
        has(&target, "notes", "body", "behind").await,
        "the paused pair held the other back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(target.count("SELECT count(*) FROM items").await, 0);
    // AND the paused pair's backlog was kept: once the operator removes the
    // marker, the changes captured before the TRUNCATE are applied
    let reason = paused(&agent, "items").await.expect("items is paused");
    let marker = reason
        .split_once("DELETE FROM ")
        .map(|(_, statement)| format!("DELETE FROM {statement}"))
        .unwrap_or_else(|| panic!("the alert names the marker to remove: {reason}"));
    source.exec(&marker).await;
    agent.once().await;
    assert_eq!(
        target
            .count("SELECT count(*) FROM items WHERE label = 'bulk'")
            .await,
        bulk
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_record_before_a_paused_backlog_ends_the_pass() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    for db in [&source, &target] {
        let (id, text) = (db.id(), db.text());
        db.exec(&format!("CREATE TABLE items (id {id}, label {text})"))
            .await;
        db.exec(&format!(
            "CREATE TABLE customers (id {id}, name {text}, status {text})"
        ))
        .await;
        db.exec(&format!(
            "CREATE TABLE orders (id {id}, customer_id BIGINT NOT NULL, \
             FOREIGN KEY (customer_id) REFERENCES customers (id))"
        ))
        .await;
    }
    // Only active customers travel: an order of a pending one waits.
    let agent = Agent::new(
        &source,
        &target,
        &[
            ("items", "items"),
            ("orders", "orders"),
            ("customers", "customers"),
        ],
        "[tables.to_target]\nfilter = \"status == 'active'\"\n",
    );
    agent.install().await;
    agent.once().await;
    // GIVEN a waiting order in the change log, and behind it changes of a
    // pair that pauses before they are applied
    source
        .exec("INSERT INTO customers (name, status) VALUES ('Ada', 'pending')")
        .await;
    source
        .exec("INSERT INTO orders (customer_id) SELECT id FROM customers")
        .await;
    source
        .exec("INSERT INTO items (label) VALUES ('a'), ('b'), ('c')")
        .await;
    agent.once_until_crash("tailed:1").await;
    source.exec("TRUNCATE items").await;
    // WHEN the agent runs once, THEN the pass ends (the order still waits)
    let out = tokio::time::timeout(TIMEOUT, agent.output(&["run", "--once"]))
        .await
        .expect("run --once must end while a record waits before a paused backlog");
    assert_eq!(out.status.code(), Some(3), "not in step: the order waits");
    assert_eq!(target.count("SELECT count(*) FROM orders").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncate_stops_its_pair_until_an_operator_decides() {
    let (source, target, agent) = two_pairs(Engine::Postgres, Engine::Mysql).await;
    source
        .exec("INSERT INTO items (label) VALUES ('a'), ('b')")
        .await;
    let mut child = agent.command(&["run"]).spawn().expect("spawn");
    arrives(&target, "items", "label", "b").await;

    // WHEN the source table is truncated and written to again
    source.exec("TRUNCATE items").await;
    source.exec("INSERT INTO items (label) VALUES ('x')").await;

    // THEN the pair stops with an alert that says what to do, and guesses
    // nothing: the target keeps its rows, the new row waits
    let reason = wait_paused(&agent, "items", &["source table", "truncated"]).await;
    source.exec("INSERT INTO notes (body) VALUES ('n1')").await;
    arrives(&target, "notes", "body", "n1").await;
    assert_eq!(target.count("SELECT count(*) FROM items").await, 2);
    assert!(!has(&target, "items", "label", "x").await);

    // WHEN the operator makes the sides agree and removes the marker the
    // alert names
    let marker = reason
        .split_once("DELETE FROM ")
        .map(|(_, statement)| format!("DELETE FROM {statement}"))
        .unwrap_or_else(|| panic!("the alert names the marker to remove: {reason}"));
    target.exec("TRUNCATE items").await;
    source.exec(&marker).await;

    // THEN the pair resumes and the row written after the truncate arrives
    arrives(&target, "items", "label", "x").await;
    wait_resumed(&agent, "items").await;
    let sql = "SELECT label FROM items ORDER BY label";
    assert_eq!(source.rows(sql).await, target.rows(sql).await);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent must keep running"
    );
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_gone_without_a_delete_is_not_taken_for_deleted() {
    let (source, target, agent) = two_pairs(Engine::Postgres, Engine::Mysql).await;
    source
        .exec("INSERT INTO items (label) VALUES ('a'), ('b')")
        .await;
    agent.once().await;
    // WHEN a row changes and is gone before the agent reads it, with no
    // delete captured: a TRUNCATE whose marker the agent has not read yet
    // (its row is removed here to stand for that moment)
    source
        .exec("UPDATE items SET label = 'a2' WHERE label = 'a'")
        .await;
    source.exec("TRUNCATE items").await;
    source
        .exec("DELETE FROM tandem.changes WHERE op = 'T'")
        .await;
    agent.once().await;
    // THEN nothing is deleted on the other side: only a delete deletes
    assert_eq!(
        target.rows("SELECT label FROM items ORDER BY label").await,
        vec![vec![Some("a".into())], vec![Some("b".into())]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_row_with_an_unreadable_key_is_set_aside_and_the_rest_goes_on() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let (source, target, agent) = two_pairs(source_engine, target_engine).await;
        let mut child = agent
            .command(&["run"])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let log = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut all = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                all.push(line);
            }
            all
        });
        source.exec("INSERT INTO items (label) VALUES ('a')").await;
        arrives(&target, "items", "label", "a").await;

        // GIVEN a change row whose key is not a number, as a hand-written
        // or damaged row would be
        let (changes, table) = match source_engine {
            Engine::Postgres => ("tandem.changes", "public.items"),
            _ => ("tandem_changes", "items"),
        };
        source
            .exec(&format!(
                "INSERT INTO {changes} (table_name, op, pk) VALUES ('{table}', 'I', '[\"not a number\"]')"
            ))
            .await;

        // WHEN more changes follow, THEN they arrive: the side is not stuck
        source.exec("INSERT INTO items (label) VALUES ('b')").await;
        source.exec("INSERT INTO notes (body) VALUES ('n')").await;
        arrives(&target, "items", "label", "b").await;
        arrives(&target, "notes", "body", "n").await;

        // AND the row is left for the operator and reported once, with the
        // statement that removes it
        assert_eq!(source.pending_changes().await, 1);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the agent must keep running"
        );
        let _ = child.kill().await;
        let log = log.await.unwrap();
        let reports: Vec<&String> = log.iter().filter(|l| l.contains("set aside")).collect();
        assert_eq!(reports.len(), 1, "{log:#?}");
        assert!(
            reports[0].contains("not a number")
                && reports[0].contains(&format!("DELETE FROM {changes} WHERE seq")),
            "{}",
            reports[0]
        );
    }
}
