//! The operator commands behind the CLI: `serve`, `db init|check`, `wal
//! status|inspect|tail|verify|replay`, `dlq list|show|replay|purge`, `config show`.
//!
//! Each command writes its report to the `out` it is given (stdout in the binary) and returns
//! an [`Outcome`]; failures that stop a command are typed errors, gathered in [`RunError`],
//! whose [`RunError::exit_code`] is the **one place** that decides the process's exit code
//! (the codes are listed in [`crate::cli::exit`]). Every `wal` command is read-only and takes
//! no lock, so it can run beside the daemon; the `dlq` commands need the daemon stopped.
//!
//! # Output
//!
//! Text by default. With `--json`, a command that reports one thing prints **one JSON
//! document** (`wal status`, `wal verify`, `wal replay`, `dlq show`, `dlq replay`, `dlq purge`,
//! `db check`, `config show`); a command that prints a stream of records prints **JSON lines**,
//! one object per record (`wal inspect`, `wal tail`, `dlq list`). Progress and summaries of
//! long operations go to stderr (see [`progress`]), never into the JSON.

use std::io;
use std::path::PathBuf;

use crate::cli::exit;
use crate::config::ConfigError;
use crate::logging::LogError;
use crate::publish::replay::ReplayError;

pub mod config_show;
pub mod db;
pub mod dlq;
pub mod progress;
pub mod serve;
pub mod wal;

pub use run::execute;

mod run;

/// How a command that ran to completion judged what it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong.
    Clean,
    /// The data has problems (corruption found by `verify`, undecodable records seen by
    /// `inspect`, an unusable table seen by `db check`, dead letters that failed again in
    /// `dlq replay`); they have been reported in the output.
    ProblemsFound,
}

impl Outcome {
    /// The process exit code for this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Clean => exit::OK,
            Outcome::ProblemsFound => exit::PROBLEMS,
        }
    }
}

/// Why a command of the binary failed. [`RunError::exit_code`] maps every variant (and every
/// variant of the errors it wraps) to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Logging could not be set up.
    #[error("cannot set up logging: {0}")]
    Log(#[from] LogError),
    /// A `wal status|inspect|tail|verify` failure.
    #[error(transparent)]
    Wal(#[from] CommandError),
    /// A `dlq` failure.
    #[error(transparent)]
    Dlq(#[from] dlq::DlqError),
    /// A `db` failure.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// A `wal replay` or `dlq replay` failure.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// `serve` stopped with an error (a listener could not bind, a log could not be opened, …).
    #[error(transparent)]
    Serve(#[from] crate::server::ServerError),
    /// Writing the report failed, or the async runtime could not start.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The I/O error.
        source: io::Error,
    },
}

impl RunError {
    /// The exit code: [`exit::USAGE`] for an unusable configuration or an argument that names
    /// nothing (an unknown partition, reason, entry id, server version, an empty range),
    /// [`exit::FAILURE`] for everything else.
    pub fn exit_code(&self) -> u8 {
        let usage = match self {
            RunError::Config(_) => true,
            RunError::Wal(e) => matches!(e, CommandError::NoSuchPartition { .. }),
            RunError::Dlq(e) => matches!(
                e,
                dlq::DlqError::UnknownReason(_)
                    | dlq::DlqError::BadId(_)
                    | dlq::DlqError::NothingSelected
                    | dlq::DlqError::ClickHouseUrlWithDaemon(_)
            ),
            RunError::Db(e) => matches!(e, db::DbError::BadVersion(_)),
            RunError::Replay(e) => matches!(
                e,
                ReplayError::NoSuchPartition { .. } | ReplayError::EmptyRange { .. }
            ),
            RunError::Log(_) | RunError::Serve(_) | RunError::Io { .. } => false,
        };
        if usage {
            exit::USAGE
        } else {
            exit::FAILURE
        }
    }

    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Config(_) => "config",
            RunError::Log(e) => e.code(),
            RunError::Wal(e) => e.code(),
            RunError::Dlq(e) => e.code(),
            RunError::Db(e) => e.code(),
            RunError::Replay(e) => e.code(),
            RunError::Serve(_) => "serve",
            RunError::Io { .. } => "io",
        }
    }

    /// Whether the command failed only because the reader of its output went away
    /// (`sluice wal inspect | head`): nothing failed that the user should hear about.
    pub fn is_broken_pipe(&self) -> bool {
        let broken = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
        match self {
            RunError::Io { source, .. } => broken(source),
            RunError::Wal(CommandError::Output(e))
            | RunError::Dlq(dlq::DlqError::Output(e))
            | RunError::Db(db::DbError::Output(e))
            | RunError::Replay(ReplayError::Output(e)) => broken(e),
            _ => false,
        }
    }

    /// A failure to write the report.
    pub fn output(source: io::Error) -> RunError {
        RunError::Io {
            context: "cannot write output",
            source,
        }
    }
}

/// Why a command could not run to completion.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The data directory's partitions could not be listed.
    #[error("cannot list the partitions under {path}: {source}")]
    ListPartitions {
        /// The data directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// `--partition N` names a partition that is not on disk.
    #[error("partition {partition} does not exist under {data_dir} (found: {found:?})")]
    NoSuchPartition {
        /// The partition asked for.
        partition: usize,
        /// The data directory.
        data_dir: PathBuf,
        /// The partitions that exist.
        found: Vec<usize>,
    },
    /// A partition's log could not be opened or read.
    #[error("partition {partition} ({path}): {source}")]
    Wal {
        /// The partition.
        partition: usize,
        /// Its directory.
        path: PathBuf,
        /// The log's error.
        source: sluice_wal::Error,
    },
    /// One or more partitions could not be read; each was reported in the output.
    #[error("{count} partition(s) could not be read")]
    PartitionsFailed {
        /// How many.
        count: usize,
    },
    /// Writing the report failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

impl CommandError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::ListPartitions { .. } => "list_partitions",
            CommandError::NoSuchPartition { .. } => "no_such_partition",
            CommandError::Wal { source, .. } => source.code(),
            CommandError::PartitionsFailed { .. } => "partitions_failed",
            CommandError::Output(_) => "output",
        }
    }
}
