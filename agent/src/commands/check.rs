//! `check`: every problem on one line with what to do about it. It runs
//! the checks `run` runs before it starts (`Integration::connect`, then
//! `Integration::validate`), so that what `check` accepts, `run` starts
//! with, and what it refuses, `run` refuses.

use std::path::Path;
use std::process::ExitCode;

use super::load;
use crate::sync::Integration;

pub(super) async fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let file = config.path.display().to_string();
    let pairs = config.tables.len();
    let integration = match Integration::connect(config).await {
        Ok(integration) => integration,
        Err(e) => {
            for line in e.to_string().lines() {
                println!("{line}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let problems = match integration.validate().await {
        Ok(problems) => problems,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match (p.of_database, p.fatal) {
            (true, _) => p.message.clone(),
            (false, true) => format!("{file}: {}", p.message),
            (false, false) => format!("warning: {file}: {}", p.message),
        })
        .collect();
    if lines.is_empty() {
        println!("ok: {pairs} table pair(s), both sides reachable, capture installed");
        return Ok(ExitCode::SUCCESS);
    }
    for line in &lines {
        println!("{line}");
    }
    // Warnings are worth reading but do not stop the agent.
    if lines.iter().all(|p| p.starts_with("warning: ")) {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::FAILURE)
}
