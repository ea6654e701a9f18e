//! The pipeline: per partition, a few threads that drain the log into the sink.
//!
//! Each publisher reads its partition's log from `checkpoint + 1`, turns every stored request
//! into rows and failures ([`Process`], implemented by [`process::Processor`]), gathers them
//! into a batch bounded by `[publish]` rows, bytes and age, and delivers the batch
//! ([`Deliver`], implemented by the ClickHouse sink) with the deduplication token
//! `sluice-{instance}-{partition}-{first_lsn}-{last_lsn}` (the instance id,
//! [`crate::instance`], keeps several instances' tokens apart). What can never load goes to the dead-letter
//! store ([`crate::deadletter`]); only then does the checkpoint move.
//!
//! # The order of steps for one batch, and what a crash at each point does
//!
//! Batches of a partition are numbered in log order. Each passes through these steps; several
//! may be at step 3 at once (`publish.max_in_flight`, the partition's delivery lanes), but steps
//! 2, 4 and 5 run on the publisher's own thread, 2 in formation order and 4–5 in log order.
//!
//! 1. **Form.** Read records from the log and process them until a limit is reached (or, after
//!    a start, exactly each range of the ledger's pending chain in turn). This runs on a
//!    forming thread, overlapping the deliveries. Each request's rows go straight to the
//!    sink's [`Deliver::prepare`] (RowBinary, compressed block by block, for ClickHouse) and
//!    are dropped, and only requests with processing failures are kept (for their dead
//!    letters), so a batch in memory costs little more than its encoded rows. The rare paths
//!    that need another request again read it back from the log, which holds every record of
//!    a batch until the batch is checkpointed. *Crash:* nothing was sent; the records are read
//!    again.
//! 2. **Record.** Append `(first, last)` to the partition's ledger ([`ledger`]) and fdatasync,
//!    then hand the batch to a free lane. A batch is recorded only while fewer than
//!    `max_in_flight` batches are outstanding (recorded but not yet checkpointed). *Crash
//!    before it is durable:* the batch was never sent, and is formed afresh.
//! 3. **Deliver** (on a lane). Insert the rows with the token; the sink retries transient
//!    errors forever, bisects bad data and answers with the rows it rejected. If the table
//!    changed since the rows were prepared (the sink answers [`DeliverError::Stale`]), the lane
//!    prepares them again from the batch's records, read back from the log, and sends those
//!    (processing is deterministic: the same rows). Lanes finish in
//!    any order. *Crash during or after it:* on restart the ledger's pending chain — every
//!    range recorded past the checkpoint, contiguous from `checkpoint + 1` — is re-formed
//!    first, range by range, with the same rows (processing is deterministic) and so the same
//!    bytes and token; a server with insert deduplication drops each repeat; a server without
//!    it gets the rows twice (at least once).
//! 4. **Dead-letter.** Once the batch is confirmed *and* every older batch is checkpointed,
//!    write its processing failures and rejected rows to the store and flush it. *Crash before
//!    the flush:* as in 3, and its dead letters are written again. Entry ids derive from the
//!    request's place in the log, so a second write replaces the first instead of duplicating
//!    it.
//! 5. **Checkpoint.** `wal.checkpoint(last)`: temp file, fsync, rename, fsync directory. Only
//!    after it may the log recycle the segments. *Crash before it:* as in 4.
//!
//! A batch whose records all failed processing has no rows; it skips step 3 (it is confirmed
//! at once) but is still checkpointed in its turn, after its dead letters are durable.
//!
//! # Invariants
//!
//! - The checkpoint never passes a record whose rows are not confirmed by the sink and whose
//!   failures are not durable in the dead-letter store. A confirmed batch waits, unconfirmed
//!   ranges before it hold the checkpoint back: it only advances over the contiguous confirmed
//!   prefix.
//! - A batch's range is durable in the ledger before any of its rows are sent.
//! - At most `max_in_flight` batches per partition are outstanding, and they are consecutive
//!   ranges starting right after the checkpoint. So the ranges that can have been (partly)
//!   delivered are exactly the ledger's chain from `checkpoint + 1`, which a restart re-forms
//!   before forming anything new.
//! - Batch boundaries after a restart equal the recorded ones; elsewhere they depend on time
//!   (the age limit), which is why they are recorded rather than recomputed.
//! - A retry (after an error or a restart) sends identical bytes with the same token: the
//!   encoding is a pure function of the rows, and the rows of the records.
//!
//! # Stopping
//!
//! [`Publishers::stop`] raises one stop flag; the forming thread notices it between records
//! (reads wait at most [`STOP_POLL`]), the publisher's thread at least every [`STOP_POLL`],
//! and it then raises its lanes' flag, which interrupts their deliveries (the sink returns
//! `Stopped`). Nothing in hand is checkpointed. `stop` joins the threads with a timeout.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_wal::{Lsn, Record, Wal};

use super::deliver::{BatchRows, Deliver, DeliverError, Delivery};
use super::health::Health;
use super::ledger::{self, BatchRange, Ledger};
use super::process::{self, Process};
use crate::config::units::{check_range, ByteSize, HumanDuration, Violation};
use crate::deadletter::{self, Entry, EntryId, Store};
use crate::envelope::Envelope;
use crate::event::{Event, Failure, FailureCategory};
use crate::instance::InstanceId;
use crate::metrics;
use crate::shutdown::{self, Shutdown, Stop};

/// Longest a publisher waits for a record before looking at its stop flag again.
pub const STOP_POLL: Duration = Duration::from_millis(100);
/// First pause after a failed delivery or dead-letter write; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Default of `publish.max_in_flight`: one batch inserting while the next is sent, so
/// ClickHouse never waits on a round trip; 1, 2 and 4 drained alike on two shared cores.
pub const MAX_IN_FLIGHT_DEFAULT: usize = 2;

/// The `[publish]` section: how records are batched from the log into the sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// A batch is sent once it holds this many rows. Default `50000`; between `1` and
    /// `1000000` (ClickHouse recommends thousands to ~100k rows per insert).
    pub batch_rows: usize,
    /// A batch is sent once the memory it holds reaches this many bytes: its rows as the sink
    /// keeps them (RowBinary, LZ4-compressed block by block unless `clickhouse.compression` is
    /// `none`) plus the stored requests kept for dead letters. Default
    /// `16MiB`; between `1KiB` and `1GiB`. Bounds the publisher's memory per partition: at
    /// most `max_in_flight + 2` batches (sent, formed and waiting, being formed).
    pub batch_bytes: ByteSize,
    /// A batch is sent once it is this old and the publisher has caught up with the log, even
    /// if small. Default `1s` (about one insert per second per partition, as ClickHouse
    /// advises); between `10ms` and `10m`. Also the floor of publish latency under light load.
    /// While a backlog is drained (the next record is always already there), batches fill up
    /// to `batch_rows` or `batch_bytes` instead.
    pub batch_age: HumanDuration,
    /// How long shutdown waits for each publisher thread to stop. Default `10s`; between
    /// `100ms` and `5m`.
    pub stop_timeout: HumanDuration,
    /// Batches of one partition that may be sent to ClickHouse before the oldest of them is
    /// confirmed (each is recorded in the ledger first, and the checkpoint still advances in
    /// log order). Default `2`; between `1` (strictly one insert at a time)
    /// and `16`. Memory per partition is up to this many batches plus two.
    pub max_in_flight: usize,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            batch_rows: 50_000,
            batch_bytes: ByteSize(16 << 20),
            batch_age: HumanDuration(Duration::from_secs(1)),
            stop_timeout: HumanDuration(Duration::from_secs(10)),
            max_in_flight: MAX_IN_FLIGHT_DEFAULT,
        }
    }
}

impl PublishConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        check_range(
            &mut out,
            "publish.batch_rows",
            self.batch_rows,
            1,
            1_000_000,
        );
        let (kib, gib) = (ByteSize(1 << 10), ByteSize(1 << 30));
        check_range(&mut out, "publish.batch_bytes", self.batch_bytes, kib, gib);
        let (lo, hi) = (Duration::from_millis(10), Duration::from_secs(600));
        let (lo, hi) = (HumanDuration(lo), HumanDuration(hi));
        check_range(&mut out, "publish.batch_age", self.batch_age, lo, hi);
        check_range(&mut out, "publish.max_in_flight", self.max_in_flight, 1, 16);
        let (lo, hi) = (Duration::from_millis(100), Duration::from_secs(300));
        let (lo, hi) = (HumanDuration(lo), HumanDuration(hi));
        check_range(&mut out, "publish.stop_timeout", self.stop_timeout, lo, hi);
        out
    }
}

/// Why a publisher thread stopped before being asked to.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The partition's log failed (reading, or writing the checkpoint).
    #[error("partition {partition}: the log: {source}")]
    Wal {
        /// The partition.
        partition: usize,
        /// The log's error.
        #[source]
        source: sluice_wal::Error,
    },
    /// The partition's ledger failed.
    #[error("partition {partition}: the batch ledger: {source}")]
    Ledger {
        /// The partition.
        partition: usize,
        /// The ledger log's error.
        #[source]
        source: sluice_wal::Error,
    },
    /// Every delivery thread of the partition is gone (they panicked).
    #[error("partition {partition}: every delivery thread stopped unexpectedly")]
    LanesGone {
        /// The partition.
        partition: usize,
    },
    /// A publisher (or batch-forming) thread could not be spawned.
    #[error("cannot start a publisher thread of partition {partition}: {source}")]
    Spawn {
        /// The partition.
        partition: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl PublishError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Wal { .. } => "wal",
            PublishError::Ledger { .. } => "ledger",
            PublishError::Spawn { .. } => "spawn",
            PublishError::LanesGone { .. } => "lanes_gone",
        }
    }
}

/// One stored request in a batch.
#[derive(Debug)]
struct Stored {
    received_at_ms: Option<i64>,
    payload: Vec<u8>,
}

/// A batch in formation.
#[derive(Debug, Default)]
struct Batch<R> {
    range: Option<BatchRange>,
    /// The rows, prepared for the sink.
    rows: R,
    /// Failures, with the LSN of their request.
    failures: Vec<(Lsn, Failure)>,
    /// The stored requests that had processing failures, by LSN (raw bytes for their dead
    /// letters). Other requests are not kept: the rare paths that need one again (a row the
    /// sink rejects, rows prepared again) read it back from the log, which holds every record
    /// of the batch until the batch is checkpointed.
    requests: BTreeMap<Lsn, Stored>,
    /// When the batch's first request was received (for the lag gauge).
    first_received_ms: Option<i64>,
    /// Bytes of the stored requests kept in `requests`.
    bytes: u64,
    started: Option<Instant>,
}

impl<R> Batch<R> {
    fn is_empty(&self) -> bool {
        self.range.is_none()
    }
}

/// The dependencies every publisher thread shares.
pub struct Shared<P, D> {
    /// Turns requests into rows.
    pub processor: Arc<P>,
    /// Where rows go.
    pub sink: Arc<D>,
    /// Where failures go.
    pub dead_letters: Store,
    /// Batching limits.
    pub config: PublishConfig,
    /// The runtime the sink's futures run on.
    pub runtime: tokio::runtime::Handle,
    /// The data directory (ledgers live under it).
    pub data_dir: PathBuf,
    /// The data directory's instance id, part of every batch's token.
    pub instance: InstanceId,
    /// Where each publisher reports its lag, confirmations and failures.
    pub health: Arc<Health>,
}

/// One partition's publisher (runs on its own thread; see the module docs).
pub struct Publisher<P, D> {
    partition: usize,
    wal: Arc<Wal>,
    ledger: Ledger,
    shared: Arc<Shared<P, D>>,
    stop: Shutdown,
}

/// Forms batches (steps 1 of the module docs) on its own thread, so that batch *n + 1* is read
/// and processed while batch *n* is being delivered.
struct Former<P, D> {
    partition: usize,
    shared: Arc<Shared<P, D>>,
    stop: Shutdown,
    /// Raised by the publishing thread when it stops for any reason (not only the stop flag),
    /// so a former waiting for records does not outlive it.
    abandoned: Arc<AtomicBool>,
    /// A record read past the end of a forced range, to start the next batch with.
    carry: Option<Record>,
    /// One request's rows between processing and [`Deliver::prepare`] (reused).
    scratch: Vec<Event>,
}

impl<P: Process, D: Deliver> Publisher<P, D> {
    /// Opens the partition's ledger. Blocking.
    pub fn new(
        partition: usize,
        wal: Arc<Wal>,
        shared: Arc<Shared<P, D>>,
        stop: Shutdown,
    ) -> Result<Self, PublishError> {
        let ledger = Ledger::open(&shared.data_dir, partition)
            .map_err(|source| PublishError::Ledger { partition, source })?;
        Ok(Publisher {
            partition,
            wal,
            ledger,
            shared,
            stop,
        })
    }

    /// Runs until the stop flag is raised (Ok) or the log or ledger fails (Err).
    ///
    /// Three kinds of thread share the work (see the module docs): a former reads and
    /// processes the next batch; `publish.max_in_flight` delivery lanes each send one batch at
    /// a time; this thread records each batch's range in the ledger before handing it to a
    /// lane, and dead-letters and checkpoints confirmed batches strictly in log order.
    pub fn run(mut self) -> Result<(), PublishError> {
        let partition = self.partition;
        let wal_err = |source| PublishError::Wal { partition, source };
        let status = self.wal.status();
        let forced: VecDeque<BatchRange> = self
            .ledger
            .pending(status.checkpoint, status.last_lsn)
            .into();
        if let (Some(first), Some(last)) = (forced.front(), forced.back()) {
            tracing::info!(partition, batches = forced.len(), first = %first.first,
                last = %last.last,
                "re-forming the batches that were in flight when the publisher last stopped");
        }
        let mut reader = self.wal.reader(status.checkpoint.next());
        let abandoned = Arc::new(AtomicBool::new(false));
        let mut former = Former {
            partition,
            shared: self.shared.clone(),
            stop: self.stop.clone(),
            abandoned: abandoned.clone(),
            carry: None,
            scratch: Vec::new(),
        };
        let lanes = self.shared.config.max_in_flight;
        let (tx, rx) = crossbeam_channel::bounded::<Batch<D::Rows>>(1);
        // Never full: at most `lanes` batches are outstanding (see `pipeline`).
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job<D::Rows>>(lanes);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done<D::Rows>>();
        let (lane_stop, lane_shutdown) = shutdown::channel();
        let result = std::thread::scope(|scope| {
            let job_tx = job_tx;
            let done_tx = done_tx;
            let forming = std::thread::Builder::new()
                .name(format!("sluice-form-{partition}"))
                .spawn_scoped(scope, move || {
                    let mut forced = forced;
                    loop {
                        match former.form(&mut reader, &mut forced) {
                            Ok(Some(mut batch)) => {
                                former.shared.sink.finish(&mut batch.rows);
                                if tx.send(batch).is_err() {
                                    return Ok(());
                                }
                            }
                            Ok(None) => return Ok(()),
                            Err(e) => return Err(e),
                        }
                    }
                });
            let mut threads = Vec::new();
            let spawned = forming.and_then(|forming| {
                for lane in 0..lanes {
                    let worker = Lane {
                        partition,
                        shared: self.shared.clone(),
                        wal: self.wal.clone(),
                        stop: lane_shutdown.clone(),
                    };
                    let (jobs, done) = (job_rx.clone(), done_tx.clone());
                    threads.push(
                        std::thread::Builder::new()
                            .name(format!("sluice-deliver-{partition}-{lane}"))
                            .spawn_scoped(scope, move || worker.run(&jobs, &done))?,
                    );
                }
                Ok(forming)
            });
            drop(done_tx);
            let published = match &spawned {
                Ok(_) => self.pipeline(&rx, &job_tx, &done_rx, &lane_stop),
                Err(_) => Ok(()),
            };
            abandoned.store(true, Ordering::Relaxed);
            lane_stop.stop();
            drop(job_tx);
            drop(rx);
            for t in threads {
                if t.join().is_err() {
                    tracing::error!(partition, "a delivery thread panicked");
                }
            }
            let forming = match spawned {
                Ok(forming) => forming,
                Err(source) => return Err(PublishError::Spawn { partition, source }),
            };
            let formed = forming.join().unwrap_or_else(|_| {
                tracing::error!(partition, "the batch-forming thread panicked");
                Ok(())
            });
            published.and(formed.map_err(wal_err))
        });
        if let Err(e) = self.ledger.close() {
            tracing::warn!(partition, error = %e, "closing the batch ledger failed");
        }
        result
    }

    /// Steps 2–5 of the module docs for every batch: records each formed batch and hands it to
    /// a lane while fewer than `publish.max_in_flight` are outstanding (sent or confirmed but
    /// not yet checkpointed), and confirms batches in log order as their deliveries return.
    /// Returns when stopped, or when the former and every lane are done.
    fn pipeline(
        &mut self,
        formed: &crossbeam_channel::Receiver<Batch<D::Rows>>,
        jobs: &crossbeam_channel::Sender<Job<D::Rows>>,
        done: &crossbeam_channel::Receiver<Done<D::Rows>>,
        lane_stop: &Stop,
    ) -> Result<(), PublishError> {
        let partition = self.partition;
        let max = self.shared.config.max_in_flight as u64;
        let never = crossbeam_channel::never();
        // Batches are numbered in log order; `next` is the next batch's number, `confirm` the
        // number of the oldest batch not yet checkpointed.
        let (mut next, mut confirm) = (0u64, 0u64);
        let mut in_lanes = 0usize;
        let mut confirmed: BTreeMap<u64, (Batch<D::Rows>, Delivery)> = BTreeMap::new();
        let mut forming = true;
        loop {
            if self.stop.is_stopped() {
                lane_stop.stop();
                return Ok(());
            }
            if !forming && in_lanes == 0 && confirmed.is_empty() {
                return Ok(());
            }
            let accepting = forming && next - confirm < max;
            crossbeam_channel::select! {
                recv(if accepting { formed } else { &never }) -> msg => match msg {
                    Ok(batch) => {
                        let Some(range) = batch.range else { continue };
                        self.record_lag(&batch);
                        self.ledger
                            .record(range)
                            .map_err(|source| PublishError::Ledger { partition, source })?;
                        let seq = next;
                        next += 1;
                        if batch.rows.is_empty() {
                            confirmed.insert(seq, (batch, Delivery::default()));
                        } else {
                            let token = range.token(&self.shared.instance, partition);
                            if jobs.send(Job { seq, batch, token }).is_err() {
                                return Err(PublishError::LanesGone { partition });
                            }
                            in_lanes += 1;
                        }
                    }
                    Err(_) => forming = false,
                },
                recv(done) -> msg => {
                    let Ok(Done { seq, batch, delivery }) = msg else {
                        return Err(PublishError::LanesGone { partition });
                    };
                    in_lanes -= 1;
                    let Some(delivery) = delivery else {
                        // Stopped mid-delivery: nothing past the checkpoint is confirmed.
                        lane_stop.stop();
                        return Ok(());
                    };
                    confirmed.insert(seq, (batch, delivery));
                },
                default(STOP_POLL) => {}
            }
            while let Some(entry) = confirmed.first_entry() {
                if *entry.key() != confirm {
                    break;
                }
                let (batch, delivery) = entry.remove();
                if !self.confirm(batch, delivery)? {
                    lane_stop.stop();
                    return Ok(());
                }
                confirm += 1;
            }
        }
    }

    /// Steps 4–5 of the module docs for the oldest outstanding batch, once the sink confirmed
    /// it. `Ok(false)` when stopped before the checkpoint.
    fn confirm(&mut self, batch: Batch<D::Rows>, delivery: Delivery) -> Result<bool, PublishError> {
        let partition = self.partition;
        let Some(range) = batch.range else {
            return Ok(true);
        };
        let entries = dead_letters(
            &*self.shared.processor,
            &self.wal,
            partition,
            &batch,
            &delivery,
        )
        .map_err(|source| PublishError::Wal { partition, source })?;
        if !entries.is_empty() && !self.write_dead_letters(&entries) {
            return Ok(false);
        }
        self.wal
            .checkpoint(range.last)
            .map_err(|source| PublishError::Wal { partition, source })?;

        metrics::publish::batch_confirmed(partition, delivery.inserted);
        self.shared.health.confirmed(
            partition,
            delivery.inserted as u64,
            entries.len() as u64,
            crate::wire::time::now_ms(),
        );
        let mut by_category: BTreeMap<FailureCategory, u64> = BTreeMap::new();
        for e in &entries {
            *by_category.entry(e.category).or_default() += 1;
        }
        for (category, n) in by_category {
            metrics::publish::dead_lettered(partition, category, n);
        }
        tracing::debug!(partition, first = %range.first, last = %range.last,
            rows = delivery.inserted, dead_lettered = entries.len(), "batch confirmed");
        Ok(true)
    }

    /// Sets the lag gauges: records not yet confirmed, and the age of the oldest of them (the
    /// batch's first request).
    fn record_lag(&self, batch: &Batch<D::Rows>) {
        let status = self.wal.status();
        let oldest = batch.first_received_ms.map_or(Duration::ZERO, |t| {
            Duration::from_millis(crate::wire::time::now_ms().saturating_sub(t).max(0) as u64)
        });
        metrics::publish::lag(self.partition, status.unconfirmed, oldest);
        self.shared
            .health
            .lag(self.partition, status.unconfirmed, oldest.as_secs_f64());
    }

    /// Writes and flushes dead letters, retrying until durable; false when stopped.
    fn write_dead_letters(&self, entries: &[Entry]) -> bool {
        let mut backoff = Backoff::new();
        loop {
            let store = &self.shared.dead_letters;
            match store.put_all(entries).and_then(|()| store.flush()) {
                Ok(()) => return true,
                Err(e) => {
                    tracing::error!(partition = self.partition, error = %e, retry_in = ?backoff.next,
                        "cannot write dead letters; the checkpoint waits until they are durable");
                    if !backoff.wait(&self.stop) {
                        return false;
                    }
                }
            }
        }
    }
}

/// A batch handed to a delivery lane.
struct Job<R> {
    seq: u64,
    batch: Batch<R>,
    token: String,
}

/// A lane's answer: the batch back, with what the sink did (`None` when stopped first).
struct Done<R> {
    seq: u64,
    batch: Batch<R>,
    delivery: Option<Delivery>,
}

/// One delivery lane of a partition (step 3 of the module docs): sends one batch at a time
/// until the sink confirms it.
struct Lane<P, D> {
    partition: usize,
    shared: Arc<Shared<P, D>>,
    /// The partition's log, to read a batch's requests back when its rows must be made again.
    wal: Arc<Wal>,
    /// The partition's lane stop flag, raised by the publishing thread when it stops.
    stop: Shutdown,
}

impl<P: Process, D: Deliver> Lane<P, D> {
    /// Delivers jobs until the job channel closes or the publishing thread is gone.
    fn run(
        mut self,
        jobs: &crossbeam_channel::Receiver<Job<D::Rows>>,
        done: &crossbeam_channel::Sender<Done<D::Rows>>,
    ) {
        for Job {
            seq,
            mut batch,
            token,
        } in jobs.iter()
        {
            let delivery = self.deliver(&mut batch, &token);
            let stopped = delivery.is_none();
            if done
                .send(Done {
                    seq,
                    batch,
                    delivery,
                })
                .is_err()
                || stopped
            {
                return;
            }
        }
    }

    /// Delivers until the sink confirms; `None` when stopped. When the sink's destination
    /// changed since the rows were prepared, they are made again from the batch's stored
    /// requests (processing is deterministic: the same rows) and sent again.
    fn deliver(&mut self, batch: &mut Batch<D::Rows>, token: &str) -> Option<Delivery> {
        let mut backoff = Backoff::new();
        loop {
            let shared = self.shared.clone();
            let result = shared.runtime.block_on(shared.sink.deliver_prepared(
                self.partition,
                &batch.rows,
                token,
                &mut self.stop,
            ));
            match result {
                Ok(d) => return Some(d),
                Err(DeliverError::Stopped) => return None,
                Err(DeliverError::Stale) => {
                    tracing::info!(
                        partition = self.partition,
                        token,
                        "the destination changed; preparing the batch's rows again"
                    );
                    let Some(range) = batch.range else {
                        return Some(Delivery::default());
                    };
                    match prepare_again(&shared, &self.wal, self.partition, range) {
                        Ok(rows) => batch.rows = rows,
                        Err(e) => {
                            tracing::error!(partition = self.partition, token, error = %e,
                                retry_in = ?backoff.next, "cannot read the batch back from the log");
                            if !backoff.wait(&self.stop) {
                                return None;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(partition = self.partition, token, error = %e,
                        retry_in = ?backoff.next, "delivery failed; sending the same batch again");
                    shared.health.failed(
                        self.partition,
                        e.to_string(),
                        crate::wire::time::now_ms(),
                    );
                    if !backoff.wait(&self.stop) {
                        return None;
                    }
                }
            }
        }
    }
}

/// A batch's rows made again from its requests, read back from the log in order (as they
/// were formed).
fn prepare_again<P: Process, D: Deliver>(
    shared: &Shared<P, D>,
    wal: &Wal,
    partition: usize,
    range: BatchRange,
) -> sluice_wal::Result<D::Rows> {
    let mut rows = D::Rows::default();
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    read_back(wal, range, |lsn, payload| {
        process::process_record(
            &*shared.processor,
            &payload,
            partition,
            lsn,
            &mut events,
            &mut failures,
        );
        shared
            .sink
            .prepare(&mut rows, &events, shared.config.batch_rows);
        events.clear();
        failures.clear();
    })?;
    shared.sink.finish(&mut rows);
    Ok(rows)
}

/// Calls `each` with every record of `range` still in the log, in order. A batch's records
/// stay in the log until it is checkpointed; only the drop-oldest policy can have recycled
/// some of them (then they are missing, as their rows are).
fn read_back(
    wal: &Wal,
    range: BatchRange,
    mut each: impl FnMut(Lsn, Vec<u8>),
) -> sluice_wal::Result<()> {
    let mut reader = wal.reader(range.first);
    while let Some(record) = reader.next()? {
        if record.lsn > range.last {
            break;
        }
        if record.lsn >= range.first {
            each(record.lsn, record.payload);
        }
    }
    Ok(())
}

/// The pause before the next attempt: from [`MIN_BACKOFF`], doubling up to [`MAX_BACKOFF`].
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: MIN_BACKOFF }
    }

    /// Sleeps the next pause, or less if `stop` is raised meanwhile (then false), and doubles
    /// the pause after it.
    fn wait(&mut self, stop: &Shutdown) -> bool {
        let slept = pause(self.next, || stop.is_stopped());
        self.next = (self.next * 2).min(MAX_BACKOFF);
        slept
    }
}

/// Sleeps up to `d` or until `stopped()`; false when stopped.
fn pause(d: Duration, stopped: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        if stopped() {
            return false;
        }
        std::thread::sleep(STOP_POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
    !stopped()
}

impl<P: Process, D: Deliver> Former<P, D> {
    /// Raised, or its sender (the [`Publishers`] handle) is gone, or the publishing thread
    /// stopped.
    fn stopped(&self) -> bool {
        self.stop.is_stopped() || self.abandoned.load(Ordering::Relaxed)
    }

    /// Reads and processes records until a limit is reached or, while `forced` holds ranges,
    /// exactly its first range (which is then removed). `None` when stopped.
    fn form(
        &mut self,
        reader: &mut sluice_wal::Reader,
        forced: &mut VecDeque<BatchRange>,
    ) -> sluice_wal::Result<Option<Batch<D::Rows>>> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let age = config.batch_age.get();
        let mut batch = Batch::default();
        loop {
            if self.stopped() {
                return Ok(None);
            }
            if let Some(f) = forced.front().copied() {
                if batch.range.is_some_and(|r| r.last >= f.last) {
                    forced.pop_front();
                    return Ok(Some(batch));
                }
            } else if batch.rows.len() >= config.batch_rows
                || batch.bytes + batch.rows.memory() as u64 >= config.batch_bytes.bytes()
            {
                return Ok(Some(batch));
            }
            // Once the batch is `age` old, only records already in the log are added: no wait.
            let wait = match (forced.front(), batch.started) {
                (None, Some(started)) => age.saturating_sub(started.elapsed()).min(STOP_POLL),
                _ => STOP_POLL,
            };
            let record = match self.carry.take() {
                Some(r) => Some(r),
                None => reader.next_timeout(wait)?,
            };
            let Some(record) = record else {
                // Caught up with the log: an old enough batch goes now. While a backlog is
                // drained the log always has a next record, so batches fill to their size
                // limits instead of being cut by the time it takes to process them.
                if forced.is_empty() && batch.started.is_some_and(|s| s.elapsed() >= age) {
                    return Ok(Some(batch));
                }
                continue;
            };
            if let Some(f) = forced.front().copied() {
                if record.lsn > f.last {
                    forced.pop_front();
                    // The log dropped the range's tail (drop-oldest): close the batch at what
                    // was there. Or it dropped the whole range: try the next one (or form
                    // afresh) with this record.
                    self.carry = Some(record);
                    if !batch.is_empty() {
                        return Ok(Some(batch));
                    }
                    continue;
                }
            }
            self.add(&mut batch, record);
        }
    }

    /// Processes one record into the batch.
    fn add(&mut self, batch: &mut Batch<D::Rows>, record: Record) {
        let Record { lsn, payload, .. } = record;
        batch.started.get_or_insert_with(Instant::now);
        batch.range = Some(match batch.range {
            None => BatchRange {
                first: lsn,
                last: lsn,
            },
            Some(r) => BatchRange { last: lsn, ..r },
        });
        let mut failures = Vec::new();
        let received_at_ms = process::process_record(
            &*self.shared.processor,
            &payload,
            self.partition,
            lsn,
            &mut self.scratch,
            &mut failures,
        );
        self.shared.sink.prepare(
            &mut batch.rows,
            &self.scratch,
            self.shared.config.batch_rows,
        );
        self.scratch.clear();
        if batch.first_received_ms.is_none() {
            batch.first_received_ms = received_at_ms;
        }
        if failures.is_empty() {
            return;
        }
        batch
            .failures
            .extend(failures.into_iter().map(|f| (lsn, f)));
        batch.bytes += payload.len() as u64;
        batch.requests.insert(
            lsn,
            Stored {
                received_at_ms,
                payload,
            },
        );
    }
}

/// The dead-letter entries of a delivered batch: its processing failures and the rows the
/// sink rejected, each with its raw request.
fn dead_letters<P: Process, R: BatchRows>(
    processor: &P,
    wal: &Wal,
    partition: usize,
    batch: &Batch<R>,
    delivery: &Delivery,
) -> sluice_wal::Result<Vec<Entry>> {
    let now = crate::wire::time::now_ms();
    // Requests of rejected rows the batch did not keep are read back from the log.
    let missing: std::collections::BTreeSet<Lsn> = delivery
        .rejected
        .iter()
        .filter_map(|(i, _)| batch.rows.position(*i))
        .map(|(lsn, _)| Lsn(lsn.unwrap_or(0)))
        .filter(|lsn| !batch.requests.contains_key(lsn))
        .collect();
    let mut read: BTreeMap<Lsn, Stored> = BTreeMap::new();
    if let (Some(&first), Some(&last)) = (missing.first(), missing.last()) {
        read_back(wal, BatchRange { first, last }, |lsn, payload| {
            if missing.contains(&lsn) {
                let received_at_ms = Envelope::decode(&payload).ok().map(|e| e.received_at_ms);
                read.insert(
                    lsn,
                    Stored {
                        received_at_ms,
                        payload,
                    },
                );
            }
        })?;
    }
    let request = |lsn: Lsn| batch.requests.get(&lsn).or_else(|| read.get(&lsn));
    let entry = |lsn: Lsn, index: u32, category, messages, event_payload| {
        let stored = request(lsn);
        Entry {
            id: EntryId {
                received_at_ms: stored
                    .and_then(|s| s.received_at_ms)
                    .map_or(0, |t| t.max(0) as u64),
                partition: partition as u32,
                lsn: lsn.0,
                index,
            },
            time_ms: now,
            category,
            messages,
            attempts: 1,
            event_payload,
            envelope: stored.map(|s| s.payload.clone()).unwrap_or_default(),
        }
    };
    let mut out = Vec::new();
    for (lsn, f) in &batch.failures {
        out.push(entry(
            *lsn,
            f.event_index.unwrap_or(deadletter::WHOLE_REQUEST),
            f.category,
            f.messages.clone(),
            f.event_payload.clone(),
        ));
    }
    let mut remade: BTreeMap<Lsn, Vec<Event>> = BTreeMap::new();
    for (index, reason) in &delivery.rejected {
        let Some((wal_lsn, wal_index)) = batch.rows.position(*index) else {
            tracing::warn!(
                partition,
                index,
                "the sink rejected a row index outside the batch"
            );
            continue;
        };
        let lsn = Lsn(wal_lsn.unwrap_or(0));
        let stored = request(lsn);
        // The batch keeps rows only in the sink's form; the row itself is made again from its
        // request (processing is deterministic) for the entry's payload, once per request.
        let row = stored.and_then(|s| {
            let rows = remade.entry(lsn).or_insert_with(|| {
                let (mut rows, mut failures) = (Vec::new(), Vec::new());
                process::process_record(
                    processor,
                    &s.payload,
                    partition,
                    lsn,
                    &mut rows,
                    &mut failures,
                );
                rows
            });
            rows.iter().find(|r| r.wal_index == wal_index)
        });
        out.push(entry(
            lsn,
            wal_index
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(deadletter::WHOLE_REQUEST),
            FailureCategory::LoaderRejection,
            vec![reason.clone()],
            row.and_then(|r| serde_json::to_string(r).ok()),
        ));
    }
    Ok(out)
}

/// The running publishers: one thread per partition, stopped together.
#[derive(Debug)]
pub struct Publishers {
    stop: Stop,
    threads: Vec<(usize, JoinHandle<Result<(), PublishError>>)>,
    stop_timeout: Duration,
}

impl Publishers {
    /// Starts one publisher per `(partition, log)`. Blocking (opens the ledgers); call it off
    /// the runtime's worker threads.
    pub fn start<P, D>(
        wals: Vec<(usize, Arc<Wal>)>,
        shared: Shared<P, D>,
    ) -> Result<Publishers, PublishError>
    where
        P: Process + 'static,
        D: Deliver + 'static,
    {
        let (stop, shutdown) = shutdown::channel();
        let stop_timeout = shared.config.stop_timeout.get();
        let shared = Arc::new(shared);
        let mut publishers = Publishers {
            stop,
            threads: Vec::new(),
            stop_timeout,
        };
        for (partition, wal) in wals {
            let publisher = match Publisher::new(partition, wal, shared.clone(), shutdown.clone()) {
                Ok(p) => p,
                Err(e) => {
                    publishers.stop_now();
                    return Err(e);
                }
            };
            let spawned = std::thread::Builder::new()
                .name(format!("sluice-publish-{partition}"))
                .spawn(move || {
                    let result = publisher.run();
                    if let Err(e) = &result {
                        tracing::error!(partition, error = %e,
                            "the publisher stopped; its partition is not drained until restart");
                    }
                    result
                });
            match spawned {
                Ok(handle) => publishers.threads.push((partition, handle)),
                Err(source) => {
                    publishers.stop_now();
                    return Err(PublishError::Spawn { partition, source });
                }
            }
        }
        tracing::info!(partitions = publishers.threads.len(), "publishers started");
        Ok(publishers)
    }

    /// The partitions being published.
    pub fn partitions(&self) -> Vec<usize> {
        self.threads.iter().map(|(p, _)| *p).collect()
    }

    /// Whether any publisher thread has exited (on its own: an error).
    pub fn any_exited(&self) -> bool {
        self.threads.iter().any(|(_, t)| t.is_finished())
    }

    fn stop_now(&mut self) {
        self.stop.stop();
        for (_, t) in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Raises the stop flag and joins every thread, waiting at most `publish.stop_timeout`
    /// in all. Blocking. Returns the partitions whose thread did not stop in time (they hold
    /// their log until they do) and the first error a thread ended with.
    pub fn stop(mut self) -> (Vec<usize>, Option<PublishError>) {
        self.stop.stop();
        let deadline = Instant::now() + self.stop_timeout;
        let mut late = Vec::new();
        let mut first_error = None;
        for (partition, thread) in std::mem::take(&mut self.threads) {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !thread.is_finished() {
                tracing::error!(partition, timeout = ?self.stop_timeout,
                    "the publisher did not stop in time; leaving it behind");
                late.push(partition);
                continue;
            }
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => tracing::error!(partition, "the publisher thread panicked"),
            }
        }
        (late, first_error)
    }
}

impl Drop for Publishers {
    /// A handle dropped without [`Publishers::stop`] (an error path) still tells every thread
    /// to stop; nothing waits for them.
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// Where the ledgers of `data_dir` are (for docs and tools).
pub fn ledger_root(data_dir: &Path) -> PathBuf {
    data_dir.join(ledger::LEDGER_DIR)
}
