//! Retention: evicting dead letters by age and by the store's size, so the store stays bounded
//! without an operator running `sluice dlq purge`.
//!
//! # What a pass evicts
//!
//! [`Store::enforce_retention`] applies two limits, in this order:
//!
//! 1. **`dead_letter.max_age`**: an entry whose [`Entry::time_ms`](super::Entry::time_ms) (when
//!    it was last written to the store) is more than `max_age` before now is evicted. The pass
//!    visits only the keys whose request was received before that cutoff: keys lead with the
//!    receive time, and an entry is written after its request was received, so no later key
//!    holds an entry that old. (If the clock was stepped back between receiving a request and
//!    dead-lettering it, the entry can look written before it was received; it is then evicted
//!    late, by at most the step.)
//! 2. **`dead_letter.max_bytes`**: while [`Store::stored_bytes`] exceeds `max_bytes`, the
//!    oldest entry is evicted, *oldest* meaning first in key order: earliest receive time, then
//!    partition, LSN and event index. `time_ms` plays no part here: a replay that fails again
//!    rewrites an entry but keeps its key, and with it its place in line.
//!
//! An entry is removed only if its value is still the one the pass judged (a compare-and-swap),
//! so one rewritten meanwhile is judged again by the next pass. An entry that does not decode
//! (corruption, or written by a newer sluice) is never evicted: its age and category are
//! unknown, and retention must not destroy what it cannot read. It still counts toward
//! `max_bytes`, and every pass that meets it says so in the log.
//!
//! # Nothing leaves silently
//!
//! The removals are flushed before the pass returns. Every one is counted in
//! `sluice_dead_letters_evicted_total{reason, category}` ([`crate::metrics::dead_letter`]), and
//! a pass that evicted logs, per limit, the count by category, the bytes, and the first and last
//! evicted id in key order (`info` for `max_age`, the expected way out; `warn` for `max_bytes`,
//! which means failures arrive faster than the store was sized for).
//!
//! # Cost
//!
//! A pass reads the entries received before the age cutoff, plus, while the store is over
//! `max_bytes`, the entries it evicts from the front; of each it decodes only the write time
//! and category, skipping the raw request. The byte total is a running count kept by the store,
//! not a sum taken per pass, so a store within its limits costs a pass only its expired entries
//! and the old ones rewritten since.
//!
//! # The loop
//!
//! In the daemon, [`retention_loop`] runs a pass when it starts (a daemon that was down for a
//! while catches up at once) and then every `dead_letter.retention_interval`, each on a
//! blocking thread, until its [`Shutdown`] fires. A pass in progress is finished before the
//! loop returns, so nothing holds the store once the server has stopped. A failed pass is
//! logged and tried again at the next interval.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{DeadLetterError, EntryId, Store, ENTRY_VERSION};
use crate::config::units::{ByteSize, HumanDuration};
use crate::event::FailureCategory;
use crate::shutdown::Shutdown;

/// The limits a retention pass enforces; `None` turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Evict entries written to the store longer ago than this.
    pub max_age: Option<Duration>,
    /// Evict the oldest entries while the store holds more than this many bytes.
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// True when neither limit is set, so a pass has nothing to do.
    pub fn is_off(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// Why retention removed an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvictionReason {
    /// Written longer ago than `dead_letter.max_age`.
    MaxAge,
    /// Among the oldest while the store exceeded `dead_letter.max_bytes`.
    MaxBytes,
}

impl EvictionReason {
    /// The stable name: the metric's `reason` label, and the key of the limit.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::MaxAge => "max_age",
            EvictionReason::MaxBytes => "max_bytes",
        }
    }
}

/// What one limit did in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Entries removed, by failure category.
    pub by_category: BTreeMap<FailureCategory, u64>,
    /// Their size as [`Store::stored_bytes`] counts it.
    pub bytes: u64,
    /// The first removed entry in key order.
    pub oldest: Option<EntryId>,
    /// The last removed entry in key order.
    pub newest: Option<EntryId>,
    /// Entries the limit would have judged but could not decode, and so kept.
    pub unreadable: u64,
    /// The first of them: its id, or its raw key when that is not an id either.
    pub first_unreadable: Option<String>,
}

impl Evictions {
    /// Entries removed.
    pub fn entries(&self) -> u64 {
        self.by_category.values().sum()
    }

    fn removed(&mut self, id: EntryId, category: FailureCategory, bytes: u64) {
        *self.by_category.entry(category).or_default() += 1;
        self.bytes += bytes;
        self.oldest = Some(self.oldest.map_or(id, |o| o.min(id)));
        self.newest = Some(self.newest.map_or(id, |n| n.max(id)));
    }

    fn kept_unreadable(&mut self, key: &[u8]) {
        self.unreadable += 1;
        self.first_unreadable.get_or_insert_with(|| {
            EntryId::from_key(key).map_or_else(|| format!("{key:?}"), |id| id.to_string())
        });
    }
}

/// What one [`Store::enforce_retention`] pass removed, by limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Removed by `dead_letter.max_age`.
    pub max_age: Evictions,
    /// Removed by `dead_letter.max_bytes` (after `max_age` had its turn).
    pub max_bytes: Evictions,
}

impl Evicted {
    /// Entries removed by either limit.
    pub fn entries(&self) -> u64 {
        self.max_age.entries() + self.max_bytes.entries()
    }

    /// Each limit's evictions with its reason.
    pub fn by_reason(&self) -> [(EvictionReason, &Evictions); 2] {
        [
            (EvictionReason::MaxAge, &self.max_age),
            (EvictionReason::MaxBytes, &self.max_bytes),
        ]
    }
}

/// The part of an entry retention decodes; the rest, the raw request above all, is skipped.
#[derive(Deserialize)]
struct Stamp {
    time_ms: i64,
    category: FailureCategory,
}

impl Stamp {
    /// The stamp of a stored value, `None` when it does not decode as an entry.
    fn decode(value: &[u8]) -> Option<Stamp> {
        match value.split_first()? {
            (&ENTRY_VERSION, rest) => rmp_serde::from_slice(rest).ok(),
            _ => None,
        }
    }
}

impl Store {
    /// One retention pass at `now_ms` (ms since the epoch): removes what `retention`'s limits
    /// evict (see [the module docs](self)), flushes, counts and logs the removals, and returns
    /// them. Blocking. When it fails part-way, what it removed so far is still flushed,
    /// counted and logged.
    pub fn enforce_retention(
        &self,
        now_ms: i64,
        retention: &Retention,
    ) -> Result<Evicted, DeadLetterError> {
        let mut evicted = Evicted::default();
        let passes = self
            .evict_expired(now_ms, retention.max_age, &mut evicted.max_age)
            .and_then(|()| self.evict_oldest(retention.max_bytes, &mut evicted.max_bytes));
        let flushed = if evicted.entries() > 0 {
            self.flush()
        } else {
            Ok(())
        };
        self.report(&evicted, retention);
        passes.and(flushed).map(|()| evicted)
    }

    fn evict_expired(
        &self,
        now_ms: i64,
        max_age: Option<Duration>,
        out: &mut Evictions,
    ) -> Result<(), DeadLetterError> {
        let Some(max_age) = max_age else {
            return Ok(());
        };
        let cutoff = now_ms.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        if cutoff <= 0 {
            return Ok(());
        }
        // Every key received before the cutoff; the module docs say why later ones need no look.
        let end = EntryId {
            received_at_ms: cutoff as u64,
            partition: 0,
            lsn: 0,
            index: 0,
        }
        .to_key();
        for item in self.db.range(..end) {
            let (key, value) = item.map_err(|e| self.storage(e))?;
            match EntryId::from_key(&key).zip(Stamp::decode(&value)) {
                None => out.kept_unreadable(&key),
                Some((id, stamp)) if stamp.time_ms < cutoff => {
                    self.evict(id, &key, &value, stamp.category, out)?
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn evict_oldest(
        &self,
        max_bytes: Option<u64>,
        out: &mut Evictions,
    ) -> Result<(), DeadLetterError> {
        let Some(max_bytes) = max_bytes else {
            return Ok(());
        };
        let mut entries = self.db.iter();
        while self.stored_bytes() > max_bytes {
            let Some(item) = entries.next() else {
                break;
            };
            let (key, value) = item.map_err(|e| self.storage(e))?;
            match EntryId::from_key(&key).zip(Stamp::decode(&value)) {
                None => out.kept_unreadable(&key),
                Some((id, stamp)) => self.evict(id, &key, &value, stamp.category, out)?,
            }
        }
        Ok(())
    }

    /// Removes `key` if it still holds `value`, and accounts for it.
    fn evict(
        &self,
        id: EntryId,
        key: &[u8],
        value: &sled::IVec,
        category: FailureCategory,
        out: &mut Evictions,
    ) -> Result<(), DeadLetterError> {
        let swapped = self
            .db
            .compare_and_swap(key, Some(value), None::<&[u8]>)
            .map_err(|e| self.storage(e))?;
        if swapped.is_ok() {
            self.tally(value, -1);
            out.removed(id, category, value.len() as u64);
        }
        Ok(())
    }

    /// Counts every eviction in the metric and logs each limit's work.
    fn report(&self, evicted: &Evicted, retention: &Retention) {
        for (reason, ev) in evicted.by_reason() {
            let label = reason.as_str();
            for (&category, &entries) in &ev.by_category {
                crate::metrics::dead_letter::evicted(label, category, entries);
            }
            if ev.entries() > 0 {
                let categories = ev
                    .by_category
                    .iter()
                    .map(|(c, n)| format!("{}={n}", c.as_str()))
                    .collect::<Vec<_>>()
                    .join(",");
                let oldest = ev.oldest.map(|id| id.to_string()).unwrap_or_default();
                let newest = ev.newest.map(|id| id.to_string()).unwrap_or_default();
                match reason {
                    EvictionReason::MaxAge => tracing::info!(reason = label,
                        entries = ev.entries(), bytes = ev.bytes, categories, oldest, newest,
                        max_age = %HumanDuration(retention.max_age.unwrap_or_default()),
                        "evicted dead letters written longer ago than dead_letter.max_age"),
                    EvictionReason::MaxBytes => tracing::warn!(reason = label,
                        entries = ev.entries(), bytes = ev.bytes, categories, oldest, newest,
                        max_bytes = %ByteSize(retention.max_bytes.unwrap_or_default()),
                        stored_bytes = self.stored_bytes(),
                        "the dead-letter store exceeded dead_letter.max_bytes; evicted its oldest entries"),
                }
            }
            if ev.unreadable > 0 {
                tracing::warn!(reason = label, entries = ev.unreadable,
                    first = ev.first_unreadable.as_deref().unwrap_or_default(),
                    "dead-letter entries that do not decode are kept by retention (their age and \
                     category are unknown); stop the daemon and inspect them with `sluice dlq show`");
            }
        }
    }
}

/// Runs [`Store::enforce_retention`] once at start and then every `interval`, each pass on a
/// blocking thread, until `shutdown` fires; a pass in progress is finished first. Returns at
/// once when `retention` sets no limit.
pub async fn retention_loop(
    store: Store,
    retention: Retention,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    if retention.is_off() {
        tracing::info!("dead-letter retention is off (dead_letter.max_age and max_bytes are 0)");
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopped() => return,
            _ = tick.tick() => {}
        }
        let pass = store.clone();
        let done = tokio::task::spawn_blocking(move || {
            pass.enforce_retention(crate::wire::time::now_ms(), &retention)
        })
        .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, code = e.code(), retry_in = ?interval,
                "dead-letter retention pass failed"),
            Err(e) => tracing::error!(error = %e, retry_in = ?interval,
                "dead-letter retention pass panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadletter::{Entry, Filter, WHOLE_REQUEST};

    const HOUR_MS: i64 = 3_600_000;
    const NOW: i64 = 1_718_000_000_000;

    /// An entry of a request received at `received_at_ms`, written to the store at `time_ms`.
    fn entry(received_at_ms: i64, time_ms: i64, category: FailureCategory) -> Entry {
        Entry {
            id: EntryId {
                received_at_ms: received_at_ms as u64,
                partition: 0,
                lsn: received_at_ms as u64,
                index: WHOLE_REQUEST,
            },
            time_ms,
            category,
            messages: vec!["bad".into()],
            attempts: 1,
            event_payload: None,
            envelope: vec![7; 100],
        }
    }

    fn store_with(entries: &[Entry]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_all(entries).unwrap();
        store.flush().unwrap();
        (dir, store)
    }

    fn ids(store: &Store) -> Vec<EntryId> {
        store
            .list(&Filter::default())
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect()
    }

    fn size(entries: &[Entry]) -> u64 {
        entries.iter().map(|e| e.encode().len() as u64).sum()
    }

    #[test]
    fn entries_written_longer_ago_than_max_age_are_evicted_and_newer_ones_stay() {
        use FailureCategory::{AdapterFailure as Adapter, SchemaViolation as Schema};
        let old_a = entry(NOW - 50 * HOUR_MS, NOW - 49 * HOUR_MS, Schema);
        let old_b = entry(NOW - 30 * HOUR_MS, NOW - 30 * HOUR_MS, Adapter);
        // Received long ago but rewritten (a replay that failed again) an hour ago.
        let rewritten = entry(NOW - 40 * HOUR_MS, NOW - HOUR_MS, Schema);
        let fresh = entry(NOW - HOUR_MS, NOW - HOUR_MS, Schema);
        // Its envelope was unreadable, so its receive time is unknown (0).
        let mut unknown_old = entry(0, NOW - 25 * HOUR_MS, Schema);
        unknown_old.id.lsn = 1;
        let mut unknown_fresh = entry(0, NOW, Schema);
        unknown_fresh.id.lsn = 2;
        let all = [
            old_a.clone(),
            old_b.clone(),
            rewritten.clone(),
            fresh.clone(),
            unknown_old.clone(),
            unknown_fresh.clone(),
        ];
        let (_dir, store) = store_with(&all);
        let retention = Retention {
            max_age: Some(Duration::from_secs(24 * 3600)),
            max_bytes: None,
        };

        let evicted = store.enforce_retention(NOW, &retention).unwrap();

        assert_eq!(ids(&store), [unknown_fresh.id, rewritten.id, fresh.id]);
        let ev = &evicted.max_age;
        assert_eq!(ev.by_category, BTreeMap::from([(Adapter, 1), (Schema, 2)]));
        assert_eq!(ev.oldest, Some(unknown_old.id));
        assert_eq!(ev.newest, Some(old_b.id));
        assert_eq!(ev.bytes, size(&[old_a, old_b, unknown_old]));
        assert_eq!(evicted.max_bytes, Evictions::default());
        assert_eq!(
            store.stored_bytes(),
            size(&[rewritten, fresh, unknown_fresh])
        );
        // The removals were flushed: a second pass finds nothing left to do.
        assert_eq!(
            store.enforce_retention(NOW, &retention).unwrap().entries(),
            0
        );
    }

    #[test]
    fn an_entry_exactly_max_age_old_stays() {
        let edge = entry(
            NOW - 2 * HOUR_MS,
            NOW - HOUR_MS,
            FailureCategory::SchemaViolation,
        );
        let (_dir, store) = store_with(std::slice::from_ref(&edge));
        let retention = Retention {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: None,
        };
        assert_eq!(
            store.enforce_retention(NOW, &retention).unwrap().entries(),
            0
        );
        assert_eq!(ids(&store), [edge.id]);
        let later = store.enforce_retention(NOW + 1, &retention).unwrap();
        assert_eq!(later.max_age.entries(), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn over_max_bytes_the_oldest_entries_in_key_order_are_evicted_until_the_rest_fit() {
        use FailureCategory::SchemaViolation as Schema;
        // Key order (receive time) differs from write order: the first key was written last.
        let entries: Vec<Entry> = (0..10)
            .map(|i| entry(NOW - (10 - i) * HOUR_MS, NOW - i * HOUR_MS, Schema))
            .collect();
        let one = size(&entries[..1]);
        assert!(entries.iter().all(|e| e.encode().len() as u64 == one));
        let (_dir, store) = store_with(&entries);
        assert_eq!(store.stored_bytes(), 10 * one);
        // Room for three and a half entries: the newest three stay.
        let max_bytes = 3 * one + one / 2;
        let retention = Retention {
            max_age: None,
            max_bytes: Some(max_bytes),
        };

        let evicted = store.enforce_retention(NOW, &retention).unwrap();

        let kept: Vec<EntryId> = entries[7..].iter().map(|e| e.id).collect();
        assert_eq!(ids(&store), kept);
        assert_eq!(store.stored_bytes(), 3 * one);
        let ev = &evicted.max_bytes;
        assert_eq!(ev.by_category, BTreeMap::from([(Schema, 7)]));
        assert_eq!(ev.bytes, 7 * one);
        assert_eq!(
            (ev.oldest, ev.newest),
            (Some(entries[0].id), Some(entries[6].id))
        );
        assert_eq!(evicted.max_age, Evictions::default());
    }

    #[test]
    fn max_age_has_its_turn_before_max_bytes() {
        use FailureCategory::SchemaViolation as Schema;
        let entries: Vec<Entry> = (0..4)
            .map(|i| entry(NOW - (40 - i) * HOUR_MS, NOW - (40 - i) * HOUR_MS, Schema))
            .chain((0..4).map(|i| entry(NOW - (4 - i) * HOUR_MS, NOW - (4 - i) * HOUR_MS, Schema)))
            .collect();
        let one = size(&entries[..1]);
        let (_dir, store) = store_with(&entries);
        let retention = Retention {
            max_age: Some(Duration::from_secs(24 * 3600)),
            max_bytes: Some(2 * one),
        };
        let evicted = store.enforce_retention(NOW, &retention).unwrap();
        assert_eq!(evicted.max_age.entries(), 4);
        assert_eq!(evicted.max_bytes.entries(), 2);
        assert_eq!(evicted.max_bytes.oldest, Some(entries[4].id));
        assert_eq!(ids(&store), [entries[6].id, entries[7].id]);
    }

    #[test]
    fn disabled_limits_evict_nothing() {
        let entries: Vec<Entry> = (0..5)
            .map(|i| entry(i * HOUR_MS, i * HOUR_MS, FailureCategory::SchemaViolation))
            .collect();
        let (_dir, store) = store_with(&entries);
        let config = crate::deadletter::DeadLetterConfig {
            max_age: HumanDuration(Duration::ZERO),
            max_bytes: ByteSize(0),
            ..Default::default()
        };
        let retention = config.retention();
        assert_eq!(retention, Retention::default());
        assert!(retention.is_off());
        assert_eq!(
            store.enforce_retention(NOW, &retention).unwrap(),
            Evicted::default()
        );
        assert_eq!(store.len(), 5);
        // Limits the store is within evict nothing either.
        let within = Retention {
            max_age: Some(Duration::from_millis(NOW as u64)),
            max_bytes: Some(store.stored_bytes()),
        };
        assert_eq!(
            store.enforce_retention(NOW, &within).unwrap(),
            Evicted::default()
        );
        assert_eq!(store.len(), 5);
    }

    #[test]
    fn the_defaults_turn_both_limits_on() {
        let retention = crate::deadletter::DeadLetterConfig::default().retention();
        assert_eq!(retention.max_age, Some(Duration::from_secs(30 * 24 * 3600)));
        assert_eq!(retention.max_bytes, Some(1 << 30));
    }

    #[test]
    fn an_entry_that_does_not_decode_is_kept_and_reported() {
        let old = entry(HOUR_MS, HOUR_MS, FailureCategory::SchemaViolation);
        let (dir, store) = store_with(std::slice::from_ref(&old));
        let garbled = EntryId {
            received_at_ms: 1,
            partition: 0,
            lsn: 0,
            index: 0,
        };
        // Bytes that are not an entry, as a damaged store would hold them; reopened so that
        // the store counts them as it counts whatever it finds on disk.
        store.db.insert(garbled.to_key(), vec![9u8; 40]).unwrap();
        store.flush().unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.stored_bytes(), old.encode().len() as u64 + 40);
        let retention = Retention {
            max_age: Some(Duration::from_secs(1)),
            max_bytes: Some(1),
        };
        let evicted = store.enforce_retention(NOW, &retention).unwrap();
        assert_eq!(evicted.max_age.entries(), 1);
        for ev in [&evicted.max_age, &evicted.max_bytes] {
            assert_eq!(ev.unreadable, 1);
            assert_eq!(ev.first_unreadable, Some(garbled.to_string()));
        }
        assert!(matches!(
            store.get(old.id),
            Err(DeadLetterError::NotFound(_))
        ));
        assert!(store.db.get(garbled.to_key()).unwrap().is_some());
        assert_eq!(store.stored_bytes(), 40);
    }

    #[test]
    fn an_entry_rewritten_after_it_was_judged_is_not_evicted() {
        let old = entry(HOUR_MS, HOUR_MS, FailureCategory::SchemaViolation);
        let (_dir, store) = store_with(std::slice::from_ref(&old));
        let judged = store.db.get(old.id.to_key()).unwrap().unwrap();
        let mut again = old.clone();
        again.time_ms = NOW;
        again.attempts = 2;
        store.put_all(&[again.clone()]).unwrap();
        let mut ev = Evictions::default();
        store
            .evict(old.id, &old.id.to_key(), &judged, old.category, &mut ev)
            .unwrap();
        assert_eq!(ev, Evictions::default());
        assert_eq!(store.get(old.id).unwrap(), again);
        assert_eq!(store.stored_bytes(), size(&[again]));
    }

    /// The value of the eviction counter for one label pair in the process's scrape.
    fn evicted_counter(reason: &str, category: FailureCategory) -> u64 {
        let text = crate::metrics::handle().render();
        let labels = [
            format!("reason=\"{reason}\""),
            format!("category=\"{}\"", category.as_str()),
        ];
        text.lines()
            .filter(|l| l.starts_with("sluice_dead_letters_evicted_total{"))
            .filter(|l| labels.iter().all(|p| l.contains(p.as_str())))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    #[test]
    fn every_eviction_is_counted_by_reason_and_category() {
        // Categories no other test evicts, so tests running alongside in this process
        // cannot move these counters.
        use FailureCategory::{EnrichmentFailure as Enrich, LoaderRejection as Loader};
        let before = [
            evicted_counter("max_age", Loader),
            evicted_counter("max_bytes", Enrich),
            evicted_counter("max_bytes", Loader),
        ];
        let mut entries = vec![
            entry(NOW - 50 * HOUR_MS, NOW - 50 * HOUR_MS, Loader),
            entry(NOW - 49 * HOUR_MS, NOW - 49 * HOUR_MS, Loader),
        ];
        entries.extend((0..4).map(|i| entry(NOW - (10 - i) * HOUR_MS, NOW, Enrich)));
        entries.push(entry(NOW - HOUR_MS, NOW, Loader));
        // Room for the newest two.
        let max_bytes = size(&entries[5..]);
        let (_dir, store) = store_with(&entries);
        let retention = Retention {
            max_age: Some(Duration::from_secs(24 * 3600)),
            max_bytes: Some(max_bytes),
        };
        let evicted = store.enforce_retention(NOW, &retention).unwrap();
        assert_eq!(evicted.entries(), 5);
        let after = [
            evicted_counter("max_age", Loader),
            evicted_counter("max_bytes", Enrich),
            evicted_counter("max_bytes", Loader),
        ];
        assert_eq!(
            [
                after[0] - before[0],
                after[1] - before[1],
                after[2] - before[2]
            ],
            [2, 3, 0]
        );
    }

    #[tokio::test]
    async fn the_loop_passes_at_start_and_every_interval_until_shutdown() {
        use FailureCategory::SchemaViolation as Schema;
        let now = crate::wire::time::now_ms();
        let (_dir, store) = store_with(&[entry(1, 1, Schema), entry(now, now, Schema)]);
        let retention = Retention {
            max_age: Some(Duration::from_secs(24 * 3600)),
            max_bytes: None,
        };
        let (stop, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(retention_loop(
            store.clone(),
            retention,
            Duration::from_millis(20),
            shutdown,
        ));
        // Bounds on waiting so that a loop that never passes fails the test instead of hanging.
        let until_one_left = || async {
            while store.len() != 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), until_one_left())
            .await
            .expect("the first pass never evicted the expired entry");
        store.put_all(&[entry(2, 2, Schema)]).unwrap();
        tokio::time::timeout(Duration::from_secs(30), until_one_left())
            .await
            .expect("a later pass never evicted the expired entry");
        stop.stop();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the loop did not end on shutdown")
            .unwrap();
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn the_loop_returns_at_once_when_retention_is_off() {
        let (_dir, store) = store_with(&[entry(1, 1, FailureCategory::SchemaViolation)]);
        let looping = retention_loop(
            store.clone(),
            Retention::default(),
            Duration::from_millis(1),
            Shutdown::never(),
        );
        tokio::time::timeout(Duration::from_secs(30), looping)
            .await
            .expect("the loop kept running with no limit to enforce");
        assert_eq!(store.len(), 1);
    }
}
