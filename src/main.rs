//! The `sluice` binary: parse the command line, load and validate the configuration, start
//! logging, run the command, and turn the result into an exit code (see [`sluice::cli`] for
//! the codes). Everything else lives in the library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sluice::cli::{exit, Cli, Command, ConfigCommand, DbCommand, DlqCommand, WalCommand};
use sluice::commands::{self, Outcome};
use sluice::config::{self, Config, ConfigError, LogFormat};
use tokio::signal::unix::{signal, SignalKind};

/// Why the command failed, which decides the exit code.
enum Failure {
    /// The configuration is unusable: exit 2.
    Config(ConfigError),
    /// Anything else: exit 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let cli = Cli::parse();
    match run(cli) {
        Ok(Outcome::Clean) => ExitCode::from(exit::OK),
        Ok(Outcome::ProblemsFound) => {
            eprintln!("sluice: problems found (listed above)");
            ExitCode::from(exit::PROBLEMS)
        }
        Err(Failure::Config(e)) => {
            eprintln!("sluice: configuration error: {e}");
            ExitCode::from(exit::USAGE)
        }
        // The reader of our output went away (`sluice wal inspect | head`): nothing failed
        // that the user should hear about.
        Err(Failure::Runtime(e)) if is_broken_pipe(&e) => ExitCode::from(exit::OK),
        Err(Failure::Runtime(e)) => {
            eprintln!("sluice: error: {e:#}");
            ExitCode::from(exit::RUNTIME)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<Outcome, Failure> {
    let loaded = config::load(cli.config.as_deref(), &cli.overrides()).map_err(Failure::Config)?;
    match &cli.command {
        // Prints even an out-of-bounds configuration, then reports what is wrong.
        Command::Config(ConfigCommand::Show(args)) => {
            let mut out = std::io::stdout().lock();
            commands::config_show::show(&loaded, args.json, &mut out)
                .and_then(|()| out.flush())
                .context("cannot write output")?;
            loaded.config.validate().map_err(Failure::Config)?;
            Ok(Outcome::Clean)
        }
        Command::Serve(_) => {
            let config = ready(loaded.config)?;
            serve(config)?;
            Ok(Outcome::Clean)
        }
        Command::Dlq(command) => {
            let config = ready(loaded.config)?;
            Ok(dlq(command, &config)?)
        }
        Command::Wal(command) => {
            let config = ready(loaded.config)?;
            Ok(wal(command, &config)?)
        }
        Command::Db(command) => {
            let config = ready(loaded.config)?;
            Ok(db(command, &config)?)
        }
    }
}

/// Validates the configuration and starts logging with it.
fn ready(config: Config) -> Result<Config, Failure> {
    config.validate().map_err(Failure::Config)?;
    init_logging(&config);
    Ok(config)
}

/// Runs a `wal` subcommand with its report on stdout.
fn wal(command: &WalCommand, config: &Config) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let outcome = match command {
        WalCommand::Status(a) => commands::wal::status(config, a.json, &mut out),
        WalCommand::Inspect(a) => {
            let opts = commands::wal::InspectOptions {
                partition: a.partition,
                from: a.from,
                limit: a.limit,
                json: a.json,
            };
            commands::wal::inspect(config, &opts, &mut out)
        }
        WalCommand::Verify(_) => commands::wal::verify(config, &mut out),
        WalCommand::Replay(a) => {
            let opts = commands::wal::ReplayOptions {
                from: a.from,
                to: a.to,
                partition: a.partition,
                progress: std::io::stderr().is_terminal(),
            };
            commands::wal::replay(config, &opts, &mut out)
                .map_err(|e| anyhow::Error::new(e).context("wal replay"))?;
            Ok(Outcome::Clean)
        }
    };
    out.flush().context("cannot write output")?;
    Ok(outcome?)
}

/// Runs a `db` subcommand with its report on stdout.
fn db(command: &DbCommand, config: &Config) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut out = std::io::stdout().lock();
    let outcome = runtime.block_on(commands::db::run(command, config, &mut out));
    out.flush().context("cannot write output")?;
    Ok(outcome?)
}

/// Runs a `dlq` subcommand (the daemon must be stopped: the store admits one process).
fn dlq(command: &DlqCommand, config: &Config) -> anyhow::Result<Outcome> {
    use commands::dlq;
    let mut out = std::io::stdout().lock();
    let store = dlq::open(config)?;
    match command {
        DlqCommand::List(a) => {
            let filter = dlq::filter(a.reason.as_deref(), None, &[])?;
            dlq::list(&store, &filter, a.json, &mut out)?;
        }
        DlqCommand::Show(a) => dlq::show(&store, &a.id, a.json, &mut out)?,
        DlqCommand::Replay(a) => {
            let filter = dlq::filter(a.reason.as_deref(), None, &a.ids)?;
            dlq::replay(config, &store, &filter, &mut out)?;
        }
        DlqCommand::Purge(a) => {
            let filter = dlq::filter(a.reason.as_deref(), a.older_than, &a.ids)?;
            dlq::purge(&store, &filter, &mut out)?;
        }
    }
    out.flush().context("cannot write output")?;
    Ok(Outcome::Clean)
}

/// Logs go to stderr so command output on stdout stays machine-readable. `RUST_LOG`, when set
/// and valid, overrides `log.level`.
fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the collector on a multi-thread runtime until SIGTERM or SIGINT, then lets
/// `server::run` drain and return.
fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-rt")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
        let shutdown = async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting down");
        };
        sluice::server::run(config, shutdown).await
    })
}
