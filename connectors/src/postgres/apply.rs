//! The applying [`Transaction`]: one pooled connection inside `BEGIN`, with
//! `tandem.applying` set so the capture triggers skip its writes.

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row as PgRow;

use std::sync::Arc;

use crate::connector::{CopyOf, IdMapRow, Transaction};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::{Column, TableName, TableSchema};
use crate::value::{Key, Row};

use super::batch::{
    delete_many_sql, fetch_many_sql, insert_many_sql, key_arrays, record_copies_sql, row_arrays,
    update_many_sql, FORGET_LINKS_SQL, INSERT_COPIES_SQL,
};
use super::client::{kind_of, pg_error, pool_error, server_message, SQL};
use super::statistics::{IdMapGrowth, ANALYZE_ID_MAP_SQL};
use super::types::{
    cast_param, column_in_message, key_columns, key_condition, key_params, params, read_key,
    read_row, select_list, shown, write_text,
};

/// The one savepoint name (savepoints are not nested).
const SAVEPOINT: &str = "tandem_record";

/// The savepoint behind a batch's mapping rows, should one of them be
/// taken already.
const LINKS_SAVEPOINT: &str = "tandem_links";

/// What opens a transaction of ours.
///
/// Statements are planned for the values of each execution: a plan cached
/// while a table was small (a scan of it all) would otherwise stay in use
/// as the table grows, and a batch's cost with it.
const BEGIN_SQL: &str = "begin; set local tandem.applying = 'on'; \
     set local plan_cache_mode = force_custom_plan";

/// A statement's own outcome, as the server gave it.
type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// Mapping rows from which a plain insert behind a savepoint is cheaper
/// than the upsert (4-5 µs a row against two round trips).
const PLAIN_INSERT_AT_LEAST: usize = 64;

/// A server error from a statement writing `written` into `table`: a data
/// error names the column and value at fault when the server's answer
/// allows.
pub(crate) fn write_error(
    err: tokio_postgres::Error,
    action: &str,
    table: &TableName,
    written: &[(&Column, Option<String>)],
) -> ConnectorError {
    let kind = kind_of(&err);
    let mut context = format!("cannot {action} table {table}");
    if kind == ErrorKind::Data {
        if let Some(db) = err.as_db_error() {
            let found = db
                .column()
                .and_then(|name| written.iter().find(|(c, _)| c.name == name))
                .or_else(|| column_in_message(db.message(), written));
            match (found, db.column()) {
                (Some((column, Some(value))), _) => {
                    context = format!(
                        "{context}: value {} for column {:?}",
                        shown(value),
                        column.name
                    )
                }
                (Some((column, None)), _) => {
                    context = format!("{context}: column {:?}", column.name)
                }
                (None, Some(name)) => context = format!("{context}: column {name:?}"),
                (None, None) => {}
            }
        }
    }
    let message = format!("{context}: {}", server_message(&err));
    ConnectorError::new(kind, message).with_source(err)
}

/// A server error writing the mapping rows of `pair`.
fn links_error(err: tokio_postgres::Error, pair: &str) -> ConnectorError {
    pg_error(
        err,
        format!("cannot write the mapping rows of pair {pair:?}"),
    )
}

/// A transaction of ours. Dropped without commit or rollback, its connection
/// is taken out of the pool and closed, so the server rolls it back and no
/// open transaction or applying marker is ever handed out again.
pub(crate) struct PgTransaction {
    client: Option<Object>,
    /// `BEGIN` has been sent (with the first statement).
    begun: bool,
    /// A statement failed: the server has aborted the transaction until it
    /// rolls back to the savepoint. COMMIT would silently roll back.
    failed: bool,
    /// The connector's count of recorded mapping rows.
    id_map_growth: Arc<IdMapGrowth>,
}

impl PgTransaction {
    /// Takes a pooled connection. [`BEGIN_SQL`], which marks the session
    /// as applying, goes with the first statement (see [`Self::run`]).
    pub(crate) async fn begin(
        pool: &Pool,
        address: &str,
        id_map_growth: Arc<IdMapGrowth>,
    ) -> Result<PgTransaction> {
        let client = pool.get().await.map_err(|e| pool_error(e, address))?;
        Ok(PgTransaction {
            client: Some(client),
            begun: false,
            failed: false,
            id_map_growth,
        })
    }

    /// Runs `statement`, remembering a failure. Simple statements that must
    /// precede it (`lead`: a savepoint), and the transaction's `BEGIN`
    /// before the first statement, are sent ahead of it without waiting
    /// for their answer: the server runs them in order, and the round trip
    /// each would cost on its own is saved (1.2 ms of a 29 ms first-sync
    /// batch on a busy host). A refused lead refuses the whole.
    async fn run<T>(
        &mut self,
        lead: Option<&str>,
        statement: impl AsyncFnOnce(&Object) -> PgResult<T>,
    ) -> Result<PgResult<T>> {
        let begin = !std::mem::replace(&mut self.begun, true);
        // The statements sent ahead, and what a refusal of them says.
        let lead = match (begin, lead) {
            (false, None) => None,
            (false, Some(lead)) => Some((lead.to_owned(), format!("cannot run {lead}"))),
            (true, None) => Some((
                BEGIN_SQL.to_owned(),
                "cannot begin a transaction".to_owned(),
            )),
            (true, Some(lead)) => Some((
                format!("{BEGIN_SQL}; {lead}"),
                format!("cannot begin a transaction with {lead}"),
            )),
        };
        let client = self.client()?;
        let result = match lead {
            None => statement(client).await,
            Some((lead, refused)) => {
                // Biased: the lead is queued on the connection first.
                let (led, result) =
                    tokio::join!(biased; client.batch_execute(&lead), statement(client));
                if let Err(e) = led {
                    self.failed = true;
                    return Err(pg_error(e, refused));
                }
                result
            }
        };
        if result.is_err() {
            self.failed = true;
        }
        Ok(result)
    }

    fn client(&self) -> Result<&Object> {
        self.client
            .as_ref()
            .ok_or_else(|| ConnectorError::internal("the transaction has already ended"))
    }

    /// Runs one statement with text parameters, remembering a failure.
    async fn query(
        &mut self,
        sql: &str,
        values: &[Option<String>],
    ) -> Result<PgResult<Vec<PgRow>>> {
        self.query_with(sql, &params(values)).await
    }

    /// Runs one statement with any parameters (the batch methods' arrays),
    /// remembering a failure.
    async fn query_with(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<PgResult<Vec<PgRow>>> {
        self.query_after(None, sql, params).await
    }

    /// [`Self::query_with`] after the simple statements `lead`, on the
    /// same round trip.
    async fn query_after(
        &mut self,
        lead: Option<&str>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<PgResult<Vec<PgRow>>> {
        self.run(lead, async |client| {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        })
        .await
    }

    /// Records or forgets key pairs of `pair` in the mapping table.
    async fn links(&mut self, sql: &str, pair: &str, keys: &[(String, String)]) -> Result<()> {
        let written = self.write_links(None, sql, pair, keys).await?;
        written.map_err(|e| links_error(e, pair))
    }

    /// Like [`Self::links`], after `lead` (see [`Self::run`]), handing back
    /// the server's refusal as it is.
    async fn write_links(
        &mut self,
        lead: Option<&str>,
        sql: &str,
        pair: &str,
        keys: &[(String, String)],
    ) -> Result<PgResult<()>> {
        let (sources, targets): (Vec<&str>, Vec<&str>) =
            keys.iter().map(|(s, t)| (s.as_str(), t.as_str())).unzip();
        let pair_text = pair.to_owned();
        let written = self
            .query_after(lead, sql, &[&pair_text, &sources, &targets])
            .await?;
        Ok(written.map(|_| ()))
    }

    /// Inserts rows holding the same `columns` (already filtered) and
    /// returns them as written, in the same order.
    async fn insert_group(
        &mut self,
        table: &TableSchema,
        columns: &[&Column],
        rows: &[&Row],
    ) -> Result<Vec<Row>> {
        let arrays = row_arrays(table, columns, rows)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let written = self
            .query_with(&insert_many_sql(table, columns), &params)
            .await?
            .map_err(|e| write_error(e, "insert into", &table.name, &[]))?;
        if written.len() != rows.len() {
            return Err(ConnectorError::internal(format!(
                "table {}: {} rows inserted but {} came back",
                table.name,
                rows.len(),
                written.len()
            )));
        }
        written.iter().map(|row| read_row(table, row)).collect()
    }

    /// Records the key pairs of new copies: a plain insert, and only when
    /// one of the keys is in the table already (an earlier copy's, gone
    /// since) the upsert that takes such rows over, behind a savepoint so
    /// the transaction goes on. The savepoint goes with the insert, and is
    /// not released (the commit ends it; a later rollback to it finds the
    /// latest of the name). A few pairs go straight to the upsert: the
    /// savepoint costs more than the upsert's conflict checks there.
    async fn record_copies(
        &mut self,
        pair: &str,
        copies_on_target: bool,
        keys: &[(String, String)],
    ) -> Result<()> {
        if keys.len() < PLAIN_INSERT_AT_LEAST {
            return self
                .links(record_copies_sql(copies_on_target), pair, keys)
                .await;
        }
        let savepoint = format!("savepoint {LINKS_SAVEPOINT}");
        match self
            .write_links(Some(&savepoint), INSERT_COPIES_SQL, pair, keys)
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                self.rollback_to(LINKS_SAVEPOINT).await?;
                self.links(record_copies_sql(copies_on_target), pair, keys)
                    .await
            }
            Err(e) => Err(links_error(e, pair)),
        }
    }

    /// Rolls back to savepoint `name`: the transaction takes statements
    /// again.
    async fn rollback_to(&mut self, name: &str) -> Result<()> {
        self.control(&format!("rollback to savepoint {name}"))
            .await?;
        self.failed = false;
        Ok(())
    }

    /// Like [`Self::query`], returning the number of rows affected.
    async fn execute(&mut self, sql: &str, values: &[Option<String>]) -> Result<PgResult<u64>> {
        self.execute_with(sql, &params(values)).await
    }

    /// Like [`Self::query_with`], returning the number of rows affected.
    async fn execute_with(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<PgResult<u64>> {
        self.run(None, async |client| {
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, params).await
        })
        .await
    }

    /// Runs a statement without parameters (transaction control).
    async fn control(&mut self, sql: &str) -> Result<()> {
        self.run(None, async |client| client.batch_execute(sql).await)
            .await?
            .map_err(|e| pg_error(e, format!("cannot run {sql}")))
    }

    /// Ends the transaction with COMMIT or ROLLBACK. On success the
    /// connection goes back to the pool; on failure it stays here and is
    /// closed on drop. A transaction that ran no statement was never
    /// begun: there is nothing to end.
    async fn finish(&mut self, sql: &str) -> Result<()> {
        if self.begun {
            self.client()?
                .batch_execute(sql)
                .await
                .map_err(|e| pg_error(e, format!("cannot {sql} the transaction")))?;
        }
        self.client = None;
        Ok(())
    }
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Closing the connection makes the server roll back.
            drop(Object::take(client));
        }
    }
}

/// The row's columns described by `table`, unknown ones refused.
fn row_columns<'t>(table: &'t TableSchema, row: &Row) -> Result<Vec<(&'t Column, Option<String>)>> {
    row.iter()
        .map(|(name, value)| {
            let column = described(table, name)?;
            Ok((column, write_text(&table.name, column, value)?))
        })
        .collect()
}

/// The column `name` of `table`, unknown ones refused.
fn described<'t>(table: &'t TableSchema, name: &str) -> Result<&'t Column> {
    table.column(name).ok_or_else(|| {
        ConnectorError::schema(format!(
            "column {name:?} does not exist in table {}",
            table.name
        ))
    })
}

#[async_trait]
impl Transaction for PgTransaction {
    async fn fetch_for_update(&mut self, table: &TableSchema, key: &Key) -> Result<Option<Row>> {
        let columns = key_columns(table)?;
        let values = key_params(table, &columns, key)?;
        let sql = format!(
            "select {} from {} where {} for update",
            select_list(table),
            SQL.table(&table.name),
            key_condition(&columns, 1)
        );
        let rows = self
            .query(&sql, &values)
            .await?
            .map_err(|e| write_error(e, "lock a row of", &table.name, &[]))?;
        rows.first().map(|row| read_row(table, row)).transpose()
    }

    async fn insert(&mut self, table: &TableSchema, row: &Row) -> Result<Key> {
        let mut written = row_columns(table, row)?;
        // Identity ALWAYS and computed columns: a key value is forced with
        // OVERRIDING SYSTEM VALUE (a link table's key); others the engine
        // computes, whatever the row says.
        written.retain(|(c, _)| !c.always_generated || table.primary_key.contains(&c.name));
        let overriding = written.iter().any(|(c, _)| c.always_generated);
        let key = if table.primary_key.is_empty() {
            Vec::new()
        } else {
            key_columns(table)?
        };
        let returning = if key.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = key
                .iter()
                .map(|c| format!("{}::text", SQL.ident(&c.name)))
                .collect();
            format!(" returning {}", list.join(", "))
        };
        let sql = if written.is_empty() {
            format!(
                "insert into {} default values{returning}",
                SQL.table(&table.name)
            )
        } else {
            let casts: Vec<String> = written
                .iter()
                .enumerate()
                .map(|(i, (c, _))| cast_param(i + 1, c))
                .collect();
            format!(
                "insert into {} ({}){} values ({}){returning}",
                SQL.table(&table.name),
                SQL.columns(written.iter().map(|(c, _)| c.name.as_str())),
                if overriding {
                    " overriding system value"
                } else {
                    ""
                },
                casts.join(", ")
            )
        };
        let values: Vec<Option<String>> = written.iter().map(|(_, v)| v.clone()).collect();
        let rows = self
            .query(&sql, &values)
            .await?
            .map_err(|e| write_error(e, "insert into", &table.name, &written))?;
        match rows.first() {
            Some(row) if !key.is_empty() => read_key(table, &key, row),
            _ => Ok(Key(Vec::new())),
        }
    }

    async fn update(&mut self, table: &TableSchema, key: &Key, row: &Row) -> Result<bool> {
        let columns = key_columns(table)?;
        let mut written = row_columns(table, row)?;
        // Key columns are not set; computed columns cannot be.
        written.retain(|(c, _)| !table.primary_key.contains(&c.name) && !c.always_generated);
        let key_values = key_params(table, &columns, key)?;
        if written.is_empty() {
            let sql = format!(
                "select 1 from {} where {} for update",
                SQL.table(&table.name),
                key_condition(&columns, 1)
            );
            let rows = self
                .query(&sql, &key_values)
                .await?
                .map_err(|e| write_error(e, "lock a row of", &table.name, &[]))?;
            return Ok(!rows.is_empty());
        }
        let sets: Vec<String> = written
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{} = {}", SQL.ident(&c.name), cast_param(i + 1, c)))
            .collect();
        let sql = format!(
            "update {} set {} where {}",
            SQL.table(&table.name),
            sets.join(", "),
            key_condition(&columns, written.len() + 1)
        );
        let mut values: Vec<Option<String>> = written.iter().map(|(_, v)| v.clone()).collect();
        values.extend(key_values);
        let count = self
            .execute(&sql, &values)
            .await?
            .map_err(|e| write_error(e, "update", &table.name, &written))?;
        Ok(count > 0)
    }

    async fn delete(&mut self, table: &TableSchema, key: &Key) -> Result<bool> {
        let columns = key_columns(table)?;
        let values = key_params(table, &columns, key)?;
        let sql = format!(
            "delete from {} where {}",
            SQL.table(&table.name),
            key_condition(&columns, 1)
        );
        let count = self
            .execute(&sql, &values)
            .await?
            .map_err(|e| write_error(e, "delete from", &table.name, &[]))?;
        Ok(count > 0)
    }

    async fn record_link(&mut self, link: &IdMapRow) -> Result<()> {
        let values = [
            Some(link.pair.clone()),
            Some(link.source_key.clone()),
            Some(link.target_key.clone()),
        ];
        let context = |e| pg_error(e, format!("cannot record a link of pair {:?}", link.pair));
        self.execute(
            "delete from tandem.id_map
             where pair = $1::text and (source_key = $2::text or target_key = $3::text)",
            &values,
        )
        .await?
        .map_err(context)?;
        self.execute(
            "insert into tandem.id_map (pair, source_key, target_key)
             values ($1::text, $2::text, $3::text)",
            &values,
        )
        .await?
        .map_err(context)?;
        Ok(())
    }

    async fn fetch_many_for_update(
        &mut self,
        table: &TableSchema,
        keys: &[Key],
    ) -> Result<Vec<Row>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let columns = key_columns(table)?;
        let arrays = key_arrays(table, &columns, keys)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let rows = self
            .query_with(&fetch_many_sql(table, &columns), &params)
            .await?
            .map_err(|e| write_error(e, "lock rows of", &table.name, &[]))?;
        rows.iter().map(|row| read_row(table, row)).collect()
    }

    async fn insert_copies(
        &mut self,
        table: &TableSchema,
        rows: &[Row],
        copies: &[CopyOf],
    ) -> Result<Vec<Row>> {
        // Rows are written in groups holding the same columns, each group
        // with one statement; the results go back to the rows' positions.
        let mut groups: Vec<(Vec<&Column>, Vec<usize>)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            // The values are written once, column by column, for the group.
            let mut columns = Vec::with_capacity(row.len());
            for name in row.keys() {
                let column = described(table, name)?;
                if !column.always_generated || table.primary_key.contains(&column.name) {
                    columns.push(column);
                }
            }
            match groups.iter_mut().find(|(g, _)| *g == columns) {
                Some((_, members)) => members.push(i),
                None => groups.push((columns, vec![i])),
            }
        }
        let mut written: Vec<Option<Row>> = vec![None; rows.len()];
        for (columns, members) in groups {
            if columns.is_empty() {
                // A multi-row insert needs a column; such rows are rare.
                for i in members {
                    let key = self.insert(table, &rows[i]).await?;
                    written[i] = self.fetch_for_update(table, &key).await?;
                }
                continue;
            }
            let group: Vec<&Row> = members.iter().map(|&i| &rows[i]).collect();
            for (i, row) in members
                .into_iter()
                .zip(self.insert_group(table, &columns, &group).await?)
            {
                written[i] = Some(row);
            }
        }
        let written = written
            .into_iter()
            .map(|row| {
                row.ok_or_else(|| {
                    ConnectorError::data(format!(
                        "table {}: an inserted row vanished (a trigger or policy of the database?)",
                        table.name
                    ))
                })
            })
            .collect::<Result<Vec<Row>>>()?;
        let mut by_pair: Vec<((&str, bool), Vec<(String, String)>)> = Vec::new();
        for (row, copy) in written.iter().zip(copies) {
            let key = table.key_of(row).ok_or_else(|| {
                ConnectorError::internal(format!(
                    "table {}: an inserted row has no key",
                    table.name
                ))
            })?;
            let link = copy.link(&key.encode());
            let keys = (link.source_key, link.target_key);
            let group = (copy.pair.as_str(), copy.copy_is_target);
            match by_pair.iter_mut().find(|(g, _)| *g == group) {
                Some((_, pairs)) => pairs.push(keys),
                None => by_pair.push((group, vec![keys])),
            }
        }
        for ((pair, on_target), keys) in by_pair {
            if self.id_map_growth.recorded(keys.len() as u64) {
                self.control(ANALYZE_ID_MAP_SQL).await?;
            }
            self.record_copies(pair, on_target, &keys).await?;
        }
        Ok(written)
    }

    async fn update_many(
        &mut self,
        table: &TableSchema,
        updates: &[(Key, Row)],
    ) -> Result<Vec<Option<Row>>> {
        let Some((_, first)) = updates.first() else {
            return Ok(Vec::new());
        };
        let key = key_columns(table)?;
        let mut columns: Vec<&Column> = first
            .keys()
            .map(|name| described(table, name))
            .collect::<Result<_>>()?;
        columns.retain(|c| !table.primary_key.contains(&c.name) && !c.always_generated);
        let keys: Vec<Key> = updates.iter().map(|(k, _)| k.clone()).collect();
        let rows = if columns.is_empty() {
            self.fetch_many_for_update(table, &keys).await?
        } else {
            let mut arrays = key_arrays(table, &key, &keys)?;
            let values: Vec<&Row> = updates.iter().map(|(_, r)| r).collect();
            arrays.extend(row_arrays(table, &columns, &values)?);
            let params: Vec<&(dyn ToSql + Sync)> =
                arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let rows = self
                .query_with(&update_many_sql(table, &key, &columns), &params)
                .await?
                .map_err(|e| write_error(e, "update", &table.name, &[]))?;
            rows.iter()
                .map(|row| read_row(table, row))
                .collect::<Result<Vec<_>>>()?
        };
        let mut by_key: std::collections::HashMap<String, Row> = rows
            .into_iter()
            .filter_map(|row| table.key_of(&row).map(|k| (k.encode(), row)))
            .collect();
        let mut written = Vec::with_capacity(updates.len());
        for key in &keys {
            written.push(match by_key.remove(&key.encode()) {
                Some(row) => Some(row),
                // A key whose text differs from the one read back (or a row
                // that is really gone): asked for alone, so that a row is
                // never taken for missing by a difference in spelling.
                None => self.fetch_for_update(table, key).await?,
            });
        }
        Ok(written)
    }

    async fn delete_many(&mut self, table: &TableSchema, keys: &[Key]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let columns = key_columns(table)?;
        let arrays = key_arrays(table, &columns, keys)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.execute_with(&delete_many_sql(table, &columns), &params)
            .await?
            .map_err(|e| write_error(e, "delete from", &table.name, &[]))
    }

    async fn forget_links(&mut self, pair: &str, keys: &[(String, String)]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.links(FORGET_LINKS_SQL, pair, keys).await
    }

    async fn forget_link(&mut self, pair: &str, source_key: &str, target_key: &str) -> Result<()> {
        let values = [
            Some(pair.to_owned()),
            Some(source_key.to_owned()),
            Some(target_key.to_owned()),
        ];
        self.execute(
            "delete from tandem.id_map
             where pair = $1::text and (source_key = $2::text or target_key = $3::text)",
            &values,
        )
        .await?
        .map_err(|e| pg_error(e, format!("cannot forget a link of pair {pair:?}")))?;
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        self.control(&format!("savepoint {SAVEPOINT}")).await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.rollback_to(SAVEPOINT).await
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        self.control(&format!("release savepoint {SAVEPOINT}"))
            .await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if self.failed {
            self.finish("rollback").await?;
            return Err(ConnectorError::internal(
                "transaction rolled back, not committed: a statement in it failed \
                 and it was not rolled back to the savepoint",
            ));
        }
        self.finish("commit").await
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        self.finish("rollback").await
    }
}
