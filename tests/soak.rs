//! The soak run: applications write to both sides while the agent is killed
//! (SIGKILL) and restarted at random and its database sessions are killed
//! from the server side; at the end `reconcile` must find no difference.
//!
//! A test binary of its own (`harness = false`): `cargo test` runs it for a
//! few seconds, so that it keeps working; the real run is
//!
//! ```text
//! cargo test --release -p tandem-agent --test soak -- --duration 10m [--seed N]
//! ```
//!
//! `TANDEM_TEST_AGENT_BIN=/path/to/tandem-agent` runs a copy of the agent
//! instead of the one in the build directory (rebuilding during a long run
//! would otherwise replace it).
//!
//! It creates its own PostgreSQL and MariaDB databases on the test servers
//! (see `tests/harness`) and drops them afterwards; it never stops a server.
//! The last line states the counts; the exit status is 0 only when both
//! sides hold the same records and `reconcile` reports zero differences.

mod harness;

use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Agent, Db, Engine};

/// What the smoke run inside `cargo test` lasts.
const SMOKE: Duration = Duration::from_secs(8);

struct Options {
    duration: Duration,
    seed: u64,
}

/// `--duration` and `--seed`; anything else (filters and flags `cargo test`
/// passes to every test binary) is ignored.
fn options() -> Result<Options, String> {
    let mut options = Options {
        duration: SMOKE,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            .max(1),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                let text = args.next().ok_or("--duration needs a value like 10m")?;
                options.duration = humantime::parse_duration(&text)
                    .map_err(|e| format!("--duration {text:?}: {e}"))?;
            }
            "--seed" => {
                let text = args.next().ok_or("--seed needs a number")?;
                options.seed = text
                    .parse::<u64>()
                    .map_err(|e| format!("--seed {text:?}: {e}"))?
                    .max(1);
            }
            _ => {}
        }
    }
    Ok(options)
}

/// xorshift: no crate for randomness, and a seed replays a run's choices.
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

/// Statements the applications made, per side.
#[derive(Default)]
struct Counts {
    writes: [AtomicU64; 2],
}

async fn create_tables(db: &Db) {
    let (id, text) = (db.id(), db.text());
    db.exec(&format!(
        "CREATE TABLE items (id {id}, uid {text} NOT NULL, qty BIGINT, label {text})"
    ))
    .await;
    db.exec(&format!(
        "CREATE TABLE notes (id {id}, uid {text} NOT NULL, body {text})"
    ))
    .await;
}

/// An application writing to one side until told to stop: inserts, updates
/// and deletes in small transactions. Counts the statements that succeeded.
async fn write_until(
    db: Arc<Db>,
    side: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let prefix = ["s", "t"][side];
    let mut rng = Rng(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let sql = match rng.below(10) {
            0..=2 => format!(
                "INSERT INTO items (uid, qty, label) VALUES ('{prefix}{n}', {}, 'new')",
                rng.below(1000)
            ),
            3..=4 => format!(
                "UPDATE items SET qty = qty + 1, label = '{prefix}{n}' WHERE MOD(id, 53) = {}",
                rng.below(53)
            ),
            5 => format!("DELETE FROM items WHERE MOD(id, 89) = {}", rng.below(89)),
            6..=7 => format!("INSERT INTO notes (uid, body) VALUES ('{prefix}n{n}', 'w')"),
            8 => format!(
                "UPDATE notes SET body = '{prefix}{n}' WHERE MOD(id, 37) = {}",
                rng.below(37)
            ),
            _ => format!("DELETE FROM notes WHERE MOD(id, 61) = {}", rng.below(61)),
        };
        // A statement may fail on a lock wait while the agent applies; the
        // application carries on, as a real one would retry.
        if db.try_exec(&sql).await.is_ok() {
            counts.writes[side].fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.below(25))).await;
    }
}

/// Every record by its uid, with its content.
async fn content(db: &Db) -> Vec<Vec<Vec<Option<String>>>> {
    vec![
        db.rows("SELECT uid, qty, label FROM items ORDER BY uid")
            .await,
        db.rows("SELECT uid, body FROM notes ORDER BY uid").await,
    ]
}

/// Kills every session on both databases but the one asking (the test's own
/// PostgreSQL connection; its MariaDB pool reconnects).
async fn kill_sessions(source: &Db, target: &Db) {
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
        let _ = target
            .try_exec(&format!("KILL {}", row[0].as_deref().unwrap_or("0")))
            .await;
    }
}

/// The last lines of the agent's log, for a failure report.
fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn sigkill(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// The total the agent reports as applied, both directions, all pairs.
async fn applied(agent: &Agent) -> u64 {
    let out = agent.output(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut total = 0;
    for pair in status["pairs"].as_array().into_iter().flatten() {
        for direction in ["source_to_target", "target_to_source"] {
            for kind in ["inserted", "updated", "deleted"] {
                total += pair["applied"][direction][kind].as_u64().unwrap_or(0);
            }
        }
    }
    total
}

async fn soak(options: &Options) -> Result<String, String> {
    let started = Instant::now();
    let source = Arc::new(Db::create(Engine::Postgres).await);
    let target = Arc::new(Db::create(Engine::Mysql).await);
    create_tables(&source).await;
    create_tables(&target).await;
    let agent = Agent::new(
        &source,
        &target,
        &[("items", "items"), ("notes", "notes")],
        "[sync]\nbatch_size = 100\n",
    );
    agent.install().await;
    let log_path = agent.dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng(options.seed);
    let writers = [
        tokio::spawn(write_until(
            source.clone(),
            0,
            rng.next(),
            stop.clone(),
            counts.clone(),
        )),
        tokio::spawn(write_until(
            target.clone(),
            1,
            rng.next(),
            stop.clone(),
            counts.clone(),
        )),
    ];

    let (mut kills, mut restarts, mut session_kills) = (0u64, 0u64, 0u64);
    // Short lives in a smoke run, up to a few seconds in a long one.
    let longest_life = (options.duration.as_millis() as u64 / 20).clamp(400, 6000);
    while started.elapsed() < options.duration {
        let mut child = agent
            .command(&["run"])
            .env("RUST_LOG", "tandem_agent=info,sled=warn")
            .stdout(Stdio::null())
            .stderr(log.try_clone().map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("starting the agent: {e}"))?;
        if kills > 0 {
            restarts += 1;
        }
        let life = Duration::from_millis(100 + rng.below(longest_life));
        if rng.below(4) == 0 {
            tokio::time::sleep(life / 2).await;
            kill_sessions(&source, &target).await;
            session_kills += 1;
            tokio::time::sleep(life / 2).await;
        } else {
            tokio::time::sleep(life).await;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the agent exited by itself ({status}); the end of its log:\n{}",
                tail(&log_path)
            ));
        }
        let pid = child.id().ok_or("the agent has no pid")?;
        if !sigkill(pid) {
            return Err(format!("kill -KILL {pid} failed"));
        }
        let _ = child.wait().await;
        kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.map_err(|e| e.to_string())?;
    }
    let writes = [
        counts.writes[0].load(Ordering::Relaxed),
        counts.writes[1].load(Ordering::Relaxed),
    ];

    // The agent's last start: it catches up with everything and says so.
    restarts += 1;
    let out = agent.output(&["run", "--once"]).await;
    if !out.status.success() {
        return Err(format!(
            "the final run --once failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = agent.output(&["reconcile"]).await;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let differences = match out.status.code() {
        Some(0) => 0,
        Some(1) => report.lines().count(),
        _ => {
            return Err(format!(
                "reconcile failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let (s, t) = (content(&source).await, content(&target).await);
    let records = s[0].len() + s[1].len();
    let same = s == t;
    let applied = applied(&agent).await;
    let line = format!(
        "soak: {:.0?} seed {}: changes made {} (write statements: source {}, target {}), applied {applied}, kills {kills}, restarts {restarts}, session kills {session_kills}, records {records}, differences {differences}",
        started.elapsed(),
        options.seed,
        writes[0] + writes[1],
        writes[0],
        writes[1],
    );
    if differences > 0 || !same {
        return Err(format!(
            "{report}{}\n{line}",
            if same {
                ""
            } else {
                "source and target content differ"
            }
        ));
    }
    if writes[0] == 0 || writes[1] == 0 || kills == 0 || applied == 0 {
        return Err(format!("the run proved nothing: {line}"));
    }
    Ok(line)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Interrupted, the run is dropped: its databases are dropped and the
    // agent killed with it.
    let result = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            result = soak(&options) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
            _ = term.recv() => Err("terminated".to_owned()),
        }
    });
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("soak FAILED (seed {}): {e}", options.seed);
            ExitCode::FAILURE
        }
    }
}
