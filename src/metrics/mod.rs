//! Every metric name, and the separate `/metrics` listener.
//!
//! This module owns every metric the daemon emits; no other module spells a name. Labels are
//! bounded: `route` is a route template (never a raw path), `status` an HTTP status code, and
//! `partition` a partition index (at most 256).
//!
//! | Name | Type | Labels | What |
//! |---|---|---|---|
//! | `sluice_http_requests_total` | counter | route, status | answered requests |
//! | `sluice_http_request_duration_seconds` | histogram | route | head received → answer ready |
//! | `sluice_http_requests_in_flight` | gauge | | requests being handled right now |
//! | `sluice_http_rejections_total` | counter | reason, source | tracking requests refused before storing: `reason` is `auth` (401), `rate` (429), `size` (413, too many batch items) or `invalid` (400, 415, 422); `source` is `snowplow`, `segment`, `pycolytics` or `collect` |
//! | `sluice_wal_append_duration_seconds` | histogram | | append submitted → durable, as the handler waits for it |
//! | `sluice_wal_commit_records` | histogram | | records per group commit |
//! | `sluice_wal_fsync_duration_seconds` | histogram | | one group commit's fdatasync time |
//! | `sluice_wal_records_appended_total` | counter | partition | records made durable by this process |
//! | `sluice_wal_bytes_appended_total` | counter | partition | bytes written (frames included) |
//! | `sluice_wal_used_bytes` | gauge | partition | bytes of segments holding unconfirmed records |
//! | `sluice_wal_capacity_bytes` | gauge | partition | the partition's byte budget |
//! | `sluice_wal_unconfirmed_records` | gauge | partition | appended but not yet published |
//! | `sluice_wal_full` | gauge | partition | 1 while the log refuses appends for lack of space |
//! | `sluice_wal_poisoned` | gauge | partition | 1 once a write or sync failed |
//! | `sluice_wal_dropped_records_total` | counter | partition | records discarded by the `drop_oldest` policy |
//! | `sluice_publish_lag_records` | gauge | partition | records in the log not yet confirmed in ClickHouse (or dead-lettered) |
//! | `sluice_publish_lag_seconds` | gauge | partition | age of the oldest such record |
//! | `sluice_publish_batch_rows` | histogram | partition | rows per batch sent to ClickHouse |
//! | `sluice_publish_events_total` | counter | partition | rows confirmed by ClickHouse |
//! | `sluice_clickhouse_insert_duration_seconds` | histogram | partition | one INSERT attempt, request to answer |
//! | `sluice_clickhouse_inserts_total` | counter | partition, result, code | INSERT attempts by result (`ok`, `transient`, `bad_data`, `config`) and ClickHouse exception code (`0` for none, `connect`, `timeout`) |
//! | `sluice_clickhouse_retries_total` | counter | partition | attempts that were retries of a failed one |
//! | `sluice_clickhouse_up` | gauge | | 1 while the last contact with ClickHouse succeeded |
//! | `sluice_dead_letters_total` | counter | partition, category | events written to the dead-letter store, by failure category |
//! | `sluice_dead_letters_evicted_total` | counter | reason, category | dead-letter entries removed by retention: `reason` is `max_age` or `max_bytes` (`dead_letter.*`), `category` the failure category |
//!
//! The recorder is `metrics-exporter-prometheus`, installed once per process ([`handle`]); every
//! server started in the same process (tests start several) shares it. The gauges are refreshed
//! from each log's status once a second by the server and again on every scrape.

pub mod listener;

use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sluice_wal::{CommitStats, Observer, Status};

/// Answered requests, by route template and status.
pub const HTTP_REQUESTS_TOTAL: &str = "sluice_http_requests_total";
/// Request latency, by route template.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "sluice_http_request_duration_seconds";
/// Requests being handled right now.
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "sluice_http_requests_in_flight";
/// Tracking requests refused before storing, by reason and source.
pub const HTTP_REJECTIONS_TOTAL: &str = "sluice_http_rejections_total";
/// Append latency as the handler sees it (queueing, group commit and fdatasync).
pub const WAL_APPEND_DURATION_SECONDS: &str = "sluice_wal_append_duration_seconds";
/// Records per group commit.
pub const WAL_COMMIT_RECORDS: &str = "sluice_wal_commit_records";
/// fdatasync latency per group commit.
pub const WAL_FSYNC_DURATION_SECONDS: &str = "sluice_wal_fsync_duration_seconds";
/// Records made durable, by partition.
pub const WAL_RECORDS_APPENDED_TOTAL: &str = "sluice_wal_records_appended_total";
/// Bytes made durable (frames included), by partition.
pub const WAL_BYTES_APPENDED_TOTAL: &str = "sluice_wal_bytes_appended_total";
/// Bytes of segments that cannot be recycled yet, by partition.
pub const WAL_USED_BYTES: &str = "sluice_wal_used_bytes";
/// The partition's byte budget.
pub const WAL_CAPACITY_BYTES: &str = "sluice_wal_capacity_bytes";
/// Records appended but not yet confirmed by the publisher, by partition.
pub const WAL_UNCONFIRMED_RECORDS: &str = "sluice_wal_unconfirmed_records";
/// 1 while the partition's log is full, else 0.
pub const WAL_FULL: &str = "sluice_wal_full";
/// 1 once the partition's log is poisoned, else 0.
pub const WAL_POISONED: &str = "sluice_wal_poisoned";
/// Records dropped by the `drop_oldest` policy, by partition (the log's own running total).
pub const WAL_DROPPED_RECORDS_TOTAL: &str = "sluice_wal_dropped_records_total";

/// Records not yet confirmed in ClickHouse, by partition.
pub const PUBLISH_LAG_RECORDS: &str = "sluice_publish_lag_records";
/// Age of the oldest record not yet confirmed, by partition.
pub const PUBLISH_LAG_SECONDS: &str = "sluice_publish_lag_seconds";
/// Rows per batch, by partition.
pub const PUBLISH_BATCH_ROWS: &str = "sluice_publish_batch_rows";
/// Rows confirmed by ClickHouse, by partition.
pub const PUBLISH_EVENTS_TOTAL: &str = "sluice_publish_events_total";
/// One INSERT attempt's latency, by partition.
pub const CLICKHOUSE_INSERT_DURATION_SECONDS: &str = "sluice_clickhouse_insert_duration_seconds";
/// INSERT attempts by partition, result and exception code.
pub const CLICKHOUSE_INSERTS_TOTAL: &str = "sluice_clickhouse_inserts_total";
/// Retried INSERT attempts, by partition.
pub const CLICKHOUSE_RETRIES_TOTAL: &str = "sluice_clickhouse_retries_total";
/// 1 while ClickHouse answered the last request, else 0.
pub const CLICKHOUSE_UP: &str = "sluice_clickhouse_up";
/// Events dead-lettered, by partition and failure category.
pub const DEAD_LETTERS_TOTAL: &str = "sluice_dead_letters_total";
/// Dead-letter entries evicted by retention, by reason and failure category.
pub const DEAD_LETTERS_EVICTED_TOTAL: &str = "sluice_dead_letters_evicted_total";

/// Histogram buckets for latencies, in seconds: group commit on a fast disk takes tens to
/// hundreds of microseconds, so the low end is fine-grained; the top catches stalls.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Histogram buckets for rows per ClickHouse batch.
const ROW_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0, 50_000.0, 100_000.0, 500_000.0,
];
/// Histogram buckets for records per group commit.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0, 65536.0,
];

/// The process-wide Prometheus handle; installs the recorder on first use.
///
/// If some other recorder was installed first (a program embedding this library), ours is
/// built but not installed: `/metrics` then shows nothing, and a warning says why.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(WAL_COMMIT_RECORDS.into()), BATCH_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(PUBLISH_BATCH_ROWS.into()), ROW_BUCKETS)
            })
            .expect("bucket lists are non-empty constants");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => describe(),
            Err(e) => tracing::warn!(error = %e,
                "another metrics recorder is installed; /metrics will not show sluice's metrics"),
        }
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        PUBLISH_LAG_RECORDS,
        "Records in the log not yet confirmed in ClickHouse, by partition"
    );
    describe_gauge!(
        PUBLISH_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest record not yet confirmed in ClickHouse, by partition"
    );
    describe_histogram!(PUBLISH_BATCH_ROWS, "Rows per batch sent to ClickHouse");
    describe_counter!(PUBLISH_EVENTS_TOTAL, "Rows confirmed by ClickHouse");
    describe_histogram!(
        CLICKHOUSE_INSERT_DURATION_SECONDS,
        Unit::Seconds,
        "One INSERT attempt, request to answer"
    );
    describe_counter!(
        CLICKHOUSE_INSERTS_TOTAL,
        "INSERT attempts by result and ClickHouse exception code"
    );
    describe_counter!(
        CLICKHOUSE_RETRIES_TOTAL,
        "INSERT attempts that retried a failed one"
    );
    describe_gauge!(
        CLICKHOUSE_UP,
        "1 while the last contact with ClickHouse succeeded"
    );
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        "Events written to the dead-letter store, by failure category"
    );
    describe_counter!(
        DEAD_LETTERS_EVICTED_TOTAL,
        "Dead-letter entries removed by retention, by reason (max_age, max_bytes) and category"
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "Answered HTTP requests by route template and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from request head to answer, by route template"
    );
    describe_gauge!(HTTP_REQUESTS_IN_FLIGHT, "Requests being handled right now");
    describe_counter!(
        HTTP_REJECTIONS_TOTAL,
        "Tracking requests refused before storing, by reason (auth, rate, size, invalid) and source"
    );
    describe_histogram!(
        WAL_APPEND_DURATION_SECONDS,
        Unit::Seconds,
        "Time from submitting an envelope to its acknowledgement as durable"
    );
    describe_histogram!(WAL_COMMIT_RECORDS, "Records made durable per group commit");
    describe_histogram!(
        WAL_FSYNC_DURATION_SECONDS,
        Unit::Seconds,
        "fdatasync time per group commit"
    );
    describe_counter!(
        WAL_RECORDS_APPENDED_TOTAL,
        "Records made durable, by partition"
    );
    describe_counter!(
        WAL_BYTES_APPENDED_TOTAL,
        Unit::Bytes,
        "Bytes made durable (frames included), by partition"
    );
    describe_gauge!(
        WAL_USED_BYTES,
        Unit::Bytes,
        "Bytes of segments holding unconfirmed records"
    );
    describe_gauge!(
        WAL_CAPACITY_BYTES,
        Unit::Bytes,
        "The partition's byte budget"
    );
    describe_gauge!(
        WAL_UNCONFIRMED_RECORDS,
        "Records appended but not yet confirmed by the publisher"
    );
    describe_gauge!(
        WAL_FULL,
        "1 while the partition's log refuses appends for lack of space"
    );
    describe_gauge!(
        WAL_POISONED,
        "1 once a write or sync failed on the partition's log"
    );
    describe_counter!(
        WAL_DROPPED_RECORDS_TOTAL,
        "Records discarded by the drop_oldest policy"
    );
}

/// Records one answered request. `route` is a template or a fixed label, never a raw path.
pub fn record_request(route: &'static str, status: StatusCode, elapsed: Duration) {
    handle();
    metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route, "status" => status_label(status))
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route)
        .record(elapsed.as_secs_f64());
}

/// Counts one refused tracking request. `reason` is `auth`, `rate`, `size` or `invalid`;
/// `source` is `snowplow`, `segment`, `pycolytics` or `collect`.
pub fn record_rejection(reason: &'static str, source: &'static str) {
    handle();
    metrics::counter!(HTTP_REJECTIONS_TOTAL, "reason" => reason, "source" => source).increment(1);
}

/// Counts a request as in flight until the guard is dropped (also when the request's task is
/// cancelled).
#[derive(Debug)]
pub struct InFlight(&'static Gauge);

impl InFlight {
    /// Starts counting one request.
    pub fn start() -> InFlight {
        static GAUGE: OnceLock<Gauge> = OnceLock::new();
        let gauge = GAUGE.get_or_init(|| {
            handle();
            metrics::gauge!(HTTP_REQUESTS_IN_FLIGHT)
        });
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Records how long one append took to become durable, as the handler waited for it.
pub fn record_append(elapsed: Duration) {
    metrics::histogram!(WAL_APPEND_DURATION_SECONDS).record(elapsed.as_secs_f64());
}

/// A static label for the statuses the collector answers with (keeps labels allocation-free).
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        431 => "431",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// The writer-side metrics of one partition, fed by its log's writer thread.
#[derive(Debug)]
pub struct WalObserver {
    partition: usize,
    records: Counter,
    bytes: Counter,
    batch: Histogram,
    fsync: Histogram,
}

impl WalObserver {
    /// Registers the partition's writer metrics.
    pub fn new(partition: usize) -> WalObserver {
        handle();
        let label = partition.to_string();
        WalObserver {
            partition,
            records: metrics::counter!(WAL_RECORDS_APPENDED_TOTAL, "partition" => label.clone()),
            bytes: metrics::counter!(WAL_BYTES_APPENDED_TOTAL, "partition" => label),
            batch: metrics::histogram!(WAL_COMMIT_RECORDS),
            fsync: metrics::histogram!(WAL_FSYNC_DURATION_SECONDS),
        }
    }
}

impl Observer for WalObserver {
    fn committed(&self, stats: &CommitStats) {
        self.records.increment(stats.records as u64);
        self.bytes.increment(stats.bytes);
        self.batch.record(stats.records as f64);
        self.fsync.record(stats.sync_time.as_secs_f64());
    }

    fn poisoned(&self, cause: &str) {
        // Logged here, once, rather than on every refused request afterwards.
        tracing::error!(partition = self.partition, cause,
            "the partition's log is poisoned and refuses every append until restarted; check the disk");
    }
}

/// The status gauges of one partition.
#[derive(Debug)]
pub struct PartitionMetrics {
    used: Gauge,
    capacity: Gauge,
    unconfirmed: Gauge,
    full: Gauge,
    poisoned: Gauge,
    dropped: Counter,
}

impl PartitionMetrics {
    /// Registers the partition's gauges.
    pub fn new(partition: usize) -> PartitionMetrics {
        handle();
        let label = partition.to_string();
        PartitionMetrics {
            used: metrics::gauge!(WAL_USED_BYTES, "partition" => label.clone()),
            capacity: metrics::gauge!(WAL_CAPACITY_BYTES, "partition" => label.clone()),
            unconfirmed: metrics::gauge!(WAL_UNCONFIRMED_RECORDS, "partition" => label.clone()),
            full: metrics::gauge!(WAL_FULL, "partition" => label.clone()),
            poisoned: metrics::gauge!(WAL_POISONED, "partition" => label.clone()),
            dropped: metrics::counter!(WAL_DROPPED_RECORDS_TOTAL, "partition" => label),
        }
    }

    /// Sets every gauge from a status snapshot.
    pub fn record(&self, status: &Status) {
        self.used.set(status.used_bytes as f64);
        self.capacity.set(status.capacity_bytes as f64);
        self.unconfirmed.set(status.unconfirmed as f64);
        self.full.set(if status.full { 1.0 } else { 0.0 });
        self.poisoned
            .set(if status.poisoned.is_some() { 1.0 } else { 0.0 });
        self.dropped.absolute(status.dropped_total);
    }
}

/// What keeps gauges that are read rather than counted (the logs' fill and state) current:
/// refreshed before every scrape and by the periodic housekeeping.
pub trait Gauges: Send + Sync {
    /// Sets the gauges from the current state.
    fn refresh_gauges(&self);
}

/// Publisher and sink metrics. Callers pass bounded values only: a partition index, a result
/// from a fixed set, a ClickHouse exception code, a failure category.
pub mod publish {
    use std::time::Duration;

    use super::*;
    use crate::event::FailureCategory;

    /// The publisher's distance behind the log's durable end.
    pub fn lag(partition: usize, records: u64, oldest_age: Duration) {
        let p = partition.to_string();
        metrics::gauge!(PUBLISH_LAG_RECORDS, "partition" => p.clone()).set(records as f64);
        metrics::gauge!(PUBLISH_LAG_SECONDS, "partition" => p).set(oldest_age.as_secs_f64());
    }

    /// A batch of `rows` was confirmed by ClickHouse.
    pub fn batch_confirmed(partition: usize, rows: usize) {
        let p = partition.to_string();
        metrics::histogram!(PUBLISH_BATCH_ROWS, "partition" => p.clone()).record(rows as f64);
        metrics::counter!(PUBLISH_EVENTS_TOTAL, "partition" => p).increment(rows as u64);
    }

    /// One INSERT attempt: `result` is `ok`, `transient`, `bad_data` or `config`; `code` the
    /// exception code (`0` when none, `connect`, `timeout`).
    pub fn insert_attempt(partition: usize, result: &'static str, code: &str, took: Duration) {
        let p = partition.to_string();
        metrics::histogram!(CLICKHOUSE_INSERT_DURATION_SECONDS, "partition" => p.clone())
            .record(took.as_secs_f64());
        metrics::counter!(CLICKHOUSE_INSERTS_TOTAL, "partition" => p, "result" => result,
            "code" => code.to_string())
        .increment(1);
        metrics::gauge!(CLICKHOUSE_UP).set(if code == "connect" || code == "timeout" {
            0.0
        } else {
            1.0
        });
    }

    /// An INSERT attempt that retries a failed one.
    pub fn retry(partition: usize) {
        metrics::counter!(CLICKHOUSE_RETRIES_TOTAL, "partition" => partition.to_string())
            .increment(1);
    }

    /// Whether ClickHouse answered the last contact (schema reads, pings).
    pub fn clickhouse_up(up: bool) {
        metrics::gauge!(CLICKHOUSE_UP).set(if up { 1.0 } else { 0.0 });
    }

    /// `events` events of `category` went to the dead-letter store.
    pub fn dead_lettered(partition: usize, category: FailureCategory, events: u64) {
        metrics::counter!(DEAD_LETTERS_TOTAL, "partition" => partition.to_string(),
            "category" => category.as_str())
        .increment(events);
    }
}

/// Dead-letter store metrics. Callers pass bounded values only: a reason from a fixed set and
/// a failure category.
pub mod dead_letter {
    use super::*;
    use crate::event::FailureCategory;

    /// Retention removed `entries` entries of `category`; `reason` is `max_age` or
    /// `max_bytes`.
    pub fn evicted(reason: &'static str, category: FailureCategory, entries: u64) {
        handle();
        metrics::counter!(DEAD_LETTERS_EVICTED_TOTAL, "reason" => reason,
            "category" => category.as_str())
        .increment(entries);
    }
}
