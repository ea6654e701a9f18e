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
//! # Which batches are pending
//!
//! A publisher may have several batches in flight (`publish.max_in_flight`), each recorded here
//! before it is sent, so after a crash several ranges past the checkpoint may have been (partly)
//! delivered. [`Ledger::pending`] returns them as a chain: the range starting exactly at
//! `checkpoint + 1`, then the one starting right after it, and so on, each ending no later than
//! the log's last record. Where two records start at the same LSN or overlap, the newer one
//! wins (it is what was sent last). The chain stops at the first gap; past it, batches are
//! formed afresh. Re-forming the chain with exactly these boundaries gives every batch that may
//! have reached the server the same rows and the same token.
//!
//! Recording a range that the chain already holds (the same batch re-formed after the restart)
//! appends nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_wal::fs::{FileSystem, StdFs};
use sluice_wal::{FullPolicy, LogView, Lsn, NoopObserver, Wal, WalConfig};

use crate::instance::InstanceId;

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
    /// The ClickHouse insert deduplication token: `sluice-{instance}-{partition}-{first}-{last}`.
    /// The instance id ([`crate::instance`]) keeps two instances' tokens apart: both number
    /// their partitions and records from the start.
    pub fn token(&self, instance: &InstanceId, partition: usize) -> String {
        format!("sluice-{instance}-{partition}-{}-{}", self.first, self.last)
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
    /// Every range on disk (newer records replacing the older ones they overlap), kept from
    /// [`Ledger::open`] until [`Ledger::pending`] has read it.
    loaded: Surviving,
    /// The pending chain not yet re-recorded, oldest first: recording its front again is a
    /// no-op.
    replaying: std::collections::VecDeque<BatchRange>,
}

impl Ledger {
    /// Opens (creating) the ledger of `partition`. Blocking.
    pub fn open(data_dir: &Path, partition: usize) -> sluice_wal::Result<Ledger> {
        Ledger::open_with(data_dir, partition, Arc::new(StdFs))
    }

    /// [`Ledger::open`] through the filesystem `fs` (the power-loss tests use a simulated one).
    pub fn open_with(
        data_dir: &Path,
        partition: usize,
        fs: Arc<dyn FileSystem>,
    ) -> sluice_wal::Result<Ledger> {
        // The log creates its directory and makes each new entry durable.
        let dir = ledger_dir(data_dir, partition);
        let wal = Wal::open_with(&dir, ledger_config(), fs, Arc::new(NoopObserver))?;
        let first = wal.status().first_lsn;
        let mut reader = wal.reader(first);
        let mut loaded = Surviving::default();
        while let Some(r) = reader.next()? {
            if let Some(range) = BatchRange::decode(&r.payload) {
                loaded.add(range);
            }
        }
        Ok(Ledger {
            wal,
            loaded,
            replaying: Default::default(),
        })
    }

    /// The batches that must be re-formed first, oldest first, given the partition's checkpoint
    /// and last durable LSN (see the module docs). Call once, before recording anything.
    pub fn pending(&mut self, checkpoint: Lsn, last_lsn: Lsn) -> Vec<BatchRange> {
        let mut chain = Vec::new();
        let mut next = checkpoint.next();
        for r in std::mem::take(&mut self.loaded).into_ranges() {
            if r.first == next && r.last <= last_lsn {
                chain.push(r);
                next = r.last.next();
            }
        }
        self.replaying = chain.iter().copied().collect();
        chain
    }

    /// Records `range` durably (returns after fdatasync). Recording the next range of the
    /// pending chain again is a no-op; anything else ends the chain.
    pub fn record(&mut self, range: BatchRange) -> sluice_wal::Result<()> {
        if self.replaying.front() == Some(&range) {
            self.replaying.pop_front();
            return Ok(());
        }
        self.replaying.clear();
        // Never checkpointed: the drop-oldest policy recycles the oldest records when the
        // ring is full, which is exactly the retention wanted.
        self.wal.append(range.encode())?;
        Ok(())
    }

    /// Closes the ledger's log.
    pub fn close(self) -> sluice_wal::Result<()> {
        self.wal.close()
    }
}

/// Every range on disk, by first LSN, newer records replacing the older ones they overlap (the
/// newer one is what was delivered last). Never overlapping, so sorted by both ends.
#[derive(Debug, Default)]
struct Surviving(std::collections::BTreeMap<Lsn, Lsn>);

impl Surviving {
    /// Adds `range` as the newest record.
    fn add(&mut self, range: BatchRange) {
        let overlapping: Vec<Lsn> = self
            .0
            .range(..=range.last)
            .rev()
            .take_while(|(_, last)| **last >= range.first)
            .map(|(first, _)| *first)
            .collect();
        for first in overlapping {
            self.0.remove(&first);
        }
        self.0.insert(range.first, range.last);
    }

    fn into_ranges(self) -> impl Iterator<Item = BatchRange> {
        self.0
            .into_iter()
            .map(|(first, last)| BatchRange { first, last })
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
    let mut all = Surviving::default();
    while let Some(r) = reader.next()? {
        // A re-recorded range (the same batch after a restart) or one overlapping a newer
        // record: the newer one wins, as it is what was delivered last.
        if let Some(range) = BatchRange::decode(&r.payload) {
            all.add(range);
        }
    }
    Ok(all
        .into_ranges()
        .filter(|r| r.last >= from && r.first <= to)
        .collect())
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
    fn tokens_name_the_instance_the_partition_and_both_ends() {
        let id = InstanceId::parse("00112233aabbccdd").unwrap();
        assert_eq!(r(5, 9).token(&id, 2), "sluice-00112233aabbccdd-2-5-9");
    }

    #[test]
    fn ranges_round_trip_and_garbage_is_ignored() {
        assert_eq!(BatchRange::decode(&r(1, 3).encode()), Some(r(1, 3)));
        assert_eq!(BatchRange::decode(&r(3, 1).encode()), None);
        assert_eq!(BatchRange::decode(b"short"), None);
    }

    #[test]
    fn the_recorded_ranges_survive_reopening_and_are_pending_only_from_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), 0).unwrap();
        assert_eq!(ledger.pending(Lsn(0), Lsn(100)), vec![]);
        ledger.record(r(1, 10)).unwrap();
        ledger.record(r(11, 20)).unwrap();
        ledger.close().unwrap();

        let pending = |checkpoint: u64, last: u64| {
            let mut ledger = Ledger::open(dir.path(), 0).unwrap();
            let p = ledger.pending(Lsn(checkpoint), Lsn(last));
            ledger.close().unwrap();
            p
        };
        assert_eq!(pending(10, 100), vec![r(11, 20)]);
        assert_eq!(pending(0, 100), vec![r(1, 10), r(11, 20)]);
        // Already confirmed, or the log does not hold the range: not pending.
        assert_eq!(pending(20, 100), vec![]);
        assert_eq!(pending(10, 15), vec![]);
        assert_eq!(pending(0, 15), vec![r(1, 10)]);
        // Not starting right after the checkpoint: formed afresh.
        assert_eq!(pending(5, 100), vec![]);

        assert_eq!(
            recorded_ranges(dir.path(), 0, Lsn(5), Lsn(12)).unwrap(),
            vec![r(1, 10), r(11, 20)]
        );
        assert!(recorded_ranges(dir.path(), 1, Lsn(1), Lsn(9))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_pending_chain_stops_at_a_gap_and_newer_records_replace_overlapping_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), 0).unwrap();
        for range in [r(1, 5), r(6, 9), r(10, 12), r(20, 30)] {
            ledger.record(range).unwrap();
        }
        // A later run closed the batch at 6..=8 (the log had dropped 9): it replaces 6..=9.
        ledger.record(r(6, 8)).unwrap();
        ledger.close().unwrap();

        let mut ledger = Ledger::open(dir.path(), 0).unwrap();
        assert_eq!(ledger.pending(Lsn(0), Lsn(100)), vec![r(1, 5), r(6, 8)]);
        ledger.close().unwrap();
        assert_eq!(
            recorded_ranges(dir.path(), 0, Lsn(1), Lsn(100)).unwrap(),
            vec![r(1, 5), r(6, 8), r(10, 12), r(20, 30)]
        );
    }

    #[test]
    fn re_recording_the_pending_chain_appends_nothing_and_a_new_range_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), 0).unwrap();
        for range in [r(1, 5), r(6, 9), r(10, 12)] {
            ledger.record(range).unwrap();
        }
        ledger.close().unwrap();

        let mut ledger = Ledger::open(dir.path(), 0).unwrap();
        assert_eq!(ledger.pending(Lsn(5), Lsn(100)), vec![r(6, 9), r(10, 12)]);
        let records = ledger.wal.status().last_lsn;
        ledger.record(r(6, 9)).unwrap();
        assert_eq!(
            ledger.wal.status().last_lsn,
            records,
            "re-formed, not recorded"
        );
        // The log lost record 12: the batch closes at 11 and is recorded; the chain is over.
        ledger.record(r(10, 11)).unwrap();
        ledger.record(r(12, 14)).unwrap();
        assert_eq!(ledger.wal.status().last_lsn, Lsn(records.0 + 2));
        ledger.close().unwrap();
        assert_eq!(
            recorded_ranges(dir.path(), 0, Lsn(1), Lsn(100)).unwrap(),
            vec![r(1, 5), r(6, 9), r(10, 11), r(12, 14)]
        );
    }

    /// Power cuts at random calls while ranges are recorded (over several 64 KiB segments of
    /// the ledger's log): every range whose `record` returned is found again, in order.
    #[test]
    fn every_recorded_range_survives_power_cuts() {
        use sluice_wal::fs::PowerLossFs;

        let data_dir = Path::new("/data/sluice");
        for seed in 0..25u64 {
            let fs = PowerLossFs::new();
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut recorded: Vec<BatchRange> = Vec::new();
            let mut life_ops = 3_000;
            for life in 0..5 {
                let start = fs.ops();
                let last = life == 4;
                if !last {
                    fs.cut_power_after(rng.u64(0..life_ops), rng.u64(..));
                }
                let context = format!("seed {seed}, life {life}");
                match Ledger::open_with(data_dir, 0, Arc::new(fs.clone())) {
                    Ok(mut ledger) if !fs.is_down() => {
                        let chain = ledger.pending(Lsn(0), Lsn(u64::MAX));
                        assert!(
                            chain.len() >= recorded.len()
                                && chain.len() <= recorded.len() + 1
                                && chain[..recorded.len()] == recorded[..],
                            "{context}: recorded {} ranges, found {}",
                            recorded.len(),
                            chain.len()
                        );
                        // One range in flight at the cut may have been kept.
                        recorded = chain;
                        let mut next = recorded.last().map_or(Lsn(1), |r| r.last.next());
                        for _ in 0..1_200 {
                            let range = BatchRange {
                                first: next,
                                last: Lsn(next.0 + rng.u64(0..500)),
                            };
                            match ledger.record(range) {
                                Ok(()) => recorded.push(range),
                                Err(_) if fs.is_down() => break,
                                Err(e) => panic!("{context}: record failed with the power on: {e}"),
                            }
                            next = range.last.next();
                        }
                        if !fs.is_down() {
                            fs.crash(rng.u64(..));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => assert!(fs.is_down(), "{context}: open failed: {e}"),
                }
                life_ops = life_ops.max(fs.ops() - start);
                fs.power_on();
            }
            let mut ledger = Ledger::open_with(data_dir, 0, Arc::new(fs.clone())).unwrap();
            let chain = ledger.pending(Lsn(0), Lsn(u64::MAX));
            assert!(
                chain.starts_with(&recorded),
                "seed {seed}: after the last cut"
            );
            assert!(
                recorded.len() > 2_000,
                "seed {seed}: the ledger rolled over"
            );
        }
    }
}
