//! The Segment decoder and mapping (`/v1/*`), through the whole processor: no input may panic,
//! every row has an id, a source and an event type, and a message fails at most once. The
//! first byte picks the route, the second whether the body is sent as gzip (bit 0: the input
//! as a gzip stream; bit 1: the input compressed, so the JSON is still what is fuzzed).
#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice::envelope::Envelope;
use sluice::publish::process::Processor;
use sluice::wire::route::{Route, SEGMENT_ROUTES};
use sluice::wire::time::parse_iso8601;

fn processor() -> &'static Processor {
    static P: OnceLock<Processor> = OnceLock::new();
    P.get_or_init(|| {
        let mut config = sluice::config::Config::default();
        // Small enough that the fuzzer reaches the size checks and the gzip cap.
        config.segment.max_event_bytes = sluice::config::ByteSize(2 << 10);
        config.server.max_decompressed_bytes = sluice::config::ByteSize(64 << 10);
        Processor::new(
            &config.enrich,
            config.process_limits(),
            sluice::instance::InstanceId::from_u64(0),
        )
        .expect("valid config")
    })
}

fuzz_target!(|input: &[u8]| {
    let [route, flags, body @ ..] = input else {
        return;
    };
    let Route::Segment(segment) = SEGMENT_ROUTES[usize::from(*route) % SEGMENT_ROUTES.len()] else {
        unreachable!("SEGMENT_ROUTES holds Segment routes")
    };
    let route = Route::Segment(segment).template();
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = parse_iso8601(text);
    }
    let mut headers = vec![("content-type".to_string(), "text/plain".to_string())];
    let body = if flags & 2 != 0 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(body).unwrap();
        e.finish().unwrap()
    } else {
        body.to_vec()
    };
    if flags & 3 != 0 {
        headers.push(("content-encoding".into(), "gzip".into()));
    }
    let env = Envelope {
        received_at_ms: 1_700_000_000_000,
        route: route.into(),
        method: "POST".into(),
        path: route.into(),
        query: None,
        headers,
        body,
        peer: Some("127.0.0.1:1".into()),
        nuid: None,
    };
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    processor().process(&env, 0, sluice_wal::Lsn(1), &mut events, &mut failures);
    for ev in &events {
        assert!(ev.event_id.is_some() && ev.event.is_some());
        assert_eq!(ev.source.as_deref(), Some("segment"));
    }
    if !segment.is_batch() {
        assert_eq!(events.len() + failures.len(), 1);
    }
    let mut seen: Vec<_> = failures.iter().filter_map(|f| f.event_index).collect();
    seen.extend(events.iter().filter_map(|e| e.wal_index.map(|i| i as u32)));
    let n = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        n,
        "a message became a row and a failure, or two of either"
    );
});
