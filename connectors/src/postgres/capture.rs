//! Tailing `tandem.changes` and waking up on `pg_notify`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};

use crate::connector::{CapturedChange, ChangeOp};
use crate::error::{ConnectorError, Result};
use crate::schema::TableName;

use super::client::{pg_error, Server, CHANGES_CHANNEL};
use super::install::display_name;

/// Up to `limit` change rows of `tables`, lowest seq first.
pub(crate) async fn read_changes(
    client: &Client,
    tables: &[TableName],
    limit: usize,
) -> Result<Vec<CapturedChange>> {
    if tables.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let names: Vec<String> = tables.iter().map(display_name).collect();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "select seq, table_name, op::text, pk, captured_at from tandem.changes
             where table_name = any($1::text[]) order by seq limit $2::bigint",
            &[&names, &limit],
        )
        .await
        .map_err(|e| pg_error(e, "cannot read tandem.changes"))?;
    rows.iter()
        .map(|row| {
            let op: String = row.get(2);
            Ok(CapturedChange {
                seq: row.get(0),
                table: row.get(1),
                op: ChangeOp::from_code(&op)?,
                key: row.get::<_, serde_json::Value>(3),
                captured_at: row.get::<_, DateTime<Utc>>(4),
            })
        })
        .collect()
}

/// Deletes exactly the change rows `seqs`.
pub(crate) async fn delete_changes(client: &Client, seqs: &[i64]) -> Result<()> {
    for chunk in seqs.chunks(10_000) {
        client
            .execute(
                "delete from tandem.changes where seq = any($1::bigint[])",
                &[&chunk],
            )
            .await
            .map_err(|e| pg_error(e, "cannot delete from tandem.changes"))?;
    }
    Ok(())
}

/// Change rows waiting, per table.
pub(crate) async fn count_changes(
    client: &Client,
    tables: &[TableName],
) -> Result<Vec<(String, u64)>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = tables.iter().map(display_name).collect();
    let rows = client
        .query(
            "select table_name, count(*) from tandem.changes
             where table_name = any($1::text[]) group by table_name order by table_name",
            &[&names],
        )
        .await
        .map_err(|e| pg_error(e, "cannot count tandem.changes"))?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)))
        .collect())
}

/// First and longest pause before reconnecting the LISTEN connection.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Wakes waiters when the triggers `pg_notify`. Its LISTEN connection is
/// opened on the first wait (so short-lived commands never open it) and
/// reopened, with backoff, whenever it drops.
#[derive(Debug)]
pub(crate) struct Waker {
    server: Server,
    notify: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Waker {
    /// A waker that listens on `server` once first waited on.
    pub(crate) fn new(server: Server) -> Waker {
        Waker {
            server,
            notify: Arc::new(Notify::new()),
            task: Mutex::new(None),
        }
    }

    /// Returns on a notification or after `min(timeout, poll_interval)`.
    pub(crate) async fn wait(&self, timeout: Duration, poll_interval: Duration) {
        self.start();
        let _ = tokio::time::timeout(timeout.min(poll_interval), self.notify.notified()).await;
    }

    fn start(&self) {
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let running = matches!(task.as_ref(), Some(t) if !t.is_finished());
        if !running {
            *task = Some(tokio::spawn(listen_forever(
                self.server.clone(),
                Arc::clone(&self.notify),
            )));
        }
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(JoinHandle<Result<(), tokio_postgres::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps one LISTEN connection open for as long as the task lives.
async fn listen_forever(server: Server, notify: Arc<Notify>) {
    let mut backoff = RECONNECT_FIRST;
    let mut first = true;
    loop {
        let outcome = listen_once(&server, &notify, first, &mut backoff).await;
        first = false;
        let reason = match outcome {
            Ok(()) => "the server closed the connection".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            server = %server.address,
            retry_in_ms = backoff.as_millis() as u64,
            "PostgreSQL LISTEN connection lost, polling until it is back: {reason}"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Connects, LISTENs and forwards notifications until the connection ends.
async fn listen_once(
    server: &Server,
    notify: &Arc<Notify>,
    first: bool,
    backoff: &mut Duration,
) -> Result<()> {
    let (client, mut connection) = server.connect_unpooled().await?;
    let forward = Arc::clone(notify);
    let mut driver = AbortOnDrop(tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(_) = message? {
                forward.notify_one();
            }
        }
        Ok(())
    }));
    client
        .batch_execute(&format!("listen {CHANGES_CHANNEL}"))
        .await
        .map_err(|e| pg_error(e, "cannot LISTEN"))?;
    *backoff = RECONNECT_FIRST;
    if first {
        tracing::debug!(server = %server.address, "listening for captured changes");
    } else {
        tracing::info!(server = %server.address, "LISTEN connection back");
        // Changes captured while we were not listening sent no wake-up.
        notify.notify_one();
    }
    let ended = match (&mut driver.0).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(pg_error(e, "LISTEN connection failed")),
        Err(e) => Err(ConnectorError::internal(format!("LISTEN task failed: {e}"))),
    };
    drop(client);
    ended
}
