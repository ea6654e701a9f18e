//! The publisher's own work per event, for counting instructions: `benches/instructions.sh`
//! runs this under callgrind at two record counts and reports the difference per event, a
//! figure that does not move with the machine's load (criterion's wall-clock figures on the
//! shared 2-core machine swing ±20% between runs).
//!
//!   cargo run --release --example publish_cost -- RECORDS
//!
//! Each record is the drain benchmark's request (`benches/delivery.py drain`): a tp2 POST of
//! 100 structured events with an `eid`, timestamps, a page URL with a campaign parameter and a
//! user id, from a network user id. Each is processed (decode, enrich, fingerprint) and its
//! events encoded as RowBinary for the table `sluice db init` creates on ClickHouse 18.16, as a
//! publisher does while forming batches (no WAL read, no compression, no HTTP).

use sluice::config::Config;
use sluice::envelope::Envelope;
use sluice::instance::InstanceId;
use sluice::publish::process::Processor;
use sluice::sink::clickhouse::encode::{Encoded, Encoder, TargetColumn};
use sluice::sink::clickhouse::migrate::created_columns;
use sluice::sink::clickhouse::version::Features;
use sluice_wal::Lsn;

/// The daemon's allocator (see `src/main.rs`), so the counts are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events per record, as the drain benchmark sends them.
const EVENTS: usize = 100;
/// A batch's rows (`publish.batch_rows`), after which the encoder starts a new one.
const BATCH_ROWS: usize = 50_000;

fn main() {
    let records: u64 = match std::env::args().nth(1).map(|n| n.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: publish_cost RECORDS");
            std::process::exit(2);
        }
    };
    let envelope = drain_request();
    let processor = Processor::new(
        &Config::default().enrich,
        Config::default().process_limits(),
        InstanceId::from_u64(0),
    )
    .expect("the default configuration is valid");
    let encoder = Encoder::new(columns_18_16());
    let (mut events, mut failures) = (Vec::with_capacity(EVENTS), Vec::new());
    let mut batch = Encoded::default();
    let (mut rows, mut bytes) = (0, 0);
    for lsn in 0..records {
        events.clear();
        processor.process(&envelope, 1, Lsn(lsn), &mut events, &mut failures);
        assert!(failures.is_empty(), "the drain request fails: {failures:?}");
        if batch.rows.len() >= BATCH_ROWS {
            rows += batch.rows.len();
            bytes += batch.data.len();
            batch = Encoded::default();
        }
        encoder.encode_into(&mut batch, &events, BATCH_ROWS);
    }
    rows += batch.rows.len();
    bytes += batch.data.len();
    println!("{records} records: {rows} rows, {bytes} bytes of RowBinary");
}

/// The drain benchmark's request (see `body` in `benches/delivery.py`).
fn drain_request() -> Envelope {
    let events: Vec<String> = (0..EVENTS)
        .map(|i| {
            format!(
                r#"{{"e":"se","se_ca":"bench","se_ac":"drain","se_la":"drain","se_va":"{i}","eid":"{i:08x}-1111-4111-8111-111111111111","tv":"bench-0","p":"srv","aid":"bench","dtm":"1700000000000","stm":"1700000000000","url":"https://bench.sluice.test/p/{i}?utm_source=bench","uid":"user-{}"}}"#,
                i % 97
            )
        })
        .collect();
    let body = format!(
        r#"{{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{}]}}"#,
        events.join(",")
    );
    let nuid = "0b6ef1f6-1111-4111-8111-111111111111";
    let tp2 = "/com.snowplowanalytics.snowplow/tp2";
    Envelope {
        received_at_ms: 1_700_000_100_000,
        route: tp2.into(),
        method: "POST".into(),
        path: tp2.into(),
        query: None,
        headers: vec![
            (
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("cookie".into(), format!("sp={nuid}")),
        ],
        body: body.into_bytes(),
        peer: Some("127.0.0.1:1".into()),
        nuid: Some(nuid.into()),
    }
}

/// The columns `sluice db init` creates on ClickHouse 18.16 (`LowCardinality`, `DateTime`).
fn columns_18_16() -> Vec<TargetColumn> {
    created_columns(Features {
        low_cardinality: true,
        datetime64: false,
        non_replicated_dedup_window: false,
        insert_deduplication_token: false,
    })
}
