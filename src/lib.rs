//! # sluice: a durable event collector in front of ClickHouse
//!
//! Requests arrive over HTTP, are appended to an fsynced write-ahead log before they are
//! acknowledged, and are later published to ClickHouse. The modules follow the data.
//!
//! # Layout
//!
//! Along the data's path, the acknowledgement side first:
//!
//! - [`http`]: the collector's routes, per-protocol answers, keys, size and time limits; it
//!   checks a request's shape and hands it to [`ingest`], and knows nothing of the publisher.
//! - [`envelope`]: what is logged for each accepted request (the raw request, versioned).
//! - [`ingest`]: the partitioned logs: routing a request to a partition and appending it.
//!
//! Then the publishing side, which reads the logs back:
//!
//! - [`publish`]: the dispatcher (`process`: an envelope into rows and failures), the field
//!   mappings of each protocol (`map`), the steps they share (`enrich`), and the pipeline (one
//!   publisher per partition: batch, record in the `ledger`, deliver, checkpoint) and `replay`.
//! - [`event`]: the canonical enriched event (one ClickHouse row) and the failure kinds.
//! - [`sink`]: ClickHouse: schema, migrations, RowBinary encoding, inserts, retries, and the
//!   ClickHouse implementation of the publisher's `Deliver` contract.
//! - [`deadletter`]: the store of what can never load, with its reason and raw request, and
//!   its `retention` (evicting by age and by size).
//!
//! Below both sides, imported by each and importing neither:
//!
//! - [`wire`]: parsing both sides share: the one route table, percent-decoding and the other
//!   text rules, timestamps, client IPs and CIDRs, the Snowplow and pycolytics wire formats.
//! - [`config::units`]: the configuration's units and its one range check.
//! - [`shutdown`]: the one stop signal every long-running task watches.
//! - [`listener`]: the accept loop of the side ports (`/metrics`, the admin API).
//! - [`metrics`]: every metric name (no component types), and the separate `/metrics` listener.
//! - [`instance`]: the data directory's random id, part of every dedup token and generated id.
//! - [`ratelimit`]: token-bucket rate limits per client IP and per key, shared by every
//!   connection.
//! - [`logging`]: the log subscriber (text or JSON) and changing its level while running.
//!
//! On top, the wiring and the operator's entry points:
//!
//! - [`config`]: the whole configuration, gathered from the sections each component defines
//!   (and takes alone), loaded from file < environment < flags and validated at start-up.
//! - [`server`]: `start`/`run`: binds the listeners, starts the publishers, and stops them all
//!   cleanly.
//! - [`admin`]: the admin API on its own listener (status, history, dead letters, the live
//!   feed and events while the daemon runs), the client `sluice dlq` reaches it with, and the
//!   web console served there (`admin::console`, its pages compiled in).
//! - [`commands`]: the operator CLI (`serve`, `db`, `wal`, `dlq`, `config show`) and the
//!   mapping of their errors to exit codes.
//! - [`cli`]: the command-line grammar and the exit codes.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod commands;
pub mod config;
pub mod deadletter;
pub mod durable;
pub mod envelope;
pub mod event;
pub mod http;
pub mod ingest;
pub mod instance;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod publish;
pub mod ratelimit;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod wire;
