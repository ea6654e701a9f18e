//! Segment / RudderStack messages (`/v1/*`): decoding, per-message validation and the mapping
//! to rows.
//!
//! The HTTP layer has already answered (it checked the key, the sizes and that the body is a
//! JSON object); this module reads the stored body again — decompressing a gzip body with the
//! same cap, `server.max_decompressed_bytes` — and turns each message into an [`Event`], or a
//! [`Failure`] for that message alone: the rest of a batch still loads.
//!
//! # Routes
//!
//! `/v1/{track,identify,page,screen,group,alias}` and analytics.js' `/v1/{t,i,p,s,g,a}` carry
//! one message; its call type is the route's (a `type` in the body is ignored, as Segment does).
//! `/v1/{batch,import,b}` carry `{"batch": [...], "context": {...}, "sentAt": "..."}`; each
//! item names its call in `type`. The batch's `context` keys are added to each item's
//! `context` where the item has no value of its own (item values win; the merge is of the
//! top-level keys), and the batch's `sentAt` applies to items without their own.
//! `integrations` only routes messages to Segment destinations: it is not stored.
//!
//! # Per-message validation (a failing message becomes a dead letter)
//!
//! | Problem | Category |
//! |---|---|
//! | a batch item larger than `segment.max_event_bytes` | `size_violation` |
//! | a batch item that is not an object, or whose `type` is not one of the six calls | `schema_violation` |
//! | neither `userId` nor `anonymousId` (Segment's `no_user_anon_id`) | `schema_violation` |
//! | track without `event`; group without `groupId`; alias without `previousId` and `userId` | `schema_violation` |
//! | an id that is not a string or number; `properties`, `traits` or `context` not an object; a timestamp that is not ISO 8601 | `schema_violation` |
//!
//! # Mapping
//!
//! | Segment | column |
//! |---|---|
//! | (route) | `source` = `segment` |
//! | `type` | `event` (`track`, `page`, `screen`, `identify`, `group`, `alias`) |
//! | track `event`; page/screen `name` | `event_name` (none for identify, group, alias) |
//! | `messageId` | `message_id`; also `event_id`: the UUID itself, else the UUIDv5 of it in `MESSAGE_ID_NAMESPACE` (a retried message gets the same id); without `messageId` an id derived from the message's place in the log |
//! | `userId`, `anonymousId` | `user_id`, `anonymous_id` |
//! | `properties` | `properties` (JSON text); group adds `groupId`, alias adds `previousId` |
//! | `traits` | `traits`, else `context.traits` (RudderStack), as JSON text |
//! | `context` (with the batch's merged in) | `context` (JSON text) |
//! | (received) | `collector_tstamp` |
//! | `originalTimestamp`, else `timestamp` | `dvce_created_tstamp` |
//! | `sentAt` (the item's, else the batch's) | `dvce_sent_tstamp` |
//! | `receivedAt − (sentAt − originalTimestamp)`; the device time without `sentAt`; else the received time | `derived_tstamp` |
//! | `channel` `browser`/`web`, `server`, `mobile` | `platform` `web`, `srv`, `mob` |
//! | `context.app.name`, `context.app.version` | `app_id`, `app_version` |
//! | `context.library.name`, `.version` | `name_tracker`, `v_tracker` |
//! | `context.page.url` (page calls: else `properties.url`) | `page_url` and its parts (a URL that does not parse keeps its text, without parts) |
//! | `context.page.title`, `.referrer` (page calls: else `properties.*`) | `page_title`, `page_referrer` and its parts |
//! | `context.page.path`, `.search` | `page_urlpath`, `page_urlquery` when the URL gives none |
//! | `context.campaign.{source,medium,name,term,content}` | `mkt_source`, `mkt_medium`, `mkt_campaign`, `mkt_term`, `mkt_content` (else the page URL's `utm_*`, as for Snowplow); click ids from the page URL |
//! | `context.userAgent` | `useragent` and the parsed browser/OS/device fields (the request's `User-Agent` is the SDK's, not the user's: not used) |
//! | `context.ip`, else the request's client address (trusted proxies) | `user_ipaddress`, anonymised as configured |
//! | `context.locale`, `context.timezone` | `br_lang`, `os_timezone` |
//! | `context.screen.width`, `.height` | `dvce_screenwidth`, `dvce_screenheight` |
//! | `context.sessionId` (RudderStack) | `domain_sessionid` |
//! | the message without `messageId`, `sentAt`, `receivedAt`, `writeKey` | `event_fingerprint` |
//! | `writeKey`, `integrations`, `receivedAt` | not stored |

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::event::{Event, Failure, FailureCategory, Text};
use crate::publish::enrich::{referrer_parts, Enricher, Position, RequestContext};
use crate::wire::route::{Call, SegmentBody};
use crate::wire::snowplow::request_failure;
use crate::wire::text::tsv_safe;
use crate::wire::time::{parse_iso8601, MAX_TSTAMP_MS, MIN_TSTAMP_MS};

/// `source` of Segment and RudderStack rows.
pub const SOURCE: &str = "segment";

/// The namespace of the UUIDv5s derived from `messageId`s that are not UUIDs.
pub const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5c1c_e5e9_0d1a_4a3c_9b7e_2f44_6d1e_a004);

/// What the items of one batch share.
#[derive(Debug, Default)]
pub(crate) struct Shared<'a> {
    /// The batch's `context`, merged into each item's.
    pub context: Option<&'a Map<String, Value>>,
    /// The batch's `sentAt`.
    pub sent_at: Option<&'a Value>,
}

/// A batch body; items stay raw until each is read (their size is checked first).
#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default)]
    context: Value,
    #[serde(default, rename = "sentAt")]
    sent_at: Value,
}

/// Maps one stored Segment request: one row or failure per message.
#[allow(clippy::too_many_arguments)]
pub(crate) fn process(
    p: &Enricher,
    max_event_bytes: u64,
    envelope: &Envelope,
    body: &[u8],
    route: SegmentBody,
    at: Position,
    events: &mut Vec<Event>,
    failures: &mut Vec<Failure>,
) {
    let request = p.request(envelope);
    match route {
        SegmentBody::Single(call) => {
            if body.len() as u64 > max_event_bytes {
                failures.push(size_failure(max_event_bytes, body.len(), 0));
                return;
            }
            let mut msg: Map<String, Value> = match serde_json::from_slice(body) {
                Ok(m) => m,
                Err(e) => {
                    failures.push(request_failure(
                        FailureCategory::TrackerProtocolViolation,
                        format!("the body is not a JSON object (one Segment message): {e}"),
                    ));
                    return;
                }
            };
            push(
                message(
                    p,
                    &request,
                    Some(call),
                    &mut msg,
                    &Shared::default(),
                    at.at(0),
                ),
                &msg,
                0,
                events,
                failures,
            );
        }
        SegmentBody::Batch => {
            let batch: Batch<'_> = match serde_json::from_slice(body) {
                Ok(b) => b,
                Err(e) => {
                    failures.push(request_failure(
                        FailureCategory::TrackerProtocolViolation,
                        format!("the body is not a Segment batch (an object with a `batch` array of messages): {e}"),
                    ));
                    return;
                }
            };
            let shared = Shared {
                context: batch.context.as_object(),
                sent_at: Some(&batch.sent_at).filter(|v| !v.is_null()),
            };
            for (index, raw) in batch.batch.iter().enumerate() {
                let text = raw.get();
                if text.len() as u64 > max_event_bytes {
                    failures.push(size_failure(max_event_bytes, text.len(), index));
                    continue;
                }
                let mut msg: Map<String, Value> = match serde_json::from_str(text) {
                    Ok(m) => m,
                    Err(e) => {
                        failures.push(Failure {
                            category: FailureCategory::SchemaViolation,
                            messages: vec![format!(
                                "batch item {index} is not a readable JSON object (a Segment message): {e}"
                            )],
                            event_index: Some(index_u32(index)),
                            event_payload: Some(text.to_owned()),
                        });
                        continue;
                    }
                };
                push(
                    message(p, &request, None, &mut msg, &shared, at.at(index)),
                    &msg,
                    index,
                    events,
                    failures,
                );
            }
        }
    }
}

fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn size_failure(max_event_bytes: u64, size: usize, index: usize) -> Failure {
    Failure {
        category: FailureCategory::SizeViolation,
        messages: vec![format!(
            "message {index} is {size} bytes, above segment.max_event_bytes ({max_event_bytes} bytes)"
        )],
        event_index: Some(index_u32(index)),
        event_payload: None,
    }
}

/// Pushes a mapped message, or its failure with the message (without `writeKey`) as payload.
pub(crate) fn push(
    result: Result<Event, (FailureCategory, Vec<String>)>,
    msg: &Map<String, Value>,
    index: usize,
    events: &mut Vec<Event>,
    failures: &mut Vec<Failure>,
) {
    match result {
        Ok(ev) => events.push(ev),
        Err((category, messages)) => failures.push(Failure {
            category,
            messages,
            event_index: Some(index_u32(index)),
            event_payload: Some(payload(msg)),
        }),
    }
}

/// The message as JSON text for a dead letter, `writeKey` left out.
fn payload(msg: &Map<String, Value>) -> String {
    text_without(msg, &["writeKey"])
}

/// A JSON object's compact text without the keys in `skip` (keys sorted, as the map keeps them).
fn text_without(msg: &Map<String, Value>, skip: &[&str]) -> String {
    let mut out = String::from("{");
    for (k, v) in msg.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
    out
}

/// Keys that vary between sends of the same message: left out of the fingerprint.
const FINGERPRINT_EXCLUDE: [&str; 4] = ["messageId", "sentAt", "receivedAt", "writeKey"];

/// Maps one message. `call` is the route's call type (single calls) or `None` (read `type`).
/// The batch's context is merged into `msg` in place (so a failure's payload shows it).
pub(crate) fn message(
    p: &Enricher,
    request: &RequestContext<'_>,
    call: Option<Call>,
    msg: &mut Map<String, Value>,
    shared: &Shared<'_>,
    at: Position,
) -> Result<Event, (FailureCategory, Vec<String>)> {
    let schema = FailureCategory::SchemaViolation;
    let call = match call {
        Some(c) => c,
        None => match msg.get("type") {
            Some(Value::String(t)) => Call::parse(t).ok_or_else(|| {
                (
                    schema,
                    vec![format!(
                        "`type` = {t:?} is not a Segment call (identify, track, page, screen, group, alias)"
                    )],
                )
            })?,
            _ => {
                return Err((
                    schema,
                    vec!["the message has no `type` string (identify, track, page, screen, group, alias)".into()],
                ))
            }
        },
    };
    let mut errors: Vec<String> = Vec::new();

    // The batch's context under the item's.
    match msg.get_mut("context") {
        None | Some(Value::Null) => {
            if let Some(shared) = shared.context {
                msg.insert("context".into(), Value::Object(shared.clone()));
            }
        }
        Some(Value::Object(ctx)) => {
            for (k, v) in shared.context.into_iter().flatten() {
                if !ctx.contains_key(k) {
                    ctx.insert(k.clone(), v.clone());
                }
            }
        }
        Some(_) => errors.push("`context` must be a JSON object".into()),
    }
    let msg: &Map<String, Value> = msg;
    let empty = Map::new();
    let context = msg
        .get("context")
        .and_then(Value::as_object)
        .unwrap_or(&empty);

    let mut ev = p.base_event(request.envelope, SOURCE, at);
    ev.event = Some(Text::from(call.as_str()));

    // Ids.
    let mut id = |key: &str| match id_text(msg.get(key)) {
        Ok(v) => v,
        Err(()) => {
            errors.push(format!("`{key}` must be a string or a number"));
            None
        }
    };
    ev.user_id = id("userId");
    ev.anonymous_id = id("anonymousId");
    ev.message_id = id("messageId");
    let group_id = id("groupId");
    let previous_id = id("previousId");
    if ev.user_id.is_none() && ev.anonymous_id.is_none() {
        errors.push("the message has neither `userId` nor `anonymousId` (no_user_anon_id)".into());
    }
    match call {
        Call::Track => match msg.get("event").and_then(Value::as_str).and_then(tsv_safe) {
            Some(name) => ev.event_name = Some(name),
            None => errors.push("a track call needs an `event` name (a non-empty string)".into()),
        },
        Call::Page | Call::Screen => ev.event_name = text(msg.get("name")),
        Call::Group if group_id.is_none() => errors.push("a group call needs a `groupId`".into()),
        Call::Alias => {
            if previous_id.is_none() {
                errors.push("an alias call needs a `previousId`".into());
            }
            if ev.user_id.is_none() {
                errors.push("an alias call needs a `userId`".into());
            }
        }
        _ => {}
    }
    ev.event_id = Some(match ev.message_id.as_deref() {
        Some(m) => message_event_id(m),
        None => at.derived_event_id(),
    });

    // Timestamps.
    let mut ts = |key: &str, v: Option<&Value>| match timestamp(v) {
        Ok(t) => t,
        Err(()) => {
            errors.push(format!(
                "`{key}` must be an ISO 8601 date-time (e.g. 2024-05-01T12:00:00.000Z) between years 0 and 9999"
            ));
            None
        }
    };
    let original = ts("originalTimestamp", msg.get("originalTimestamp"));
    let stamped = ts("timestamp", msg.get("timestamp"));
    let sent = match msg.get("sentAt") {
        Some(v) if !v.is_null() => ts("sentAt", Some(v)),
        _ => ts("sentAt", shared.sent_at),
    };
    let received = request.envelope.received_at_ms;
    ev.dvce_created_tstamp = original.or(stamped);
    ev.dvce_sent_tstamp = sent;
    ev.derived_tstamp = Some(skew_corrected(received, ev.dvce_created_tstamp, sent));

    // JSON columns.
    let mut object = |key: &str| match msg.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => {
            errors.push(format!("`{key}` must be a JSON object"));
            None
        }
    };
    let properties = object("properties");
    let traits = object("traits");
    let extra = match call {
        Call::Group => group_id.as_deref().map(|g| ("groupId", g)),
        Call::Alias => previous_id.as_deref().map(|g| ("previousId", g)),
        _ => None,
    };
    ev.properties = match (properties, extra) {
        (None, None) => None,
        (Some(o), None) => Some(Text::from(json_text(o))),
        (o, Some((k, v))) => {
            let mut o = o.cloned().unwrap_or_default();
            o.insert(k.into(), Value::String(v.into()));
            Some(Text::from(Value::Object(o).to_string()))
        }
    };
    // RudderStack's SDKs send an identify's traits under `context.traits` instead.
    let context_traits = msg
        .get("context")
        .and_then(|c| c.get("traits"))
        .and_then(Value::as_object)
        .filter(|t| !t.is_empty());
    ev.traits = (traits.or(context_traits).map(json_text)).map(Text::from);
    ev.context = (msg
        .get("context")
        .filter(|c| c.is_object())
        .map(Value::to_string))
    .map(Text::from);

    if !errors.is_empty() {
        return Err((schema, errors));
    }

    // Context fields.
    let sub = |key: &str| context.get(key).and_then(Value::as_object);
    let app = sub("app");
    ev.app_id = app.and_then(|a| text(a.get("name")));
    ev.app_version = app.and_then(|a| text(a.get("version")));
    let library = sub("library");
    ev.name_tracker = library.and_then(|l| text(l.get("name")));
    ev.v_tracker = library.and_then(|l| text(l.get("version")));
    ev.platform = match msg.get("channel").and_then(Value::as_str) {
        Some("browser" | "web") => Some("web".into()),
        Some("server") => Some("srv".into()),
        Some("mobile") => Some("mob".into()),
        _ => None,
    };
    ev.br_lang = text(context.get("locale"));
    ev.os_timezone = text(context.get("timezone"));
    ev.domain_sessionid = text(context.get("sessionId"));
    if let Some(screen) = sub("screen") {
        let dim = |k: &str| screen.get(k).and_then(Value::as_i64);
        ev.dvce_screenwidth = dim("width");
        ev.dvce_screenheight = dim("height");
    }

    // The page: context.page, and for page calls the properties.
    let page = sub("page");
    let page_field = |k: &str| {
        page.and_then(|pg| text(pg.get(k))).or_else(|| {
            (call == Call::Page)
                .then(|| properties.and_then(|pr| text(pr.get(k))))
                .flatten()
        })
    };
    ev.page_url = page_field("url");
    ev.page_title = page_field("title");
    ev.page_referrer = page_field("referrer");
    // Segment does not check these URLs: one that does not parse keeps its text, without parts.
    let _ = p.page_url_parts(&mut ev);
    let _ = referrer_parts(&mut ev);
    if ev.page_urlpath.is_none() {
        ev.page_urlpath = page_field("path");
    }
    if ev.page_urlquery.is_none() {
        ev.page_urlquery =
            page_field("search").and_then(|s| tsv_safe(s.strip_prefix('?').unwrap_or(&s)));
    }
    if let Some(c) = sub("campaign") {
        let set = |field: &mut Option<Text>, k: &str| {
            if let Some(v) = text(c.get(k)) {
                *field = Some(v);
            }
        };
        set(&mut ev.mkt_source, "source");
        set(&mut ev.mkt_medium, "medium");
        set(&mut ev.mkt_campaign, "name");
        set(&mut ev.mkt_term, "term");
        set(&mut ev.mkt_content, "content");
    }

    // The user.
    let ip = context.get("ip").and_then(Value::as_str);
    p.user(&mut ev, ip, text(context.get("userAgent")), request);
    // The canonical text: keys sorted, the per-send keys left out.
    ev.event_fingerprint =
        (p.fingerprint_json(&text_without(msg, &FINGERPRINT_EXCLUDE))).map(Text::from);
    Ok(ev)
}

/// A JSON object's compact text (keys sorted).
pub(crate) fn json_text(o: &Map<String, Value>) -> String {
    serde_json::to_string(o).unwrap_or_else(|_| "{}".to_owned())
}

/// `receivedAt − (sentAt − created)` when both device times are known, the device's creation
/// time without `sentAt`, else the received time; kept within years 0–9999.
pub fn skew_corrected(received: i64, created: Option<i64>, sent: Option<i64>) -> i64 {
    let t = match (created, sent) {
        (Some(c), Some(s)) => received.saturating_sub(s.saturating_sub(c)),
        (Some(c), None) => c,
        _ => received,
    };
    t.clamp(MIN_TSTAMP_MS, MAX_TSTAMP_MS)
}

/// `messageId` as an event id: the UUID it is, else the UUIDv5 (RFC 9562) of
/// [`MESSAGE_ID_NAMESPACE`] and the id as sent, so the same message always gets the same id.
pub fn message_event_id(message_id: &str) -> Uuid {
    if let Ok(u) = Uuid::try_parse(message_id.trim()) {
        return u;
    }
    Uuid::new_v5(&MESSAGE_ID_NAMESPACE, message_id.as_bytes())
}

/// An id field: a string (TSV-safe; empty is none) or a number's text; `Err` for other types.
fn id_text(v: Option<&Value>) -> Result<Option<Text>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(tsv_safe(s)),
        Some(Value::Number(n)) => Ok(Some(Text::from(n.to_string()))),
        Some(_) => Err(()),
    }
}

/// A descriptive field: a string (TSV-safe) or a number's text; other types are ignored.
pub(crate) fn text(v: Option<&Value>) -> Option<Text> {
    match v? {
        Value::String(s) => tsv_safe(s),
        Value::Number(n) => Some(Text::from(n.to_string())),
        _ => None,
    }
}

/// A timestamp field: absent or null is none; an ISO 8601 string is its time; else `Err`.
fn timestamp(v: Option<&Value>) -> Result<Option<i64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_iso8601(s).map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, Config};
    use crate::publish::enrich::{
        derived_event_id, UaParser, COLLECTOR_VERSION, ETL_VERSION, TEST_INSTANCE,
    };
    use crate::publish::process::Processor;
    use crate::wire::route::Route;
    use sluice_wal::Lsn;
    use std::io::Write as _;

    const RECEIVED: i64 = 1_700_000_100_000;
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

    fn processor(f: impl FnOnce(&mut Config)) -> Processor {
        let mut config = Config::default();
        f(&mut config);
        Processor::new(&config.enrich, config.process_limits(), TEST_INSTANCE)
            .expect("valid config")
    }

    fn envelope(route: &str, body: &[u8]) -> Envelope {
        Envelope {
            received_at_ms: RECEIVED,
            route: route.into(),
            method: "POST".into(),
            path: route.into(),
            query: None,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("user-agent".into(), "analytics-python/2.3.4".into()),
            ],
            body: body.to_vec(),
            peer: Some("198.51.100.7:40000".into()),
            nuid: None,
        }
    }

    fn run(p: &Processor, env: &Envelope) -> (Vec<Event>, Vec<Failure>) {
        let (mut events, mut failures) = (Vec::new(), Vec::new());
        p.process(env, 3, Lsn(11), &mut events, &mut failures);
        (events, failures)
    }

    fn one(route: &str, body: &str) -> Event {
        let (mut events, failures) = run(&processor(|_| {}), &envelope(route, body.as_bytes()));
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(events.len(), 1);
        events.pop().unwrap()
    }

    fn failure(route: &str, body: &str) -> Failure {
        let (events, mut failures) = run(&processor(|_| {}), &envelope(route, body.as_bytes()));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(failures.len(), 1);
        failures.pop().unwrap()
    }

    /// The columns every Segment row has, for a message at index `index` of the request.
    fn base(call: Call, index: u64, fingerprint: &Option<Text>) -> Event {
        Event {
            source: Some("segment".into()),
            event: Some(call.as_str().into()),
            collector_tstamp: Some(RECEIVED),
            derived_tstamp: Some(RECEIVED),
            v_collector: Some(COLLECTOR_VERSION.into()),
            v_etl: Some(ETL_VERSION.into()),
            user_ipaddress: Some("198.51.100.7".into()),
            wal_partition: Some(3),
            wal_lsn: Some(11),
            wal_index: Some(index),
            event_fingerprint: fingerprint.clone(),
            ..Event::default()
        }
    }

    fn is_md5_hex(f: &Option<Text>) -> bool {
        f.as_deref()
            .is_some_and(|f| f.len() == 32 && f.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    #[test]
    fn a_track_call_fills_every_column_it_has_a_value_for() {
        let body = format!(
            r#"{{"type":"identify","event":"Order Completed","userId":"u-1","anonymousId":"a-1",
            "messageId":"ajs-next-abc","properties":{{"total":30,"currency":"EUR"}},
            "context":{{"ip":"203.0.113.9","userAgent":"{FIREFOX}","locale":"de-DE",
              "timezone":"Europe/Berlin","library":{{"name":"analytics.js","version":"next-1.70.0"}},
              "app":{{"name":"Shop","version":"3.1"}},
              "page":{{"url":"https://shop.example/cart?utm_source=news&gclid=g1#top","title":"Cart",
                "referrer":"https://search.example:8080/s?q=x","path":"/cart","search":"?utm_source=news"}},
              "campaign":{{"source":"newsletter","medium":"email","name":"spring","term":"shoes","content":"top"}},
              "screen":{{"width":1920,"height":1080}},"sessionId":1700000000}},
            "integrations":{{"All":false}},"receivedAt":"2000-01-01T00:00:00Z",
            "originalTimestamp":"2023-11-14T22:13:20.000Z","sentAt":"2023-11-14T22:13:21.500Z",
            "channel":"browser","writeKey":"secret-key"}}"#
        );
        let ev = one("/v1/track", &body);
        assert!(is_md5_hex(&ev.event_fingerprint));
        let ua = UaParser::new(0).parse(FIREFOX);
        let context: Value = serde_json::from_str(&body)
            .map(|v: Value| v["context"].clone())
            .unwrap();
        let expected = Event {
            event_id: Some(message_event_id("ajs-next-abc")),
            message_id: Some("ajs-next-abc".into()),
            app_id: Some("Shop".into()),
            app_version: Some("3.1".into()),
            platform: Some("web".into()),
            dvce_created_tstamp: Some(1_700_000_000_000),
            dvce_sent_tstamp: Some(1_700_000_001_500),
            derived_tstamp: Some(RECEIVED - 1_500),
            event_name: Some("Order Completed".into()),
            name_tracker: Some("analytics.js".into()),
            v_tracker: Some("next-1.70.0".into()),
            user_id: Some("u-1".into()),
            anonymous_id: Some("a-1".into()),
            user_ipaddress: Some("203.0.113.9".into()),
            domain_sessionid: Some("1700000000".into()),
            page_url: Some("https://shop.example/cart?utm_source=news&gclid=g1#top".into()),
            page_title: Some("Cart".into()),
            page_referrer: Some("https://search.example:8080/s?q=x".into()),
            page_urlscheme: Some("https".into()),
            page_urlhost: Some("shop.example".into()),
            page_urlport: Some(443),
            page_urlpath: Some("/cart".into()),
            page_urlquery: Some("utm_source=news&gclid=g1".into()),
            page_urlfragment: Some("top".into()),
            refr_urlscheme: Some("http".into())
                .filter(|_| false)
                .or(Some("https".into())),
            refr_urlhost: Some("search.example".into()),
            refr_urlport: Some(8080),
            refr_urlpath: Some("/s".into()),
            refr_urlquery: Some("q=x".into()),
            mkt_source: Some("newsletter".into()),
            mkt_medium: Some("email".into()),
            mkt_campaign: Some("spring".into()),
            mkt_term: Some("shoes".into()),
            mkt_content: Some("top".into()),
            mkt_clickid: Some("g1".into()),
            mkt_network: Some("Google".into()),
            properties: Some(r#"{"currency":"EUR","total":30}"#.into()),
            context: Some(Text::from(context.to_string())),
            useragent: Some(FIREFOX.into()),
            br_name: ua.br_name.clone(),
            br_family: Some("Firefox".into()),
            br_version: ua.br_version.clone(),
            br_lang: Some("de-DE".into()),
            os_name: ua.os_name.clone(),
            os_family: Some("Linux".into()),
            os_timezone: Some("Europe/Berlin".into()),
            dvce_type: Some("Computer".into()),
            dvce_ismobile: Some(false),
            dvce_screenwidth: Some(1920),
            dvce_screenheight: Some(1080),
            ..base(Call::Track, 0, &ev.event_fingerprint)
        };
        assert_eq!(ev, expected);
        let row = serde_json::to_string(&ev).unwrap();
        assert!(
            !row.contains("secret-key"),
            "the write key is never stored: {row}"
        );
    }

    #[test]
    fn rudderstack_traits_under_context_fill_the_traits_column_unless_top_level_ones_exist() {
        let ev = one(
            "/v1/identify",
            r#"{"userId":"u","context":{"traits":{"plan":"pro"},"library":{"name":"analytics-python"}}}"#,
        );
        assert_eq!(ev.traits.as_deref(), Some(r#"{"plan":"pro"}"#));
        let ev = one(
            "/v1/identify",
            r#"{"userId":"u","traits":{"plan":"top"},"context":{"traits":{"plan":"pro"}}}"#,
        );
        assert_eq!(ev.traits.as_deref(), Some(r#"{"plan":"top"}"#));
    }

    #[test]
    fn identify_keeps_traits_and_needs_only_an_id() {
        let ev = one(
            "/v1/identify",
            r#"{"anonymousId":"a-9","traits":{"email":"x@example.com","plan":"pro"}}"#,
        );
        let expected = Event {
            event_id: Some(derived_event_id(TEST_INSTANCE, 3, Lsn(11), 0)),
            anonymous_id: Some("a-9".into()),
            traits: Some(r#"{"email":"x@example.com","plan":"pro"}"#.into()),
            ..base(Call::Identify, 0, &ev.event_fingerprint)
        };
        assert_eq!(ev, expected);
    }

    #[test]
    fn page_and_screen_take_their_name_and_page_fields_fall_back_to_properties() {
        let ev = one(
            "/v1/p",
            r#"{"userId":"u","name":"Pricing","properties":{"url":"http://a.example:81/p?utm_medium=cpc","title":"Prices","referrer":"nope"},
               "timestamp":"2023-11-14T23:13:20+01:00"}"#,
        );
        let expected = Event {
            event_id: Some(derived_event_id(TEST_INSTANCE, 3, Lsn(11), 0)),
            user_id: Some("u".into()),
            event_name: Some("Pricing".into()),
            dvce_created_tstamp: Some(1_700_000_000_000),
            derived_tstamp: Some(1_700_000_000_000),
            page_url: Some("http://a.example:81/p?utm_medium=cpc".into()),
            page_title: Some("Prices".into()),
            page_referrer: Some("nope".into()),
            page_urlscheme: Some("http".into()),
            page_urlhost: Some("a.example".into()),
            page_urlport: Some(81),
            page_urlpath: Some("/p".into()),
            page_urlquery: Some("utm_medium=cpc".into()),
            mkt_medium: Some("cpc".into()),
            properties: Some(
                r#"{"referrer":"nope","title":"Prices","url":"http://a.example:81/p?utm_medium=cpc"}"#
                    .into(),
            ),
            ..base(Call::Page, 0, &ev.event_fingerprint)
        };
        assert_eq!(ev, expected);
        let ev = one(
            "/v1/screen",
            r#"{"userId":"u","name":"Home","properties":{"url":"https://not.used"},"context":{"app":{"version":7}},"channel":"mobile"}"#,
        );
        let expected = Event {
            event_id: Some(derived_event_id(TEST_INSTANCE, 3, Lsn(11), 0)),
            user_id: Some("u".into()),
            event_name: Some("Home".into()),
            app_version: Some("7".into()),
            platform: Some("mob".into()),
            properties: Some(r#"{"url":"https://not.used"}"#.into()),
            context: Some(r#"{"app":{"version":7}}"#.into()),
            ..base(Call::Screen, 0, &ev.event_fingerprint)
        };
        assert_eq!(
            ev, expected,
            "screen calls do not read the page from properties"
        );
    }

    #[test]
    fn group_and_alias_keep_their_ids_in_properties() {
        let ev = one(
            "/v1/g",
            r#"{"userId":"u","groupId":"acme","traits":{"size":5},"channel":"server"}"#,
        );
        let expected = Event {
            event_id: Some(derived_event_id(TEST_INSTANCE, 3, Lsn(11), 0)),
            user_id: Some("u".into()),
            platform: Some("srv".into()),
            properties: Some(r#"{"groupId":"acme"}"#.into()),
            traits: Some(r#"{"size":5}"#.into()),
            ..base(Call::Group, 0, &ev.event_fingerprint)
        };
        assert_eq!(ev, expected);
        let ev = one("/v1/a", r#"{"userId":42,"previousId":"anon-1"}"#);
        let expected = Event {
            event_id: Some(derived_event_id(TEST_INSTANCE, 3, Lsn(11), 0)),
            user_id: Some("42".into()),
            properties: Some(r#"{"previousId":"anon-1"}"#.into()),
            ..base(Call::Alias, 0, &ev.event_fingerprint)
        };
        assert_eq!(ev, expected);
    }

    fn route_of(template: &str) -> Option<SegmentBody> {
        match Route::of_template(template)? {
            Route::Segment(route) => Some(route.body()),
            _ => None,
        }
    }

    #[test]
    fn every_route_and_short_alias_maps_to_its_call() {
        for (route, call) in [
            ("/v1/track", Call::Track),
            ("/v1/t", Call::Track),
            ("/v1/identify", Call::Identify),
            ("/v1/i", Call::Identify),
            ("/v1/page", Call::Page),
            ("/v1/p", Call::Page),
            ("/v1/screen", Call::Screen),
            ("/v1/s", Call::Screen),
            ("/v1/group", Call::Group),
            ("/v1/g", Call::Group),
            ("/v1/alias", Call::Alias),
            ("/v1/a", Call::Alias),
        ] {
            assert_eq!(route_of(route), Some(SegmentBody::Single(call)), "{route}");
            // The route decides, whatever `type` the body claims.
            let ev = one(
                route,
                r#"{"type":"track","event":"e","userId":"u","groupId":"g","previousId":"p"}"#,
            );
            assert_eq!(ev.event.as_deref(), Some(call.as_str()), "{route}");
        }
        for route in ["/v1/batch", "/v1/import", "/v1/b"] {
            assert_eq!(route_of(route), Some(SegmentBody::Batch));
        }
        assert_eq!(route_of("/v1/merge"), None);
        assert_eq!(route_of("/v1.0/event"), None);
    }

    #[test]
    fn required_fields_per_call_are_schema_violations_naming_them() {
        for (route, body, needle) in [
            ("/v1/track", r#"{"event":"e"}"#, "no_user_anon_id"),
            ("/v1/track", r#"{"userId":"u"}"#, "`event`"),
            ("/v1/track", r#"{"userId":"u","event":""}"#, "`event`"),
            ("/v1/group", r#"{"userId":"u"}"#, "`groupId`"),
            ("/v1/alias", r#"{"userId":"u"}"#, "`previousId`"),
            (
                "/v1/alias",
                r#"{"anonymousId":"x","previousId":"p"}"#,
                "`userId`",
            ),
            ("/v1/identify", r#"{"userId":{"a":1}}"#, "`userId`"),
            ("/v1/identify", r#"{"userId":"u","traits":[1]}"#, "`traits`"),
            (
                "/v1/identify",
                r#"{"userId":"u","context":"x"}"#,
                "`context`",
            ),
            (
                "/v1/track",
                r#"{"userId":"u","event":"e","properties":3}"#,
                "`properties`",
            ),
            (
                "/v1/track",
                r#"{"userId":"u","event":"e","sentAt":"yesterday"}"#,
                "`sentAt`",
            ),
            (
                "/v1/track",
                r#"{"userId":"u","event":"e","timestamp":1700000000}"#,
                "`timestamp`",
            ),
        ] {
            let f = failure(route, body);
            assert_eq!(f.category, FailureCategory::SchemaViolation, "{body}");
            assert_eq!(f.event_index, Some(0));
            assert!(
                f.messages.iter().any(|m| m.contains(needle)),
                "{body}: {:?}",
                f.messages
            );
            assert!(f.event_payload.is_some());
        }
        let f = failure("/v1/track", "[1]");
        assert_eq!(
            (f.category, f.event_index),
            (FailureCategory::TrackerProtocolViolation, None)
        );
    }

    #[test]
    fn a_batch_merges_its_context_and_sent_at_and_dead_letters_only_the_bad_items() {
        let big = "x".repeat(40 << 10);
        let body = format!(
            r#"{{"writeKey":"secret-key","sentAt":"2023-11-14T22:13:22Z",
            "context":{{"library":{{"name":"analytics-python","version":"2.3.4"}},"locale":"en-US"}},
            "integrations":{{"All":true}},
            "batch":[
              {{"type":"track","event":"A","userId":"u","messageId":"m-1","timestamp":"2023-11-14T22:13:20Z",
                "context":{{"locale":"fr-FR"}}}},
              {{"type":"track","userId":"u","messageId":"m-2"}},
              {{"type":"identify","anonymousId":"a","sentAt":"2023-11-14T22:13:21Z","timestamp":"2023-11-14T22:13:20Z"}},
              {{"type":"track","event":"B","userId":"u","properties":{{"pad":"{big}"}}}},
              {{"type":"purchase","userId":"u"}},
              7,
              {{"type":"page","anonymousId":"a","name":"Home"}}
            ]}}"#
        );
        let (events, failures) = run(&processor(|_| {}), &envelope("/v1/batch", body.as_bytes()));
        let indexes: Vec<_> = events.iter().map(|e| e.wal_index.unwrap()).collect();
        assert_eq!(indexes, vec![0, 2, 6]);
        let fails: Vec<_> = failures
            .iter()
            .map(|f| (f.event_index, f.category))
            .collect();
        assert_eq!(
            fails,
            vec![
                (Some(1), FailureCategory::SchemaViolation),
                (Some(3), FailureCategory::SizeViolation),
                (Some(4), FailureCategory::SchemaViolation),
                (Some(5), FailureCategory::SchemaViolation),
            ]
        );
        assert!(failures[0].messages[0].contains("`event`"));
        assert!(failures[2].messages[0].contains("purchase"));
        assert!(!failures[0]
            .event_payload
            .as_deref()
            .unwrap()
            .contains("secret-key"));
        let (a, identify, page) = (&events[0], &events[1], &events[2]);
        // Item values win over the batch's context; the batch's keys fill the rest.
        assert_eq!(a.br_lang.as_deref(), Some("fr-FR"));
        assert_eq!(a.name_tracker.as_deref(), Some("analytics-python"));
        assert_eq!(a.v_tracker.as_deref(), Some("2.3.4"));
        assert_eq!(
            a.context.as_deref(),
            Some(r#"{"library":{"name":"analytics-python","version":"2.3.4"},"locale":"fr-FR"}"#)
        );
        assert_eq!(page.br_lang.as_deref(), Some("en-US"));
        assert_eq!(a.event_id, Some(message_event_id("m-1")));
        assert_eq!(
            page.event_id,
            Some(derived_event_id(TEST_INSTANCE, 3, Lsn(11), 6))
        );
        // The batch's sentAt applies to items without their own.
        assert_eq!(a.dvce_sent_tstamp, Some(1_700_000_002_000));
        assert_eq!(a.derived_tstamp, Some(RECEIVED - 2_000));
        assert_eq!(identify.dvce_sent_tstamp, Some(1_700_000_001_000));
        assert_eq!(identify.derived_tstamp, Some(RECEIVED - 1_000));
        assert_eq!(page.derived_tstamp, Some(RECEIVED));
        for ev in &events {
            assert!(!serde_json::to_string(ev).unwrap().contains("secret-key"));
        }
    }

    #[test]
    fn the_event_size_limit_is_configurable() {
        let p = processor(|c| c.segment.max_event_bytes = ByteSize(1 << 10));
        let item = format!(
            r#"{{"type":"track","event":"e","userId":"u","p":"{}"}}"#,
            "y".repeat(1100)
        );
        let body = format!(r#"{{"batch":[{item},{{"type":"identify","userId":"u"}}]}}"#);
        let (events, failures) = run(&p, &envelope("/v1/import", body.as_bytes()));
        assert_eq!(events.len(), 1);
        assert_eq!(failures[0].category, FailureCategory::SizeViolation);
        assert!(failures[0].messages[0].contains("segment.max_event_bytes"));
        let (events, failures) = run(&p, &envelope("/v1/track", item.as_bytes()));
        assert_eq!(
            (events.len(), failures[0].category),
            (0, FailureCategory::SizeViolation)
        );
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_bodies_are_decompressed_again_within_the_cap() {
        let body = r#"{"batch":[{"type":"track","event":"e","userId":"u","messageId":"m"}]}"#;
        let p = processor(|_| {});
        let (plain, _) = run(&p, &envelope("/v1/batch", body.as_bytes()));
        let mut env = envelope("/v1/batch", &gzip(body.as_bytes()));
        env.headers.push(("content-encoding".into(), "gzip".into()));
        let (zipped, failures) = run(&p, &env);
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(zipped, plain);
        // A bomb past server.max_decompressed_bytes is refused as a whole.
        let capped = processor(|c| c.server.max_decompressed_bytes = ByteSize(4 << 10));
        let mut bomb = envelope("/v1/batch", &gzip(&vec![b' '; 1 << 20]));
        bomb.headers
            .push(("content-encoding".into(), "gzip".into()));
        let (events, failures) = run(&capped, &bomb);
        assert!(events.is_empty());
        assert_eq!(
            (
                failures.len(),
                failures[0].category,
                failures[0].event_index
            ),
            (1, FailureCategory::SizeViolation, None)
        );
        let mut broken = envelope("/v1/batch", b"\x1f\x8b not gzip");
        broken
            .headers
            .push(("content-encoding".into(), "gzip".into()));
        let (_, failures) = run(&p, &broken);
        assert_eq!(
            failures[0].category,
            FailureCategory::CollectorPayloadFormatViolation
        );
    }

    #[test]
    fn text_plain_bodies_map_like_json() {
        let body = br#"{"userId":"u","event":"e"}"#;
        let p = processor(|_| {});
        let mut env = envelope("/v1/t", body);
        let (json, _) = run(&p, &env);
        env.headers[0].1 = "text/plain;charset=UTF-8".into();
        let (text, _) = run(&p, &env);
        assert_eq!((json.len(), json), (1, text));
    }

    #[test]
    fn message_ids_give_stable_event_ids() {
        let u = "0b5e4d3c-1a2b-4c3d-8e9f-0123456789ab";
        assert_eq!(message_event_id(u).to_string(), u);
        assert_eq!(message_event_id(&u.to_uppercase()).to_string(), u);
        let a = message_event_id("ajs-next-1");
        assert_eq!(a, message_event_id("ajs-next-1"));
        assert_ne!(a, message_event_id("ajs-next-2"));
        assert_eq!(a.get_version_num(), 5);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        // Stored event ids must not change between releases: this is RFC 9562's UUIDv5 of the
        // namespace and the id (Python: `uuid.uuid5(UUID("5c1ce5e9-…"), "ajs-next-1")`).
        assert_eq!(a.to_string(), "9bfd81e3-a4e0-5708-a31f-3762b8c28bcc");
        assert_eq!(
            Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"python.org").to_string(),
            "886313e1-3b8a-5372-9b90-0c9aee199e5d"
        );
        // A replay of the same request gives the same rows.
        let body = br#"{"userId":"u","event":"e","messageId":"m-7"}"#;
        let p = processor(|_| {});
        assert_eq!(
            run(&p, &envelope("/v1/t", body)),
            run(&p, &envelope("/v1/t", body))
        );
    }

    #[test]
    fn the_fingerprint_ignores_what_changes_between_retries() {
        let f = |body: &str| one("/v1/track", body).event_fingerprint;
        let a = f(r#"{"userId":"u","event":"e","messageId":"1","sentAt":"2023-01-01T00:00:00Z"}"#);
        let b = f(r#"{"userId":"u","event":"e","messageId":"2","writeKey":"k"}"#);
        let c = f(r#"{"userId":"u","event":"other"}"#);
        assert!(is_md5_hex(&a));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn context_ip_wins_over_the_peer_and_is_anonymised() {
        let p = processor(|c| c.enrich.anonymise_ip.octets = 1);
        let env = envelope(
            "/v1/t",
            br#"{"userId":"u","event":"e","context":{"ip":"203.0.113.9"}}"#,
        );
        assert_eq!(
            run(&p, &env).0[0].user_ipaddress.as_deref(),
            Some("203.0.113.x")
        );
        let env = envelope("/v1/t", br#"{"userId":"u","event":"e"}"#);
        assert_eq!(
            run(&p, &env).0[0].user_ipaddress.as_deref(),
            Some("198.51.100.x")
        );
    }

    #[test]
    fn page_path_and_search_fill_in_when_there_is_no_url() {
        let ev = one(
            "/v1/track",
            r#"{"userId":"u","event":"e","context":{"page":{"url":"not a url","path":"/a","search":"?q=1"}}}"#,
        );
        assert_eq!(ev.page_url.as_deref(), Some("not a url"));
        assert_eq!(
            (
                ev.page_urlhost,
                ev.page_urlpath.as_deref(),
                ev.page_urlquery.as_deref()
            ),
            (None, Some("/a"), Some("q=1"))
        );
    }

    #[test]
    fn skew_correction_follows_segment() {
        assert_eq!(skew_corrected(100, Some(10), Some(30)), 80);
        assert_eq!(skew_corrected(100, Some(30), Some(10)), 120);
        assert_eq!(skew_corrected(100, Some(10), None), 10);
        assert_eq!(skew_corrected(100, None, Some(10)), 100);
        assert_eq!(
            skew_corrected(0, Some(MIN_TSTAMP_MS), Some(MAX_TSTAMP_MS)),
            MIN_TSTAMP_MS
        );
        assert_eq!(
            skew_corrected(i64::MAX, Some(i64::MAX), Some(i64::MIN)),
            MAX_TSTAMP_MS
        );
    }
}
