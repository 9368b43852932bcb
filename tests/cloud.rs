//! A database table and a cloud application's objects, kept in step through
//! its REST API: a PostgreSQL or MariaDB table and a Parse Server class,
//! configured only through the TOML file.

mod harness;

use std::process::Stdio;
use std::time::Duration;

use harness::parse::{object, pointer, Options, ParseServer};
use harness::{eventually, Agent, Db, Engine};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A config syncing `db` (source) with `parse` (target).
fn config(db: &Db, parse: &ParseServer, tables: &str, objects: &str, extra: &str) -> Agent {
    let toml = format!(
        "state_dir = \"state\"\n\n[source]\nkind = \"{}\"\nurl = \"{}\"\npoll_interval = \"50ms\"\n\n{}\n{tables}\n{extra}",
        db.engine.kind(),
        db.url,
        parse.endpoint("target", objects),
    );
    Agent::with_config(tempfile::tempdir().expect("temp dir"), &toml)
}

async fn customers_table(db: &Db) {
    db.exec(&format!(
        "CREATE TABLE customers (id {}, name {} NOT NULL, email {}, score INT, signed_up {})",
        db.id(),
        db.text(),
        db.text(),
        if db.engine == Engine::Postgres {
            "TIMESTAMPTZ"
        } else {
            "DATETIME(3)"
        }
    ))
    .await;
}

const CUSTOMER_FIELDS: &str = r#"name = "text", email = "text", score = "integer""#;

/// The customers of the database, as (name, email, score), sorted.
async fn db_customers(db: &Db) -> Vec<(String, Option<String>, Option<i64>)> {
    let mut rows: Vec<_> = db
        .rows("SELECT name, email, score FROM customers")
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].clone().expect("name"),
                r[1].clone(),
                r[2].as_ref().map(|s| s.parse().expect("score")),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The customers of Parse, as (name, email, score), sorted.
async fn parse_customers(parse: &ParseServer) -> Vec<(String, Option<String>, Option<i64>)> {
    let mut rows: Vec<_> = parse
        .all("Customer")
        .await
        .into_iter()
        .map(|o| {
            (
                o["name"].as_str().expect("name").to_owned(),
                o["email"].as_str().map(str::to_owned),
                o["score"].as_i64(),
            )
        })
        .collect();
    rows.sort();
    rows
}

async fn applied(agent: &Agent, direction: &str, kind: &str) -> u64 {
    agent.applied().await[0][direction][kind]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_and_a_parse_class_stay_in_step_both_ways() {
    for engine in [Engine::Postgres, Engine::Mysql] {
        let db = Db::create(engine).await;
        let parse = ParseServer::start(Options::default()).await;
        customers_table(&db).await;
        // Each side starts with records of its own.
        db.exec("INSERT INTO customers (name, email, score) VALUES ('Ada', 'ada@example.com', 10)")
            .await;
        db.exec("INSERT INTO customers (name, email, score) VALUES ('Brian', NULL, 20)")
            .await;
        parse
            .create(
                "Customer",
                json!({"name": "Chen", "email": "chen@example.com", "score": 30}),
            )
            .await;
        let agent = config(
            &db,
            &parse,
            "[[tables]]\nsource = \"customers\"\ntarget = \"Customer\"\n",
            &object("target", "Customer", CUSTOMER_FIELDS),
            "",
        );
        agent.install().await;
        agent.ok(&["check"]).await;

        // First run: both copied both ways, the ID map built.
        agent.once().await;
        let expected = vec![
            (
                "Ada".to_owned(),
                Some("ada@example.com".to_owned()),
                Some(10),
            ),
            ("Brian".to_owned(), None, Some(20)),
            (
                "Chen".to_owned(),
                Some("chen@example.com".to_owned()),
                Some(30),
            ),
        ];
        assert_eq!(
            db_customers(&db).await,
            expected,
            "{engine:?}: database after the first sync"
        );
        assert_eq!(
            parse_customers(&parse).await,
            expected,
            "{engine:?}: Parse after the first sync"
        );

        // From now on the agent runs as a service.
        let mut child = agent
            .command(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent");

        // Database -> Parse: insert, update, delete.
        db.exec(
            "INSERT INTO customers (name, email, score) VALUES ('Dora', 'dora@example.com', 40)",
        )
        .await;
        db.exec("UPDATE customers SET score = 11, email = NULL WHERE name = 'Ada'")
            .await;
        db.exec("DELETE FROM customers WHERE name = 'Brian'").await;
        let want = vec![
            ("Ada".to_owned(), None, Some(11)),
            (
                "Chen".to_owned(),
                Some("chen@example.com".to_owned()),
                Some(30),
            ),
            (
                "Dora".to_owned(),
                Some("dora@example.com".to_owned()),
                Some(40),
            ),
        ];
        eventually("database changes reach Parse", WAIT, || async {
            parse_customers(&parse).await == want
        })
        .await;

        // Parse -> database: insert, update, delete.
        let eve = parse
            .create("Customer", json!({"name": "Eve", "score": 50}))
            .await;
        let chen = parse
            .all("Customer")
            .await
            .into_iter()
            .find(|o| o["name"] == "Chen")
            .expect("Chen in Parse");
        parse
            .update(
                "Customer",
                chen["objectId"].as_str().unwrap(),
                json!({"score": 31}),
            )
            .await;
        let dora = parse
            .all("Customer")
            .await
            .into_iter()
            .find(|o| o["name"] == "Dora")
            .expect("Dora in Parse");
        parse
            .delete("Customer", dora["objectId"].as_str().unwrap())
            .await;
        let want = vec![
            ("Ada".to_owned(), None, Some(11)),
            (
                "Chen".to_owned(),
                Some("chen@example.com".to_owned()),
                Some(31),
            ),
            ("Eve".to_owned(), None, Some(50)),
        ];
        eventually("Parse changes reach the database", WAIT, || async {
            db_customers(&db).await == want
        })
        .await;
        assert_eq!(
            parse_customers(&parse).await,
            want,
            "{engine:?}: Parse holds the same"
        );
        assert!(parse.get("Customer", &eve).await["name"] == "Eve");

        // Echo suppression: what the agent wrote on one side never came
        // back as a change of that side. Database -> Parse wrote 1 insert,
        // 1 update, 1 delete (plus the first sync's 2 inserts), Parse ->
        // database 1 insert, 1 update, 1 delete (plus 1). A last pass after
        // the service stopped applies whatever was still captured, so an
        // echo on its way is counted too.
        harness::terminate(&mut child).await;
        agent.once().await;
        for (direction, counts) in [
            ("source_to_target", [3, 1, 1]),
            ("target_to_source", [2, 1, 1]),
        ] {
            for (kind, want) in ["inserted", "updated", "deleted"].into_iter().zip(counts) {
                assert_eq!(
                    applied(&agent, direction, kind).await,
                    want,
                    "{engine:?}: {direction} {kind} (an echo would add to these)"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_key_and_a_parse_pointer_stay_linked() {
    let db = Db::create(Engine::Postgres).await;
    let parse = ParseServer::start(Options::default()).await;
    db.exec("CREATE TABLE companies (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
        .await;
    db.exec("CREATE TABLE people (id SERIAL PRIMARY KEY, name TEXT NOT NULL, company_id INT REFERENCES companies(id))")
        .await;
    db.exec("INSERT INTO companies (name) VALUES ('Acme')")
        .await;
    db.exec(
        "INSERT INTO people (name, company_id) SELECT 'Ann', id FROM companies WHERE name = 'Acme'",
    )
    .await;
    let objects = format!(
        "{}\n{}",
        object("target", "Company", r#"name = "text""#),
        object(
            "target",
            "Person",
            &format!(r#"name = "text", company = {}"#, pointer("Company"))
        )
    );
    let tables = r#"
[[tables]]
source = "companies"
target = "Company"

[[tables]]
source = "people"
target = "Person"
[tables.to_target.columns]
company = { relation = "companies", column = "company_id" }
[tables.to_source.columns]
company_id = { relation = "companies", column = "company" }
"#;
    let agent = config(&db, &parse, tables, &objects, "");
    agent.install().await;
    agent.once().await;

    // The database's reference became a pointer to the company's copy.
    let company = parse.all("Company").await.remove(0);
    let person = parse.all("Person").await.remove(0);
    assert_eq!(person["name"], "Ann");
    assert_eq!(person["company"]["__type"], "Pointer");
    assert_eq!(person["company"]["objectId"], company["objectId"]);

    // A pointer made in Parse became the database's foreign key.
    let globex = parse.create("Company", json!({"name": "Globex"})).await;
    parse
        .create(
            "Person",
            json!({"name": "Bo", "company": {"__type": "Pointer", "className": "Company", "objectId": globex}}),
        )
        .await;
    // Re-pointing an existing person travels too.
    parse
        .update(
            "Person",
            person["objectId"].as_str().unwrap(),
            json!({"company": {"__type": "Pointer", "className": "Company", "objectId": globex}}),
        )
        .await;
    agent.once().await;
    let rows = db
        .rows("SELECT p.name, c.name FROM people p LEFT JOIN companies c ON c.id = p.company_id ORDER BY p.name")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![Some("Ann".into()), Some("Globex".into())],
            vec![Some("Bo".into()), Some("Globex".into())],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_is_settled_by_the_policy_for_the_whole_record() {
    let db = Db::create(Engine::Postgres).await;
    let parse = ParseServer::start(Options::default()).await;
    customers_table(&db).await;
    db.exec("INSERT INTO customers (name, email, score) VALUES ('Ada', 'ada@example.com', 10)")
        .await;
    let agent = config(
        &db,
        &parse,
        "[[tables]]\nsource = \"customers\"\ntarget = \"Customer\"\n",
        &object("target", "Customer", CUSTOMER_FIELDS),
        "[sync]\nconflict = \"source-wins\"\n",
    );
    agent.install().await;
    agent.once().await;
    // Both sides change the same record while the agent is stopped.
    let ada = parse.all("Customer").await.remove(0);
    parse
        .update(
            "Customer",
            ada["objectId"].as_str().unwrap(),
            json!({"email": "cloud@example.com"}),
        )
        .await;
    db.exec("UPDATE customers SET score = 12 WHERE name = 'Ada'")
        .await;
    agent.once().await;
    // Source wins, whole: the database's record everywhere.
    let want = vec![(
        "Ada".to_owned(),
        Some("ada@example.com".to_owned()),
        Some(12),
    )];
    assert_eq!(db_customers(&db).await, want);
    assert_eq!(parse_customers(&parse).await, want);
    let status: serde_json::Value =
        serde_json::from_str(&agent.ok(&["status", "--json"]).await).expect("JSON");
    assert_eq!(status["pairs"][0]["conflicts"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_429s_slows_the_agent_down_but_loses_nothing() {
    let db = Db::create(Engine::Mysql).await;
    // Parse's own rate limiter: 8 requests a second, the master key included.
    let parse = ParseServer::start(Options {
        requests_per_second: Some(8),
    })
    .await;
    customers_table(&db).await;
    for i in 0..25 {
        db.exec(&format!(
            "INSERT INTO customers (name, score) VALUES ('c{i:02}', {i})"
        ))
        .await;
    }
    // The agent is told it may go much faster than the server allows.
    let agent = config(
        &db,
        &parse,
        "[[tables]]\nsource = \"customers\"\ntarget = \"Customer\"\n",
        &object("target", "Customer", CUSTOMER_FIELDS),
        "",
    );
    let text = std::fs::read_to_string(&agent.config).unwrap().replace(
        "reconcile_interval = \"1s\"",
        "reconcile_interval = \"1s\"\nrequests_per_second = 500\nattempts = 50",
    );
    std::fs::write(&agent.config, text).unwrap();
    agent.install().await;
    let out = agent
        .command(&["run", "--once"])
        .env("RUST_LOG", "tandem_connectors=info")
        .output()
        .await
        .expect("run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run --once failed:\n{log}");
    assert!(
        log.contains("rate limited by the API (429)"),
        "the server never said 429, the test proves nothing:\n{log}"
    );
    let names: Vec<String> = parse_customers(&parse)
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    let want: Vec<String> = (0..25).map(|i| format!("c{i:02}")).collect();
    assert_eq!(names, want, "every record once, none twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_sync_neither_loses_nor_duplicates_a_record() {
    let db = Db::create(Engine::Postgres).await;
    let parse = ParseServer::start(Options::default()).await;
    customers_table(&db).await;
    db.exec("INSERT INTO customers (name, score) SELECT 'p' || lpad(g::text, 3, '0'), g FROM generate_series(1, 150) g")
        .await;
    for i in 0..30 {
        parse
            .create("Customer", json!({"name": format!("q{i:03}"), "score": i}))
            .await;
    }
    let agent = config(
        &db,
        &parse,
        "[[tables]]\nsource = \"customers\"\ntarget = \"Customer\"\n",
        &object("target", "Customer", CUSTOMER_FIELDS),
        "",
    );
    agent.install().await;
    // Killed (SIGKILL) again and again while it copies, at varying moments.
    let mut kills = 0;
    for round in 0..12u64 {
        let mut child = agent
            .command(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        // Killed once it has made progress: a new copy in Parse (while the
        // copy goes on) or the last change arrived (once it is done).
        let before = parse.all("Customer").await.len();
        let changed = format!("p{round:03}");
        eventually("the agent makes progress", WAIT, || async {
            let now = parse.all("Customer").await;
            now.len() > before
                || (now.len() == 180
                    && (round == 0
                        || now.iter().any(|o| {
                            o["name"] == changed.as_str() && o["score"].as_i64() > Some(1000)
                        })))
        })
        .await;
        harness::sigkill(&mut child).await;
        kills += 1;
        // Changes keep coming on both sides between the kills.
        db.exec(&format!(
            "UPDATE customers SET score = score + 1000 WHERE name = 'p{:03}'",
            round + 1
        ))
        .await;
    }
    agent.once().await;
    let db_rows = db_customers(&db).await;
    let parse_rows = parse_customers(&parse).await;
    assert_eq!(
        db_rows.len(),
        180,
        "after {kills} kills the database holds {} records",
        db_rows.len()
    );
    assert_eq!(
        parse_rows, db_rows,
        "after {kills} kills both sides hold the same records, each once"
    );
    assert_eq!(
        db_rows[0].2,
        Some(1001),
        "a change made between kills arrived"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_api_refuses_is_dead_lettered_with_its_message_and_the_rest_flow() {
    let db = Db::create(Engine::Postgres).await;
    let parse = ParseServer::start(Options::default()).await;
    customers_table(&db).await;
    // Parse has made `email` a Number field: a text email is refused.
    parse
        .create("Customer", json!({"name": "Typed", "email": 1}))
        .await;
    db.exec("INSERT INTO customers (name, score) VALUES ('Ann', 1), ('Bob', 2)")
        .await;
    db.exec("INSERT INTO customers (name, email, score) VALUES ('Bad', 'bad@example.com', 3)")
        .await;
    let agent = config(
        &db,
        &parse,
        "[[tables]]\nsource = \"customers\"\ntarget = \"Customer\"\n",
        &object("target", "Customer", CUSTOMER_FIELDS),
        "",
    );
    agent.install().await;
    let out = agent.output(&["run", "--once"]).await;
    let letters = agent.ok(&["dead-letters", "list"]).await;
    assert!(
        letters.contains("customers") && letters.to_lowercase().contains("schema mismatch"),
        "the API's message is kept: {letters}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = parse_customers(&parse)
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(names, vec!["Ann", "Bob", "Typed"], "the others arrived");
    // The cause fixed (the field dropped from the class), a retry applies it.
    parse.drop_field("Customer", "email").await;
    agent.ok(&["dead-letters", "retry"]).await;
    agent.once().await;
    let bad = parse
        .all("Customer")
        .await
        .into_iter()
        .find(|o| o["name"] == "Bad")
        .expect("Bad arrived after the retry");
    assert_eq!(bad["email"], "bad@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_without_a_modification_time_is_refused_by_check() {
    let db = Db::create(Engine::Postgres).await;
    let parse = ParseServer::start(Options::default()).await;
    customers_table(&db).await;
    let agent = config(
        &db,
        &parse,
        "[[tables]]\nsource = \"customers\"\ntarget = \"Customer\"\n",
        &object("target", "Customer", CUSTOMER_FIELDS).replace("modified = \"updatedAt\"\n", ""),
        "",
    );
    for command in [&["check"][..], &["run", "--once"][..]] {
        let out = agent.output(command).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?} accepted it");
        assert!(
            err.contains("target.objects[0] (Customer).modified: no modification-time field"),
            "{command:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_parse_server_example_config_syncs_as_shipped() {
    let db = Db::create(Engine::Postgres).await;
    let parse = ParseServer::start(Options::default()).await;
    db.exec("CREATE TABLE companies (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
        .await;
    db.exec(
        "CREATE TABLE customers (id SERIAL PRIMARY KEY, name TEXT NOT NULL, email TEXT, \
         score INT, company_id INT REFERENCES companies (id))",
    )
    .await;
    db.exec("INSERT INTO companies (name) VALUES ('Acme')")
        .await;
    db.exec("INSERT INTO customers (name, score, company_id) SELECT 'Ann', 7, id FROM companies")
        .await;
    // The example, pointed at this test's servers and nothing else changed.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/postgres-parse.toml"),
    )
    .expect("read the example");
    let text = example
        .replace("postgres://tandem@127.0.0.1:5432/crm", &db.url)
        .replace("https://parse.example.com/parse", &parse.url)
        .replace("\"crm\" }", &format!("\"{}\" }}", harness::parse::APP_ID))
        .replace("/var/lib/tandem/crm-parse", "state")
        .replace("poll_interval = \"2s\"", "poll_interval = \"100ms\"");
    assert_ne!(text, example);
    let agent = Agent::with_config(tempfile::tempdir().expect("temp dir"), &text);
    agent.install().await;
    agent.ok(&["check"]).await;
    agent.once().await;
    let ann = parse.all("Customer").await.remove(0);
    let acme = parse.all("Company").await.remove(0);
    assert_eq!(
        (ann["name"].as_str(), ann["score"].as_i64()),
        (Some("Ann"), Some(7))
    );
    assert_eq!(ann["company"]["objectId"], acme["objectId"]);
    parse
        .create("Customer", json!({"name": "Bo", "company": {"__type": "Pointer", "className": "Company", "objectId": acme["objectId"]}}))
        .await;
    agent.once().await;
    assert_eq!(
        db.rows("SELECT c.name FROM customers c JOIN companies co ON co.id = c.company_id WHERE co.name = 'Acme' ORDER BY 1")
            .await,
        vec![vec![Some("Ann".into())], vec![Some("Bo".into())]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parse_as_the_source_and_mariadb_as_the_target() {
    let db = Db::create(Engine::Mysql).await;
    let parse = ParseServer::start(Options::default()).await;
    customers_table(&db).await;
    parse
        .create("Customer", json!({"name": "Ida", "score": 1}))
        .await;
    let toml = format!(
        "state_dir = \"state\"\n\n{}\n[target]\nkind = \"mysql\"\nurl = \"{}\"\npoll_interval = \"50ms\"\n\n[[tables]]\nsource = \"Customer\"\ntarget = \"customers\"\n\n[sync]\nconflict = \"source-wins\"\n",
        parse.endpoint("source", &object("source", "Customer", CUSTOMER_FIELDS)),
        db.url,
    );
    let agent = Agent::with_config(tempfile::tempdir().expect("temp dir"), &toml);
    agent.install().await;
    agent.once().await;
    assert_eq!(
        db_customers(&db).await,
        vec![("Ida".to_owned(), None, Some(1))]
    );
    db.exec("INSERT INTO customers (name, score) VALUES ('Jo', 2)")
        .await;
    let ida = parse.all("Customer").await.remove(0);
    parse
        .update(
            "Customer",
            ida["objectId"].as_str().unwrap(),
            json!({"email": "ida@example.com"}),
        )
        .await;
    agent.once().await;
    let want = vec![
        (
            "Ida".to_owned(),
            Some("ida@example.com".to_owned()),
            Some(1),
        ),
        ("Jo".to_owned(), None, Some(2)),
    ];
    assert_eq!(db_customers(&db).await, want);
    assert_eq!(parse_customers(&parse).await, want);
}
