//! The tp2 POST body decoder, and the whole processor on a tp2 request with that body: no
//! input may panic, every request yields rows or failures, and the decoder's fast path, on
//! any body it takes, gives exactly what its general path gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::envelope::Envelope;
use sluice::wire::snowplow::{assert_tp2_fast_path_agrees, decode_tp2_body, DecodeOptions};
use sluice_fuzz::processor;

fuzz_target!(|body: &[u8]| {
    let _ = decode_tp2_body(Some("application/json"), body, DecodeOptions::default());
    assert_tp2_fast_path_agrees(body);
    let env = Envelope {
        received_at_ms: 1_700_000_000_000,
        route: "/com.snowplowanalytics.snowplow/tp2".into(),
        method: "POST".into(),
        path: "/com.snowplowanalytics.snowplow/tp2".into(),
        query: None,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: body.to_vec(),
        peer: Some("127.0.0.1:1".into()),
        nuid: None,
    };
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    processor().process(&env, 0, sluice_wal::Lsn(1), &mut events, &mut failures);
    assert!(!events.is_empty() || !failures.is_empty());
});
