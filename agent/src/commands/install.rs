//! `install-triggers` and `uninstall-triggers`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_connectors::Engine;

use super::{describe_side, load};
use crate::cli::SideArg;

pub(super) async fn install(
    path: &Path,
    side: Option<SideArg>,
    print: bool,
) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    // Every side is described and its script prepared before anything is
    // installed: an unknown table on one side leaves both untouched.
    let mut prepared = Vec::new();
    for side in SideArg::sides(side) {
        let (connector, tables) = describe_side(&config, side).await?;
        let script = connector
            .install_script(&tables)
            .await
            .with_context(|| format!("{side}: preparing the install script"))?;
        prepared.push((side, connector, tables, script));
    }
    for (side, connector, tables, script) in prepared {
        if print {
            print!(
                "{}",
                render(
                    connector.engine(),
                    &format!("{side}: {}", config.endpoint(side).engine),
                    &script
                )
            );
        } else {
            connector
                .run_script(&script)
                .await
                .with_context(|| format!("{side}: installing the change table and triggers"))?;
            eprintln!("{side}: capture installed on {} table(s)", tables.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn uninstall(path: &Path, side: Option<SideArg>) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let mut prepared = Vec::new();
    for side in SideArg::sides(side) {
        let (connector, tables) = describe_side(&config, side).await?;
        let script = connector
            .uninstall_script(&tables)
            .await
            .with_context(|| format!("{side}: preparing the uninstall script"))?;
        prepared.push((side, connector, script));
    }
    for (side, connector, script) in prepared {
        connector
            .run_script(&script)
            .await
            .with_context(|| format!("{side}: removing the change table and triggers"))?;
        eprintln!("{side}: Tandem objects removed");
    }
    Ok(ExitCode::SUCCESS)
}

/// The statements as a script the engine's command-line client runs.
fn render(engine: Engine, title: &str, statements: &[String]) -> String {
    let mut out = format!("-- Tandem capture objects for the {title} database\n");
    match engine {
        // Trigger bodies hold semicolons: the mysql client needs another
        // statement delimiter.
        Engine::Mysql => {
            out.push_str("DELIMITER ;;\n");
            for statement in statements {
                out.push_str(statement.trim_end().trim_end_matches(';'));
                out.push_str(";;\n");
            }
            out.push_str("DELIMITER ;\n");
        }
        // SQL Server's tools end a batch with GO.
        Engine::Mssql => {
            for statement in statements {
                out.push_str(statement.trim_end());
                out.push_str("\nGO\n");
            }
        }
        // An API gets nothing installed: the script is empty.
        Engine::Postgres | Engine::Sqlite | Engine::Http => {
            for statement in statements {
                let statement = statement.trim_end();
                out.push_str(statement);
                if !statement.ends_with(';') {
                    out.push(';');
                }
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_scripts_use_a_delimiter_the_client_understands() {
        let script = render(
            Engine::Mysql,
            "target: mysql",
            &["CREATE TRIGGER t BEGIN SELECT 1; END".into()],
        );
        assert!(
            script.contains("DELIMITER ;;\nCREATE TRIGGER t BEGIN SELECT 1; END;;\nDELIMITER ;\n"),
            "{script}"
        );
        let script = render(Engine::Postgres, "source: postgres", &["SELECT 1".into()]);
        assert!(script.ends_with("SELECT 1;\n"), "{script}");
    }
}
