//! `check`: every problem on one line with what to do about it. It runs
//! the checks `run` runs before it starts (`Integration::connect`, then
//! `Integration::preflight`), so that what `check` accepts, `run` starts
//! with, and what it refuses, `run` refuses.

use std::path::Path;
use std::process::ExitCode;

use super::load;
use crate::sync::plan::PlanProblem;
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
    let preflight = match integration.preflight().await {
        Ok(preflight) => preflight,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut lines: Vec<String> = preflight.database.clone();
    let mapping: Vec<&PlanProblem> = integration.problems.iter().chain(&preflight.keys).collect();
    // Errors before warnings; each in the order found.
    for problem in mapping.iter().filter(|p| p.fatal) {
        lines.push(format!("{file}: {}", problem.message));
    }
    for problem in mapping.iter().filter(|p| !p.fatal) {
        lines.push(format!("warning: {file}: {}", problem.message));
    }
    // The same problem can be seen from both directions.
    let mut seen = std::collections::HashSet::new();
    lines.retain(|line| seen.insert(line.clone()));
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
