//! The Snowplow field mapping: each event's tracker-protocol parameters become a row.
//!
//! [`crate::wire::snowplow`] turns a stored request into per-event parameter maps; this module
//! fills the canonical event from each map, following Snowplow's enrich: parameter parsing,
//! event type and schema, timestamps, URL parts, campaign fields, IP address, network user id,
//! user-agent parsing, fingerprint, entities and the self-describing event (kept as JSON
//! text). A bad event fails alone with the category Snowplow's bad rows use.

use sluice_wal::Lsn;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::event::{Event, Failure, FailureCategory, Text};
use crate::publish::enrich::{
    derived_event_id, derived_tstamp, fingerprint, referrer_parts, Enricher, RequestContext,
    COLLECTOR_VERSION, ETL_VERSION,
};
use crate::wire::snowplow::{
    self, event_failure, request_failure, short_key, DecodeOptions, Decoded, RawEvent,
};
use crate::wire::text::{decode_base64, tsv_safe};
use crate::wire::time::{MAX_TSTAMP_MS, MIN_TSTAMP_MS};

const PLATFORMS: [&str; 9] = [
    "web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot", "headset",
];

/// `source` of Snowplow rows.
const SOURCE: &str = "snowplow";

/// The parameters [`map_event`] reads, sorted (bytewise, the order of their [`short_key`]s: a
/// parameter finds its slot by a binary search over integers).
const KNOWN: [&str; 65] = [
    "aid", "cd", "co", "cookie", "cs", "cv", "cx", "ds", "dtm", "duid", "e", "eid", "ev_ac",
    "ev_ca", "ev_la", "ev_pr", "ev_va", "fp", "ip", "lang", "nuid", "p", "page", "pp_max",
    "pp_may", "pp_mix", "pp_miy", "refr", "res", "se_ac", "se_ca", "se_la", "se_pr", "se_va",
    "sid", "stm", "ti_ca", "ti_cu", "ti_id", "ti_na", "ti_nm", "ti_pr", "ti_qu", "ti_sk", "tna",
    "tnuid", "tr_af", "tr_ci", "tr_co", "tr_cu", "tr_id", "tr_sh", "tr_st", "tr_tt", "tr_tx",
    "ttm", "tv", "tz", "ua", "ue_pr", "ue_px", "uid", "url", "vid", "vp",
];

/// [`short_key`] of each of [`KNOWN`].
const PACKED: [u64; KNOWN.len()] = {
    let mut out = [0; KNOWN.len()];
    let mut i = 0;
    while i < KNOWN.len() {
        out[i] = short_key(KNOWN[i]);
        i += 1;
    }
    out
};

/// The slot of `key` in [`KNOWN`], for [`k!`] at compile time (a key not listed does not compile).
const fn known_slot(key: &str) -> usize {
    let packed = short_key(key);
    let mut i = 0;
    while i < PACKED.len() {
        if PACKED[i] == packed {
            return i;
        }
        i += 1;
    }
    panic!("not a KNOWN parameter")
}

/// The [`KNOWN`] slot of a parameter name, computed at compile time.
macro_rules! k {
    ($key:literal) => {
        const { known_slot($key) }
    };
}

/// One event's [`KNOWN`] parameters, gathered in one pass over its map: `enrich` reads ~100
/// of them (most absent), each then an array read instead of a search of the map.
struct Known<'p>([Option<&'p str>; KNOWN.len()]);

impl<'p> Known<'p> {
    fn of(params: &'p RawEvent) -> Known<'p> {
        let mut known = Known([None; KNOWN.len()]);
        for (key, value) in params.short_keys() {
            if let Ok(slot) = PACKED.binary_search(&key) {
                known.0[slot] = Some(value.as_ref());
            }
        }
        known
    }
}

/// Maps one stored Snowplow request: one row per good event, one failure per bad one, or one
/// failure for a bad request. `max_payload_bytes` is `collector.max_payload_bytes`.
pub(crate) fn process(
    e: &Enricher,
    max_payload_bytes: u64,
    envelope: &Envelope,
    partition: usize,
    lsn: Lsn,
    events: &mut Vec<Event>,
    failures: &mut Vec<Failure>,
) {
    let size = envelope.body.len() as u64 + envelope.query.as_ref().map_or(0, |q| q.len()) as u64;
    if size > max_payload_bytes {
        failures.push(request_failure(
            FailureCategory::SizeViolation,
            format!(
                "the request's payload (body and query string) is {size} bytes, above collector.max_payload_bytes ({} bytes)",
                max_payload_bytes
            ),
        ));
        return;
    }
    if let Some(nuid) = envelope.nuid.as_deref() {
        if Uuid::parse_str(nuid).is_err() {
            failures.push(request_failure(
                FailureCategory::CollectorPayloadFormatViolation,
                format!("the stored network user id {nuid:?} is not a UUID"),
            ));
            return;
        }
    }
    let options = DecodeOptions {
        strict_body_keys: e.config.strict_body_keys,
    };
    let items = match snowplow::decode(envelope, options) {
        Decoded::Request(f) => {
            failures.push(f);
            return;
        }
        Decoded::Events(items) => items,
    };
    let request = e.request(envelope);
    for (index, item) in items.into_iter().enumerate() {
        let params = match item {
            Ok(params) => params,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        // Filled where it will stay: an event is over 2 KiB, and returning one by value
        // copied it two or three times (a tenth of the publisher's CPU went to memmove).
        events.push(Event::default());
        let ev = events.last_mut().expect("an event was just pushed");
        if let Err((category, messages)) =
            map_event(e, &params, &request, partition, lsn, index, ev)
        {
            events.pop();
            failures.push(event_failure(category, messages, index, &params));
        }
    }
}

/// Fills `ev`, a default event, from one event's parameters; `Err` carries the category
/// and every message (and `ev` is then half-filled, to be dropped).
fn map_event(
    enricher: &Enricher,
    params: &RawEvent,
    request: &RequestContext<'_>,
    partition: usize,
    lsn: Lsn,
    index: usize,
    ev: &mut Event,
) -> Result<(), (FailureCategory, Vec<String>)> {
    let mut schema_errors: Vec<String> = Vec::new();
    let mut protocol_errors: Vec<String> = Vec::new();
    let mut enrichment_errors: Vec<String> = Vec::new();
    let known = Known::of(params);
    let get = |slot: usize| known.0[slot];
    let text = |slot: usize| get(slot).and_then(tsv_safe);

    ev.source = Some(Text::from(SOURCE));
    ev.wal_partition = Some(partition as u64);
    ev.wal_lsn = Some(lsn.0);
    ev.wal_index = Some(index as u64);
    ev.collector_tstamp = Some(request.envelope.received_at_ms);

    // Event type and id.
    let e = get(k!("e")).unwrap_or("");
    let event = match e {
        "pv" => Some("page_view"),
        "pp" => Some("page_ping"),
        "se" | "ev" => Some("struct"),
        "ue" => Some("unstruct"),
        "tr" => Some("transaction"),
        "ti" => Some("transaction_item"),
        "ad" => Some("ad_impression"),
        _ => {
            schema_errors.push(format!("`e` = {e:?} is not a valid event type"));
            None
        }
    };
    ev.event = event.map(Text::from);
    ev.event_id = match get(k!("eid")) {
        Some(eid) => match Uuid::parse_str(eid.trim()) {
            Ok(u) => Some(u),
            Err(_) => {
                schema_errors.push(format!("`eid` = {eid:?} is not a UUID"));
                None
            }
        },
        None => Some(derived_event_id(enricher.instance, partition, lsn, index)),
    };
    match get(k!("p")) {
        Some(p) if PLATFORMS.contains(&p) => ev.platform = Some(Text::from(p)),
        Some(p) => schema_errors.push(format!(
            "`p` = {p:?} is not a platform (one of {})",
            PLATFORMS.join(", ")
        )),
        None => {}
    }

    // Timestamps.
    let mut tstamp = |slot: usize| {
        let k = KNOWN[slot];
        match get(slot) {
            None | Some("null") | Some("") => None,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(ms) if (MIN_TSTAMP_MS..=MAX_TSTAMP_MS).contains(&ms) => Some(ms),
                _ => {
                    schema_errors.push(format!(
                        "`{k}` = {v:?} is not a timestamp in milliseconds between years 0 and 9999"
                    ));
                    None
                }
            },
        }
    };
    ev.dvce_created_tstamp = tstamp(k!("dtm"));
    ev.dvce_sent_tstamp = tstamp(k!("stm"));
    ev.true_tstamp = tstamp(k!("ttm"));
    ev.derived_tstamp = derived_tstamp(
        ev.collector_tstamp,
        ev.dvce_created_tstamp,
        ev.dvce_sent_tstamp,
        ev.true_tstamp,
    );

    // Simple strings.
    ev.app_id = text(k!("aid"));
    ev.name_tracker = text(k!("tna"));
    ev.v_tracker = text(k!("tv"));
    ev.v_collector = text(k!("cv")).or_else(|| Some(Text::from(COLLECTOR_VERSION)));
    ev.v_etl = Some(Text::from(ETL_VERSION));
    ev.user_id = text(k!("uid"));
    ev.user_fingerprint = text(k!("fp"));
    ev.domain_userid = text(k!("duid"));
    ev.domain_sessionid = text(k!("sid"));
    ev.page_title = text(k!("page"));
    ev.os_timezone = text(k!("tz"));
    ev.br_lang = text(k!("lang"));
    ev.br_colordepth = text(k!("cd"));
    ev.doc_charset = text(k!("cs"));

    // Numbers.
    let mut int = |slot: usize| {
        let k = KNOWN[slot];
        match get(slot) {
            None | Some("null") | Some("") => None,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    schema_errors.push(format!("`{k}` = {v:?} is not an integer"));
                    None
                }
            },
        }
    };
    ev.domain_sessionidx = int(k!("vid"));
    ev.pp_xoffset_min = int(k!("pp_mix"));
    ev.pp_xoffset_max = int(k!("pp_max"));
    ev.pp_yoffset_min = int(k!("pp_miy"));
    ev.pp_yoffset_max = int(k!("pp_may"));
    ev.ti_quantity = int(k!("ti_qu"));
    let mut float = |slot: usize| {
        let k = KNOWN[slot];
        match get(slot) {
            None | Some("null") | Some("") => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Some(n),
                _ => {
                    schema_errors.push(format!("`{k}` = {v:?} is not a decimal number"));
                    None
                }
            },
        }
    };
    ev.se_value = if get(k!("se_va")).is_some() {
        float(k!("se_va"))
    } else {
        float(k!("ev_va"))
    };
    ev.tr_total = float(k!("tr_tt"));
    ev.tr_tax = float(k!("tr_tx"));
    ev.tr_shipping = float(k!("tr_sh"));
    ev.ti_price = float(k!("ti_pr"));
    match get(k!("cookie")) {
        None => {}
        Some("1") => ev.br_cookies = Some(true),
        Some("0") => ev.br_cookies = Some(false),
        Some(v) => schema_errors.push(format!("`cookie` = {v:?} is not 1 or 0")),
    }
    let mut dims = |slot: usize| {
        let k = KNOWN[slot];
        match get(slot) {
            None | Some("") => (None, None),
            Some(v) => match parse_dimensions(v) {
                Some((w, h)) => (Some(w), Some(h)),
                None => {
                    schema_errors.push(format!("`{k}` = {v:?} is not WIDTHxHEIGHT"));
                    (None, None)
                }
            },
        }
    };
    (ev.dvce_screenwidth, ev.dvce_screenheight) = dims(k!("res"));
    (ev.br_viewwidth, ev.br_viewheight) = dims(k!("vp"));
    (ev.doc_width, ev.doc_height) = dims(k!("ds"));

    // Structured event (legacy `ev_*` accepted), transaction, item.
    let either = |a: usize, b: usize| text(a).or_else(|| text(b));
    ev.se_category = either(k!("se_ca"), k!("ev_ca"));
    ev.se_action = either(k!("se_ac"), k!("ev_ac"));
    ev.se_label = either(k!("se_la"), k!("ev_la"));
    ev.se_property = either(k!("se_pr"), k!("ev_pr"));
    ev.tr_orderid = text(k!("tr_id"));
    ev.tr_affiliation = text(k!("tr_af"));
    ev.tr_city = text(k!("tr_ci"));
    ev.tr_state = text(k!("tr_st"));
    ev.tr_country = text(k!("tr_co"));
    ev.tr_currency = text(k!("tr_cu"));
    ev.ti_orderid = text(k!("ti_id"));
    ev.ti_sku = text(k!("ti_sk"));
    ev.ti_name = either(k!("ti_nm"), k!("ti_na"));
    ev.ti_category = text(k!("ti_ca"));
    ev.ti_currency = text(k!("ti_cu"));

    // Entities and the self-describing event.
    match json_param(get(k!("co")), get(k!("cx")), "cx") {
        Ok(None) => {}
        Ok(Some(json)) => match check_contexts(&json) {
            Ok(()) => ev.contexts = Some(Text::from(json)),
            Err(m) => schema_errors.push(m),
        },
        Err(m) => protocol_errors.push(m),
    }
    let unstruct = match json_param(get(k!("ue_pr")), get(k!("ue_px")), "ue_px") {
        Ok(None) => None,
        Ok(Some(json)) => match check_unstruct(&json) {
            Ok(key) => {
                ev.unstruct_event = Some(Text::from(json));
                Some(key)
            }
            Err(m) => {
                schema_errors.push(m);
                None
            }
        },
        Err(m) => {
            protocol_errors.push(m);
            None
        }
    };
    let schema_key: Option<(String, String, String, String)> = match event {
        Some(name @ ("page_view" | "page_ping" | "transaction" | "transaction_item")) => Some((
            "com.snowplowanalytics.snowplow".into(),
            name.into(),
            "jsonschema".into(),
            "1-0-0".into(),
        )),
        Some("struct") => Some((
            "com.google.analytics".into(),
            "event".into(),
            "jsonschema".into(),
            "1-0-0".into(),
        )),
        Some("unstruct") => {
            if unstruct.is_none() && get(k!("ue_pr")).is_none() && get(k!("ue_px")).is_none() {
                enrichment_errors.push(
                    "an `e=ue` event needs a self-describing event in `ue_pr` or `ue_px`".into(),
                );
            }
            unstruct
        }
        Some(other) => {
            enrichment_errors.push(format!(
                "no schema is known for `{other}` events (legacy type): cannot set event_vendor/name"
            ));
            None
        }
        None => None,
    };
    if let Some((vendor, name, format, version)) = schema_key {
        ev.event_vendor = Some(Text::from(vendor));
        ev.event_name = Some(Text::from(name));
        ev.event_format = Some(Text::from(format));
        ev.event_version = Some(Text::from(version));
    }

    // Page and referrer.
    ev.page_url = text(k!("url")).or_else(|| request.referer.and_then(tsv_safe));
    ev.page_referrer = text(k!("refr"));
    if let Err(m) = enricher.page_url_parts(ev) {
        enrichment_errors.push(m);
    }
    if let Err(m) = referrer_parts(ev) {
        enrichment_errors.push(m);
    }

    // The user: IP, network id, user agent.
    let useragent = text(k!("ua")).or_else(|| request.user_agent.and_then(tsv_safe));
    enricher.user(ev, get(k!("ip")), useragent, request);
    ev.network_userid = text(k!("tnuid"))
        .or_else(|| text(k!("nuid")))
        .or_else(|| request.envelope.nuid.as_deref().and_then(tsv_safe));
    if enricher.config.fingerprint.enabled {
        ev.event_fingerprint = Some(Text::from(fingerprint(
            params,
            &enricher.config.fingerprint.exclude,
            enricher.config.fingerprint.algorithm,
        )));
    }

    // Precedence as Snowplow's: input violations, then enrichment failures.
    if !protocol_errors.is_empty() {
        protocol_errors.extend(schema_errors);
        return Err((FailureCategory::TrackerProtocolViolation, protocol_errors));
    }
    if !schema_errors.is_empty() {
        return Err((FailureCategory::SchemaViolation, schema_errors));
    }
    if !enrichment_errors.is_empty() {
        return Err((FailureCategory::EnrichmentFailure, enrichment_errors));
    }
    Ok(())
}

/// `WIDTHxHEIGHT` (both non-negative integers).
fn parse_dimensions(s: &str) -> Option<(i64, i64)> {
    let (w, h) = s.split_once('x')?;
    let num = |n: &str| {
        (!n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<i64>().ok())
            .flatten()
    };
    Some((num(w)?, num(h)?))
}

/// The JSON text of a plain (`plain`) or base64 (`encoded`, the parameter named `encoded_name`)
/// parameter; plain wins when both are present. `Err` for bad base64 or a non-UTF-8 result.
fn json_param(
    plain: Option<&str>,
    encoded: Option<&str>,
    encoded_name: &str,
) -> Result<Option<String>, String> {
    if let Some(v) = plain {
        return Ok((!v.trim().is_empty()).then(|| v.to_string()));
    }
    let Some(v) = encoded else {
        return Ok(None);
    };
    if v.trim().is_empty() {
        return Ok(None);
    }
    let bytes = decode_base64(v).map_err(|e| format!("`{encoded_name}` is {e}"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("`{encoded_name}` does not decode to UTF-8 text"))
}

/// Parses a self-describing JSON: an object with an Iglu `schema` and a `data`.
fn self_describing<'j>(
    json: &'j serde_json::Value,
    what: &str,
) -> Result<(&'j str, &'j serde_json::Value), String> {
    let obj = json
        .as_object()
        .ok_or_else(|| format!("{what} is not a self-describing JSON object"))?;
    let schema = obj
        .get("schema")
        .and_then(|s| s.as_str())
        .ok_or_else(|| format!("{what} has no `schema` string"))?;
    if !snowplow::is_iglu_uri(schema) {
        return Err(format!("{what} schema {schema:?} is not an Iglu URI"));
    }
    let data = obj
        .get("data")
        .ok_or_else(|| format!("{what} has no `data`"))?;
    Ok((schema, data))
}

const MAX_JSON_DEPTH: usize = 40;

fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn parse_json(text: &str, what: &str) -> Result<serde_json::Value, String> {
    // serde_json itself refuses nesting deeper than 128.
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}"))?;
    if json_depth(&v) > MAX_JSON_DEPTH {
        return Err(format!(
            "{what} is nested deeper than {MAX_JSON_DEPTH} levels"
        ));
    }
    Ok(v)
}

/// Checks the entities wrapper `contexts/jsonschema/1-0-*` and each entity.
fn check_contexts(text: &str) -> Result<(), String> {
    let json = parse_json(text, "the entities (`co`/`cx`)")?;
    let (schema, data) = self_describing(&json, "the entities (`co`/`cx`)")?;
    if !schema.starts_with("iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-") {
        return Err(format!(
            "the entities' schema {schema:?} is not iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-*"
        ));
    }
    let items = data
        .as_array()
        .ok_or_else(|| "the entities' `data` is not an array".to_owned())?;
    for (i, item) in items.iter().enumerate() {
        self_describing(item, &format!("entity {i}"))?;
    }
    Ok(())
}

/// Checks the event wrapper `unstruct_event/jsonschema/1-0-*` and returns the inner event's
/// (vendor, name, format, version).
fn check_unstruct(text: &str) -> Result<(String, String, String, String), String> {
    let json = parse_json(text, "the self-describing event (`ue_pr`/`ue_px`)")?;
    let (schema, data) = self_describing(&json, "the self-describing event (`ue_pr`/`ue_px`)")?;
    if !schema.starts_with("iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-") {
        return Err(format!(
            "the self-describing event's schema {schema:?} is not iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-*"
        ));
    }
    let (inner, _) = self_describing(data, "the self-describing event's `data`")?;
    let (vendor, name, format, version) =
        snowplow::parse_iglu_uri(inner).ok_or_else(|| format!("{inner:?} is not an Iglu URI"))?;
    Ok((vendor.into(), name.into(), format.into(), version.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::publish::enrich::{
        hash_hex, AnonymiseIpConfig, EnrichConfig, FingerprintConfig, HashAlgorithm, TEST_INSTANCE,
    };
    use crate::publish::process::Processor;

    fn processor(f: impl FnOnce(&mut EnrichConfig)) -> Processor {
        let mut config = Config::default();
        f(&mut config.enrich);
        Processor::new(&config.enrich, config.process_limits(), TEST_INSTANCE)
            .expect("valid config")
    }

    fn get(query: &str) -> Envelope {
        Envelope {
            received_at_ms: 1_700_000_100_000,
            route: "/i".into(),
            method: "GET".into(),
            path: "/i".into(),
            query: Some(query.into()),
            headers: vec![
                (
                    "user-agent".into(),
                    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0".into(),
                ),
                ("referer".into(), "https://ref.example/from".into()),
            ],
            body: Vec::new(),
            peer: Some("198.51.100.7:40000".into()),
            nuid: Some("c6ef3124-b53a-4b13-a233-0088f79dcbcb".into()),
        }
    }

    fn one(p: &Processor, env: &Envelope) -> Result<Event, Failure> {
        let (mut events, mut failures) = (Vec::new(), Vec::new());
        p.process(env, 2, Lsn(9), &mut events, &mut failures);
        assert_eq!(events.len() + failures.len(), 1, "{events:?} {failures:?}");
        events.pop().ok_or_else(|| failures.pop().unwrap())
    }

    const BASE: &str = "e=pv&tv=js-4.10.1&p=web";

    #[test]
    fn a_page_view_gets_its_schema_timestamps_versions_and_storage_position() {
        let ev = one(&processor(|_| {}), &get(&format!("{BASE}&eid=0B5E4D3C-1A2B-4C3D-8E9F-0123456789AB&dtm=1700000000000&stm=1700000001000&aid=shop"))).unwrap();
        assert_eq!(ev.event.as_deref(), Some("page_view"));
        assert_eq!(ev.source.as_deref(), Some("snowplow"));
        assert_eq!(
            ev.event_id.unwrap().to_string(),
            "0b5e4d3c-1a2b-4c3d-8e9f-0123456789ab"
        );
        assert_eq!(
            ev.event_vendor.as_deref(),
            Some("com.snowplowanalytics.snowplow")
        );
        assert_eq!(ev.event_name.as_deref(), Some("page_view"));
        assert_eq!(ev.event_format.as_deref(), Some("jsonschema"));
        assert_eq!(ev.event_version.as_deref(), Some("1-0-0"));
        assert_eq!(ev.collector_tstamp, Some(1_700_000_100_000));
        assert_eq!(ev.dvce_created_tstamp, Some(1_700_000_000_000));
        assert_eq!(ev.dvce_sent_tstamp, Some(1_700_000_001_000));
        assert_eq!(ev.derived_tstamp, Some(1_700_000_099_000));
        assert_eq!(ev.v_collector.as_deref(), Some(COLLECTOR_VERSION));
        assert_eq!(ev.v_etl.as_deref(), Some(ETL_VERSION));
        assert_eq!(ev.v_tracker.as_deref(), Some("js-4.10.1"));
        assert_eq!(ev.app_id.as_deref(), Some("shop"));
        assert_eq!(
            (ev.wal_partition, ev.wal_lsn, ev.wal_index),
            (Some(2), Some(9), Some(0))
        );
    }

    #[test]
    fn derived_tstamp_prefers_true_time_then_corrects_skew_only_when_created_precedes_sent() {
        assert_eq!(
            derived_tstamp(Some(100), Some(10), Some(30), Some(7)),
            Some(7)
        );
        assert_eq!(
            derived_tstamp(Some(100), Some(10), Some(30), None),
            Some(80)
        );
        assert_eq!(
            derived_tstamp(Some(100), Some(30), Some(10), None),
            Some(100)
        );
        assert_eq!(derived_tstamp(Some(100), Some(10), None, None), Some(100));
    }

    #[test]
    fn an_event_without_eid_gets_a_v4_id_derived_from_its_position() {
        let a = derived_event_id(TEST_INSTANCE, 1, Lsn(5), 0);
        assert_eq!(a, derived_event_id(TEST_INSTANCE, 1, Lsn(5), 0));
        assert_ne!(a, derived_event_id(TEST_INSTANCE, 1, Lsn(5), 1));
        assert_ne!(a, derived_event_id(TEST_INSTANCE, 2, Lsn(5), 0));
        assert_ne!(a, derived_event_id(TEST_INSTANCE, 1, Lsn(6), 0));
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        let ev = one(&processor(|_| {}), &get(BASE)).unwrap();
        assert_eq!(
            ev.event_id,
            Some(derived_event_id(TEST_INSTANCE, 2, Lsn(9), 0))
        );
    }

    #[test]
    fn field_parse_errors_are_schema_violations_listing_every_problem() {
        let f = one(
            &processor(|_| {}),
            &get("e=pv&tv=js&p=desktop&eid=nope&dtm=abc&vid=x&se_va=NaN&cookie=yes&res=big"),
        )
        .unwrap_err();
        assert_eq!(f.category, FailureCategory::SchemaViolation);
        for needle in [
            "`p`", "`eid`", "`dtm`", "`vid`", "`se_va`", "`cookie`", "`res`",
        ] {
            assert!(
                f.messages.iter().any(|m| m.contains(needle)),
                "{needle}: {:?}",
                f.messages
            );
        }
        assert_eq!(f.event_index, Some(0));
        assert!(f.event_payload.unwrap().contains("\"eid\":\"nope\""));
        let f = one(&processor(|_| {}), &get("e=zz&tv=js&p=web")).unwrap_err();
        assert_eq!(f.category, FailureCategory::SchemaViolation);
        assert!(f.messages[0].contains("not a valid event type"));
        let f = one(
            &processor(|_| {}),
            &get(&format!("{BASE}&ttm=99999999999999999")),
        )
        .unwrap_err();
        assert_eq!(f.category, FailureCategory::SchemaViolation);
    }

    #[test]
    fn numeric_fields_accept_the_literal_null() {
        let ev = one(
            &processor(|_| {}),
            &get(&format!("{BASE}&vid=null&se_va=null&dtm=null")),
        )
        .unwrap();
        assert_eq!(
            (ev.domain_sessionidx, ev.se_value, ev.dvce_created_tstamp),
            (None, None, None)
        );
    }

    #[test]
    fn page_and_referrer_urls_are_split_into_parts_with_default_ports() {
        let ev = one(&processor(|_| {}), &get(&format!("{BASE}&url=https%3A%2F%2Fshop.example%2Fa%2Fb%3Fq%3D1%23top&refr=http%3A%2F%2Fsearch.example%3A8080%2Fs%3Fk%3Dv"))).unwrap();
        assert_eq!(
            ev.page_url.as_deref(),
            Some("https://shop.example/a/b?q=1#top")
        );
        assert_eq!(ev.page_urlscheme.as_deref(), Some("https"));
        assert_eq!(ev.page_urlhost.as_deref(), Some("shop.example"));
        assert_eq!(ev.page_urlport, Some(443));
        assert_eq!(ev.page_urlpath.as_deref(), Some("/a/b"));
        assert_eq!(ev.page_urlquery.as_deref(), Some("q=1"));
        assert_eq!(ev.page_urlfragment.as_deref(), Some("top"));
        assert_eq!(ev.refr_urlscheme.as_deref(), Some("http"));
        assert_eq!(ev.refr_urlhost.as_deref(), Some("search.example"));
        assert_eq!(ev.refr_urlport, Some(8080));
        assert_eq!(ev.refr_urlquery.as_deref(), Some("k=v"));
        let ev = one(&processor(|_| {}), &get(BASE)).unwrap();
        assert_eq!(
            ev.page_url.as_deref(),
            Some("https://ref.example/from"),
            "Referer is the fallback"
        );
        assert_eq!(ev.page_urlport, Some(443));
    }

    #[test]
    fn an_unparsable_page_url_is_an_enrichment_failure() {
        let f = one(
            &processor(|_| {}),
            &get(&format!("{BASE}&url=http%3A%2F%2F%5Bbad")),
        )
        .unwrap_err();
        assert_eq!(f.category, FailureCategory::EnrichmentFailure);
    }

    #[test]
    fn campaign_fields_and_click_ids_come_from_the_page_urls_query() {
        let url = "https://shop.example/?utm_source=news%20letter&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=top&fbclid=abc";
        let q = format!(
            "{BASE}&url={}",
            url.replace('%', "%25")
                .replace('&', "%26")
                .replace('?', "%3F")
                .replace('=', "%3D")
        );
        let ev = one(&processor(|_| {}), &get(&q)).unwrap();
        assert_eq!(ev.mkt_source.as_deref(), Some("news letter"));
        assert_eq!(ev.mkt_medium.as_deref(), Some("email"));
        assert_eq!(ev.mkt_campaign.as_deref(), Some("spring"));
        assert_eq!(ev.mkt_term.as_deref(), Some("shoes"));
        assert_eq!(ev.mkt_content.as_deref(), Some("top"));
        assert_eq!(ev.mkt_clickid.as_deref(), Some("abc"));
        assert_eq!(ev.mkt_network.as_deref(), Some("Facebook"));
        let ev = one(
            &processor(|_| {}),
            &get(&format!(
                "{BASE}&url=https%3A%2F%2Fa.example%2F%3Fgclid%3Dg1"
            )),
        )
        .unwrap();
        assert_eq!(
            (ev.mkt_clickid.as_deref(), ev.mkt_network.as_deref()),
            (Some("g1"), Some("Google"))
        );
    }

    #[test]
    fn user_ip_prefers_the_ip_param_then_trusted_forwarded_headers_then_the_peer() {
        let p = processor(|c| c.trusted_proxies = vec!["10.0.0.0/8".into()]);
        let mut env = get(BASE);
        env.headers
            .push(("x-forwarded-for".into(), "203.0.113.5, 10.1.1.1".into()));
        assert_eq!(
            one(&p, &env).unwrap().user_ipaddress.as_deref(),
            Some("198.51.100.7"),
            "untrusted peer: XFF ignored"
        );
        env.peer = Some("10.2.3.4:999".into());
        assert_eq!(
            one(&p, &env).unwrap().user_ipaddress.as_deref(),
            Some("203.0.113.5")
        );
        env.headers.retain(|(k, _)| k != "x-forwarded-for");
        env.headers.push((
            "forwarded".into(),
            "for=\"[2001:db8::9]:80\";proto=https".into(),
        ));
        assert_eq!(
            one(&p, &env).unwrap().user_ipaddress.as_deref(),
            Some("2001:db8::9")
        );
        env.query = Some(format!("{BASE}&ip=192.0.2.1,192.0.2.2"));
        assert_eq!(
            one(&p, &env).unwrap().user_ipaddress.as_deref(),
            Some("192.0.2.1")
        );
        let mut v6 = get(BASE);
        v6.peer = Some("[2001:db8::1]:5000".into());
        assert_eq!(
            one(&p, &v6).unwrap().user_ipaddress.as_deref(),
            Some("2001:db8::1")
        );
        v6.headers.push(("sp-anonymous".into(), "*".into()));
        assert_eq!(one(&p, &v6).unwrap().user_ipaddress, None);
    }

    #[test]
    fn ip_anonymisation_applies_the_configured_octets_and_segments() {
        let p = processor(|c| {
            c.anonymise_ip = AnonymiseIpConfig {
                octets: 2,
                segments: None,
            }
        });
        assert_eq!(
            one(&p, &get(BASE)).unwrap().user_ipaddress.as_deref(),
            Some("198.51.x.x")
        );
        let mut v6 = get(BASE);
        v6.peer = Some("[2001:db8::1]:5000".into());
        assert_eq!(
            one(&p, &v6).unwrap().user_ipaddress.as_deref(),
            Some("2001:db8:0:0:0:0:x:x")
        );
        let p = processor(|c| {
            c.anonymise_ip = AnonymiseIpConfig {
                octets: 1,
                segments: Some(4),
            }
        });
        assert_eq!(
            one(&p, &v6).unwrap().user_ipaddress.as_deref(),
            Some("2001:db8:0:0:x:x:x:x")
        );
    }

    #[test]
    fn network_userid_is_the_envelope_nuid_overridden_by_nuid_then_tnuid() {
        let p = processor(|_| {});
        assert_eq!(
            one(&p, &get(BASE)).unwrap().network_userid.as_deref(),
            Some("c6ef3124-b53a-4b13-a233-0088f79dcbcb")
        );
        assert_eq!(
            one(&p, &get(&format!("{BASE}&nuid=n1")))
                .unwrap()
                .network_userid
                .as_deref(),
            Some("n1")
        );
        assert_eq!(
            one(&p, &get(&format!("{BASE}&nuid=n1&tnuid=t1")))
                .unwrap()
                .network_userid
                .as_deref(),
            Some("t1")
        );
        let mut env = get(BASE);
        env.nuid = None;
        assert_eq!(one(&p, &env).unwrap().network_userid, None);
        env.nuid = Some("not-a-uuid".into());
        assert_eq!(
            one(&p, &env).unwrap_err().category,
            FailureCategory::CollectorPayloadFormatViolation
        );
    }

    #[test]
    fn the_user_agent_comes_from_ua_or_the_header_and_is_parsed() {
        let p = processor(|_| {});
        let ev = one(&p, &get(BASE)).unwrap();
        assert!(ev.useragent.as_deref().unwrap().contains("Firefox/120.0"));
        assert_eq!(ev.br_family.as_deref(), Some("Firefox"));
        assert_eq!(ev.os_family.as_deref(), Some("Linux"));
        assert_eq!(ev.dvce_type.as_deref(), Some("Computer"));
        let ev = one(
            &p,
            &get(&format!(
                "{BASE}&ua=Googlebot%2F2.1+(%2Bhttp%3A%2F%2Fwww.google.com%2Fbot.html)"
            )),
        )
        .unwrap();
        assert_eq!(ev.dvce_type.as_deref(), Some("Robot"));
        let off = processor(|c| c.user_agent.parse = false);
        assert_eq!(one(&off, &get(BASE)).unwrap().br_family, None);
    }

    /// Snowplow's fingerprint enrichment joins the sorted, kept parameters as
    /// `key U+001F value U+001F`: for `e=se`, `se_ac=buy` and an excluded `stm` that is 15
    /// bytes (the length its own specification checks with a hash of "the length"). The
    /// digests are of that text, computed with Python's `hashlib`, not with this crate.
    #[test]
    fn fingerprints_match_known_digests_of_snowplows_join() {
        fn params(pairs: &[(&'static str, &'static str)]) -> RawEvent<'static> {
            let mut p = RawEvent::new();
            for (k, v) in pairs {
                p.insert((*k).into(), (*v).into());
            }
            p
        }
        let exclude = vec!["stm".to_string(), "eid".to_string()];
        let event = params(&[("stm", "1000000000000"), ("se_ac", "buy"), ("e", "se")]);
        for (algorithm, known) in [
            (HashAlgorithm::Md5, "6829c2021516783f1ef03a9e9736ac77"),
            (
                HashAlgorithm::Sha1,
                "00b058442f1f3a552fa1550b99ce5b8810a0ea75",
            ),
            (
                HashAlgorithm::Sha256,
                "6698caf728ab1bf3ab9d1da032fc15608b78ac3368b398f0fb3f68969134a605",
            ),
            (
                HashAlgorithm::Sha384,
                "184727a9620c6120aaaf82d8ea2ca495fb6bd5fe82b0079e3df23cabb3af2210\
                 a90d400cae535868558e36ba505723cc",
            ),
            (
                HashAlgorithm::Sha512,
                "5a334ce50bbdb1902ed246e879a4dcff7996b34177e508b0980eb5948c9eb482\
                 e94567be2fa0d56fbc40320252e669245968f0cfd51aac7eb6e5994427c51926",
            ),
        ] {
            assert_eq!(
                fingerprint(&event, &exclude, algorithm),
                known,
                "{algorithm:?}"
            );
            let joined = "e\u{1f}se\u{1f}se_ac\u{1f}buy\u{1f}";
            assert_eq!(joined.len(), 15);
            assert_eq!(
                hash_hex(joined.as_bytes(), algorithm),
                known,
                "{algorithm:?}"
            );
        }
        // Order does not matter; excluded parameters do not either (a retry's stm and eid).
        let permuted = params(&[
            ("se_pr", "property"),
            ("e", "se"),
            ("se_ca", "category"),
            ("se_ac", "action"),
        ]);
        assert_eq!(
            fingerprint(&permuted, &exclude, HashAlgorithm::Md5),
            "d9da320fae80dbf250856b9c17bbd37f"
        );
        let retried = params(&[
            ("stm", "9999999999999"),
            ("eid", "123e4567-e89b-12d3-a456-426655440000"),
            ("e", "se"),
            ("se_ac", "buy"),
        ]);
        assert_eq!(
            fingerprint(&retried, &exclude, HashAlgorithm::Md5),
            "6829c2021516783f1ef03a9e9736ac77"
        );
        // The defaults exclude eid, nuid, stm and cv, as Snowplow's do.
        let mut with_defaults = retried.clone();
        with_defaults.insert("nuid".into(), "n".into());
        with_defaults.insert("cv".into(), "ssc-2.9.0".into());
        assert_eq!(
            fingerprint(
                &with_defaults,
                &FingerprintConfig::default().exclude,
                HashAlgorithm::Md5
            ),
            "6829c2021516783f1ef03a9e9736ac77"
        );
    }

    #[test]
    fn structured_transaction_item_and_page_ping_fields_are_filled() {
        let p = processor(|_| {});
        let ev = one(
            &p,
            &get("e=se&tv=py&p=pc&se_ca=shop&se_ac=add&se_la=sku1&se_pr=red&se_va=2.5"),
        )
        .unwrap();
        assert_eq!(
            (
                ev.event.as_deref(),
                ev.event_vendor.as_deref(),
                ev.event_name.as_deref()
            ),
            (Some("struct"), Some("com.google.analytics"), Some("event"))
        );
        assert_eq!(
            (
                ev.se_category.as_deref(),
                ev.se_action.as_deref(),
                ev.se_label.as_deref(),
                ev.se_property.as_deref(),
                ev.se_value
            ),
            (
                Some("shop"),
                Some("add"),
                Some("sku1"),
                Some("red"),
                Some(2.5)
            )
        );
        let ev = one(&p, &get("e=tr&tv=py&p=pc&tr_id=o1&tr_af=web&tr_tt=10.5&tr_tx=1.5&tr_sh=2&tr_ci=Paris&tr_st=IDF&tr_co=FR&tr_cu=EUR")).unwrap();
        assert_eq!(ev.event_name.as_deref(), Some("transaction"));
        assert_eq!(
            (
                ev.tr_orderid.as_deref(),
                ev.tr_total,
                ev.tr_tax,
                ev.tr_shipping,
                ev.tr_currency.as_deref()
            ),
            (Some("o1"), Some(10.5), Some(1.5), Some(2.0), Some("EUR"))
        );
        assert_eq!(
            (
                ev.tr_city.as_deref(),
                ev.tr_state.as_deref(),
                ev.tr_country.as_deref(),
                ev.tr_affiliation.as_deref()
            ),
            (Some("Paris"), Some("IDF"), Some("FR"), Some("web"))
        );
        let ev = one(&p, &get("e=ti&tv=py&p=pc&ti_id=o1&ti_sk=s1&ti_nm=Shoe&ti_ca=feet&ti_pr=5.25&ti_qu=2&ti_cu=EUR")).unwrap();
        assert_eq!(ev.event_name.as_deref(), Some("transaction_item"));
        assert_eq!(
            (
                ev.ti_sku.as_deref(),
                ev.ti_name.as_deref(),
                ev.ti_price,
                ev.ti_quantity
            ),
            (Some("s1"), Some("Shoe"), Some(5.25), Some(2))
        );
        let ev = one(&p, &get("e=pp&tv=js&p=web&pp_mix=0&pp_max=10&pp_miy=-5&pp_may=300&res=1920x1080&vp=800x600&ds=1000x3000&cookie=1&lang=en-GB&cd=24&cs=UTF-8&tz=Europe%2FLondon&vid=3&sid=s-1&duid=d-1&uid=u-1")).unwrap();
        assert_eq!(ev.event_name.as_deref(), Some("page_ping"));
        assert_eq!(
            (
                ev.pp_xoffset_min,
                ev.pp_xoffset_max,
                ev.pp_yoffset_min,
                ev.pp_yoffset_max
            ),
            (Some(0), Some(10), Some(-5), Some(300))
        );
        assert_eq!(
            (
                ev.dvce_screenwidth,
                ev.dvce_screenheight,
                ev.br_viewwidth,
                ev.br_viewheight,
                ev.doc_width,
                ev.doc_height
            ),
            (
                Some(1920),
                Some(1080),
                Some(800),
                Some(600),
                Some(1000),
                Some(3000)
            )
        );
        assert_eq!(
            (
                ev.br_cookies,
                ev.br_lang.as_deref(),
                ev.br_colordepth.as_deref(),
                ev.doc_charset.as_deref(),
                ev.os_timezone.as_deref()
            ),
            (
                Some(true),
                Some("en-GB"),
                Some("24"),
                Some("UTF-8"),
                Some("Europe/London")
            )
        );
        assert_eq!(
            (
                ev.domain_sessionidx,
                ev.domain_sessionid.as_deref(),
                ev.domain_userid.as_deref(),
                ev.user_id.as_deref()
            ),
            (Some(3), Some("s-1"), Some("d-1"), Some("u-1"))
        );
    }

    fn b64(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    const UE: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.acme/button_click/jsonschema/1-0-2","data":{"id":"b1"}}}"#;
    const CO: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1","data":[{"schema":"iglu:com.acme/user/jsonschema/1-0-0","data":{"tier":"gold"}}]}"#;

    #[test]
    fn a_self_describing_event_takes_its_schema_from_the_inner_event_and_is_kept_as_json() {
        let p = processor(|_| {});
        let ev = one(
            &p,
            &get(&format!(
                "e=ue&tv=js&p=web&ue_px={}&cx={}",
                b64(UE),
                b64(CO)
            )),
        )
        .unwrap();
        assert_eq!(ev.event.as_deref(), Some("unstruct"));
        assert_eq!(ev.event_vendor.as_deref(), Some("com.acme"));
        assert_eq!(ev.event_name.as_deref(), Some("button_click"));
        assert_eq!(ev.event_format.as_deref(), Some("jsonschema"));
        assert_eq!(ev.event_version.as_deref(), Some("1-0-2"));
        assert_eq!(ev.unstruct_event.as_deref(), Some(UE));
        assert_eq!(ev.contexts.as_deref(), Some(CO));
    }

    #[test]
    fn bad_base64_is_a_protocol_violation_and_bad_json_a_schema_violation() {
        let p = processor(|_| {});
        let f = one(&p, &get("e=ue&tv=js&p=web&ue_px=%%%%")).unwrap_err();
        assert_eq!(f.category, FailureCategory::TrackerProtocolViolation);
        let f = one(
            &p,
            &get(&format!("e=pv&tv=js&p=web&cx={}", b64("{not json"))),
        )
        .unwrap_err();
        assert_eq!(f.category, FailureCategory::SchemaViolation);
        let f = one(
            &p,
            &get(&format!(
                "e=pv&tv=js&p=web&co={}",
                r#"{"schema":"iglu:com.acme/x/jsonschema/1-0-0","data":[]}"#
            )),
        )
        .unwrap_err();
        assert_eq!(f.category, FailureCategory::SchemaViolation);
        let f = one(&p, &get(&format!("e=ue&tv=js&p=web&ue_pr={}", r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"nope","data":{}}}"#))).unwrap_err();
        assert_eq!(f.category, FailureCategory::SchemaViolation);
        let deep = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        let f = one(&p, &get(&format!("e=pv&tv=js&p=web&co={deep}"))).unwrap_err();
        assert_eq!(f.category, FailureCategory::SchemaViolation);
    }

    #[test]
    fn an_unstruct_event_without_its_event_and_a_legacy_ad_impression_are_enrichment_failures() {
        let p = processor(|_| {});
        assert_eq!(
            one(&p, &get("e=ue&tv=js&p=web")).unwrap_err().category,
            FailureCategory::EnrichmentFailure
        );
        assert_eq!(
            one(&p, &get("e=ad&tv=js&p=web")).unwrap_err().category,
            FailureCategory::EnrichmentFailure
        );
    }

    #[test]
    fn text_is_made_tsv_safe() {
        assert_eq!(tsv_safe("a\tb\nc\u{7}"), Some("a    bc".into()));
        assert_eq!(tsv_safe("\n"), None);
        assert_eq!(tsv_safe(""), None);
        let ev = one(
            &processor(|_| {}),
            &get(&format!("{BASE}&page=Hi%09there%0A&aid=")),
        )
        .unwrap();
        assert_eq!(ev.page_title.as_deref(), Some("Hi    there"));
        assert_eq!(ev.app_id, None);
    }

    #[test]
    fn tsv_safe_gives_what_the_char_by_char_rule_gives_for_every_character_up_to_u_0800() {
        let rule = |s: &str| {
            let out: String = s
                .chars()
                .flat_map(|c| match c {
                    '\t' => vec![' '; 4],
                    c if c.is_control() => vec![],
                    c => vec![c],
                })
                .collect();
            (!out.is_empty()).then_some(out)
        };
        for c in (0u32..0x800).filter_map(char::from_u32) {
            for s in [format!("{c}"), format!("a{c}b"), format!("\u{a3}{c}\u{85}")] {
                assert_eq!(tsv_safe(&s), (rule(&s)).map(Text::from), "{:?}", s);
            }
        }
    }

    #[test]
    fn known_parameters_pack_to_distinct_sorted_integers_and_each_finds_its_own_slot() {
        assert!(
            PACKED.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        for (i, key) in KNOWN.iter().enumerate() {
            assert_eq!(known_slot(key), i);
            assert_eq!(PACKED.binary_search(&short_key(key)), Ok(i));
        }
        let names = [
            "", "e", "e\0", "\0e", "ab", "ba", "abcdefg", "abcdefgh", "ti_nm", "ti_na",
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert!(
                    short_key(a) != short_key(b) || short_key(a) == u64::MAX,
                    "{a:?} {b:?}"
                );
            }
        }
        assert_eq!(short_key("abcdefgh"), u64::MAX);
        let mut params = RawEvent::new();
        params.insert("e".into(), "pv".into());
        params.insert("zz".into(), "not read".into());
        params.insert("url".into(), "https://a.example/".into());
        let known = Known::of(&params);
        assert_eq!(known.0[k!("e")], Some("pv"));
        assert_eq!(known.0[k!("url")], Some("https://a.example/"));
        assert_eq!(known.0.iter().flatten().count(), 2);
    }

    #[test]
    fn cv_overrides_the_collector_version() {
        let ev = one(
            &processor(|_| {}),
            &get(&format!("{BASE}&cv=ssc-3.4.0-kinesis")),
        )
        .unwrap();
        assert_eq!(ev.v_collector.as_deref(), Some("ssc-3.4.0-kinesis"));
    }

    #[test]
    fn unknown_segment_routes_and_oversized_requests_fail_as_a_whole() {
        let p = processor(|_| {});
        let mut env = get(BASE);
        env.route = "/v1/merge".into();
        let f = one(&p, &env).unwrap_err();
        assert_eq!(
            (f.category, f.event_index),
            (FailureCategory::AdapterFailure, None)
        );
        assert_eq!(f.messages, vec!["no adapter for /v1/merge".to_owned()]);
        let mut env = get(BASE);
        env.route = "/com.snowplowanalytics.snowplow/tp2".into();
        env.method = "POST".into();
        env.body = vec![b' '; (Config::default().collector.max_payload_bytes.bytes() + 1) as usize];
        assert_eq!(
            one(&p, &env).unwrap_err().category,
            FailureCategory::SizeViolation
        );
    }

    #[test]
    fn config_bounds_are_reported_with_their_keys() {
        let mut c = EnrichConfig::default();
        assert!(c.violations().is_empty());
        c.trusted_proxies.push("bogus".into());
        c.anonymise_ip = AnonymiseIpConfig {
            octets: 5,
            segments: Some(9),
        };
        c.user_agent.cache_entries = 2_000_000;
        c.campaign.medium.push(String::new());
        let keys: Vec<_> = c.violations().iter().map(|v| v.key).collect();
        assert_eq!(
            keys,
            [
                "enrich.trusted_proxies",
                "enrich.anonymise_ip.octets",
                "enrich.anonymise_ip.segments",
                "enrich.user_agent.cache_entries",
                "enrich.campaign.medium"
            ]
        );
        let mut config = Config::default();
        config.enrich.trusted_proxies = vec!["bogus".into()];
        assert_eq!(
            Processor::new(&config.enrich, config.process_limits(), TEST_INSTANCE)
                .unwrap_err()
                .code(),
            "trusted_proxy"
        );
    }

    #[test]
    fn the_config_section_round_trips_through_toml() {
        let c: EnrichConfig = toml::from_str("trusted_proxies = [\"10.0.0.0/8\"]\n[anonymise_ip]\noctets = 1\n[fingerprint]\nalgorithm = \"sha256\"\n").unwrap();
        assert_eq!(c.fingerprint.algorithm, HashAlgorithm::Sha256);
        assert_eq!(c.anonymise_ip.octets, 1);
        assert!(c.fingerprint.enabled);
        let back: EnrichConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(toml::from_str::<EnrichConfig>("nope = 1").is_err());
    }
}
