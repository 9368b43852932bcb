//! `check`: every problem on one line with what to do about it.

use std::path::Path;
use std::process::ExitCode;

use tandem_connectors::connector::SCHEMA_VERSION;

use super::{describe_side, load, split_tables};
use crate::config::Side;
use crate::sync::describe_lookups;
use crate::sync::plan::{KeyMode, Plan};

pub(super) async fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let file = config.path.display().to_string();
    let fix_install = format!("run `tandem-agent install-triggers --config {file}`");
    let mut problems: Vec<String> = Vec::new();
    let mut described = Vec::new();
    let mut connectors = Vec::new();
    for side in Side::BOTH {
        match describe_side(&config, side).await {
            Ok((connector, tables)) => {
                connectors.push(Some(connector.clone()));
                let mut installed_tables = tables.clone();
                match split_tables(&config, side, connector.as_ref()).await {
                    Ok(extra) => installed_tables.extend(extra),
                    Err(e) => problems.push(format!("{e:#}")),
                }
                match connector.missing_privileges(&installed_tables).await {
                    Ok(lines) => problems.extend(lines.into_iter().map(|l| format!("{side}: {l}"))),
                    Err(e) => problems.push(format!("{side}: cannot read privileges: {e}")),
                }
                match connector.installation(&installed_tables).await {
                    Ok(installed) => match installed.version {
                        None => problems.push(format!("{side}: Tandem change table is not installed: {fix_install}")),
                        Some(v) if v != SCHEMA_VERSION => problems.push(format!(
                            "{side}: installed Tandem objects are version {v}, this agent needs {SCHEMA_VERSION}: {fix_install}"
                        )),
                        Some(_) => {
                            for table in installed.missing_triggers {
                                problems.push(format!("{side}: table {table} has no capture trigger: {fix_install}"));
                            }
                        }
                    },
                    Err(e) => problems.push(format!("{side}: cannot read the installed objects: {e}")),
                }
                described.push(Some(tables));
            }
            Err(e) => {
                problems.push(format!("{e:#}"));
                described.push(None);
                connectors.push(None);
            }
        }
    }
    if let [Some(source), Some(target)] = described.as_slice() {
        let schemas = source
            .iter()
            .cloned()
            .zip(target.iter().cloned())
            .map(|(s, t)| [s, t])
            .collect();
        let lookups =
            match describe_lookups(&config, |side| connectors[side.index()].as_deref()).await {
                Ok(lookups) => lookups,
                Err((side, e)) => {
                    problems.push(format!("{side}: {e}"));
                    Default::default()
                }
            };
        let (plan, plan_problems) = Plan::build(&config.tables, schemas, &lookups);
        problems.extend(plan_problems.into_iter().map(|p| {
            if p.fatal {
                format!("{file}: {}", p.message)
            } else {
                format!("warning: {file}: {}", p.message)
            }
        }));
        for pair in &plan.pairs {
            for origin in Side::BOTH {
                let dest = origin.other();
                if pair.directions[origin.index()].key_mode == KeyMode::Copied
                    && !pair.table(dest).primary_key.is_empty()
                {
                    let fix = connectors[dest.index()]
                        .as_ref()
                        .and_then(|c| c.generated_key_fix(pair.table(dest)))
                        .unwrap_or_else(|| {
                            "make the key an identity/auto_increment column".to_owned()
                        });
                    problems.push(format!(
                        "{file}: pair {}: {dest} table {} has no auto-generated primary key; new copies would reuse \
                         the {origin}'s key values and may collide: {fix}",
                        pair.name,
                        pair.table(dest).name
                    ));
                }
            }
        }
    }
    // The same problem can be seen from both directions.
    problems.dedup();
    if problems.is_empty() {
        println!(
            "ok: {} table pair(s), both sides reachable, capture installed",
            config.tables.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        println!("{problem}");
    }
    // Warnings are worth reading but do not stop the agent.
    if problems.iter().all(|p| p.starts_with("warning: ")) {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::FAILURE)
}
