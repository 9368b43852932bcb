//! A database table and a Kinto collection kept in step through an API
//! that takes OAuth2 tokens from a real authorization server
//! (`oidc-provider`): the refresh-token grant straight to Kinto, the
//! client-credentials grant through a resource server (Apache with
//! mod_auth_openidc) in front of it. Kinto also brings a third shape of
//! answers (records wrapped in `data`, times in milliseconds) and a
//! deleted-records listing (its tombstones).

mod harness;

use std::process::Stdio;
use std::time::Duration;

use harness::oauth::{OAuthServer, Options, CLIENT_ID, CLIENT_SECRET};
use harness::{eventually, Agent, Db, Engine};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// Writes `text` to `name` in `dir`, readable by its owner only, as a
/// secret's file must be.
fn secret_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a secret file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod a secret file");
    }
    path
}

/// A config syncing `db`'s tasks table (source) with Kinto's tasks
/// collection at `url` (target), authenticated by `auth` (the inline
/// table's body); the client secret is read from a file beside it.
fn config(db: &Db, url: &str, auth: &str) -> Agent {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(dir.path(), "client-secret", CLIENT_SECRET);
    let toml = format!(
        r#"state_dir = "state"

[source]
kind = "{}"
url = "{}"
poll_interval = "50ms"

[target]
kind = "http"
url = "{url}"
password_file = "{}"
poll_interval = "100ms"
reconcile_interval = "1h"
auth = {{ scheme = "oauth2", client_id = "{CLIENT_ID}", {auth} }}

[[target.objects]]
name = "tasks"
preset = "kinto"
fields = {{ title = "text", done = "boolean" }}

[[tables]]
source = "tasks"
target = "tasks"
"#,
        db.engine.kind(),
        db.url,
        secret.display(),
    );
    Agent::with_config(dir, &toml)
}

async fn tasks_table(db: &Db) {
    db.exec("CREATE TABLE tasks (id SERIAL PRIMARY KEY, title TEXT NOT NULL, done BOOLEAN)")
        .await;
}

/// The tasks of the database, as (title, done), sorted.
async fn db_tasks(db: &Db) -> Vec<(String, Option<bool>)> {
    let mut rows: Vec<_> = db
        .rows("SELECT title, done FROM tasks")
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].clone().expect("title"),
                r[1].as_ref().map(|b| b == "t" || b == "true" || b == "1"),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The tasks of a Kinto listing, as (title, done), sorted.
fn kinto_tasks(records: Vec<Value>) -> Vec<(String, Option<bool>)> {
    let mut rows: Vec<_> = records
        .into_iter()
        .map(|r| {
            (
                r["title"].as_str().expect("title").to_owned(),
                r["done"].as_bool(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn task(title: &str, done: Option<bool>) -> (String, Option<bool>) {
    (title.to_owned(), done)
}

/// The id of the Kinto task called `title`.
fn kinto_id(records: &[Value], title: &str) -> String {
    records
        .iter()
        .find(|r| r["title"] == title)
        .and_then(|r| r["id"].as_str())
        .unwrap_or_else(|| panic!("{title} in Kinto"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_renew_through_a_long_run_and_a_kill_and_deletes_come_from_tombstones() {
    // Access tokens live 3 s, and every refresh replaces the refresh
    // token: the one in the config works once only.
    let oauth = OAuthServer::start(Options {
        access_token_ttl: 3,
        rotate_refresh_tokens: true,
    })
    .await;
    let db = Db::create(Engine::Postgres).await;
    tasks_table(&db).await;
    db.exec("INSERT INTO tasks (title, done) VALUES ('write the spec', true), ('ship it', NULL)")
        .await;
    let kinto = oauth.kinto_url();
    let alice = oauth.user_token().await;
    oauth
        .kinto_create(
            &kinto,
            &alice,
            "tasks",
            json!({"title": "from the cloud", "done": false}),
        )
        .await;
    let refresh_token = oauth.refresh_token().await;
    let agent = config(
        &db,
        &kinto,
        &format!(
            r#"token_url = "{}", grant = "refresh_token", refresh_token_file = "refresh-token""#,
            oauth.token_url()
        ),
    );
    secret_file(agent.dir.path(), "refresh-token", &refresh_token);
    agent.install().await;
    agent.ok(&["check"]).await;
    agent.once().await;
    let all = vec![
        task("from the cloud", Some(false)),
        task("ship it", None),
        task("write the spec", Some(true)),
    ];
    assert_eq!(db_tasks(&db).await, all, "database after the first sync");
    assert_eq!(
        kinto_tasks(oauth.kinto_all(&kinto, &alice, "tasks").await),
        all,
        "Kinto after the first sync"
    );

    // A service run of about 15 s, killed (SIGKILL) and started again
    // halfway, with changes both ways all along.
    let log = agent.dir.path().join("run.log");
    let start = || {
        agent
            .command(&["run"])
            .env("RUST_LOG", "tandem_connectors=debug")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .expect("start the agent")
    };
    let mut child = start();
    let refreshes_before = oauth.token_requests("refresh_token").await;
    for round in 0..6 {
        if round == 3 {
            harness::sigkill(&mut child).await;
            child = start();
        }
        db.exec(&format!(
            "INSERT INTO tasks (title) VALUES ('db task {round}')"
        ))
        .await;
        let alice = oauth.user_token().await;
        oauth
            .kinto_create(
                &kinto,
                &alice,
                "tasks",
                json!({"title": format!("cloud task {round}"), "done": true}),
            )
            .await;
        let title = format!("cloud task {round}");
        eventually("both new tasks arrive", WAIT, || async {
            let tasks = db_tasks(&db).await;
            // The test's own tokens last 3 s too.
            let alice = oauth.user_token().await;
            let kinto_now = oauth.kinto_all(&kinto, &alice, "tasks").await;
            tasks.contains(&task(&title, Some(true)))
                && kinto_now
                    .iter()
                    .any(|r| r["title"] == format!("db task {round}").as_str())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }

    // Deletes both ways: Kinto's tombstones (the deleted-records request:
    // the id set is never compared in this run) and the database's rows.
    let alice = oauth.user_token().await;
    let listed = oauth.kinto_all(&kinto, &alice, "tasks").await;
    oauth
        .kinto_delete(
            &kinto,
            &alice,
            "tasks",
            &kinto_id(&listed, "from the cloud"),
        )
        .await;
    db.exec("DELETE FROM tasks WHERE title = 'ship it'").await;
    eventually("the deletes travel", WAIT, || async {
        let tasks = db_tasks(&db).await;
        let alice = oauth.user_token().await;
        let kinto_now = oauth.kinto_all(&kinto, &alice, "tasks").await;
        !tasks.iter().any(|t| t.0 == "from the cloud")
            && !kinto_now.iter().any(|r| r["title"] == "ship it")
    })
    .await;
    harness::terminate(&mut child).await;
    agent.once().await;
    let alice = oauth.user_token().await;
    assert_eq!(
        kinto_tasks(oauth.kinto_all(&kinto, &alice, "tasks").await),
        db_tasks(&db).await,
        "both sides hold the same tasks"
    );
    assert_eq!(db_tasks(&db).await.len(), 13, "each task once");

    let refreshes = oauth.token_requests("refresh_token").await - refreshes_before;
    assert!(
        refreshes >= 4,
        "tokens of 3 s over about 15 s were renewed {refreshes} times"
    );
    let stats = oauth.stats().await;
    assert!(
        stats["errors"]
            .as_object()
            .is_none_or(|e| !e.keys().any(|k| k.starts_with("refresh_token"))),
        "no refresh was refused (a replayed, rotated refresh token is): {stats}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    let rotated = std::fs::read_to_string(
        agent
            .dir
            .path()
            .join("state/target-http/oauth-refresh-token"),
    )
    .expect("the rotated refresh token is kept in the state directory");
    for secret in [CLIENT_SECRET, refresh_token.as_str(), rotated.trim()] {
        assert!(!logged.contains(secret), "a secret was logged");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_taken_back_is_renewed_once_on_the_401() {
    // Tokens that would last the whole test.
    let oauth = OAuthServer::start(Options {
        access_token_ttl: 600,
        rotate_refresh_tokens: false,
    })
    .await;
    let db = Db::create(Engine::Postgres).await;
    tasks_table(&db).await;
    let kinto = oauth.kinto_url();
    let refresh_token = oauth.refresh_token().await;
    let agent = config(
        &db,
        &kinto,
        &format!(
            r#"token_url = "{}", grant = "refresh_token", refresh_token_file = "refresh-token""#,
            oauth.token_url()
        ),
    );
    secret_file(agent.dir.path(), "refresh-token", &refresh_token);
    agent.install().await;
    agent.once().await;
    let mut child = agent
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    db.exec("INSERT INTO tasks (title) VALUES ('before')").await;
    let alice = oauth.user_token().await;
    eventually("the first task arrives", WAIT, || async {
        oauth.kinto_all(&kinto, &alice, "tasks").await.len() == 1
    })
    .await;
    let refreshes = oauth.token_requests("refresh_token").await;

    // Every access token taken back: the agent's next request meets 401 (or
    // 403, Kinto's answer where it knows the resource).
    assert!(oauth.destroy_issued().await >= 1);
    db.exec("INSERT INTO tasks (title) VALUES ('after')").await;
    let alice = oauth.user_token().await;
    eventually("the next task arrives", WAIT, || async {
        oauth.kinto_all(&kinto, &alice, "tasks").await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    harness::terminate(&mut child).await;
    assert_eq!(
        oauth.token_requests("refresh_token").await - refreshes,
        1,
        "one renewal after the 401, not one per request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_reach_a_resource_server_and_renew() {
    let oauth = OAuthServer::start(Options {
        access_token_ttl: 2,
        rotate_refresh_tokens: false,
    })
    .await;
    let db = Db::create(Engine::Postgres).await;
    tasks_table(&db).await;
    db.exec("INSERT INTO tasks (title, done) VALUES ('from the database', false)")
        .await;
    // Through the resource server every client-credentials caller is the
    // client itself: the test writes as the agent would be seen.
    let resource = oauth.resource_url();
    let client = oauth.client_token().await;
    oauth
        .kinto_create(
            &resource,
            &client,
            "tasks",
            json!({"title": "from the cloud", "done": true}),
        )
        .await;
    let agent = config(
        &db,
        &resource,
        &format!(
            r#"token_url = "{}", grant = "client_credentials", scope = "records""#,
            oauth.token_url()
        ),
    );
    agent.install().await;
    agent.ok(&["check"]).await;
    agent.once().await;
    let both = vec![
        task("from the cloud", Some(true)),
        task("from the database", Some(false)),
    ];
    assert_eq!(db_tasks(&db).await, both);
    let issued = oauth.token_requests("client_credentials").await;
    let mut child = agent
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        db.exec(&format!(
            "INSERT INTO tasks (title) VALUES ('late {round}')"
        ))
        .await;
    }
    let client = oauth.client_token().await;
    eventually("the late tasks arrive", WAIT, || async {
        oauth.kinto_all(&resource, &client, "tasks").await.len() == 5
    })
    .await;
    harness::terminate(&mut child).await;
    let renewed = oauth.token_requests("client_credentials").await - issued;
    assert!(
        renewed >= 3,
        "tokens of 2 s over about 8 s were renewed {renewed} times"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_a_refused_client_secret_in_one_line() {
    let oauth = OAuthServer::start(Options::default()).await;
    let db = Db::create(Engine::Postgres).await;
    tasks_table(&db).await;
    let agent = config(
        &db,
        &oauth.resource_url(),
        &format!(
            r#"token_url = "{}", grant = "client_credentials", scope = "records""#,
            oauth.token_url()
        ),
    );
    secret_file(agent.dir.path(), "client-secret", "not-the-secret");
    agent.install().await;
    let out = agent.output(&["check"]).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "check passed: {said}");
    let lines: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("invalid_client"))
        .collect();
    assert_eq!(lines.len(), 1, "one line naming the refusal: {said}");
    assert!(
        !said.contains("not-the-secret"),
        "the secret is never printed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_record_answered_403_is_gone_where_not_found_says_so() {
    let oauth = OAuthServer::start(Options {
        access_token_ttl: 600,
        rotate_refresh_tokens: false,
    })
    .await;
    let kinto = oauth.kinto_url();
    // Alice's team bucket: anyone signed in may add tasks, and sees only
    // the tasks they added; of a task they cannot see, Kinto does not say
    // whether it exists: 403, gone or not.
    let alice = oauth.user_token().await;
    oauth
        .kinto(
            reqwest::Method::PUT,
            &format!("{kinto}/buckets/team"),
            &alice,
            Some(json!({})),
            reqwest::StatusCode::CREATED,
        )
        .await;
    oauth
        .kinto(
            reqwest::Method::PUT,
            &format!("{kinto}/buckets/team/collections/tasks"),
            &alice,
            Some(json!({"permissions": {"record:create": ["system.Authenticated"]}})),
            reqwest::StatusCode::CREATED,
        )
        .await;
    let db = Db::create(Engine::Postgres).await;
    tasks_table(&db).await;
    db.exec("INSERT INTO tasks (title) VALUES ('keep'), ('drop')")
        .await;
    // The agent signs in as Bob, with a config written by hand for the
    // shared bucket and no deleted-records request: deletes are found by
    // comparing ids.
    let bob = oauth.authorize("bob").await;
    let agent = config(
        &db,
        &kinto,
        &format!(
            r#"token_url = "{}", grant = "refresh_token", refresh_token_file = "refresh-token""#,
            oauth.token_url()
        ),
    );
    secret_file(
        agent.dir.path(),
        "refresh-token",
        bob["refresh_token"].as_str().expect("a refresh token"),
    );
    let hand_written = r#"[[target.objects]]
name = "tasks"
path = "/buckets/team/collections/tasks/records"
records = "data"
record = "data"
request_record = "data"
id = "id"
modified = "last_modified"
update_method = "PATCH"
since = { _since = "{since}" }
order = { _sort = "last_modified" }
time_format = "unix_ms"
limit_param = "_limit"
fields = { title = "text", done = "boolean" }
"#;
    let text = std::fs::read_to_string(&agent.config).unwrap();
    let start = text.find("[[target.objects]]").unwrap();
    let end = text.find("[[tables]]").unwrap();
    let text = format!(
        "{}{hand_written}\n{}",
        &text[..start].replace("reconcile_interval = \"1h\"", "reconcile_interval = \"1s\""),
        &text[end..]
    );
    std::fs::write(&agent.config, &text).unwrap();
    agent.install().await;
    agent.once().await;
    let tasks_url = format!("{kinto}/buckets/team/collections/tasks/records");
    let (listed, _) = oauth
        .kinto(
            reqwest::Method::GET,
            &tasks_url,
            &alice,
            None,
            reqwest::StatusCode::OK,
        )
        .await;
    let listed = listed["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 2, "Bob's copies in Alice's bucket");

    // Alice, the bucket's owner, deletes one; to Bob it answers 403 now.
    let drop = kinto_id(&listed, "drop");
    oauth
        .kinto(
            reqwest::Method::DELETE,
            &format!("{tasks_url}/{drop}"),
            &alice,
            None,
            reqwest::StatusCode::OK,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = agent.output(&["run", "--once"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("403") && said.contains("set not_found = [403, 404]"),
        "with not_found = [404] a 403 is not taken for gone, and a warning says what to set: {said}"
    );
    assert_eq!(db_tasks(&db).await.len(), 2, "nothing deleted on a guess");

    // Told that 403 means "no such record" here, the delete is synced.
    let told = text.replace(
        "limit_param = \"_limit\"",
        "limit_param = \"_limit\"\nnot_found = [403, 404]",
    );
    std::fs::write(&agent.config, told).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.once().await;
    assert_eq!(db_tasks(&db).await, vec![task("keep", None)]);
}
