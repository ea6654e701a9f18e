//! The query-string decoder, base64 decoding, and the processor on a GET `/i` with that query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::envelope::Envelope;
use sluice::wire::snowplow::parse_query;
use sluice::wire::text::decode_base64;
use sluice_fuzz::processor;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data).into_owned();
    if let Ok(params) = parse_query(&query) {
        for v in params.values() {
            let _ = decode_base64(v);
        }
    }
    let env = Envelope {
        received_at_ms: 1_700_000_000_000,
        route: "/i".into(),
        method: "GET".into(),
        path: "/i".into(),
        query: Some(query),
        headers: vec![("user-agent".into(), "Mozilla/5.0".into())],
        body: Vec::new(),
        peer: Some("[::1]:2".into()),
        nuid: None,
    };
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    processor().process(&env, 0, sluice_wal::Lsn(1), &mut events, &mut failures);
    assert!(!events.is_empty() || !failures.is_empty());
});
