//! Writes to a cloud API: the records a second the agent writes to a real
//! PocketBase (started for the run) while it may send `budget` requests a
//! second, as a share of that budget. One request a record is the ceiling:
//! a share of 0.5 means two requests a record.
//!
//! The object is written out without the newer keys (no preset, its
//! `{since}` left in RFC 3339, which PocketBase compares as text and never
//! matches), so any agent version takes the same config and the API side
//! stays quiet: only writes are measured, and an older binary can be
//! measured against a newer one with `--agent`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::agent::Agent;
use crate::db::{Db, Engine, Servers};
use crate::Settings;

/// What the phase measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiWrites {
    /// Requests a second the agent was allowed (`requests_per_second`).
    pub budget: f64,
    /// Records created, then updated.
    pub records: u64,
    /// Records created a second.
    pub created_per_second: f64,
    /// Records updated a second.
    pub updated_per_second: f64,
}

/// A PocketBase on a free port with a data directory in `dir`, stopped
/// when dropped.
struct PocketBase {
    url: String,
    token: String,
    child: std::process::Child,
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PocketBase {
    async fn start(binary: &Path, dir: &Path) -> Result<PocketBase> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data = ["--dir", &dir.join("pb_data").display().to_string()].map(str::to_owned);
        let quiet = [
            "--migrationsDir".to_owned(),
            dir.join("pb_migrations").display().to_string(),
            "--automigrate=false".to_owned(),
        ];
        let (email, password) = ("bench@example.com", "tandem-bench-password");
        let made = std::process::Command::new(binary)
            .args(["superuser", "upsert", email, password])
            .args(&data)
            .args(&quiet)
            .output()
            .with_context(|| format!("run {}", binary.display()))?;
        if !made.status.success() {
            bail!(
                "pocketbase superuser upsert: {}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
        let child = std::process::Command::new(binary)
            .args(["serve", "--http", &format!("127.0.0.1:{port}")])
            .args(&data)
            .args(&quiet)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = PocketBase {
            url: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            child,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http
            .get(format!("{}/api/health", server.url))
            .send()
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("PocketBase did not come up on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let auth: serde_json::Value = http
            .post(format!(
                "{}/api/collections/_superusers/auth-with-password",
                server.url
            ))
            .json(&json!({"identity": email, "password": password}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        server.token = auth["token"]
            .as_str()
            .context("PocketBase gave no token")?
            .to_owned();
        http.post(format!("{}/api/collections", server.url))
            .header("Authorization", &server.token)
            .json(&json!({"name": "customers", "type": "base", "fields": [
                {"name": "name", "type": "text", "required": true},
                {"name": "score", "type": "number"},
                {"name": "created", "type": "autodate", "onCreate": true, "onUpdate": false},
                {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
            ]}))
            .send()
            .await?
            .error_for_status()
            .context("create the customers collection")?;
        Ok(server)
    }
}

/// Creates, then updates, `settings.api_records` records through the
/// agent at `settings.api_budget` requests a second.
pub async fn run(
    servers: &Servers,
    settings: &Settings,
    work: &Path,
    pocketbase: &Path,
) -> Result<ApiWrites> {
    let dir = work.join("api");
    std::fs::create_dir_all(&dir)?;
    let server = PocketBase::start(pocketbase, &dir).await?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, &server.token)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
    }
    let db = Db::create(servers, Engine::Postgres, "api").await?;
    db.exec("CREATE TABLE customers (id SERIAL PRIMARY KEY, name TEXT NOT NULL, score INT)")
        .await?;
    let toml = format!(
        r#"state_dir = "state"

[source]
kind = "postgres"
url = "{}"

[target]
kind = "http"
url = "{}"
password_file = "{}"
auth = {{ scheme = "bearer" }}
requests_per_second = {}
poll_interval = "100ms"
reconcile_interval = "1h"

[[target.objects]]
name = "customers"
path = "/api/collections/customers/records"
records = "items"
id = "id"
modified = "updated"
created = "created"
update_method = "PATCH"
since = {{ filter = "updated >= '{{since}}'" }}
order = {{ sort = "updated,id" }}
limit_param = "perPage"
page_size = 200
fields = {{ name = "text", score = "integer" }}

[[tables]]
source = "customers"
target = "customers"
"#,
        db.url,
        server.url,
        token_file.display(),
        settings.api_budget
    );
    let agent = Agent::with_config(&settings.agent, &dir.join("agent"), &toml)?;
    agent.install().await?;
    agent.once().await?;
    let n = settings.api_records;
    db.exec(&format!(
        "INSERT INTO customers (name, score) SELECT 'c' || g, g FROM generate_series(1, {n}) g"
    ))
    .await?;
    let (created, _) = agent.once().await?;
    db.exec("UPDATE customers SET score = score + 1").await?;
    let (updated, _) = agent.once().await?;
    Ok(ApiWrites {
        budget: settings.api_budget,
        records: n,
        created_per_second: n as f64 / created.as_secs_f64(),
        updated_per_second: n as f64 / updated.as_secs_f64(),
    })
}
