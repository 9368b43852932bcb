//! A user's story: two databases, one PostgreSQL and one MariaDB, kept in
//! step both ways by `tandem-agent run --once`. Every scenario runs with
//! PostgreSQL as the source and again with MariaDB as the source.

mod harness;

use harness::{Agent, Db, Engine, ENGINE_PAIRS};

/// customers <- orders, employees -> employees, posts <-> tags, notes.
async fn create_shop(db: &Db) {
    let (id, text) = (db.id(), db.text());
    let decimal = "DECIMAL(12,2)";
    for ddl in [
        format!("CREATE TABLE customers (id {id}, name {text}, email {text}, phone {text})"),
        format!(
            "CREATE TABLE orders (id {id}, customer_id BIGINT NOT NULL, amount {decimal}, note {text}, \
             FOREIGN KEY (customer_id) REFERENCES customers (id))"
        ),
        format!(
            "CREATE TABLE employees (id {id}, name {text}, manager_id BIGINT NULL, \
             FOREIGN KEY (manager_id) REFERENCES employees (id))"
        ),
        format!("CREATE TABLE posts (id {id}, title {text})"),
        format!("CREATE TABLE tags (id {id}, label {text})"),
        "CREATE TABLE post_tags (post_id BIGINT NOT NULL, tag_id BIGINT NOT NULL, PRIMARY KEY (post_id, tag_id), \
         FOREIGN KEY (post_id) REFERENCES posts (id), FOREIGN KEY (tag_id) REFERENCES tags (id))"
            .to_owned(),
        format!("CREATE TABLE notes (id {id}, body {text})"),
    ] {
        db.exec(&ddl).await;
    }
}

const SHOP: &[(&str, &str)] = &[
    ("orders", "orders"),
    ("customers", "customers"),
    ("employees", "employees"),
    ("post_tags", "post_tags"),
    ("posts", "posts"),
    ("tags", "tags"),
    ("notes", "notes"),
];

/// Each table by its natural content, references followed by name: equal
/// on both sides exactly when the records and their relations are.
async fn shop_content(db: &Db) -> Vec<Vec<Vec<Option<String>>>> {
    let mut out = Vec::new();
    for sql in [
        "SELECT name, email, phone FROM customers ORDER BY name, email",
        "SELECT c.name, o.amount, o.note FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY c.name, o.note",
        "SELECT e.name, m.name FROM employees e LEFT JOIN employees m ON m.id = e.manager_id ORDER BY e.name",
        "SELECT p.title, t.label FROM post_tags pt JOIN posts p ON p.id = pt.post_id JOIN tags t ON t.id = pt.tag_id ORDER BY 1, 2",
        "SELECT title FROM posts ORDER BY title",
        "SELECT label FROM tags ORDER BY label",
        "SELECT body FROM notes ORDER BY body",
    ] {
        out.push(db.rows(sql).await);
    }
    out
}

/// The applied counts per pair, as `status --json` reports them.
async fn applied_totals(agent: &Agent) -> Vec<serde_json::Value> {
    let status: serde_json::Value =
        serde_json::from_str(&agent.ok(&["status", "--json"]).await).expect("JSON");
    status["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| p["applied"].clone())
        .collect()
}

async fn assert_in_step(source: &Db, target: &Db) {
    let (s, t) = (shop_content(source).await, shop_content(target).await);
    assert_eq!(s, t, "source and target differ");
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sync_then_every_kind_of_change_both_ways() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let source = Db::create(source_engine).await;
        let target = Db::create(target_engine).await;
        create_shop(&source).await;
        create_shop(&target).await;

        // GIVEN a source with customers, orders, a reporting chain and
        // tagged posts, and a target that already has a record of its own.
        source
            .exec("INSERT INTO customers (name, email, phone) VALUES ('Ada', 'ada@example.com', '1'), ('Bob', 'bob@example.com', '2')")
            .await;
        source
            .exec("INSERT INTO orders (customer_id, amount, note) SELECT id, 10.50, 'first' FROM customers WHERE name = 'Ada'")
            .await;
        source
            .exec("INSERT INTO orders (customer_id, amount, note) SELECT id, 99.99, 'bob''s' FROM customers WHERE name = 'Bob'")
            .await;
        source
            .exec("INSERT INTO employees (name) VALUES ('Boss')")
            .await;
        source
            .exec("INSERT INTO employees (name, manager_id) SELECT 'Mid', id FROM employees WHERE name = 'Boss'")
            .await;
        source
            .exec("INSERT INTO employees (name, manager_id) SELECT 'Low', id FROM employees WHERE name = 'Mid'")
            .await;
        source
            .exec("INSERT INTO posts (title) VALUES ('hello'), ('again')")
            .await;
        source
            .exec("INSERT INTO tags (label) VALUES ('rust'), ('sql')")
            .await;
        source
            .exec("INSERT INTO post_tags (post_id, tag_id) SELECT p.id, t.id FROM posts p, tags t WHERE p.title = 'hello'")
            .await;
        source
            .exec("INSERT INTO notes (body) VALUES ('keep me')")
            .await;
        target
            .exec("INSERT INTO customers (name, email, phone) VALUES ('Cy', 'cy@example.com', '3')")
            .await;
        target
            .exec("INSERT INTO orders (customer_id, amount, note) SELECT id, 1.00, 'cy order' FROM customers WHERE name = 'Cy'")
            .await;
        target
            .exec("INSERT INTO employees (name) VALUES ('Solo')")
            .await;

        // WHEN the agent installs its triggers and runs once
        let agent = Agent::new(&source, &target, SHOP, "");
        agent.install().await;
        let report = agent.once().await;

        // THEN both sides hold every record, relations intact
        assert!(report.contains("in step"), "{report}");
        assert_in_step(&source, &target).await;
        assert_eq!(
            target.count("SELECT count(*) FROM customers").await,
            3,
            "{source_engine:?} -> {target_engine:?}"
        );
        assert_eq!(source.count("SELECT count(*) FROM employees").await, 4);

        // WHEN both sides change: inserts, updates, deletes, a key change
        source
            .exec(
                "INSERT INTO customers (name, email, phone) VALUES ('Dee', 'dee@example.com', '4')",
            )
            .await;
        source
            .exec("INSERT INTO orders (customer_id, amount, note) SELECT id, 5.25, 'dee order' FROM customers WHERE name = 'Dee'")
            .await;
        source
            .exec("UPDATE customers SET phone = '111' WHERE name = 'Ada'")
            .await;
        source
            .exec("DELETE FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE name = 'Bob')")
            .await;
        source
            .exec("DELETE FROM customers WHERE name = 'Bob'")
            .await;
        source.exec("UPDATE notes SET id = id + 1000").await;
        source
            .exec("INSERT INTO post_tags (post_id, tag_id) SELECT p.id, t.id FROM posts p, tags t WHERE p.title = 'again' AND t.label = 'sql'")
            .await;
        target
            .exec(
                "INSERT INTO customers (name, email, phone) VALUES ('Eve', 'eve@example.com', '5')",
            )
            .await;
        target
            .exec("UPDATE customers SET email = 'cy@new.example' WHERE name = 'Cy'")
            .await;
        target.exec("DELETE FROM orders WHERE note = 'first'").await;
        target
            .exec("UPDATE employees SET manager_id = (SELECT id FROM (SELECT id FROM employees WHERE name = 'Solo') s) WHERE name = 'Low'")
            .await;
        target
            .exec(
                "DELETE FROM post_tags WHERE tag_id IN (SELECT id FROM tags WHERE label = 'rust')",
            )
            .await;
        agent.once().await;

        // THEN they are in step again
        assert_in_step(&source, &target).await;
        assert_eq!(
            target
                .rows("SELECT phone FROM customers WHERE name = 'Ada'")
                .await,
            vec![vec![Some("111".into())]]
        );
        assert_eq!(
            target
                .count("SELECT count(*) FROM customers WHERE name = 'Bob'")
                .await,
            0
        );
        assert_eq!(
            source
                .count("SELECT count(*) FROM orders WHERE note = 'first'")
                .await,
            0
        );
        assert_eq!(target.count("SELECT count(*) FROM notes").await, 1);

        // AND nothing echoes: the agent's own writes were not captured, so
        // another pass applies nothing.
        assert_eq!(source.pending_changes().await, 0);
        assert_eq!(target.pending_changes().await, 0);
        let before = applied_totals(&agent).await;
        agent.once().await;
        assert_eq!(
            applied_totals(&agent).await,
            before,
            "a pass with no changes applied something"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_contact_example_source_wins_whole() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let source = Db::create(source_engine).await;
        let target = Db::create(target_engine).await;
        for db in [&source, &target] {
            db.exec(&format!(
                "CREATE TABLE contacts (id {}, first_name {t}, last_name {t}, email {t}, phone {t})",
                db.id(),
                t = db.text()
            ))
            .await;
        }
        // GIVEN John Doe, synced to both sides
        source
            .exec("INSERT INTO contacts (first_name, last_name, email, phone) VALUES ('John', 'Doe', 'john.doe@example.com', '123-456-7890')")
            .await;
        let agent = Agent::new(&source, &target, &[("contacts", "contacts")], "");
        agent.install().await;
        agent.once().await;

        // WHEN the source changes the email and the target the phone
        source
            .exec("UPDATE contacts SET email = 'john.new@example.com'")
            .await;
        target
            .exec("UPDATE contacts SET phone = '987-654-3210'")
            .await;
        let report = agent.once().await;

        // THEN both sides hold the new email and the OLD phone
        let expected = vec![vec![
            Some("John".to_owned()),
            Some("Doe".to_owned()),
            Some("john.new@example.com".to_owned()),
            Some("123-456-7890".to_owned()),
        ]];
        let sql = "SELECT first_name, last_name, email, phone FROM contacts";
        assert_eq!(
            source.rows(sql).await,
            expected,
            "source, {source_engine:?}"
        );
        assert_eq!(
            target.rows(sql).await,
            expected,
            "target, {target_engine:?}"
        );
        // AND the conflict was counted
        let status = agent.ok(&["status", "--json"]).await;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["pairs"][0]["conflicts"], 1, "{report}\n{status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn target_wins_when_configured() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE contacts (id {}, email {t}, phone {t})",
            db.id(),
            t = db.text()
        ))
        .await;
    }
    source
        .exec("INSERT INTO contacts (email, phone) VALUES ('a@x', '1')")
        .await;
    let agent = Agent::new(
        &source,
        &target,
        &[("contacts", "contacts")],
        "[sync]\nconflict = \"target-wins\"\n",
    );
    agent.install().await;
    agent.once().await;
    source.exec("UPDATE contacts SET email = 'b@x'").await;
    target.exec("UPDATE contacts SET phone = '2'").await;
    agent.once().await;
    let expected = vec![vec![Some("a@x".to_owned()), Some("2".to_owned())]];
    assert_eq!(
        source.rows("SELECT email, phone FROM contacts").await,
        expected
    );
    assert_eq!(
        target.rows("SELECT email, phone FROM contacts").await,
        expected
    );
}
