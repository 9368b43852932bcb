//! `dead-letters list|retry|discard`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;

use super::load;
use crate::cli::DeadLetterAction;
use crate::state::{NewEntry, State, StateBatch};
use crate::store::StoreError;
use crate::sync::report::{LetterList, ListedLetter};

/// One line per dead letter; a last line when only some are listed.
fn print_letters(total: usize, letters: &[ListedLetter]) {
    if total == 0 {
        println!("no dead letters");
    }
    for letter in letters {
        println!("{letter}");
    }
    if total > letters.len() {
        println!("... and {} more", total - letters.len());
    }
}

pub(super) async fn dead_letters(
    path: &Path,
    action: DeadLetterAction,
) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let state = match State::open(&config.state_dir) {
        Ok(state) => state,
        // The service holds the state: its own list, as of its last pass.
        Err(StoreError::Locked(_)) if action == DeadLetterAction::List => {
            let listed = LetterList::read(&config.state_dir)?;
            let Some(listed) = listed else {
                println!("no dead letters (the running agent has not listed any yet)");
                return Ok(ExitCode::SUCCESS);
            };
            eprintln!(
                "the service is running: its list as of {}",
                listed.written_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            print_letters(listed.total, &listed.letters);
            return Ok(ExitCode::SUCCESS);
        }
        Err(StoreError::Locked(dir)) => anyhow::bail!(
            "the service runs with state directory {dir}: stop it before dead-letters \
             retry or discard (dead-letters list works beside it)"
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "opening the state in {}",
                config.state_dir.display()
            )))
        }
    };
    let letters = state.dead_letters()?;
    match action {
        DeadLetterAction::List => {
            let listed: Vec<ListedLetter> = letters.iter().map(ListedLetter::from).collect();
            print_letters(listed.len(), &listed);
        }
        DeadLetterAction::Retry => {
            // The record is read again where it changed: the stored values
            // may be older than what the agent wrote since (a later change
            // from the other side), and re-reading also brings its latest
            // change. Nothing is queued unless every side answers.
            let mut queued = Vec::new();
            if !letters.is_empty() {
                let integration = crate::sync::Integration::connect(config.clone()).await?;
                integration.ensure_runnable()?;
                for letter in &letters {
                    let side = letter.side;
                    let Some(pair) = integration
                        .plan
                        .pairs
                        .iter()
                        .find(|p| p.name == letter.pair)
                    else {
                        println!(
                            "{} key {}: pair no longer configured; discard it instead",
                            letter.pair, letter.key
                        );
                        continue;
                    };
                    // A create whose outcome was unknown held it: let go,
                    // as the operator asks.
                    integration
                        .endpoint(side.other())
                        .release_creates(&letter.pair, &[letter.key.encode()])
                        .await
                        .with_context(|| format!("{}: letting go of its create", letter.pair))?;
                    let connector = integration.endpoint(side);
                    let table = pair.table(side);
                    let mut rows = connector
                        .fetch_rows(table, std::slice::from_ref(&letter.key))
                        .await
                        .with_context(|| {
                            format!("{side}: reading {} {}", table.name, letter.key)
                        })?;
                    crate::mapping::split::join_rows(pair, side, connector.as_ref(), &mut rows)
                        .await
                        .with_context(|| {
                            format!(
                                "{side}: reading what {} {} is joined with",
                                table.name, letter.key
                            )
                        })?;
                    queued.push((letter.clone(), rows.into_iter().next()));
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
