//! The [`Server`] a connector's tests run against: how to make and drop a
//! database on it, and what its engine does where engines differ.

use std::future::Future;
use std::time::Duration;

use tandem_connectors::{Engine, Result, Row};

/// A server the tests create their databases on, and how its SQL spells
/// what the contract tests create.
pub trait Server: Send + Sync + 'static {
    /// The engine the connector under test is for.
    const ENGINE: Engine;
    /// How the connector's messages name the engine.
    const NAME: &'static str;
    /// The connector's poll interval in the default configuration.
    const POLL_INTERVAL: Duration;
    /// In-process: no address to be refused at, no login.
    const EMBEDDED: bool = false;

    /// Text of any length (not for a key column).
    const TEXT: &'static str = "TEXT";
    /// A few bytes, fit for a key column.
    const BYTES: &'static str;
    /// A UUID column.
    const UUID: &'static str;
    /// An integer key the engine generates, `PRIMARY KEY` included.
    const GENERATED_KEY: &'static str;
    /// A UUID key the engine generates, `PRIMARY KEY` included.
    const GENERATED_UUID_KEY: &'static str;
    /// A small integer type, and a value too big for it.
    const SMALL_INT: (&'static str, i64) = ("SMALLINT", 70_000);
    /// A statement bounding the session's lock waits to a few seconds.
    const LOCK_TIMEOUT: &'static str;

    /// Whether the engine keeps foreign keys in the order they were
    /// declared (otherwise the tests compare them sorted).
    const FOREIGN_KEYS_IN_DECLARATION_ORDER: bool = true;
    /// Whether `insert_copies` writes many rows per statement (see
    /// [`new_copies_take_over_stale_pairs`](super::new_copies_take_over_stale_pairs)).
    const WRITES_COPIES_IN_BATCHES: bool;
    /// Whether a column's declared length and integer width are enforced.
    const ENFORCES_WIDTHS: bool = true;
    /// Whether the rows one statement changes are captured in key order
    /// (otherwise in the order the statement wrote them).
    const CAPTURES_A_STATEMENT_IN_KEY_ORDER: bool = false;
    /// Whether a NULL written into a generated key has the engine generate
    /// the key (otherwise the key column is left out to that end).
    const A_NULL_KEY_IS_GENERATED: bool = true;
    /// Whether `fetch_rows` returns the rows in key order.
    const FETCHES_IN_KEY_ORDER: bool = false;
    /// How many capture triggers a table gets.
    const CAPTURE_TRIGGERS_PER_TABLE: usize;
    /// A trigger of the user's own on table `link`, which install and
    /// uninstall must leave alone.
    const USER_TRIGGER: &'static str;
    /// Whether logging in with a wrong user and password is refused (a
    /// server that trusts local logins lets anyone in).
    const CHECKS_PASSWORDS: bool;

    /// Statements that create table `vals`: a generated key `id`, and a
    /// column of every type the engine maps, a date `dt` among them.
    const EVERY_TYPE: &'static str;
    /// Rows of values of `vals`' columns, each read back as written (the
    /// first holds every column).
    fn every_type_rows() -> Vec<Row>;

    /// The admin URL of the server (for SQLite, a directory).
    fn admin_url() -> String;
    /// Creates database `name`, empty, on the server.
    fn create_database(admin_url: &str, name: &str) -> impl Future<Output = ()> + Send;
    /// Drops the database, whatever sessions are still open on it.
    fn drop_database(admin_url: &str, name: &str) -> impl Future<Output = Result<(), String>>;
    /// Runs the statements (`;`-separated) in one plain session, not the
    /// agent's: their writes are captured.
    fn execute(url: &str, sql: &str) -> impl Future<Output = ()> + Send;
    /// Runs the statements in one plain session, saying whether they
    /// worked.
    fn try_execute(url: &str, sql: &str) -> impl Future<Output = bool> + Send;
    /// Everything the catalog shows of the database `name` at `url`,
    /// sorted: what an install must change and an uninstall put back.
    fn catalog(url: &str, name: &str) -> impl Future<Output = Vec<String>> + Send;

    /// The URL of database `name` on the server `admin_url` reaches.
    fn database_url(admin_url: &str, name: &str) -> String {
        let mut url = url::Url::parse(admin_url).expect("admin URL");
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    /// Whether contract test `test` cannot run here; then it has said so
    /// where the test output shows it.
    fn skipped(_test: &str) -> bool {
        false
    }

    /// `name` quoted as an identifier.
    fn quote(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// A literal of the bytes.
    fn bytes(bytes: &[u8]) -> String {
        format!("X'{}'", hex::encode(bytes))
    }

    /// Text of at most `chars` characters.
    fn varchar(chars: usize) -> String {
        format!("VARCHAR({chars})")
    }

    /// What bounds `column` to `chars` characters where the declared
    /// length does not.
    fn length_check(_column: &str, _chars: usize) -> String {
        String::new()
    }

    /// How messages name column `name`.
    fn column_shown(name: &str) -> String {
        format!("`{name}`")
    }

    /// How messages name database `name` at `url`.
    fn database_shown(name: &str, _url: &str) -> String {
        name.to_owned()
    }

    /// Whether a line of [`Server::catalog`] is one of Tandem's capture
    /// triggers (by default, a row trigger `tandem_ins_`, `tandem_upd_` or
    /// `tandem_del_` of a table).
    fn is_capture_trigger(line: &str) -> bool {
        line.starts_with("trigger|tandem_")
    }

    /// Lines of [`Server::catalog`] that an install must leave (by default,
    /// the version row).
    fn installed_objects() -> Vec<String> {
        vec![format!(
            "version|1|{}",
            tandem_connectors::connector::SCHEMA_VERSION
        )]
    }

    /// The statement that drops a capture trigger of table `table`.
    fn drop_capture_trigger(table: &str) -> String {
        format!("DROP TRIGGER tandem_del_{table}")
    }

    /// Statements that leave a capture trigger of table `table` in place
    /// but no longer capturing, where the engine can tell.
    fn tamper_with_capture_trigger(_table: &str) -> Option<String> {
        None
    }

    /// `sql`, run where explicit values may go into `table`'s generated key.
    fn with_explicit_keys(_table: &str, sql: &str) -> String {
        sql.to_owned()
    }

    /// The statement that has the engine gather statistics of `table`.
    fn analyze(table: &str) -> String;

    /// Starts an application's write while the agent's transaction is open,
    /// and returns once the write is done or, where writers wait for each
    /// other, once it waits for the agent: then with the write's handle.
    fn start_concurrent_write(
        url: &str,
        sql: &str,
    ) -> impl Future<Output = Option<tokio::task::JoinHandle<()>>> + Send {
        let (url, sql) = (url.to_owned(), sql.to_owned());
        async move {
            Self::execute(&url, &sql).await;
            None
        }
    }
}
