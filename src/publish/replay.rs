//! Re-publishing: a range of the log (`sluice wal replay`) or dead-letter entries
//! (`sluice dlq replay`), through the same processing and sink as the publisher.
//!
//! # `wal replay`
//!
//! Reads the partition's log read-only ([`sluice_wal::LogView`], no lock: it works beside a
//! running daemon) and forms batches **with the ledger's boundaries**: a record inside a range
//! the publisher recorded is sent in exactly that range, so the token
//! `sluice-{partition}-{first}-{last}` matches the original insert and a deduplicating server
//! drops the repeat. The requested range is widened to whole recorded batches for that reason.
//! Records no recorded range covers (older than the ledger keeps, or never published) are
//! batched by `[publish]` rows and bytes. Replay does not move the checkpoint and writes no
//! dead letters (the publisher wrote them when it first published the range); it counts them.
//!
//! # `dlq replay`: re-deliver directly, not re-append to the log
//!
//! An entry is re-processed from its stored raw request and its rows delivered straight to
//! the sink, with the token `sluice-{instance}-dlq-{first id}-{last id}` per chunk. Re-appending the raw
//! request to the log instead would give it a new LSN, hence new generated event ids and
//! tokens, so a replay repeated after a crash would duplicate rows; it would also need the
//! log's lock, which the running daemon holds. Re-delivering keeps the original
//! `(partition, lsn, index)`, so the rows are identical to what the publisher would have
//! produced. An entry that loads is removed; one that fails again stays, with `attempts`
//! incremented and the new reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use sluice_wal::{LogView, Lsn, WalConfig};

use super::deliver::{Deliver, DeliverError, Delivery};
use super::enrich::EnrichConfig;
use super::ledger::{recorded_ranges, BatchRange};
use super::pipeline::PublishConfig;
use super::process::{process_record, Limits, Process, Processor};
use crate::deadletter::{self, Entry, Filter, Store};
use crate::event::{Event, Failure, FailureCategory};
use crate::instance::InstanceId;
use crate::shutdown::Shutdown;
use crate::sink::clickhouse::ClickHouseConfig;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The data directory's instance id (part of every token) could not be read.
    #[error(transparent)]
    Instance(#[from] crate::instance::InstanceError),
    /// The log or the ledger could not be read.
    #[error("partition {partition}: {source}")]
    Wal {
        /// The partition.
        partition: usize,
        /// The log's error.
        #[source]
        source: sluice_wal::Error,
    },
    /// The sink failed.
    #[error("delivering {token}: {source}")]
    Deliver {
        /// The batch's token.
        token: String,
        /// The sink's error.
        #[source]
        source: DeliverError,
    },
    /// The dead-letter store failed.
    #[error(transparent)]
    DeadLetters(#[from] deadletter::DeadLetterError),
    /// ClickHouse could not be reached or does not have the table the rows need.
    #[error("connecting to ClickHouse: {0}")]
    Connect(#[source] crate::sink::clickhouse::SinkError),
    /// The enrichment settings are unusable.
    #[error("setting up enrichment: {0}")]
    Enrich(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// `--partition N` names a partition that is not on disk.
    #[error("partition {partition} does not exist (found: {found:?})")]
    NoSuchPartition {
        /// The partition asked for.
        partition: usize,
        /// The partitions that exist.
        found: Vec<usize>,
    },
    /// The data directory could not be listed.
    #[error("cannot list the partitions: {0}")]
    List(#[source] std::io::Error),
    /// Writing the report failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// `--from` is after `--to`.
    #[error("--from {from} is after --to {to}")]
    EmptyRange {
        /// First LSN asked for.
        from: u64,
        /// Last LSN asked for.
        to: u64,
    },
}

impl ReplayError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::Instance(e) => e.code(),
            ReplayError::Wal { .. } => "wal",
            ReplayError::Deliver { .. } => "deliver",
            ReplayError::DeadLetters(e) => e.code(),
            ReplayError::EmptyRange { .. } => "empty_range",
            ReplayError::Connect(e) => e.code(),
            ReplayError::Enrich(_) => "enrich",
            ReplayError::Runtime(_) => "runtime",
            ReplayError::NoSuchPartition { .. } => "no_such_partition",
            ReplayError::List(_) => "list_partitions",
            ReplayError::Output(_) => "output",
        }
    }
}

/// What a `wal replay` of one partition did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSummary {
    /// The partition.
    pub partition: usize,
    /// First and last LSN actually replayed (after clamping to the log and widening to whole
    /// recorded batches); `None` when there was nothing to replay.
    pub range: Option<(u64, u64)>,
    /// Records read.
    pub records: u64,
    /// Batches sent.
    pub batches: u64,
    /// Batches whose boundaries came from the ledger.
    pub recorded_batches: u64,
    /// Rows the sink inserted (a deduplicated repeat counts as inserted).
    pub inserted: u64,
    /// Events that failed processing.
    pub failed: u64,
    /// Rows the sink rejected.
    pub rejected: u64,
}

/// The real processing and sink, with a runtime to drive the sink: what the CLI replays with.
pub struct Pipeline {
    /// Drives the sink's futures (one worker thread; `Handle::block_on` needs a worker).
    pub runtime: tokio::runtime::Runtime,
    /// The configured enrichment.
    pub processor: Processor,
    /// Connected to the configured ClickHouse.
    pub sink: crate::sink::clickhouse::Sink,
    /// The data directory's instance id: replayed batches carry the daemon's tokens.
    pub instance: InstanceId,
}

impl Pipeline {
    /// Sets up enrichment and connects to ClickHouse (one attempt: the operator is watching).
    /// The instance id is the one of `data_dir`.
    pub fn connect(
        enrich: &EnrichConfig,
        limits: Limits,
        clickhouse: &ClickHouseConfig,
        data_dir: &Path,
    ) -> Result<Pipeline, ReplayError> {
        let instance = crate::instance::load_or_create(data_dir)?;
        let processor = Processor::new(enrich, limits, instance)
            .map_err(|e| ReplayError::Enrich(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(ReplayError::Runtime)?;
        let sink = runtime
            .block_on(crate::sink::clickhouse::Sink::connect(clickhouse))
            .map_err(ReplayError::Connect)?;
        Ok(Pipeline {
            runtime,
            processor,
            sink,
            instance,
        })
    }
}

/// Observes a replay's progress (a progress bar, or nothing).
pub trait Progress {
    /// The replay has `total` units (records, or dead-letter entries) to go through.
    fn start(&self, _total: u64) {}
    /// `records` more units were read.
    fn advance(&self, records: u64);
}

impl Progress for () {
    fn advance(&self, _records: u64) {}
}

impl Progress for indicatif::ProgressBar {
    fn start(&self, total: u64) {
        self.set_length(total);
    }

    fn advance(&self, records: u64) {
        self.inc(records);
    }
}

/// The LSN range `wal replay` will cover in a partition: `from..=to` clamped to what the log
/// holds. `None` when empty.
pub fn clamp_range(view: &LogView, from: Lsn, to: Option<Lsn>) -> Option<(Lsn, Lsn)> {
    let status = view.status();
    let from = from.max(status.first_lsn).max(Lsn(1));
    let to = to.unwrap_or(status.last_lsn).min(status.last_lsn);
    (from <= to).then_some((from, to))
}

/// Replays `from..=to` of one partition (see the module docs). Blocking: drives the sink's
/// futures with `runtime`.
#[allow(clippy::too_many_arguments)]
pub fn replay_range<P: Process, D: Deliver>(
    instance: &InstanceId,
    data_dir: &Path,
    wal: &WalConfig,
    partition: usize,
    from: Lsn,
    to: Option<Lsn>,
    config: &PublishConfig,
    processor: &P,
    sink: &D,
    runtime: &tokio::runtime::Handle,
    progress: &dyn Progress,
) -> Result<RangeSummary, ReplayError> {
    let wal_err = |source| ReplayError::Wal { partition, source };
    let dir = crate::ingest::partition_dir(data_dir, partition);
    let view = LogView::open(&dir, wal).map_err(wal_err)?;
    let mut summary = RangeSummary {
        partition,
        ..RangeSummary::default()
    };
    let Some((from, to)) = clamp_range(&view, from, to) else {
        return Ok(summary);
    };
    let ranges = recorded_ranges(data_dir, partition, from, to).map_err(wal_err)?;
    let status = view.status();
    // Widen to whole recorded batches, as far as the log still holds them.
    let from = ranges
        .first()
        .map_or(from, |r| r.first.min(from))
        .max(status.first_lsn);
    let to = ranges
        .last()
        .map_or(to, |r| r.last.max(to))
        .min(status.last_lsn);
    summary.range = Some((from.0, to.0));

    let mut stop = Shutdown::never();
    let mut reader = view.reader(from);
    let mut pending = ranges.into_iter().peekable();
    let mut rows: Vec<Event> = Vec::new();
    let mut failures: Vec<Failure> = Vec::new();
    let mut batch: Option<BatchRange> = None;
    let mut recorded = false;
    let mut bytes = 0u64;
    let mut send = |batch: &mut Option<BatchRange>,
                    rows: &mut Vec<Event>,
                    failures: &mut Vec<Failure>,
                    recorded: bool,
                    summary: &mut RangeSummary|
     -> Result<(), ReplayError> {
        let Some(range) = batch.take() else {
            return Ok(());
        };
        summary.batches += 1;
        summary.recorded_batches += u64::from(recorded);
        summary.failed += failures.len() as u64;
        failures.clear();
        if !rows.is_empty() {
            let token = range.token(instance, partition);
            let d = runtime
                .block_on(sink.deliver(partition, rows, &token, &mut stop))
                .map_err(|source| ReplayError::Deliver { token, source })?;
            summary.inserted += d.inserted as u64;
            summary.rejected += d.rejected.len() as u64;
            rows.clear();
        }
        Ok(())
    };
    while let Some(record) = reader.next().map_err(wal_err)? {
        if record.lsn > to {
            break;
        }
        let lsn = record.lsn;
        // Skip recorded ranges wholly behind us (dropped from the log).
        while pending.peek().is_some_and(|r| r.last < lsn) {
            pending.next();
        }
        let in_recorded = pending.peek().filter(|r| r.contains(lsn)).copied();
        // A fresh batch ends where a recorded one begins.
        if batch.is_some() && !recorded && in_recorded.is_some() {
            send(&mut batch, &mut rows, &mut failures, recorded, &mut summary)?;
            bytes = 0;
        }
        recorded = in_recorded.is_some();
        batch = Some(match batch {
            None => BatchRange {
                first: lsn,
                last: lsn,
            },
            Some(r) => BatchRange { last: lsn, ..r },
        });
        bytes += record.payload.len() as u64;
        process_record(
            processor,
            &record.payload,
            partition,
            lsn,
            &mut rows,
            &mut failures,
        );
        summary.records += 1;
        progress.advance(1);
        let close = match in_recorded {
            Some(r) => lsn >= r.last,
            None => {
                rows.len() >= config.batch_rows
                    || bytes >= config.batch_bytes.bytes()
                    || pending.peek().is_some_and(|r| r.first == lsn.next())
            }
        };
        if close || lsn >= to {
            send(&mut batch, &mut rows, &mut failures, recorded, &mut summary)?;
            bytes = 0;
            if in_recorded.is_some() {
                pending.next();
            }
        }
    }
    send(&mut batch, &mut rows, &mut failures, recorded, &mut summary)?;
    Ok(summary)
}

/// What a `dlq replay` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqSummary {
    /// Entries tried.
    pub tried: u64,
    /// Entries whose rows loaded; removed from the store.
    pub loaded: u64,
    /// Entries that failed again; kept with `attempts` incremented.
    pub failed_again: u64,
    /// Rows inserted.
    pub rows: u64,
}

/// Replays the entries `filter` covers (see the module docs). Blocking.
#[allow(clippy::too_many_arguments)]
pub fn replay_dead_letters<P: Process, D: Deliver>(
    instance: &InstanceId,
    store: &Store,
    filter: &Filter,
    chunk_rows: usize,
    processor: &P,
    sink: &D,
    runtime: &tokio::runtime::Handle,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<DlqSummary, ReplayError> {
    let entries = store.list(filter)?;
    progress.start(entries.len() as u64);
    let mut summary = DlqSummary::default();
    let mut stop = Shutdown::never();
    // Entries whose rows are ready, with the rows' positions in `rows`.
    let mut ready: Vec<(Entry, std::ops::Range<usize>)> = Vec::new();
    let mut rows: Vec<Event> = Vec::new();
    let mut failed: Vec<Entry> = Vec::new();
    let mut loaded: Vec<Entry> = Vec::new();

    let mut flush_chunk = |ready: &mut Vec<(Entry, std::ops::Range<usize>)>,
                           rows: &mut Vec<Event>,
                           failed: &mut Vec<Entry>,
                           loaded: &mut Vec<Entry>,
                           summary: &mut DlqSummary|
     -> Result<(), ReplayError> {
        if ready.is_empty() {
            return Ok(());
        }
        let token = format!(
            "sluice-{instance}-dlq-{}-{}",
            ready[0].0.id,
            ready[ready.len() - 1].0.id
        );
        let d: Delivery = runtime
            .block_on(sink.deliver(0, rows, &token, &mut stop))
            .map_err(|source| ReplayError::Deliver {
                token: token.clone(),
                source,
            })?;
        let mut reasons: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (index, reason) in d.rejected {
            reasons.entry(index).or_default().push(reason);
        }
        summary.rows += d.inserted as u64;
        for (entry, span) in ready.drain(..) {
            let rejected: Vec<String> = span
                .clone()
                .filter_map(|i| reasons.get(&i))
                .flatten()
                .cloned()
                .collect();
            if rejected.is_empty() {
                loaded.push(entry);
            } else {
                failed.push(Entry {
                    category: FailureCategory::LoaderRejection,
                    messages: rejected,
                    ..entry
                });
            }
        }
        rows.clear();
        Ok(())
    };

    for entry in entries {
        summary.tried += 1;
        progress.advance(1);
        let mut events = Vec::new();
        let mut failures = Vec::new();
        let lsn = Lsn(entry.id.lsn);
        process_record(
            processor,
            &entry.envelope,
            entry.partition(),
            lsn,
            &mut events,
            &mut failures,
        );
        let index = entry.event_index();
        events.retain(|e| index.is_none() || e.wal_index == index.map(u64::from));
        failures.retain(|f| index.is_none() || f.event_index == index);
        if let Some(f) = failures.first() {
            let messages = failures.iter().flat_map(|f| f.messages.clone()).collect();
            failed.push(Entry {
                category: f.category,
                messages,
                ..entry
            });
            continue;
        }
        if events.is_empty() {
            failed.push(Entry {
                messages: vec!["re-processing the request produced no event for this entry".into()],
                ..entry
            });
            continue;
        }
        let start = rows.len();
        rows.extend(events);
        let span = start..rows.len();
        ready.push((entry, span));
        if rows.len() >= chunk_rows {
            flush_chunk(
                &mut ready,
                &mut rows,
                &mut failed,
                &mut loaded,
                &mut summary,
            )?;
        }
    }
    flush_chunk(
        &mut ready,
        &mut rows,
        &mut failed,
        &mut loaded,
        &mut summary,
    )?;

    let now = crate::wire::time::now_ms();
    let again: Vec<Entry> = failed
        .into_iter()
        .map(|e| Entry {
            attempts: e.attempts.saturating_add(1),
            time_ms: now,
            ..e
        })
        .collect();
    store.put_all(&again)?;
    store.flush()?;
    let loaded_ids: Vec<_> = loaded.iter().map(|e| e.id).collect();
    store.remove(&loaded_ids)?;
    for e in &again {
        writeln!(
            out,
            "{} failed again ({}, attempt {}): {}",
            e.id,
            e.category,
            e.attempts,
            e.messages.join("; ")
        )
        .ok();
    }
    summary.loaded = loaded_ids.len() as u64;
    summary.failed_again = again.len() as u64;
    Ok(summary)
}
