//! Tailing `tandem.changes` and waking up on `pg_notify`, which the
//! triggers send only while the agent waits.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
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

/// The LISTEN connection while it is up, and its backend's process id (the
/// agent's entry in `tandem.waiting`).
#[derive(Clone)]
struct Listening {
    client: Arc<Client>,
    pid: i32,
}

/// Wakes waiters when the triggers `pg_notify`. Its LISTEN connection is
/// opened on the first wait (so short-lived commands never open it) and
/// reopened, with backoff, whenever it drops.
///
/// The triggers notify only while an agent is entered in `tandem.waiting`:
/// a notifying transaction holds a database-wide lock from its commit until
/// the commit is flushed, so notifying on every write serialized the
/// writers. The agent enters itself there before it sleeps and leaves when
/// it reads changes again. A transaction that captured a change before the
/// agent entered and commits after the agent's last look sends no wake-up:
/// the next notifying transaction, or the poll interval, picks it up.
pub(crate) struct Waker {
    server: Server,
    notify: Arc<Notify>,
    listening: Arc<watch::Sender<Option<Listening>>>,
    /// The backend entered in `tandem.waiting`, if any. Set before the
    /// insert is sent, so that a wait cancelled midway is still undone.
    entered: tokio::sync::Mutex<Option<i32>>,
    /// The highest change seq read or looked at: a newer one means changes
    /// were committed since.
    seen: AtomicI64,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("server", &self.server)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Waker {
    /// A waker that listens on `server` once first waited on.
    pub(crate) fn new(server: Server) -> Waker {
        Waker {
            server,
            notify: Arc::new(Notify::new()),
            listening: Arc::new(watch::Sender::new(None)),
            entered: tokio::sync::Mutex::new(None),
            seen: AtomicI64::new(0),
            task: Mutex::new(None),
        }
    }

    /// Returns on a notification or after `min(timeout, poll_interval)`;
    /// at once when changes were committed since the last read.
    pub(crate) async fn wait(&self, timeout: Duration, poll_interval: Duration) {
        self.start();
        let deadline = Instant::now() + timeout.min(poll_interval);
        if let Some(listening) = self.listening_by(deadline).await {
            match self.enter(&listening).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::debug!(
                    server = %self.server.address,
                    "cannot enter tandem.waiting, polling: {e}"
                ),
            }
        }
        let _ = tokio::time::timeout_at(deadline, self.notify.notified()).await;
    }

    /// Notes that changes up to `seq` were read.
    pub(crate) fn saw(&self, seq: i64) {
        self.seen.fetch_max(seq, Ordering::SeqCst);
    }

    /// Leaves `tandem.waiting` (through `client`, any connection): the agent
    /// is reading changes and looks again before it sleeps. A failure only
    /// leaves the writers notifying, so it is logged, not returned.
    pub(crate) async fn busy(&self, client: &Client) {
        let mut entered = self.entered.lock().await;
        let Some(pid) = *entered else {
            return;
        };
        if let Err(e) = client
            .execute("delete from tandem.waiting where pid = $1", &[&pid])
            .await
        {
            tracing::debug!(server = %self.server.address, "cannot leave tandem.waiting: {e}");
        }
        *entered = None;
    }

    /// Enters the LISTEN connection's backend in `tandem.waiting`, then says
    /// whether a change newer than any read was committed meanwhile (it
    /// sent no wake-up).
    async fn enter(&self, listening: &Listening) -> Result<bool> {
        let mut entered = self.entered.lock().await;
        if *entered != Some(listening.pid) {
            *entered = Some(listening.pid);
            if let Err(e) = listening
                .client
                .execute(
                    "insert into tandem.waiting (pid) values ($1) on conflict (pid) do nothing",
                    &[&listening.pid],
                )
                .await
            {
                *entered = None;
                return Err(pg_error(e, "cannot enter tandem.waiting"));
            }
        }
        drop(entered);
        let newest: Option<i64> = listening
            .client
            .query_one("select max(seq) from tandem.changes", &[])
            .await
            .map_err(|e| pg_error(e, "cannot read tandem.changes"))?
            .get(0);
        let newest = newest.unwrap_or(0);
        Ok(self.seen.fetch_max(newest, Ordering::SeqCst) < newest)
    }

    /// The LISTEN connection, waiting for it until `deadline` (it opens on
    /// the first wait, or is being reopened).
    async fn listening_by(&self, deadline: Instant) -> Option<Listening> {
        let mut up = self.listening.subscribe();
        loop {
            if let Some(listening) = up.borrow_and_update().clone() {
                return Some(listening);
            }
            match tokio::time::timeout_at(deadline, up.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
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
                Arc::clone(&self.listening),
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
async fn listen_forever(
    server: Server,
    notify: Arc<Notify>,
    listening: Arc<watch::Sender<Option<Listening>>>,
) {
    let mut backoff = RECONNECT_FIRST;
    let mut first = true;
    loop {
        let outcome = listen_once(&server, &notify, &listening, first, &mut backoff).await;
        listening.send_replace(None);
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
    listening: &watch::Sender<Option<Listening>>,
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
    let pid: i32 = client
        .query_one("select pg_catalog.pg_backend_pid()", &[])
        .await
        .map_err(|e| pg_error(e, "cannot read the LISTEN connection's backend"))?
        .get(0);
    // Entries of agents that went away without leaving (a crash, a lost
    // connection) would keep every writer notifying.
    if let Err(e) = client
        .execute(
            "delete from tandem.waiting w where not exists \
             (select from pg_catalog.pg_stat_activity a where a.pid = w.pid)",
            &[],
        )
        .await
    {
        tracing::debug!(server = %server.address, "cannot clear tandem.waiting: {e}");
    }
    *backoff = RECONNECT_FIRST;
    listening.send_replace(Some(Listening {
        client: Arc::new(client),
        pid,
    }));
    if first {
        tracing::debug!(server = %server.address, "listening for captured changes");
    } else {
        tracing::info!(server = %server.address, "LISTEN connection back");
        // Changes captured while we were not listening sent no wake-up.
        notify.notify_one();
    }
    match (&mut driver.0).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(pg_error(e, "LISTEN connection failed")),
        Err(e) => Err(ConnectorError::internal(format!("LISTEN task failed: {e}"))),
    }
}
