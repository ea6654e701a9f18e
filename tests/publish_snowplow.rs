//! Realistic Snowplow requests, as the official trackers send them, through
//! `Processor::process`: field values of the rows, and the category of every kind of bad input.

use base64::Engine as _;
use sluice::config::Config;
use sluice::envelope::Envelope;
use sluice::event::{Event, Failure, FailureCategory};
use sluice::publish::process::Processor;
use sluice_wal::Lsn;

const RECEIVED: i64 = 1_720_000_000_500;
const NUID: &str = "8f7cd1e5-4c1e-4f4a-9b5e-2a1b3c4d5e6f";

fn processor() -> Processor {
    Processor::new(
        &Config::default().enrich,
        Config::default().process_limits(),
        sluice::instance::InstanceId::from_u64(0),
    )
    .expect("default config builds a processor")
}

fn run(env: &Envelope) -> (Vec<Event>, Vec<Failure>) {
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    processor().process(env, 1, Lsn(42), &mut events, &mut failures);
    (events, failures)
}

fn envelope(
    route: &str,
    method: &str,
    query: Option<String>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Envelope {
    Envelope {
        received_at_ms: RECEIVED,
        route: route.into(),
        method: method.into(),
        path: route.into(),
        query,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
        peer: Some("192.0.2.10:51234".into()),
        nuid: Some(NUID.into()),
    }
}

fn enc(s: &str) -> String {
    // What browsers do to query values (enough for these fixtures).
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const JS_UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const WEB_PAGE: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{"id":"3e2b1f0a-1111-4222-8333-944445555666"}}]}"#;

#[test]
fn the_js_trackers_get_page_view_lands_with_its_fields() {
    let cx = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(WEB_PAGE);
    let url = "https://shop.example/products/shoes?utm_source=newsletter&utm_medium=email&utm_campaign=summer&gclid=Cj0KCQ";
    let q = [
        ("stm", "1720000000400".to_string()),
        ("e", "pv".into()),
        ("url", url.into()),
        ("page", "Shoes – Shop".into()),
        ("refr", "https://www.google.com/".into()),
        ("tv", "js-4.10.1".into()),
        ("tna", "sp1".into()),
        ("aid", "shop".into()),
        ("p", "web".into()),
        ("cookie", "1".into()),
        ("cs", "UTF-8".into()),
        ("lang", "en-US".into()),
        ("res", "1920x1080".into()),
        ("cd", "24".into()),
        ("tz", "Europe/Berlin".into()),
        ("dtm", "1720000000000".into()),
        ("vp", "1280x720".into()),
        ("ds", "1265x3000".into()),
        ("vid", "2".into()),
        ("sid", "a3c1e7f0-5b2d-4e8f-9a6b-7c8d9e0f1a2b".into()),
        ("duid", "d1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d".into()),
        ("cx", cx),
        ("eid", "F47AC10B-58CC-4372-A567-0E02B2C3D479".into()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", enc(v)))
    .collect::<Vec<_>>()
    .join("&");
    let env = envelope(
        "/i",
        "GET",
        Some(q),
        &[("user-agent", JS_UA), ("referer", "https://shop.example/")],
        b"",
    );
    let (events, failures) = run(&env);
    assert!(failures.is_empty(), "{failures:?}");
    let ev = &events[0];
    assert_eq!(
        ev.event_id.unwrap().to_string(),
        "f47ac10b-58cc-4372-a567-0e02b2c3d479"
    );
    assert_eq!(ev.event.as_deref(), Some("page_view"));
    assert_eq!(ev.event_name.as_deref(), Some("page_view"));
    assert_eq!(ev.platform.as_deref(), Some("web"));
    assert_eq!(ev.app_id.as_deref(), Some("shop"));
    assert_eq!(ev.name_tracker.as_deref(), Some("sp1"));
    assert_eq!(ev.page_title.as_deref(), Some("Shoes – Shop"));
    assert_eq!(ev.page_url.as_deref(), Some(url));
    assert_eq!(ev.page_urlhost.as_deref(), Some("shop.example"));
    assert_eq!(ev.page_urlpath.as_deref(), Some("/products/shoes"));
    assert_eq!(ev.page_urlport, Some(443));
    assert_eq!(ev.refr_urlhost.as_deref(), Some("www.google.com"));
    assert_eq!(ev.mkt_source.as_deref(), Some("newsletter"));
    assert_eq!(ev.mkt_medium.as_deref(), Some("email"));
    assert_eq!(ev.mkt_campaign.as_deref(), Some("summer"));
    assert_eq!(ev.mkt_clickid.as_deref(), Some("Cj0KCQ"));
    assert_eq!(ev.mkt_network.as_deref(), Some("Google"));
    assert_eq!(ev.contexts.as_deref(), Some(WEB_PAGE));
    assert_eq!(ev.derived_tstamp, Some(RECEIVED - 400));
    assert_eq!(
        (ev.dvce_screenwidth, ev.dvce_screenheight),
        (Some(1920), Some(1080))
    );
    assert_eq!((ev.br_viewwidth, ev.br_viewheight), (Some(1280), Some(720)));
    assert_eq!(ev.domain_sessionidx, Some(2));
    assert_eq!(ev.network_userid.as_deref(), Some(NUID));
    assert_eq!(ev.user_ipaddress.as_deref(), Some("192.0.2.10"));
    assert_eq!(ev.useragent.as_deref(), Some(JS_UA));
    assert_eq!(ev.br_family.as_deref(), Some("Chrome"));
    assert_eq!(ev.os_family.as_deref(), Some("Mac OS X"));
    assert_eq!(ev.dvce_type.as_deref(), Some("Computer"));
    assert_eq!(ev.event_fingerprint.as_ref().map(|f| f.len()), Some(32));
    assert_eq!(
        (ev.wal_partition, ev.wal_lsn, ev.wal_index),
        (Some(1), Some(42), Some(0))
    );
}

fn py_b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(s)
}

/// A Python tracker 1.1.0 POST batch: page view, page ping, structured event, screen view,
/// an ecommerce transaction and its two items.
fn python_batch() -> Vec<u8> {
    let contexts = r#"{"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", "data": [{"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"tier": "gold"}}]}"#;
    let screen = r#"{"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0", "data": {"schema": "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0", "data": {"name": "Home", "id": "5e1b1c4e-3a5f-4b7e-9e8a-1f2d3c4b5a69"}}}"#;
    let common = |e: &str, eid: &str| serde_json::json!({"e": e, "eid": eid, "dtm": "1720000000100", "stm": "1720000000000", "tv": "py-1.1.0", "p": "pc", "aid": "backend", "res": "1024x768", "uid": "user-7", "cx": py_b64(contexts)});
    let mut pv = common("pv", "2f8e6d3a-0c1b-4a9e-8d7c-6b5a4f3e2d10");
    pv["url"] = "http://app.example:8000/home".into();
    pv["page"] = "Home".into();
    let mut pp = common("pp", "2f8e6d3a-0c1b-4a9e-8d7c-6b5a4f3e2d11");
    pp["url"] = "http://app.example:8000/home".into();
    for (k, v) in [
        ("pp_mix", "0"),
        ("pp_max", "100"),
        ("pp_miy", "20"),
        ("pp_may", "640"),
    ] {
        pp[k] = v.into();
    }
    let mut se = common("se", "2f8e6d3a-0c1b-4a9e-8d7c-6b5a4f3e2d12");
    for (k, v) in [
        ("se_ca", "shop"),
        ("se_ac", "add-to-basket"),
        ("se_la", "red shoes"),
        ("se_pr", "size 42"),
        ("se_va", "2.0"),
    ] {
        se[k] = v.into();
    }
    let mut sv = common("ue", "2f8e6d3a-0c1b-4a9e-8d7c-6b5a4f3e2d13");
    sv["ue_px"] = py_b64(screen).into();
    sv["ttm"] = "1719999999000".into();
    let mut tr = common("tr", "2f8e6d3a-0c1b-4a9e-8d7c-6b5a4f3e2d14");
    for (k, v) in [
        ("tr_id", "order-1"),
        ("tr_tt", "55.5"),
        ("tr_af", "web"),
        ("tr_tx", "5.5"),
        ("tr_sh", "3"),
        ("tr_ci", "London"),
        ("tr_st", "Greater London"),
        ("tr_co", "UK"),
        ("tr_cu", "GBP"),
    ] {
        tr[k] = v.into();
    }
    let mut items = Vec::new();
    for (i, (sku, price, qty)) in [("sku-1", "20.0", "2"), ("sku-2", "7.5", "1")]
        .iter()
        .enumerate()
    {
        let mut ti = common("ti", &format!("2f8e6d3a-0c1b-4a9e-8d7c-6b5a4f3e2d2{i}"));
        for (k, v) in [
            ("ti_id", "order-1"),
            ("ti_sk", sku),
            ("ti_nm", "Shoe"),
            ("ti_ca", "shoes"),
            ("ti_pr", price),
            ("ti_qu", qty),
            ("ti_cu", "GBP"),
        ] {
            ti[k] = (*v).into();
        }
        items.push(ti);
    }
    let mut data = vec![pv, pp, se, sv, tr];
    data.extend(items);
    serde_json::to_vec(&serde_json::json!({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": data})).unwrap()
}

const PY_HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/json; charset=utf-8"),
    ("user-agent", "python-requests/2.32.3"),
];
const TP2: &str = "/com.snowplowanalytics.snowplow/tp2";

#[test]
fn the_python_trackers_post_batch_becomes_one_row_per_event() {
    let env = envelope(TP2, "POST", None, PY_HEADERS, &python_batch());
    let (events, failures) = run(&env);
    assert!(failures.is_empty(), "{failures:?}");
    let names: Vec<_> = events
        .iter()
        .map(|e| e.event_name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "page_view",
            "page_ping",
            "event",
            "screen_view",
            "transaction",
            "transaction_item",
            "transaction_item"
        ]
    );
    let indices: Vec<_> = events.iter().map(|e| e.wal_index.unwrap()).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4, 5, 6]);
    for ev in &events {
        assert_eq!(ev.platform.as_deref(), Some("pc"));
        assert_eq!(ev.v_tracker.as_deref(), Some("py-1.1.0"));
        assert_eq!(ev.user_id.as_deref(), Some("user-7"));
        assert!(ev.contexts.as_deref().unwrap().contains("com.acme/user"));
        assert_eq!(ev.dvce_created_tstamp, Some(1_720_000_000_100));
        if ev.true_tstamp.is_none() {
            assert_eq!(
                ev.derived_tstamp,
                Some(RECEIVED),
                "created after sent: no skew correction"
            );
        }
    }
    assert_eq!(events[0].page_urlport, Some(8000));
    assert_eq!(events[0].page_urlscheme.as_deref(), Some("http"));
    assert_eq!(
        (events[1].pp_xoffset_max, events[1].pp_yoffset_max),
        (Some(100), Some(640))
    );
    assert_eq!(events[2].se_value, Some(2.0));
    assert_eq!(events[2].se_label.as_deref(), Some("red shoes"));
    let sv = &events[3];
    assert_eq!(sv.event.as_deref(), Some("unstruct"));
    assert_eq!(
        sv.event_vendor.as_deref(),
        Some("com.snowplowanalytics.mobile")
    );
    assert!(sv
        .unstruct_event
        .as_deref()
        .unwrap()
        .contains("\"name\": \"Home\""));
    assert_eq!(sv.true_tstamp, Some(1_719_999_999_000));
    assert_eq!(sv.derived_tstamp, Some(1_719_999_999_000));
    assert_eq!(
        (events[4].tr_total, events[4].tr_currency.as_deref()),
        (Some(55.5), Some("GBP"))
    );
    assert_eq!(
        (
            events[5].ti_sku.as_deref(),
            events[5].ti_price,
            events[5].ti_quantity
        ),
        (Some("sku-1"), Some(20.0), Some(2))
    );
    assert_eq!(
        (events[6].ti_sku.as_deref(), events[6].ti_orderid.as_deref()),
        (Some("sku-2"), Some("order-1"))
    );
}

#[test]
fn processing_the_same_record_twice_gives_identical_rows() {
    let mut body: serde_json::Value = serde_json::from_slice(&python_batch()).unwrap();
    for item in body["data"].as_array_mut().unwrap() {
        item.as_object_mut().unwrap().remove("eid");
    }
    let env = envelope(
        TP2,
        "POST",
        None,
        PY_HEADERS,
        &serde_json::to_vec(&body).unwrap(),
    );
    let (a, _) = run(&env);
    let (b, _) = run(&env);
    assert_eq!(a, b);
    assert_eq!(a.len(), 7);
    let mut ids: Vec<_> = a.iter().map(|e| e.event_id.unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 7, "every generated id differs");
}

#[test]
fn a_tp1_get_with_a_python_tnuid_lands() {
    let q =
        "e=se&se_ca=c&se_ac=a&tv=py-1.1.0&p=srv&tnuid=third-party-id&ip=203.0.113.4&ua=curl%2F8.0"
            .to_string();
    let (events, failures) = run(&envelope(
        "/com.snowplowanalytics.snowplow/tp1",
        "GET",
        Some(q),
        &[],
        b"",
    ));
    assert!(failures.is_empty(), "{failures:?}");
    let ev = &events[0];
    assert_eq!(ev.network_userid.as_deref(), Some("third-party-id"));
    assert_eq!(ev.user_ipaddress.as_deref(), Some("203.0.113.4"));
    assert_eq!(ev.useragent.as_deref(), Some("curl/8.0"));
    assert_eq!(ev.platform.as_deref(), Some("srv"));
}

fn single_failure(env: &Envelope) -> Failure {
    let (events, mut failures) = run(env);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(failures.len(), 1, "{failures:?}");
    failures.pop().unwrap()
}

#[test]
fn every_kind_of_bad_input_gets_its_category() {
    let body = |data: &str| {
        format!(r#"{{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{data}]}}"#).into_bytes()
    };
    let ok_event = r#"{"e":"pv","tv":"js-4","p":"web"}"#;
    let cases: Vec<(&str, Envelope, FailureCategory)> = vec![
        (
            "malformed base64",
            envelope(
                "/i",
                "GET",
                Some("e=ue&tv=js&p=web&ue_px=***".into()),
                &[],
                b"",
            ),
            FailureCategory::TrackerProtocolViolation,
        ),
        (
            "invalid JSON body",
            envelope(TP2, "POST", None, PY_HEADERS, b"{\"schema\":"),
            FailureCategory::TrackerProtocolViolation,
        ),
        (
            "invalid JSON in ue_pr",
            envelope(
                "/i",
                "GET",
                Some("e=ue&tv=js&p=web&ue_pr=%7Bnope".into()),
                &[],
                b"",
            ),
            FailureCategory::SchemaViolation,
        ),
        (
            "wrong content type",
            envelope(
                TP2,
                "POST",
                None,
                &[("content-type", "text/plain")],
                &body(ok_event),
            ),
            FailureCategory::TrackerProtocolViolation,
        ),
        (
            "non-string value",
            envelope(
                TP2,
                "POST",
                None,
                PY_HEADERS,
                &body(r#"{"e":"pv","tv":"js","p":"web","vid":1}"#),
            ),
            FailureCategory::TrackerProtocolViolation,
        ),
        (
            "missing required field",
            envelope(
                TP2,
                "POST",
                None,
                PY_HEADERS,
                &body(r#"{"e":"pv","p":"web"}"#),
            ),
            FailureCategory::TrackerProtocolViolation,
        ),
        (
            "unknown event type",
            envelope(
                TP2,
                "POST",
                None,
                PY_HEADERS,
                &body(r#"{"e":"xx","tv":"js","p":"web"}"#),
            ),
            FailureCategory::SchemaViolation,
        ),
        (
            "oversized body",
            envelope(TP2, "POST", None, PY_HEADERS, &{
                let mut b = body(ok_event);
                b.resize(2 << 20, b' ');
                b
            }),
            FailureCategory::SizeViolation,
        ),
        (
            "bad nuid",
            {
                let mut e = envelope("/i", "GET", Some("e=pv&tv=js&p=web".into()), &[], b"");
                e.nuid = Some("zzz".into());
                e
            },
            FailureCategory::CollectorPayloadFormatViolation,
        ),
        (
            "unknown vendor",
            envelope("/com.acme/v1", "POST", None, PY_HEADERS, b"{}"),
            FailureCategory::AdapterFailure,
        ),
        (
            "unknown Segment route",
            envelope("/v1/merge", "POST", None, PY_HEADERS, b"{}"),
            FailureCategory::AdapterFailure,
        ),
        (
            "unparsable page url",
            envelope(
                "/i",
                "GET",
                Some("e=pv&tv=js&p=web&url=http%3A%2F%2F%5B%3A%3A1".into()),
                &[],
                b"",
            ),
            FailureCategory::EnrichmentFailure,
        ),
    ];
    for (what, env, category) in cases {
        let f = single_failure(&env);
        assert_eq!(f.category, category, "{what}: {f:?}");
        assert!(
            !f.messages.is_empty() && f.messages.iter().all(|m| !m.is_empty()),
            "{what}"
        );
    }
}

#[test]
fn in_a_post_batch_bad_events_fail_alone_with_their_index_and_params() {
    let body =
        br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[
        {"e":"pv","tv":"js","p":"web","eid":"2f8e6d3a-0c1b-4a9e-8d7c-6b5a4f3e2d10"},
        {"e":"pv","tv":"js","p":"web","eid":"not-a-uuid"},
        {"e":"pv","tv":"js","p":"web","dtm":"yesterday"},
        {"e":"pp","tv":"js","p":"web"}]}"#;
    let (events, failures) = run(&envelope(
        TP2,
        "POST",
        Some("aid=from-query".into()),
        PY_HEADERS,
        body,
    ));
    assert_eq!(
        events
            .iter()
            .map(|e| e.wal_index.unwrap())
            .collect::<Vec<_>>(),
        [0, 3]
    );
    assert!(events
        .iter()
        .all(|e| e.app_id.as_deref() == Some("from-query")));
    assert_eq!(failures.len(), 2);
    assert_eq!(
        (failures[0].category, failures[0].event_index),
        (FailureCategory::SchemaViolation, Some(1))
    );
    let payload: serde_json::Value =
        serde_json::from_str(failures[0].event_payload.as_deref().unwrap()).unwrap();
    assert_eq!(payload["eid"], "not-a-uuid");
    assert_eq!(payload["aid"], "from-query");
    assert_eq!(failures[1].event_index, Some(2));
    assert!(failures[1].messages[0].contains("`dtm`"));
}

#[test]
fn arbitrary_bytes_never_panic_the_processor() {
    let p = processor();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 8] = [
        b"{",
        b"}",
        b"\"data\":[",
        b"\"e\":\"pv\"",
        b",",
        b"]",
        b"\xff",
        b"%",
    ];
    for _ in 0..2_000 {
        let mut body = Vec::new();
        for _ in 0..(next() % 12) {
            body.extend_from_slice(pieces[(next() % 8) as usize]);
        }
        let q: String = (0..(next() % 20))
            .map(|_| b"e=pv&%+x=tv\xff"[(next() % 12) as usize] as char)
            .collect();
        for route in [TP2, "/i", "/r/tp2", "/x/y"] {
            let env = envelope(route, "POST", Some(q.clone()), PY_HEADERS, &body);
            let (mut e, mut f) = (Vec::new(), Vec::new());
            p.process(&env, 0, Lsn(1), &mut e, &mut f);
            assert!(
                !e.is_empty() || !f.is_empty(),
                "every request yields rows or failures"
            );
        }
    }
}
