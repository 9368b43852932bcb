//! One module per subcommand; each returns the process exit code.

mod check;
mod dead_letters;
mod init;
mod install;
mod plan;
mod reconcile;
mod run;
mod status;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::CommandFactory;
use tandem_connectors::{Connector, TableSchema};
use tracing_subscriber::EnvFilter;

use crate::cli::Command;
use crate::config::{Config, Side};

/// Exit status of `run --once` when the sides are not in step.
pub const EXIT_NOT_IN_STEP: u8 = 3;

/// Runs one subcommand.
pub async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::InstallTriggers {
            config,
            side,
            print,
        } => install::install(&config, side, print).await,
        Command::UninstallTriggers { config, side } => install::uninstall(&config, side).await,
        Command::Run { config, once } => run::run(&config, once).await,
        Command::Status { config, json } => status::status(&config, json).await,
        Command::Check { config } => check::check(&config).await,
        Command::Plan { config, json } => plan::plan(&config, json).await,
        Command::Init {
            source,
            target,
            tables,
            state_dir,
            output,
        } => {
            init::init(init::InitArgs {
                source,
                target,
                tables,
                state_dir,
                output,
            })
            .await
        }
        Command::DeadLetters { config, action } => {
            dead_letters::dead_letters(&config, action).await
        }
        Command::Reconcile { config, repair } => reconcile::reconcile(&config, repair).await,
        Command::RebuildState { config } => reconcile::rebuild_state(&config).await,
        Command::Completions { shell } => {
            let mut command = crate::cli::Cli::command();
            clap_complete::generate(shell, &mut command, "tandem-agent", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { markdown: false } => {
            clap_mangen::Man::new(crate::cli::Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { markdown: true } => {
            print!("{}", crate::cli::markdown::reference());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs to stderr. The format: JSON lines when `TANDEM_LOG_FORMAT=json`,
/// human-readable when `TANDEM_LOG_FORMAT=text`, otherwise human-readable
/// (in colour) on a terminal and JSON lines elsewhere (journald, a log
/// shipper, a pipe). The level comes from `RUST_LOG` (default info).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let json = match std::env::var("TANDEM_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::observe::progress::StderrAboveBars)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(terminal).init();
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// Connects to one side and finds and describes its configured tables and
/// the extra tables rows are split into: every table missing is named (on
/// a line of its own), and none is given back then.
async fn describe_side(
    config: &Config,
    side: Side,
) -> anyhow::Result<(Arc<dyn Connector>, Vec<TableSchema>)> {
    let endpoint = config.endpoint(side);
    let connector = tandem_connectors::connect(endpoint)
        .await
        .with_context(|| format!("{side} ({})", endpoint.engine))?;
    let mut problems = Vec::new();
    let (tables, extra) =
        crate::sync::catalog::describe_side(config, side, connector.as_ref(), &mut problems)
            .await
            .with_context(|| format!("{side} ({})", endpoint.engine))?;
    crate::sync::catalog::shared_tables(config, side, &tables, &mut problems);
    crate::sync::refuse(config, &problems)?;
    let mut described: Vec<TableSchema> = tables.into_iter().flatten().collect();
    // The tables rows are split into, in config order.
    for split in config.tables.iter().flat_map(|p| &p.splits) {
        let Some(table) = extra.get(&(side, split.table.clone())) else {
            continue;
        };
        if split.side == side && !described.iter().any(|t| t.name == table.name) {
            described.push(table.clone());
        }
    }
    Ok((connector, described))
}
