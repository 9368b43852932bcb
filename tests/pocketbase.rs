//! A database table and a PocketBase collection kept in step, configured
//! with `preset = "pocketbase"` and a list of fields: the second cloud
//! application of the tests, shaped unlike Parse (records under `items`,
//! a filter expression, page numbers, its own time format, no NULL, a
//! client's own ids).

mod harness;

use std::process::Stdio;
use std::time::Duration;

use harness::pocketbase::{object, PocketBase};
use harness::{eventually, Agent, Db, Engine};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// A config syncing `db` (source) with `pb` (target).
fn config(db: &Db, pb: &PocketBase, tables: &str, objects: &str, extra: &str) -> Agent {
    let toml = format!(
        "state_dir = \"state\"\n\n[source]\nkind = \"{}\"\nurl = \"{}\"\npoll_interval = \"50ms\"\n\n{}\n{tables}\n{extra}",
        db.engine.kind(),
        db.url,
        pb.endpoint("target", objects),
    );
    Agent::with_config(tempfile::tempdir().expect("temp dir"), &toml)
}

const CUSTOMERS: &str = "[[tables]]\nsource = \"customers\"\ntarget = \"customers\"\n";
const CUSTOMER_FIELDS: &str = r#"name = "text", email = "text", score = "integer""#;

/// A customers table in `db` and a customers collection in `pb`.
async fn customers(db: &Db, pb: &PocketBase) {
    db.exec(&format!(
        "CREATE TABLE customers (id {}, name {} NOT NULL, email {}, score INT)",
        db.id(),
        db.text(),
        db.text(),
    ))
    .await;
    pb.collection(
        "customers",
        json!([
            {"name": "name", "type": "text", "required": true},
            {"name": "email", "type": "text"},
            {"name": "score", "type": "number"},
        ]),
    )
    .await;
}

/// A PostgreSQL customers table and a PocketBase customers collection,
/// both empty, and an agent syncing them through the preset.
async fn customers_synced() -> (Db, PocketBase, Agent) {
    let db = Db::create(Engine::Postgres).await;
    let pb = PocketBase::start().await;
    customers(&db, &pb).await;
    let agent = config(
        &db,
        &pb,
        CUSTOMERS,
        &object("target", "customers", CUSTOMER_FIELDS),
        "",
    );
    (db, pb, agent)
}

type Customer = (String, Option<String>, Option<i64>);

/// The customers of the database, as (name, email, score), sorted.
async fn db_customers(db: &Db) -> Vec<Customer> {
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

/// The customers of PocketBase, as (name, email, score), sorted; its ""
/// (never set) reads as None.
async fn pb_customers(pb: &PocketBase) -> Vec<Customer> {
    let mut rows: Vec<_> = pb
        .all("customers")
        .await
        .into_iter()
        .map(|o| {
            (
                o["name"].as_str().expect("name").to_owned(),
                o["email"]
                    .as_str()
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned),
                o["score"].as_i64(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn customer(name: &str, email: Option<&str>, score: i64) -> Customer {
    (name.to_owned(), email.map(str::to_owned), Some(score))
}

/// The id of the PocketBase customer called `name`.
async fn pb_id(pb: &PocketBase, name: &str) -> String {
    pb.all("customers")
        .await
        .into_iter()
        .find(|o| o["name"] == name)
        .and_then(|o| o["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{name} in PocketBase"))
}

async fn applied(agent: &Agent, direction: &str, kind: &str) -> u64 {
    agent.applied().await[0][direction][kind]
        .as_u64()
        .unwrap_or(0)
}

/// `run --once` with the HTTP endpoint's debug log: (stderr, the
/// requests it logged as `METHOD path`).
async fn once_logged(agent: &Agent) -> (String, Vec<String>) {
    let out = agent
        .command(&["run", "--once"])
        .env("RUST_LOG", "tandem_connectors::http=debug")
        .output()
        .await
        .expect("run");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "run --once failed:\n{log}");
    let requests = requests(&log);
    (log, requests)
}

/// The `API request` lines of a log, as their `request` field.
fn requests(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "API request")
        .filter_map(|line| line["fields"]["request"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_and_a_pocketbase_collection_stay_in_step_both_ways() {
    for engine in [Engine::Postgres, Engine::Mysql] {
        let db = Db::create(engine).await;
        let pb = PocketBase::start().await;
        customers(&db, &pb).await;
        db.exec("INSERT INTO customers (name, email, score) VALUES ('Ada', 'ada@example.com', 10)")
            .await;
        db.exec("INSERT INTO customers (name, email, score) VALUES ('Brian', NULL, 20)")
            .await;
        pb.create(
            "customers",
            json!({"name": "Chen", "email": "chen@example.com", "score": 30}),
        )
        .await;
        let agent = config(
            &db,
            &pb,
            CUSTOMERS,
            &object("target", "customers", CUSTOMER_FIELDS),
            "",
        );
        agent.install().await;
        agent.ok(&["check"]).await;

        // First run: both copied both ways.
        agent.once().await;
        let expected = vec![
            customer("Ada", Some("ada@example.com"), 10),
            customer("Brian", None, 20),
            customer("Chen", Some("chen@example.com"), 30),
        ];
        assert_eq!(db_customers(&db).await, expected, "{engine:?}: database");
        assert_eq!(pb_customers(&pb).await, expected, "{engine:?}: PocketBase");

        let mut child = agent
            .command(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent");

        // Database -> PocketBase: insert, update (a value cleared too), delete.
        db.exec(
            "INSERT INTO customers (name, email, score) VALUES ('Dora', 'dora@example.com', 40)",
        )
        .await;
        db.exec("UPDATE customers SET score = 11, email = NULL WHERE name = 'Ada'")
            .await;
        db.exec("DELETE FROM customers WHERE name = 'Brian'").await;
        let want = vec![
            customer("Ada", None, 11),
            customer("Chen", Some("chen@example.com"), 30),
            customer("Dora", Some("dora@example.com"), 40),
        ];
        eventually("database changes reach PocketBase", WAIT, || async {
            pb_customers(&pb).await == want
        })
        .await;

        // PocketBase -> database: insert, update, delete.
        pb.create("customers", json!({"name": "Eve", "score": 50}))
            .await;
        pb.update("customers", &pb_id(&pb, "Chen").await, json!({"score": 31}))
            .await;
        pb.delete("customers", &pb_id(&pb, "Dora").await).await;
        let want = vec![
            customer("Ada", None, 11),
            customer("Chen", Some("chen@example.com"), 31),
            customer("Eve", None, 50),
        ];
        eventually("PocketBase changes reach the database", WAIT, || async {
            db_customers(&db).await == want
        })
        .await;
        assert_eq!(pb_customers(&pb).await, want, "{engine:?}: PocketBase");

        // Echo suppression: what the agent wrote on one side never came
        // back as a change of that side, although PocketBase stamps a new
        // `updated` on every write.
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
async fn a_foreign_key_and_a_pocketbase_relation_stay_linked() {
    let db = Db::create(Engine::Postgres).await;
    let pb = PocketBase::start().await;
    db.exec("CREATE TABLE companies (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
        .await;
    db.exec("CREATE TABLE people (id SERIAL PRIMARY KEY, name TEXT NOT NULL, company_id INT REFERENCES companies(id))")
        .await;
    db.exec("INSERT INTO companies (name) VALUES ('Acme')")
        .await;
    db.exec("INSERT INTO people (name, company_id) SELECT 'Ann', id FROM companies")
        .await;
    db.exec("INSERT INTO people (name) VALUES ('Loner')").await;
    let companies = pb
        .collection(
            "companies",
            json!([{"name": "name", "type": "text", "required": true}]),
        )
        .await;
    pb.collection(
        "people",
        json!([
            {"name": "name", "type": "text", "required": true},
            {"name": "company", "type": "relation", "collectionId": companies, "maxSelect": 1},
        ]),
    )
    .await;
    let objects = format!(
        "{}\n{}",
        object("target", "companies", r#"name = "text""#),
        object(
            "target",
            "people",
            r#"name = "text", company = { type = "reference", object = "companies" }"#
        )
    );
    let tables = r#"
[[tables]]
source = "companies"
target = "companies"

[[tables]]
source = "people"
target = "people"
[tables.to_target.columns]
company = { relation = "companies", column = "company_id" }
[tables.to_source.columns]
company_id = { relation = "companies", column = "company" }
"#;
    let agent = config(&db, &pb, tables, &objects, "");
    agent.install().await;
    agent.ok(&["check"]).await;
    agent.once().await;

    // The foreign key became a relation to the company's copy; no company
    // stayed no company (PocketBase's "").
    let acme = pb.all("companies").await.remove(0);
    let people = pb.all("people").await;
    let ann = people.iter().find(|p| p["name"] == "Ann").expect("Ann");
    let loner = people.iter().find(|p| p["name"] == "Loner").expect("Loner");
    assert_eq!(ann["company"], acme["id"]);
    assert_eq!(loner["company"], "");

    // A relation made in PocketBase became the database's foreign key.
    let globex = pb.create("companies", json!({"name": "Globex"})).await;
    pb.create("people", json!({"name": "Bo", "company": globex}))
        .await;
    pb.update(
        "people",
        ann["id"].as_str().unwrap(),
        json!({"company": globex}),
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
            vec![Some("Loner".into()), None],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_sync_neither_loses_nor_duplicates_a_pocketbase_record() {
    let (db, pb, agent) = customers_synced().await;
    db.exec("INSERT INTO customers (name, score) SELECT 'p' || lpad(g::text, 3, '0'), g FROM generate_series(1, 150) g")
        .await;
    for i in 0..30 {
        pb.create("customers", json!({"name": format!("q{i:03}"), "score": i}))
            .await;
    }
    agent.install().await;
    // Killed (SIGKILL) again and again while it copies, at varying moments.
    for round in 0..12u64 {
        let mut child = agent
            .command(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        let before = pb.all("customers").await.len();
        let changed = format!("p{round:03}");
        eventually("the agent makes progress", WAIT, || async {
            let now = pb.all("customers").await;
            now.len() > before
                || (now.len() == 180
                    && (round == 0
                        || now.iter().any(|o| {
                            o["name"] == changed.as_str() && o["score"].as_i64() > Some(1000)
                        })))
        })
        .await;
        harness::sigkill(&mut child).await;
        // Changes keep coming on both sides between the kills.
        db.exec(&format!(
            "UPDATE customers SET score = score + 1000 WHERE name = 'p{:03}'",
            round + 1
        ))
        .await;
        pb.update(
            "customers",
            &pb_id(&pb, &format!("q{round:03}")).await,
            json!({"score": 2000 + round}),
        )
        .await;
    }
    agent.once().await;
    let db_rows = db_customers(&db).await;
    let pb_rows = pb_customers(&pb).await;
    assert_eq!(
        db_rows.len(),
        180,
        "the database holds {} records",
        db_rows.len()
    );
    assert_eq!(
        pb_rows, db_rows,
        "both sides hold the same records, each once"
    );
    assert_eq!(
        db_rows[0].2,
        Some(1001),
        "a database change made between kills arrived"
    );
    assert!(
        db_rows.contains(&customer("q011", None, 2011)),
        "a PocketBase change made between kills arrived"
    );
    assert_eq!(
        agent.ok(&["dead-letters", "list"]).await.trim(),
        "no dead letters",
        "no create was held"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_a_wrong_token_url_path_and_field_in_one_line_each() {
    let (_db, pb, good) = customers_synced().await;
    pb.create(
        "customers",
        json!({"name": "Ada", "email": "ada@example.com", "score": 1}),
    )
    .await;
    good.install().await;
    good.ok(&["check"]).await;
    let text = std::fs::read_to_string(&good.config).unwrap();
    let bad_token = good.dir.path().join("bad-token");
    std::fs::write(&bad_token, "eyJhbGciOiJIUzI1NiJ9.e30.bm90LWEtdG9rZW4").unwrap();
    let closed = harness::free_port();
    let cases = [
        (
            "a wrong token",
            text.replace(
                &pb.token_file.display().to_string(),
                &bad_token.display().to_string(),
            ),
            "the API refuses the credentials",
        ),
        (
            "a wrong URL",
            text.replace(&pb.url, &format!("http://127.0.0.1:{closed}")),
            "cannot reach the API",
        ),
        (
            "a wrong path",
            text.replace(
                "preset = \"pocketbase\"",
                "preset = \"pocketbase\"\npath = \"/api/collections/customer/records\"",
            ),
            "is path right?",
        ),
        (
            "a misspelt field",
            text.replace("email = \"text\"", "emial = \"text\""),
            "no listed record holds field \"emial\"; the records have \"email\"",
        ),
    ];
    for (what, toml, line) in cases {
        std::fs::write(&good.config, &toml).unwrap();
        let out = good.output(&["check"]).await;
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{what}: check passed:\n{err}");
        let naming: Vec<&str> = err.lines().filter(|l| l.contains(line)).collect();
        assert_eq!(naming.len(), 1, "{what}: one line saying {line:?}:\n{err}");
        assert!(
            !err.contains(pb.token()),
            "{what}: the token is never printed"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_whose_answer_cannot_be_read_is_never_sent_twice() {
    let db = Db::create(Engine::Postgres).await;
    let pb = PocketBase::start().await;
    customers(&db, &pb).await;
    db.exec("INSERT INTO customers (name, email, score) VALUES ('Ann', 'ann@example.com', 1), ('Bob', 'bob@example.com', 2)")
        .await;
    // The user's own preset (PocketBase's, without ids of the agent's
    // own), the answers read at the wrong place (the record is not
    // wrapped), and no way to find a create again.
    let broken = format!(
        "[[target.objects]]\nname = \"customers\"\npreset = \"my-pocketbase.toml\"\nrecord = \"data\"\nfields = {{ {CUSTOMER_FIELDS} }}\n"
    );
    let agent = config(&db, &pb, CUSTOMERS, &broken, "");
    std::fs::write(
        agent.dir.path().join("my-pocketbase.toml"),
        POCKETBASE_WITHOUT_OWN_IDS,
    )
    .unwrap();
    agent.install().await;
    for _ in 0..3 {
        let _ = agent.output(&["run", "--once"]).await;
    }
    assert_eq!(
        pb.all("customers").await.len(),
        2,
        "each create was sent once, however often the agent ran"
    );
    assert_eq!(
        db_customers(&db).await.len(),
        2,
        "the records the creates made were not copied back as new ones"
    );
    let letters = agent.ok(&["dead-letters", "list"]).await;
    assert!(
        letters.contains("customers")
            && letters.contains("its answer holds no id at \"data.id\"")
            && letters.contains("not sent again blindly"),
        "the held creates are named: {letters}"
    );

    // The config fixed, with a way to find a create by its values: the
    // records already made are found, linked, and not made again.
    let fixed = std::fs::read_to_string(&agent.config).unwrap().replace(
        "record = \"data\"",
        "find_created = { filter = \"email='{email}'\" }",
    );
    std::fs::write(&agent.config, fixed).unwrap();
    agent.ok(&["dead-letters", "retry"]).await;
    agent.once().await;
    assert_eq!(
        agent.ok(&["dead-letters", "list"]).await.trim(),
        "no dead letters"
    );
    db.exec("UPDATE customers SET score = 3 WHERE name = 'Ann'")
        .await;
    agent.once().await;
    assert_eq!(
        pb_customers(&pb).await,
        vec![
            customer("Ann", Some("ann@example.com"), 3),
            customer("Bob", Some("bob@example.com"), 2),
        ],
        "the found records are the copies: updated, not duplicated"
    );
}

/// The PocketBase preset without ids of the agent's own: a user's preset
/// file, as one writes for an API the agent does not ship.
const POCKETBASE_WITHOUT_OWN_IDS: &str = r#"
path = "/api/collections/{name}/records"
records = "items"
total = "totalItems"
id = "id"
modified = "updated"
created = "created"
update_method = "PATCH"
since = { filter = "updated >= '{since}'" }
order = { sort = "updated,id" }
time_format = "%Y-%m-%d %H:%M:%S%.3fZ"
limit_param = "perPage"
page_param = "page"
empty_is_null = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_without_a_page_size_never_has_a_record_taken_for_deleted() {
    let db = Db::create(Engine::Postgres).await;
    let pb = PocketBase::start().await;
    customers(&db, &pb).await;
    // More records than PocketBase lists when no page size is asked (30).
    for i in 0..45 {
        pb.create("customers", json!({"name": format!("c{i:02}"), "score": i}))
            .await;
    }
    // Written out by hand, as a user would without the preset, and
    // without limit_param, page_param or total.
    let hand_written = format!(
        r#"[[target.objects]]
name = "customers"
path = "/api/collections/customers/records"
records = "items"
id = "id"
modified = "updated"
created = "created"
update_method = "PATCH"
since = {{ filter = "updated >= '{{since}}'" }}
order = {{ sort = "updated,id" }}
time_format = "%Y-%m-%d %H:%M:%S%.3fZ"
empty_is_null = true
fields = {{ {CUSTOMER_FIELDS} }}
"#
    );
    let agent = config(&db, &pb, CUSTOMERS, &hand_written, "");
    agent.install().await;
    // Listed in time order, the API's pages are followed from the newest
    // time each showed: every record is read, and only a real delete is
    // found.
    agent.once().await;
    assert_eq!(db_customers(&db).await.len(), 45, "every record copied");
    pb.delete("customers", &pb_id(&pb, "c00").await).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.once().await;
    let names = |rows: Vec<Customer>| rows.into_iter().map(|c| c.0).collect::<Vec<_>>();
    let want: Vec<String> = (1..45).map(|i| format!("c{i:02}")).collect();
    assert_eq!(
        names(db_customers(&db).await),
        want,
        "c00 went, and only it"
    );

    // Without order too, a listing shows the API's first 30 records and
    // cannot be followed: check says so, and the comparison of ids, which
    // misses 14 of them, concludes nothing.
    let unordered = std::fs::read_to_string(&agent.config)
        .unwrap()
        .replace("order = { sort = \"updated,id\" }\n", "");
    std::fs::write(&agent.config, &unordered).unwrap();
    let checked = agent.output(&["check"]).await;
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("no order is set")
            || String::from_utf8_lossy(&checked.stderr).contains("no order is set"),
        "check warns: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    pb.delete("customers", &pb_id(&pb, "c01").await).await;
    let mut warned = String::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let out = agent.output(&["run", "--once"]).await;
        warned.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        warned.contains("the listing is incomplete") && warned.contains("set limit_param"),
        "the comparison refuses, naming the setting: {warned}"
    );
    assert_eq!(
        names(db_customers(&db).await),
        want,
        "no record missing from the cut listing was taken for deleted"
    );

    // The page size set: the real delete is found, and only it.
    let fixed = unordered.replace(
        "empty_is_null = true",
        "empty_is_null = true\nlimit_param = \"perPage\"\npage_param = \"page\"",
    );
    std::fs::write(&agent.config, fixed).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.once().await;
    assert_eq!(
        names(db_customers(&db).await),
        want[1..],
        "c01 went, and only it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_polled_at_its_own_interval_not_the_databases() {
    let (db, pb, agent) = customers_synced().await;
    // The database is polled every 50 ms, the API every 2 s.
    let text = std::fs::read_to_string(&agent.config)
        .unwrap()
        .replace("poll_interval = \"100ms\"", "poll_interval = \"2s\"")
        .replace("reconcile_interval = \"1s\"", "reconcile_interval = \"1h\"");
    std::fs::write(&agent.config, text).unwrap();
    agent.install().await;
    agent.once().await;
    let log = agent.dir.path().join("run.log");
    let mut child = agent
        .command(&["run"])
        .env("RUST_LOG", "tandem_connectors::http=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the agent");
    // A database change still travels at the database's pace.
    db.exec("INSERT INTO customers (name, score) VALUES ('Ada', 1)")
        .await;
    eventually("Ada reaches PocketBase", WAIT, || async {
        pb.all("customers").await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    harness::terminate(&mut child).await;
    let listings = requests(&std::fs::read_to_string(&log).unwrap())
        .into_iter()
        .filter(|r| r == "GET /api/collections/customers/records")
        .count();
    // About 5 s at one poll every 2 s (the database's 50 ms would make
    // a hundred); a slow machine only polls less.
    assert!(
        (1..=6).contains(&listings),
        "{listings} listings of the API in about 5 s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_answered_with_the_whole_record_is_not_read_back() {
    let (db, pb, agent) = customers_synced().await;
    agent.install().await;
    agent.once().await;
    db.exec("INSERT INTO customers (name, score) SELECT 'c' || g, g FROM generate_series(1, 20) g")
        .await;
    let (_, sent) = once_logged(&agent).await;
    let count = |method: &str, sent: &[String]| {
        sent.iter()
            .filter(|r| r.starts_with(method) && r.contains("/records"))
            .count()
    };
    let single_reads = |sent: &[String]| {
        sent.iter()
            .filter(|r| r.starts_with("GET /api/collections/customers/records/"))
            .count()
    };
    assert_eq!(count("POST", &sent), 20, "one create each: {sent:?}");
    assert_eq!(single_reads(&sent), 0, "no create read back: {sent:?}");
    db.exec("UPDATE customers SET score = score + 100 WHERE score <= 5")
        .await;
    let (_, sent) = once_logged(&agent).await;
    assert_eq!(count("PATCH", &sent), 5, "one update each: {sent:?}");
    assert_eq!(
        single_reads(&sent),
        5,
        "each update's record read once before it is written: {sent:?}"
    );
    assert_eq!(pb_customers(&pb).await.len(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pocketbase_example_config_syncs_as_shipped() {
    let db = Db::create(Engine::Postgres).await;
    let pb = PocketBase::start().await;
    db.exec("CREATE TABLE projects (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
        .await;
    db.exec(
        "CREATE TABLE tasks (id SERIAL PRIMARY KEY, title TEXT NOT NULL, done BOOLEAN, \
         due TIMESTAMPTZ, project_id INT REFERENCES projects (id))",
    )
    .await;
    db.exec("INSERT INTO projects (name) VALUES ('Launch')")
        .await;
    db.exec(
        "INSERT INTO tasks (title, done, due, project_id) \
         SELECT 'Write the notes', false, '2027-01-15 09:30:00.250+01', id FROM projects",
    )
    .await;
    let projects = pb
        .collection(
            "projects",
            json!([{"name": "name", "type": "text", "required": true}]),
        )
        .await;
    pb.collection(
        "tasks",
        json!([
            {"name": "title", "type": "text", "required": true},
            {"name": "done", "type": "bool"},
            {"name": "due", "type": "date"},
            {"name": "project", "type": "relation", "collectionId": projects, "maxSelect": 1},
        ]),
    )
    .await;
    // The example, pointed at this test's servers and nothing else changed.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/postgres-pocketbase.toml"),
    )
    .expect("read the example");
    let text = example
        .replace("postgres://tandem@127.0.0.1:5432/tasks", &db.url)
        .replace("https://pb.example.com", &pb.url)
        .replace(
            "/etc/tandem/pocketbase-token",
            &pb.token_file.display().to_string(),
        )
        .replace("/var/lib/tandem/tasks-pocketbase", "state")
        .replace("poll_interval = \"2s\"", "poll_interval = \"100ms\"");
    let agent = Agent::with_config(tempfile::tempdir().expect("temp dir"), &text);
    agent.install().await;
    agent.ok(&["check"]).await;
    agent.once().await;
    let launch = pb.all("projects").await.remove(0);
    let notes = pb.all("tasks").await.remove(0);
    assert_eq!(notes["title"], "Write the notes");
    assert_eq!(notes["project"], launch["id"]);
    assert_eq!(notes["due"], "2027-01-15 08:30:00.250Z");
    let launch = launch["id"].as_str().unwrap().to_owned();
    pb.create(
        "tasks",
        json!({"title": "Book the room", "done": true, "project": launch}),
    )
    .await;
    agent.once().await;
    assert_eq!(
        db.rows("SELECT t.title, t.done::text, t.due IS NULL, p.name FROM tasks t JOIN projects p ON p.id = t.project_id ORDER BY 1")
            .await,
        vec![
            vec![Some("Book the room".into()), Some("true".into()), Some("t".into()), Some("Launch".into())],
            vec![Some("Write the notes".into()), Some("false".into()), Some("f".into()), Some("Launch".into())],
        ]
    );
}
