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
/// `malloc_consolidate`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_transparent_huge_pages();
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

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` is set
/// (then that choice stands).
///
/// mimalloc asks for huge pages on the arenas it reserves (`madvise(MADV_HUGEPAGE)`, honoured
/// when the system's THP mode is `madvise` or `always`) and returns freed memory to the system
/// in 64 KiB steps. A huge page that was partly returned is faulted back in whole, zeroed, for
/// the next small allocation in it: while draining, half of sluice's resident memory was
/// such pages (peak RSS 160 MiB with them, 83 MiB without, at the same CPU per event).
/// Ordinary pages suit a process whose memory is many short-lived
/// batches. The flag is the process's (inherited by children) and a failure only costs memory.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}

fn run(cli: &Cli) -> Result<Outcome, RunError> {
    let origin = config::load::Origin {
        file: cli.config.clone(),
        overrides: cli.overrides(),
    };
    let loaded = origin.load()?;
    commands::execute(&cli.command, &loaded, &origin)
}
