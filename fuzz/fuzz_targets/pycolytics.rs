//! The pycolytics decoder (`/v1.0/event`, `/v1.0/events`): `validate` (the HTTP layer's check)
//! and `parse` (the publisher's) agree on every input, and the whole processor never panics
//! and maps every accepted event to one row. The first byte picks the route.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::envelope::Envelope;
use sluice::wire::pycolytics::{parse, validate, Shape};
use sluice_fuzz::processor;

fuzz_target!(|input: &[u8]| {
    let [which, body @ ..] = input else {
        return;
    };
    let (route, shape) = if which & 1 == 0 {
        ("/v1.0/event", Shape::One)
    } else {
        ("/v1.0/events", Shape::Many)
    };
    let checked = validate(shape, body);
    let parsed = parse(shape, body);
    match (&checked, &parsed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x.api_key, y.api_key);
                assert_eq!(x.value.is_some(), y.value.is_some());
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
        _ => panic!("validate and parse disagree: {checked:?} / {parsed:?}"),
    }
    let env = Envelope {
        received_at_ms: 1_700_000_000_000,
        route: route.into(),
        method: "POST".into(),
        path: route.into(),
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
        peer: Some("127.0.0.1:1".into()),
        nuid: None,
    };
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    processor().process(&env, 0, sluice_wal::Lsn(1), &mut events, &mut failures);
    match parsed {
        Ok(items) => assert_eq!((events.len(), failures.len()), (items.len(), 0)),
        Err(_) => assert_eq!((events.len(), failures.len()), (0, 1)),
    }
});
