-- Step 1: Tandem's objects in a SQLite database: the change table the
-- capture triggers write into, the mapping table of the records the agent
-- created here, the version row's table, and the marker of the agent's own
-- transactions. Statements are separated by lines holding only "-- ;;";
-- see sql/README.md for how steps are run.
--
-- One row per captured insert ('I'), update ('U') or delete ('D'): the
-- primary key of the row as a JSON array. No AUTOINCREMENT: it would leave
-- SQLite's sqlite_sequence behind after uninstall, and a number reused once
-- its row was consumed is harmless (rows are consumed by identity, and the
-- rows present are always numbered in the order they were written).
CREATE TABLE IF NOT EXISTS tandem_changes (
  seq INTEGER PRIMARY KEY,
  table_name TEXT NOT NULL,
  op TEXT NOT NULL CHECK (op IN ('I', 'U', 'D')),
  pk TEXT NOT NULL,
  captured_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
)
-- ;;
-- The records the agent created in this database, and the records they
-- copy; written in the same transaction as the data.
CREATE TABLE IF NOT EXISTS tandem_id_map (
  pair TEXT NOT NULL,
  source_key TEXT NOT NULL,
  target_key TEXT NOT NULL,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
  PRIMARY KEY (pair, source_key),
  UNIQUE (pair, target_key)
)
-- ;;
CREATE TABLE IF NOT EXISTS tandem_version (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version INTEGER NOT NULL
)
-- ;;
-- The echo marker: the agent inserts a row here at the start of each of its
-- write transactions and deletes it before committing, so the row is only
-- ever seen by the agent's own writes, which the triggers then skip. SQLite
-- has one writer at a time: an application's write comes before or after
-- such a transaction, never inside it.
CREATE TABLE IF NOT EXISTS tandem_applying (
  id INTEGER PRIMARY KEY
)
