//! The durability promise, tested the hard way: transactions that commit out
//! of sequence order, and the agent killed with SIGKILL again and again
//! while applications keep writing on both sides. Afterwards both sides
//! hold the same records, none lost, none twice.

mod harness;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{Agent, Db, Engine, ENGINE_PAIRS};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread")]
async fn a_change_committed_after_a_later_one_still_arrives() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let source = Db::create(source_engine).await;
        let target = Db::create(target_engine).await;
        for db in [&source, &target] {
            db.exec(&format!(
                "CREATE TABLE items (id {}, label {})",
                db.id(),
                db.text()
            ))
            .await;
        }
        let agent = Agent::new(&source, &target, &[("items", "items")], "");
        agent.install().await;
        agent.once().await;

        // GIVEN a transaction that captures first (lower sequence) but
        // commits last
        let early = source.session().await;
        early.exec("BEGIN").await;
        early
            .exec("INSERT INTO items (label) VALUES ('early')")
            .await;
        let late = source.session().await;
        late.exec("BEGIN").await;
        late.exec("INSERT INTO items (label) VALUES ('late')").await;
        late.exec("COMMIT").await;

        // WHEN the agent tails between the two commits
        agent.once().await;
        assert_eq!(
            target.rows("SELECT label FROM items").await,
            vec![vec![Some("late".to_owned())]]
        );
        early.exec("COMMIT").await;
        agent.once().await;

        // THEN the early change arrives too
        assert_eq!(
            target.rows("SELECT label FROM items ORDER BY label").await,
            vec![
                vec![Some("early".to_owned())],
                vec![Some("late".to_owned())]
            ],
            "{source_engine:?} -> {target_engine:?}"
        );
    }
}

/// A small deterministic generator: the test must not depend on a crate
/// for randomness, and a fixed seed makes a failure replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn create_bank(db: &Db) {
    let (id, text) = (db.id(), db.text());
    db.exec(&format!(
        "CREATE TABLE accounts (id {id}, uid {text}, balance BIGINT)"
    ))
    .await;
    db.exec(&format!(
        "CREATE TABLE entries (id {id}, uid {text}, account_id BIGINT NOT NULL, amount BIGINT, \
         FOREIGN KEY (account_id) REFERENCES accounts (id))"
    ))
    .await;
    db.exec(&format!(
        "CREATE TABLE notes (id {id}, uid {text}, body {text})"
    ))
    .await;
}

async fn seed(db: &Db, prefix: &str, accounts: usize) {
    for chunk in 0..accounts / 250 {
        let values: Vec<String> = (0..250)
            .map(|i| format!("('{prefix}-a{}', {i})", chunk * 250 + i))
            .collect();
        db.exec(&format!(
            "INSERT INTO accounts (uid, balance) VALUES {}",
            values.join(", ")
        ))
        .await;
    }
    db.exec(&format!(
        "INSERT INTO entries (uid, account_id, amount) SELECT CONCAT('{prefix}-e', id), id, 1 FROM accounts WHERE MOD(id, 2) = 0"
    ))
    .await;
    db.exec(&format!("INSERT INTO notes (uid, body) SELECT CONCAT('{prefix}-n', id), 'seed' FROM accounts WHERE MOD(id, 5) = 0"))
        .await;
}

/// Two banks, 1,500 accounts on the source and 1,000 on the target (with
/// entries and notes), and an installed agent syncing them; `extra` is
/// appended to its config.
async fn seeded_banks(source: Engine, target: Engine, extra: &str) -> (Db, Db, Agent) {
    let (source, target) = (Db::create(source).await, Db::create(target).await);
    create_bank(&source).await;
    create_bank(&target).await;
    seed(&source, "s", 1500).await;
    seed(&target, "t", 1000).await;
    let agent = Agent::new(
        &source,
        &target,
        &[
            ("accounts", "accounts"),
            ("entries", "entries"),
            ("notes", "notes"),
        ],
        extra,
    );
    agent.install().await;
    (source, target, agent)
}

/// Applications writing to one side until told to stop: inserts, updates
/// and deletes in small transactions.
async fn write_until(db: Arc<Db>, prefix: &'static str, seed: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut rng = Rng(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let sql = match rng.below(6) {
            0 => format!("INSERT INTO accounts (uid, balance) VALUES ('{prefix}-w{n}', {n})"),
            1 => format!("UPDATE accounts SET balance = balance + 1 WHERE MOD(id, 997) = {}", rng.below(997)),
            2 => format!(
                "INSERT INTO entries (uid, account_id, amount) SELECT '{prefix}-we{n}', MAX(id), {n} FROM accounts"
            ),
            3 => format!("DELETE FROM entries WHERE MOD(id, 97) = {}", rng.below(97)),
            4 => format!("INSERT INTO notes (uid, body) VALUES ('{prefix}-wn{n}', 'w')"),
            _ => format!("DELETE FROM notes WHERE MOD(id, 31) = {}", rng.below(31)),
        };
        // A statement may fail on a lock wait while the agent applies; the
        // application just carries on, as a real one would retry.
        let _ = db.try_exec(&sql).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n
}

/// Every record by its uid, with its content and its parent's uid.
async fn content(db: &Db) -> Vec<Vec<Vec<Option<String>>>> {
    vec![
        db.rows("SELECT uid, balance FROM accounts ORDER BY uid").await,
        db.rows("SELECT e.uid, a.uid, e.amount FROM entries e JOIN accounts a ON a.id = e.account_id ORDER BY e.uid")
            .await,
        db.rows("SELECT uid, body FROM notes ORDER BY uid").await,
    ]
}

async fn assert_no_record_twice(db: &Db) {
    for table in ["accounts", "entries", "notes"] {
        let twice = db
            .rows(&format!(
                "SELECT uid, COUNT(*) FROM {table} GROUP BY uid HAVING COUNT(*) > 1"
            ))
            .await;
        assert!(
            twice.is_empty(),
            "{:?} {table} holds records twice: {twice:?}",
            db.engine
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_any_moment_the_agent_loses_and_duplicates_nothing() {
    let (source, target, agent) =
        seeded_banks(Engine::Postgres, Engine::Mysql, "[sync]\nbatch_size = 50\n").await;
    // More rows than the other stories: the first sync must outlast
    // several kills however fast the host is.
    seed(&source, "x", 6000).await;
    seed(&target, "y", 4000).await;
    let (source, target) = (Arc::new(source), Arc::new(target));

    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        tokio::spawn(write_until(
            source.clone(),
            "s",
            0x9E37_79B9_7F4A_7C15,
            stop.clone(),
        )),
        tokio::spawn(write_until(
            target.clone(),
            "t",
            0xD1B5_4A32_D192_ED03,
            stop.clone(),
        )),
    ];

    // Kill the agent after a varying number of its log lines: many points in
    // the first sync (while it copies thousands of rows) and in the
    // incremental sync after it.
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut during_first_sync, mut after_first_sync) = (0, 0);
    let snapshot = agent.dir.path().join("state").join("status.json");
    for round in 0..40 {
        if during_first_sync >= 5 && after_first_sync >= 17 {
            break;
        }
        let first_sync_was_done = std::fs::read_to_string(&snapshot)
            .map(|s| s.contains("\"first_sync_done\": true"))
            .unwrap_or(false);
        let mut child = agent
            .command(&["run"])
            .env("RUST_LOG", "tandem_agent=debug")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the agent");
        // The first sync logs little: there the deadline picks the moment.
        let lines_before_kill = 3 + rng.below(60);
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = 0;
        // Bounded: an idle agent prints little, so a deadline kills it anyway.
        // Until the first sync is done the kills come sooner, so that more
        // of them land inside it.
        let deadline = if first_sync_was_done {
            200 + rng.below(1500)
        } else {
            150 + rng.below(700)
        };
        let _ = tokio::time::timeout(Duration::from_millis(deadline), async {
            while seen < lines_before_kill {
                match lines.next_line().await {
                    Ok(Some(_)) => seen += 1,
                    _ => break,
                }
            }
        })
        .await;
        let pid = child.id().expect("running") as i32;
        assert!(sigkill(pid), "round {round}: kill failed");
        let status = child.wait().await.expect("wait");
        assert!(
            !status.success(),
            "round {round}: the agent exited by itself ({status})"
        );
        if first_sync_was_done {
            after_first_sync += 1;
        } else {
            during_first_sync += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let written = writer.await.expect("writer");
        assert!(written > 10, "the writers barely wrote ({written})");
    }
    eprintln!("kills: {during_first_sync} during the first sync, {after_first_sync} after it");
    assert!(
        during_first_sync >= 3,
        "only {during_first_sync} kills landed in the first sync"
    );
    assert!(during_first_sync + after_first_sync >= 20);

    eprintln!("killed {during_first_sync} times during the first sync and {after_first_sync} times after it");
    // A final clean pass converges.
    agent.once().await;
    assert_no_record_twice(&source).await;
    assert_no_record_twice(&target).await;
    let (s, t) = (content(&source).await, content(&target).await);
    assert_eq!(s[0].len(), t[0].len(), "accounts differ in number");
    assert_eq!(
        s, t,
        "source and target differ after {during_first_sync}+{after_first_sync} kills"
    );
    assert!(
        s[0].len() >= 2500,
        "records were lost: {} accounts",
        s[0].len()
    );
}

/// SIGKILL: no handler runs, nothing is flushed, as in a power cut of the
/// process.
fn sigkill(pid: i32) -> bool {
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_killed_by_the_servers_are_reopened_and_nothing_is_lost() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE items (id {}, label {})",
            db.id(),
            db.text()
        ))
        .await;
    }
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;
    let mut child = agent.command(&["run"]).spawn().expect("spawn");
    let timeout = Duration::from_secs(60);
    source
        .exec("INSERT INTO items (label) VALUES ('before')")
        .await;
    harness::eventually("the first change arrives", timeout, || async {
        target.count("SELECT count(*) FROM items").await == 1
    })
    .await;

    // WHEN both servers kill every connection the agent holds, several times
    for round in 0..3 {
        source
            .exec(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
                source.name
            ))
            .await;
        for row in target
            .rows(&format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> CONNECTION_ID()",
                target.name
            ))
            .await
        {
            let _ = target.try_exec(&format!("KILL {}", row[0].as_deref().unwrap_or("0"))).await;
        }
        source
            .exec(&format!("INSERT INTO items (label) VALUES ('pg {round}')"))
            .await;
        target
            .exec(&format!(
                "INSERT INTO items (label) VALUES ('maria {round}')"
            ))
            .await;
    }

    // THEN the agent reconnects by itself and every change arrives, once
    harness::eventually("both sides converge", timeout, || async {
        source.count("SELECT count(*) FROM items").await == 7
            && target.count("SELECT count(*) FROM items").await == 7
    })
    .await;
    let sql = "SELECT label FROM items ORDER BY label";
    assert_eq!(source.rows(sql).await, target.rows(sql).await);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent must keep running"
    );
    let _ = child.kill().await;
}

/// The narrowest window of all: the copies of a first-sync batch committed
/// in the target, the agent's own state not yet told. The agent is made to
/// die exactly there, batch after batch, in both directions; every restart
/// must find the copies through the mapping table instead of making them
/// again.
#[tokio::test(flavor = "multi_thread")]
async fn dying_between_a_copy_and_its_link_copies_nothing_twice() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let (source, target, agent) = seeded_banks(source_engine, target_engine, "").await;

        let mut crashes = 0;
        loop {
            let out = agent
                .command(&["run", "--once"])
                .env("TANDEM_CRASH_AT", "first-sync-committed:1")
                .output()
                .await
                .expect("run the agent");
            if out.status.success() {
                break;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("crash point first-sync-committed reached"),
                "{source_engine:?} -> {target_engine:?}: the agent failed otherwise:\n{stderr}"
            );
            crashes += 1;
            assert!(
                crashes < 30,
                "the first sync makes no progress across crashes"
            );
        }
        // A batch per table and side at least: accounts take two on the source.
        assert!(
            crashes >= 6,
            "{source_engine:?} -> {target_engine:?}: only {crashes} crashes"
        );
        agent.once().await;
        assert_no_record_twice(&source).await;
        assert_no_record_twice(&target).await;
        let (s, t) = (content(&source).await, content(&target).await);
        assert_eq!(
            s, t,
            "{source_engine:?} -> {target_engine:?}: sides differ after {crashes} crashes"
        );
        assert_eq!(s[0].len(), 2500, "every account, once");
    }
}

/// A first sync into an empty table does not read that table back (every
/// row it gains is a copy or a write its trigger captures). Rows written
/// there while the copy is under way, the agent down after its first
/// batch, still reach the source, once.
#[tokio::test(flavor = "multi_thread")]
async fn rows_written_into_an_empty_target_during_its_first_sync_reach_the_source() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let (source, target, agent) = harness::two_pairs(source_engine, target_engine).await;
        let values: Vec<String> = (1..=1500).map(|i| format!("('i{i}', {i})")).collect();
        source
            .exec(&format!(
                "INSERT INTO items (label, qty) VALUES {}",
                values.join(", ")
            ))
            .await;
        // GIVEN a first sync into empty tables that died after its first
        // batch committed, before the agent recorded its links
        let out = agent
            .command(&["run", "--once"])
            .env("TANDEM_CRASH_AT", "first-sync-committed:1")
            .env("RUST_LOG", "info")
            .output()
            .await
            .expect("run the agent");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("crash point first-sync-committed reached"),
            "{source_engine:?} -> {target_engine:?}: the agent did not die there:\n{log}"
        );
        assert!(
            log.contains("the target table is empty"),
            "{source_engine:?} -> {target_engine:?}: the empty target was not noticed:\n{log}"
        );
        // WHEN an application adds two rows to the target meanwhile
        target
            .exec("INSERT INTO items (label, qty) VALUES ('t1', -1), ('t2', -2)")
            .await;
        agent.once().await;
        // THEN both sides hold every row once, the target's included
        let sql = "SELECT label, qty FROM items ORDER BY label";
        let rows = source.rows(sql).await;
        assert_eq!(
            rows.len(),
            1502,
            "{source_engine:?} -> {target_engine:?}: source rows"
        );
        assert_eq!(
            rows,
            target.rows(sql).await,
            "{source_engine:?} -> {target_engine:?}: the sides differ"
        );
        assert_eq!(
            source
                .count("SELECT count(*) FROM items WHERE label IN ('t1', 't2') AND qty < 0")
                .await,
            2,
            "{source_engine:?} -> {target_engine:?}: the target's writes on the source"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pair_left_out_of_the_config_after_a_crash_is_not_copied_twice_when_it_returns() {
    let (source, target, agent) = harness::two_pairs(Engine::Postgres, Engine::Mysql).await;
    source
        .exec("INSERT INTO items (label) SELECT 'i' || g FROM generate_series(1, 1500) g")
        .await;
    // GIVEN a first sync that died after a batch committed, before the
    // agent recorded its links
    agent.once_until_crash("first-sync-committed:1").await;
    // WHEN the agent runs with that pair taken out of the config, and later
    // with it back
    let full = std::fs::read_to_string(&agent.config).unwrap();
    let without = full.replace("[[tables]]\nsource = \"items\"\ntarget = \"items\"\n\n", "");
    assert_ne!(full, without, "the items pair was in the config");
    std::fs::write(&agent.config, &without).unwrap();
    agent.once().await;
    std::fs::write(&agent.config, &full).unwrap();
    agent.once().await;
    // THEN the batch copied before the crash is not copied again
    assert_eq!(target.count("SELECT count(*) FROM items").await, 1500);
    let sql = "SELECT id, label FROM items ORDER BY id";
    assert_eq!(source.rows(sql).await, target.rows(sql).await);
}

/// Updates committed on the other side, the agent's state not yet told:
/// after the restart the copies are recognised as the agent's own writes,
/// not as changes made there too (which would count a conflict for each,
/// and let a `target-wins` policy keep them against the source).
#[tokio::test(flavor = "multi_thread")]
async fn dying_between_an_update_and_its_settlement_finds_no_conflict() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let (source, target, agent) = seeded_banks(source_engine, target_engine, "").await;
        agent.once().await;
        // GIVEN every account updated on the source
        source
            .exec("UPDATE accounts SET balance = balance + 7")
            .await;
        // WHEN the agent dies right after committing the first chunk of
        // updates on the target, and runs again
        agent.once_until_crash("applied-committed:1").await;
        agent.once().await;
        // THEN both sides agree and no conflict was counted
        assert_eq!(
            content(&source).await,
            content(&target).await,
            "{source_engine:?} -> {target_engine:?}"
        );
        let status: serde_json::Value =
            serde_json::from_str(&agent.ok(&["status", "--json"]).await).unwrap();
        for pair in status["pairs"].as_array().unwrap() {
            assert_eq!(
                pair["conflicts"], 0,
                "{source_engine:?} -> {target_engine:?}: {status}"
            );
        }
    }
}
