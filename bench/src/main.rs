//! `tandem-bench`: measures tandem-agent against the limits of the local
//! PostgreSQL and MariaDB, each limit measured in the same run, and writes
//! `bench.md` and `bench.json` into `--out`.
//!
//! Every database it uses is created for the run and dropped afterwards.

mod agent;
mod api;
mod capture;
mod data;
mod db;
mod flow;
mod keys;
mod latency;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;

use db::{Engine, Servers};

/// Measures tandem-agent against the limits of the local databases.
#[derive(Parser, Debug)]
#[command(name = "tandem-bench")]
struct Args {
    /// Directory for bench.md and bench.json (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Rows of the first sync, each direction.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Changes in the backlog drained, each direction (at most --rows).
    #[arg(long)]
    changes: Option<u64>,
    /// Latency rates, changes per second.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rates: Vec<u32>,
    /// Seconds of writing per latency rate.
    #[arg(long, default_value_t = 10.0)]
    latency_secs: f64,
    /// Seconds per capture-cost run.
    #[arg(long, default_value_t = 15.0)]
    capture_secs: f64,
    /// Capture-cost runs with and without triggers (alternating).
    #[arg(long, default_value_t = 3)]
    capture_rounds: usize,
    /// pgbench scale of the capture-cost workload (100,000 accounts each).
    #[arg(long, default_value_t = 10)]
    scale: u64,
    /// Clients of the capture-cost workload.
    #[arg(long, default_value_t = 4)]
    clients: u64,
    /// Rows of the link table whose composite key is looked up.
    #[arg(long, default_value_t = 20_000)]
    link_rows: u64,
    /// Poll interval of MariaDB endpoints, milliseconds (the agent's default).
    #[arg(long, default_value_t = 250)]
    poll_ms: u64,
    /// The phases to run: flows (first sync, incremental, latency,
    /// memory), capture, keys, api (this one only with --pocketbase).
    #[arg(long, value_delimiter = ',', default_value = "flows,capture,keys,api")]
    phases: Vec<String>,
    /// A PocketBase binary: measures writes to a cloud API with it (the
    /// phase is left out without one; tests/run.sh installs one at
    /// tests/pocketbase/.venv/bin/pocketbase).
    #[arg(long)]
    pocketbase: Option<PathBuf>,
    /// Records created, then updated, through the API.
    #[arg(long, default_value_t = 200)]
    api_records: u64,
    /// Requests a second the agent may send to the API.
    #[arg(long, default_value_t = 20.0)]
    api_budget: f64,
    /// The tandem-agent binary (default: next to this one).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// PostgreSQL admin URL (must be able to create databases).
    #[arg(
        long,
        env = "TANDEM_TEST_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    /// MariaDB admin URL (must be able to create databases).
    #[arg(
        long,
        env = "TANDEM_TEST_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/mysql"
    )]
    mysql_url: String,
}

/// The settings of a run, as recorded in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Rows of the first sync.
    pub rows: u64,
    /// Changes in the backlog.
    pub changes: u64,
    /// Latency rates.
    pub rates: Vec<u32>,
    /// Seconds per latency rate.
    pub latency_secs: f64,
    /// Seconds per capture run.
    pub capture_secs: f64,
    /// Capture runs each way.
    pub capture_rounds: usize,
    /// Capture workload scale.
    pub scale: u64,
    /// Capture workload clients.
    pub clients: u64,
    /// Rows of the composite-key lookup's link table.
    pub link_rows: u64,
    /// MariaDB poll interval.
    #[serde(serialize_with = "millis")]
    pub poll: Duration,
    /// Records written through the API.
    pub api_records: u64,
    /// The API's request budget, requests a second.
    pub api_budget: f64,
    /// The agent binary.
    pub agent: PathBuf,
    /// The command line that reproduces the run.
    pub command: String,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn default_agent() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("tandem-agent");
    if !path.exists() {
        bail!(
            "no tandem-agent next to {} (build it: cargo build --release -p tandem-agent, or pass --agent)",
            me.display()
        );
    }
    Ok(path)
}

fn machine(servers_versions: (String, String)) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("unknown".into(), |kb| format!("{} GB", kb / 1024 / 1024));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Other work on the host skews every figure: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    vec![
        ("cpu".into(), format!("{cores} x {model}")),
        ("memory".into(), memory),
        ("kernel".into(), kernel.trim().to_owned()),
        ("PostgreSQL".into(), servers_versions.0),
        ("MariaDB".into(), servers_versions.1),
        (
            "load average at start (1, 5, 15 min)".into(),
            load.join(", "),
        ),
        (
            "setup".into(),
            "agent, both servers and the load generators on the one host".into(),
        ),
    ]
}

async fn versions(servers: &Servers) -> Result<(String, String)> {
    use mysql_async::prelude::Queryable;
    let pg: String = db::pg_connect(&servers.postgres)
        .await?
        .query_one("SHOW server_version", &[])
        .await?
        .get(0);
    let pool = mysql_async::Pool::new(servers.mysql.as_str());
    let my: Option<String> = pool
        .get_conn()
        .await?
        .query_first("SELECT VERSION()")
        .await?;
    pool.disconnect().await?;
    Ok((pg, my.unwrap_or_default()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let agent = match &args.agent {
        Some(path) => path.clone(),
        None => default_agent()?,
    };
    if args.rows == 0 || args.rates.contains(&0) || args.api_budget <= 0.0 {
        bail!("--rows, --rates and --api-budget must be positive");
    }
    if let Some(unknown) = args
        .phases
        .iter()
        .find(|p| !["flows", "capture", "keys", "api"].contains(&p.as_str()))
    {
        bail!("--phases: unknown phase {unknown:?} (flows, capture, keys, api)");
    }
    let settings = Settings {
        rows: args.rows,
        changes: args.changes.unwrap_or(args.rows).min(args.rows),
        rates: args.rates.clone(),
        latency_secs: args.latency_secs,
        capture_secs: args.capture_secs,
        capture_rounds: args.capture_rounds.max(1),
        scale: args.scale.max(1),
        clients: args.clients.max(1),
        link_rows: args.link_rows,
        poll: Duration::from_millis(args.poll_ms),
        api_records: args.api_records.max(1),
        api_budget: args.api_budget,
        agent,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let servers = Servers {
        postgres: args.pg_url.clone(),
        mysql: args.mysql_url.clone(),
    };
    let work = tempfile_dir()?;
    let machine = machine(
        versions(&servers)
            .await
            .context("read the server versions")?,
    );

    let phase = |name: &str| args.phases.iter().any(|p| p == name);
    let mut flows = Vec::new();
    if phase("flows") {
        for (from, to) in [
            (Engine::Postgres, Engine::Mysql),
            (Engine::Mysql, Engine::Postgres),
        ] {
            flows.push(flow::run(&servers, from, to, &settings, &work).await?);
        }
    }
    let mut capture = Vec::new();
    if phase("capture") {
        capture.push(capture::postgres(&servers, &settings, &work).await?);
        capture.push(capture::mariadb(&servers, &settings, &work).await?);
    }
    let keys = if phase("keys") {
        Some(
            keys::run(&servers, &settings)
                .await
                .context("the composite-key lookups")?,
        )
    } else {
        None
    };
    let api = match (&args.pocketbase, phase("api")) {
        (Some(binary), true) => Some(
            api::run(&servers, &settings, &work, binary)
                .await
                .context("the writes to a cloud API")?,
        ),
        _ => None,
    };
    let report = report::build(settings, machine, flows, capture, keys, api);

    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let md = args.out.join("bench.md");
    let json = args.out.join("bench.json");
    std::fs::write(&md, report.markdown()).with_context(|| format!("write {}", md.display()))?;
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", json.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    println!("{}", report.markdown());
    eprintln!("wrote {} and {}", md.display(), json.display());
    Ok(())
}

/// A private working directory for configs, state and agent logs.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tandem-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
