//! The inputs of the `process` bench, shared with `tests/process_digest.rs`, which checks that
//! what they produce has not changed (see [`OUTPUT_DIGEST`]).

use base64::Engine as _;
use sha2::Digest as _;
use sluice::config::Config;
use sluice::envelope::Envelope;
use sluice::event::{Event, Failure};
use sluice::instance::InstanceId;
use sluice::publish::process::Processor;
use sluice::sink::clickhouse::encode::{Encoder, TargetColumn};
use sluice::sink::clickhouse::migrate::created_columns;
use sluice::sink::clickhouse::version::Features;
use sluice_wal::Lsn;

pub const RECEIVED: i64 = 1_700_000_100_000;

pub const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

pub fn processor() -> Processor {
    Processor::new(
        &Config::default().enrich,
        Config::default().process_limits(),
        InstanceId::from_u64(0),
    )
    .expect("default config is valid")
}

/// One JS-tracker-like event (as JSON object text), varying with `i`.
pub fn js_event(i: usize) -> serde_json::Value {
    let entity = serde_json::json!({
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
        "data": [{
            "schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
            "data": {"id": format!("6c5c8f1e-2d3b-4a5f-9e7d-{:012x}", i / 10)},
        }],
    });
    let cx = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(entity.to_string());
    let dtm = (RECEIVED - 2_000 + i as i64).to_string();
    let mut ev = serde_json::json!({
        "eid": format!("0b5e4d3c-1a2b-4c3d-8e9f-{:012x}", i),
        "tv": "js-3.17.0",
        "tna": "sp",
        "aid": "shop",
        "p": "web",
        "cookie": "1",
        "cs": "UTF-8",
        "lang": "en-GB",
        "res": "1920x1080",
        "cd": "24",
        "tz": "Europe/London",
        "dtm": dtm,
        "stm": (RECEIVED - 50).to_string(),
        "vp": "1280x720",
        "ds": "1263x3512",
        "vid": "3",
        "sid": "a3b6c1e2-7d4f-4e1a-9b2c-5d6e7f8a9b0c",
        "duid": "f3d2c1b0-a9e8-4d7c-8b6a-5f4e3d2c1b0a",
        "uid": format!("user-{}", i % 97),
        "url": format!("https://shop.example/products/{i}?utm_source=news&utm_medium=email&utm_campaign=winter"),
        "page": format!("Product {i} – Shop"),
        "refr": "https://www.google.com/search?q=shop",
        "cx": cx,
    });
    let obj = ev.as_object_mut().expect("an object");
    match i % 3 {
        0 => {
            obj.insert("e".into(), "pv".into());
        }
        1 => {
            obj.insert("e".into(), "pp".into());
            for (k, v) in [
                ("pp_mix", "0"),
                ("pp_max", "120"),
                ("pp_miy", "40"),
                ("pp_may", "900"),
            ] {
                obj.insert(k.into(), v.into());
            }
        }
        _ => {
            obj.insert("e".into(), "se".into());
            for (k, v) in [
                ("se_ca", "checkout"),
                ("se_ac", "add-to-basket"),
                ("se_la", "sku-1234"),
                ("se_pr", "colour=blue"),
                ("se_va", "19.99"),
            ] {
                obj.insert(k.into(), v.into());
            }
        }
    }
    ev
}

pub fn tp2_envelope(n: usize) -> Envelope {
    let data: Vec<serde_json::Value> = (0..n).map(js_event).collect();
    let body = serde_json::json!({
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": data,
    });
    Envelope {
        received_at_ms: RECEIVED,
        route: "/com.snowplowanalytics.snowplow/tp2".into(),
        method: "POST".into(),
        path: "/com.snowplowanalytics.snowplow/tp2".into(),
        query: None,
        headers: vec![
            (
                "content-type".into(),
                "application/json; charset=UTF-8".into(),
            ),
            ("user-agent".into(), UA.into()),
            ("referer".into(), "https://shop.example/products/1".into()),
            ("origin".into(), "https://shop.example".into()),
        ],
        body: body.to_string().into_bytes(),
        peer: Some("198.51.100.7:40000".into()),
        nuid: Some("c6ef3124-b53a-4b13-a233-0088f79dcbcb".into()),
    }
}

pub fn segment_envelope(n: usize) -> Envelope {
    let batch: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "type": "track",
                "event": "Order Completed",
                "userId": format!("user-{}", i % 97),
                "anonymousId": "a3b6c1e2-7d4f-4e1a-9b2c-5d6e7f8a9b0c",
                "messageId": format!("0b5e4d3c-1a2b-4c3d-8e9f-{:012x}", i),
                "timestamp": "2023-11-14T22:13:20.000Z",
                "properties": {"order_id": format!("o-{i}"), "total": 30.5, "currency": "EUR",
                               "products": [{"sku": "sku-1234", "price": 19.99, "quantity": 1}]},
                "context": {
                    "ip": "203.0.113.9",
                    "userAgent": UA,
                    "library": {"name": "analytics.js", "version": "4.1.0"},
                    "campaign": {"source": "news", "medium": "email", "name": "winter"},
                    "page": {"url": "https://shop.example/cart?utm_medium=email",
                             "title": "Cart", "referrer": "https://www.google.com/"},
                    "locale": "en-GB",
                },
            })
        })
        .collect();
    let body = serde_json::json!({
        "writeKey": "write-key",
        "sentAt": "2023-11-14T22:13:22.000Z",
        "batch": batch,
    });
    Envelope {
        received_at_ms: RECEIVED,
        route: "/v1/batch".into(),
        method: "POST".into(),
        path: "/v1/batch".into(),
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        peer: Some("198.51.100.7:40000".into()),
        nuid: None,
    }
}

/// The columns `sluice db init` creates on ClickHouse 18.16.
pub fn columns_18_16() -> Vec<TargetColumn> {
    created_columns(Features {
        low_cardinality: true,
        datetime64: false,
        non_replicated_dedup_window: false,
        insert_deduplication_token: false,
    })
}

pub fn run(p: &Processor, env: &Envelope) -> (Vec<Event>, Vec<Failure>) {
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    p.process(env, 1, Lsn(42), &mut events, &mut failures);
    (events, failures)
}

/// What [`output_digest`] gives today. A change that alters it changes what sluice stores for
/// the bench inputs: deliberate changes update it (and say so), output-neutral ones must not.
pub const OUTPUT_DIGEST: &str = "e5a381c01897b7f96424f100efd599e46e757d9fa23a94b632ba559e2b97649f";

/// A SHA-256 over everything the bench inputs produce: the RowBinary bytes of the events of
/// `tp2_envelope(100)` and `segment_envelope(20)` for the 18.16 table, and their failures.
pub fn output_digest() -> String {
    let p = processor();
    let encoder = Encoder::new(columns_18_16());
    let mut h = sha2::Sha256::new();
    for env in [tp2_envelope(100), segment_envelope(20)] {
        let (events, failures) = run(&p, &env);
        let encoded = encoder.encode(&events);
        h.update(&encoded.data);
        h.update(format!("{:?}{failures:?}", encoded.rejected));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
