//! One direction end to end: a source seeded with N rows, the target's own
//! bulk load of the same rows, the agent's first sync, a backlog of changes
//! drained, and latency at fixed rates.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::agent::Agent;
use crate::data;
use crate::db::{Db, Engine, Servers};
use crate::latency::{self, Latency};
use crate::Settings;

/// The synced table.
const TABLE: &str = "items";

/// What one direction measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Flow {
    /// Where the rows come from.
    pub from: &'static str,
    /// Where they go.
    pub to: &'static str,
    /// Rows copied by the first sync.
    pub rows: u64,
    /// Seconds of `run --once` (start-up included).
    pub first_sync_secs: f64,
    /// Seconds of the target's bulk load of the same rows.
    pub bulk_load_secs: f64,
    /// Peak resident memory of `run --once`, kB.
    pub first_sync_peak_kb: u64,
    /// Changes in the backlog.
    pub changes: u64,
    /// Seconds the writer took to produce them.
    pub write_secs: f64,
    /// Seconds from `run` starting until all were visible on the target.
    pub drain_secs: f64,
    /// Peak resident memory of `run` while draining, kB.
    pub drain_peak_kb: u64,
    /// The source's poll interval (ms; 0 for a PostgreSQL source, woken by NOTIFY).
    pub poll_ms: u64,
    /// Latency at each rate.
    pub latency: Vec<Latency>,
}

/// Runs the direction `from` -> `to`.
pub async fn run(
    servers: &Servers,
    from: Engine,
    to: Engine,
    s: &Settings,
    work: &Path,
) -> Result<Flow> {
    let tag = match from {
        Engine::Postgres => "pg2my",
        Engine::Mysql => "my2pg",
    };
    let source = Db::create(servers, from, &format!("{tag}_src")).await?;
    let target = Db::create(servers, to, &format!("{tag}_dst")).await?;
    for db in [&source, &target] {
        db.exec(&data::create_table(db.engine, TABLE)).await?;
        for sql in latency::create_table(db.engine) {
            db.exec(&sql).await?;
        }
    }
    eprintln!(
        "[{tag}] seeding {} rows into the {} source",
        s.rows,
        from.label()
    );
    data::bulk_load(&source, TABLE, s.rows).await?;

    eprintln!(
        "[{tag}] {} bulk load of the same rows (the limit)",
        to.label()
    );
    target
        .exec(&data::create_table(to, "bulk_baseline"))
        .await?;
    let bulk = data::bulk_load(&target, "bulk_baseline", s.rows).await?;
    target.exec("DROP TABLE bulk_baseline").await?;

    let agent = Agent::new(
        &s.agent,
        &work.join(tag),
        &source,
        &target,
        &[TABLE, latency::TABLE],
        s.poll,
    )?;
    agent.install().await?;
    eprintln!("[{tag}] first sync (run --once)");
    let (first_sync, first_sync_peak_kb) = agent.once().await?;
    let copied = target.int(&format!("SELECT count(*) FROM {TABLE}")).await?;
    if copied != s.rows as i64 {
        bail!(
            "first sync {tag}: {copied} of {} rows on the target",
            s.rows
        );
    }

    let changes = s.changes.min(s.rows);
    eprintln!("[{tag}] writing a backlog of {changes} changes, agent stopped");
    let written = Instant::now();
    let mut done = 0u64;
    while done < changes {
        let n = (changes - done).min(10_000);
        source
            .exec(&format!(
                "UPDATE {TABLE} SET note = 'backlog', quantity = quantity + 1 WHERE id > {done} AND id <= {}",
                done + n
            ))
            .await?;
        done += n;
    }
    let write_secs = written.elapsed().as_secs_f64();
    // Statistics as a production table has them: autovacuum would have
    // analyzed both tables by now, but it is off on some servers (this
    // machine's PostgreSQL included), and without statistics the planner
    // reads a batch of keys by scanning the table.
    for db in [&source, &target] {
        db.exec(&match db.engine {
            Engine::Postgres => format!("ANALYZE {TABLE}"),
            Engine::Mysql => format!("ANALYZE TABLE {TABLE}"),
        })
        .await?;
    }
    // What the target must end up with: the rows the updates touched.
    let changes = source
        .int(&format!(
            "SELECT count(*) FROM {TABLE} WHERE note = 'backlog'"
        ))
        .await? as u64;

    eprintln!("[{tag}] draining the backlog (run)");
    let started = Instant::now();
    let mut running = agent.start()?;
    let count = format!("SELECT count(*) FROM {TABLE} WHERE note = 'backlog'");
    let deadline = Duration::from_secs(600).max(Duration::from_secs(changes / 200));
    loop {
        running.check_alive()?;
        if target.int(&count).await? == changes as i64 {
            break;
        }
        if started.elapsed() > deadline {
            bail!("{tag}: backlog of {changes} changes not applied within {deadline:?}");
        }
        // Counting scans the table: look less often as time goes by, so the
        // count costs little and the end is known to within 2%.
        let wait =
            (started.elapsed() / 50).clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::time::sleep(wait).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let drain_peak_kb = running.peak_kb();

    let mut latencies = Vec::new();
    let mut next_seq = 0i64;
    for &rate in &s.rates {
        eprintln!(
            "[{tag}] latency at {rate} changes/s for {} s",
            s.latency_secs
        );
        let result = latency::measure(&source, &target, rate, s.latency_secs, next_seq).await?;
        next_seq += result.written as i64;
        latencies.push(result);
        running.check_alive()?;
    }
    running.stop().await?;

    Ok(Flow {
        from: from.label(),
        to: to.label(),
        rows: s.rows,
        first_sync_secs: first_sync.as_secs_f64(),
        bulk_load_secs: bulk.as_secs_f64(),
        first_sync_peak_kb,
        changes,
        write_secs,
        drain_secs,
        drain_peak_kb,
        poll_ms: if from == Engine::Mysql {
            s.poll.as_millis() as u64
        } else {
            0
        },
        latency: latencies,
    })
}
