//! A connector that wraps another and fails on purpose, for unit tests of
//! the engine's ordering: what is written, acknowledged and settled when a
//! statement, a commit or an acknowledgement fails or never answers.
//!
//! It is a tool, not a stand-in for an engine: every call it lets through
//! goes to the wrapped connector (a real one, SQLite in the agent's unit
//! tests), and the faults it injects are the ones real servers produce
//! (a constraint refusing a row, a commit refused by a deferred check, a
//! connection lost at the commit, a server that stops answering).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::connector::{
    CapturedChange, Connector, CopyOf, Finding, IdMapRow, Installation, RowCount, Transaction,
};
use crate::engine::Engine;
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::{TableName, TableSchema};
use crate::value::{Key, Row, Value};

/// The calls a fault can be put on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// A writing statement of a transaction: an insert, update or delete
    /// (one or many rows), or a mapping-table write.
    Write,
    /// A transaction's commit.
    Commit,
    /// Reading the change table.
    ReadChanges,
    /// Deleting change rows once they are logged (the acknowledgement).
    DeleteChanges,
}

/// How a call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Refused for a data reason (as a constraint would refuse it).
    Data,
    /// The connection broke: nothing of the call happened.
    Connection,
    /// Never answers.
    Hang,
}

impl Fault {
    /// The error the call fails with (`None` for a hang).
    fn error(self, call: Call) -> Option<ConnectorError> {
        let kind = match self {
            Fault::Data => ErrorKind::Data,
            Fault::Connection => ErrorKind::Connection,
            Fault::Hang => return None,
        };
        Some(ConnectorError::new(
            kind,
            format!("injected fault: {call:?} failed"),
        ))
    }
}

/// What fails when.
#[derive(Debug, Clone)]
enum Rule {
    /// The `nth` call of a kind, counted from when the rule was added.
    Nth {
        call: Call,
        nth: u64,
        fault: Fault,
        seen: u64,
    },
    /// Every write of a row holding this value.
    Row { value: Value },
}

/// The faults of a [`Faulty`] connector, shared with the test that arms
/// them, and the count of each kind of call made.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<HashMap<Call, u64>>,
}

impl Faults {
    /// New, with nothing armed.
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    /// The `nth` call of `call` from now (1 is the next one) fails with
    /// `fault`; the calls before and after it go through.
    pub fn fail_nth(&self, call: Call, nth: u64, fault: Fault) {
        assert!(nth >= 1, "calls are counted from 1");
        self.rules.lock().expect("faults lock").push(Rule::Nth {
            call,
            nth,
            fault,
            seen: 0,
        });
    }

    /// Every write of a row holding `value` (in any column) is refused for
    /// a data reason, as a constraint would refuse it; a batch holding it
    /// is refused whole.
    pub fn refuse_rows_with(&self, value: Value) {
        self.rules
            .lock()
            .expect("faults lock")
            .push(Rule::Row { value });
    }

    /// Disarms every fault.
    pub fn clear(&self) {
        self.rules.lock().expect("faults lock").clear();
    }

    /// How many calls of `call` were made (failed ones included).
    pub fn calls(&self, call: Call) -> u64 {
        self.calls
            .lock()
            .expect("faults lock")
            .get(&call)
            .copied()
            .unwrap_or(0)
    }

    /// Counts a call and fails it if a rule says so.
    async fn enter(&self, call: Call, rows: &[&Row]) -> Result<()> {
        *self
            .calls
            .lock()
            .expect("faults lock")
            .entry(call)
            .or_default() += 1;
        let fault = {
            let mut rules = self.rules.lock().expect("faults lock");
            let mut fault = None;
            for rule in rules.iter_mut() {
                match rule {
                    Rule::Nth {
                        call: c,
                        nth,
                        fault: f,
                        seen,
                    } if *c == call => {
                        *seen += 1;
                        if *seen == *nth {
                            fault = fault.or(Some(*f));
                        }
                    }
                    Rule::Row { value }
                        if call == Call::Write
                            && rows.iter().any(|row| row.values().any(|v| v == value)) =>
                    {
                        fault = fault.or(Some(Fault::Data));
                    }
                    _ => {}
                }
            }
            fault
        };
        match fault.map(|f| f.error(call)) {
            None => Ok(()),
            Some(Some(e)) => Err(e),
            Some(None) => std::future::pending().await,
        }
    }
}

/// A connector that passes every call to `inner`, failing the ones its
/// [`Faults`] say.
pub struct Faulty {
    inner: Arc<dyn Connector>,
    faults: Arc<Faults>,
}

impl Faulty {
    /// Wraps `inner`; `faults` arms it.
    pub fn wrap(inner: Arc<dyn Connector>, faults: Arc<Faults>) -> Arc<dyn Connector> {
        Arc::new(Faulty { inner, faults })
    }
}

#[async_trait]
impl Connector for Faulty {
    fn engine(&self) -> Engine {
        self.inner.engine()
    }

    fn transactional(&self) -> bool {
        self.inner.transactional()
    }

    fn table_name(&self, configured: &str) -> TableName {
        self.inner.table_name(configured)
    }

    async fn list_tables(&self) -> Result<Vec<TableName>> {
        self.inner.list_tables().await
    }

    async fn describe(&self, table: &TableName) -> Result<TableSchema> {
        self.inner.describe(table).await
    }

    async fn install_script(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        self.inner.install_script(tables).await
    }

    async fn uninstall_script(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        self.inner.uninstall_script(tables).await
    }

    async fn run_script(&self, statements: &[String]) -> Result<()> {
        self.inner.run_script(statements).await
    }

    async fn installation(&self, tables: &[TableSchema]) -> Result<Installation> {
        self.inner.installation(tables).await
    }

    fn generated_key_fix(&self, table: &TableSchema) -> Option<String> {
        self.inner.generated_key_fix(table)
    }

    async fn probe(&self, tables: &[TableSchema]) -> Result<Vec<Finding>> {
        self.inner.probe(tables).await
    }

    async fn release_creates(&self, pair: &str, keys: &[String]) -> Result<usize> {
        self.inner.release_creates(pair, keys).await
    }

    async fn found_links(&self) -> Result<Vec<IdMapRow>> {
        self.inner.found_links().await
    }

    async fn found_links_adopted(&self, rows: &[IdMapRow]) -> Result<()> {
        self.inner.found_links_adopted(rows).await
    }

    async fn missing_privileges(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        self.inner.missing_privileges(tables).await
    }

    async fn read_changes(
        &self,
        tables: &[TableName],
        limit: usize,
    ) -> Result<Vec<CapturedChange>> {
        self.faults.enter(Call::ReadChanges, &[]).await?;
        self.inner.read_changes(tables, limit).await
    }

    async fn delete_changes(&self, seqs: &[i64]) -> Result<()> {
        self.faults.enter(Call::DeleteChanges, &[]).await?;
        self.inner.delete_changes(seqs).await
    }

    async fn count_changes(&self, tables: &[TableName]) -> Result<Vec<(String, u64)>> {
        self.inner.count_changes(tables).await
    }

    async fn fetch_rows(&self, table: &TableSchema, keys: &[Key]) -> Result<Vec<Row>> {
        self.inner.fetch_rows(table, keys).await
    }

    async fn find_rows(
        &self,
        table: &TableSchema,
        columns: &[String],
        values: &[Value],
    ) -> Result<Vec<Row>> {
        self.inner.find_rows(table, columns, values).await
    }

    async fn scan(
        &self,
        table: &TableSchema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        self.inner.scan(table, after, limit).await
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<RowCount> {
        self.inner.estimate_rows(table).await
    }

    async fn read_id_map_page(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<IdMapRow>> {
        self.inner.read_id_map_page(after, limit).await
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(FaultyTransaction {
            inner: self.inner.begin().await?,
            faults: self.faults.clone(),
        }))
    }

    async fn wait_for_changes(&self, timeout: Duration) {
        self.inner.wait_for_changes(timeout).await
    }
}

/// A transaction of a [`Faulty`] connector.
struct FaultyTransaction {
    inner: Box<dyn Transaction>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Transaction for FaultyTransaction {
    async fn fetch_for_update(&mut self, table: &TableSchema, key: &Key) -> Result<Option<Row>> {
        self.inner.fetch_for_update(table, key).await
    }

    async fn insert(&mut self, table: &TableSchema, row: &Row) -> Result<Key> {
        self.faults.enter(Call::Write, &[row]).await?;
        self.inner.insert(table, row).await
    }

    async fn update(&mut self, table: &TableSchema, key: &Key, row: &Row) -> Result<bool> {
        self.faults.enter(Call::Write, &[row]).await?;
        self.inner.update(table, key, row).await
    }

    async fn delete(&mut self, table: &TableSchema, key: &Key) -> Result<bool> {
        self.faults.enter(Call::Write, &[]).await?;
        self.inner.delete(table, key).await
    }

    async fn insert_copy(&mut self, table: &TableSchema, row: &Row, copy: &CopyOf) -> Result<Key> {
        self.faults.enter(Call::Write, &[row]).await?;
        self.inner.insert_copy(table, row, copy).await
    }

    async fn record_link(&mut self, link: &IdMapRow) -> Result<()> {
        self.faults.enter(Call::Write, &[]).await?;
        self.inner.record_link(link).await
    }

    async fn fetch_many_for_update(
        &mut self,
        table: &TableSchema,
        keys: &[Key],
    ) -> Result<Vec<Row>> {
        self.inner.fetch_many_for_update(table, keys).await
    }

    async fn insert_copies(
        &mut self,
        table: &TableSchema,
        rows: &[Row],
        copies: &[CopyOf],
    ) -> Result<Vec<Row>> {
        let all: Vec<&Row> = rows.iter().collect();
        self.faults.enter(Call::Write, &all).await?;
        self.inner.insert_copies(table, rows, copies).await
    }

    async fn update_many(
        &mut self,
        table: &TableSchema,
        updates: &[(Key, Row)],
    ) -> Result<Vec<Option<Row>>> {
        let all: Vec<&Row> = updates.iter().map(|(_, row)| row).collect();
        self.faults.enter(Call::Write, &all).await?;
        self.inner.update_many(table, updates).await
    }

    async fn forget_link(&mut self, pair: &str, source_key: &str, target_key: &str) -> Result<()> {
        self.faults.enter(Call::Write, &[]).await?;
        self.inner.forget_link(pair, source_key, target_key).await
    }

    async fn delete_many(&mut self, table: &TableSchema, keys: &[Key]) -> Result<u64> {
        self.faults.enter(Call::Write, &[]).await?;
        self.inner.delete_many(table, keys).await
    }

    async fn forget_links(&mut self, pair: &str, keys: &[(String, String)]) -> Result<()> {
        self.faults.enter(Call::Write, &[]).await?;
        self.inner.forget_links(pair, keys).await
    }

    async fn savepoint(&mut self) -> Result<()> {
        self.inner.savepoint().await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.inner.rollback_to_savepoint().await
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        self.inner.release_savepoint().await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let this = *self;
        if let Err(e) = this.faults.enter(Call::Commit, &[]).await {
            // The server refused or never got the commit: nothing is kept.
            let _ = this.inner.rollback().await;
            return Err(e);
        }
        this.inner.commit().await
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        self.inner.rollback().await
    }
}
