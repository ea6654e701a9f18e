//! Dispatch: runs one parsed command with its configuration, its report on stdout.

use std::io::Write;

use super::progress::ProgressMode;
use super::{config_show, db, dlq, serve, wal, Outcome, RunError};
use crate::cli::{Command, ConfigCommand, DbCommand, DlqCommand, WalCommand};
use crate::config::load::{Loaded, Origin};
use crate::config::Config;

/// Runs `command` with the loaded configuration: validates it (`config show` prints even an
/// invalid one first, then reports what is wrong), starts logging, and runs the command.
/// `origin` is where `loaded` came from: `serve` reads it again on SIGHUP.
pub fn execute(command: &Command, loaded: &Loaded, origin: &Origin) -> Result<Outcome, RunError> {
    let config = &loaded.config;
    match command {
        Command::Config(ConfigCommand::Show(args)) => {
            with_stdout(|out| {
                config_show::show(loaded, args.json, out).map_err(RunError::output)?;
                Ok(Outcome::Clean)
            })?;
            config.validate()?;
            Ok(Outcome::Clean)
        }
        Command::Serve(_) => {
            ready(config)?;
            serve::run(config.clone(), origin.clone()).map(|()| Outcome::Clean)
        }
        Command::Wal(command) => {
            ready(config)?;
            with_stdout(|out| run_wal(command, config, out))
        }
        Command::Db(command) => {
            ready(config)?;
            with_stdout(|out| run_db(command, config, out))
        }
        Command::Dlq(command) => {
            ready(config)?;
            with_stdout(|out| run_dlq(command, config, out))
        }
    }
}

/// Validates the configuration and starts logging with it.
fn ready(config: &Config) -> Result<(), RunError> {
    config.validate()?;
    crate::logging::init(&config.log)?;
    Ok(())
}

/// Runs `f` with a locked stdout and flushes it, also after a failure (so what was reported
/// before it is not lost).
fn with_stdout(
    f: impl FnOnce(&mut dyn Write) -> Result<Outcome, RunError>,
) -> Result<Outcome, RunError> {
    let mut out = std::io::stdout().lock();
    let result = f(&mut out);
    let flushed = out.flush().map_err(RunError::output);
    let outcome = result?;
    flushed?;
    Ok(outcome)
}

fn run_wal(
    command: &WalCommand,
    config: &Config,
    out: &mut dyn Write,
) -> Result<Outcome, RunError> {
    Ok(match command {
        WalCommand::Status(a) => wal::status(config, a.json, out)?,
        WalCommand::Inspect(a) => {
            let opts = wal::InspectOptions {
                partition: a.partition,
                from: a.from,
                limit: a.limit,
                json: a.json,
            };
            wal::inspect(config, &opts, out)?
        }
        WalCommand::Tail(a) => {
            let opts = wal::TailOptions {
                partition: a.partition,
                lines: a.lines,
                count: a.count,
                interval: a.interval,
                json: a.json,
            };
            wal::tail(config, &opts, out)?
        }
        WalCommand::Verify(a) => wal::verify(config, a.json, ProgressMode::detect(), out)?,
        WalCommand::Replay(a) => {
            let opts = wal::ReplayOptions {
                from: a.from,
                to: a.to,
                partition: a.partition,
                json: a.json,
                progress: ProgressMode::detect(),
            };
            wal::replay(config, &opts, out)?
        }
    })
}

fn run_db(command: &DbCommand, config: &Config, out: &mut dyn Write) -> Result<Outcome, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| RunError::Io {
            context: "cannot start the async runtime",
            source,
        })?;
    Ok(runtime.block_on(db::run(command, config, out))?)
}

fn run_dlq(
    command: &DlqCommand,
    config: &Config,
    out: &mut dyn Write,
) -> Result<Outcome, RunError> {
    let store = dlq::open(config)?;
    Ok(match command {
        DlqCommand::List(a) => {
            let filter = dlq::filter(a.reason.as_deref(), None, &[])?;
            dlq::list(&store, &filter, a.json, out)?;
            Outcome::Clean
        }
        DlqCommand::Show(a) => {
            dlq::show(&store, &a.id, a.json, out)?;
            Outcome::Clean
        }
        DlqCommand::Replay(a) => {
            let filter = dlq::filter(a.reason.as_deref(), None, &a.ids)?;
            if let (Some(url), dlq::Target::Daemon(_)) = (&a.clickhouse_url, &store) {
                return Err(dlq::DlqError::ClickHouseUrlWithDaemon(url.clone()).into());
            }
            let summary =
                dlq::replay(config, &store, &filter, a.json, ProgressMode::detect(), out)?;
            if summary.failed_again > 0 {
                Outcome::ProblemsFound
            } else {
                Outcome::Clean
            }
        }
        DlqCommand::Purge(a) => {
            let filter = dlq::filter(a.reason.as_deref(), a.older_than, &a.ids)?;
            dlq::purge(&store, &filter, a.json, out)?;
            Outcome::Clean
        }
    })
}
