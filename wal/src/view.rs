//! Read-only access for operators: [`LogView`] (status and reading without taking the lock,
//! so it works beside a running writer) and [`verify`] (check every segment, list every
//! problem).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::StdFs;
use crate::log::{NoopObserver, Shared, Status};
use crate::reader::Reader;
use crate::recovery::{self, Recovered, Stop};
use crate::{Error, Lsn, Result, SegmentId, WalConfig};

/// A bad spot in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The segment holding it.
    pub segment: SegmentId,
    /// The segment's file.
    pub path: PathBuf,
    /// Byte offset within the file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// A read-only snapshot of a log, taken when opened. Nothing on disk is changed; a torn tail
/// is reported ([`LogView::torn_tail`]) but not truncated.
///
/// Opened beside a running writer, the snapshot may end mid-batch (seen as a torn tail), and
/// a segment recycled during the scan may be reported as a gap: re-run to confirm.
#[derive(Debug)]
pub struct LogView {
    shared: Arc<Shared>,
    torn: Option<Problem>,
}

impl LogView {
    /// Opens the log in `dir` read-only. `config` supplies the capacity reported by
    /// [`LogView::status`]; segment sizes are read from the files.
    pub fn open(dir: impl AsRef<Path>, config: &WalConfig) -> Result<LogView> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::io(
                "open log directory",
                &dir,
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let fs = Arc::new(StdFs);
        let Recovered { state, torn } = recovery::recover(&*fs, &dir, false)?;
        Ok(LogView {
            shared: Arc::new(Shared::new(
                dir,
                fs,
                config.clone(),
                state,
                Arc::new(NoopObserver),
            )),
            torn,
        })
    }

    /// The log's state as found.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// A reader over the snapshot, starting at `from`.
    pub fn reader(&self, from: Lsn) -> Reader {
        Reader::new(self.shared.clone(), from)
    }

    /// The newest segment's unvalidated tail, if it has one (bytes of a write that was never
    /// acknowledged, or a write in progress).
    pub fn torn_tail(&self) -> Option<&Problem> {
        self.torn.as_ref()
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments with valid headers.
    pub segments: usize,
    /// Valid records found in them.
    pub records: u64,
    /// Every problem, oldest segment first. Empty when the log is sound.
    pub problems: Vec<Problem>,
    /// The newest segment's unvalidated tail: expected after a crash, repaired on next open,
    /// and not a problem.
    pub torn_tail: Option<Problem>,
    /// The durable checkpoint.
    pub checkpoint: Lsn,
    /// The oldest record held.
    pub first_lsn: Lsn,
    /// The newest valid record.
    pub last_lsn: Lsn,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every record of every segment in `dir`, without changing anything. `Err` means the
/// log could not be read at all (I/O error, damaged checkpoint); damage inside segments is
/// reported in [`VerifyReport::problems`].
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let survey = recovery::survey(&StdFs, dir, false, true)?;
    let torn_tail = survey.segments.last().and_then(|s| match &s.stop {
        Stop::Dirty { offset, reason }
            if !survey
                .problems
                .iter()
                .any(|p| p.segment == s.header.id && p.offset == *offset) =>
        {
            Some(Problem {
                segment: s.header.id,
                path: s.path.clone(),
                offset: *offset,
                reason: reason.clone(),
            })
        }
        _ => None,
    });
    Ok(VerifyReport {
        segments: survey.segments.len(),
        records: survey.segments.iter().map(|s| s.records).sum(),
        first_lsn: survey
            .segments
            .iter()
            .find(|s| s.records > 0)
            .map_or(Lsn::ZERO, |s| s.header.first_lsn),
        last_lsn: survey
            .segments
            .last()
            .map_or(survey.checkpoint.confirmed, |s| s.last_lsn),
        checkpoint: survey.checkpoint.confirmed,
        problems: survey.problems,
        torn_tail,
    })
}
