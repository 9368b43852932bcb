//! `tandem-agent`: parses the command line and hands off to the library.

use std::process::ExitCode;

use clap::Parser;
use tandem_agent::cli::Cli;
use tandem_agent::commands;

// The sync loop allocates and frees many small buffers (rows, keys, store
// entries); glibc's allocator spent a third of the agent's CPU time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers (`mi_option_e` in the mimalloc.h vendored by
/// libmimalloc-sys, v3; retired options keep their places, so numbers do
/// not move).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// With its defaults mimalloc keeps memory it no longer uses for a while
/// and commits whole arenas: the agent's peak resident memory doubled. With
/// these it returns memory at once, for no measurable loss of speed.
// The one unsafe call of the workspace (which denies unsafe code).
#[allow(unsafe_code)]
fn keep_memory_small() {
    // SAFETY: plain integer options, set before any thread is started.
    unsafe {
        mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

fn main() -> ExitCode {
    keep_memory_small();
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
            // One line: the context chain, outermost first.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
