//! What a pass did, and the status snapshot the running agent leaves for
//! `tandem-agent status`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::Applied;

/// Counts of one pair during one command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairTally {
    /// Applied, by the side the change came from (source, target).
    pub applied: [Applied; 2],
    /// Conflicts resolved.
    pub conflicts: u64,
    /// Records that wait for a referenced record.
    pub waiting: u64,
    /// Records sent to the dead-letter list.
    pub dead_lettered: u64,
}

/// Counts per pair during one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// By pair name.
    pub pairs: BTreeMap<String, PairTally>,
}

impl Tally {
    /// The counts of `pair`, created on first use.
    pub fn pair(&mut self, pair: &str) -> &mut PairTally {
        self.pairs.entry(pair.to_owned()).or_default()
    }

    /// Records written, all pairs and directions.
    pub fn total_applied(&self) -> u64 {
        self.pairs
            .values()
            .flat_map(|p| p.applied.iter())
            .map(|a| a.inserted + a.updated + a.deleted)
            .sum()
    }

    /// A table of what was done, for a terminal.
    pub fn render(&self, names: &[(String, String, String)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<20} {:<36} {:>8} {:>8} {:>8} {:>9} {:>12}",
            "pair", "direction", "inserted", "updated", "deleted", "conflicts", "dead letters"
        );
        for (pair, source, target) in names {
            let tally = self.pairs.get(pair).cloned().unwrap_or_default();
            for (i, direction) in [
                format!("source -> target ({source})"),
                format!("target -> source ({target})"),
            ]
            .iter()
            .enumerate()
            {
                let a = tally.applied[i];
                let (conflicts, dead) = if i == 0 {
                    (tally.conflicts.to_string(), tally.dead_lettered.to_string())
                } else {
                    (String::new(), String::new())
                };
                let _ = writeln!(
                    out,
                    "{:<20} {:<36} {:>8} {:>8} {:>8} {:>9} {:>12}",
                    if i == 0 { pair.as_str() } else { "" },
                    direction,
                    a.inserted,
                    a.updated,
                    a.deleted,
                    conflicts,
                    dead
                );
            }
        }
        out
    }
}

/// One pair in the status snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStatus {
    /// Pair name.
    pub name: String,
    /// Source table.
    pub source: String,
    /// Target table.
    pub target: String,
    /// Change-log entries not yet applied.
    pub logged_not_applied: u64,
    /// Applied totals since the state was created (source->target, target->source).
    pub applied: [Applied; 2],
    /// Conflicts resolved in total.
    pub conflicts: u64,
    /// Dead letters waiting.
    pub dead_letters: u64,
    /// Last pass that left nothing to apply.
    pub last_sync: Option<DateTime<Utc>>,
    /// Capture-to-apply delay of the last applied change, in milliseconds.
    pub lag_ms: Option<i64>,
    /// Why the pair is paused, and the fix; `None` while it syncs.
    #[serde(default)]
    pub paused: Option<String>,
}

/// What the running agent last knew; written after every pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was written.
    pub written_at: DateTime<Utc>,
    /// Whether the first sync has finished.
    pub first_sync_done: bool,
    /// Per pair.
    pub pairs: Vec<PairStatus>,
    /// The failure the agent is retrying after (a server down, the disk
    /// full), with when it began; `None` while passes succeed.
    #[serde(default)]
    pub retrying: Option<String>,
}

impl Snapshot {
    /// Where the snapshot lives in a state directory.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("status.json")
    }

    /// Writes the snapshot atomically (write, then rename).
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = Snapshot::path(state_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serializable"))?;
        std::fs::rename(tmp, path)
    }

    /// Reads the snapshot, `None` when the agent never wrote one.
    pub fn read(state_dir: &Path) -> std::io::Result<Option<Snapshot>> {
        match std::fs::read(Snapshot::path(state_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Most dead letters `dead-letters.json` lists (the total is kept too).
pub const LISTED_LETTERS: usize = 10_000;

/// A dead letter as listed: where it came from, why it failed; not its
/// values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedLetter {
    /// The table pair.
    pub pair: String,
    /// Where the change came from.
    pub side: crate::config::Side,
    /// The record's key on `side`, as shown.
    pub key: String,
    /// Changes of the record held behind the failure.
    pub changes: u64,
    /// When it first failed.
    pub failed_at: DateTime<Utc>,
    /// Why, one line.
    pub reason: String,
}

impl From<&crate::state::DeadLetter> for ListedLetter {
    fn from(letter: &crate::state::DeadLetter) -> ListedLetter {
        ListedLetter {
            pair: letter.pair.clone(),
            side: letter.side,
            key: letter.key.to_string(),
            changes: letter.changes,
            failed_at: letter.failed_at,
            reason: letter.reason.clone(),
        }
    }
}

impl std::fmt::Display for ListedLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} key {} ({} change(s), since {}): {}",
            self.pair,
            self.side,
            self.key,
            self.changes,
            self.failed_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.reason
        )
    }
}

/// The dead letters as the running agent last listed them, written with
/// the status snapshot: `dead-letters list` reads it while the service
/// holds the state directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LetterList {
    /// When it was written.
    pub written_at: DateTime<Utc>,
    /// How many there are.
    pub total: usize,
    /// The first [`LISTED_LETTERS`] of them.
    pub letters: Vec<ListedLetter>,
}

impl LetterList {
    /// Where the list lives in a state directory.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("dead-letters.json")
    }

    /// Writes the list atomically (write, then rename).
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = LetterList::path(state_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serializable"))?;
        std::fs::rename(tmp, path)
    }

    /// Reads the list, `None` when the agent never wrote one.
    pub fn read(state_dir: &Path) -> std::io::Result<Option<LetterList>> {
        match std::fs::read(LetterList::path(state_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
