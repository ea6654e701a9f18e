//! Opening a log: read the checkpoint and every slot header, scan the segments that may hold
//! unconfirmed records, and classify where each scan stopped (crate docs, "Recovery").
//!
//! The same survey backs [`crate::verify`], which scans every segment and lists every problem
//! instead of failing at the first.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::{
    CheckpointData, FrameHeader, SegmentHeader, CHECKPOINT_LEN, FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::fs::{File, FileSystem, OpenMode};
use crate::log::{SegmentInfo, State};
use crate::view::Problem;
use crate::{
    parse_segment_file_name, segment_file_name, Error, Lsn, Result, CHECKPOINT_FILE,
    CHECKPOINT_TMP_FILE,
};

/// Bytes read per `read_at` call while scanning.
const SCAN_CHUNK: usize = 1 << 20;

/// What opening found.
pub(crate) struct Recovered {
    pub state: State,
    /// The torn tail that was cut off the newest segment, if any.
    pub torn: Option<Problem>,
}

/// Opens the log's files and rebuilds its state. With `writable`, a torn tail is zeroed and a
/// leftover temporary checkpoint removed; without, nothing on disk changes.
pub(crate) fn recover(fs: &dyn FileSystem, dir: &Path, writable: bool) -> Result<Recovered> {
    let survey = survey(fs, dir, writable, false)?;
    if let Some(p) = survey.problems.into_iter().next() {
        return Err(Error::Corruption {
            segment: p.segment,
            offset: p.offset,
            reason: format!("{} ({})", p.reason, p.path.display()),
        });
    }
    let mut torn = None;
    let mut segments = BTreeMap::new();
    let count = survey.segments.len();
    for (i, s) in survey.segments.into_iter().enumerate() {
        let newest = i + 1 == count;
        if newest {
            if let Stop::Dirty { offset, ref reason } = s.stop {
                if writable {
                    zero_from(&*s.file, offset, s.header.size)
                        .map_err(|e| Error::io("truncate torn tail", &s.path, e))?;
                }
                torn = Some(Problem {
                    segment: s.header.id,
                    path: s.path.clone(),
                    offset,
                    reason: reason.clone(),
                });
            }
        }
        segments.insert(
            s.header.id,
            SegmentInfo {
                slot: s.slot,
                header: s.header,
                file: s.file,
                durable_end: s.end,
                last_lsn: s.last_lsn,
            },
        );
    }
    let last_in_log = segments.values().next_back().map(|s| s.last_lsn);
    let durable_lsn = last_in_log
        .unwrap_or(Lsn::ZERO)
        .max(survey.checkpoint.confirmed);
    if let Some(last) = last_in_log {
        if survey.checkpoint.confirmed > last {
            let seg = segments.values().next_back().expect("non-empty");
            return Err(Error::Corruption {
                segment: seg.header.id,
                offset: seg.durable_end,
                reason: format!(
                    "the checkpoint confirms records up to {} but the log ends at {last}",
                    survey.checkpoint.confirmed
                ),
            });
        }
    }
    Ok(Recovered {
        state: State {
            segments,
            free_slots: survey.free_slots,
            next_slot: survey.next_slot,
            durable_lsn,
            checkpoint: survey.checkpoint,
        },
        torn,
    })
}

/// Overwrites `[from, to)` with zeros and syncs, so no stale frame of the same segment can
/// follow records written after recovery.
fn zero_from(file: &dyn File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; SCAN_CHUNK];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

/// Why a segment scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// End of the segment, or an all-zero frame header: nothing was ever written past here.
    Clean,
    /// Not scanned: the segment is wholly confirmed, so its end is taken from the next one.
    Skipped,
    /// A frame that does not validate.
    Dirty { offset: u64, reason: String },
}

/// One segment as the survey found it.
pub(crate) struct ScannedSegment {
    pub slot: u32,
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub file: Arc<dyn File>,
    /// Offset just past the last valid record.
    pub end: u64,
    /// LSN of the last valid record; `first_lsn - 1` when it has none.
    pub last_lsn: Lsn,
    pub records: u64,
    pub stop: Stop,
}

/// Everything known about a log's files.
pub(crate) struct Survey {
    pub checkpoint: CheckpointData,
    /// Segments with valid headers, oldest first.
    pub segments: Vec<ScannedSegment>,
    pub free_slots: Vec<u32>,
    pub next_slot: u32,
    pub problems: Vec<Problem>,
}

/// Reads the checkpoint and headers and scans segments. `scan_all` scans wholly confirmed
/// segments too (for `verify`); otherwise they are skipped.
pub(crate) fn survey(
    fs: &dyn FileSystem,
    dir: &Path,
    writable: bool,
    scan_all: bool,
) -> Result<Survey> {
    let tmp = dir.join(CHECKPOINT_TMP_FILE);
    if writable && tmp.exists() {
        fs.remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let checkpoint = read_checkpoint(fs, dir)?;

    let mut slots: Vec<(u32, PathBuf)> = fs
        .read_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .into_iter()
        .filter_map(|p| {
            let slot = parse_segment_file_name(p.file_name()?.to_str()?)?;
            Some((slot, p))
        })
        .collect();
    slots.sort();
    let next_slot = slots.last().map_or(0, |(s, _)| s + 1);

    let mode = if writable {
        OpenMode::ReadWrite
    } else {
        OpenMode::Read
    };
    let mut free_slots = Vec::new();
    let mut found: Vec<(u32, PathBuf, SegmentHeader, Arc<dyn File>)> = Vec::new();
    for (slot, path) in slots {
        debug_assert_eq!(path.file_name().unwrap(), segment_file_name(slot).as_str());
        let file = fs
            .open(&path, mode)
            .map_err(|e| Error::io("open", &path, e))?;
        let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
        let header = match file.read_exact_at(&mut head, 0) {
            Ok(()) => SegmentHeader::decode(&head).ok(),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(e) => return Err(Error::io("read header", &path, e)),
        };
        match header {
            Some(h) => found.push((slot, path, h, file)),
            None => free_slots.push(slot),
        }
    }
    found.sort_by_key(|(_, _, h, _)| h.id);

    let mut problems = Vec::new();
    for w in found.windows(2) {
        if w[0].2.id == w[1].2.id {
            problems.push(Problem {
                segment: w[1].2.id,
                path: w[1].1.clone(),
                offset: 0,
                reason: format!("segment id {} appears in two slots", w[1].2.id),
            });
        }
    }

    let confirmed_next = checkpoint.confirmed.next();
    let count = found.len();
    let mut segments: Vec<ScannedSegment> = Vec::with_capacity(count);
    for i in 0..count {
        let (slot, ref path, header, ref file) = found[i];
        let next_first = found.get(i + 1).map(|n| n.2.first_lsn);
        let wholly_confirmed = next_first.is_some_and(|n| n <= confirmed_next);
        let file_len = file.size().map_err(|e| Error::io("stat", path, e))?;
        let limit = header.size.min(file_len);
        let scanned = if wholly_confirmed && !scan_all {
            ScannedSegment {
                slot,
                path: path.clone(),
                header,
                file: file.clone(),
                end: limit,
                last_lsn: Lsn(next_first.expect("has next").0 - 1),
                records: 0,
                stop: Stop::Skipped,
            }
        } else {
            scan_segment(slot, path, header, file.clone(), limit)?
        };
        segments.push(scanned);
    }

    // The oldest segment that may hold unconfirmed records must start at or before the
    // checkpoint's next LSN, or records in between are missing.
    if let Some(first_needed) = segments.iter().find(|s| s.stop != Stop::Skipped) {
        if first_needed.header.first_lsn > confirmed_next {
            problems.push(Problem {
                segment: first_needed.header.id,
                path: first_needed.path.clone(),
                offset: 0,
                reason: format!(
                    "records {}..{} are missing: the checkpoint is at {} but the oldest segment starts at {}",
                    confirmed_next,
                    first_needed.header.first_lsn.0 - 1,
                    checkpoint.confirmed,
                    first_needed.header.first_lsn
                ),
            });
        }
    }

    // Each sealed segment must end exactly where its successor begins.
    for i in 0..segments.len().saturating_sub(1) {
        let next_first = segments[i + 1].header.first_lsn;
        let s = &segments[i];
        if s.stop == Stop::Skipped {
            continue;
        }
        if s.last_lsn.next() != next_first {
            let (offset, why) = match &s.stop {
                Stop::Dirty { offset, reason } => (*offset, reason.clone()),
                _ => (s.end, "segment ends early".to_string()),
            };
            problems.push(Problem {
                segment: s.header.id,
                path: s.path.clone(),
                offset,
                reason: format!(
                    "{why}; the segment's records end at {} but the next segment starts at {next_first}",
                    s.last_lsn
                ),
            });
        }
    }

    // In the newest segment, a bad record is a torn tail unless a sync provably covered it.
    if let Some(s) = segments.last() {
        if let Stop::Dirty { offset, reason } = &s.stop {
            if let Some(found) = synced_past(s, *offset)? {
                problems.push(Problem {
                    segment: s.header.id,
                    path: s.path.clone(),
                    offset: *offset,
                    reason: format!("{reason}, and {found} follows it"),
                });
            }
        }
    }

    Ok(Survey {
        checkpoint,
        segments,
        free_slots,
        next_slot,
        problems,
    })
}

/// Reads the checkpoint file; a missing one means nothing is confirmed yet.
pub(crate) fn read_checkpoint(fs: &dyn FileSystem, dir: &Path) -> Result<CheckpointData> {
    let path = dir.join(CHECKPOINT_FILE);
    let file = match fs.open(&path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CheckpointData::default()),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
    if len != CHECKPOINT_LEN as u64 {
        return Err(Error::BadCheckpoint {
            path,
            reason: format!("file is {len} bytes, expected {CHECKPOINT_LEN}"),
        });
    }
    let mut b = [0u8; CHECKPOINT_LEN];
    file.read_exact_at(&mut b, 0)
        .map_err(|e| Error::io("read", &path, e))?;
    CheckpointData::decode(&b).map_err(|reason| Error::BadCheckpoint { path, reason })
}

/// Reads frames from a segment through a buffer, so a scan costs one syscall per megabyte.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    file: Arc<dyn File>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Bytes never read past (the segment's size or durable end).
    limit: u64,
}

impl ChunkReader {
    pub(crate) fn new(file: Arc<dyn File>, limit: u64) -> ChunkReader {
        ChunkReader {
            file,
            buf: Vec::new(),
            start: 0,
            limit,
        }
    }

    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
        // Bytes buffered beyond an old limit may have been read before they were durable.
        let valid = limit.saturating_sub(self.start) as usize;
        if valid < self.buf.len() {
            self.buf.truncate(valid);
        }
    }

    /// The bytes `[offset, offset + len)`, or `None` if they extend past the limit.
    pub(crate) fn get(&mut self, offset: u64, len: usize) -> io::Result<Option<&[u8]>> {
        let end = offset + len as u64;
        if end > self.limit {
            return Ok(None);
        }
        let covered = offset >= self.start && end <= self.start + self.buf.len() as u64;
        if !covered {
            let want = len.max(SCAN_CHUNK).min((self.limit - offset) as usize);
            self.buf.resize(want, 0);
            let mut got = 0;
            while got < want {
                match self
                    .file
                    .read_at(&mut self.buf[got..], offset + got as u64)?
                {
                    0 => break,
                    n => got += n,
                }
            }
            self.buf.truncate(got);
            self.start = offset;
            if got < len {
                return Ok(None);
            }
        }
        let at = (offset - self.start) as usize;
        Ok(Some(&self.buf[at..at + len]))
    }
}

/// The outcome of reading one frame.
pub(crate) enum Frame<'a> {
    /// A valid record.
    Record { lsn: Lsn, payload: &'a [u8] },
    /// Nothing was ever written here (all-zero header) or the segment is exhausted.
    End,
    /// Bytes that are not the expected record.
    Bad(String),
}

/// Reads and checks the frame at `offset`, which must carry `expected`.
pub(crate) fn read_frame<'a>(
    r: &'a mut ChunkReader,
    salt: u64,
    offset: u64,
    expected: Lsn,
) -> io::Result<Frame<'a>> {
    let Some(head) = r.get(offset, FRAME_HEADER_LEN as usize)? else {
        return Ok(Frame::End);
    };
    if head.iter().all(|&b| b == 0) {
        return Ok(Frame::End);
    }
    let h = FrameHeader::read(head);
    if h.lsn != expected {
        return Ok(Frame::Bad(format!(
            "expected record {expected}, found a frame claiming {}",
            h.lsn
        )));
    }
    let Some(payload) = r.get(offset + FRAME_HEADER_LEN, h.len as usize)? else {
        return Ok(Frame::Bad(format!(
            "record {expected} claims {} bytes, past the end of the segment",
            h.len
        )));
    };
    if !h.matches(salt, payload) {
        return Ok(Frame::Bad(format!("record {expected} fails its checksum")));
    }
    Ok(Frame::Record {
        lsn: expected,
        payload,
    })
}

fn scan_segment(
    slot: u32,
    path: &Path,
    header: SegmentHeader,
    file: Arc<dyn File>,
    limit: u64,
) -> Result<ScannedSegment> {
    let mut r = ChunkReader::new(file.clone(), limit);
    let mut offset = SEGMENT_HEADER_LEN;
    let mut lsn = header.first_lsn;
    let mut records = 0;
    let stop = loop {
        match read_frame(&mut r, header.salt, offset, lsn)
            .map_err(|e| Error::io("read", path, e))?
        {
            Frame::Record { payload, .. } => {
                offset += FRAME_HEADER_LEN + payload.len() as u64;
                lsn = lsn.next();
                records += 1;
            }
            Frame::End => break Stop::Clean,
            Frame::Bad(reason) => break Stop::Dirty { offset, reason },
        }
    };
    Ok(ScannedSegment {
        slot,
        path: path.to_path_buf(),
        header,
        file,
        end: offset,
        last_lsn: Lsn(lsn.0 - 1),
        records,
        stop,
    })
}

/// Whether the records after the bad frame at `offset` in the newest segment `s` show that the
/// bad record had been synced, so that it is damage and not a torn tail (crate docs,
/// "Recovery"): a valid record after it that opens a commit group was written after a sync that
/// covered it. In a version 1 segment, whose frames never open a group, any valid record after
/// it does. Frames are followed by their length words; the walk ends at the first all-zero
/// header or at the segment's end. Returns what was found.
fn synced_past(s: &ScannedSegment, offset: u64) -> Result<Option<String>> {
    let header = &s.header;
    let io = |e| Error::io("read", &s.path, e);
    let mut r = ChunkReader::new(s.file.clone(), header.size);
    let mut at = offset;
    let mut lsn = s.last_lsn.next();
    loop {
        let Some(head) = r.get(at, FRAME_HEADER_LEN as usize).map_err(io)? else {
            return Ok(None);
        };
        let h = FrameHeader::read(head);
        if at != offset {
            match read_frame(&mut r, header.salt, at, lsn).map_err(io)? {
                Frame::End => return Ok(None),
                Frame::Bad(_) => {}
                Frame::Record { .. } if header.version == 1 => {
                    return Ok(Some(format!("a valid record ({lsn})")));
                }
                Frame::Record { .. } if h.opens_group => {
                    return Ok(Some(format!(
                        "a valid record ({lsn}) written after a sync that covered it"
                    )));
                }
                Frame::Record { .. } => {}
            }
        }
        at += FRAME_HEADER_LEN + u64::from(h.len);
        lsn = lsn.next();
    }
}
