//! The ClickHouse sink as the publisher's [`Deliver`]: RowBinary rows prepared as the batch
//! forms, and the sink's answers in the publisher's terms.

use super::{Delivered, EncodedRows, Sink, SinkError};
use crate::event::Event;
use crate::publish::deliver::{BatchRows, Deliver, DeliverError, Delivery};
use crate::shutdown::Shutdown;

impl BatchRows for EncodedRows {
    fn len(&self) -> usize {
        EncodedRows::len(self)
    }

    fn memory(&self) -> usize {
        EncodedRows::memory(self)
    }

    fn position(&self, i: usize) -> Option<(Option<u64>, Option<u64>)> {
        EncodedRows::position(self, i)
    }
}

impl Deliver for Sink {
    type Rows = EncodedRows;

    fn prepare(&self, batch: &mut Self::Rows, rows: &[Event], expect_rows: usize) {
        self.encode_into(batch, rows, expect_rows);
    }

    fn finish(&self, batch: &mut Self::Rows) {
        batch.finish();
    }

    async fn deliver_prepared<'a>(
        &'a self,
        partition: usize,
        batch: &'a Self::Rows,
        token: &'a str,
        stop: &'a mut Shutdown,
    ) -> Result<Delivery, DeliverError> {
        sink_delivery(self.deliver_encoded(partition, batch, token, stop).await)
    }

    async fn deliver<'a>(
        &'a self,
        partition: usize,
        rows: &'a [Event],
        token: &'a str,
        stop: &'a mut Shutdown,
    ) -> Result<Delivery, DeliverError> {
        sink_delivery(Sink::deliver(self, partition, rows, token, stop).await)
    }
}

/// The ClickHouse sink's answer in the publisher's terms.
fn sink_delivery(result: Result<Delivered, SinkError>) -> Result<Delivery, DeliverError> {
    match result {
        Ok(d) => Ok(Delivery {
            inserted: d.inserted,
            rejected: d.rejected,
        }),
        Err(SinkError::Stopped) => Err(DeliverError::Stopped),
        Err(SinkError::Stale) => Err(DeliverError::Stale),
        Err(e) => Err(DeliverError::Failed {
            code: e.code(),
            message: e.to_string(),
        }),
    }
}
