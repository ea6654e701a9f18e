//! Configuration of one log, validated once by [`WalConfig::validate`].

use crate::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::{Error, Result};

/// What `append` does when every segment holds unconfirmed records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// Fail the append with [`Error::Full`]; nothing unconfirmed is ever overwritten. The default.
    #[default]
    Reject,
    /// Advance the checkpoint past the oldest segment's records, recycle it, and count what was
    /// dropped. For operators who prefer fresh data to complete data.
    DropOldest,
}

/// The settings of one log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Size of each preallocated segment file. Default 64 MiB; at least 64 KiB, at most 1 GiB.
    pub segment_bytes: u64,
    /// Byte budget of the whole ring (segment files). Default 1 GiB; at least two segments.
    /// The ring holds `capacity_bytes / segment_bytes` segments, rounded down.
    pub capacity_bytes: u64,
    /// Largest payload one record may carry. Default 8 MiB; at most a segment minus its headers.
    pub max_record_bytes: u64,
    /// What happens when the ring is full. Default [`FullPolicy::Reject`].
    pub full_policy: FullPolicy,
    /// Appends that may wait for the writer before `append` answers [`Error::Busy`].
    /// Default 65 536; at least 1.
    pub queue_capacity: usize,
    /// Most payload bytes the writer gathers into one group commit. Default 16 MiB; at least
    /// `max_record_bytes` (a single record always fits).
    pub max_batch_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: 64 << 20,
            capacity_bytes: 1 << 30,
            max_record_bytes: 8 << 20,
            full_policy: FullPolicy::Reject,
            queue_capacity: 65_536,
            max_batch_bytes: 16 << 20,
        }
    }
}

/// Smallest segment the log accepts.
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;
/// Largest segment the log accepts (offsets stay far from `u32` limits in the frame).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

impl WalConfig {
    /// Checks every bound; the error names the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes = {} must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        if self.capacity_bytes < 2 * self.segment_bytes {
            return bad(format!(
                "capacity_bytes = {} must hold at least two segments of {} bytes",
                self.capacity_bytes, self.segment_bytes
            ));
        }
        let room = self.segment_bytes - SEGMENT_HEADER_LEN - FRAME_HEADER_LEN;
        if self.max_record_bytes == 0 || self.max_record_bytes > room {
            return bad(format!(
                "max_record_bytes = {} must be between 1 and {room} (a segment minus its headers)",
                self.max_record_bytes
            ));
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1".into());
        }
        if self.max_batch_bytes < self.max_record_bytes {
            return bad(format!(
                "max_batch_bytes = {} must be at least max_record_bytes = {}",
                self.max_batch_bytes, self.max_record_bytes
            ));
        }
        Ok(())
    }

    /// Number of segment slots in the ring.
    pub fn slots(&self) -> u64 {
        self.capacity_bytes / self.segment_bytes
    }
}
