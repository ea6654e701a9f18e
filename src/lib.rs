//! # sluice: a durable event collector in front of ClickHouse
//!
//! Requests arrive over HTTP, are appended to an fsynced write-ahead log before they are
//! acknowledged, and are later published to ClickHouse. The modules follow the data.
//!
//! # Layout
//!
//! - [`config`]: the documented configuration, loaded from file < environment < flags and
//!   validated once at start-up.
//! - [`http`]: the collector's routes, per-protocol responses, keys, size and time limits.
//! - [`envelope`]: what is logged for each accepted request (the raw request, versioned).
//! - [`event`]: the canonical enriched event (one ClickHouse row) and the failure kinds.
//! - [`ingest`]: the partitioned logs: routing a request to a partition and appending it.
//! - [`publish`]: one thread per partition reads the log, decodes (Snowplow, Segment,
//!   pycolytics, collect) and enriches requests into events, and delivers them in batches.
//! - [`sink`]: ClickHouse: schema, migrations, RowBinary encoding, inserts, retries.
//! - [`deadletter`]: the store of what can never load, with its reason and raw request.
//! - [`instance`]: the data directory's random id, part of every dedup token and generated id.
//! - [`metrics`]: every metric name, and the separate `/metrics` listener.
//! - [`ratelimit`]: token-bucket rate limits per client IP and per key, shared by every
//!   connection.
//! - [`server`]: `run(config, shutdown)`: wires the stages together and stops them cleanly.
//! - [`commands`]: the operator CLI (`serve`, `db`, `wal`, `dlq`, `config show`) and the
//!   mapping of their errors to exit codes.
//! - [`cli`]: the command-line grammar and the exit codes.
//! - [`logging`]: the log subscriber (text or JSON) and changing its level while running.

#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod deadletter;
pub mod envelope;
pub mod event;
pub mod http;
pub mod ingest;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod publish;
pub mod ratelimit;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod wire;
