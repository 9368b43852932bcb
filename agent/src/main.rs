//! `tandem-agent`: parses the command line and hands off to the library.

use std::process::ExitCode;

use clap::Parser;
use tandem_agent::cli::Cli;
use tandem_agent::commands;

// glibc's malloc took up to half of the agent's CPU time (consolidating
// freed chunks of rows and store nodes); jemalloc applies a backlog in
// about 60% of the time at about the same peak memory. It runs with one
// arena (see .cargo/config.toml).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::execute(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // One line a problem: the context chain, outermost first.
            for line in format!("{e:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
