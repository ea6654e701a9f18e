//! A running daemon enforces `dead_letter.max_age` and `dead_letter.max_bytes` on its
//! dead-letter store, counts every eviction in `/metrics`, and leaves the rest intact.
//!
//! The store is seeded before the daemon starts (it admits one process at a time), the daemon's
//! first pass runs as it starts, and the store is read back after it has stopped.

mod http_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http_support::{start, test_config, IO_BOUND};
use sluice::config::{ByteSize, Config, HumanDuration};
use sluice::deadletter::{Entry, EntryId, Filter, Store, WHOLE_REQUEST};
use sluice::event::FailureCategory;

const HOUR_MS: i64 = 3_600_000;

/// An entry of a request received at `received_at_ms` and written to the store at `time_ms`,
/// holding `envelope_bytes` of raw request.
fn entry(
    received_at_ms: i64,
    time_ms: i64,
    category: FailureCategory,
    envelope_bytes: usize,
) -> Entry {
    Entry {
        id: EntryId {
            received_at_ms: received_at_ms as u64,
            partition: 1,
            lsn: received_at_ms as u64 % 1_000_000,
            index: WHOLE_REQUEST,
        },
        time_ms,
        category,
        messages: vec!["bad".into()],
        attempts: 1,
        event_payload: None,
        envelope: vec![b'x'; envelope_bytes],
    }
}

fn seed(config: &Config, entries: &[Entry]) {
    let store = Store::open(&config.dead_letter.path(&config.data_dir)).unwrap();
    store.put_all(entries).unwrap();
    store.flush().unwrap();
}

fn stored_ids(config: &Config) -> Vec<EntryId> {
    let store = Store::open(&config.dead_letter.path(&config.data_dir)).unwrap();
    let entries = store.list(&Filter::default()).unwrap();
    entries.into_iter().map(|e| e.id).collect()
}

/// The eviction counter's values for `reason`, by category, from one scrape.
async fn evicted(metrics_url: &str, reason: &str) -> BTreeMap<String, u64> {
    let text = reqwest::Client::builder()
        .timeout(IO_BOUND)
        .build()
        .unwrap()
        .get(metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("sluice_dead_letters_evicted_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap();
        if !labels.contains(&format!("reason=\"{reason}\"")) {
            continue;
        }
        let category = labels
            .split(',')
            .find_map(|l| l.strip_prefix("category=\""))
            .and_then(|c| c.strip_suffix('"'))
            .unwrap();
        out.insert(category.to_string(), value.trim().parse().unwrap());
    }
    out
}

/// Scrapes until the counter for `reason` reads `want`; fails after a generous bound instead of
/// hanging if the daemon never evicts.
async fn wait_for_evictions(metrics_url: &str, reason: &str, want: &BTreeMap<String, u64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = evicted(metrics_url, reason).await;
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's {reason} evictions are {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_evicts_dead_letters_written_longer_ago_than_max_age() {
    use FailureCategory::{AdapterFailure, SchemaViolation};
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.dead_letter.max_age = HumanDuration(Duration::from_secs(3600));
    config.dead_letter.max_bytes = ByteSize(0);
    config.dead_letter.retention_interval = HumanDuration(Duration::from_secs(1));
    config.validate().unwrap();
    let now = sluice::wire::time::now_ms();
    let expired = [
        entry(now - 5 * HOUR_MS, now - 5 * HOUR_MS, AdapterFailure, 10),
        entry(now - 4 * HOUR_MS, now - 4 * HOUR_MS, AdapterFailure, 10),
        entry(now - 3 * HOUR_MS, now - 2 * HOUR_MS, SchemaViolation, 10),
    ];
    // Received long ago, but written (a failed replay) a minute ago.
    let rewritten = entry(now - 6 * HOUR_MS, now - 60_000, SchemaViolation, 10);
    let fresh = entry(now - 60_000, now - 60_000, SchemaViolation, 10);
    let mut all = expired.to_vec();
    all.extend([rewritten.clone(), fresh.clone()]);
    seed(&config, &all);

    let (server, _base) = start(&config).await;
    let metrics_url = format!("http://{}/metrics", server.metrics_addr);
    let want = BTreeMap::from([
        ("adapter_failure".to_string(), 2),
        ("schema_violation".to_string(), 1),
    ]);
    wait_for_evictions(&metrics_url, "max_age", &want).await;
    server.shutdown().await.unwrap();

    assert_eq!(stored_ids(&config), [rewritten.id, fresh.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_evicts_the_oldest_dead_letters_once_the_store_exceeds_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.dead_letter.max_age = HumanDuration(Duration::ZERO);
    config.dead_letter.max_bytes = ByteSize(1 << 20);
    config.validate().unwrap();
    let now = sluice::wire::time::now_ms();
    // Six dead-lettered requests of 300 KiB received an hour apart, the oldest written last
    // (key order, not write time, decides): the newest three fit in 1 MiB, four do not.
    let entries: Vec<Entry> = (0..6)
        .map(|i| {
            let received = now - (6 - i) * HOUR_MS;
            entry(
                received,
                now - i * 1000,
                FailureCategory::LoaderRejection,
                300 << 10,
            )
        })
        .collect();
    seed(&config, &entries);

    let (server, _base) = start(&config).await;
    let metrics_url = format!("http://{}/metrics", server.metrics_addr);
    let want = BTreeMap::from([("loader_rejection".to_string(), 3)]);
    wait_for_evictions(&metrics_url, "max_bytes", &want).await;
    server.shutdown().await.unwrap();

    let kept: Vec<EntryId> = entries[3..].iter().map(|e| e.id).collect();
    assert_eq!(stored_ids(&config), kept);
}
