//! A real Parse Server per test: the cloud application Tandem syncs with.
//!
//! Each [`ParseServer`] runs `parse-server` (installed under
//! `tests/parse-server` by `tests/run.sh`, or named by
//! `TANDEM_TEST_PARSE_SERVER`) on a free loopback port, with a throw-away
//! PostgreSQL database of its own; both go when the value is dropped.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Db, Engine};

/// The application id every test server uses.
pub const APP_ID: &str = "tandem-test";
/// The master key every test server uses (the agent reads it from the
/// environment, as a user would).
pub const MASTER_KEY: &str = "tandem-test-master-key";

/// Options of a test server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Requests allowed per second before Parse answers 429 (its own rate
    /// limiter, applied to the master key too).
    pub requests_per_second: Option<u32>,
}

/// A running Parse Server.
pub struct ParseServer {
    /// Base URL of its REST API (`http://127.0.0.1:PORT/parse`).
    pub url: String,
    child: std::process::Child,
    http: reqwest::Client,
    _db: Db,
    _dir: tempfile::TempDir,
}

fn binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("TANDEM_TEST_PARSE_SERVER") {
        return path.into();
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/parse-server/node_modules/.bin/parse-server");
    assert!(
        path.exists(),
        "Parse Server is not installed at {}: run `npm ci --prefix tests/parse-server` (tests/run.sh does it)",
        path.display()
    );
    path
}

impl ParseServer {
    /// Starts a server and waits until it answers.
    pub async fn start(options: Options) -> ParseServer {
        let db = Db::create(Engine::Postgres).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let mut config = json!({
            "appId": APP_ID,
            "masterKey": MASTER_KEY,
            "databaseURI": db.url,
            "port": port,
            "mountPath": "/parse",
            "serverURL": format!("http://127.0.0.1:{port}/parse"),
            "logLevel": "error",
            "logsFolder": dir.path().join("logs"),
            "allowClientClassCreation": false,
        });
        if let Some(rps) = options.requests_per_second {
            config["rateLimit"] = json!([{
                "requestPath": "/classes/{*path}",
                "requestTimeWindow": 1000,
                "requestCount": rps,
                "includeMasterKey": true,
                // Requests from 127.0.0.1 count as internal to Parse.
                "includeInternalRequests": true,
                "zone": "global",
            }]);
        }
        let file = dir.path().join("parse.json");
        std::fs::write(&file, config.to_string()).expect("write the Parse config");
        let child = std::process::Command::new(binary())
            .arg(&file)
            // Its log files go to the temporary directory, not the tree.
            .current_dir(dir.path())
            .env("PARSE_SERVER_LOGS_FOLDER", dir.path().join("logs"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("parse.log")).expect("log file"))
            .spawn()
            .expect("start parse-server");
        let server = ParseServer {
            url: format!("http://127.0.0.1:{port}/parse"),
            child,
            http: reqwest::Client::new(),
            _db: db,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let health = server
                .http
                .get(format!("{}/health", server.url))
                .send()
                .await;
            if let Ok(response) = health {
                if response.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Parse Server did not come up on port {port}: {}",
                std::fs::read_to_string(server._dir.path().join("parse.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("X-Parse-Application-Id", APP_ID)
            .header("X-Parse-Master-Key", MASTER_KEY)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        // Tests themselves also meet the rate limit: they wait it out.
        for _ in 0..100 {
            let response = request
                .try_clone()
                .expect("clonable")
                .send()
                .await
                .expect("Parse Server answers");
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "Parse answered {status}: {body}");
            return body;
        }
        panic!("Parse Server kept answering 429");
    }

    /// Creates an object; returns its id.
    pub async fn create(&self, class: &str, fields: Value) -> String {
        let body = self
            .send(
                self.request(reqwest::Method::POST, &format!("/classes/{class}"))
                    .json(&fields),
            )
            .await;
        body["objectId"].as_str().expect("objectId").to_owned()
    }

    /// Changes an object's fields.
    pub async fn update(&self, class: &str, id: &str, fields: Value) {
        self.send(
            self.request(reqwest::Method::PUT, &format!("/classes/{class}/{id}"))
                .json(&fields),
        )
        .await;
    }

    /// Deletes an object.
    pub async fn delete(&self, class: &str, id: &str) {
        self.send(self.request(reqwest::Method::DELETE, &format!("/classes/{class}/{id}")))
            .await;
    }

    /// Removes a field from a class's schema (and from its objects).
    pub async fn drop_field(&self, class: &str, field: &str) {
        self.send(
            self.request(reqwest::Method::PUT, &format!("/schemas/{class}"))
                .json(&json!({"className": class, "fields": {field: {"__op": "Delete"}}})),
        )
        .await;
    }

    /// Every object of `class`, oldest first.
    pub async fn all(&self, class: &str) -> Vec<Value> {
        let body = self
            .send(
                self.request(reqwest::Method::GET, &format!("/classes/{class}"))
                    .query(&[("limit", "10000"), ("order", "createdAt")]),
            )
            .await;
        body["results"].as_array().cloned().unwrap_or_default()
    }

    /// The object with `id`.
    pub async fn get(&self, class: &str, id: &str) -> Value {
        self.send(self.request(reqwest::Method::GET, &format!("/classes/{class}/{id}")))
            .await
    }

    /// The `[target]` (or `[source]`) section reaching this server, with
    /// the master key read from `PARSE_MASTER_KEY`, followed by `objects`
    /// (TOML of `[[<side>.objects]]` sections, see [`object`]).
    pub fn endpoint(&self, side: &str, objects: &str) -> String {
        format!(
            "[{side}]\nkind = \"http\"\nurl = \"{}\"\npassword = \"${{PARSE_MASTER_KEY}}\"\npoll_interval = \"100ms\"\nreconcile_interval = \"1s\"\nheaders = {{ \"X-Parse-Application-Id\" = \"{APP_ID}\" }}\nauth = {{ scheme = \"header\", header = \"X-Parse-Master-Key\" }}\n\n{objects}\n",
            self.url
        )
    }
}

/// A `[[<side>.objects]]` section describing Parse class `class` with
/// `fields` (TOML inline-table body, e.g. `name = "text"`).
pub fn object(side: &str, class: &str, fields: &str) -> String {
    format!(
        r#"[[{side}.objects]]
name = "{class}"
path = "/classes/{class}"
records = "results"
id = "objectId"
modified = "updatedAt"
created = "createdAt"
update_method = "PUT"
since = {{ where = '{{"updatedAt":{{"$gte":{{"__type":"Date","iso":"{{since}}"}}}}}}' }}
order = {{ order = "updatedAt,objectId" }}
limit_param = "limit"
offset_param = "skip"
clear = '{{"__op":"Delete"}}'
create_token = "tandemToken"
find_token = {{ where = '{{"tandemToken":"{{token}}"}}' }}
fields = {{ {fields} }}
"#
    )
}

/// A Parse pointer field to `class`.
pub fn pointer(class: &str) -> String {
    format!(
        r#"{{ type = "reference", object = "{class}", wrap = '{{"__type":"Pointer","className":"{class}","objectId":"{{}}"}}' }}"#
    )
}

impl Drop for ParseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
