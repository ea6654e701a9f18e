//! The one error type of the log. Each variant tells the caller what to do next.

use std::io;
use std::path::PathBuf;

use crate::{Lsn, SegmentId};

/// Result alias for the log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log.
///
/// | Variant | What the caller should do |
/// |---|---|
/// | [`Error::Full`] | back off: the consumer must confirm records before space frees up (HTTP: 503 + `Retry-After`) |
/// | [`Error::Busy`] | back off briefly: the writer's queue is full |
/// | [`Error::Poisoned`] | stop writing: a write or sync failed and nothing after it can be trusted; restart the process after fixing the disk |
/// | [`Error::RecordTooLarge`] | reject the input: it can never fit |
/// | [`Error::Corruption`] | operator action: the named segment and offset hold bytes that fail their checksum where the log must be intact |
/// | [`Error::Io`] | report; the operation did not happen |
/// | [`Error::Locked`] | another process owns this log |
/// | [`Error::Closed`] | the log is shutting down |
/// | [`Error::InvalidConfig`] | fix the named configuration value |
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every segment holds unconfirmed records and the policy is to reject.
    #[error("the log is full: {capacity_bytes} bytes of unconfirmed records")]
    Full {
        /// The configured byte budget.
        capacity_bytes: u64,
    },
    /// The writer's submission queue is full.
    #[error("the log writer's queue is full ({capacity} pending appends)")]
    Busy {
        /// The queue's configured capacity.
        capacity: usize,
    },
    /// An earlier write or sync failed; the log accepts nothing more.
    #[error("the log is poisoned by an earlier failure: {cause}")]
    Poisoned {
        /// What failed first.
        cause: String,
    },
    /// A record larger than the configured maximum.
    #[error("record of {size} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// The record's payload size.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// Bytes that fail validation where the log must be intact.
    #[error("corruption in segment {segment} at offset {offset}: {reason}")]
    Corruption {
        /// The segment holding the bad bytes.
        segment: SegmentId,
        /// The byte offset of the bad record (or header) within the segment file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// The checkpoint file is unreadable; the log refuses to guess where the consumer was.
    #[error("checkpoint file {path} is invalid: {reason}")]
    BadCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// A confirmation beyond what has been appended.
    #[error("cannot confirm {requested}: the last durable record is {durable}")]
    CheckpointAhead {
        /// The position asked for.
        requested: Lsn,
        /// The last durable record.
        durable: Lsn,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the log's lock file.
    #[error("the log at {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The writer has stopped.
    #[error("the log is closed")]
    Closed,
    /// A configuration value out of bounds.
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// A stable, short identifier for metric labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Full { .. } => "full",
            Error::Busy { .. } => "busy",
            Error::Poisoned { .. } => "poisoned",
            Error::RecordTooLarge { .. } => "record_too_large",
            Error::Corruption { .. } => "corruption",
            Error::BadCheckpoint { .. } => "bad_checkpoint",
            Error::CheckpointAhead { .. } => "checkpoint_ahead",
            Error::Io { .. } => "io",
            Error::Locked { .. } => "locked",
            Error::Closed => "closed",
            Error::InvalidConfig(_) => "invalid_config",
        }
    }

    /// True when retrying later may succeed without anyone intervening.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Full { .. } | Error::Busy { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
