//! Test harness: throw-away databases on the local servers, and the real
//! `tandem-agent` binary driven as a user would drive it.
//!
//! Servers: `TANDEM_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and `TANDEM_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/mysql`).
//! Each [`Db`] is a database with a unique name, dropped when the value is.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub mod oauth;
pub mod parse;
pub mod pocketbase;
pub mod shop;

/// A loopback port nothing listens on (for a test server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Which server a test database lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The local PostgreSQL.
    Postgres,
    /// The local MariaDB (or MySQL).
    Mysql,
    /// A SQLite file in a temporary directory.
    Sqlite,
}

impl Engine {
    /// The config `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite",
        }
    }
}

fn admin_url(engine: Engine) -> String {
    match engine {
        Engine::Postgres => std::env::var("TANDEM_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        Engine::Mysql => std::env::var("TANDEM_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into()),
        Engine::Sqlite => unreachable!("SQLite needs no server"),
    }
}

fn with_database(url: &str, db: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("admin URL parses");
    parsed.set_path(&format!("/{db}"));
    parsed.to_string()
}

enum Client {
    Pg(tokio_postgres::Client),
    My(mysql_async::Pool),
    /// The database file (in a directory removed with the value).
    Lite(PathBuf, #[allow(dead_code)] tempfile::TempDir),
}

/// A throw-away database.
pub struct Db {
    /// Its engine.
    pub engine: Engine,
    /// Its name.
    pub name: String,
    /// URL the agent uses.
    pub url: String,
    client: Client,
}

impl Db {
    /// Creates a database with a unique name.
    pub async fn create(engine: Engine) -> Db {
        let name = format!("tandem_it_{}", uuid::Uuid::new_v4().simple());
        if engine == Engine::Sqlite {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join(format!("{name}.db"));
            rusqlite::Connection::open(&path).expect("create the SQLite file");
            return Db {
                engine,
                url: format!("sqlite://{}", path.display()),
                name,
                client: Client::Lite(path, dir),
            };
        }
        let admin = admin_url(engine);
        let url = with_database(&admin, &name);
        let client = match engine {
            Engine::Postgres => {
                let admin_client = pg_connect(&admin).await;
                admin_client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create database");
                Client::Pg(pg_connect(&url).await)
            }
            Engine::Mysql => {
                let pool = mysql_async::Pool::new(admin.as_str());
                let mut conn = pool.get_conn().await.expect("connect to MariaDB");
                conn.query_drop(format!(
                    "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                ))
                .await
                .expect("create database");
                drop(conn);
                pool.disconnect().await.expect("disconnect");
                Client::My(mysql_async::Pool::new(url.as_str()))
            }
            Engine::Sqlite => unreachable!("handled above"),
        };
        Db {
            engine,
            name,
            url,
            client,
        }
    }

    /// Runs statements (separated by `;` outside quotes is not parsed: pass one
    /// statement, or several for PostgreSQL).
    pub async fn exec(&self, sql: &str) {
        self.try_exec(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Like [`Db::exec`] but returns the error.
    pub async fn try_exec(&self, sql: &str) -> Result<(), String> {
        match &self.client {
            Client::Pg(c) => c.batch_execute(sql).await.map_err(|e| format!("{e:?}")),
            Client::My(pool) => {
                let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
                conn.query_drop(sql).await.map_err(|e| e.to_string())
            }
            Client::Lite(path, _) => lite(path).execute_batch(sql).map_err(|e| e.to_string()),
        }
    }

    /// Rows of a query, every value as text (NULL as `None`).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match &self.client {
            Client::Pg(c) => {
                let messages = c
                    .simple_query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
                messages
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_owned))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect()
            }
            Client::My(pool) => {
                let mut conn = pool.get_conn().await.expect("connect");
                let rows: Vec<mysql_async::Row> = conn
                    .query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.into_iter()
                    .map(|row| {
                        row.unwrap()
                            .into_iter()
                            .map(|v| match v {
                                mysql_async::Value::NULL => None,
                                mysql_async::Value::Bytes(b) => {
                                    Some(String::from_utf8_lossy(&b).into_owned())
                                }
                                other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
                            })
                            .collect()
                    })
                    .collect()
            }
            Client::Lite(path, _) => {
                let conn = lite(path);
                let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let width = statement.column_count();
                let rows = statement
                    .query_map([], |row| {
                        (0..width)
                            .map(|i| {
                                Ok(match row.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => None,
                                    rusqlite::types::ValueRef::Integer(i) => Some(i.to_string()),
                                    rusqlite::types::ValueRef::Real(f) => Some(f.to_string()),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        Some(String::from_utf8_lossy(t).into_owned())
                                    }
                                    rusqlite::types::ValueRef::Blob(b) => {
                                        Some(String::from_utf8_lossy(b).into_owned())
                                    }
                                })
                            })
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    }

    /// One value.
    pub async fn value(&self, sql: &str) -> Option<String> {
        self.rows(sql)
            .await
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .flatten()
    }

    /// A count.
    pub async fn count(&self, sql: &str) -> i64 {
        self.value(sql)
            .await
            .expect("a count")
            .parse()
            .expect("a number")
    }

    /// Quotes an identifier.
    pub fn q(&self, ident: &str) -> String {
        match self.engine {
            Engine::Postgres => format!("\"{}\"", ident.replace('"', "\"\"")),
            Engine::Mysql => format!("`{}`", ident.replace('`', "``")),
            Engine::Sqlite => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }

    /// Column definition of an auto-generated big-integer primary key.
    pub fn id(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            Engine::Mysql => "BIGINT AUTO_INCREMENT PRIMARY KEY",
            Engine::Sqlite => "INTEGER PRIMARY KEY",
        }
    }

    /// A text column type.
    pub fn text(&self) -> &'static str {
        match self.engine {
            Engine::Postgres | Engine::Sqlite => "TEXT",
            Engine::Mysql => "VARCHAR(255)",
        }
    }

    /// A catalog listing of everything the agent could have created.
    pub async fn catalog(&self) -> Vec<Vec<Option<String>>> {
        let sql = match self.engine {
            Engine::Postgres => "SELECT 'schema', nspname, '' FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
                 UNION ALL SELECT 'table', table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog','information_schema') \
                 UNION ALL SELECT 'trigger', tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal \
                 UNION ALL SELECT 'function', n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog','information_schema') \
                 ORDER BY 1, 2, 3"
                .to_owned(),
            Engine::Mysql => format!(
                "SELECT 'table', TABLE_NAME, '' FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' \
                 UNION ALL SELECT 'trigger', EVENT_OBJECT_TABLE, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}' \
                 UNION ALL SELECT 'routine', ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{db}' \
                 ORDER BY 1, 2, 3",
                db = self.name
            ),
            Engine::Sqlite => "SELECT type, name, tbl_name FROM sqlite_master ORDER BY 1, 2, 3".to_owned(),
        };
        self.rows(&sql).await
    }

    /// A connection of its own, for tests that interleave transactions.
    pub async fn session(&self) -> Session {
        match &self.client {
            Client::Pg(_) => Session::Pg(pg_connect(&self.url).await),
            Client::My(pool) => Session::My(tokio::sync::Mutex::new(
                pool.get_conn().await.expect("connect"),
            )),
            Client::Lite(..) => panic!("SQLite has one writer at a time: no interleaved sessions"),
        }
    }

    /// Rows waiting in the change table.
    pub async fn pending_changes(&self) -> i64 {
        match self.engine {
            Engine::Postgres => self.count("SELECT count(*) FROM tandem.changes").await,
            Engine::Mysql | Engine::Sqlite => {
                self.count("SELECT count(*) FROM tandem_changes").await
            }
        }
    }
}

/// One connection, for explicit transactions.
pub enum Session {
    /// PostgreSQL.
    Pg(tokio_postgres::Client),
    /// MariaDB.
    My(tokio::sync::Mutex<mysql_async::Conn>),
}

impl Session {
    /// Runs one statement.
    pub async fn exec(&self, sql: &str) {
        match self {
            Session::Pg(c) => c
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}")),
            Session::My(c) => c
                .lock()
                .await
                .query_drop(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if self.engine == Engine::Sqlite {
            return; // the temporary directory goes with the value
        }
        let engine = self.engine;
        let name = self.name.clone();
        // Dropping needs async I/O: do it on a thread of its own, and wait,
        // so that no database outlives the test.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let admin = admin_url(engine);
                match engine {
                    Engine::Postgres => {
                        if let Ok((client, conn)) =
                            tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                        {
                            tokio::spawn(conn);
                            let _ = client
                                .batch_execute(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                        }
                    }
                    Engine::Mysql => {
                        let pool = mysql_async::Pool::new(admin.as_str());
                        if let Ok(mut conn) = pool.get_conn().await {
                            let _ = conn
                                .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                                .await;
                        }
                        let _ = pool.disconnect().await;
                    }
                    Engine::Sqlite => {}
                }
            });
        })
        .join();
    }
}

fn lite(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL ({url}): {e}"));
    tokio::spawn(conn);
    client
}

/// The real `tandem-agent` binary with a config of its own.
pub struct Agent {
    /// Holds config and state.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
}

impl Agent {
    /// Writes a config syncing `pairs` (source table, target table) from
    /// `source` to `target`; `extra` is appended to the file.
    pub fn new(source: &Db, target: &Db, pairs: &[(&str, &str)], extra: &str) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut toml = format!(
            "state_dir = \"state\"\n\n[source]\nkind = \"{}\"\nurl = \"{}\"\npoll_interval = \"50ms\"\n\n[target]\nkind = \"{}\"\nurl = \"{}\"\npoll_interval = \"50ms\"\n\n",
            source.engine.kind(),
            source.url,
            target.engine.kind(),
            target.url
        );
        for (s, t) in pairs {
            toml.push_str(&format!("[[tables]]\nsource = {s:?}\ntarget = {t:?}\n\n"));
        }
        toml.push_str(extra);
        Agent::with_config(dir, &toml)
    }

    /// An agent whose config file is `toml`, written in `dir`.
    pub fn with_config(dir: tempfile::TempDir, toml: &str) -> Agent {
        let config = dir.path().join("tandem.toml");
        std::fs::write(&config, toml).expect("write config");
        // Private, as a config that may hold a password must be (the agent
        // refuses a world-readable one that does).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
                .expect("chmod config");
        }
        Agent { dir, config }
    }

    /// The binary: the one this build made, or `TANDEM_TEST_AGENT_BIN` (a
    /// long soak run uses a copy, so that rebuilding meanwhile cannot swap
    /// the binary under it).
    pub fn binary() -> String {
        std::env::var("TANDEM_TEST_AGENT_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tandem-agent").to_owned())
    }

    /// A command for `args` followed by `--config FILE`.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(Agent::binary());
        command.args(args).arg("--config").arg(&self.config);
        command.env(
            "RUST_LOG",
            std::env::var("TANDEM_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        // The secret of the test Parse Servers, read by configs as
        // `${PARSE_MASTER_KEY}`.
        command.env("PARSE_MASTER_KEY", parse::MASTER_KEY);
        command.kill_on_drop(true);
        command
    }

    /// Runs the command to completion.
    pub async fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("run tandem-agent")
    }

    /// Runs the command and fails the test unless it exits 0; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args).await;
        assert!(
            out.status.success(),
            "tandem-agent {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `install-triggers` on both sides.
    pub async fn install(&self) {
        self.ok(&["install-triggers"]).await;
    }

    /// The applied counts per pair, as `status --json` reports them.
    pub async fn applied(&self) -> Vec<serde_json::Value> {
        let status: serde_json::Value = serde_json::from_str(&self.ok(&["status", "--json"]).await)
            .expect("status --json prints JSON");
        status["pairs"]
            .as_array()
            .expect("pairs")
            .iter()
            .map(|p| p["applied"].clone())
            .collect()
    }

    /// `run --once`, which must report both sides in step.
    pub async fn once(&self) -> String {
        self.ok(&["run", "--once"]).await
    }

    /// `run --once` with crash point `point` armed (`NAME:N`): the agent
    /// must die there.
    pub async fn once_until_crash(&self, point: &str) {
        let out = self
            .command(&["run", "--once"])
            .env("TANDEM_CRASH_AT", point)
            .output()
            .await
            .expect("run the agent");
        let name = point.split(':').next().unwrap_or(point);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("crash point {name} reached")),
            "the agent did not die at {point}:\n{stderr}"
        );
    }
}

/// Waits until `condition` holds, failing the test after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops an agent started with `run` the way systemd does (SIGTERM) and
/// waits for it: the pass in flight finishes and its figures are written,
/// unlike a kill, which may land between a commit and its bookkeeping.
pub async fn terminate(child: &mut tokio::process::Child) {
    let pid = child.id().expect("the agent is running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid}: {sent}");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the agent stops within a minute of SIGTERM")
        .expect("wait for the agent");
    assert!(status.success(), "the agent stopped with {status}");
}

/// Kills an agent started with `run` the hard way (SIGKILL, as a power cut
/// or the OOM killer would) and waits for it; fails the test if it had
/// already exited by itself.
pub async fn sigkill(child: &mut tokio::process::Child) {
    let pid = child.id().expect("the agent is running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -KILL {pid}: {sent}");
    let status = child.wait().await.expect("wait for the agent");
    assert!(!status.success(), "the agent exited by itself: {status}");
}

/// The server pairs: (source, target).
pub const ENGINE_PAIRS: [(Engine, Engine); 2] = [
    (Engine::Postgres, Engine::Mysql),
    (Engine::Mysql, Engine::Postgres),
];

/// Every pair of engines the shared scenarios run on: (source, target).
pub const SCENARIO_PAIRS: [(Engine, Engine); 4] = [
    (Engine::Postgres, Engine::Mysql),
    (Engine::Mysql, Engine::Postgres),
    (Engine::Postgres, Engine::Sqlite),
    (Engine::Sqlite, Engine::Mysql),
];

/// `items (id auto-generated, label)` in each database.
pub async fn items(dbs: &[&Db]) {
    for db in dbs {
        db.exec(&format!(
            "CREATE TABLE items (id {}, label {})",
            db.id(),
            db.text()
        ))
        .await;
    }
}

/// Two unrelated tables on each side, `items (id, label, qty)` and
/// `notes (id, body)`, synced by an agent with capture installed.
pub async fn two_pairs(source_engine: Engine, target_engine: Engine) -> (Db, Db, Agent) {
    let source = Db::create(source_engine).await;
    let target = Db::create(target_engine).await;
    for db in [&source, &target] {
        let (id, text) = (db.id(), db.text());
        db.exec(&format!(
            "CREATE TABLE items (id {id}, label {text}, qty INT)"
        ))
        .await;
        db.exec(&format!("CREATE TABLE notes (id {id}, body {text})"))
            .await;
    }
    let agent = Agent::new(
        &source,
        &target,
        &[("items", "items"), ("notes", "notes")],
        "",
    );
    agent.install().await;
    (source, target, agent)
}
