//! The operator commands behind the CLI (`wal status|inspect|verify`, `config show`).
//!
//! Each command writes its report to the `out` it is given (stdout in the binary) and returns
//! an [`Outcome`]; failures that stop a command are [`CommandError`]s. The binary maps both to
//! exit codes (see [`crate::cli`]). Every `wal` command is read-only and takes no lock, so it
//! can run beside the daemon.

use std::io;
use std::path::PathBuf;

pub mod config_show;
pub mod db;
pub mod dlq;
pub mod wal;

/// How a command that ran to completion judged what it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong.
    Clean,
    /// The data has problems (corruption found by `verify`, undecodable records seen by
    /// `inspect`); they have been reported in the output.
    ProblemsFound,
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
