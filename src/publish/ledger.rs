//! The batch ledger: the LSN range of every batch, recorded durably *before* the batch is
//! delivered, so that after a crash (or in `sluice wal replay`) the same ranges are formed again
//! and carry the same deduplication tokens.
//!
//! # Format
//!
//! Each partition's ledger is a small `sluice-wal` log of its own in
//! `DATA_DIR/publish/partition-NNN/` (64 KiB segments, 1 MiB in all, the drop-oldest policy,
//! so it keeps the newest ~30 000 batches and never fills). One record per batch:
//!
//! ```text
//! 0  1  version (1)
//! 1  8  first LSN of the batch (u64, little-endian)
//! 9  8  last LSN of the batch (u64, little-endian)
//! ```
//!
//! Reusing the WAL crate gives the ledger the WAL's framing, CRCs, torn-tail handling and
//! fdatasync-before-acknowledge, and its kill -9 harness, instead of a second hand-written
//! file format. An append returns only once the record is durable.
//!
//! # Which batch is pending
//!
//! The newest record whose range ends after the partition's checkpoint is the batch that was
//! (maybe) being delivered when the process stopped: [`Ledger::pending`]. It is honoured only
//! when it starts exactly at `checkpoint + 1` and the log still holds its last record;
//! otherwise (the log was replaced, or drop-oldest dropped part of it) batches are formed
//! afresh.

use std::path::{Path, PathBuf};

use sluice_wal::{FullPolicy, LogView, Lsn, Wal, WalConfig};

/// Directory under `data_dir` holding every partition's ledger.
pub const LEDGER_DIR: &str = "publish";
/// The record's version byte.
pub const LEDGER_VERSION: u8 = 1;
const RECORD_LEN: usize = 17;

/// A batch's place in its partition's log: every record from `first` to `last`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchRange {
    /// Its first record.
    pub first: Lsn,
    /// Its last record.
    pub last: Lsn,
}

impl BatchRange {
    /// The ClickHouse insert deduplication token: `sluice-{partition}-{first}-{last}`.
    pub fn token(&self, partition: usize) -> String {
        format!("sluice-{partition}-{}-{}", self.first, self.last)
    }

    /// Whether `lsn` is in the range.
    pub fn contains(&self, lsn: Lsn) -> bool {
        self.first <= lsn && lsn <= self.last
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_LEN);
        out.push(LEDGER_VERSION);
        out.extend_from_slice(&self.first.0.to_le_bytes());
        out.extend_from_slice(&self.last.0.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<BatchRange> {
        if b.len() != RECORD_LEN || b[0] != LEDGER_VERSION {
            return None;
        }
        let first = u64::from_le_bytes(b[1..9].try_into().ok()?);
        let last = u64::from_le_bytes(b[9..17].try_into().ok()?);
        (first >= 1 && first <= last).then_some(BatchRange {
            first: Lsn(first),
            last: Lsn(last),
        })
    }
}

/// `data_dir/publish/partition-{index:03}`.
pub fn ledger_dir(data_dir: &Path, partition: usize) -> PathBuf {
    data_dir
        .join(LEDGER_DIR)
        .join(format!("partition-{partition:03}"))
}

/// The ledger log's settings.
pub fn ledger_config() -> WalConfig {
    WalConfig {
        segment_bytes: sluice_wal::MIN_SEGMENT_BYTES,
        capacity_bytes: 16 * sluice_wal::MIN_SEGMENT_BYTES,
        max_record_bytes: 1024,
        full_policy: FullPolicy::DropOldest,
        queue_capacity: 16,
        max_batch_bytes: 64 << 10,
    }
}

/// One partition's ledger, open for writing (the publisher's).
#[derive(Debug)]
pub struct Ledger {
    wal: Wal,
    /// The newest recorded range.
    newest: Option<BatchRange>,
}

impl Ledger {
    /// Opens (creating) the ledger of `partition`. Blocking.
    pub fn open(data_dir: &Path, partition: usize) -> sluice_wal::Result<Ledger> {
        let dir = ledger_dir(data_dir, partition);
        std::fs::create_dir_all(&dir).map_err(|e| sluice_wal::Error::Io {
            op: "create ledger directory",
            path: dir.clone(),
            source: e,
        })?;
        let wal = Wal::open(&dir, ledger_config())?;
        let first = wal.status().first_lsn;
        let mut reader = wal.reader(first);
        let mut newest = None;
        while let Some(r) = reader.next()? {
            if let Some(range) = BatchRange::decode(&r.payload) {
                newest = Some(range);
            }
        }
        Ok(Ledger { wal, newest })
    }

    /// The batch that must be re-formed first, given the partition's checkpoint and last
    /// durable LSN (see the module docs).
    pub fn pending(&self, checkpoint: Lsn, last_lsn: Lsn) -> Option<BatchRange> {
        self.newest
            .filter(|r| r.first == checkpoint.next() && r.last <= last_lsn)
    }

    /// Records `range` durably (returns after fdatasync). Recording the same range as the
    /// newest again is a no-op.
    pub fn record(&mut self, range: BatchRange) -> sluice_wal::Result<()> {
        if self.newest == Some(range) {
            return Ok(());
        }
        // Never checkpointed: the drop-oldest policy recycles the oldest records when the
        // ring is full, which is exactly the retention wanted.
        self.wal.append(range.encode())?;
        self.newest = Some(range);
        Ok(())
    }

    /// Closes the ledger's log.
    pub fn close(self) -> sluice_wal::Result<()> {
        self.wal.close()
    }
}

/// Every range recorded for `partition` that overlaps `from..=to`, oldest first, read without
/// taking the lock (usable while the daemon runs). A missing ledger is an empty one.
pub fn recorded_ranges(
    data_dir: &Path,
    partition: usize,
    from: Lsn,
    to: Lsn,
) -> sluice_wal::Result<Vec<BatchRange>> {
    let dir = ledger_dir(data_dir, partition);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let view = LogView::open(&dir, &ledger_config())?;
    let mut reader = view.reader(view.status().first_lsn);
    let mut out: Vec<BatchRange> = Vec::new();
    while let Some(r) = reader.next()? {
        let Some(range) = BatchRange::decode(&r.payload) else {
            continue;
        };
        if range.last < from || range.first > to {
            continue;
        }
        // A re-recorded range (the same batch after a restart) or one overlapping a newer
        // record: the newer one wins, as it is what was delivered last.
        out.retain(|o| o.last < range.first || o.first > range.last);
        out.push(range);
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64) -> BatchRange {
        BatchRange {
            first: Lsn(first),
            last: Lsn(last),
        }
    }

    #[test]
    fn tokens_name_the_partition_and_both_ends() {
        assert_eq!(r(5, 9).token(2), "sluice-2-5-9");
    }

    #[test]
    fn ranges_round_trip_and_garbage_is_ignored() {
        assert_eq!(BatchRange::decode(&r(1, 3).encode()), Some(r(1, 3)));
        assert_eq!(BatchRange::decode(&r(3, 1).encode()), None);
        assert_eq!(BatchRange::decode(b"short"), None);
    }

    #[test]
    fn the_newest_range_survives_reopening_and_is_pending_only_at_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), 0).unwrap();
        assert_eq!(ledger.pending(Lsn(0), Lsn(100)), None);
        ledger.record(r(1, 10)).unwrap();
        ledger.record(r(11, 20)).unwrap();
        ledger.close().unwrap();

        let ledger = Ledger::open(dir.path(), 0).unwrap();
        assert_eq!(ledger.pending(Lsn(10), Lsn(100)), Some(r(11, 20)));
        // Already confirmed, or the log does not hold the range: not pending.
        assert_eq!(ledger.pending(Lsn(20), Lsn(100)), None);
        assert_eq!(ledger.pending(Lsn(10), Lsn(15)), None);
        ledger.close().unwrap();

        assert_eq!(
            recorded_ranges(dir.path(), 0, Lsn(5), Lsn(12)).unwrap(),
            vec![r(1, 10), r(11, 20)]
        );
        assert!(recorded_ranges(dir.path(), 1, Lsn(1), Lsn(9))
            .unwrap()
            .is_empty());
    }
}
