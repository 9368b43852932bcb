//! A cloud application's REST API as an endpoint (`kind = "http"`).
//!
//! The API is described in the config ([`config`]): per object, where its
//! records live, the id and modification-time fields, the "modified since"
//! query and how each field is written. Capture polls by modification time
//! ([`capture`]); applying sends create, update and delete requests
//! ([`apply`]); what must survive a restart lives in a local journal
//! ([`journal`]), the endpoint's equivalent of a change table's position
//! and a mapping table.
//!
//! An API has no transactions: each request takes effect when it returns.
//! The agent copes with that the way it copes with a crash: a new record's
//! key pair is journalled the moment the API answers, a create whose answer
//! was lost is found again by its token where the object has one, and
//! everything else is idempotent.

mod apply;
mod capture;
mod client;
pub mod config;
mod journal;
mod oauth;
mod probe;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use config::{HttpOptions, ObjectSpec, RawHttp};

use self::client::{Client, Repeat};
use self::journal::{Entry, Journal};
use crate::connector::{
    CapturedChange, ChangeOp, Connector, EndpointConfig, IdMapRow, Installation, RowCount,
    Transaction, SCHEMA_VERSION,
};
use crate::engine::Engine;
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::{Column, DataType, ForeignKey, TableName, TableSchema};
use crate::value::{Key, Row, Value};

/// A change found by polling, not yet consumed.
#[derive(Debug, Clone)]
struct PendingChange {
    object: String,
    id: String,
    /// The record's modification time (for a delete: when it was found).
    modified: DateTime<Utc>,
    op: ChangeOp,
    /// Found by the deleted-records request (moves its watermark).
    from_deleted_list: bool,
}

/// Changes found and not yet consumed, with the records they read.
#[derive(Debug, Default)]
struct Pending {
    changes: BTreeMap<i64, PendingChange>,
    rows: HashMap<(String, String), Row>,
    /// Records skipped as the agent's own writes, per object: consumed with
    /// the next watermark.
    echoes: HashMap<String, Vec<(String, DateTime<Utc>)>>,
}

/// All records of one object, read for a first sync, in id order.
#[derive(Debug)]
struct Snapshot {
    object: String,
    rows: Vec<(String, Row)>,
}

/// The endpoint, shared by its transactions.
pub struct HttpConnector {
    inner: Arc<Endpoint>,
}

impl std::ops::Deref for HttpConnector {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.inner
    }
}

/// What an `http` endpoint holds: its client, description and memory.
pub struct Endpoint {
    client: Client,
    options: HttpOptions,
    poll_interval: Duration,
    journal_path: Option<PathBuf>,
    journal: std::sync::Mutex<Option<Journal>>,
    pending: std::sync::Mutex<Pending>,
    next_seq: AtomicI64,
    snapshot: tokio::sync::Mutex<Option<Snapshot>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnector")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Sets up an `http` endpoint. Nothing is requested yet: a server that is
/// down shows at the first request, as a connection error worth a retry.
pub async fn connect(config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    let options = config.http.as_deref().cloned().ok_or_else(|| {
        ConnectorError::config("an http endpoint needs its objects described".to_owned())
    })?;
    let client = Client::new(&config.url, config.password.as_ref(), &options, &config.tls)?;
    let journal_path = options.state_dir.as_ref().map(|dir| dir.join("journal"));
    Ok(Arc::new(HttpConnector {
        inner: Arc::new(Endpoint {
            client,
            poll_interval: config.poll_interval,
            journal_path,
            journal: std::sync::Mutex::new(None),
            pending: std::sync::Mutex::new(Pending::default()),
            // Sequence numbers only have to be unique while this process runs
            // (the tail consumes by them); time-based ones also stay apart
            // from an earlier run's.
            next_seq: AtomicI64::new(Utc::now().timestamp_micros()),
            snapshot: tokio::sync::Mutex::new(None),
            options,
        }),
    }))
}

impl Endpoint {
    /// The object a table names; a schema error for an unknown one.
    fn object(&self, table: &TableName) -> Result<&ObjectSpec> {
        self.options.object(&table.name).ok_or_else(|| {
            ConnectorError::schema(format!(
                "no object {:?} is described in this endpoint's objects (described: {})",
                table.name,
                self.options
                    .objects
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Runs `f` on the journal, opening it first when needed.
    fn with_journal<T>(&self, f: impl FnOnce(&mut Journal) -> Result<T>) -> Result<T> {
        let mut guard = self.journal.lock().expect("journal lock");
        if guard.is_none() {
            let path = self.journal_path.as_ref().ok_or_else(|| {
                ConnectorError::internal(
                    "this http endpoint was opened without a state directory".to_owned(),
                )
            })?;
            *guard = Some(Journal::open(path)?);
        }
        f(guard.as_mut().expect("opened above"))
    }

    /// The answer to a GET of record `id`; `None` when the API answers one
    /// of the object's `not_found` statuses. A 403 that `not_found` does
    /// not list is a refusal, said with the setting that makes it "no such
    /// record" for APIs that hide a missing record behind it.
    async fn get_one(&self, object: &ObjectSpec, id: &str) -> Result<Option<client::Answer>> {
        let path = record_path(object, id);
        let mut accept = object.not_found.clone();
        accept.push(403);
        let answer = self
            .client
            .send(
                reqwest::Method::GET,
                &path,
                &[],
                None,
                Repeat::Safe,
                &accept,
            )
            .await?;
        if object.is_not_found(answer.status) {
            return Ok(None);
        }
        if answer.status == reqwest::StatusCode::FORBIDDEN {
            return Err(ConnectorError::new(
                ErrorKind::Permission,
                format!(
                    "GET {path}: 403 Forbidden: {}; where the API answers 403 for a record that does not exist, set not_found = [403, 404] on object {}",
                    client::api_message(&answer.body, answer.status),
                    object.name
                ),
            ));
        }
        Ok(Some(answer))
    }

    /// The current record with `id`; `None` when there is no such record.
    async fn get_record(&self, object: &ObjectSpec, id: &str) -> Result<Option<Row>> {
        let Some(answer) = self.get_one(object, id).await? else {
            return Ok(None);
        };
        let record = types::get(&answer.body, &object.record).ok_or_else(|| {
            ConnectorError::data(format!(
                "{} {id}: the answer holds no record at {:?} (check record = ...)",
                object.name,
                object.record.join(".")
            ))
        })?;
        types::record_to_row(object, record).map(Some)
    }

    /// Whether the API has a record with `id`, its answer unread.
    async fn exists(&self, object: &ObjectSpec, id: &str) -> Result<bool> {
        Ok(self.get_one(object, id).await?.is_some())
    }

    /// One list request, with the query's `{since}` and `{token}` filled.
    async fn list_page(&self, object: &ObjectSpec, query: Vec<(String, String)>) -> Result<Page> {
        let answer = self
            .client
            .send(
                reqwest::Method::GET,
                &object.path,
                &query,
                None,
                Repeat::Safe,
                &[404],
            )
            .await?;
        if answer.status == reqwest::StatusCode::NOT_FOUND {
            return Err(ConnectorError::schema(format!(
                "{}: GET {} answered 404 (is path right?)",
                object.name, object.path
            )));
        }
        let records = records_in(&answer.body, &object.records, &object.name)?;
        let total = object
            .total
            .as_ref()
            .and_then(|path| types::get(&answer.body, path))
            .and_then(serde_json::Value::as_u64);
        Ok(Page { records, total })
    }

    /// The records of one list request.
    async fn list(
        &self,
        object: &ObjectSpec,
        query: Vec<(String, String)>,
    ) -> Result<Vec<serde_json::Value>> {
        Ok(self.list_page(object, query).await?.records)
    }
}

/// One page of a list answer.
struct Page {
    records: Vec<serde_json::Value>,
    /// How many records the query matches in all, where the API says.
    total: Option<u64>,
}

/// The path of one record.
fn record_path(object: &ObjectSpec, id: &str) -> String {
    // Ids are the API's own; escaped so that one cannot leave the path.
    let escaped: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("{}/{}", object.path, escaped.replace('+', "%20"))
}

/// The record array at `path` of a list response.
fn records_in(
    body: &serde_json::Value,
    path: &[String],
    object: &str,
) -> Result<Vec<serde_json::Value>> {
    match types::get(body, path) {
        Some(serde_json::Value::Array(records)) => Ok(records.clone()),
        _ => Err(ConnectorError::schema(format!(
            "{object}: the list response holds no array at {:?} (check records = ...)",
            path.join(".")
        ))),
    }
}

/// A query with `{name}` placeholders filled; values are JSON-escaped, as
/// the templates are JSON more often than not.
fn fill(template: &BTreeMap<String, String>, name: &str, value: &str) -> Vec<(String, String)> {
    let escaped = serde_json::to_string(value).expect("strings serialize");
    let escaped = &escaped[1..escaped.len() - 1];
    template
        .iter()
        .map(|(k, v)| (k.clone(), v.replace(&format!("{{{name}}}"), escaped)))
        .collect()
}

#[async_trait]
impl Connector for HttpConnector {
    fn engine(&self) -> Engine {
        Engine::Http
    }

    fn transactional(&self) -> bool {
        false
    }

    fn table_name(&self, configured: &str) -> TableName {
        TableName::new(None, configured)
    }

    async fn list_tables(&self) -> Result<Vec<TableName>> {
        Ok(self
            .options
            .objects
            .iter()
            .map(|o| TableName::new(None, &o.name))
            .collect())
    }

    async fn describe(&self, table: &TableName) -> Result<TableSchema> {
        let object = self.object(table)?;
        let mut id = Column::new(&object.id, DataType::Text, "id").not_null();
        id.generated = true;
        let mut columns = vec![id];
        for time in std::iter::once(&object.modified).chain(&object.created) {
            let mut column = Column::new(time, DataType::TimestampTz, "time");
            // The API stamps it: never written.
            column.generated = true;
            column.always_generated = true;
            columns.push(column);
        }
        let mut foreign_keys = Vec::new();
        for field in &object.fields {
            columns.push(Column::new(
                &field.name,
                field.data_type,
                if field.references.is_some() {
                    "reference"
                } else {
                    field.data_type.name()
                },
            ));
            if let Some(referenced) = &field.references {
                let target = self.object(&TableName::new(None, referenced))?;
                foreign_keys.push(ForeignKey {
                    columns: vec![field.name.clone()],
                    referenced_table: TableName::new(None, referenced),
                    referenced_columns: vec![target.id.clone()],
                });
            }
        }
        let mut schema = TableSchema::new(table.clone(), columns, vec![object.id.clone()]);
        schema.foreign_keys = foreign_keys;
        Ok(schema)
    }

    async fn install_script(&self, _tables: &[TableSchema]) -> Result<Vec<String>> {
        // An API gets nothing installed: polling needs no triggers.
        Ok(Vec::new())
    }

    async fn uninstall_script(&self, _tables: &[TableSchema]) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn run_script(&self, statements: &[String]) -> Result<()> {
        if statements.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::config(
                "an http endpoint runs no SQL".to_owned(),
            ))
        }
    }

    async fn installation(&self, tables: &[TableSchema]) -> Result<Installation> {
        for table in tables {
            self.object(&table.name)?;
        }
        Ok(Installation {
            version: Some(SCHEMA_VERSION),
            missing_triggers: Vec::new(),
        })
    }

    async fn read_changes(
        &self,
        tables: &[TableName],
        limit: usize,
    ) -> Result<Vec<CapturedChange>> {
        capture::read_changes(self, tables, limit).await
    }

    async fn delete_changes(&self, seqs: &[i64]) -> Result<()> {
        capture::consume(self, seqs)
    }

    async fn count_changes(&self, tables: &[TableName]) -> Result<Vec<(String, u64)>> {
        let pending = self.pending.lock().expect("pending lock");
        Ok(tables
            .iter()
            .map(|t| {
                let n = pending
                    .changes
                    .values()
                    .filter(|c| c.object == t.name)
                    .count();
                (t.name.clone(), n as u64)
            })
            .collect())
    }

    async fn fetch_rows(&self, table: &TableSchema, keys: &[Key]) -> Result<Vec<Row>> {
        let object = self.object(&table.name)?;
        let mut rows = Vec::new();
        for key in keys {
            let id = key_id(key)?;
            let cached = self
                .pending
                .lock()
                .expect("pending lock")
                .rows
                .get(&(object.name.clone(), id.clone()))
                .cloned();
            match cached {
                Some(row) => rows.push(row),
                None => rows.extend(self.get_record(object, &id).await?),
            }
        }
        Ok(rows)
    }

    async fn scan(
        &self,
        table: &TableSchema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let object = self.object(&table.name)?;
        let mut snapshot = self.snapshot.lock().await;
        let fresh = match (&*snapshot, after) {
            (Some(s), Some(_)) => s.object != object.name,
            _ => true,
        };
        if fresh {
            let rows = capture::read_all(self, object).await?;
            *snapshot = Some(Snapshot {
                object: object.name.clone(),
                rows,
            });
        }
        let rows = &snapshot.as_ref().expect("set above").rows;
        let start = match after {
            None => 0,
            Some(key) => {
                let after = key_id(key)?;
                rows.partition_point(|(id, _)| *id <= after)
            }
        };
        Ok(rows[start..]
            .iter()
            .take(limit)
            .map(|(_, row)| row.clone())
            .collect())
    }

    async fn estimate_rows(&self, _table: &TableSchema) -> Result<RowCount> {
        // Counting would mean reading everything; progress shows no total.
        Ok(RowCount::estimated(0))
    }

    async fn read_id_map_page(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<IdMapRow>> {
        apply::settle_intents(self).await?;
        self.with_journal(|journal| {
            let mut rows: Vec<IdMapRow> = journal.state.links.iter().map(IdMapRow::from).collect();
            rows.sort_by(|a, b| (&a.pair, &a.source_key).cmp(&(&b.pair, &b.source_key)));
            Ok(rows
                .into_iter()
                .filter(|r| after.is_none_or(|a| (r.pair.as_str(), r.source_key.as_str()) > a))
                .take(limit)
                .collect())
        })
    }

    async fn probe(&self, tables: &[TableSchema]) -> Result<Vec<crate::connector::Finding>> {
        probe::probe(self, tables).await
    }

    async fn release_creates(&self, pair: &str, keys: &[String]) -> Result<usize> {
        apply::release_creates(self, pair, keys)
    }

    async fn found_links(&self) -> Result<Vec<IdMapRow>> {
        self.with_journal(|journal| Ok(journal.state.found.iter().map(IdMapRow::from).collect()))
    }

    async fn found_links_adopted(&self, rows: &[IdMapRow]) -> Result<()> {
        let entries = rows
            .iter()
            .map(|row| Entry::Adopted(journal::IdMapRowData::from(row)))
            .collect();
        self.with_journal(|journal| journal.append(entries, true))
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        // Opened here so that a journal in use shows before any write.
        self.with_journal(|_| Ok(()))?;
        Ok(Box::new(apply::HttpTransaction::new(self.inner.clone())))
    }

    async fn wait_for_changes(&self, timeout: Duration) {
        tokio::time::sleep(self.poll_interval.min(timeout)).await;
    }
}

/// The id a key holds (API keys are one string).
fn key_id(key: &Key) -> Result<String> {
    match key.0.as_slice() {
        [Value::Text(id)] => Ok(id.clone()),
        other => Err(ConnectorError::new(
            ErrorKind::Internal,
            format!("an API record's key is one text id, not {other:?}"),
        )),
    }
}
