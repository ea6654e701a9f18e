//! The generic `/collect` decoder, through the whole processor: no input may panic, and every
//! row carries the source `collect` and the stream of its path. The input is
//! `path-segment NUL body`; without a NUL it is the body of a plain `/collect`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::envelope::Envelope;
use sluice::publish::map::collect::stream_name;
use sluice_fuzz::processor;

fuzz_target!(|input: &[u8]| {
    let (route, path, body) = match input.iter().position(|b| *b == 0) {
        Some(at) => (
            "/collect/{stream}",
            format!("/collect/{}", String::from_utf8_lossy(&input[..at])),
            &input[at + 1..],
        ),
        None => ("/collect", "/collect".to_string(), input),
    };
    let stream = stream_name(route, &path);
    let env = Envelope {
        received_at_ms: 1_700_000_000_000,
        route: route.into(),
        method: "POST".into(),
        path,
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
        peer: Some("127.0.0.1:1".into()),
        nuid: None,
    };
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    processor().process(&env, 0, sluice_wal::Lsn(1), &mut events, &mut failures);
    for ev in &events {
        assert_eq!(ev.source.as_deref(), Some("collect"));
        assert_eq!(ev.stream, stream);
        assert!(ev.event_id.is_some() && ev.event.is_some());
    }
});
