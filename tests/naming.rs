//! A user's story: an existing business database, the same nine related
//! tables on PostgreSQL in snake_case and on MariaDB (or SQLite) in
//! PascalCase, synced with a config that names the tables and nothing
//! else. Every reference must survive, checked by what it points to while
//! the two sides' ids differ.

mod harness;

use harness::shop::{self, TABLES};
use harness::{Agent, Db, Engine};

/// A config naming each table once, its source only.
fn tables_only(source: &Db, target: &Db) -> Agent {
    let mut agent = Agent::new(source, target, &[], "");
    let mut toml = std::fs::read_to_string(&agent.config).unwrap();
    for table in TABLES {
        toml.push_str(&format!(
            "[[tables]]\nsource = \"{}\"\n\n",
            shop::styled(source, table)
        ));
    }
    agent = Agent::with_config(agent.dir, &toml);
    agent
}

/// Two shops that hold different records, so that their ids point at
/// different things.
async fn two_shops(target_engine: Engine) -> (Db, Db) {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(target_engine).await;
    shop::create(&source).await;
    shop::create(&target).await;
    shop::seed(&source, "North", 10).await;
    shop::seed(&target, "South", 6).await;
    (source, target)
}

async fn assert_same_business(source: &Db, target: &Db) {
    let (a, b) = (shop::facts(source).await, shop::facts(target).await);
    for table in TABLES {
        assert_eq!(a[table], b[table], "{table} differs");
    }
}

/// Whether `out` has a line that starts and ends so.
fn has_line(out: &str, starts: &str, ends: &str) -> bool {
    out.lines()
        .any(|l| l.starts_with(starts) && l.ends_with(ends))
}

async fn reconcile(agent: &Agent) -> (i32, String) {
    let out = agent.output(&["reconcile"]).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn first_sync_and_changes_both_ways(target_engine: Engine) {
    // GIVEN two shops, one per naming style, each with records of its own
    let (source, target) = two_shops(target_engine).await;
    let before = [shop::facts(&source).await, shop::facts(&target).await];
    // AND a config that names the tables, nothing more
    let agent = tables_only(&source, &target);
    agent.install().await;
    assert!(
        agent.ok(&["check"]).await.starts_with("ok:"),
        "check is silent on a correct config"
    );
    // AND plan shows the references followed through their pairs
    let plan: serde_json::Value =
        serde_json::from_str(&agent.ok(&["plan", "--json"]).await).expect("plan --json is JSON");
    assert_eq!(plan["problems"], serde_json::json!([]));
    let lines = plan["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "order_line")
        .expect("the order_line pair");
    let to_target = &lines["directions"][0];
    assert_eq!(to_target["key"]["mode"], "generated");
    let column = |name: &str| {
        to_target["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["column"] == name)
            .unwrap_or_else(|| panic!("{name} in {to_target}"))["from"]
            .clone()
    };
    let order = shop::styled(&target, "sales_order_id");
    assert_eq!(column(&order)["kind"], "relation");
    assert_eq!(column(&order)["pair"], "sales_order");
    assert_eq!(column(&order)["column"], "sales_order_id");
    assert_eq!(
        column(&shop::styled(&target, "quantity"))["column"],
        "quantity"
    );

    // WHEN the first sync runs
    agent.once().await;

    // THEN both sides hold both businesses, every reference intact
    assert_same_business(&source, &target).await;
    for table in TABLES {
        let facts = shop::facts(&source).await;
        assert_eq!(
            facts[table].len(),
            before[0][table].len() + before[1][table].len(),
            "{table}: every record once on each side"
        );
    }
    // AND the ids differ: the first source customer is not the first target one
    let first = "SELECT {name} FROM {customer} WHERE {customer_id} = 1";
    assert_ne!(
        source.value(&shop::sql(&source, first)).await,
        target.value(&shop::sql(&target, first)).await
    );

    // WHEN each side changes, references included
    source
        .exec(&shop::sql(
            &source,
            "UPDATE {sales_order} SET {customer_id} = (SELECT {customer_id} FROM {customer} \
             WHERE {name} = 'South Zoë Ångström 0') WHERE {note} = 'North order 1'",
        ))
        .await;
    source
        .exec(&shop::sql(
            &source,
            "DELETE FROM {order_line} WHERE {sales_order_id} = (SELECT {sales_order_id} \
             FROM {sales_order} WHERE {note} = 'North order 2') AND {quantity} = 3",
        ))
        .await;
    shop::add_order(&source, "North", 100, 10).await;
    let manager = shop::sql(
        &target,
        "SELECT {employee_id} FROM {employee} WHERE {full_name} = 'North staff 0'",
    );
    let manager = target.value(&manager).await.expect("copied employee");
    target
        .exec(&shop::sql(
            &target,
            &format!(
                "UPDATE {{employee}} SET {{manager_id}} = {manager} WHERE {{full_name}} = 'South staff 2'"
            ),
        ))
        .await;
    target
        .exec(&shop::sql(
            &target,
            "DELETE FROM {product_supplier} WHERE {lead_days} = 1",
        ))
        .await;
    shop::add_order(&target, "South", 100, 6).await;
    agent.once().await;

    // THEN the changes arrived both ways, every reference still intact
    assert_same_business(&source, &target).await;
    let moved = shop::sql(
        &target,
        "SELECT c.{name} FROM {sales_order} o JOIN {customer} c ON c.{customer_id} = o.{customer_id} \
         WHERE o.{note} = 'North order 1'",
    );
    assert_eq!(
        target.value(&moved).await.as_deref(),
        Some("South Zoë Ångström 0")
    );
    // AND reconcile finds both sides in step
    let (code, out) = reconcile(&agent).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_of_table_names_syncs_postgres_snake_case_with_mariadb_pascal_case() {
    first_sync_and_changes_both_ways(Engine::Mysql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_of_table_names_syncs_postgres_snake_case_with_sqlite_pascal_case() {
    first_sync_and_changes_both_ways(Engine::Sqlite).await;
}

/// Customers and their orders; the order's reference to its customer is
/// `customer_ref` on PostgreSQL and `CustomerId` on MariaDB.
async fn renamed_reference(rules: &str) -> (Db, Db, Agent) {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    source
        .exec(
            "CREATE TABLE customers (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE orders (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                                  customer_ref BIGINT NOT NULL REFERENCES customers (id), note TEXT);
             INSERT INTO customers (name) VALUES ('Ada'), ('Bea'), ('Cy');
             INSERT INTO orders (customer_ref, note) VALUES (2, 'for Bea'), (3, 'for Cy');",
        )
        .await;
    target
        .exec(
            "CREATE TABLE Customers (Id BIGINT AUTO_INCREMENT PRIMARY KEY, Name VARCHAR(50) NOT NULL)",
        )
        .await;
    target
        .exec(
            "CREATE TABLE Orders (Id BIGINT AUTO_INCREMENT PRIMARY KEY, CustomerId BIGINT NOT NULL, Note VARCHAR(50), \
             FOREIGN KEY (CustomerId) REFERENCES Customers (Id))",
        )
        .await;
    target
        .exec("INSERT INTO Customers (Name) VALUES ('Xia'), ('Yan')")
        .await;
    target
        .exec("INSERT INTO Orders (CustomerId, Note) VALUES (2, 'for Yan')")
        .await;
    let agent = Agent::new(
        &source,
        &target,
        &[("customers", "Customers"), ("orders", "Orders")],
        rules,
    );
    agent.install().await;
    (source, target, agent)
}

/// Each order's note and its customer's name.
async fn orders_of(db: &Db) -> Vec<Vec<Option<String>>> {
    let sql = match db.engine {
        Engine::Postgres => {
            "SELECT o.note, c.name FROM orders o JOIN customers c ON c.id = o.customer_ref ORDER BY 1"
        }
        _ => "SELECT o.Note, c.Name FROM Orders o JOIN Customers c ON c.Id = o.CustomerId ORDER BY 1",
    };
    db.rows(sql).await
}

const RENAMED: &str = r#"
[tables.to_target.columns]
CustomerId = "customer_ref"
[tables.to_source.columns]
customer_ref = "CustomerId"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_reference_mapped_as_a_column_is_translated_and_reconcile_checks_what_it_points_to(
) {
    // GIVEN an order's reference renamed between the two sides, mapped
    // the way one maps any other column
    let (source, target, agent) = renamed_reference(RENAMED).await;
    assert!(agent.ok(&["check"]).await.starts_with("ok:"));

    // WHEN synced
    agent.once().await;

    // THEN every order points at the same customer on both sides, although
    // their ids differ
    let expected = vec![
        vec![Some("for Bea".to_owned()), Some("Bea".to_owned())],
        vec![Some("for Cy".to_owned()), Some("Cy".to_owned())],
        vec![Some("for Yan".to_owned()), Some("Yan".to_owned())],
    ];
    assert_eq!(orders_of(&source).await, expected);
    assert_eq!(orders_of(&target).await, expected);
    assert_ne!(
        source
            .value("SELECT id FROM customers WHERE name = 'Bea'")
            .await,
        target
            .value("SELECT Id FROM Customers WHERE Name = 'Bea'")
            .await,
        "the ids differ"
    );
    let (code, out) = reconcile(&agent).await;
    assert_eq!(code, 0, "{out}");

    // WHEN a reference is changed behind the agent's back (its own marker
    // set, so the trigger does not capture it)
    target
        .exec(
            "SET @tandem_applying = 1; \
             UPDATE Orders SET CustomerId = (SELECT Id FROM Customers WHERE Name = 'Xia') WHERE Note = 'for Bea'; \
             SET @tandem_applying = NULL",
        )
        .await;

    // THEN reconcile finds the order that points at another customer
    let (code, out) = reconcile(&agent).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        has_line(&out, "orders: source ", "differ in CustomerId"),
        "{out}"
    );
    // AND --repair points it back at its customer
    let repaired = agent.output(&["reconcile", "--repair"]).await;
    assert!(repaired.status.success(), "{repaired:?}");
    assert_eq!(orders_of(&target).await, expected);
    let (code, out) = reconcile(&agent).await;
    assert_eq!(code, 0, "{out}");

    // WHEN, behind the agent's back, an order is moved to a customer the
    // target has no copy of
    source
        .exec(
            "BEGIN; SET LOCAL tandem.applying = 'on';
             INSERT INTO customers (name) VALUES ('Dee');
             UPDATE orders SET customer_ref = (SELECT id FROM customers WHERE name = 'Dee')
              WHERE note = 'for Cy';
             COMMIT;",
        )
        .await;
    // THEN reconcile finds the customer without a copy and the order whose
    // reference cannot be in step
    let (code, out) = reconcile(&agent).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        has_line(&out, "customers: source ", "has no copy on the target"),
        "{out}"
    );
    assert!(
        has_line(&out, "orders: source ", "differ in CustomerId"),
        "{out}"
    );
    // AND --repair copies the customer and points the order at the copy
    let repaired = agent.output(&["reconcile", "--repair"]).await;
    assert!(repaired.status.success(), "{repaired:?}");
    let moved = orders_of(&target).await;
    assert!(
        moved.contains(&vec![Some("for Cy".to_owned()), Some("Dee".to_owned())]),
        "{moved:?}"
    );
    assert_eq!(orders_of(&source).await, moved);
}

#[tokio::test(flavor = "multi_thread")]
async fn copying_a_reference_untranslated_must_be_asked_for_and_check_says_what_it_means() {
    let untranslated = RENAMED.replace(
        "CustomerId = \"customer_ref\"",
        "CustomerId = { column = \"customer_ref\", translate = false }",
    );
    let (_source, _target, agent) = renamed_reference(&untranslated).await;
    let out = agent.output(&["check"]).await;
    assert!(out.status.success(), "a warning, not an error: {out:?}");
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        lines.lines().any(|l| l.starts_with("warning: ")
            && l.contains("pair orders: source -> target: column CustomerId copies customer_ref untranslated (translate = false)")
            && l.contains("the source's keys of pair customers")),
        "{lines}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&agent.ok(&["plan", "--json"]).await).expect("plan --json is JSON");
    let orders = plan["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "orders")
        .unwrap();
    let column = orders["directions"][0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "CustomerId")
        .unwrap();
    assert_eq!(
        column["from"],
        serde_json::json!({"kind": "column", "column": "customer_ref", "translate": false, "references": "customers"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_writes_a_config_that_passes_check_and_syncs_both_ways() {
    // GIVEN two existing shops, one per naming style, a table only one
    // side has, and a table without a key
    let (source, target) = two_shops(Engine::Mysql).await;
    source
        .exec("CREATE TABLE audit_log (at TIMESTAMPTZ, what TEXT)")
        .await;
    target
        .exec("CREATE TABLE Warehouse (WarehouseId BIGINT AUTO_INCREMENT PRIMARY KEY)")
        .await;
    // AND a password in the source URL (the local server trusts any)
    let mut url = url::Url::parse(&source.url).unwrap();
    let password = url.password().unwrap_or("hunter2").to_owned();
    url.set_password(Some(&password)).unwrap();
    // The written config reads it from the environment.
    std::env::set_var("TANDEM_SOURCE_PASSWORD", &password);
    if let Some(secret) = url::Url::parse(&target.url).unwrap().password() {
        std::env::set_var("TANDEM_TARGET_PASSWORD", secret);
    }

    // WHEN the user runs init
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shop.toml");
    let out = tokio::process::Command::new(Agent::binary())
        .args(["init", "--source", url.as_str(), "--target", &target.url])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--output")
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&config).unwrap();

    // THEN the config pairs every table, holds no password, and says what
    // it left out
    assert!(!text.contains(&password), "{text}");
    assert!(text.contains("${TANDEM_SOURCE_PASSWORD}"), "{text}");
    for table in TABLES {
        assert!(
            text.contains(&format!(
                "source = \"{table}\"\ntarget = \"{}\"\n",
                shop::styled(&target, table)
            )),
            "{table} not paired:\n{text}"
        );
    }
    assert!(
        text.contains("# source table audit_log: no table of that name in the target"),
        "{text}"
    );
    assert!(
        text.contains("# target table Warehouse: no table of that name in the source"),
        "{text}"
    );
    // AND it passes check, and syncs both ways unchanged
    let agent = Agent {
        dir,
        config: config.clone(),
    };
    agent.install().await;
    assert!(agent.ok(&["check"]).await.starts_with("ok:"));
    agent.once().await;
    assert_same_business(&source, &target).await;
    // AND an existing file is never overwritten
    let again = tokio::process::Command::new(Agent::binary())
        .args([
            "init",
            "--source",
            url.as_str(),
            "--target",
            &target.url,
            "--output",
        ])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_every_problem_at_once_and_run_refuses_to_start() {
    // GIVEN the shops, the target's customer names stored as utf8mb3
    let (source, target) = two_shops(Engine::Mysql).await;
    target
        .exec("ALTER TABLE Customer MODIFY Name VARCHAR(200) CHARACTER SET utf8mb3 NOT NULL")
        .await;
    // AND a config with a typo in a table name, a link table whose linked
    // tables are not synced, and a pair whose tables share no column
    let agent = Agent::new(
        &source,
        &target,
        &[
            ("customer", "Customer"),
            ("categry", "Category"),
            ("product_supplier", "ProductSupplier"),
            ("supplier", "Employee"),
        ],
        "",
    );

    // WHEN checked
    let out = agent.output(&["check"]).await;
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();

    // THEN every problem is on a line of its own, with what to do
    assert!(!out.status.success(), "{lines}");
    for expected in [
        "source: Tandem change table is not installed: run `tandem-agent install-triggers",
        "target: Tandem change table is not installed",
        "pair categry: source table public.categry does not exist (did you mean `category`?)",
        "pair product_supplier: target table ProductSupplier is keyed by its references \
         (ProductId, SupplierId), and not all of them are translated: sync the tables they refer to \
         (Product, Supplier) as pairs too",
        "pair supplier: source -> target: no column of target table Employee gets a value",
        "pair supplier: source -> target: column FullName is NOT NULL in target table Employee but gets no value",
        "warning: ",
        "pair customer: source -> target: column Name: source column name can hold characters that Name \
         cannot store (its character set is utf8mb3, without 4-byte characters such as emoji)",
        "pair supplier: not synced: source columns company_name, city; target columns FullName, ManagerId, HiredOn",
    ] {
        assert!(
            lines.lines().any(|l| l.contains(expected)),
            "{expected:?} not in:\n{lines}"
        );
    }
    // AND run refuses to start, naming the same problems
    let run = agent.output(&["run", "--once"]).await;
    assert!(!run.status.success());
    let refused = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        refused.contains("did you mean `category`?") && refused.contains("keyed by its references"),
        "{refused}"
    );
    assert!(!agent.dir.path().join("state").exists(), "nothing started");
}
