//! Quick start: a real two-way sync between two SQLite databases, with no
//! server to install. Run it with `cargo run --example quickstart`.
//!
//! It creates a "shop" and a "crm" database with customers and their
//! orders, writes a config file, and then drives the agent exactly as the
//! command line does (`install-triggers`, `run --once`): the first sync, a
//! round of changes on both sides, and the sync that follows. Everything
//! lives in a temporary directory (kept when `--keep` is given).

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use rusqlite::Connection;
use tandem_agent::cli::Cli;

const SCHEMA: &str = "
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    item TEXT NOT NULL,
    total NUMERIC(10, 2)
);";

fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open the database");
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

/// Runs one `tandem-agent` command line through the same entry point as the
/// binary.
async fn agent(args: &[&str]) -> ExitCode {
    let cli = Cli::parse_from(std::iter::once("tandem-agent").chain(args.iter().copied()));
    match tandem_agent::commands::execute(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn show(title: &str, path: &Path) {
    let conn = open(path);
    println!("\n{title}");
    println!("  {:<16} {:<24} orders", "customer", "email");
    let mut query = conn
        .prepare(
            "SELECT c.name, coalesce(c.email, '-'), coalesce(group_concat(o.item || ' ' || o.total, ', '), '-') \
             FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY c.name",
        )
        .expect("query");
    let rows = query
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .expect("rows");
    for row in rows {
        let (name, email, orders) = row.expect("row");
        println!("  {name:<16} {email:<24} {orders}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let keep = std::env::args().any(|a| a == "--keep");
    if std::env::var_os("RUST_LOG").is_none() {
        // The story is told on stdout; the agent's own log only for problems.
        std::env::set_var("RUST_LOG", "warn");
    }
    tandem_agent::commands::init_logging();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (shop, crm) = (dir.path().join("shop.db"), dir.path().join("crm.db"));

    println!("== two SQLite databases in {}", dir.path().display());
    open(&shop)
        .execute_batch(&format!(
            "{SCHEMA}
            INSERT INTO customers (name, email) VALUES ('Ada Lovelace', 'ada@example.com'), ('Alan Turing', 'alan@example.com');
            INSERT INTO orders (customer_id, item, total) VALUES (1, 'notebook', 12.50), (2, 'tape', 3.20);"
        ))
        .expect("shop schema");
    open(&crm)
        .execute_batch(&format!(
            "{SCHEMA}
            INSERT INTO customers (name, email) VALUES ('Grace Hopper', 'grace@example.com');
            INSERT INTO orders (customer_id, item, total) VALUES (1, 'compiler', 99.00);"
        ))
        .expect("crm schema");
    let config = dir.path().join("quickstart.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n\n\
         [source]\nkind = \"sqlite\"\nurl = \"sqlite://shop.db\"\n\n\
         [target]\nkind = \"sqlite\"\nurl = \"sqlite://crm.db\"\n\n\
         [[tables]]\nsource = \"customers\"\ntarget = \"customers\"\n\n\
         [[tables]]\nsource = \"orders\"\ntarget = \"orders\"\n",
    )
    .expect("config");
    let config = config.display().to_string();

    println!("\n== tandem-agent install-triggers --config {config}");
    if agent(&["install-triggers", "--config", &config]).await != ExitCode::SUCCESS {
        return ExitCode::FAILURE;
    }
    println!("\n== tandem-agent run --once   (the first sync: both ways)");
    if agent(&["run", "--once", "--config", &config]).await != ExitCode::SUCCESS {
        return ExitCode::FAILURE;
    }

    println!("\n== changes on both sides");
    println!("  shop: Ada's email changes, Alan (and his order) are deleted");
    open(&shop)
        .execute_batch(
            "UPDATE customers SET email = 'ada@lovelace.example' WHERE name = 'Ada Lovelace';
             DELETE FROM orders WHERE customer_id = (SELECT id FROM customers WHERE name = 'Alan Turing');
             DELETE FROM customers WHERE name = 'Alan Turing';",
        )
        .expect("shop changes");
    println!("  crm:  Edsger arrives with an order");
    open(&crm)
        .execute_batch(
            "INSERT INTO customers (name, email) VALUES ('Edsger Dijkstra', 'ewd@example.com');
             INSERT INTO orders (customer_id, item, total) SELECT id, 'goto-free pen', 4.00 FROM customers WHERE name = 'Edsger Dijkstra';",
        )
        .expect("crm changes");

    println!("\n== tandem-agent run --once   (only what changed)");
    if agent(&["run", "--once", "--config", &config]).await != ExitCode::SUCCESS {
        return ExitCode::FAILURE;
    }
    show("== shop.db now holds", &shop);
    show("== crm.db now holds", &crm);
    if keep {
        let kept = dir.keep();
        println!(
            "\nkept in {} (try: tandem-agent status --config {}/quickstart.toml)",
            kept.display(),
            kept.display()
        );
    }
    ExitCode::SUCCESS
}
