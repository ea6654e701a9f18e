//! The last minutes of the daemon, one sample a second, kept in memory: the admin status's
//! rates and the console's charts are computed from it. Bounded by `admin.history`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Totals at one moment. Counters count since the daemon started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken (ms since the epoch).
    pub time_ms: i64,
    /// Records durable in the logs, every partition together (their last LSNs).
    pub appended: u64,
    /// Records appended but not yet confirmed.
    pub unpublished: u64,
    /// Rows ClickHouse confirmed.
    pub rows_confirmed: u64,
    /// Events dead-lettered by the publishers.
    pub dead_lettered: u64,
    /// Whether ClickHouse was connected and answering.
    pub clickhouse_up: bool,
}

/// Rates over a recent window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// The window the rates cover, in seconds (0 until two samples exist).
    pub window_seconds: f64,
    /// Records appended to the logs per second.
    pub appended_per_second: f64,
    /// Rows confirmed by ClickHouse per second.
    pub rows_per_second: f64,
    /// Events dead-lettered per second.
    pub dead_lettered_per_second: f64,
}

/// A bounded ring of samples.
#[derive(Debug)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    capacity: usize,
}

/// The window [`History::rates`] looks back over.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

impl History {
    /// Room for `keep` of samples taken every `every`.
    pub fn new(keep: Duration, every: Duration) -> History {
        let capacity = (keep.as_millis() / every.as_millis().max(1)).max(2) as usize;
        History {
            samples: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    /// Adds a sample, forgetting the oldest when full.
    pub fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == self.capacity {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Every sample, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.iter().copied().collect()
    }

    /// The rates between the newest sample and the oldest one at most [`RATE_WINDOW`] older.
    pub fn rates(&self) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = samples.back() else {
            return Rates::default();
        };
        let window = RATE_WINDOW.as_millis() as i64;
        let Some(first) = samples.iter().find(|s| last.time_ms - s.time_ms <= window) else {
            return Rates::default();
        };
        let seconds = (last.time_ms - first.time_ms) as f64 / 1000.0;
        if seconds <= 0.0 {
            return Rates::default();
        }
        let per_second = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
        Rates {
            window_seconds: seconds,
            appended_per_second: per_second(first.appended, last.appended),
            rows_per_second: per_second(first.rows_confirmed, last.rows_confirmed),
            dead_lettered_per_second: per_second(first.dead_lettered, last.dead_lettered),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(time_ms: i64, appended: u64) -> Sample {
        Sample {
            time_ms,
            appended,
            unpublished: 0,
            rows_confirmed: appended / 2,
            dead_lettered: 0,
            clickhouse_up: true,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let h = History::new(Duration::from_secs(3), Duration::from_secs(1));
        for t in 0..5 {
            h.push(sample(t * 1000, 0));
        }
        let times: Vec<_> = h.samples().iter().map(|s| s.time_ms).collect();
        assert_eq!(times, [2000, 3000, 4000]);
    }

    #[test]
    fn rates_look_back_over_the_window_only() {
        let h = History::new(Duration::from_secs(60), Duration::from_secs(1));
        assert_eq!(h.rates(), Rates::default());
        h.push(sample(0, 0));
        // 1 000 records in the first second, then 100 a second for 10 seconds.
        h.push(sample(1000, 1000));
        for s in 2..=11 {
            h.push(sample(s * 1000, 1000 + 100 * (s as u64 - 1)));
        }
        let r = h.rates();
        assert_eq!(r.window_seconds, 10.0);
        assert_eq!(r.appended_per_second, 100.0);
        assert_eq!(r.rows_per_second, 50.0);
    }
}
