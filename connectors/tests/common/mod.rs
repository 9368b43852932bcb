//! What the connector tests of every engine share: the [`Server`] an
//! engine's tests run against, a throw-away database on it ([`TestDb`]),
//! small builders for rows, keys, links and assertions, and the
//! [`contract`] every connector keeps, written once.

// Each engine's test file is a crate of its own that uses part of this.
#![allow(dead_code)]

pub mod contract;
mod server;

pub use server::Server;

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tandem_connectors::{
    connect, ChangeOp, Connector, ConnectorError, DataType, EndpointConfig, ErrorKind, IdMapRow,
    Key, Result, Row, TableName, TableSchema, Transaction, Value,
};

/// A throw-away database `tandem_t_<uuid>`, dropped when the guard is,
/// failed test included.
pub struct TestDb<S: Server> {
    pub name: String,
    pub url: String,
    server: PhantomData<S>,
}

impl<S: Server> TestDb<S> {
    fn admin_url() -> String {
        S::admin_url()
    }

    /// A new, empty database.
    pub async fn create() -> Self {
        let name = format!("tandem_t_{}", uuid::Uuid::new_v4().simple());
        S::create_database(&Self::admin_url(), &name).await;
        TestDb {
            url: S::database_url(&Self::admin_url(), &name),
            name,
            server: PhantomData,
        }
    }

    /// A new database set up by the given statements.
    pub async fn with(setup: &str) -> Self {
        let db = Self::create().await;
        db.exec(setup).await;
        db
    }

    /// A new database with only Tandem's own tables installed, and its
    /// connector.
    pub async fn installed() -> (Self, Arc<dyn Connector>) {
        let db = Self::create().await;
        let connector = db.connector().await;
        install(&connector, &[]).await;
        (db, connector)
    }

    /// Runs statements as an application would (its writes are captured).
    pub async fn exec(&self, sql: &str) {
        S::execute(&self.url, sql).await;
    }

    /// Runs statements as an application would, saying whether they worked.
    pub async fn try_exec(&self, sql: &str) -> bool {
        S::try_execute(&self.url, sql).await
    }

    /// Everything the catalog shows of the database, sorted.
    pub async fn catalog(&self) -> Vec<String> {
        S::catalog(&self.url, &self.name).await
    }

    /// The database's URL, edited.
    pub fn url_with(&self, edit: impl FnOnce(&mut url::Url)) -> String {
        let mut url = url::Url::parse(&self.url).expect("test URL");
        edit(&mut url);
        url.to_string()
    }

    /// The agent's configuration for the database.
    pub fn config(&self) -> EndpointConfig {
        EndpointConfig {
            engine: S::ENGINE,
            url: self.url.clone(),
            password: None,
            poll_interval: S::POLL_INTERVAL,
            max_connections: 4,
            tls: tandem_connectors::TlsConfig::default_for(S::ENGINE, &self.url)
                .expect("TLS settings of the test URL"),
            http: None,
        }
    }

    /// A connector with the default configuration.
    pub async fn connector(&self) -> Arc<dyn Connector> {
        self.connector_with(|_| {}).await
    }

    /// A connector whose configuration differs from the default by `adjust`.
    pub async fn connector_with(
        &self,
        adjust: impl FnOnce(&mut EndpointConfig),
    ) -> Arc<dyn Connector> {
        let mut config = self.config();
        adjust(&mut config);
        connect(&config).await.expect("connect")
    }

    /// The error connecting with the default configuration, `url` aside.
    pub async fn connect_error(&self, url: &str) -> ConnectorError {
        let config = EndpointConfig {
            url: url.to_owned(),
            ..self.config()
        };
        connect(&config)
            .await
            .err()
            .unwrap_or_else(|| panic!("connecting to {url} should fail"))
    }
}

impl<S: Server> Drop for TestDb<S> {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Its own thread and runtime: the test's runtime may be gone or busy.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(S::drop_database(&Self::admin_url(), &name))
        })
        .join()
        .unwrap_or_else(|_| Err("the cleanup thread panicked".to_owned()));
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The table with this configured name.
pub async fn describe(connector: &Arc<dyn Connector>, configured: &str) -> TableSchema {
    connector
        .describe(&connector.table_name(configured))
        .await
        .unwrap_or_else(|e| panic!("describe {configured}: {e}"))
}

/// The tables with these configured names, described in order.
pub async fn describe_all<const N: usize>(
    connector: &Arc<dyn Connector>,
    configured: [&str; N],
) -> [TableSchema; N] {
    let mut tables = Vec::with_capacity(N);
    for name in configured {
        tables.push(describe(connector, name).await);
    }
    tables
        .try_into()
        .unwrap_or_else(|_| unreachable!("one table per name"))
}

/// (name, type, native type, nullable, generated, always generated) of
/// every column, in order.
pub fn column_summary(table: &TableSchema) -> Vec<(&str, DataType, &str, bool, bool, bool)> {
    table
        .columns
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.data_type,
                c.native_type.as_str(),
                c.nullable,
                c.generated,
                c.always_generated,
            )
        })
        .collect()
}

/// (columns, referenced table, referenced columns) of every foreign key, in
/// the order described.
pub fn foreign_keys(table: &TableSchema) -> Vec<(Vec<&str>, TableName, Vec<&str>)> {
    fn names(columns: &[String]) -> Vec<&str> {
        columns.iter().map(String::as_str).collect()
    }
    table
        .foreign_keys
        .iter()
        .map(|fk| {
            (
                names(&fk.columns),
                fk.referenced_table.clone(),
                names(&fk.referenced_columns),
            )
        })
        .collect()
}

/// Describing a table that does not exist is a schema error naming the
/// table and the database.
pub async fn assert_missing_table(
    connector: &Arc<dyn Connector>,
    configured: &str,
    database: &str,
) {
    let err = connector
        .describe(&connector.table_name(configured))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema);
    assert_eq!(
        err.to_string(),
        format!("table {configured} does not exist in database {database}")
    );
}

/// Installs capture of the tables, and Tandem's own tables.
pub async fn install(connector: &Arc<dyn Connector>, tables: &[TableSchema]) {
    let script = connector.install_script(tables).await;
    run_script(connector, "install", script).await;
}

/// Uninstalls, `configured` being the tables still in the configuration.
pub async fn uninstall(connector: &Arc<dyn Connector>, configured: &[TableSchema]) {
    let script = connector.uninstall_script(configured).await;
    run_script(connector, "uninstall", script).await;
}

async fn run_script(connector: &Arc<dyn Connector>, what: &str, script: Result<Vec<String>>) {
    let script = script.unwrap_or_else(|e| panic!("{what} script: {e}"));
    if let Err(e) = connector.run_script(&script).await {
        panic!("{what}: {e}");
    }
}

/// The named tables, described, with capture installed for them.
pub async fn install_capture<const N: usize>(
    connector: &Arc<dyn Connector>,
    configured: [&str; N],
) -> [TableSchema; N] {
    let tables = describe_all(connector, configured).await;
    install(connector, &tables).await;
    tables
}

/// A row from (column, value) pairs.
pub fn row(values: &[(&str, Value)]) -> Row {
    values
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A key from its values, in key order.
pub fn key(values: &[Value]) -> Key {
    Key(values.to_vec())
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// (op, captured key) of every change row of `tables`, in order.
pub async fn changes(
    connector: &Arc<dyn Connector>,
    tables: &[TableName],
) -> Vec<(ChangeOp, serde_json::Value)> {
    connector
        .read_changes(tables, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.op, c.key))
        .collect()
}

/// The keys of the whole table, scanned `page` rows at a time.
pub async fn scanned_keys(
    connector: &Arc<dyn Connector>,
    table: &TableSchema,
    page: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<Key> = None;
    loop {
        let rows = connector.scan(table, after.as_ref(), page).await.unwrap();
        if rows.is_empty() {
            return seen;
        }
        assert!(
            rows.len() <= page,
            "{} rows in a page of {page}",
            rows.len()
        );
        after = table.key_of(rows.last().unwrap());
        seen.extend(rows.iter().map(|r| table.key_of(r).unwrap().to_string()));
    }
}

/// Each update, in order, reports whether the row it names existed.
pub async fn assert_updates(
    tx: &mut Box<dyn Transaction>,
    updates: &[(&TableSchema, &Key, Row, bool)],
) {
    for (table, key, values, existed) in updates {
        let updated = tx.update(table, key, values).await.unwrap();
        let what = format!("update {key} in {} with {values:?}", table.name);
        assert_eq!(updated, *existed, "{what}");
    }
}

/// Links written `pair source=target`, comma-separated: `p [1]=[10], q [2]=[20]`.
pub fn links(spec: &str) -> Vec<IdMapRow> {
    spec.split(", ")
        .map(|link| {
            let (pair, keys) = link.split_once(' ').expect("pair source=target");
            let (source, target) = keys.split_once('=').expect("source=target");
            IdMapRow {
                pair: pair.to_owned(),
                source_key: source.to_owned(),
                target_key: target.to_owned(),
            }
        })
        .collect()
}

/// Records the links, in order, in the transaction.
pub async fn record_links(tx: &mut Box<dyn Transaction>, spec: &str) {
    for link in links(spec) {
        tx.record_link(&link).await.unwrap();
    }
}

/// Records the links in a transaction that is then rolled back.
pub async fn record_links_then_roll_back(connector: &Arc<dyn Connector>, spec: &str) {
    let mut tx = connector.begin().await.unwrap();
    record_links(&mut tx, spec).await;
    tx.rollback().await.unwrap();
}

/// The id map holds exactly these links.
pub async fn assert_links(connector: &Arc<dyn Connector>, spec: &str) {
    assert_eq!(connector.read_id_map().await.unwrap(), links(spec));
}

/// The error is of `kind` and its message names every needle.
pub fn assert_error(err: &ConnectorError, kind: ErrorKind, needles: &[&str]) {
    assert_eq!(err.kind(), kind, "{err}");
    let message = err.to_string();
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

/// A new copy takes over the mapping row of an earlier copy of its record,
/// made on either side and gone since. A mapping row that names the key the
/// new copy gets: an engine that writes copies in `batches` fails the batch
/// as a data error (the agent then writes the records one at a time), one
/// that writes them one by one forgets that row first. `table` has a
/// generated key `id` that starts at 1, and a text column `name`.
pub async fn new_copies_take_over_stale_pairs(
    connector: &Arc<dyn Connector>,
    table: &TableSchema,
    batches: bool,
) {
    let mut tx = connector.begin().await.unwrap();
    record_links(&mut tx, "back [700]=[7], items [1]=[500]").await;
    tx.commit().await.unwrap();

    let rows = [row(&[("name", text("a"))]), row(&[("name", text("b"))])];
    let copies = [
        tandem_connectors::CopyOf {
            pair: "items".into(),
            origin_key: "[1]".into(),
            copy_is_target: true,
        },
        tandem_connectors::CopyOf {
            pair: "back".into(),
            origin_key: "[7]".into(),
            copy_is_target: false,
        },
    ];
    let mut tx = connector.begin().await.unwrap();
    let written = tx.insert_copies(table, &rows, &copies).await.unwrap();
    tx.commit().await.unwrap();
    let new_keys: Vec<String> = written
        .iter()
        .map(|r| table.key_of(r).unwrap().encode())
        .collect();
    assert_links(
        connector,
        &format!("back {}=[7], items [1]={}", new_keys[1], new_keys[0]),
    )
    .await;

    let next = key(&[Value::Int(3)]).encode();
    let mut tx = connector.begin().await.unwrap();
    record_links(&mut tx, &format!("items [2]={next}")).await;
    tx.commit().await.unwrap();
    let mut tx = connector.begin().await.unwrap();
    let written = tx.insert_copies(table, &rows[..1], &copies[..1]).await;
    if batches {
        let refused = written.unwrap_err();
        tx.rollback().await.unwrap();
        assert_eq!(refused.kind(), ErrorKind::Data, "{refused}");
    } else {
        assert_eq!(table.key_of(&written.unwrap()[0]).unwrap().encode(), next);
        tx.commit().await.unwrap();
        assert_links(
            connector,
            &format!("back {}=[7], items [1]={next}", new_keys[1]),
        )
        .await;
    }
}

/// Polls `condition` until it holds, for at most ten seconds.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies of `pair`'s records with single-column keys `origins`, made on
/// the target (`copy_is_target`) or the source.
pub fn copies_of(
    pair: &str,
    origins: impl IntoIterator<Item = impl std::fmt::Display>,
    copy_is_target: bool,
) -> Vec<tandem_connectors::CopyOf> {
    origins
        .into_iter()
        .map(|key| tandem_connectors::CopyOf {
            pair: pair.into(),
            origin_key: format!("[{key}]"),
            copy_is_target,
        })
        .collect()
}

/// The links of `pair`, as (source, target), sorted.
pub async fn links_of(connector: &Arc<dyn Connector>, pair: &str) -> Vec<(String, String)> {
    let mut links: Vec<(String, String)> = connector
        .read_id_map()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.pair == pair)
        .map(|l| (l.source_key, l.target_key))
        .collect();
    links.sort();
    links
}

/// Every row of the table, in key order.
pub async fn all_rows(connector: &Arc<dyn Connector>, table: &TableSchema) -> Vec<Row> {
    connector.scan(table, None, 10_000).await.unwrap()
}

/// A URL's user name or password as it was before percent-encoding.
pub fn percent_decode(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], part.get(i + 1..i + 3)) {
            (b'%', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8 URL part")
}
