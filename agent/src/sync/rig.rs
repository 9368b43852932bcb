//! A test rig: an agent between two SQLite databases whose connectors fail
//! on purpose ([`tandem_connectors::faults`]), for unit tests of what the
//! engine writes, acknowledges and settles, in which order, when a
//! statement, a commit or an acknowledgement fails.

use std::path::PathBuf;
use std::sync::Arc;

use tandem_connectors::faults::{Faults, Faulty};
use tempfile::TempDir;

use super::{Agent, Integration};
use crate::config::{Config, Side};
use crate::state::State;

/// Two SQLite databases with a `customers` table each, capture installed,
/// and an agent between them (first sync not yet run).
pub(crate) struct Rig {
    /// The agent.
    pub agent: Agent,
    /// The faults of each side's connector (source, target).
    pub faults: [Arc<Faults>; 2],
    dir: TempDir,
}

const SCHEMA: &str = "CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    email TEXT
)";

impl Rig {
    /// The rig, the source's table holding `names` (each with an email
    /// made from it); `batch_size` records per applying transaction.
    pub async fn new(names: &[&str], batch_size: usize) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in ["source.db", "target.db"] {
            let db = rusqlite::Connection::open(dir.path().join(file)).expect("open");
            db.execute_batch(SCHEMA).expect("schema");
        }
        let path = dir.path().join("tandem.toml");
        let text = format!(
            "state_dir = \"state\"\n\
             [source]\nkind = \"sqlite\"\nurl = \"sqlite://source.db\"\n\
             [target]\nkind = \"sqlite\"\nurl = \"sqlite://target.db\"\n\
             [sync]\nbatch_size = {batch_size}\n\
             [[tables]]\nsource = \"customers\"\n"
        );
        std::fs::write(&path, &text).expect("config");
        let config = Config::parse(&path, &text).expect("a valid config");
        let faults = [Faults::new(), Faults::new()];
        let mut endpoints = Vec::new();
        for side in Side::BOTH {
            let inner = tandem_connectors::connect(config.endpoint(side))
                .await
                .expect("connect");
            let table = inner
                .describe(&inner.table_name("customers"))
                .await
                .expect("describe");
            let script = inner.install_script(&[table]).await.expect("script");
            inner.run_script(&script).await.expect("install");
            endpoints.push(Faulty::wrap(inner, faults[side.index()].clone()));
        }
        let endpoints: [_; 2] = endpoints.try_into().ok().expect("two sides");
        let integration = Integration::over(config, endpoints).await.expect("plan");
        let fatal: Vec<_> = integration.problems.iter().filter(|p| p.fatal).collect();
        assert!(fatal.is_empty(), "the rig's config is sound: {fatal:?}");
        let state = State::open(&integration.config.state_dir).expect("state");
        let agent = Agent::new(integration, state);
        let rig = Rig { agent, faults, dir };
        for name in names {
            rig.exec(
                Side::Source,
                &format!(
                    "INSERT INTO customers (name, email) VALUES ('{name}', '{name}@example.com')"
                ),
            );
        }
        rig
    }

    fn db(&self, side: Side) -> PathBuf {
        self.dir.path().join(match side {
            Side::Source => "source.db",
            Side::Target => "target.db",
        })
    }

    /// Runs `sql` on `side`'s database, as an application would.
    pub fn exec(&self, side: Side, sql: &str) {
        rusqlite::Connection::open(self.db(side))
            .expect("open")
            .execute_batch(sql)
            .expect("statement");
    }

    /// `side`'s customers as (name, email), sorted.
    pub fn customers(&self, side: Side) -> Vec<(String, Option<String>)> {
        let db = rusqlite::Connection::open(self.db(side)).expect("open");
        let mut statement = db
            .prepare("SELECT name, email FROM customers ORDER BY name, email")
            .expect("select");
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .map(|row| row.expect("row"))
            .collect()
    }

    /// How many change rows wait in `side`'s change table.
    pub async fn change_rows(&self, side: Side) -> u64 {
        let connector = self.agent.integration.endpoint(side);
        let table = connector.table_name("customers");
        connector
            .count_changes(&[table])
            .await
            .expect("count")
            .iter()
            .map(|(_, n)| n)
            .sum()
    }
}
