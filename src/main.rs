//! The `sluice` binary: parse the command line, load the configuration, run the command (which
//! validates the configuration and starts logging), and turn the result into an exit code.
//! Everything else lives in the library; the exit codes are decided in one place,
//! [`sluice::commands::RunError::exit_code`] and [`sluice::commands::Outcome::exit_code`]
//! (listed in [`sluice::cli`]).

use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{exit, Cli};
use sluice::commands::{self, Outcome, RunError};
use sluice::config;

/// mimalloc rather than glibc's malloc: the publisher allocates an event's ~100 strings on its
/// forming thread and frees them on a delivery lane, which glibc pays for in
/// `malloc_consolidate` (BENCHMARKS.md, "CPU per event (criterion)").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let cli = Cli::parse();
    let code = match run(&cli) {
        Ok(Outcome::Clean) => exit::OK,
        Ok(outcome @ Outcome::ProblemsFound) => {
            eprintln!("sluice: problems found (listed above)");
            outcome.exit_code()
        }
        // The reader of our output went away (`sluice wal inspect | head`): nothing failed
        // that the user should hear about.
        Err(e) if e.is_broken_pipe() => exit::OK,
        Err(e) => {
            eprintln!("sluice: error: {e}");
            e.exit_code()
        }
    };
    ExitCode::from(code)
}

fn run(cli: &Cli) -> Result<Outcome, RunError> {
    let origin = config::Origin {
        file: cli.config.clone(),
        overrides: cli.overrides(),
    };
    let loaded = origin.load()?;
    commands::execute(&cli.command, &loaded, &origin)
}
