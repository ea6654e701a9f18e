//! # sluice: a durable event collector in front of ClickHouse
//!
//! Requests arrive over HTTP, are appended to an fsynced write-ahead log before they are
//! acknowledged, and are later published to ClickHouse. The modules follow the data.
//!
//! # Layout
//!
//! - [`config`]: the documented configuration, loaded from file < environment < flags and
//!   validated once at start-up.
//! - [`http`]: the collector's routes, per-protocol responses, size and time limits.
//! - [`envelope`]: what is logged for each accepted request (the raw request, versioned).
//! - [`event`]: the canonical enriched event (one ClickHouse row) and the failure kinds.
//! - [`ingest`]: the partitioned logs: routing a request to a partition and appending it.
//! - [`metrics`]: every metric name, and the separate `/metrics` listener.
//! - [`server`]: `run(config, shutdown)`: wires the stages together and stops them cleanly.
//! - [`commands`]: the operator CLI (`wal status|inspect|verify`, `config show`).
//! - [`cli`]: the command-line grammar.

#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod deadletter;
pub mod envelope;
pub mod event;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod publish;
pub mod server;
pub mod sink;
