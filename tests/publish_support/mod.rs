//! Test doubles for the publisher's two seams, and a small harness around one partition.
//!
//! `LineProcessor` stands in for the Snowplow processor: each line of a request's body is one
//! event (`ok…` → a row, `reject…` → a row the sink refuses, `slow…` → a row that takes 20 ms
//! to process, `bad…` → a processing failure),
//! and a body of `BAD REQUEST` fails as a whole. `RecordingSink` stands in for ClickHouse: it
//! records every call (token and rows), can hold every batch or the batches of given tokens
//! until released or stopped, fail a number of attempts, and rejects rows whose `app_id`
//! starts with `reject`.

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice::deadletter::Store;
use sluice::envelope::Envelope;
use sluice::event::{Event, Failure, FailureCategory};
use sluice::instance::InstanceId;
use sluice::publish::process::Process;
use sluice::publish::{Deliver, DeliverError, Delivery, PublishConfig, Publishers, Shared};
use sluice::shutdown::Shutdown;
use sluice_wal::{Lsn, Wal, WalConfig};

/// Each body line is one event (see the module docs).
#[derive(Debug, Default)]
pub struct LineProcessor;

impl Process for LineProcessor {
    fn process(
        &self,
        envelope: &Envelope,
        partition: usize,
        lsn: Lsn,
        events: &mut Vec<Event>,
        failures: &mut Vec<Failure>,
    ) {
        let body = String::from_utf8_lossy(&envelope.body);
        if body == "BAD REQUEST" {
            failures.push(Failure {
                category: FailureCategory::AdapterFailure,
                messages: vec!["no adapter".into()],
                event_index: None,
                event_payload: None,
            });
            return;
        }
        for (i, line) in body.lines().enumerate() {
            if line.starts_with("bad") {
                failures.push(Failure {
                    category: FailureCategory::SchemaViolation,
                    messages: vec![format!("line {i} is bad")],
                    event_index: Some(i as u32),
                    event_payload: Some(line.to_string()),
                });
            } else if line.starts_with("ok")
                || line.starts_with("reject")
                || line.starts_with("slow")
            {
                if line.starts_with("slow") {
                    std::thread::sleep(Duration::from_millis(20));
                }
                events.push(Event {
                    app_id: Some(sluice::event::Text::from(line.to_string())),
                    wal_partition: Some(partition as u64),
                    wal_lsn: Some(lsn.0),
                    wal_index: Some(i as u64),
                    ..Event::default()
                });
            }
        }
    }
}

/// One call the sink received: its token and each row's (lsn, index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The token without its instance id (`sluice-0-1-3` for `sluice-{instance}-0-1-3`), so
    /// tests can spell positions; `raw_token` is what the sink was given.
    pub token: String,
    pub raw_token: String,
    pub rows: Vec<(u64, u64)>,
}

/// Records calls; see the module docs.
#[derive(Debug, Default)]
pub struct RecordingSink {
    pub calls: Mutex<Vec<Call>>,
    /// While true, a delivery waits (until released or stopped).
    pub hold: AtomicBool,
    /// This many attempts fail before any succeeds.
    pub fail_first: AtomicUsize,
    /// This many prepared batches are refused as stale (to be prepared again) first.
    pub stale_first: AtomicUsize,
    /// How many times a batch was prepared from scratch (its first rows added).
    pub prepared_batches: AtomicUsize,
    /// Batches with these tokens wait (until removed or stopped).
    pub held: Mutex<HashSet<String>>,
    /// Tokens of the calls that returned a confirmation, in the order they returned.
    pub confirmed: Mutex<Vec<String>>,
}

impl RecordingSink {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn tokens(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.token).collect()
    }

    /// Holds the batch with `token` until [`RecordingSink::release`].
    pub fn hold_token(&self, token: &str) {
        self.held.lock().unwrap().insert(token.to_string());
    }

    pub fn release(&self, token: &str) {
        self.held.lock().unwrap().remove(token);
    }

    pub fn confirmed(&self) -> Vec<String> {
        self.confirmed.lock().unwrap().clone()
    }
}

impl Deliver for RecordingSink {
    type Rows = Vec<Event>;

    fn prepare(&self, batch: &mut Vec<Event>, rows: &[Event], _expect_rows: usize) {
        if batch.is_empty() && !rows.is_empty() {
            self.prepared_batches.fetch_add(1, Ordering::SeqCst);
        }
        batch.extend_from_slice(rows);
    }

    async fn deliver_prepared<'a>(
        &'a self,
        partition: usize,
        batch: &'a Vec<Event>,
        token: &'a str,
        stop: &'a mut Shutdown,
    ) -> Result<Delivery, DeliverError> {
        if self
            .stale_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(DeliverError::Stale);
        }
        self.deliver(partition, batch, token, stop).await
    }

    async fn deliver<'a>(
        &'a self,
        _partition: usize,
        rows: &'a [Event],
        token: &'a str,
        stop: &'a mut Shutdown,
    ) -> Result<Delivery, DeliverError> {
        let raw_token = token;
        let token = &*without_instance(token);
        self.calls.lock().unwrap().push(Call {
            token: token.to_string(),
            raw_token: raw_token.to_string(),
            rows: rows
                .iter()
                .map(|r| (r.wal_lsn.unwrap(), r.wal_index.unwrap()))
                .collect(),
        });
        while self.hold.load(Ordering::SeqCst) || self.held.lock().unwrap().contains(token) {
            if stop.is_stopped() {
                return Err(DeliverError::Stopped);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(DeliverError::Failed {
                code: "test",
                message: "injected failure".into(),
            });
        }
        let rejected: Vec<(usize, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.app_id.as_deref().is_some_and(|a| a.starts_with("reject")))
            .map(|(i, _)| (i, "Cannot parse input: injected".to_string()))
            .collect();
        self.confirmed.lock().unwrap().push(token.to_string());
        Ok(Delivery {
            inserted: rows.len() - rejected.len(),
            rejected,
        })
    }
}

pub fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 << 10,
        capacity_bytes: 4 << 20,
        max_record_bytes: 64 << 10,
        ..WalConfig::default()
    }
}

/// An envelope whose body is `body`, received at `t` ms.
pub fn envelope(body: &str, t: i64) -> Envelope {
    Envelope {
        received_at_ms: t,
        route: "/com.snowplowanalytics.snowplow/tp2".into(),
        method: "POST".into(),
        path: "/com.snowplowanalytics.snowplow/tp2".into(),
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        peer: Some("127.0.0.1".into()),
        nuid: None,
    }
}

/// Polls `cond` until it holds; panics after a generous bound so a broken publisher fails the
/// test instead of hanging it.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One partition's log, dead-letter store and runtime under a temp dir.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub wal: Arc<Wal>,
    pub store: Store,
    pub runtime: tokio::runtime::Runtime,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::open(dir)
    }

    pub fn open(dir: tempfile::TempDir) -> Harness {
        let wal = Arc::new(Wal::open(dir.path().join("wal/partition-000"), wal_config()).unwrap());
        let store = Store::open(&dir.path().join("deadletter")).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Harness {
            dir,
            wal,
            store,
            runtime,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory's instance id (created on first use, like the daemon does).
    pub fn instance(&self) -> InstanceId {
        sluice::instance::load_or_create(self.data_dir()).unwrap()
    }

    pub fn append(&self, body: &str) -> Lsn {
        self.wal
            .append(envelope(body, 1_700_000_000_000).encode())
            .unwrap()
    }

    pub fn checkpoint(&self) -> Lsn {
        self.wal.status().checkpoint
    }

    pub fn start(&self, sink: Arc<RecordingSink>, config: PublishConfig) -> Publishers {
        Publishers::start(
            vec![(0, self.wal.clone())],
            Shared {
                processor: Arc::new(LineProcessor),
                sink,
                dead_letters: self.store.clone(),
                config,
                runtime: self.runtime.handle().clone(),
                data_dir: self.data_dir().to_path_buf(),
                instance: self.instance(),
                health: Default::default(),
            },
        )
        .unwrap()
    }

    /// Closes everything and hands back the directory (to reopen it, as after a restart).
    pub fn close(self) -> tempfile::TempDir {
        let Harness {
            dir,
            wal,
            store,
            runtime,
        } = self;
        store.flush().unwrap();
        drop(store);
        Arc::try_unwrap(wal)
            .expect("the publishers released the log")
            .close()
            .unwrap();
        runtime.shutdown_background();
        dir
    }
}

/// Stops publishers and checks they stopped cleanly.
pub fn stop(publishers: Publishers) {
    let (late, error) = publishers.stop();
    assert!(late.is_empty(), "publishers {late:?} did not stop");
    assert!(error.is_none(), "a publisher failed: {error:?}");
}

pub fn config(rows: usize, bytes: u64, age: Duration) -> PublishConfig {
    PublishConfig {
        batch_rows: rows,
        batch_bytes: sluice::config::ByteSize(bytes),
        batch_age: sluice::config::HumanDuration(age),
        ..PublishConfig::default()
    }
}

/// `sluice-{16 hex digits}-rest` → `sluice-rest`; anything else unchanged.
pub fn without_instance(token: &str) -> String {
    match token.strip_prefix("sluice-") {
        Some(rest)
            if rest.len() > 17
                && rest.as_bytes()[16] == b'-'
                && rest[..16].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            format!("sluice-{}", &rest[17..])
        }
        _ => token.to_string(),
    }
}
