//! The ClickHouse sink: turns batches of [`Event`]s into one INSERT each, exactly once where the
//! server deduplicates, through outages, bad rows and operator mistakes.
//!
//! # How a batch is delivered
//!
//! 1. At [`Sink::connect`] the sink reads the server version (→ [`version::Features`]) and the
//!    table's columns (`system.columns`). The INSERT names exactly the columns the table shares
//!    with [`crate::event::COLUMNS`], so operator-added columns get their defaults and optional
//!    columns the operator dropped are skipped; a missing required column refuses to start.
//! 2. [`encode::Encoder`] writes RowBinary by the *server's* column types. Rows whose values
//!    cannot become those types are rejected before sending (returned, to be dead-lettered).
//! 3. The body is framed as ClickHouse compressed blocks (LZ4, `decompress=1`), with
//!    `insert_deduplication_token = token` when the server and table deduplicate. A retry
//!    resends identical bytes with the same token, so a retried insert that had in fact
//!    succeeded is dropped by the server instead of stored twice.
//! 4. Failures are classified by exception code ([`client::ErrorClass`]): transient → capped,
//!    jittered backoff, forever; configuration (auth, unknown database/table/setting) → a loud
//!    log line, [`Sink::paused_because`] set, a slow retry, nothing dead-lettered; schema (a column
//!    vanished) → re-read the table, re-encode, retry; bad data → split the batch in halves,
//!    each with token `"{token}:{first}-{end}"`, down to single rows, which are returned as
//!    rejected with ClickHouse's message.
//!
//! The caller checkpoints only after [`Sink::deliver`] returns `Ok`; stopping mid-way
//! ([`SinkError::Stopped`]) leaves nothing to undo.
//!
//! On servers without insert dedup tokens (before 22.2, e.g. 18.16) delivery is at-least-once:
//! logged once at connect.
//!
//! Batches must stay below the server's `max_insert_block_size` (1 048 576 rows by default) so
//! each INSERT is one block, all-or-nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use serde::{Deserialize, Serialize};

use crate::config::units::{check_range, HumanDuration, Violation};
use crate::event::Event;
use crate::metrics::publish as m;
use crate::shutdown::Shutdown;

pub mod client;
pub mod compress;
pub mod deliver;
pub mod encode;
pub mod migrate;
pub mod sample;
pub mod types;
pub mod version;

use client::{CallError, Client, ErrorClass};
use encode::{Encoded, Encoder};
use migrate::TableInfo;
use version::ServerVersion;

/// Request body compression.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// ClickHouse LZ4 blocks with checksums (`decompress=1`). The default.
    #[default]
    Lz4,
    /// Plain RowBinary.
    None,
}

/// The ClickHouse server events are published to (`[clickhouse]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface URL. Default `http://127.0.0.1:8123`. Flag `--clickhouse-url`.
    /// `http://` only (put TLS in a local proxy).
    pub url: String,
    /// Database holding the events table and `schema_migrations`. Default `sluice`; letters,
    /// digits and `_`, not starting with a digit.
    pub database: String,
    /// The events table. Default `events`; same rules as `database`.
    pub table: String,
    /// User to authenticate as (HTTP basic auth). Default `default`.
    pub user: String,
    /// That user's password. Default empty. A secret: `config show` prints it as `<redacted>`
    /// (it redacts every key named like a secret); prefer the environment
    /// (`SLUICE_CLICKHOUSE__PASSWORD`) to the file.
    pub password: String,
    /// Time to establish a connection. Default `5s`; `100ms` to `5m`.
    pub connect_timeout: HumanDuration,
    /// Time for one whole request (sending a batch and getting the answer). Default `60s`;
    /// `1s` to `1h`. An insert that times out is retried with the same bytes and token.
    pub request_timeout: HumanDuration,
    /// First delay before retrying a transient failure; doubles per attempt, with jitter.
    /// Default `100ms`; `10ms` to `1m`.
    pub backoff_min: HumanDuration,
    /// Longest delay between retries of a transient failure. Default `30s`; at least
    /// `backoff_min`, at most `10m`.
    pub backoff_max: HumanDuration,
    /// Delay between retries while ClickHouse refuses for a configuration reason
    /// (authentication, unknown database or table). Default `30s`; `100ms` to `1h`.
    pub pause_interval: HumanDuration,
    /// `lz4` (default) or `none`.
    pub compression: Compression,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "sluice".into(),
            table: "events".into(),
            user: "default".into(),
            password: String::new(),
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            request_timeout: HumanDuration(Duration::from_secs(60)),
            backoff_min: HumanDuration(Duration::from_millis(100)),
            backoff_max: HumanDuration(Duration::from_secs(30)),
            pause_interval: HumanDuration(Duration::from_secs(30)),
            compression: Compression::Lz4,
        }
    }
}

impl ClickHouseConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let url = self.url.as_str();
        let ok = (url.starts_with("http://") && url.len() > 7)
            || (url.starts_with("https://") && url.len() > 8);
        if !ok {
            out.push(Violation {
                key: "clickhouse.url",
                message: format!("`{url}` is not an http:// or https:// URL"),
            });
        }
        for (key, v) in [
            ("clickhouse.database", &self.database),
            ("clickhouse.table", &self.table),
        ] {
            if !is_identifier(v) {
                out.push(Violation {
                    key,
                    message: format!(
                        "`{v}` must be letters, digits and `_`, not starting with a digit"
                    ),
                });
            }
        }
        if self.user.is_empty() {
            out.push(Violation {
                key: "clickhouse.user",
                message: "must not be empty (ClickHouse's default user is `default`)".into(),
            });
        }
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let bounds = [
            (
                "clickhouse.connect_timeout",
                self.connect_timeout.0,
                ms(100),
                s(300),
            ),
            (
                "clickhouse.request_timeout",
                self.request_timeout.0,
                s(1),
                s(3600),
            ),
            ("clickhouse.backoff_min", self.backoff_min.0, ms(10), s(60)),
            (
                "clickhouse.backoff_max",
                self.backoff_max.0,
                self.backoff_min.0,
                s(600),
            ),
            (
                "clickhouse.pause_interval",
                self.pause_interval.0,
                ms(100),
                s(3600),
            ),
        ];
        for (key, v, lo, hi) in bounds {
            let (v, lo, hi) = (HumanDuration(v), HumanDuration(lo), HumanDuration(hi));
            check_range(&mut out, key, v, lo, hi);
        }
        out
    }

    /// `` `db`.`table` ``.
    pub fn qualified_table(&self) -> String {
        format!(
            "{}.{}",
            encode::quote_ident(&self.database),
            encode::quote_ident(&self.table)
        )
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why the sink cannot (yet) deliver.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// ClickHouse cannot be reached; the caller retries later (ingest continues meanwhile).
    #[error("cannot reach ClickHouse at {url}: {reason}")]
    Unreachable {
        /// The configured URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The table lacks a column sluice must fill.
    #[error(
        "table {table} has no column `{column}`, which sluice requires (run `sluice db check`)"
    )]
    MissingColumn {
        /// `db.table`.
        table: String,
        /// The column.
        column: String,
    },
    /// A column sluice fills has a type it cannot write.
    #[error("table {table} column `{column}` has type {ty}: {reason}")]
    IncompatibleColumn {
        /// `db.table`.
        table: String,
        /// The column.
        column: String,
        /// Its type.
        ty: String,
        /// Why sluice cannot write it.
        reason: String,
    },
    /// ClickHouse refuses for a reason only an operator can fix (auth, missing table…).
    #[error("ClickHouse configuration problem: {reason}")]
    Config {
        /// What is wrong, with what to do.
        reason: String,
    },
    /// ClickHouse answered something unexpected.
    #[error("ClickHouse error: {reason}")]
    Server {
        /// The error.
        reason: String,
    },
    /// `stop` turned true; nothing was confirmed.
    #[error("stopped before ClickHouse confirmed the batch")]
    Stopped,
    /// The batch was encoded for a reading of the table that is no longer current (its
    /// columns changed); nothing was confirmed. Encode the rows again.
    #[error("the table changed since the batch was encoded")]
    Stale,
}

impl SinkError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            SinkError::Unreachable { .. } => "unreachable",
            SinkError::MissingColumn { .. } => "missing_column",
            SinkError::IncompatibleColumn { .. } => "incompatible_column",
            SinkError::Config { .. } => "config",
            SinkError::Server { .. } => "server",
            SinkError::Stopped => "stopped",
            SinkError::Stale => "stale",
        }
    }

    /// From a failed call outside the insert loop (connect, schema reads, migrations).
    pub(crate) fn from_call(config: &ClickHouseConfig, e: CallError) -> SinkError {
        match e.class() {
            ErrorClass::Transient if !matches!(e, CallError::Server { .. }) => {
                SinkError::Unreachable {
                    url: config.url.clone(),
                    reason: e.to_string(),
                }
            }
            ErrorClass::Config => SinkError::Config {
                reason: e.to_string(),
            },
            _ => SinkError::Server {
                reason: e.to_string(),
            },
        }
    }
}

/// What [`Sink::deliver`] did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Rows ClickHouse confirmed.
    pub inserted: usize,
    /// Rows that can never load: (index in the batch, reason), in index order.
    pub rejected: Vec<(usize, String)>,
}

/// A batch's rows as RowBinary for one reading of the table ([`Sink::encode_into`]), with
/// each row's place in the log (`wal_lsn`, `wal_index`) for dead-lettering.
///
/// With LZ4 on (`clickhouse.compression`), every full [`compress::BLOCK_BYTES`] of the
/// RowBinary stream is compressed as soon as it is written: a batch waiting in memory holds
/// compressed blocks plus less than one block of raw rows. The blocks fall on the same
/// boundaries [`compress::compress`] uses for the whole stream, so the body sent is
/// byte-for-byte what compressing the whole batch at once gives (a retry, or a replay after a
/// crash, sends identical bytes).
#[derive(Debug, Default)]
pub struct EncodedRows {
    prepared: Option<Arc<Prepared>>,
    /// Rows' byte ranges in the whole stream; `encoded.data` holds only the unsealed tail.
    encoded: Encoded,
    /// Compressed blocks of the stream's first `sealed_len` bytes.
    sealed: Vec<u8>,
    sealed_len: usize,
    lz4: bool,
    /// The whole body once [`EncodedRows::finish`]ed (then `sealed` and the tail are empty).
    body: Option<Bytes>,
    /// Runs of rows from one request: (its `wal_lsn`, index of its first row here).
    requests: Vec<(u64, u32)>,
    /// Per row, its `wal_index`. `NONE_*` stand for a missing value.
    indices: Vec<u32>,
}

/// A missing `wal_lsn` in [`EncodedRows`]' bookkeeping.
const NONE_LSN: u64 = u64::MAX;
/// A missing `wal_index` in [`EncodedRows`]' bookkeeping.
const NONE_INDEX: u32 = u32::MAX;

impl EncodedRows {
    /// Rows in the batch (encoded or rejected by the encoder).
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when no row was added.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Bytes the batch fills (its RowBinary and per-row bookkeeping). Spare capacity is left
    /// out: it is reserved but not touched, so it takes no memory until used.
    pub fn memory(&self) -> usize {
        self.sealed.len()
            + self.encoded.data.len()
            + self.body.as_ref().map_or(0, Bytes::len)
            + self.encoded.rows.len() * std::mem::size_of::<Option<std::ops::Range<usize>>>()
            + self.indices.len() * std::mem::size_of::<u32>()
            + self.requests.len() * std::mem::size_of::<(u64, u32)>()
    }

    /// Row `i`'s `wal_lsn` and `wal_index`.
    pub fn position(&self, i: usize) -> Option<(Option<u64>, Option<u64>)> {
        let index = *self.indices.get(i)?;
        let run = self
            .requests
            .partition_point(|&(_, first)| first as usize <= i)
            .checked_sub(1)?;
        let lsn = self.requests[run].0;
        Some((
            (lsn != NONE_LSN).then_some(lsn),
            (index != NONE_INDEX).then_some(u64::from(index)),
        ))
    }

    /// Ends the batch: compresses the rest of the tail and keeps the whole body, so delivering
    /// it (and every retry) sends this one buffer without copying it. Nothing may be appended
    /// afterwards.
    pub fn finish(&mut self) {
        if self.body.is_some() {
            return;
        }
        let mut body = if self.lz4 {
            let mut all = std::mem::take(&mut self.sealed);
            compress::compress_into(&mut all, &self.encoded.data, true);
            self.sealed_len += self.encoded.data.len();
            all
        } else {
            std::mem::take(&mut self.encoded.data)
        };
        // Sealing leaves up to an LZ4 bound (a block's size) of touched spare room, and growth
        // by doubling up to as much again: a batch waits and is retried for as long as
        // ClickHouse takes, so it keeps only its bytes (one copy of a compressed body).
        body.shrink_to_fit();
        self.encoded.data = Vec::new();
        self.body = Some(Bytes::from(body));
    }

    /// Encodes `rows` after the batch's rows (with the encoder it was started with) and seals
    /// what fills whole blocks.
    fn append(&mut self, rows: &[Event], expect: usize) {
        let Some(prepared) = self.prepared.as_ref() else {
            return;
        };
        debug_assert!(self.body.is_none(), "rows appended to a finished batch");
        let first = self.encoded.rows.len();
        // With LZ4 the raw tail stays under two blocks: no reservation for the whole batch.
        let reserve_for = if self.lz4 { 0 } else { expect };
        prepared
            .encoder
            .encode_into(&mut self.encoded, rows, reserve_for);
        if self.sealed_len > 0 {
            // The encoder wrote ranges into the tail; make them positions in the whole stream.
            for range in self.encoded.rows[first..].iter_mut().flatten() {
                range.start += self.sealed_len;
                range.end += self.sealed_len;
            }
        }
        self.seal();
        let more = rows.len().max(expect.saturating_sub(self.indices.len()));
        self.indices.reserve(more);
        for row in rows {
            let lsn = row.wal_lsn.unwrap_or(NONE_LSN);
            if self.requests.last().is_none_or(|&(last, _)| last != lsn) {
                self.requests.push((lsn, self.indices.len() as u32));
            }
            let index = row
                .wal_index
                .and_then(|i| u32::try_from(i).ok())
                .filter(|&i| i != NONE_INDEX)
                .unwrap_or(NONE_INDEX);
            self.indices.push(index);
        }
    }

    /// Compresses the tail's full blocks onto `sealed`.
    fn seal(&mut self) {
        let full = self.encoded.data.len() / compress::BLOCK_BYTES * compress::BLOCK_BYTES;
        if !self.lz4 || full == 0 {
            return;
        }
        compress::compress_into(&mut self.sealed, &self.encoded.data[..full], true);
        self.encoded.data.drain(..full);
        self.sealed_len += full;
    }

    /// The body of every accepted row as the client sends it: the sealed blocks and the
    /// compressed tail, or the raw stream without LZ4.
    fn whole_body(&self) -> Bytes {
        if let Some(body) = &self.body {
            return body.clone();
        }
        if !self.lz4 {
            return Bytes::copy_from_slice(&self.encoded.data);
        }
        let mut body = Vec::with_capacity(self.sealed.len() + self.encoded.data.len() / 2 + 64);
        body.extend_from_slice(&self.sealed);
        compress::compress_into(&mut body, &self.encoded.data, true);
        Bytes::from(body)
    }

    /// The rows with the whole stream in memory (the sealed blocks decompressed), to cut
    /// pieces of when bisecting. `None` if the sealed blocks do not decompress (cannot happen
    /// short of memory corruption: they were made here).
    fn unsealed(&self) -> Option<Encoded> {
        let data = match &self.body {
            Some(body) if self.lz4 => compress::decompress(body)?,
            Some(body) => body.to_vec(),
            None => {
                let mut data = compress::decompress(&self.sealed)?;
                data.extend_from_slice(&self.encoded.data);
                data
            }
        };
        Some(Encoded {
            data,
            rows: self.encoded.rows.clone(),
            rejected: self.encoded.rejected.clone(),
        })
    }
}

/// The INSERT for the table as last read.
#[derive(Debug)]
struct Prepared {
    encoder: Encoder,
    insert_sql: String,
}

/// A connected ClickHouse sink; share it between partitions (`Send + Sync`).
#[derive(Debug)]
pub struct Sink {
    config: ClickHouseConfig,
    client: Client,
    version: ServerVersion,
    dedup: bool,
    prepared: Mutex<Arc<Prepared>>,
    paused: Mutex<Option<String>>,
}

impl Sink {
    /// Connects: reads the server version and the table's columns, checks every required
    /// column exists and every shared column's type can be written.
    pub async fn connect(config: &ClickHouseConfig) -> Result<Sink, SinkError> {
        let client = Client::new(config).map_err(|reason| SinkError::Config { reason })?;
        let version = migrate::server_version(&client, config).await?;
        let info =
            migrate::read_table(&client, config)
                .await?
                .ok_or_else(|| SinkError::Config {
                    reason: format!(
                        "table {} does not exist; create it with `sluice db init`",
                        config.qualified_table()
                    ),
                })?;
        let prepared = prepare(config, &info)?;
        let dedup = version.features().insert_deduplication_token && info.deduplicates();
        if dedup {
            tracing::info!(%version, table = %config.qualified_table(),
                "ClickHouse deduplicates retried inserts: delivery is exactly-once");
        } else {
            tracing::warn!(%version, table = %config.qualified_table(),
                "ClickHouse cannot deduplicate retried inserts (needs 22.2+ and a table with \
                 non_replicated_deduplication_window or a Replicated engine): delivery is \
                 at-least-once; a retry after an ambiguous failure may store a batch twice");
        }
        m::clickhouse_up(true);
        Ok(Sink {
            config: config.clone(),
            client,
            version,
            dedup,
            prepared: Mutex::new(Arc::new(prepared)),
            paused: Mutex::new(None),
        })
    }

    /// Whether retried inserts are deduplicated (insert tokens and a deduplicating table).
    pub fn supports_dedup(&self) -> bool {
        self.dedup
    }

    /// The server's version.
    pub fn server_version(&self) -> ServerVersion {
        self.version
    }

    /// While deliveries are paused by a configuration error, why; `None` otherwise.
    pub fn paused_because(&self) -> Option<String> {
        self.paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The INSERT's columns, in order.
    pub fn columns(&self) -> Vec<String> {
        self.current()
            .encoder
            .columns()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// The table rows go to, `database.table`.
    pub fn table(&self) -> String {
        self.config.qualified_table()
    }

    /// Runs `sql` under `readonly = 1` with the server enforcing `max_rows` (in blocks of at
    /// most that many rows) and `timeout`, and returns its rows as JSON objects (at most
    /// `max_rows` of them) with the answer's `meta` and `statistics`. The server refuses
    /// anything but reads (`INSERT`, `ALTER`, `DROP`, `CREATE`, `SET`, table functions) with
    /// code 164, and a `SETTINGS` clause cannot lift the limits.
    pub async fn query_readonly(
        &self,
        sql: &str,
        max_rows: usize,
        timeout: Duration,
    ) -> Result<serde_json::Value, CallError> {
        let rows = max_rows.max(1).to_string();
        let seconds = timeout.as_secs().max(1).to_string();
        // `readonly` goes last: the limits before it are applied, and nothing after it can
        // change them.
        let settings = [
            ("default_format", "JSON"),
            ("max_result_rows", rows.as_str()),
            ("max_block_size", rows.as_str()),
            ("result_overflow_mode", "break"),
            ("max_execution_time", seconds.as_str()),
            ("readonly", "1"),
        ];
        let text = self
            .client
            .query_with(sql, &settings, timeout + Duration::from_secs(1))
            .await?;
        let mut answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CallError::Server {
                status: 200,
                code: None,
                message: format!(
                    "the answer is not JSON ({e}); leave out any FORMAT clause: the answer is                      always JSON"
                ),
            })?;
        if let Some(data) = answer["data"].as_array_mut() {
            data.truncate(max_rows);
        }
        Ok(answer)
    }

    fn current(&self) -> Arc<Prepared> {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_paused(&self, why: Option<String>) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// Inserts `rows` (see the module docs). Returns the rows that can never load; transient
    /// and configuration failures are retried until they pass or `stop` turns true.
    pub async fn deliver(
        &self,
        partition: usize,
        rows: &[Event],
        token: &str,
        stop: &mut Shutdown,
    ) -> Result<Delivered, SinkError> {
        loop {
            let mut encoded = EncodedRows::default();
            self.encode_into(&mut encoded, rows, rows.len());
            encoded.finish();
            match self.deliver_encoded(partition, &encoded, token, stop).await {
                Err(SinkError::Stale) => continue,
                other => return other,
            }
        }
    }

    /// Appends `rows` to `batch`, encoded for the table as the sink last read it (or, when
    /// `batch` already holds rows, as it was when they were encoded). `expect` is how many rows
    /// the batch will hold, a hint for reserving once. The rows can be dropped straight away:
    /// a batch waiting to be delivered costs its RowBinary bytes, not its [`Event`]s.
    pub fn encode_into(&self, batch: &mut EncodedRows, rows: &[Event], expect: usize) {
        if batch.prepared.is_none() {
            batch.prepared = Some(self.current());
            batch.lz4 = self.client.lz4();
        }
        batch.append(rows, expect);
    }

    /// Inserts a batch built by [`Sink::encode_into`], as [`Sink::deliver`] does.
    /// [`SinkError::Stale`] when the table changed since the batch was encoded (the sink has
    /// re-read it by then): encode the rows again and deliver that.
    pub async fn deliver_encoded(
        &self,
        partition: usize,
        batch: &EncodedRows,
        token: &str,
        stop: &mut Shutdown,
    ) -> Result<Delivered, SinkError> {
        let Some(prepared) = batch.prepared.as_ref() else {
            return Ok(Delivered::default());
        };
        if !Arc::ptr_eq(prepared, &self.current()) {
            return Err(SinkError::Stale);
        }
        let encoded = &batch.encoded;
        match self.send_all(partition, prepared, batch, token, stop).await {
            Ok(server_rejected) => {
                let inserted = encoded.accepted().len() - server_rejected.len();
                let mut rejected = encoded.rejected.clone();
                rejected.extend(server_rejected);
                rejected.sort_by_key(|r| r.0);
                Ok(Delivered { inserted, rejected })
            }
            Err(Interrupt::Stopped) => Err(SinkError::Stopped),
            Err(Interrupt::Reload) => {
                self.reload(stop).await?;
                Err(SinkError::Stale)
            }
        }
    }

    /// Sends the accepted rows, splitting on bad data. Returns the rows ClickHouse rejected.
    async fn send_all(
        &self,
        partition: usize,
        prepared: &Prepared,
        batch: &EncodedRows,
        token: &str,
        stop: &mut Shutdown,
    ) -> Result<Vec<(usize, String)>, Interrupt> {
        let accepted = batch.encoded.accepted();
        let mut rejected = Vec::new();
        if accepted.is_empty() {
            return Ok(rejected);
        }
        // Pieces are cut from the whole stream, decompressed once, only when bisecting.
        let mut unsealed: Option<Encoded> = None;
        // Pieces still to send, as ranges of `accepted`; popped left to right.
        let mut pieces = vec![(0usize, accepted.len())];
        while let Some((lo, hi)) = pieces.pop() {
            let whole = (lo, hi) == (0, accepted.len());
            let piece_token = if whole {
                token.to_string()
            } else {
                format!("{token}:{}-{}", accepted[lo], accepted[hi - 1] + 1)
            };
            let body = if whole {
                batch.whole_body()
            } else {
                if unsealed.is_none() {
                    unsealed = batch.unsealed();
                }
                let Some(all) = unsealed.as_ref() else {
                    tracing::error!(partition, "a batch's compressed blocks do not decompress");
                    return Err(Interrupt::Stopped);
                };
                let raw = all.body(&accepted[lo..hi]);
                if batch.lz4 {
                    Bytes::from(compress::compress(&raw, true))
                } else {
                    Bytes::copy_from_slice(&raw)
                }
            };
            match self
                .send_piece(partition, prepared, body, &piece_token, stop)
                .await?
            {
                None => {}
                Some(_) if hi - lo > 1 => {
                    let mid = lo + (hi - lo) / 2;
                    pieces.push((mid, hi));
                    pieces.push((lo, mid));
                }
                Some(reason) => rejected.push((
                    accepted[lo],
                    format!("ClickHouse rejected the row: {reason}"),
                )),
            }
        }
        Ok(rejected)
    }

    /// Sends one body until it is confirmed (`None`) or refused as bad data (`Some(message)`).
    async fn send_piece(
        &self,
        partition: usize,
        prepared: &Prepared,
        body: Bytes,
        token: &str,
        stop: &mut Shutdown,
    ) -> Result<Option<String>, Interrupt> {
        let settings: Vec<(&str, &str)> = if self.dedup {
            vec![("insert_deduplication_token", token)]
        } else {
            Vec::new()
        };
        let mut failures = 0u32;
        loop {
            if stop.is_stopped() {
                return Err(Interrupt::Stopped);
            }
            let started = Instant::now();
            let result = tokio::select! {
                r = self.client.insert_body(&prepared.insert_sql, &settings, body.clone()) => r,
                () = stop.stopped() => return Err(Interrupt::Stopped),
            };
            let took = started.elapsed();
            let e = match result {
                Ok(()) => {
                    m::insert_attempt(partition, "ok", "0", took);
                    if self.paused_because().is_some() {
                        tracing::info!(partition, "ClickHouse accepts inserts again; resuming");
                        self.set_paused(None);
                    }
                    return Ok(None);
                }
                Err(e) => e,
            };
            let class = e.class();
            m::insert_attempt(partition, class.label(), &e.code_label(), took);
            let wait = match class {
                ErrorClass::BadData => return Ok(Some(e.message().to_string())),
                ErrorClass::Schema => {
                    tracing::warn!(partition, error = %e, "the table changed; re-reading its columns");
                    return Err(Interrupt::Reload);
                }
                ErrorClass::Transient => {
                    // Loud enough to notice, quiet enough not to flood: the first failure and
                    // then every tenth.
                    if failures % 10 == 0 {
                        tracing::warn!(partition, attempt = failures + 1, error = %e,
                            "insert failed; retrying with the same bytes");
                    }
                    backoff(&self.config, failures)
                }
                ErrorClass::Config => {
                    tracing::error!(partition, error = %e,
                        retry_in = %HumanDuration(self.config.pause_interval.0),
                        "ClickHouse refuses inserts for a configuration reason; publishing is \
                         PAUSED until an operator fixes it (nothing is dropped)");
                    self.set_paused(Some(e.to_string()));
                    self.config.pause_interval.0
                }
            };
            failures = failures.saturating_add(1);
            m::retry(partition);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.stopped() => return Err(Interrupt::Stopped),
            }
        }
    }

    /// Re-reads the table after a schema error, retrying until it is usable or `stop`.
    async fn reload(&self, stop: &mut Shutdown) -> Result<(), SinkError> {
        let mut failures = 0u32;
        loop {
            let problem = match migrate::read_table(&self.client, &self.config).await {
                Ok(Some(info)) => match prepare(&self.config, &info) {
                    Ok(p) => {
                        *self.prepared.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
                        self.set_paused(None);
                        return Ok(());
                    }
                    Err(e) => e.to_string(),
                },
                Ok(None) => format!("table {} does not exist", self.config.qualified_table()),
                Err(e) => e.to_string(),
            };
            tracing::error!(problem = %problem, "cannot use the ClickHouse table; publishing is PAUSED");
            self.set_paused(Some(problem));
            let wait = backoff(&self.config, failures).max(self.config.backoff_min.0);
            failures = failures.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(wait.min(self.config.pause_interval.0)) => {}
                () = stop.stopped() => return Err(SinkError::Stopped),
            }
        }
    }
}

/// Why the insert loop gave up its current encoding.
enum Interrupt {
    Stopped,
    Reload,
}

/// `backoff_min × 2^failures`, capped at `backoff_max`, with jitter: uniformly in [d/2, d].
fn backoff(config: &ClickHouseConfig, failures: u32) -> Duration {
    let min = config.backoff_min.0;
    let max = config.backoff_max.0.max(min);
    let d = min
        .checked_mul(1u32 << failures.min(20))
        .unwrap_or(max)
        .min(max);
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}

/// The INSERT for a table: the shared columns, or why the table cannot take sluice's rows.
fn prepare(config: &ClickHouseConfig, info: &TableInfo) -> Result<Prepared, SinkError> {
    let plan = migrate::plan(&info.columns);
    let table = config.qualified_table();
    if let Some(column) = plan.missing_required.first() {
        return Err(SinkError::MissingColumn {
            table,
            column: column.to_string(),
        });
    }
    if let Some(p) = plan.incompatible.first() {
        return Err(SinkError::IncompatibleColumn {
            table,
            column: p.column.clone(),
            ty: p.ty.clone(),
            reason: p.reason.clone(),
        });
    }
    if !plan.missing_optional.is_empty() {
        tracing::info!(table = %table, columns = ?plan.missing_optional,
            "optional columns absent from the table are not written");
    }
    let encoder = Encoder::new(plan.columns);
    let insert_sql = format!(
        "INSERT INTO {table} ({}) FORMAT RowBinary",
        encoder.column_list()
    );
    Ok(Prepared {
        encoder,
        insert_sql,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid() {
        assert_eq!(ClickHouseConfig::default().violations(), vec![]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = ClickHouseConfig {
            table: "events; DROP".into(),
            ..ClickHouseConfig::default()
        };
        c.backoff_max = HumanDuration(Duration::from_millis(1));
        let keys: Vec<_> = c.violations().into_iter().map(|v| v.key).collect();
        assert_eq!(keys, vec!["clickhouse.table", "clickhouse.backoff_max"]);
    }

    #[test]
    fn a_batch_sealed_block_by_block_sends_what_compressing_it_whole_gives_and_cuts_the_same_pieces(
    ) {
        let columns = [
            ("event_id", "UUID", crate::event::Kind::Uuid),
            ("app_id", "String", crate::event::Kind::Text),
            ("page_url", "Nullable(String)", crate::event::Kind::Text),
            (
                "collector_tstamp",
                "DateTime",
                crate::event::Kind::Timestamp,
            ),
        ]
        .map(|(name, ty, kind)| encode::TargetColumn {
            name: name.into(),
            ty: types::ChType::parse(ty),
            kind,
        });
        let encoder = Encoder::new(columns.to_vec());
        let events = sample::events(60_000);
        let plain = encoder.encode(&events);
        assert!(
            plain.data.len() > 2 * compress::BLOCK_BYTES,
            "spans several blocks"
        );
        for lz4 in [true, false] {
            let mut batch = EncodedRows {
                prepared: Some(Arc::new(Prepared {
                    encoder: Encoder::new(columns.to_vec()),
                    insert_sql: String::new(),
                })),
                lz4,
                ..EncodedRows::default()
            };
            for chunk in events.chunks(777) {
                batch.append(chunk, events.len());
            }
            assert_eq!(batch.len(), events.len());
            if lz4 {
                assert!(batch.sealed_len > 0 && batch.encoded.data.len() < compress::BLOCK_BYTES);
                let held = batch.sealed.len() + batch.encoded.data.len();
                assert!(
                    held < plain.data.len() * 9 / 10,
                    "compressed while waiting: {held}"
                );
                assert_eq!(
                    &batch.whole_body()[..],
                    compress::compress(&plain.data, true)
                );
            } else {
                assert_eq!(&batch.whole_body()[..], &plain.data[..]);
            }
            let all = batch.unsealed().unwrap();
            assert_eq!(all, plain, "the same stream, row ranges and rejections");
            let before = batch.whole_body();
            batch.finish();
            assert_eq!(batch.whole_body(), before, "finishing changes no byte");
            assert!(batch.sealed.is_empty() && batch.encoded.data.is_empty());
            assert_eq!(batch.unsealed().unwrap(), plain);
            assert_eq!(
                batch.position(31_111),
                Some((events[31_111].wal_lsn, events[31_111].wal_index))
            );
            for piece in [&[0usize][..], &[31_111, 31_112], &[59_999]] {
                assert_eq!(all.body(piece), plain.body(piece));
            }
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let c = ClickHouseConfig::default();
        for failures in [0, 1, 5, 30, u32::MAX] {
            let d = backoff(&c, failures);
            let full = (c.backoff_min.0 * (1u32 << failures.min(20))).min(c.backoff_max.0);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?}");
        }
    }
}
