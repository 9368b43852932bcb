//! An operator's story: the agent runs as a service with `[metrics] listen`
//! set; a monitoring system asks `/health`, `/ready` and `/metrics` and sees
//! the changes go by; the logs are JSON lines for the journal and quote no
//! row values; SIGTERM stops the agent and its endpoint with it.

mod harness;

use std::process::Stdio;
use std::time::Duration;

use harness::{Agent, Db, Engine};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A port nobody listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET path` on 127.0.0.1:`port`: the status and the body, or `None`
/// when nothing answers.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The value of the sample `name{labels}` in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

async fn items_on_both_sides() -> (Db, Db) {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Postgres).await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE items (id {}, label {})",
            db.id(),
            db.text()
        ))
        .await;
    }
    (source, target)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monitored_agent_reports_health_readiness_and_figures() {
    let (source, target) = items_on_both_sides().await;
    source
        .exec("INSERT INTO items (label) VALUES ('secret-before')")
        .await;
    let port = free_port();
    let agent = Agent::new(
        &source,
        &target,
        &[("items", "items")],
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    agent.install().await;

    // GIVEN the agent running as a service, logging into a pipe (as under
    // systemd), its own debug lines included
    let mut child = agent
        .command(&["run"])
        .env("RUST_LOG", "info,tandem_agent=debug")
        .env_remove("TANDEM_LOG_FORMAT")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let log = tokio::spawn(async move {
        let mut log = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
        log
    });

    // THEN it answers /health, and /ready once the first sync is done
    harness::eventually("/health answers 200", TIMEOUT, || async {
        get(port, "/health").await == Some((200, "ok\n".to_owned()))
    })
    .await;
    harness::eventually("/ready answers 200", TIMEOUT, || async {
        matches!(get(port, "/ready").await, Some((200, _)))
    })
    .await;
    assert_eq!(
        target
            .count("SELECT count(*) FROM items WHERE label = 'secret-before'")
            .await,
        1
    );

    // WHEN an application edits the copy on the target
    target
        .exec("UPDATE items SET label = 'secret-edited' WHERE label = 'secret-before'")
        .await;

    // THEN /metrics counts the change captured there and applied to the
    // source, and the agent stays ready
    let applied =
        "tandem_records_applied_total{pair=\"items\",direction=\"target_to_source\",kind=\"update\"}";
    harness::eventually("/metrics shows the update applied", TIMEOUT, || async {
        match get(port, "/metrics").await {
            Some((200, page)) => sample(&page, applied).is_some_and(|n| n >= 1.0),
            _ => false,
        }
    })
    .await;
    let (status, page) = get(port, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200);
    assert_eq!(
        source
            .count("SELECT count(*) FROM items WHERE label = 'secret-edited'")
            .await,
        1
    );
    for series in [
        "tandem_records_applied_total{pair=\"items\",direction=\"source_to_target\",kind=\"insert\"}",
        "tandem_changes_captured_total{pair=\"items\",direction=\"target_to_source\"}",
        "tandem_changes_logged_total{pair=\"items\",direction=\"target_to_source\"}",
        "tandem_apply_lag_seconds_count{pair=\"items\",direction=\"target_to_source\"}",
    ] {
        assert!(
            sample(&page, series).is_some_and(|n| n >= 1.0),
            "{series} not at least 1 in:\n{page}"
        );
    }
    harness::eventually("the backlog gauges are published", TIMEOUT, || async {
        let Some((200, page)) = get(port, "/metrics").await else {
            return false;
        };
        sample(&page, "tandem_change_log_entries").is_some()
            && sample(
                &page,
                "tandem_change_table_rows{pair=\"items\",direction=\"source_to_target\"}",
            )
            .is_some()
            && sample(
                &page,
                "tandem_dead_letters{pair=\"items\",direction=\"target_to_source\"}",
            ) == Some(0.0)
    })
    .await;
    assert!(matches!(get(port, "/ready").await, Some((200, _))));
    assert_eq!(get(port, "/nowhere").await.map(|r| r.0), Some(404));

    // WHEN it is asked to stop, THEN it exits 0 and the endpoint is gone
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("stops in time")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert_eq!(get(port, "/health").await, None);

    // AND its log is JSON lines, quoting no row value above debug level,
    // with a span per applied batch that carries its counts
    let log = log.await.expect("the log");
    let mut events = Vec::new();
    for line in &log {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(event["fields"]["message"].is_string(), "{line}");
        if event["level"] != "DEBUG" {
            assert!(!line.contains("secret-"), "a row value in the log: {line}");
        }
        events.push(event);
    }
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "batch applied"
                && e["span"]["name"] == "apply"
                && e["span"]["pair"] == "items"
                && e["span"]["direction"] == "target_to_source"
                && e["span"]["updated"] == 1),
        "no applied batch with its counts in:\n{}",
        log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_metrics_address_is_one_line_and_stops_the_start() {
    let (source, target) = items_on_both_sides().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let agent = Agent::new(
        &source,
        &target,
        &[("items", "items")],
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    agent.install().await;

    let out = agent.output(&["run"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("[metrics] listen") && err.contains(&port.to_string()),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "not one line:\n{err}");
    assert_eq!(target.count("SELECT count(*) FROM items").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_syncs_progress_lines_count_the_rows_there_are() {
    // GIVEN a MariaDB table of 3,503 rows, freshly loaded (its statistics
    // lag behind), to be copied to PostgreSQL
    let source = Db::create(Engine::Mysql).await;
    let target = Db::create(Engine::Postgres).await;
    harness::items(&[&source, &target]).await;
    source
        .exec("INSERT INTO items (label) SELECT concat('row ', seq) FROM seq_1_to_3503")
        .await;
    let agent = harness::Agent::new(&source, &target, &[("items", "items")], "");
    agent.install().await;

    // WHEN the first sync runs, logging as under systemd (JSON lines)
    let out = agent
        .command(&["run", "--once"])
        .env("RUST_LOG", "info")
        .env("TANDEM_LOG_FORMAT", "json")
        .output()
        .await
        .expect("run the agent");
    assert!(out.status.success(), "{out:?}");

    // THEN it announces the rows there are, and never copies more "of" fewer
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let from_source = |line: &&serde_json::Value| line["fields"]["from"] == "source";
    let copying = lines
        .iter()
        .filter(from_source)
        .find(|l| l["fields"]["message"] == "first sync: copying")
        .expect("a line announcing the copy");
    assert_eq!(copying["fields"]["rows"], 3503, "{copying}");
    let progress: Vec<&serde_json::Value> = lines
        .iter()
        .filter(from_source)
        .filter(|l| l["fields"]["message"] == "first sync: progress")
        .collect();
    assert!(!progress.is_empty());
    for line in progress {
        let copied = line["fields"]["copied"].as_u64().unwrap();
        let of = line["fields"]["of"].as_u64().unwrap();
        assert!(copied <= of && of == 3503, "{line}");
    }
}
