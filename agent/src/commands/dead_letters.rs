//! `dead-letters list|retry|discard`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;

use super::{describe_side, load};
use crate::cli::DeadLetterAction;
use crate::config::Side;
use crate::state::{DeadLetter, NewEntry, State, StateBatch};

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
            // The record is read again where it changed: the stored values
            // may be older than what the agent wrote since (a later change
            // from the other side), and re-reading also brings its latest
            // change. Nothing is queued unless every side answers.
            let mut queued = Vec::new();
            for side in Side::BOTH {
                let mine: Vec<&DeadLetter> = letters.iter().filter(|l| l.side == side).collect();
                if mine.is_empty() {
                    continue;
                }
                let (connector, tables) = describe_side(&config, side).await?;
                for letter in mine {
                    let Some(index) = config.tables.iter().position(|p| p.name == letter.pair)
                    else {
                        println!(
                            "{} key {}: pair no longer configured; discard it instead",
                            letter.pair, letter.key
                        );
                        continue;
                    };
                    let table = &tables[index];
                    let row = connector
                        .fetch_rows(table, std::slice::from_ref(&letter.key))
                        .await
                        .with_context(|| format!("{side}: reading {} {}", table.name, letter.key))?
                        .into_iter()
                        .next();
                    queued.push((letter.clone(), row));
                }
            }
            for (letter, row) in &queued {
                let mut batch = StateBatch::default();
                batch.remove_dead_letter(letter);
                state.append_log_with(
                    vec![NewEntry {
                        side: letter.side,
                        pair: letter.pair.clone(),
                        key: letter.key.clone(),
                        row: row.clone(),
                        captured_at: Utc::now(),
                    }],
                    batch,
                )?;
            }
            println!(
                "{} record(s) queued again; the next pass applies them",
                queued.len()
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
