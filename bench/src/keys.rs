//! Records found by a composite key on MariaDB: what every batch of a link
//! table's reads, locked reads, updates and deletes (and every reconcile
//! chunk) costs, through the connector's own statements, against a
//! single-column key of the same rows measured in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tandem_connectors::{
    Connector, EndpointConfig, Engine as Kind, Key, Row, TableName, TableSchema, TlsConfig, Value,
};

use crate::db::{Db, Engine, Servers};
use crate::Settings;

/// Keys per batch, as the agent applies them (`batch_size`).
pub const KEYS: usize = 500;

/// Rounds per operation; the figure is their median.
const ROUNDS: usize = 15;

/// One operation, measured on both tables.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyLookup {
    /// What is done to the keys.
    pub operation: &'static str,
    /// Median milliseconds per batch of [`KEYS`] keys, composite key.
    pub composite_ms: f64,
    /// The same, single-column key.
    pub single_ms: f64,
}

/// What the phase measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Keys {
    /// Rows of each table.
    pub rows: u64,
    /// Per operation.
    pub lookups: Vec<KeyLookup>,
}

fn median(mut values: Vec<Duration>) -> f64 {
    values.sort();
    values[values.len() / 2].as_secs_f64() * 1000.0
}

/// What the connector does with a batch of keys.
#[derive(Clone, Copy)]
enum Operation {
    Read,
    LockedRead,
    Update,
    Delete,
}

impl Operation {
    const ALL: [Operation; 4] = [
        Operation::Read,
        Operation::LockedRead,
        Operation::Update,
        Operation::Delete,
    ];

    fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::LockedRead => "read and lock",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    /// Runs once on `keys`; what writes is rolled back.
    async fn once(
        self,
        connector: &dyn Connector,
        table: &TableSchema,
        keys: &[Key],
    ) -> Result<Duration> {
        let started = Instant::now();
        let found = match self {
            Operation::Read => connector.fetch_rows(table, keys).await?.len(),
            _ => {
                let mut tx = connector.begin().await?;
                let found = match self {
                    Operation::LockedRead => tx.fetch_many_for_update(table, keys).await?.len(),
                    Operation::Update => {
                        let updates: Vec<(Key, Row)> = keys
                            .iter()
                            .map(|k| {
                                (
                                    k.clone(),
                                    [("note".to_owned(), Value::Text("changed".into()))].into(),
                                )
                            })
                            .collect();
                        tx.update_many(table, &updates).await?.len()
                    }
                    _ => tx.delete_many(table, keys).await? as usize,
                };
                let elapsed = started.elapsed();
                tx.rollback().await?;
                anyhow::ensure!(
                    found == keys.len(),
                    "{} found {found} of {} keys",
                    self.name(),
                    keys.len()
                );
                return Ok(elapsed);
            }
        };
        let elapsed = started.elapsed();
        anyhow::ensure!(
            found == keys.len(),
            "{} found {found} of {} keys",
            self.name(),
            keys.len()
        );
        Ok(elapsed)
    }
}

/// Runs the phase: a link table keyed by two foreign keys and a table
/// keyed by one column, `rows` rows each.
pub async fn run(servers: &Servers, s: &Settings) -> Result<Keys> {
    let db = Db::create(servers, Engine::Mysql, "keys").await?;
    let rows = s.link_rows.max(KEYS as u64);
    // Two parents, and a link table with an index on its second key
    // column, as a foreign key makes one.
    let width: u64 = 200;
    let height = rows.div_ceil(width);
    db.exec("CREATE TABLE pa (id BIGINT PRIMARY KEY)").await?;
    db.exec("CREATE TABLE pb (id BIGINT PRIMARY KEY)").await?;
    db.exec(&format!("INSERT INTO pa SELECT seq FROM seq_1_to_{width}"))
        .await?;
    db.exec(&format!("INSERT INTO pb SELECT seq FROM seq_1_to_{height}"))
        .await?;
    db.exec(
        "CREATE TABLE link (a BIGINT NOT NULL, b BIGINT NOT NULL, note VARCHAR(20), PRIMARY KEY (a, b), \
         FOREIGN KEY (a) REFERENCES pa (id), FOREIGN KEY (b) REFERENCES pb (id))",
    )
    .await?;
    db.exec(&format!(
        "INSERT INTO link SELECT x.seq, y.seq, 'n' FROM seq_1_to_{width} x, seq_1_to_{height} y"
    ))
    .await?;
    db.exec("CREATE TABLE single (id BIGINT PRIMARY KEY, note VARCHAR(20))")
        .await?;
    db.exec("INSERT INTO single SELECT (a - 1) * 1000000 + b, note FROM link")
        .await?;
    db.exec("ANALYZE TABLE link, single").await?;

    let endpoint = EndpointConfig {
        engine: Kind::Mysql,
        url: db.url.clone(),
        password: None,
        poll_interval: Duration::from_secs(1),
        max_connections: 2,
        tls: TlsConfig::default_for(Kind::Mysql, &db.url).map_err(anyhow::Error::msg)?,
        http: None,
    };
    let connector = tandem_connectors::connect(&endpoint)
        .await
        .context("connect the MariaDB connector")?;
    let link = connector.describe(&TableName::new(None, "link")).await?;
    let single = connector.describe(&TableName::new(None, "single")).await?;
    // Keys spread over the whole table, as a batch of changes is; each
    // round another set.
    let total = width * height;
    let stride = total / KEYS as u64;
    let batch = |round: usize| -> (Vec<Key>, Vec<Key>) {
        (0..KEYS as u64)
            .map(|i| {
                let n = (round as u64 * 9_973 + i * stride) % total;
                let (a, b) = (n % width + 1, n / width + 1);
                (
                    Key(vec![Value::Int(a as i64), Value::Int(b as i64)]),
                    Key(vec![Value::Int(((a - 1) * 1_000_000 + b) as i64)]),
                )
            })
            .unzip()
    };
    let mut lookups = Vec::new();
    for operation in Operation::ALL {
        let (mut composite, mut one) = (Vec::new(), Vec::new());
        // Alternated, so that a noisy moment weighs on both.
        for round in 0..ROUNDS {
            let (pairs, ids) = batch(round);
            composite.push(operation.once(connector.as_ref(), &link, &pairs).await?);
            one.push(operation.once(connector.as_ref(), &single, &ids).await?);
        }
        lookups.push(KeyLookup {
            operation: operation.name(),
            composite_ms: median(composite),
            single_ms: median(one),
        });
    }
    Ok(Keys {
        rows: total,
        lookups,
    })
}
