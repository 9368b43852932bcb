//! What an `http` endpoint must remember between runs, in a local file.
//!
//! An API has no change table and no mapping table, so the endpoint keeps
//! their equivalents here: per object the watermark of polling and the
//! records already consumed at it, the ids known to exist (to find deletes),
//! the modification times of the agent's own writes (to suppress echo),
//! the key pairs of records the agent created (the mapping table), and the
//! creates in flight.
//!
//! The file is a journal of JSON lines, appended and fsynced, replayed at
//! open and then rewritten compact. A line torn by a crash at the end is
//! ignored; a bad line elsewhere is corruption and refused. An exclusive
//! lock keeps a second process out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::connector::IdMapRow;
use crate::error::{ConnectorError, ErrorKind, Result};

/// Bytes appended before the journal is rewritten compact (at least).
const COMPACT_AFTER: u64 = 8 << 20;

/// What is remembered of one object.
#[derive(Debug, Clone, Default)]
pub struct ObjectState {
    /// Records modified before this were all consumed.
    pub watermark: Option<DateTime<Utc>>,
    /// Records consumed at or after `watermark - overlap`: (id, time).
    pub seen: BTreeSet<(String, DateTime<Utc>)>,
    /// Ids known to exist.
    pub known: BTreeSet<String>,
    /// The modification time the API gave the agent's last write, per id.
    pub own: HashMap<String, DateTime<Utc>>,
    /// Deletes were read up to here (deleted-records request).
    pub deleted_watermark: Option<DateTime<Utc>>,
    /// When the id set was last compared.
    pub reconciled_at: Option<DateTime<Utc>>,
}

/// A create sent (or about to be) whose key pair is not recorded yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Names the intent; written into the new record when the object has
    /// a `create_token` field.
    pub token: String,
    /// The object created.
    pub object: String,
    /// The key pair, the new record's key left empty.
    pub link: IdMapRowData,
    /// Whether the new record is on the target side.
    pub new_is_target: bool,
    /// What is known of the create's outcome.
    #[serde(default)]
    pub outcome: Outcome,
    /// The `find_created` query, filled with the record's values.
    #[serde(default)]
    pub finder: BTreeMap<String, String>,
    /// The field values sent (field name to JSON, NULLs left out): a
    /// listed record the agent does not know that holds all of them is
    /// this create's record, not someone else's new one.
    #[serde(default)]
    pub sent: BTreeMap<String, serde_json::Value>,
}

/// What is known of a create in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Being sent: it may or may not have reached the API.
    #[default]
    Sending,
    /// Its answer was lost (a timeout, a broken connection, a 5xx after
    /// the request went out): it may have been created.
    Lost,
    /// The API created the record, but its id could not be read from the
    /// answer.
    IdUnknown,
    /// An operator let it go (`dead-letters retry`): looked for once
    /// more, then sent again when it is not found.
    Released,
}

/// An [`IdMapRow`] in the journal's own form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdMapRowData {
    /// Pair name.
    pub pair: String,
    /// Source key, encoded.
    pub source_key: String,
    /// Target key, encoded.
    pub target_key: String,
}

impl From<&IdMapRow> for IdMapRowData {
    fn from(row: &IdMapRow) -> Self {
        IdMapRowData {
            pair: row.pair.clone(),
            source_key: row.source_key.clone(),
            target_key: row.target_key.clone(),
        }
    }
}

impl From<&IdMapRowData> for IdMapRow {
    fn from(row: &IdMapRowData) -> Self {
        IdMapRow {
            pair: row.pair.clone(),
            source_key: row.source_key.clone(),
            target_key: row.target_key.clone(),
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Entry {
    /// Polling consumed everything before `at`; `seen` replaces the set.
    Watermark {
        object: String,
        at: DateTime<Utc>,
        seen: Vec<(String, DateTime<Utc>)>,
    },
    /// These ids exist (or no longer do).
    Known {
        object: String,
        ids: Vec<String>,
        present: bool,
    },
    /// The agent wrote `id` and the API stamped it `at` (`None`: deleted).
    Own {
        object: String,
        id: String,
        at: Option<DateTime<Utc>>,
    },
    /// Deletes were read up to `at`.
    DeletedWatermark { object: String, at: DateTime<Utc> },
    /// The id set was compared at `at`.
    Reconciled { object: String, at: DateTime<Utc> },
    /// A key pair of a record the agent created.
    Link(IdMapRowData),
    /// A key pair the endpoint found by itself (a create whose answer
    /// could not be read, recognised later), for the agent to adopt.
    Found(IdMapRowData),
    /// The agent adopted a found key pair.
    Adopted(IdMapRowData),
    /// A key pair forgotten.
    Unlink(IdMapRowData),
    /// A create about to be sent.
    Intent(Intent),
    /// A create settled (linked, known not to have happened, or let go by
    /// an operator).
    IntentDone { token: String },
}

/// Everything the journal holds.
#[derive(Debug, Clone, Default)]
pub struct JournalState {
    /// Per object.
    pub objects: BTreeMap<String, ObjectState>,
    /// Key pairs of records the agent created.
    pub links: BTreeSet<IdMapRowData>,
    /// Key pairs found by the endpoint that the agent has not adopted.
    pub found: BTreeSet<IdMapRowData>,
    /// Creates in flight, by token.
    pub intents: BTreeMap<String, Intent>,
}

impl JournalState {
    /// The state of `object`, created empty.
    pub fn object(&mut self, object: &str) -> &mut ObjectState {
        self.objects.entry(object.to_owned()).or_default()
    }

    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Watermark { object, at, seen } => {
                let state = self.object(&object);
                state.watermark = Some(at);
                state.seen = seen.into_iter().collect();
            }
            Entry::Known {
                object,
                ids,
                present,
            } => {
                let state = self.object(&object);
                for id in ids {
                    if present {
                        state.known.insert(id);
                    } else {
                        state.own.remove(&id);
                        state.known.remove(&id);
                    }
                }
            }
            Entry::Own { object, id, at } => {
                let state = self.object(&object);
                match at {
                    Some(at) => {
                        state.own.insert(id.clone(), at);
                        state.known.insert(id);
                    }
                    None => {
                        state.own.remove(&id);
                        state.known.remove(&id);
                    }
                }
            }
            Entry::DeletedWatermark { object, at } => {
                self.object(&object).deleted_watermark = Some(at)
            }
            Entry::Reconciled { object, at } => self.object(&object).reconciled_at = Some(at),
            Entry::Link(row) => {
                self.links.insert(row);
            }
            Entry::Found(row) => {
                self.links.insert(row.clone());
                self.found.insert(row);
            }
            Entry::Adopted(row) => {
                self.found.remove(&row);
            }
            Entry::Unlink(row) => {
                // A forget names the pair by either key.
                self.links.retain(|l| {
                    l.pair != row.pair
                        || (l.source_key != row.source_key && l.target_key != row.target_key)
                });
            }
            Entry::Intent(intent) => {
                self.intents.insert(intent.token.clone(), intent);
            }
            Entry::IntentDone { token } => {
                self.intents.remove(&token);
            }
        }
    }

    /// The entries that rebuild this state.
    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for (name, state) in &self.objects {
            if let Some(at) = state.watermark {
                out.push(Entry::Watermark {
                    object: name.clone(),
                    at,
                    seen: state.seen.iter().cloned().collect(),
                });
            }
            if !state.known.is_empty() {
                out.push(Entry::Known {
                    object: name.clone(),
                    ids: state.known.iter().cloned().collect(),
                    present: true,
                });
            }
            for (id, at) in &state.own {
                out.push(Entry::Own {
                    object: name.clone(),
                    id: id.clone(),
                    at: Some(*at),
                });
            }
            if let Some(at) = state.deleted_watermark {
                out.push(Entry::DeletedWatermark {
                    object: name.clone(),
                    at,
                });
            }
            if let Some(at) = state.reconciled_at {
                out.push(Entry::Reconciled {
                    object: name.clone(),
                    at,
                });
            }
        }
        out.extend(self.links.iter().cloned().map(Entry::Link));
        out.extend(self.found.iter().cloned().map(Entry::Found));
        out.extend(self.intents.values().cloned().map(Entry::Intent));
        out
    }
}

/// The journal file, open and locked.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Held for the lock on `<journal>.lock`, released when dropped.
    _lock: File,
    /// Bytes in the file after the last rewrite, and appended since.
    compact_size: u64,
    appended: u64,
    /// The replayed state, kept up to date by [`Journal::append`].
    pub state: JournalState,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> ConnectorError {
    ConnectorError::new(
        ErrorKind::Internal,
        format!("{what} {}: {e}", path.display()),
    )
}

impl Journal {
    /// Opens (creating) the journal at `path`, replays and compacts it.
    pub fn open(path: &Path) -> Result<Journal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create", e))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, "cannot open", e))?;
        if lock.try_lock().is_err() {
            return Err(ConnectorError::new(
                ErrorKind::Config,
                format!(
                    "{} is in use by another tandem-agent process (one agent per state directory)",
                    path.display()
                ),
            ));
        }
        let mut state = JournalState::default();
        match File::open(path) {
            Ok(file) => {
                let lines: Vec<String> = BufReader::new(file)
                    .lines()
                    .collect::<std::io::Result<_>>()
                    .map_err(|e| io_error(path, "cannot read", e))?;
                let last = lines.len().saturating_sub(1);
                for (i, line) in lines.iter().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Entry>(line) {
                        Ok(entry) => state.apply(entry),
                        // The crash tore the last append: it never counted.
                        Err(_) if i == last => {}
                        Err(e) => {
                            return Err(ConnectorError::new(
                                ErrorKind::Internal,
                                format!(
                                    "{} is corrupt at line {}: {e} (move it aside and run `tandem-agent rebuild-state`)",
                                    path.display(),
                                    i + 1
                                ),
                            ))
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path, "cannot read", e)),
        }
        let (file, compact_size) = Journal::rewrite(path, &state)?;
        Ok(Journal {
            path: path.to_owned(),
            file,
            _lock: lock,
            compact_size,
            appended: 0,
            state,
        })
    }

    /// Writes `state` compact to a new file and moves it into place.
    fn rewrite(path: &Path, state: &JournalState) -> Result<(File, u64)> {
        let temporary = path.with_extension("new");
        let mut file =
            File::create(&temporary).map_err(|e| io_error(&temporary, "cannot create", e))?;
        let mut text = String::new();
        for entry in state.entries() {
            text.push_str(&serde_json::to_string(&entry).expect("journal entries serialize"));
            text.push('\n');
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(&temporary, "cannot write", e))?;
        std::fs::rename(&temporary, path).map_err(|e| io_error(path, "cannot replace", e))?;
        if let Some(dir) = path.parent() {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_error(path, "cannot open", e))?;
        Ok((file, text.len() as u64))
    }

    /// Appends `entries` (applying them to the state); with `durable`, they
    /// are on disk when this returns.
    pub fn append(&mut self, entries: Vec<Entry>, durable: bool) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for entry in &entries {
            text.push_str(&serde_json::to_string(entry).expect("journal entries serialize"));
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| io_error(&self.path, "cannot write", e))?;
        if durable {
            self.file
                .sync_data()
                .map_err(|e| io_error(&self.path, "cannot flush", e))?;
        }
        for entry in entries {
            self.state.apply(entry);
        }
        self.appended += text.len() as u64;
        // Watermarks and own writes pile up in a long run: rewritten
        // compact once the appended part outgrows the state.
        if self.appended > (4 * self.compact_size).max(COMPACT_AFTER) {
            let (file, size) = Journal::rewrite(&self.path, &self.state)?;
            self.file = file;
            self.compact_size = size;
            self.appended = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: &str, target: &str) -> IdMapRowData {
        IdMapRowData {
            pair: "p".into(),
            source_key: source.into(),
            target_key: target.into(),
        }
    }

    #[test]
    fn replays_what_was_appended_and_ignores_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.journal");
        let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        {
            let mut journal = Journal::open(&path).unwrap();
            journal
                .append(
                    vec![
                        Entry::Link(row("[1]", "[\"a\"]")),
                        Entry::Link(row("[2]", "[\"b\"]")),
                        Entry::Own {
                            object: "O".into(),
                            id: "a".into(),
                            at: Some(at),
                        },
                        Entry::Unlink(row("[2]", "")),
                    ],
                    true,
                )
                .unwrap();
        }
        // A crash in the middle of an append.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"e\":\"link\",\"pa")
            .unwrap();
        let journal = Journal::open(&path).unwrap();
        assert_eq!(
            journal.state.links.iter().collect::<Vec<_>>(),
            vec![&row("[1]", "[\"a\"]")]
        );
        assert_eq!(journal.state.objects["O"].own["a"], at);
        assert!(journal.state.objects["O"].known.contains("a"));
    }

    #[test]
    fn a_second_process_and_a_corrupt_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let _first = Journal::open(&path).unwrap();
        let err = Journal::open(&path).unwrap_err().to_string();
        assert!(err.contains("in use by another tandem-agent"), "{err}");
        let other = dir.path().join("k");
        std::fs::write(&other, "garbage\n{\"e\":\"intent_done\",\"token\":\"t\"}\n").unwrap();
        let err = Journal::open(&other).unwrap_err().to_string();
        assert!(err.contains("is corrupt at line 1"), "{err}");
    }
}
