//! What the publisher asks of a sink: prepare a batch's rows, and insert them exactly once
//! where the server deduplicates by token. The ClickHouse sink implements it
//! ([`crate::sink::clickhouse`]); the tests implement it with sinks that fail on purpose.

use std::future::Future;

use crate::event::Event;
use crate::shutdown::Shutdown;

/// What the sink did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Rows inserted.
    pub inserted: usize,
    /// Rows refused as bad data: index into the batch's rows, and the reason.
    pub rejected: Vec<(usize, String)>,
}

/// Why a delivery did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// The stop flag was raised; nothing is confirmed.
    #[error("stopped")]
    Stopped,
    /// The prepared rows no longer fit the destination (its columns changed); nothing is
    /// confirmed. Prepare the rows again (from the batch's records) and deliver that.
    #[error("the destination changed since the rows were prepared")]
    Stale,
    /// The sink gave up on this attempt; the publisher waits and sends the same batch again.
    #[error("{code}: {message}")]
    Failed {
        /// The sink's stable error code.
        code: &'static str,
        /// What happened.
        message: String,
    },
}

/// A batch's rows in the form a sink sends them ([`Deliver::Rows`]).
pub trait BatchRows: Default + Send {
    /// Rows added.
    fn len(&self) -> usize;
    /// True when no row was added.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held in memory.
    fn memory(&self) -> usize;
    /// Row `i`'s `wal_lsn` and `wal_index` (to dead-letter it).
    fn position(&self, i: usize) -> Option<(Option<u64>, Option<u64>)>;
}

/// Sends batches. Implemented by the ClickHouse sink. The futures are driven on the
/// publisher's threads with `Handle::block_on`, so they need not be `Send`.
pub trait Deliver: Send + Sync {
    /// A batch's rows as the sink keeps them until they are sent. The forming thread adds rows
    /// as it makes them ([`Deliver::prepare`]) and drops the [`Event`]s straight away, so a
    /// batch in memory costs what its prepared form costs (RowBinary for ClickHouse), not what
    /// the events cost.
    type Rows: BatchRows;

    /// Adds `rows` to `batch`. `expect_rows` is how many rows the batch may grow to (its row
    /// limit), a hint for reserving memory once instead of growing step by step.
    fn prepare(&self, batch: &mut Self::Rows, rows: &[Event], expect_rows: usize);

    /// Ends `batch`: no rows are added after this (the sink may put it in its final form).
    fn finish(&self, batch: &mut Self::Rows) {
        let _ = batch;
    }

    /// Inserts a prepared batch exactly once where the server deduplicates by `token`; returns
    /// as soon as `stop` is raised with [`DeliverError::Stopped`], and with
    /// [`DeliverError::Stale`] when `batch` must be prepared again.
    fn deliver_prepared<'a>(
        &'a self,
        partition: usize,
        batch: &'a Self::Rows,
        token: &'a str,
        stop: &'a mut Shutdown,
    ) -> impl Future<Output = Result<Delivery, DeliverError>> + 'a;

    /// Inserts `rows` (prepared and delivered in one go: replays, small batches).
    fn deliver<'a>(
        &'a self,
        partition: usize,
        rows: &'a [Event],
        token: &'a str,
        stop: &'a mut Shutdown,
    ) -> impl Future<Output = Result<Delivery, DeliverError>> + 'a;
}

/// Events kept as they are: the rows of sinks that want them whole (tests).
impl BatchRows for Vec<Event> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn memory(&self) -> usize {
        self.capacity() * std::mem::size_of::<Event>()
    }

    fn position(&self, i: usize) -> Option<(Option<u64>, Option<u64>)> {
        self.get(i).map(|r| (r.wal_lsn, r.wal_index))
    }
}
