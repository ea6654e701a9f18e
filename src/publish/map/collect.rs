//! Generic JSON (`POST /collect`, `POST /collect/{stream}`): each object becomes one row.
//!
//! The body is a JSON object or an array of objects (the HTTP layer refused anything else
//! before storing; a gzip body is decompressed again with `server.max_decompressed_bytes`).
//! `{stream}` is the last segment of the request path, percent-decoded.
//!
//! An object whose `type` is a Segment call (`identify`, `track`, `page`, `screen`, `group`,
//! `alias`) is mapped and validated exactly like a Segment batch item
//! ([`crate::publish::map::segment`]), so a Segment message can be posted here too; its `source`
//! stays `collect` (the API it came in by) and `stream` is set. A failing object becomes a dead
//! letter on its own; the rest of the array loads.
//!
//! # Mapping of other objects
//!
//! | | column |
//! |---|---|
//! | (route) | `source` = `collect`, `event` = `collect` |
//! | `{stream}` | `stream` (no value for `/collect`) |
//! | the object | `properties` (JSON text, keys sorted) |
//! | (received) | `collector_tstamp`, `derived_tstamp` |
//! | (the request) | `user_ipaddress` (trusted proxies, anonymisation), `useragent` and its parsed fields |
//! | (the object's place in the log) | `event_id` |
//! | the object | `event_fingerprint` |
//!
//! Query the object with ClickHouse's JSON functions, e.g.
//! `visitParamExtractString(properties, 'plan')` (every version) or
//! `JSONExtractString(properties, 'plan')` (19.x and later).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::envelope::Envelope;
use crate::event::{Event, Failure, FailureCategory, Text};
use crate::publish::enrich::{Enricher, Position, RequestContext};
use crate::publish::map::segment::{self, json_text, Shared};
use crate::wire::route::{Call, Route};
use crate::wire::snowplow::request_failure;
use crate::wire::text::{percent_decode_lossy, tsv_safe};

/// `source` of `/collect` rows.
pub const SOURCE: &str = "collect";
/// `event` of objects that are not Segment messages.
pub const EVENT: &str = "collect";

/// The stream of a `/collect/{stream}` request: the path's last segment, percent-decoded
/// (invalid escapes are kept as written, invalid UTF-8 replaced), trimmed and made TSV-safe.
/// `None` for `/collect` or an empty name.
pub fn stream_name(route: &str, path: &str) -> Option<Text> {
    if Route::of_template(route) != Some(Route::CollectStream) {
        return None;
    }
    let segment = path.trim_end_matches('/').rsplit('/').next()?;
    tsv_safe(percent_decode_lossy(segment).trim())
}

/// Maps one stored `/collect` request: one row or failure per object.
pub(crate) fn process(
    p: &Enricher,
    envelope: &Envelope,
    body: &[u8],
    at: Position,
    events: &mut Vec<Event>,
    failures: &mut Vec<Failure>,
) {
    let first = body
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    let items: Vec<&RawValue> = match first {
        Some(b'[') => serde_json::from_slice(body),
        _ => serde_json::from_slice::<&RawValue>(body).map(|one| vec![one]),
    }
    .unwrap_or_else(|e| {
        failures.push(request_failure(
            FailureCategory::TrackerProtocolViolation,
            format!("the body is not a JSON object or an array of objects: {e}"),
        ));
        Vec::new()
    });
    let request = p.request(envelope);
    let stream = stream_name(&envelope.route, &envelope.path);
    for (index, raw) in items.into_iter().enumerate() {
        let at = at.at(index);
        let mut object: Map<String, Value> = match serde_json::from_str(raw.get()) {
            Ok(o) => o,
            Err(e) => {
                failures.push(Failure {
                    category: FailureCategory::SchemaViolation,
                    messages: vec![format!("item {index} is not a readable JSON object: {e}")],
                    event_index: Some(u32::try_from(index).unwrap_or(u32::MAX)),
                    event_payload: Some(raw.get().to_owned()),
                });
                continue;
            }
        };
        let segment_call = object
            .get("type")
            .and_then(Value::as_str)
            .and_then(Call::parse);
        if segment_call.is_some() {
            let result = segment::message(p, &request, None, &mut object, &Shared::default(), at)
                .map(|mut ev| {
                    ev.source = Some(Text::from(SOURCE));
                    ev.stream = stream.clone();
                    ev
                });
            segment::push(result, &object, index, events, failures);
        } else {
            events.push(plain(p, &request, &object, stream.clone(), at));
        }
    }
}

/// An object that is not a Segment message.
fn plain(
    p: &Enricher,
    request: &RequestContext<'_>,
    object: &Map<String, Value>,
    stream: Option<Text>,
    at: Position,
) -> Event {
    let mut ev = p.base_event(request.envelope, SOURCE, at);
    ev.event = Some(Text::from(EVENT));
    ev.event_id = Some(at.derived_event_id());
    ev.stream = stream;
    let text = json_text(object);
    ev.event_fingerprint = (p.fingerprint_json(&text)).map(Text::from);
    ev.properties = Some(Text::from(text));
    p.user(
        &mut ev,
        None,
        request.user_agent.and_then(tsv_safe),
        request,
    );
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::publish::enrich::{derived_event_id, COLLECTOR_VERSION, ETL_VERSION, TEST_INSTANCE};
    use crate::publish::process::Processor;
    use sluice_wal::Lsn;

    const RECEIVED: i64 = 1_700_000_100_000;

    fn envelope(route: &str, path: &str, body: &str) -> Envelope {
        Envelope {
            received_at_ms: RECEIVED,
            route: route.into(),
            method: "POST".into(),
            path: path.into(),
            query: None,
            headers: vec![("user-agent".into(), "curl/8.5.0".into())],
            body: body.as_bytes().to_vec(),
            peer: Some("198.51.100.7:40000".into()),
            nuid: None,
        }
    }

    fn run(env: &Envelope) -> (Vec<Event>, Vec<Failure>) {
        let p = Processor::new(
            &Config::default().enrich,
            Config::default().process_limits(),
            TEST_INSTANCE,
        )
        .unwrap();
        let (mut events, mut failures) = (Vec::new(), Vec::new());
        p.process(env, 0, Lsn(2), &mut events, &mut failures);
        (events, failures)
    }

    #[test]
    fn an_object_becomes_one_row_with_the_object_as_properties() {
        let (events, failures) = run(&envelope(
            "/collect",
            "/collect",
            r#" {"plan":"pro","n":1, "writeKey":"kept: it is just data here"} "#,
        ));
        assert!(failures.is_empty());
        let ev = &events[0];
        let expected = Event {
            event_id: Some(derived_event_id(TEST_INSTANCE, 0, Lsn(2), 0)),
            source: Some("collect".into()),
            event: Some("collect".into()),
            properties: Some(
                r#"{"n":1,"plan":"pro","writeKey":"kept: it is just data here"}"#.into(),
            ),
            collector_tstamp: Some(RECEIVED),
            derived_tstamp: Some(RECEIVED),
            v_collector: Some(COLLECTOR_VERSION.into()),
            v_etl: Some(ETL_VERSION.into()),
            user_ipaddress: Some("198.51.100.7".into()),
            useragent: Some("curl/8.5.0".into()),
            br_name: ev.br_name.clone(),
            br_family: ev.br_family.clone(),
            br_version: ev.br_version.clone(),
            os_name: ev.os_name.clone(),
            os_family: ev.os_family.clone(),
            dvce_type: ev.dvce_type.clone(),
            dvce_ismobile: ev.dvce_ismobile,
            event_fingerprint: ev.event_fingerprint.clone(),
            wal_partition: Some(0),
            wal_lsn: Some(2),
            wal_index: Some(0),
            ..Event::default()
        };
        assert!(ev.event_fingerprint.is_some());
        assert_eq!(*ev, expected);
    }

    #[test]
    fn an_array_gives_one_row_per_object_with_the_decoded_stream() {
        let (events, failures) = run(&envelope(
            "/collect/{stream}",
            "/collect/sign%20ups%2F2",
            r#"[{"a":1},{"a":2},{"a":3}]"#,
        ));
        assert!(failures.is_empty());
        assert_eq!(events.len(), 3);
        for (i, ev) in events.iter().enumerate() {
            assert_eq!(ev.stream.as_deref(), Some("sign ups/2"));
            assert_eq!(ev.wal_index, Some(i as u64));
            assert_eq!(
                ev.properties,
                (Some(format!(r#"{{"a":{}}}"#, i + 1))).map(Text::from)
            );
        }
        let (events, _) = run(&envelope("/collect", "/collect", "[]"));
        assert!(events.is_empty());
    }

    #[test]
    fn a_segment_shaped_object_is_mapped_like_segment_but_keeps_source_collect() {
        let (events, failures) = run(&envelope(
            "/collect/{stream}",
            "/collect/web",
            r#"[{"type":"track","event":"Signed Up","userId":"u","messageId":"m-1","properties":{"plan":"pro"}},
                {"type":"track","userId":"u"},
                {"type":"unknown","userId":"u"},
                "not an object"]"#,
        ));
        assert_eq!(events.len(), 2);
        let ev = &events[0];
        assert_eq!(ev.source.as_deref(), Some("collect"));
        assert_eq!(ev.stream.as_deref(), Some("web"));
        assert_eq!(ev.event.as_deref(), Some("track"));
        assert_eq!(ev.event_name.as_deref(), Some("Signed Up"));
        assert_eq!(ev.user_id.as_deref(), Some("u"));
        assert_eq!(ev.message_id.as_deref(), Some("m-1"));
        assert_eq!(ev.event_id, Some(segment::message_event_id("m-1")));
        assert_eq!(ev.properties.as_deref(), Some(r#"{"plan":"pro"}"#));
        // An unknown `type` is just data.
        assert_eq!(events[1].event.as_deref(), Some("collect"));
        assert_eq!(events[1].wal_index, Some(2));
        let f: Vec<_> = failures
            .iter()
            .map(|f| (f.event_index, f.category))
            .collect();
        assert_eq!(
            f,
            vec![
                (Some(1), FailureCategory::SchemaViolation),
                (Some(3), FailureCategory::SchemaViolation)
            ]
        );
    }

    #[test]
    fn stream_names_are_percent_decoded_last_segments() {
        assert_eq!(
            stream_name("/collect/{stream}", "/collect/a%2Fb"),
            Some("a/b".into())
        );
        assert_eq!(
            stream_name("/collect/{stream}", "/collect/x/"),
            Some("x".into())
        );
        assert_eq!(
            stream_name("/collect/{stream}", "/collect/%zz%4"),
            Some("%zz%4".into())
        );
        assert_eq!(
            stream_name("/collect/{stream}", "/collect/%FF"),
            Some("\u{fffd}".into())
        );
        assert_eq!(stream_name("/collect/{stream}", "/collect/%09"), None);
        assert_eq!(stream_name("/collect", "/collect"), None);
    }

    #[test]
    fn a_stored_body_that_is_not_json_fails_as_a_whole() {
        let (events, failures) = run(&envelope("/collect", "/collect", "{"));
        assert!(events.is_empty());
        assert_eq!((failures.len(), failures[0].event_index), (1, None));
    }
}
