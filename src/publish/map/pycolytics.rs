//! The pycolytics field mapping: each event of a stored `/v1.0/event(s)` body becomes a row.
//!
//! # Mapping
//!
//! | pycolytics | column |
//! |---|---|
//! | (route) | `source` = `pycolytics` |
//! | `event_type` | `event_name` (`event` is `"pycolytics"`) |
//! | `application` | `app_id` |
//! | `version` | `app_version` |
//! | `platform` | `platform` (free text here: pycolytics does not restrict it) |
//! | `user_id` | `user_id` |
//! | `session_id` | `domain_sessionid` |
//! | `value` | `properties` (JSON text; `{}` when absent) |
//! | `api_key` | never stored in a column |
//! | (received) | `collector_tstamp`, `derived_tstamp` (pycolytics clients send no time) |
//! | (the request) | `user_ipaddress` (trusted proxies, anonymisation), `useragent` and its parsed fields |
//! | (the event's place in the log) | `event_id` |
//! | the event without `api_key` | `event_fingerprint` |

use serde_json::Value as Json;

use crate::envelope::Envelope;
use crate::event::{Event, Failure, FailureCategory, Text};
use crate::publish::enrich::{Enricher, Position, RequestContext};
use crate::wire::pycolytics::{parse, Item, JsonObject, Shape, EVENT, SOURCE};
use crate::wire::snowplow::request_failure;
use crate::wire::text::tsv_safe;

/// Maps one stored pycolytics request: one row per event. The HTTP layer refused wrong
/// shapes before storing, so a body that fails here fails as a whole.
pub(crate) fn process(
    e: &Enricher,
    envelope: &Envelope,
    body: &[u8],
    shape: Shape,
    at: Position,
    events: &mut Vec<Event>,
    failures: &mut Vec<Failure>,
) {
    let items = match parse(shape, body) {
        Ok(items) => items,
        Err(e) => {
            failures.push(request_failure(
                FailureCategory::TrackerProtocolViolation,
                format!("the body is not a pycolytics request: {e}"),
            ));
            return;
        }
    };
    let request = e.request(envelope);
    events.extend(
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| to_event(e, &request, item, at.at(index))),
    );
}

/// One pycolytics event as a row (see the module's mapping table).
pub(crate) fn to_event(
    e: &Enricher,
    request: &RequestContext<'_>,
    item: Item<'_, JsonObject>,
    at: Position,
) -> Event {
    let mut ev = e.base_event(request.envelope, SOURCE, at);
    ev.event = Some(Text::from(EVENT));
    ev.event_id = Some(at.derived_event_id());
    let value = Json::Object(item.value.unwrap_or_default());
    // The fingerprint covers the event's own fields; `api_key` is left out.
    let canonical = serde_json::json!({
        "application": &*item.application,
        "event_type": &*item.event_type,
        "platform": &*item.platform,
        "session_id": &*item.session_id,
        "user_id": &*item.user_id,
        "value": &value,
        "version": &*item.version,
    });
    ev.event_fingerprint = (e.fingerprint_json(&canonical.to_string())).map(Text::from);
    ev.event_name = tsv_safe(&item.event_type);
    ev.app_id = tsv_safe(&item.application);
    ev.app_version = tsv_safe(&item.version);
    ev.platform = tsv_safe(&item.platform);
    ev.user_id = tsv_safe(&item.user_id);
    ev.domain_sessionid = tsv_safe(&item.session_id);
    ev.properties = Some(Text::from(value.to_string()));
    e.user(
        &mut ev,
        None,
        request.user_agent.and_then(tsv_safe),
        request,
    );
    ev
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::envelope::Envelope;
    use crate::event::{Event, FailureCategory};
    use crate::publish::enrich::{derived_event_id, COLLECTOR_VERSION, ETL_VERSION, TEST_INSTANCE};
    use crate::publish::process::Processor;
    use crate::wire::pycolytics::tests::GOOD;
    use sluice_wal::Lsn;

    const RECEIVED: i64 = 1_700_000_100_000;
    const GODOT: &str = "GodotEngine/4.2.1.stable (Linux)";

    fn envelope(route: &str, body: &str) -> Envelope {
        Envelope {
            received_at_ms: RECEIVED,
            route: route.into(),
            method: "POST".into(),
            path: route.into(),
            query: None,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("user-agent".into(), GODOT.into()),
            ],
            body: body.as_bytes().to_vec(),
            peer: Some("198.51.100.7:40000".into()),
            nuid: None,
        }
    }

    fn run(env: &Envelope) -> (Vec<Event>, Vec<crate::event::Failure>) {
        let p = Processor::new(
            &Config::default().enrich,
            Config::default().process_limits(),
            TEST_INSTANCE,
        )
        .unwrap();
        let (mut events, mut failures) = (Vec::new(), Vec::new());
        p.process(env, 1, Lsn(4), &mut events, &mut failures);
        (events, failures)
    }

    #[test]
    fn one_event_fills_every_column_it_has_a_value_for() {
        let (events, failures) = run(&envelope("/v1.0/event", GOOD));
        assert!(failures.is_empty(), "{failures:?}");
        let ev = &events[0];
        let fingerprint = ev.event_fingerprint.clone();
        assert!(fingerprint.as_deref().is_some_and(|f| f.len() == 32));
        let expected = Event {
            event_id: Some(derived_event_id(TEST_INSTANCE, 1, Lsn(4), 0)),
            source: Some("pycolytics".into()),
            event: Some("pycolytics".into()),
            event_name: Some("level_up".into()),
            app_id: Some("game".into()),
            app_version: Some("1.2".into()),
            platform: Some("linux".into()),
            user_id: Some("u1".into()),
            domain_sessionid: Some("s1".into()),
            properties: Some(r#"{"level":3}"#.into()),
            collector_tstamp: Some(RECEIVED),
            derived_tstamp: Some(RECEIVED),
            v_collector: Some(COLLECTOR_VERSION.into()),
            v_etl: Some(ETL_VERSION.into()),
            user_ipaddress: Some("198.51.100.7".into()),
            useragent: Some(GODOT.into()),
            br_name: ev.br_name.clone(),
            br_family: ev.br_family.clone(),
            br_version: ev.br_version.clone(),
            os_name: ev.os_name.clone(),
            os_family: ev.os_family.clone(),
            dvce_type: ev.dvce_type.clone(),
            dvce_ismobile: ev.dvce_ismobile,
            event_fingerprint: fingerprint,
            wal_partition: Some(1),
            wal_lsn: Some(4),
            wal_index: Some(0),
            ..Event::default()
        };
        assert_eq!(*ev, expected);
        assert!(
            !serde_json::to_string(ev).unwrap().contains("\"k\""),
            "api_key is never stored"
        );
    }

    #[test]
    fn a_batch_gives_one_row_per_event_and_a_missing_value_is_an_empty_object() {
        let bare = GOOD.replace(r#","value":{"level":3}"#, "");
        let (events, failures) = run(&envelope("/v1.0/events", &format!("[{GOOD},{bare}]")));
        assert!(failures.is_empty());
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].wal_index, Some(1));
        assert_eq!(
            events[1].event_id,
            Some(derived_event_id(TEST_INSTANCE, 1, Lsn(4), 1))
        );
        assert_eq!(events[1].properties.as_deref(), Some("{}"));
        assert_ne!(events[0].event_fingerprint, events[1].event_fingerprint);
        let (events, failures) = run(&envelope("/v1.0/events", "[]"));
        assert!(events.is_empty() && failures.is_empty());
    }

    #[test]
    fn a_stored_body_of_the_wrong_shape_fails_as_a_whole() {
        let (events, failures) = run(&envelope("/v1.0/event", "[]"));
        assert!(events.is_empty());
        assert_eq!(
            (failures[0].category, failures[0].event_index),
            (FailureCategory::TrackerProtocolViolation, None)
        );
    }
}
