//! The `postgres` engine: PostgreSQL 12 and later.
//!
//! - Capture: one PL/pgSQL row trigger per table writes the key of every
//!   change into `tandem.changes`; while the agent waits (its LISTEN
//!   connection is in `tandem.waiting`) the first capture of a transaction
//!   `pg_notify`s `tandem_changes` and wakes it, polling is the fallback.
//! - Echo: [`Connector::begin`] runs `SET LOCAL tandem.applying = 'on'`;
//!   the triggers skip sessions that set it.
//! - Values travel as text in the ISO/UTC/hex session formats set in
//!   [`client`], cast by the server to each column's own type.
//! - Names: `schema.table` in the config, `public` when no schema is given.

mod apply;
mod batch;
mod capture;
mod client;
mod install;
mod schema;
mod statistics;
pub(crate) mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};

use crate::connector::{
    CapturedChange, Connector, EndpointConfig, IdMapRow, Installation, RowCount, Transaction,
    EXACT_COUNT_BELOW,
};
use crate::engine::Engine;
use crate::error::{ConnectorError, Result};
use crate::schema::{Column, TableName, TableSchema};
use crate::value::{Key, Row, Value};

use self::apply::PgTransaction;
use self::capture::Waker;
use self::client::{pg_error, pool_error, Server, DEFAULT_SCHEMA, SQL};
use self::types::{
    cast_param, key_columns, key_condition, key_params, params, read_row, select_list, write_text,
};

/// Keys fetched per statement.
const KEYS_PER_STATEMENT: usize = 1000;

/// Connects to PostgreSQL: checks the server answers (`SELECT 1`) and sets
/// up a pool of at most `config.max_connections` connections.
pub async fn connect(config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    let server = Server::from_endpoint(config)?;
    let pool = server.pool(config.max_connections)?;
    let connector = PostgresConnector {
        pool,
        address: server.address.clone(),
        poll_interval: config.poll_interval,
        waker: Waker::new(server),
        id_map_growth: Default::default(),
        changes_statistics: Default::default(),
    };
    connector
        .client()
        .await?
        .simple_query("select 1")
        .await
        .map_err(|e| client::connect_error(e, &connector.address))?;
    Ok(Arc::new(connector))
}

/// A PostgreSQL endpoint.
struct PostgresConnector {
    pool: Pool,
    /// `host:port`, for messages.
    address: String,
    poll_interval: Duration,
    waker: Waker,
    /// The mapping rows recorded through this connector, for ANALYZE.
    id_map_growth: Arc<statistics::IdMapGrowth>,
    /// When a backlog last had the change table analyzed.
    changes_statistics: statistics::ChangesStatistics,
}

impl PostgresConnector {
    async fn client(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(e, &self.address))
    }
}

#[async_trait]
impl Connector for PostgresConnector {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn table_name(&self, configured: &str) -> TableName {
        match configured.split_once('.') {
            Some((schema, name)) => TableName::new(Some(schema), name),
            None => TableName::new(Some(DEFAULT_SCHEMA), configured),
        }
    }

    async fn list_tables(&self) -> Result<Vec<TableName>> {
        schema::list_tables(&*self.client().await?).await
    }

    async fn describe(&self, table: &TableName) -> Result<TableSchema> {
        schema::describe(&*self.client().await?, table).await
    }

    async fn install_script(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        let installed = install::installed_version(&*self.client().await?).await?;
        install::install_statements(installed, tables)
    }

    async fn uninstall_script(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        Ok(install::uninstall_statements(tables))
    }

    async fn run_script(&self, statements: &[String]) -> Result<()> {
        install::run_script(&self.pool, &self.address, statements).await
    }

    async fn installation(&self, tables: &[TableSchema]) -> Result<Installation> {
        install::installation(&*self.client().await?, tables).await
    }

    async fn read_changes(
        &self,
        tables: &[TableName],
        limit: usize,
    ) -> Result<Vec<CapturedChange>> {
        let client = self.client().await?;
        // Both on one round trip: leaving tandem.waiting (writers need not
        // wake an agent that reads) and the read.
        let ((), read) = tokio::join!(
            self.waker.busy(&client),
            capture::read_changes(&client, tables, limit)
        );
        let read = read?;
        if let Some(last) = read.iter().map(|c| c.seq).max() {
            self.waker.saw(last);
        }
        if read.len() == limit
            && self
                .changes_statistics
                .backlog_at(std::time::Instant::now())
        {
            // Best effort: without the statistics reads are only slower
            // (and a user who does not own the table gets a warning).
            if let Err(e) = client.batch_execute(statistics::ANALYZE_CHANGES_SQL).await {
                tracing::debug!(error = %e, "cannot analyze tandem.changes");
            }
        }
        Ok(read)
    }

    async fn delete_changes(&self, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        capture::delete_changes(&*self.client().await?, seqs).await
    }

    async fn count_changes(&self, tables: &[TableName]) -> Result<Vec<(String, u64)>> {
        capture::count_changes(&*self.client().await?, tables).await
    }

    fn generated_key_fix(&self, table: &TableSchema) -> Option<String> {
        let [key] = table.primary_key.as_slice() else {
            return None;
        };
        let column = table.column(key)?;
        matches!(column.data_type, crate::DataType::Int).then(|| {
            format!(
                "ALTER TABLE {} ALTER COLUMN {} ADD GENERATED BY DEFAULT AS IDENTITY;",
                SQL.table(&table.name),
                SQL.ident(key)
            )
        })
    }

    async fn missing_privileges(&self, tables: &[TableSchema]) -> Result<Vec<String>> {
        let client = self.client().await?;
        let user: String = client
            .query_one("select current_user::text", &[])
            .await
            .map_err(|e| pg_error(e, "cannot read the current user"))?
            .get(0);
        let mut missing = Vec::new();
        for table in tables {
            let name = SQL.table(&table.name);
            let row = client
                .query_one(
                    "select has_table_privilege($1::text, 'SELECT'), has_table_privilege($1::text, 'INSERT'), \
                     has_table_privilege($1::text, 'UPDATE'), has_table_privilege($1::text, 'DELETE'), \
                     has_table_privilege($1::text, 'TRIGGER')",
                    &[&name],
                )
                .await
                .map_err(|e| pg_error(e, format!("cannot read the privileges on table {}", table.name)))?;
            let lacking: Vec<&str> = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRIGGER"]
                .iter()
                .enumerate()
                .filter(|(i, _)| !row.get::<_, bool>(*i))
                .map(|(_, p)| *p)
                .collect();
            if !lacking.is_empty() {
                missing.push(format!(
                    "user {user} lacks {} on table {}: GRANT {} ON {name} TO {};",
                    lacking.join(", "),
                    table.name,
                    lacking.join(", "),
                    SQL.ident(&user)
                ));
            }
        }
        Ok(missing)
    }

    async fn find_rows(
        &self,
        table: &TableSchema,
        columns: &[String],
        values: &[Value],
    ) -> Result<Vec<Row>> {
        if values.iter().any(Value::is_null) || columns.is_empty() {
            return Ok(Vec::new());
        }
        let described: Vec<&Column> = columns
            .iter()
            .map(|name| {
                table.column(name).ok_or_else(|| {
                    ConnectorError::schema(format!("table {} has no column {name}", table.name))
                })
            })
            .collect::<Result<_>>()?;
        let sql = format!(
            "select {} from {} where {}",
            select_list(table),
            SQL.table(&table.name),
            key_condition(&described, 1)
        );
        let params: Vec<Option<String>> = described
            .iter()
            .zip(values)
            .map(|(c, v)| write_text(&table.name, c, v))
            .collect::<Result<_>>()?;
        let client = self.client().await?;
        let rows = client
            .query(&sql, &types::params(&params))
            .await
            .map_err(|e| pg_error(e, format!("cannot read table {}", table.name)))?;
        rows.iter().map(|row| read_row(table, row)).collect()
    }

    async fn fetch_rows(&self, table: &TableSchema, keys: &[Key]) -> Result<Vec<Row>> {
        let columns = key_columns(table)?;
        let keys: Vec<&Key> = keys.iter().filter(|k| !k.has_null()).collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One text array per key column, cast to the column's type:
        // `k = any(...)` for one column, `(k1, k2) in (select ... unnest)`
        // for several.
        let arrays: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::text[]::{}[]", i + 1, c.native_type))
            .collect();
        let condition = match (columns.as_slice(), arrays.as_slice()) {
            ([column], [array]) => format!("{} = any({array})", SQL.ident(&column.name)),
            _ => {
                format!(
                    "({}) in (select * from unnest({}))",
                    SQL.columns(columns.iter().map(|c| c.name.as_str())),
                    arrays.join(", ")
                )
            }
        };
        let sql = format!(
            "select {} from {} where {condition}",
            select_list(table),
            SQL.table(&table.name)
        );
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| pg_error(e, format!("cannot read table {}", table.name)))?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let mut per_column: Vec<Vec<Option<String>>> =
                vec![Vec::with_capacity(chunk.len()); columns.len()];
            for key in chunk {
                for (i, value) in key_params(table, &columns, key)?.into_iter().enumerate() {
                    per_column[i].push(value);
                }
            }
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = per_column
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            for row in client
                .query(&statement, &refs)
                .await
                .map_err(|e| pg_error(e, format!("cannot read table {}", table.name)))?
            {
                out.push(read_row(table, &row)?);
            }
        }
        Ok(out)
    }

    async fn scan(
        &self,
        table: &TableSchema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let columns = key_columns(table)?;
        let names: Vec<String> = columns.iter().map(|c| SQL.ident(&c.name)).collect();
        let mut values = Vec::new();
        let mut condition = String::new();
        if let Some(after) = after {
            values = key_params(table, &columns, after)?;
            let casts: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| cast_param(i + 1, c))
                .collect();
            condition = format!(" where ({}) > ({})", names.join(", "), casts.join(", "));
        }
        // Ordered by the columns, not by the select list's text of them.
        let order: Vec<String> = names.iter().map(|n| format!("r.{n}")).collect();
        let sql = format!(
            "select {} from {} as r{condition} order by {} limit {}",
            select_list(table),
            SQL.table(&table.name),
            order.join(", "),
            limit
        );
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| pg_error(e, format!("cannot scan table {}", table.name)))?;
        client
            .query(&statement, &params(&values))
            .await
            .map_err(|e| pg_error(e, format!("cannot scan table {}", table.name)))?
            .iter()
            .map(|row| read_row(table, row))
            .collect()
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<RowCount> {
        let context = || format!("cannot estimate the rows of table {}", table.name);
        let client = self.client().await?;
        let relation = SQL.table(&table.name);
        let tuples: f64 = client
            .query_opt(
                "select c.reltuples::float8 from pg_catalog.pg_class c
                 where c.oid = pg_catalog.to_regclass($1::text)",
                &[&relation],
            )
            .await
            .map_err(|e| pg_error(e, context()))?
            .ok_or_else(|| ConnectorError::schema(format!("table {} does not exist", table.name)))?
            .get(0);
        let estimate = if tuples >= 0.0 {
            tuples as u64
        } else {
            // Never vacuumed or analyzed: ask the planner, which estimates
            // from the table's size on disk.
            let plan: serde_json::Value = client
                .query_one(
                    &format!("explain (format json) select 1 from {relation}"),
                    &[],
                )
                .await
                .map_err(|e| pg_error(e, context()))?
                .get(0);
            plan[0]["Plan"]["Plan Rows"]
                .as_f64()
                .unwrap_or(0.0)
                .max(0.0) as u64
        };
        if estimate >= EXACT_COUNT_BELOW {
            return Ok(RowCount::estimated(estimate));
        }
        let counted: i64 = client
            .query_one(&format!("select count(*) from {relation}"), &[])
            .await
            .map_err(|e| pg_error(e, context()))?
            .get(0);
        Ok(RowCount::counted(counted.max(0) as u64))
    }

    async fn read_id_map_page(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<IdMapRow>> {
        let limit = limit as i64;
        let client = self.client().await?;
        let rows = match after {
            None => {
                client
                    .query(
                        "select pair, source_key, target_key from tandem.id_map \
                         order by pair, source_key limit $1",
                        &[&limit],
                    )
                    .await
            }
            Some((pair, source_key)) => {
                client
                    .query(
                        "select pair, source_key, target_key from tandem.id_map \
                         where (pair, source_key) > ($1, $2) order by pair, source_key limit $3",
                        &[&pair, &source_key, &limit],
                    )
                    .await
            }
        }
        .map_err(|e| pg_error(e, "cannot read tandem.id_map"))?;
        Ok(rows
            .iter()
            .map(|row| IdMapRow {
                pair: row.get(0),
                source_key: row.get(1),
                target_key: row.get(2),
            })
            .collect())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(
            PgTransaction::begin(&self.pool, &self.address, self.id_map_growth.clone()).await?,
        ))
    }

    async fn wait_for_changes(&self, timeout: Duration) {
        self.waker.wait(timeout, self.poll_interval).await;
    }
}
