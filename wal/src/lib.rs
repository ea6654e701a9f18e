//! # sluice-wal: a ring of preallocated, checksummed segments with group commit
//!
//! One log is one directory. Appenders hand records to a single writer thread, which writes
//! everything queued, syncs once and then acknowledges every waiter: an acknowledged record is
//! on disk. A consumer reads records in order, confirms a position with [`Wal::checkpoint`], and
//! the segments wholly before that position are recycled for new records. The crate knows
//! nothing about what the records mean.
//!
//! This page is the format's specification. The code that reads and writes these bytes is in
//! `format.rs`; recovery is in `recovery.rs`.
//!
//! ## Files
//!
//! ```text
//! <dir>/LOCK                  advisory lock (flock, exclusive) held by the one writing process
//! <dir>/checkpoint            the consumer's durable position (36 bytes); absent until the first
//!                             checkpoint is written
//! <dir>/checkpoint.tmp        a checkpoint being written; never read, removed on a writable open
//! <dir>/ring-0000.seg …       segment slots; the number is the slot, not the segment's age
//! ```
//!
//! Slots are created lazily, up to `capacity_bytes / segment_bytes` of them, each preallocated
//! (`fallocate`) to `segment_bytes` when created and never deleted: a recycled slot is
//! overwritten in place. Which segment a slot holds, and its place in history, is in its header.
//! Opening reads every file named `ring-<decimal>.seg`, whatever the configured slot count, so
//! lowering `capacity_bytes` never hides a segment.
//!
//! ## Segment layout
//!
//! All integers are little-endian.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "SLUICEWL"
//! 8       4     format version (2; version 1 segments are read too)
//! 12      4     reserved, zero
//! 16      8     segment id: 1 for the log's first segment, +1 for each one started after it
//! 24      8     first LSN: the LSN of the first record this segment holds
//! 32      8     salt: random, chosen each time the slot is (re)initialised
//! 40      8     segment size in bytes (the file's preallocated length)
//! 48      4     CRC32C of bytes 0..48
//! 52      12    reserved, zero
//! 64      …     records, back to back, until the next one would not fit
//! ```
//!
//! A header is valid when its magic, its CRC and its version (1 or 2) all check. Anything else,
//! a file shorter than 64 bytes included, means the slot holds no segment (see "Recovery"); a
//! header of another format version is treated the same way. Version 2 differs from version 1
//! only in the group bit of the record frame (below); a writer always initialises slots as
//! version 2, and appends to a version 1 newest segment without changing its header. The reserved bytes are written as zero
//! and not checked; bytes 52..64 are not covered by the CRC. A slot keeps its size when it is
//! recycled under a smaller `segment_bytes`: the size written is the larger of the setting and
//! the file's length, and readers take the size from the header, not from the configuration.
//!
//! A record frame:
//!
//! ```text
//! 0       4     length word (u32): payload length N in bits 0..31, the group bit in bit 31
//! 4       4     CRC32C over salt (8) ‖ LSN (8) ‖ length word (4) ‖ payload (N)
//! 8       8     LSN
//! 16      N     payload
//! ```
//!
//! The group bit is set on the first record the writer writes after the segment's last sync:
//! the first record of every group commit, of every new segment and of every writer's life.
//! Records with the bit clear were written together with the one before them and synced by the
//! same `fdatasync`. Version 1 writers never set it. It lets recovery tell a power cut's torn
//! group from damage to a record that had been synced ("Recovery", step 5).
//!
//! The salt in the checksum means bytes left in a recycled slot by an earlier segment can never
//! validate as records of the current one; the LSN in the checksum (and the reader's rule that
//! each record's LSN is exactly one more than the previous) means a stale record of the *same*
//! segment, left beyond a truncated tail, can't either. LSNs start at 1 and grow by one per
//! record for the log's whole life, so the last LSN is also the number of records ever
//! appended. The only LSNs handed out twice are those of a torn tail, never acknowledged and
//! zeroed by recovery before the writer reuses them. An empty payload (N = 0) is a valid record.
//!
//! ## Where a segment's records end
//!
//! A scan starts at offset 64 expecting the header's first LSN, and never reads past its
//! *limit*: the smaller of the header's segment size and the file's length (a reader of an open
//! log uses the durable end the writer published instead). At each frame offset, in order:
//!
//! 1. Fewer than 16 bytes left before the limit: the records end here, cleanly.
//! 2. All 16 frame-header bytes are zero: the records end here, cleanly. A written frame is
//!    never all zero (its LSN is at least 1); zeros are what preallocated and recovered space
//!    holds, and what a clean shutdown writes after the last record when 16 bytes fit.
//! 3. The frame's LSN is not the expected one: a *bad frame*.
//! 4. The payload length runs past the limit: a bad frame.
//! 5. The CRC does not match: a bad frame.
//! 6. Otherwise the record is valid, and the next frame starts at its offset + 16 + N with the
//!    next LSN expected.
//!
//! Both a clean end and a bad frame end the segment's records; what a bad frame *means* depends
//! on where it is (see "Recovery"). When a record does not fit, the writer seals the segment
//! without writing anything after its last record, so what follows in a sealed segment may be
//! zeros, stale frames of the slot's earlier segment, or anything else: the next segment's
//! first LSN, not a terminator, says where the sealed segment's records end.
//!
//! ## Checkpoint file
//!
//! ```text
//! 0   8  magic "SLUICECP"       16  8  confirmed LSN: every record at or below it is confirmed
//! 8   4  format version (1)     24  8  records dropped by the drop_oldest policy, ever
//! 12  4  reserved, zero         32  4  CRC32C of bytes 0..32
//! ```
//!
//! The file is written by [`Wal::checkpoint`] and by the drop-oldest policy, never in place:
//! `checkpoint.tmp` is created (or truncated), the 36 bytes are written, the file is synced
//! (`fdatasync`) and closed, renamed over `checkpoint`, and the directory is fsynced. Only then
//! does the log use the new position, so a crash at any point leaves `checkpoint` holding the
//! old value or the new one, whole. The confirmed LSN only moves forward: a confirmation at or
//! below the current one writes nothing, and one beyond the last durable record is
//! [`Error::CheckpointAhead`].
//!
//! On open:
//!
//! - **Missing** `checkpoint` means confirmed 0 and dropped 0: nothing is confirmed yet. Opening
//!   does not create the file; the first checkpoint write does. A log whose oldest segment
//!   starts after LSN 1 therefore cannot open without its checkpoint file: the records before
//!   that segment are reported missing ([`Error::Corruption`]).
//! - **Invalid** `checkpoint` (length other than 36 bytes, bad magic, CRC mismatch, or a version
//!   other than 1) is [`Error::BadCheckpoint`]; a failure to open or read it, other than its
//!   absence, is [`Error::Io`].
//! - **Leftover** `checkpoint.tmp` is a checkpoint write that was interrupted, or whose rename
//!   was not yet durable; the position it held was never reported as durable. Its contents are
//!   never read: a writable open deletes it before reading `checkpoint`, a read-only one
//!   ([`LogView`], [`verify`]) leaves it. The position is whatever `checkpoint` holds.
//!
//! ## Durability order
//!
//! 1. **Append.** The writer gathers queued records, writes them with positional writes, and
//!    calls `fdatasync` once. Only then are the waiters told their LSNs. The slots are
//!    preallocated, so the steady-state sync carries no metadata.
//! 2. **Roll over.** When the next record does not fit, the current segment is synced (sealing
//!    it: every record in it is durable before any record of the next segment exists), a free
//!    slot is initialised with a new header, and that header is synced before records follow.
//!    A slot file created for the first time is preallocated, synced, and then the directory is
//!    fsynced so its entry survives a crash. Opening creates the log's directory and any missing
//!    ancestor, and fsyncs the parent of each one it created, before anything is written in it.
//! 3. **Checkpoint.** The new state is written to `checkpoint.tmp`, which is synced, renamed
//!    over `checkpoint`, and the directory is fsynced.
//! 4. **Recycle.** Only segments whose every record is at or below the *durable* checkpoint are
//!    reused, and only when the writer needs a slot. Recycling is a header rewrite; nothing is
//!    unlinked.
//!
//! A failed write or sync **poisons** the log: the batch in flight and every later append fail
//! with [`Error::Poisoned`]. After a failed `fsync` the kernel may have dropped the dirty pages
//! and cleared the error, so a retry could "succeed" without the data; the log never retries.
//!
//! ## Recovery (on open)
//!
//! 1. Take the lock; remove a leftover `checkpoint.tmp`; read `checkpoint` (see "Checkpoint
//!    file": a damaged one is [`Error::BadCheckpoint`], the log refuses to guess how far the
//!    consumer got).
//! 2. Read every slot's header. A slot whose header does not validate is free: it was never
//!    used, or its re-initialisation was interrupted, which only happens to slots whose
//!    previous contents were already confirmed. Two slots claiming the same segment id are
//!    [`Error::Corruption`].
//! 3. Order segments by id. A segment that the next one's first LSN shows to be wholly
//!    confirmed is free. The rest are scanned from the oldest, checking every record.
//! 4. A sealed (not the newest) segment must end exactly where the next one begins: its last
//!    valid record's LSN + 1 is the next segment's first LSN. If so, how its scan stopped does
//!    not matter. If not, it is [`Error::Corruption`] naming the segment and the offset of the
//!    bad frame (or of the clean end, when the segment ends early). So is a gap in LSNs between
//!    the checkpoint and the oldest segment still needed, and a checkpoint beyond the newest
//!    segment's last record.
//! 5. In the newest segment, a bad frame is the torn tail of a write that was never
//!    acknowledged, whatever check it failed (a CRC mismatch, a wrong LSN, a length past the
//!    end), unless a sync provably covered it. A power cut keeps any subset of an unsynced
//!    write's pages, so valid records after a bad one prove nothing by themselves: they may be
//!    later pages of the same torn group. Recovery follows the frames after the bad one by
//!    their length words (each bad one is stepped over with its declared length, expecting the
//!    next LSN) up to the first all-zero header or the segment's size. A valid record among
//!    them that carries the group bit was written after a sync that covered the bad record, so
//!    the bad record had been acknowledged: that is damage, and is [`Error::Corruption`]. In a
//!    version 1 segment any valid record found this way is. A torn tail is repaired before any
//!    new record is written: the bytes from the bad frame's offset to the header's segment size
//!    are overwritten with zeros and synced (the file is not shortened), a warning is logged,
//!    and the writer continues at that offset with the next LSN. A clean end needs no repair.
//! 6. Byte accounting is recomputed from what the scan found, never carried over.
//!
//! A read-only open ([`LogView`]) runs the same checks and changes nothing on disk: a torn
//! tail is reported by [`LogView::torn_tail`] and left in place. [`verify`] scans wholly
//! confirmed segments too, and lists every problem instead of failing at the first. A
//! [`Reader`] reads only up to the durable end, so a bad frame or a clean end before it is
//! [`Error::Corruption`], unless the segment was recycled while it read (the reader then moves
//! on to the oldest record still held).
//!
//! ## Bounds
//!
//! [`WalConfig::validate`] checks these when [`Wal::open`] (or [`Wal::open_with`]) is called,
//! which then refuses to open with [`Error::InvalidConfig`] naming the field:
//!
//! - `segment_bytes`: at least [`MIN_SEGMENT_BYTES`] (64 KiB), at most [`MAX_SEGMENT_BYTES`]
//!   (1 GiB).
//! - `capacity_bytes`: at least two segments. The ring has `capacity_bytes / segment_bytes`
//!   slots, rounded down; no more slot files than that are created.
//! - `max_record_bytes`: at least 1, at most `segment_bytes − 80` (a segment minus its header
//!   and one frame header), so every record fits in an empty segment.
//! - `queue_capacity` at least 1, `max_batch_bytes` at least `max_record_bytes`.
//!
//! An append whose payload is longer than `max_record_bytes` fails with
//! [`Error::RecordTooLarge`] before it is queued; nothing is written. The limit applies to
//! writing only: scanning bounds a frame's length by the scan limit alone (see "Where a
//! segment's records end"), so records written under a larger setting stay readable. A reader
//! must check the declared length against that limit before reading or allocating the payload.
//!
//! One log is one directory with its own lock, checkpoint and LSNs; the format has no notion of
//! partitions. A program that keeps several logs (as sluice does, one per partition) opens each
//! separately and bounds their number itself.
//!
//! ## What the log refuses to do
//!
//! - Skip corruption silently. Operators see [`Error::Corruption`]; [`verify`] lists every
//!   problem. Repair is a deliberate act, not a side effect of opening.
//! - Overwrite unconfirmed records, unless the operator chose [`FullPolicy::DropOldest`], which
//!   advances the checkpoint first and counts what it dropped.
//! - Acknowledge a record whose sync failed, or accept appends after a failed sync.
//! - Open a log that another process holds ([`Error::Locked`]).
//!
//! Limits: a damaged header of the *newest* segment is indistinguishable from an interrupted
//! re-initialisation, so the records of that segment would be lost unreported. Header writes
//! are synced on their own before any record follows, which keeps the window to media damage.
//! Likewise damage inside the newest commit group of the newest segment, or to a length word
//! or frame header that hides the frames after it, reads as a torn tail and is cut off: a power
//! cut can leave exactly those bytes.
//!
//! # Example
//!
//! ```
//! use sluice_wal::{Lsn, Wal, WalConfig};
//! # let dir = tempfile::tempdir().unwrap();
//! let config = WalConfig {
//!     segment_bytes: 1 << 20,
//!     capacity_bytes: 4 << 20,
//!     max_record_bytes: 64 << 10,
//!     ..WalConfig::default()
//! };
//! let wal = Wal::open(dir.path(), config).unwrap();
//! let lsn = wal.append(b"hello".to_vec()).unwrap();      // durable once this returns
//! let mut reader = wal.reader(Lsn(1));
//! let record = reader.next().unwrap().unwrap();
//! assert_eq!((record.lsn, &record.payload[..]), (lsn, &b"hello"[..]));
//! wal.checkpoint(lsn).unwrap();                          // the consumer is done with it
//! wal.close().unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
pub mod format;
pub mod fs;
mod log;
mod reader;
mod recovery;
mod view;

pub use config::{FullPolicy, WalConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
pub use error::{Error, Result};
pub use log::{Appender, CommitStats, NoopObserver, Observer, Status, Wal};
pub use reader::{Reader, Record};
pub use view::{verify, LogView, Problem, VerifyReport};

use std::fmt;

/// Log sequence number: the place of a record in the log's history. The first record is 1;
/// `Lsn(0)` means "before the first record".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Before the first record.
    pub const ZERO: Lsn = Lsn(0);

    /// The LSN after this one.
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A segment's place in the log's history (not its slot on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentId(pub u64);

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a record's frame starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The segment holding it.
    pub segment: SegmentId,
    /// Byte offset of the frame within the segment file.
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// File name of the lock file.
pub const LOCK_FILE: &str = "LOCK";
/// File name of the checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// File name a checkpoint is written to before it is renamed into place.
pub const CHECKPOINT_TMP_FILE: &str = "checkpoint.tmp";
/// Prefix of segment slot file names.
pub const SEGMENT_PREFIX: &str = "ring-";
/// Suffix of segment slot file names.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// The file name of slot `slot`.
pub fn segment_file_name(slot: u32) -> String {
    format!("{SEGMENT_PREFIX}{slot:04}{SEGMENT_SUFFIX}")
}

/// The slot number of a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    name.strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?
        .parse()
        .ok()
}
