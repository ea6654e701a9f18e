//! Reading the log in LSN order, from any position, optionally following the durable tail.
//!
//! A reader only ever sees durable records: it reads each segment up to the durable end the
//! writer published. A segment recycled under a reader (possible only with the drop-oldest
//! policy) is noticed by its changed salt, and the reader jumps to the oldest record still
//! held, counting what it skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::log::Shared;
use crate::recovery::{read_frame, ChunkReader, Frame};
use crate::{Error, Lsn, Position, Result, SegmentId};

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's LSN.
    pub lsn: Lsn,
    /// Where its frame starts.
    pub position: Position,
    /// The bytes that were appended.
    pub payload: Vec<u8>,
}

/// Iterates records in LSN order. Created by [`crate::Wal::reader`] or [`crate::LogView::reader`].
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    /// The LSN the next returned record will have (unless records were dropped).
    next: Lsn,
    cursor: Option<Cursor>,
    skipped: u64,
}

#[derive(Debug)]
struct Cursor {
    id: SegmentId,
    salt: u64,
    chunks: ChunkReader,
    /// Offset of the frame holding `lsn`.
    offset: u64,
    lsn: Lsn,
    /// Snapshot of the segment's durable end and last LSN.
    end: u64,
    last_lsn: Lsn,
}

enum Refresh {
    More,
    NextSegment,
    CaughtUp,
    Gone,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, from: Lsn) -> Reader {
        Reader {
            shared,
            next: from.max(Lsn(1)),
            cursor: None,
            skipped: 0,
        }
    }

    /// The LSN the next record is expected to have.
    pub fn position(&self) -> Lsn {
        self.next
    }

    /// Records skipped because the drop-oldest policy recycled them before they were read.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next durable record, or `None` when the reader has caught up with the log.
    ///
    /// Not `Iterator::next`: "caught up" is not the end, and a reader can continue after new
    /// records arrive.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>> {
        loop {
            if self.cursor.is_none() && !self.locate() {
                return Ok(None);
            }
            let c = self.cursor.as_mut().expect("located");
            if c.lsn > c.last_lsn || c.offset + FRAME_HEADER_LEN > c.end {
                match self.refresh() {
                    Refresh::More => continue,
                    Refresh::NextSegment | Refresh::Gone => {
                        self.cursor = None;
                        continue;
                    }
                    Refresh::CaughtUp => return Ok(None),
                }
            }
            let frame = read_frame(&mut c.chunks, c.salt, c.offset, c.lsn).map_err(|e| {
                Error::io(
                    "read segment",
                    self.shared.dir.join(format!("segment {}", c.id)),
                    e,
                )
            })?;
            match frame {
                Frame::Record { lsn, payload } => {
                    let position = Position {
                        segment: c.id,
                        offset: c.offset,
                    };
                    c.offset += FRAME_HEADER_LEN + payload.len() as u64;
                    c.lsn = lsn.next();
                    if lsn < self.next {
                        continue;
                    }
                    let payload = payload.to_vec();
                    self.next = lsn.next();
                    return Ok(Some(Record {
                        lsn,
                        position,
                        payload,
                    }));
                }
                Frame::End | Frame::Bad(_) => {
                    let reason = match frame {
                        Frame::Bad(reason) => reason,
                        _ => format!("record {} is missing before the durable end", c.lsn),
                    };
                    let (id, salt, offset) = (c.id, c.salt, c.offset);
                    if segment_gone(&self.shared, id, salt) {
                        self.cursor = None;
                        continue;
                    }
                    return Err(Error::Corruption {
                        segment: id,
                        offset,
                        reason,
                    });
                }
            }
        }
    }

    /// Like [`Reader::next`], but waits up to `timeout` for a record to become durable.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Record>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.next()? {
                return Ok(Some(r));
            }
            let mut st = self.shared.lock();
            loop {
                if st.durable_lsn >= self.next || self.shared.is_closed() {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                st = self
                    .shared
                    .changed
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if st.durable_lsn < self.next {
                return Ok(None);
            }
        }
    }

    /// Positions the cursor on the segment holding `next`; false when there is nothing to read.
    fn locate(&mut self) -> bool {
        let st = self.shared.lock();
        if self.next > st.durable_lsn {
            return false;
        }
        let Some(seg) = st.segments.values().find(|s| s.last_lsn >= self.next) else {
            return false;
        };
        if seg.header.first_lsn > self.next {
            self.skipped += seg.header.first_lsn.0 - self.next.0;
            self.next = seg.header.first_lsn;
        }
        self.cursor = Some(Cursor {
            id: seg.header.id,
            salt: seg.header.salt,
            chunks: ChunkReader::new(seg.file.clone(), seg.durable_end),
            offset: SEGMENT_HEADER_LEN,
            lsn: seg.header.first_lsn,
            end: seg.durable_end,
            last_lsn: seg.last_lsn,
        });
        true
    }

    fn refresh(&mut self) -> Refresh {
        let st = self.shared.lock();
        let c = self.cursor.as_mut().expect("cursor");
        let Some(seg) = st.segments.get(&c.id).filter(|s| s.header.salt == c.salt) else {
            return Refresh::Gone;
        };
        if seg.last_lsn > c.last_lsn || seg.durable_end > c.end {
            c.end = seg.durable_end;
            c.last_lsn = seg.last_lsn;
            c.chunks.set_limit(seg.durable_end);
        }
        if c.lsn <= c.last_lsn && c.offset + FRAME_HEADER_LEN <= c.end {
            return Refresh::More;
        }
        if st.segments.range(SegmentId(c.id.0 + 1)..).next().is_some() {
            Refresh::NextSegment
        } else {
            Refresh::CaughtUp
        }
    }
}

/// True when the cursor's segment was recycled (or dropped) since it was positioned.
fn segment_gone(shared: &Shared, id: SegmentId, salt: u64) -> bool {
    shared
        .lock()
        .segments
        .get(&id)
        .is_none_or(|s| s.header.salt != salt)
}
