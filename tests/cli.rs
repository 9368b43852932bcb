//! An operator's story: bad input gets one clear line and a non-zero exit,
//! and nothing is written; `check` and `status` say what they see.

mod harness;

use harness::{Agent, Db, Engine};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn fails_with(agent: &Agent, args: &[&str], needle: &str) -> String {
    let out = agent.output(args).await;
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} should fail:\n{err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in:\n{err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line:\n{err}"
    );
    err
}

/// Like [`fails_with`], where several problems are found at once: a line
/// each, every line an error, one naming `needle`.
async fn fails_naming(agent: &Agent, args: &[&str], needle: &str) -> String {
    let out = agent.output(args).await;
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} should fail:\n{err}");
    assert!(
        err.lines().any(|l| l.contains(needle)),
        "{args:?}: expected {needle:?} in:\n{err}"
    );
    assert!(
        err.trim_end().lines().all(|l| l.starts_with("error: ")),
        "{args:?}: a line that is not a problem:\n{err}"
    );
    err
}

async fn pair() -> (Db, Db) {
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
    (source, target)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_line_and_writes_nothing() {
    let (source, target) = pair().await;
    let before = [source.catalog().await, target.catalog().await];

    // A malformed config names the file and the line.
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    std::fs::write(&agent.config, "state_dir = \"s\"\n[source\nkind = 1\n").unwrap();
    let err = fails_with(&agent, &["run", "--once"], "tandem.toml").await;
    assert!(err.contains("line 2"), "{err}");

    // An incomplete one names everything that is missing, a line each.
    std::fs::write(&agent.config, "state_dir = \"s\"\n").unwrap();
    let out = agent.output(&["check"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].contains("missing field `source`"), "{err}");
    assert!(lines[1].contains("missing field `target`"), "{err}");
    assert!(
        lines[2].contains("tables: no table pair configured"),
        "{err}"
    );

    // An unknown table is named.
    let agent = Agent::new(&source, &target, &[("items", "nosuch")], "");
    fails_with(&agent, &["install-triggers"], "nosuch").await;
    // (Nothing is installed either: every problem is named.)
    fails_naming(
        &agent,
        &["run", "--once"],
        "target table nosuch does not exist",
    )
    .await;

    // A table without a primary key is named.
    source.exec("CREATE TABLE nokey (label TEXT)").await;
    target.exec("CREATE TABLE nokey (label TEXT)").await;
    let agent = Agent::new(&source, &target, &[("nokey", "nokey")], "");
    fails_naming(&agent, &["run", "--once"], "nokey has no primary key").await;
    source.exec("DROP TABLE nokey").await;
    target.exec("DROP TABLE nokey").await;

    // A server that refuses the connection is named by host and port.
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    let config = std::fs::read_to_string(&agent.config)
        .unwrap()
        .replace(":3306/", ":1/");
    std::fs::write(&agent.config, config).unwrap();
    let err = fails_with(&agent, &["run", "--once"], "127.0.0.1:1").await;
    assert_eq!(
        err.matches("connection refused").count(),
        1,
        "said once: {err}"
    );

    // Running before install-triggers says what to do, for each side.
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    let err = fails_naming(
        &agent,
        &["run", "--once"],
        "source: Tandem change table is not installed",
    )
    .await;
    assert!(
        err.contains("target: Tandem change table is not installed"),
        "{err}"
    );
    assert!(err.contains("install-triggers --config"), "{err}");

    // Nothing was written to either database, nor a state directory.
    assert_eq!([source.catalog().await, target.catalog().await], before);
    assert!(
        !agent.dir.path().join("state").exists(),
        "a failed start created state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_lists_every_problem_and_status_reports_figures() {
    let (source, target) = pair().await;
    let agent = Agent::new(&source, &target, &[("items", "items")], "");

    // Before install: one line per side, exit non-zero.
    let out = agent.output(&["check"]).await;
    assert!(!out.status.success());
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("source:") && l.contains("install-triggers")),
        "{lines}"
    );
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("target:") && l.contains("install-triggers")),
        "{lines}"
    );

    // A table whose key is not generated is reported with the fix.
    target
        .exec("CREATE TABLE manual (id BIGINT PRIMARY KEY, label VARCHAR(20))")
        .await;
    source
        .exec("CREATE TABLE manual (id BIGSERIAL PRIMARY KEY, label TEXT)")
        .await;
    let with_manual = Agent::new(
        &source,
        &target,
        &[("items", "items"), ("manual", "manual")],
        "",
    );
    with_manual.install().await;
    let out = with_manual.output(&["check"]).await;
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success());
    assert!(
        lines.contains("target table manual has no auto-generated primary key"),
        "{lines}"
    );
    assert!(
        lines.contains("ALTER TABLE `manual` MODIFY `id` BIGINT NOT NULL AUTO_INCREMENT;"),
        "{lines}"
    );
    assert_eq!(lines.lines().count(), 1, "{lines}");

    // After install: clean.
    agent.install().await;
    assert!(agent.ok(&["check"]).await.starts_with("ok:"));

    source
        .exec("INSERT INTO items (label) VALUES ('a'), ('b')")
        .await;
    target.exec("INSERT INTO items (label) VALUES ('c')").await;
    let report = agent.once().await;
    assert!(report.contains("items"), "{report}");
    source.exec("INSERT INTO items (label) VALUES ('d')").await;

    let status: serde_json::Value =
        serde_json::from_str(&agent.ok(&["status", "--json"]).await).unwrap();
    let items = &status["pairs"][0];
    assert_eq!(
        items["applied"]["source_to_target"]["inserted"], 2,
        "{status}"
    );
    assert_eq!(
        items["applied"]["target_to_source"]["inserted"], 1,
        "{status}"
    );
    assert_eq!(items["captured_not_tailed"]["source"], 1, "{status}");
    assert_eq!(items["logged_not_applied"], 0, "{status}");
    assert!(items["last_sync"].is_string(), "{status}");
    let table = agent.ok(&["status"]).await;
    assert!(table.lines().any(|l| l.starts_with("items")), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_follows_changes_both_ways_until_sigterm() {
    let (source, target) = pair().await;
    source
        .exec("INSERT INTO items (label) VALUES ('before')")
        .await;
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;

    // GIVEN the agent running as a service would
    let mut child = agent.command(&["run"]).spawn().expect("spawn");
    let timeout = std::time::Duration::from_secs(30);
    harness::eventually(
        "the first sync copies the source's row",
        timeout,
        || async {
            target
                .count("SELECT count(*) FROM items WHERE label = 'before'")
                .await
                == 1
        },
    )
    .await;

    // WHEN applications write on either side, THEN the change arrives
    source
        .exec("INSERT INTO items (label) VALUES ('from pg')")
        .await;
    harness::eventually("a PostgreSQL insert reaches MariaDB", timeout, || async {
        target
            .count("SELECT count(*) FROM items WHERE label = 'from pg'")
            .await
            == 1
    })
    .await;
    target
        .exec("UPDATE items SET label = 'edited in mariadb' WHERE label = 'from pg'")
        .await;
    harness::eventually("a MariaDB update reaches PostgreSQL", timeout, || async {
        source
            .count("SELECT count(*) FROM items WHERE label = 'edited in mariadb'")
            .await
            == 1
    })
    .await;
    target
        .exec("DELETE FROM items WHERE label = 'before'")
        .await;
    harness::eventually("a MariaDB delete reaches PostgreSQL", timeout, || async {
        source
            .count("SELECT count(*) FROM items WHERE label = 'before'")
            .await
            == 0
    })
    .await;

    // AND status works while the service runs (it reads the snapshot the
    // agent leaves, and the change tables)
    harness::eventually(
        "status reports what the running agent applied",
        timeout,
        || async {
            let status: serde_json::Value =
                serde_json::from_str(&agent.ok(&["status", "--json"]).await).unwrap();
            status["first_sync_done"] == true
                && status["pairs"][0]["applied"]["target_to_source"]["deleted"] == 1
                && status["pairs"][0]["captured_not_tailed"]["source"].is_number()
        },
    )
    .await;

    // WHEN it is asked to stop, THEN it stops cleanly
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(timeout, child.wait())
        .await
        .expect("stops in time")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert_eq!(
        source.count("SELECT count(*) FROM items").await,
        target.count("SELECT count(*) FROM items").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_missing_privileges_with_the_grant_that_fixes_them() {
    let (source, target) = pair().await;
    let role = format!("tandem_limited_{}", &source.name[10..20]);
    // GIVEN users that may only read the synced table
    source
        .exec(&format!(
            "CREATE ROLE {role} LOGIN; GRANT SELECT ON items TO {role}"
        ))
        .await;
    target.exec(&format!("CREATE USER '{role}'@'%'")).await;
    target
        .exec(&format!(
            "GRANT SELECT ON {}.items TO '{role}'@'%'",
            target.name
        ))
        .await;
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    let config = std::fs::read_to_string(&agent.config)
        .unwrap()
        .replace("postgres://postgres@", &format!("postgres://{role}@"))
        .replacen("mysql://root@", &format!("mysql://{role}@"), 1);
    std::fs::write(&agent.config, config).unwrap();

    // WHEN the operator runs check
    let out = agent.output(&["check"]).await;
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();

    // THEN each side names what is missing and the statement that grants it
    assert!(!out.status.success());
    assert!(
        lines.lines().any(|l| l.starts_with("source:")
            && l.contains("INSERT, UPDATE, DELETE, TRIGGER")
            && l.contains(&format!(
                "GRANT INSERT, UPDATE, DELETE, TRIGGER ON \"public\".\"items\" TO \"{role}\""
            ))),
        "{lines}"
    );
    assert!(
        lines.lines().any(|l| l.starts_with("target:")
            && l.contains("GRANT INSERT, UPDATE, DELETE, TRIGGER ON `items`")),
        "{lines}"
    );
    target.exec(&format!("DROP USER '{role}'@'%'")).await;
    source
        .exec(&format!("REVOKE ALL ON items FROM {role}"))
        .await;
    source
        .exec(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_systemd_it_reports_ready_pings_the_watchdog_and_says_it_stops() {
    let (source, target) = pair().await;
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;
    // GIVEN a notification socket, as systemd gives a Type=notify service
    let socket_path = agent.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut child = agent
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .spawn()
        .expect("spawn");
    // WHEN it runs, THEN it says it is ready and pings the watchdog
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    let deadline = std::time::Duration::from_secs(30);
    tokio::time::timeout(deadline, async {
        while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
            let n = socket.recv(&mut buf).await.unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no READY and WATCHDOG in time; got:\n{seen}"));
    // AND on SIGTERM it says it is stopping, then exits cleanly
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::timeout(deadline, async {
        while !seen.contains("STOPPING=1") {
            let n = socket.recv(&mut buf).await.unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no STOPPING in time; got:\n{seen}"));
    let status = tokio::time::timeout(deadline, child.wait())
        .await
        .expect("stops in time")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn under_systemd_a_start_waiting_for_its_databases_asks_for_more_time() {
    // GIVEN databases that are not up yet (nothing listens on port 1)
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "state_dir = {:?}\n\
         [source]\nkind = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/shop\"\n\
         [target]\nkind = \"mysql\"\nurl = \"mysql://root@127.0.0.1:1/crm\"\n\
         [[tables]]\nsource = \"items\"\ntarget = \"items\"\n",
        dir.path().join("state")
    );
    let agent = Agent::with_config(dir, &toml);
    let socket_path = agent.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut child = agent
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .spawn()
        .expect("spawn");
    // WHEN it waits for them, THEN it says so and asks systemd for more
    // time than the wait before its next try, so that the start timeout
    // does not kill it
    let mut buf = [0u8; 512];
    let message = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let n = socket.recv(&mut buf).await.unwrap();
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if message.contains("EXTEND_TIMEOUT_USEC=") {
                return message;
            }
        }
    })
    .await
    .expect("no EXTEND_TIMEOUT_USEC in time");
    assert!(message.contains("STATUS=waiting: "), "{message}");
    let usec: u64 = message
        .lines()
        .find_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable: {message}"));
    assert!(usec >= 60_000_000, "{message}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits, it does not exit"
    );
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_valid_config_and_keeps_the_old_one_otherwise() {
    let (source, target) = pair().await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE extra (id {}, label {})",
            db.id(),
            db.text()
        ))
        .await;
    }
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;
    let original = std::fs::read_to_string(&agent.config).unwrap();
    let mut child = agent.command(&["run"]).spawn().expect("spawn");
    let pid = child.id().expect("running").to_string();
    let signal = |name: &str| {
        assert!(std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
            .success());
    };
    let timeout = std::time::Duration::from_secs(30);
    let arrives = |db: &'static str, table: &'static str, label: &'static str| {
        let target = &target;
        async move {
            harness::eventually(&format!("{label} reaches the {db}"), timeout, || async {
                target
                    .count(&format!(
                        "SELECT count(*) FROM {table} WHERE label = '{label}'"
                    ))
                    .await
                    == 1
            })
            .await
        }
    };
    source
        .exec("INSERT INTO items (label) VALUES ('first')")
        .await;
    arrives("target", "items", "first").await;

    // WHEN the config is broken and the agent told to reload, THEN it says
    // so and goes on with the config it has
    std::fs::write(&agent.config, "this is [not toml").unwrap();
    signal("-HUP");
    source
        .exec("INSERT INTO items (label) VALUES ('second')")
        .await;
    arrives("target", "items", "second").await;

    // WHEN a valid config adds a table pair, THEN after the reload it syncs too
    std::fs::write(
        &agent.config,
        format!("{original}[[tables]]\nsource = \"extra\"\ntarget = \"extra\"\n"),
    )
    .unwrap();
    agent.install().await;
    signal("-HUP");
    source
        .exec("INSERT INTO extra (label) VALUES ('new pair')")
        .await;
    arrives("target", "extra", "new pair").await;
    source
        .exec("INSERT INTO items (label) VALUES ('third')")
        .await;
    arrives("target", "items", "third").await;

    harness::terminate(&mut child).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_reconciles_and_lists_dead_letters_while_the_service_runs() {
    // GIVEN the service running, a record the target refuses (a label
    // too long for its column) and the others synced
    let (source, target) = pair().await;
    target
        .exec("ALTER TABLE items MODIFY label VARCHAR(12)")
        .await;
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;
    source
        .exec("INSERT INTO items (label) VALUES ('short'), ('far too long for the target')")
        .await;
    let mut child = agent.command(&["run"]).spawn().expect("spawn");
    let timeout = std::time::Duration::from_secs(30);
    harness::eventually("the short label is copied", timeout, || async {
        target
            .count("SELECT count(*) FROM items WHERE label = 'short'")
            .await
            == 1
    })
    .await;

    // WHEN the operator lists the dead letters, THEN the running agent's
    // list is shown, the refused record in it
    harness::eventually("the refused record is listed", timeout, || async {
        let out = agent.output(&["dead-letters", "list"]).await;
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("items source key")
    })
    .await;
    let out = agent.output(&["dead-letters", "list"]).await;
    assert!(stderr(&out).contains("the service is running"), "{out:?}");
    // (retrying needs the state itself: refused, with why)
    let retry = agent.output(&["dead-letters", "retry"]).await;
    assert!(!retry.status.success());
    assert!(
        stderr(&retry).contains("stop it before dead-letters retry"),
        "{retry:?}"
    );

    // WHEN a copy is changed behind the agent's back and the operator
    // reconciles, THEN the difference and the record without a copy are
    // found, the service still running
    target
        .exec("SET @tandem_applying = 1; UPDATE items SET label = 'tampered' WHERE label = 'short'; SET @tandem_applying = NULL")
        .await;
    let out = agent.output(&["reconcile"]).await;
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{listed}\n{}", stderr(&out));
    assert!(stderr(&out).contains("the service is running"), "{out:?}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("items: source ") && l.ends_with("differ in label")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains("has no copy on the target")),
        "{listed}"
    );
    // AND repairing is left to a stopped service
    let repair = agent.output(&["reconcile", "--repair"]).await;
    assert!(!repair.status.success());
    assert!(
        stderr(&repair).contains("stop the service first"),
        "{repair:?}"
    );
    harness::terminate(&mut child).await;
}

/// The repository's root, where docs/ lives.
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf()
}

/// docs/cli.md is written from the command line's own definition; a
/// reference that differs from the binary's would describe options that
/// are gone or miss new ones.
#[test]
fn the_cli_reference_in_docs_is_what_the_binary_writes() {
    let out = std::process::Command::new(Agent::binary())
        .args(["man", "--markdown"])
        .output()
        .expect("run tandem-agent man --markdown");
    assert!(out.status.success(), "{}", stderr(&out));
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    let path = repo().join("docs/cli.md");
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    if written != generated {
        let first = written
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| written.lines().count().min(generated.lines().count()));
        panic!(
            "{} differs from what the binary writes (first at line {}): regenerate it with\n  {}",
            path.display(),
            first + 1,
            tandem_agent::cli::markdown::REGENERATE
        );
    }
}

/// `init` reads database catalogs only; given an API's URL, it names the
/// page that says how to describe one, and that page exists.
#[test]
fn init_given_an_api_names_the_page_that_describes_one() {
    let out = std::process::Command::new(Agent::binary())
        .args([
            "init",
            "--source",
            "https://api.example.com/v1",
            "--target",
            "sqlite://unused.db",
        ])
        .output()
        .expect("run tandem-agent init");
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("see docs/http.md"), "{err}");
    assert!(repo().join("docs/http.md").is_file());
}
