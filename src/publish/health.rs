//! What the publishers report about themselves while they run, for the admin API's status:
//! per partition, how far behind it is, what it last confirmed and the last delivery failure
//! since then. The metrics carry the same facts as time series; this is the current value, in
//! one place the daemon can read without scraping itself.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// One partition publisher's latest report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PartitionHealth {
    /// Records in the log not yet confirmed, when the last batch was formed.
    pub lag_records: u64,
    /// Age of the oldest of them then, in seconds.
    pub lag_seconds: f64,
    /// Rows ClickHouse confirmed since the daemon started.
    pub rows_confirmed: u64,
    /// Events dead-lettered since the daemon started.
    pub dead_lettered: u64,
    /// When the last batch was confirmed (ms since the epoch).
    pub last_confirmed_ms: Option<i64>,
    /// The last delivery failure since the last confirmed batch, if any.
    pub last_error: Option<String>,
    /// When it happened (ms since the epoch).
    pub last_error_ms: Option<i64>,
}

/// The reports of every partition's publisher; shared by the publishers (writers) and the
/// admin API (reader).
#[derive(Debug, Default)]
pub struct Health {
    partitions: Mutex<BTreeMap<usize, PartitionHealth>>,
}

impl Health {
    fn update(&self, partition: usize, f: impl FnOnce(&mut PartitionHealth)) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        f(partitions.entry(partition).or_default());
    }

    /// The partition's lag when a batch was formed.
    pub fn lag(&self, partition: usize, records: u64, seconds: f64) {
        self.update(partition, |h| {
            h.lag_records = records;
            h.lag_seconds = seconds;
        });
    }

    /// A batch was confirmed at `now_ms`: clears the last failure.
    pub fn confirmed(&self, partition: usize, rows: u64, dead_lettered: u64, now_ms: i64) {
        self.update(partition, |h| {
            h.rows_confirmed += rows;
            h.dead_lettered += dead_lettered;
            h.last_confirmed_ms = Some(now_ms);
            h.last_error = None;
            h.last_error_ms = None;
        });
    }

    /// A delivery attempt failed at `now_ms`.
    pub fn failed(&self, partition: usize, error: String, now_ms: i64) {
        self.update(partition, |h| {
            h.last_error = Some(error);
            h.last_error_ms = Some(now_ms);
        });
    }

    /// Every partition's latest report.
    pub fn snapshot(&self) -> BTreeMap<usize, PartitionHealth> {
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmed_batch_clears_the_last_failure_and_adds_up() {
        let h = Health::default();
        h.failed(1, "connection refused".into(), 10);
        assert_eq!(
            h.snapshot()[&1].last_error.as_deref(),
            Some("connection refused")
        );
        h.confirmed(1, 5, 1, 20);
        h.confirmed(1, 7, 0, 30);
        h.lag(1, 3, 0.5);
        let p = &h.snapshot()[&1];
        assert_eq!(p.last_error, None);
        assert_eq!((p.rows_confirmed, p.dead_lettered), (12, 1));
        assert_eq!(p.last_confirmed_ms, Some(30));
        assert_eq!((p.lag_records, p.lag_seconds), (3, 0.5));
    }
}
