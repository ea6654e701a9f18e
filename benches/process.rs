//! CPU per event of the publisher's own work: `Processor::process` (decode + enrich) and the
//! RowBinary encoder.
//!
//! Run: `cargo bench -p sluice --bench process` (a filter narrows it, e.g.
//! `cargo bench -p sluice --bench process -- tp2`). The figures and the command that produced
//! them are in `BENCHMARKS.md` ("Delivery into ClickHouse", "CPU per event (criterion)").
//!
//! # What is measured
//!
//! Pure CPU, no I/O: the stored request is already an [`Envelope`] in memory (the WAL read and
//! the envelope decode are not included), the output vectors are reused between iterations.
//! Throughput is counted in events (rows), so criterion reports time per event as `time / N`.
//!
//! - `process/tp2_post/N`: a `POST /com.snowplowanalytics.snowplow/tp2` `payload_data` body of
//!   N events (10 or 100) shaped like the JavaScript tracker's: page views, page pings and
//!   structured events with an `eid`, timestamps, screen/viewport/document sizes, a page URL
//!   with campaign parameters, a referrer, and a base64 `web_page` entity (`cx`); browser
//!   headers (user agent, referer) and an `sp` network user id. Default `[enrich]` settings
//!   (fingerprint on, user-agent parsing on; the agent is one, so it is a cache hit).
//! - `process/segment_batch/20`: a Segment `/v1/batch` of 20 `track` messages with properties
//!   and a context (library, page, campaign, ip, user agent).
//! - `encode/rowbinary/1000`: the RowBinary encoder over 1 000 rows (the tp2 events above) for
//!   the table `sluice db init` creates on ClickHouse 18.16 (`LowCardinality`, `DateTime`).
//!
//! The bench runs on mimalloc, the `sluice` binary's global allocator (`src/main.rs`).
//!
//! Before measuring, the bench checks a digest of everything the inputs produce (the events'
//! RowBinary bytes and the failures) against `OUTPUT_DIGEST` and refuses to run if it differs;
//! `tests/process_digest.rs` checks the same in every test run, so an edit meant to be
//! output-neutral cannot change what is stored unnoticed.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::sink::clickhouse::encode::Encoder;
use sluice_wal::Lsn;

#[path = "support/process_inputs.rs"]
mod inputs;
use inputs::{columns_18_16, processor, run, segment_envelope, tp2_envelope, OUTPUT_DIGEST};

/// The daemon's allocator (see `src/main.rs`), so the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn process(c: &mut Criterion) {
    // Figures for different output are not comparable: refuse to measure.
    let digest = inputs::output_digest();
    assert_eq!(
        digest, OUTPUT_DIGEST,
        "the bench inputs now produce different output; if that is intended, update \
         OUTPUT_DIGEST in benches/support/process_inputs.rs"
    );
    let p = processor();
    let mut group = c.benchmark_group("process");
    group.measurement_time(Duration::from_secs(5));
    let cases = [
        ("tp2_post", 10, tp2_envelope(10)),
        ("tp2_post", 100, tp2_envelope(100)),
        ("segment_batch", 20, segment_envelope(20)),
    ];
    for (name, n, env) in &cases {
        let (events, failures) = run(&p, env);
        assert_eq!((events.len(), failures.len()), (*n, 0), "{failures:?}");
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::new(*name, n), env, |b, env| {
            let (mut events, mut failures) = (Vec::with_capacity(*n), Vec::new());
            b.iter(|| {
                events.clear();
                failures.clear();
                p.process(black_box(env), 1, Lsn(42), &mut events, &mut failures);
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let p = processor();
    let env = tp2_envelope(100);
    let mut rows = Vec::new();
    for lsn in 0..10 {
        let mut failures = Vec::new();
        p.process(&env, 1, Lsn(lsn), &mut rows, &mut failures);
        assert!(failures.is_empty(), "{failures:?}");
    }
    let encoder = Encoder::new(columns_18_16());
    let mut group = c.benchmark_group("encode");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function(BenchmarkId::new("rowbinary", rows.len()), |b| {
        b.iter(|| encoder.encode(black_box(&rows)))
    });
    group.finish();
}

criterion_group!(benches, process, encode);
criterion_main!(benches);
