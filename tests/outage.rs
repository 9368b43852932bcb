//! A server goes away while the agent syncs under write load: first the
//! PostgreSQL side, then the MariaDB side, each stopped for a while and
//! started again. The agent keeps running, says it is retrying (log line
//! and `status`), reconnects by itself, and afterwards both sides hold the
//! same rows, none lost, none twice.
//!
//! It also starts while one server is down, and waits for it.
//!
//! The test stops servers, so it starts its own: a PostgreSQL cluster and a
//! MariaDB datadir in temporary directories on free ports, torn down when
//! the test ends, whether it passes or not. `TANDEM_TEST_OUTAGE_SECS` sets
//! how long each server stays down (default 30).

mod harness;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::Agent;
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncBufReadExt, BufReader};

const PG_BIN: &[&str] = &["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"];

fn find(dirs: &[&str], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("address")
        .port()
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as `user` when the test runs as root (both servers refuse
/// to run as root), as the current user otherwise.
fn as_user(user: &str, program: &Path) -> std::process::Command {
    if is_root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", user, "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    }
}

fn run(mut command: std::process::Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn give_to(user: &str, dir: &Path) {
    if is_root() {
        run(
            {
                let mut c = std::process::Command::new("chown");
                c.args(["-R", user]).arg(dir);
                c
            },
            "chown",
        );
    }
}

/// A PostgreSQL cluster of the test's own.
struct PrivatePg {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePg {
    fn create() -> Option<PrivatePg> {
        let bin = find(PG_BIN, "pg_ctl")?.parent()?.to_owned();
        let dir = tempfile::tempdir().expect("temp dir");
        give_to("postgres", dir.path());
        let mut initdb = as_user("postgres", &bin.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        let pg = PrivatePg {
            bin,
            dir,
            port: free_port(),
        };
        pg.start();
        Some(pg)
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Command {
        let mut command = as_user("postgres", &self.bin.join("pg_ctl"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(args);
        command
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let mut command = self.pg_ctl(&["-w", "-o", &options, "-l"]);
        command.arg(log).arg("start");
        run(command, "pg_ctl start");
    }

    fn stop(&self) {
        run(self.pg_ctl(&["-w", "-m", "fast", "stop"]), "pg_ctl stop");
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-w", "-m", "immediate", "stop"]).output();
    }
}

/// A MariaDB server of the test's own.
struct PrivateMaria {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<std::process::Child>,
}

impl PrivateMaria {
    fn create() -> Option<PrivateMaria> {
        let install = find(&["/usr/bin", "/usr/local/bin"], "mariadb-install-db")?;
        find(&["/usr/sbin", "/usr/local/bin"], "mariadbd")?;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("data")).expect("datadir");
        give_to("mysql", dir.path());
        let mut command = std::process::Command::new(install);
        command
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args([
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]);
        run(command, "mariadb-install-db");
        let mut maria = PrivateMaria {
            dir,
            port: free_port(),
            server: None,
        };
        maria.start();
        // root may connect over TCP from 127.0.0.1, as the agent does.
        let mut grant = std::process::Command::new("mariadb");
        grant
            .arg(format!("--socket={}", maria.socket().display()))
            .args([
                "-uroot",
                "-e",
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; \
                 GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
            ]);
        run(grant, "grant root over TCP");
        Some(maria)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    fn start(&mut self) {
        let data = self.dir.path().join("data");
        let child = std::process::Command::new(
            find(&["/usr/sbin", "/usr/local/bin"], "mariadbd").expect("mariadbd"),
        )
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={}", self.port))
        .arg(format!("--socket={}", self.socket().display()))
        .arg(format!(
            "--log-error={}",
            self.dir.path().join("server.log").display()
        ))
        .arg(format!(
            "--pid-file={}",
            self.dir.path().join("mariadb.pid").display()
        ))
        .args([
            "--bind-address=127.0.0.1",
            "--user=mysql",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mariadbd");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.socket().exists()
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        {
            assert!(Instant::now() < deadline, "mariadbd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivateMaria {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One statement on a fresh connection: a server restart must not leave
/// the test holding a dead one.
async fn exec(url: &str, sql: &str) -> Result<(), String> {
    if url.starts_with("postgres") {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        client.batch_execute(sql).await.map_err(|e| e.to_string())
    } else {
        let mut conn = mysql_async::Conn::from_url(url)
            .await
            .map_err(|e| e.to_string())?;
        let result = conn.query_drop(sql).await.map_err(|e| e.to_string());
        let _ = conn.disconnect().await;
        result
    }
}

/// Every label of `items`, sorted.
async fn labels(url: &str) -> Result<Vec<String>, String> {
    let sql = "SELECT label FROM items ORDER BY label";
    if url.starts_with("postgres") {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let rows = client.query(sql, &[]).await.map_err(|e| e.to_string())?;
        let mut labels: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        labels.sort();
        Ok(labels)
    } else {
        let mut conn = mysql_async::Conn::from_url(url)
            .await
            .map_err(|e| e.to_string())?;
        let mut rows: Vec<String> = conn.query(sql).await.map_err(|e| e.to_string())?;
        let _ = conn.disconnect().await;
        rows.sort();
        Ok(rows)
    }
}

/// An application inserting a row every few milliseconds until stopped;
/// returns the labels whose insert reported success.
fn writer(
    url: String,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut written = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let label = format!("{prefix}-{n:05}");
            if exec(
                &url,
                &format!("INSERT INTO items (label) VALUES ('{label}')"),
            )
            .await
            .is_ok()
            {
                written.push(label);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        written
    })
}

async fn retrying(agent: &Agent) -> Option<String> {
    let status: serde_json::Value =
        serde_json::from_str(&agent.ok(&["status", "--json"]).await).ok()?;
    status["retrying"].as_str().map(str::to_owned)
}

/// Waits until `status` reports the agent retrying after a failure of
/// `side`, and the log says so too.
async fn outage_reported(agent: &Agent, log: &Mutex<Vec<String>>, side: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = retrying(agent).await;
        let logged = log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("will retry") && l.contains(side));
        if logged && status.as_deref().is_some_and(|s| s.contains(side)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outage of the {side} was not reported (status: {status:?}, logged: {logged})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_down_for_a_while_is_waited_for_and_nothing_is_lost() {
    let outage = Duration::from_secs(
        std::env::var("TANDEM_TEST_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    let (Some(pg), Some(mut maria)) = (PrivatePg::create(), PrivateMaria::create()) else {
        eprintln!("SKIPPED: PostgreSQL (pg_ctl, initdb) or MariaDB (mariadb-install-db, mariadbd) binaries not found");
        return;
    };
    exec(&pg.url("postgres"), "CREATE DATABASE outage")
        .await
        .unwrap();
    exec(
        &maria.url("mysql"),
        "CREATE DATABASE outage CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    )
    .await
    .unwrap();
    let (source, target) = (pg.url("outage"), maria.url("outage"));
    exec(
        &source,
        "CREATE TABLE items (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label TEXT)",
    )
    .await
    .unwrap();
    exec(
        &target,
        "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(255))",
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\n\n[source]\nkind = \"postgres\"\nurl = \"{source}\"\npoll_interval = \"50ms\"\n\n\
             [target]\nkind = \"mysql\"\nurl = \"{target}\"\npoll_interval = \"50ms\"\n\n\
             [[tables]]\nsource = \"items\"\ntarget = \"items\"\n"
        ),
    )
    .expect("write config");
    let agent = Agent { dir, config };
    agent.install().await;
    // The service starts while MariaDB is still down (a boot, say)
    maria.stop();
    let mut child = agent
        .command(&["run"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = Arc::new(Mutex::new(Vec::new()));
    {
        let log = log.clone();
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line);
            }
        });
    }

    // THEN it waits for it, and starts syncing once it is up
    harness::eventually(
        "the agent waits for MariaDB",
        Duration::from_secs(30),
        || async {
            log.lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("cannot start yet; will retry") && l.contains("target"))
        },
    )
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent must wait, not exit"
    );
    maria.start();

    // GIVEN applications writing on both sides, and the agent keeping up
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        writer(source.clone(), "pg", stop.clone()),
        writer(target.clone(), "maria", stop.clone()),
    ];
    harness::eventually("the agent syncs", Duration::from_secs(30), || async {
        let (s, t) = (labels(&source).await, labels(&target).await);
        matches!((s, t), (Ok(s), Ok(t)) if s.iter().any(|l| l.starts_with("maria")) && t.iter().any(|l| l.starts_with("pg")))
    })
    .await;

    // WHEN PostgreSQL is stopped for a while, THEN the agent reports it and
    // waits
    pg.stop();
    outage_reported(&agent, &log, "source", outage).await;
    tokio::time::sleep(outage.saturating_sub(Duration::from_secs(1))).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent must keep running while PostgreSQL is down"
    );
    pg.start();

    // WHEN MariaDB is stopped for a while, THEN likewise
    let resumed = Instant::now();
    harness::eventually(
        "the agent reconnects to PostgreSQL",
        Duration::from_secs(60),
        || async { retrying(&agent).await.is_none() },
    )
    .await;
    eprintln!(
        "reconnected {:?} after PostgreSQL came back",
        resumed.elapsed()
    );
    maria.stop();
    outage_reported(&agent, &log, "target", outage).await;
    tokio::time::sleep(outage.saturating_sub(Duration::from_secs(1))).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent must keep running while MariaDB is down"
    );
    maria.start();

    // THEN, once the applications stop, both sides converge: every row
    // written anywhere is on both sides, once
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.expect("writer"));
    }
    let mut last = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let (Ok(s), Ok(t)) = (labels(&source).await, labels(&target).await) {
            if s == t && written.iter().all(|l| s.binary_search(l).is_ok()) {
                last = (s, t);
                break;
            }
            last = (s, t);
        }
        assert!(
            Instant::now() < deadline,
            "the sides did not converge: source {} rows, target {} rows, {} written",
            last.0.len(),
            last.1.len(),
            written.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut unique = last.0.clone();
    unique.dedup();
    assert_eq!(unique.len(), last.0.len(), "a row arrived twice");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent must keep running"
    );
    let reconnects = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("will retry"))
        .count();
    eprintln!(
        "{} rows written, {} on each side, {reconnects} retries logged",
        written.len(),
        last.0.len()
    );
    let _ = child.kill().await;
}
