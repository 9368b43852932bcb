//! `dead-letters list|retry|discard`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;

use super::load;
use crate::cli::DeadLetterAction;
use crate::state::{NewEntry, State, StateBatch};

pub(super) async fn dead_letters(
    path: &Path,
    action: DeadLetterAction,
) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let state = State::open(&config.state_dir)
        .with_context(|| format!("opening the state in {}", config.state_dir.display()))?;
    let letters = state.dead_letters()?;
    match action {
        DeadLetterAction::List => {
            if letters.is_empty() {
                println!("no dead letters");
            }
            for letter in &letters {
                println!(
                    "{} {} key {} ({} change(s), since {}): {}",
                    letter.pair,
                    letter.side,
                    letter.key,
                    letter.changes,
                    letter.failed_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    letter.reason
                );
            }
        }
        DeadLetterAction::Retry => {
            for letter in &letters {
                let mut batch = StateBatch::default();
                batch.remove_dead_letter(letter);
                state.append_log_with(
                    vec![NewEntry {
                        side: letter.side,
                        pair: letter.pair.clone(),
                        key: letter.key.clone(),
                        row: letter.row.clone(),
                        captured_at: Utc::now(),
                    }],
                    batch,
                )?;
            }
            println!(
                "{} record(s) queued again; the next pass applies them",
                letters.len()
            );
        }
        DeadLetterAction::Discard => {
            let mut batch = StateBatch::default();
            for letter in &letters {
                batch.remove_dead_letter(letter);
            }
            state.commit(batch, true)?;
            println!("{} dead letter(s) discarded", letters.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
