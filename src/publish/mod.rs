//! The publisher: what happens to a request after it is durable.
//!
//! - [`pipeline`]: per partition, the threads that read the log from the checkpoint, form
//!   batches, deliver them and move the checkpoint; the order of their steps is what keeps
//!   every guarantee, and is documented there.
//! - [`process`]: the dispatcher that turns one stored request into rows and failures, by its
//!   route, and `process_record` (the same for a raw log record).
//! - [`map`]: the field mapping of each protocol (Snowplow, Segment, pycolytics, collect).
//! - [`enrich`]: the steps every mapping shares, and the `[enrich]` settings.
//! - [`deliver`]: what the pipeline asks of a sink.
//! - [`ledger`]: the per-partition record of batch boundaries that makes re-sent batches
//!   byte-identical.
//! - [`replay`]: re-sending log ranges and dead letters on an operator's request.

pub mod deliver;
pub mod enrich;
pub mod health;
pub mod ledger;
pub mod map;
pub mod pipeline;
pub mod process;
pub mod replay;

pub use deliver::{BatchRows, Deliver, DeliverError, Delivery};
pub use health::{Health, PartitionHealth};
pub use pipeline::{
    ledger_root, PublishConfig, PublishError, Publisher, Publishers, Shared, MAX_IN_FLIGHT_DEFAULT,
    STOP_POLL,
};
