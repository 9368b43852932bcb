//! The command line, as clap definitions.

pub mod markdown;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Side;

/// Keeps two databases in step, in both directions, continuously.
#[derive(Debug, Parser)]
#[command(name = "tandem-agent", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Which side(s) a command acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SideArg {
    /// The `[source]` endpoint.
    Source,
    /// The `[target]` endpoint.
    Target,
}

impl SideArg {
    /// The sides selected by an optional `--side`.
    pub fn sides(side: Option<SideArg>) -> Vec<Side> {
        match side {
            None => Side::BOTH.to_vec(),
            Some(SideArg::Source) => vec![Side::Source],
            Some(SideArg::Target) => vec![Side::Target],
        }
    }
}

/// What to do with dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeadLetterAction {
    /// Show them.
    List,
    /// Put them back in the change log to be applied again.
    Retry,
    /// Forget them (their changes are not applied).
    Discard,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install (or bring up to date) the change table, mapping table and capture triggers.
    InstallTriggers {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this side (default: both).
        #[arg(long, value_enum)]
        side: Option<SideArg>,
        /// Print the SQL instead of running it.
        #[arg(long)]
        print: bool,
    },
    /// Remove everything install-triggers created.
    UninstallTriggers {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this side (default: both).
        #[arg(long, value_enum)]
        side: Option<SideArg>,
    },
    /// Sync continuously until SIGTERM or SIGINT.
    Run {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// One full pass, then exit: 0 when both sides are in step.
        #[arg(long)]
        once: bool,
    },
    /// Show per table pair what waits, what was applied, conflicts, dead letters, lag.
    Status {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate the config, connect to both sides and report every problem.
    Check {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write a config for two existing databases: tables paired by name,
    /// with comments for what could not be paired or matched.
    Init {
        /// The source database's URL (a password in it is written as
        /// ${TANDEM_SOURCE_PASSWORD}; or give it as ${VAR} yourself).
        #[arg(long)]
        source: String,
        /// The target database's URL.
        #[arg(long)]
        target: String,
        /// Only these source tables, comma-separated (default: every table).
        #[arg(long, value_delimiter = ',')]
        tables: Option<Vec<String>>,
        /// The state directory the config names (default:
        /// /var/lib/tandem/<name of the output file>).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Write the config here (default: print it); an existing file is
        /// not overwritten.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Show the effective mapping of every pair and direction: each column
    /// written and where its value comes from, keys, filters, splits, and
    /// the mapping's problems (exit 1 when one stops the sync).
    Plan {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compare every linked record on both sides: exit 0 in step, 1 with
    /// differences (listed), 2 on error.
    Reconcile {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Bring what differs back in step (the source wins).
        #[arg(long)]
        repair: bool,
    },
    /// Rebuild the ID map from the mapping tables in the databases (after
    /// the state directory was lost or is corrupt).
    RebuildState {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print shell completions (bash, zsh, fish, ...) for tandem-agent.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) for tandem-agent.
    Man {
        /// Print the command-line reference as Markdown instead (docs/cli.md).
        #[arg(long, hide = true)]
        markdown: bool,
    },
    /// List, retry or discard records that could not be applied.
    DeadLetters {
        /// The integration's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// What to do.
        #[arg(value_enum)]
        action: DeadLetterAction,
    },
}
