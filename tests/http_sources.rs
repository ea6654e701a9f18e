//! The JSON sources over a real listener: Segment/RudderStack write keys (Basic auth, body,
//! query), pycolytics API keys and shapes, `/collect`, gzip bodies and gzip bombs, size limits,
//! rate limits (429 + `Retry-After`, shared across partitions, `X-Forwarded-For` only from
//! trusted proxies), optional keys on the Snowplow routes, and the rejection metric.

mod http_support;

use std::io::Write as _;
use std::time::Duration;

use http_support::{fetch, metrics_text, start, stored, test_config, Answer, IO_BOUND};
use reqwest::{Client, Method, StatusCode};
use sluice::config::{ByteSize, Config};
use sluice::envelope::Envelope;

const TP2: &str = "/com.snowplowanalytics.snowplow/tp2";

fn client() -> Client {
    Client::builder().timeout(IO_BOUND).build().unwrap()
}

/// POSTs `body` as JSON to `base` + `path`.
async fn post(http: &Client, base: &str, path: &str, body: impl Into<Vec<u8>>) -> Answer {
    fetch(
        http.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.into()),
    )
    .await
}

fn envelopes(config: &Config) -> Vec<Envelope> {
    stored(config).into_iter().map(|(_, e)| e).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn batch(n: usize, write_key: Option<&str>) -> String {
    let items: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({"type": "track", "event": "Clicked", "userId": format!("u{i}"),
                "messageId": format!("m{i}")})
        })
        .collect();
    let mut v = serde_json::json!({"batch": items, "sentAt": "2026-11-22T08:00:00.000Z"});
    if let Some(k) = write_key {
        v["writeKey"] = k.into();
    }
    v.to_string()
}

fn py_event(api_key: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({"event_type": "level_up", "application": "game",
        "version": "1.2", "platform": "linux", "user_id": "u1", "session_id": "s1",
        "value": {"level": 3}});
    if let Some(k) = api_key {
        v["api_key"] = k.into();
    }
    v
}

/// `Authorization: Basic base64(key:)`.
fn basic(key: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_write_keys_are_taken_from_basic_auth_the_body_or_the_query() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.segment.write_keys = vec!["wk1".into(), "wk2".into()];
    let (srv, base) = start(&config).await;
    let http = client();
    let track = r#"{"type":"track","event":"E","userId":"u"}"#;

    // Basic auth: right, wrong, missing.
    let ok = fetch(
        http.post(format!("{base}/v1/track"))
            .header("authorization", basic("wk2"))
            .body(track),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, br#"{"success":true}"#);
    let wrong = fetch(
        http.post(format!("{base}/v1/track"))
            .header("authorization", basic("nope"))
            .body(track),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["code"], "unauthorized");
    assert!(wrong.json()["message"]
        .as_str()
        .unwrap()
        .contains("writeKey"));
    let missing = post(&http, &base, "/v1/track", track).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);

    // In the body (a batch, as analytics-python 2.3.4 sends it).
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(2, Some("wk1")))
            .await
            .status,
        StatusCode::OK
    );
    let wrong = post(&http, &base, "/v1/batch", batch(2, Some("wk3"))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(2, None)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // In the query string.
    assert_eq!(
        post(
            &http,
            &base,
            "/v1/identify?writeKey=wk1",
            r#"{"userId":"u"}"#
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        post(
            &http,
            &base,
            "/v1/identify?writeKey=bad",
            r#"{"userId":"u"}"#
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // A wrong Basic key is not rescued by a right key elsewhere: the first place present wins.
    let mixed = fetch(
        http.post(format!("{base}/v1/t?writeKey=wk1"))
            .header("authorization", basic("nope"))
            .body(track),
    )
    .await;
    assert_eq!(mixed.status, StatusCode::UNAUTHORIZED);

    srv.shutdown().await.unwrap();
    let routes: Vec<String> = envelopes(&config).into_iter().map(|e| e.route).collect();
    let mut sorted = routes.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["/v1/batch", "/v1/identify", "/v1/track"],
        "only accepted requests are stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_every_route_is_open_and_short_aliases_store_their_own_template() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let http = client();
    for path in ["/v1/t", "/v1/p", "/v1/i", "/v1/g", "/v1/a", "/v1/s"] {
        // analytics.js sends JSON as text/plain.
        let a = fetch(
            http.post(format!("{base}{path}"))
                .header("content-type", "text/plain")
                .header("origin", "https://shop.example")
                .body(r#"{"userId":"u","writeKey":"anything"}"#),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(
            a.header("access-control-allow-origin"),
            Some("https://shop.example")
        );
    }
    assert_eq!(
        post(&http, &base, "/v1/b", batch(3, None)).await.status,
        StatusCode::OK
    );
    let py = post(&http, &base, "/v1.0/event", py_event(None).to_string()).await;
    assert_eq!(py.status, StatusCode::NO_CONTENT);
    assert_eq!(
        post(&http, &base, "/collect/orders", r#"{"id":1}"#)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    // A preflight from analytics.js (Basic auth on batches) may send Authorization.
    let pre = fetch(
        http.request(Method::OPTIONS, format!("{base}/v1/b"))
            .header("origin", "https://shop.example")
            .header("access-control-request-headers", "authorization"),
    )
    .await;
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    srv.shutdown().await.unwrap();

    let mut routes: Vec<String> = envelopes(&config).into_iter().map(|e| e.route).collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "/collect/{stream}",
            "/v1.0/event",
            "/v1/a",
            "/v1/b",
            "/v1/g",
            "/v1/i",
            "/v1/p",
            "/v1/s",
            "/v1/t"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pycolytics_needs_a_valid_key_in_every_event_and_a_missing_key_never_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.pycolytics.api_keys = vec!["pk".into()];
    let (srv, base) = start(&config).await;
    let http = client();

    let one = |k| py_event(k).to_string();
    assert_eq!(
        post(&http, &base, "/v1.0/event", one(Some("pk")))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    for body in [one(None), one(Some("wrong")), one(Some(""))] {
        let a = post(&http, &base, "/v1.0/event", body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.body, br#"{"detail":"Invalid or missing API Key"}"#);
    }
    let all_good = serde_json::json!([py_event(Some("pk")), py_event(Some("pk"))]).to_string();
    assert_eq!(
        post(&http, &base, "/v1.0/events", all_good).await.status,
        StatusCode::NO_CONTENT
    );
    let one_missing = serde_json::json!([py_event(Some("pk")), py_event(None)]).to_string();
    assert_eq!(
        post(&http, &base, "/v1.0/events", one_missing).await.status,
        StatusCode::UNAUTHORIZED
    );
    // An empty batch is 204 (pycolytics answers 500) and stores nothing.
    assert_eq!(
        post(&http, &base, "/v1.0/events", "[]").await.status,
        StatusCode::NO_CONTENT
    );
    srv.shutdown().await.unwrap();
    let routes: Vec<String> = envelopes(&config).into_iter().map(|e| e.route).collect();
    assert_eq!(routes.len(), 2, "{routes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pycolytics_bodies_of_the_wrong_shape_are_422_with_a_message_and_bad_json_400() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let http = client();

    let mut no_platform = py_event(None);
    no_platform.as_object_mut().unwrap().remove("platform");
    let mut list_value = py_event(None);
    list_value["value"] = serde_json::json!([1, 2]);
    let mut null_value = py_event(None);
    null_value["value"] = serde_json::Value::Null;
    let mut number_user = py_event(None);
    number_user["user_id"] = 7.into();
    for (path, body, says) in [
        ("/v1.0/event", no_platform.to_string(), "platform"),
        ("/v1.0/event", list_value.to_string(), "value"),
        ("/v1.0/event", null_value.to_string(), "value"),
        ("/v1.0/event", number_user.to_string(), "user_id"),
        ("/v1.0/event", format!("[{}]", py_event(None)), ""),
        ("/v1.0/events", py_event(None).to_string(), ""),
    ] {
        let a = post(&http, &base, path, body.clone()).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}");
        let detail = a.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(says), "{detail:?} should mention {says}");
    }
    let bad = post(&http, &base, "/v1.0/event", "{\"event_type\":").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["detail"].as_str().unwrap().contains("JSON"));
    srv.shutdown().await.unwrap();
    assert!(envelopes(&config).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_takes_objects_and_arrays_of_objects_with_an_optional_header_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.collect.api_keys = vec!["ck".into()];
    config.auth.header = "X-Sluice-Key".into();
    let (srv, base) = start(&config).await;
    let http = client();
    let with_key = |path: &str, body: &'static str| {
        http.post(format!("{base}{path}"))
            .header("x-sluice-key", "ck")
            .body(body)
    };
    assert_eq!(
        fetch(with_key("/collect", r#"{"a":1}"#)).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        fetch(with_key("/collect/orders", r#"[{"a":1},{"b":[2]}]"#))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    for bad in ["[1,2]", "\"text\"", "{\"a\":", "[{}, 3]"] {
        let a = fetch(with_key("/collect", bad)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!a.body.is_empty());
    }
    let form = fetch(
        with_key("/collect", r#"{"a":1}"#)
            .header("content-type", "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Missing and wrong keys.
    assert_eq!(
        post(&http, &base, "/collect", r#"{"a":1}"#).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = fetch(
        http.post(format!("{base}/collect"))
            .header("x-sluice-key", "nope")
            .body(r#"{"a":1}"#),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&wrong.body).contains("collect.api_keys"));
    srv.shutdown().await.unwrap();
    let stored = envelopes(&config);
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().any(|e| e.path == "/collect/orders"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowplow_routes_take_an_optional_key_in_the_configured_header() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.auth.snowplow_keys = vec!["sk".into()];
    let (srv, base) = start(&config).await;
    let http = client();
    let body = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv"}]}"#;
    let ok = fetch(
        http.post(format!("{base}{TP2}"))
            .header("x-api-key", "sk")
            .body(body),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let missing = fetch(http.post(format!("{base}{TP2}")).body(body)).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&missing.body).contains("auth.snowplow_keys"));
    let pixel = fetch(http.get(format!("{base}/i?e=pv"))).await;
    assert_eq!(pixel.status, StatusCode::UNAUTHORIZED);
    srv.shutdown().await.unwrap();
    assert_eq!(envelopes(&config).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_checked_decompressed_and_stored_as_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.segment.write_keys = vec!["wk".into()];
    let (srv, base) = start(&config).await;
    let http = client();
    let body = batch(50, Some("wk"));
    let gz = gzip(body.as_bytes());
    let a = fetch(
        http.post(format!("{base}/v1/batch"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gz.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    // The key inside the compressed body is checked.
    let wrong = fetch(
        http.post(format!("{base}/v1/batch"))
            .header("content-encoding", "gzip")
            .body(gzip(batch(1, Some("bad")).as_bytes())),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // Not gzip after all.
    let broken = fetch(
        http.post(format!("{base}/v1/batch"))
            .header("content-encoding", "gzip")
            .body(body.clone()),
    )
    .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    assert_eq!(broken.json()["code"], "invalid_gzip");
    // Uncompressed works too.
    assert_eq!(
        post(&http, &base, "/v1/batch", body.clone()).await.status,
        StatusCode::OK
    );
    srv.shutdown().await.unwrap();
    let stored = envelopes(&config);
    assert_eq!(stored.len(), 2);
    let zipped = stored
        .iter()
        .find(|e| e.header("content-encoding").is_some())
        .unwrap();
    assert_eq!(zipped.body, gz, "the stored body is the gzip bytes as sent");
    let plain = stored
        .iter()
        .find(|e| e.header("content-encoding").is_none())
        .unwrap();
    assert_eq!(plain.body, body.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_413_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.server.max_decompressed_bytes = ByteSize(64 << 10);
    config.segment.max_batch_bytes = ByteSize(1 << 20);
    config.segment.max_event_bytes = ByteSize(1 << 20);
    let (srv, base) = start(&config).await;
    let http = client();
    // 16 MiB of spaces inside a JSON array: a few KiB compressed.
    let mut json = b"{\"batch\":[".to_vec();
    json.extend(std::iter::repeat_n(b' ', 16 << 20));
    json.extend_from_slice(b"]}");
    let bomb = gzip(&json);
    assert!(bomb.len() < 16 << 10, "{}", bomb.len());
    for path in ["/v1/batch", "/v1/track", "/v1.0/events", "/collect"] {
        let a = fetch(
            http.post(format!("{base}{path}"))
                .header("content-encoding", "gzip")
                .body(bomb.clone()),
        )
        .await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let text = String::from_utf8_lossy(&a.body).into_owned();
        assert!(
            text.contains("server.max_decompressed_bytes"),
            "{path}: {text}"
        );
    }
    srv.shutdown().await.unwrap();
    assert!(envelopes(&config).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_and_batches_are_413_and_too_many_items_400() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.segment.max_event_bytes = ByteSize(1 << 10);
    config.segment.max_batch_bytes = ByteSize(8 << 10);
    config.segment.max_batch_items = 10;
    let (srv, base) = start(&config).await;
    let http = client();

    let big = format!(
        r#"{{"userId":"u","properties":{{"x":"{}"}}}}"#,
        "a".repeat(2000)
    );
    let a = post(&http, &base, "/v1/track", big.clone()).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["code"], "event_too_large");
    assert!(a.json()["message"]
        .as_str()
        .unwrap()
        .contains("segment.max_event_bytes"));
    // The same message compressed is measured decompressed.
    let a = fetch(
        http.post(format!("{base}/v1/track"))
            .header("content-encoding", "gzip")
            .body(gzip(big.as_bytes())),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);

    let items: Vec<_> = (0..8)
        .map(|_| serde_json::json!({"type":"track","event":"E","userId":"u","p":"b".repeat(1500)}))
        .collect();
    let a = post(
        &http,
        &base,
        "/v1/batch",
        serde_json::json!({"batch": items}).to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["code"], "batch_too_large");

    let a = post(&http, &base, "/v1/batch", batch(11, None)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["code"], "too_many_events");
    // At the limit is fine, and one batch item over max_event_bytes is the publisher's to
    // dead-letter, not a reason to refuse the batch.
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(10, None))
            .await
            .status,
        StatusCode::OK
    );
    let items = serde_json::json!({"batch": [
        {"type":"track","event":"E","userId":"u","p":"c".repeat(1500)},
        {"type":"track","event":"E","userId":"u"}]});
    assert_eq!(
        post(&http, &base, "/v1/batch", items.to_string())
            .await
            .status,
        StatusCode::OK
    );
    srv.shutdown().await.unwrap();
    assert_eq!(envelopes(&config).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_segment_json_is_400_with_a_code_and_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let http = client();
    for (path, body, code) in [
        ("/v1/track", "{\"userId\":", "invalid_request"),
        ("/v1/batch", "not json at all", "invalid_request"),
        ("/v1/batch", "{\"batch\":[1,2,}", "invalid_request"),
        ("/v1/batch", "{\"batch\":{}}", "invalid_body"),
        ("/v1/batch", "[]", "invalid_body"),
        ("/v1/t", "[1]", "invalid_body"),
    ] {
        let a = post(&http, &base, path, body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(a.header("content-type"), Some("application/json"));
        let v = a.json();
        assert_eq!(v["code"], code, "{path} {body}: {v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    srv.shutdown().await.unwrap();
    assert!(envelopes(&config).is_empty());
}

/// Sleeps for the `Retry-After` of a 429.
async fn wait_retry_after(a: &Answer) {
    let secs: u64 = a
        .header("retry-after")
        .expect("a 429 carries Retry-After")
        .parse()
        .unwrap();
    assert!((1..=5).contains(&secs), "Retry-After {secs}");
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_client_gets_429_with_retry_after_and_succeeds_after_the_refill() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    // One token every 5 s: the three refusals below cannot race a refill on a slow machine.
    config.limits.per_ip = "12/min".parse().unwrap();
    config.limits.burst = 2;
    let (srv, base) = start(&config).await;
    let http = client();
    for _ in 0..2 {
        assert_eq!(
            post(&http, &base, "/v1/batch", batch(1, None)).await.status,
            StatusCode::OK
        );
    }
    let limited = post(&http, &base, "/v1/batch", batch(1, None)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.json()["code"], "rate_limited");
    // Every route family is limited by the same bucket.
    let px = fetch(http.get(format!("{base}/i?e=pv"))).await;
    assert_eq!(px.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(px.header("retry-after").is_some());
    let py = post(&http, &base, "/v1.0/events", "[]").await;
    assert_eq!(py.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(py.json()["detail"]
        .as_str()
        .unwrap()
        .contains("limits.per_ip"));
    wait_retry_after(&limited).await;
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(1, None)).await.status,
        StatusCode::OK
    );

    let metrics = metrics_text(&http, &srv).await;
    for source in ["segment", "snowplow", "pycolytics"] {
        let line = format!("sluice_http_rejections_total{{reason=\"rate\",source=\"{source}\"}}");
        assert!(metrics.contains(&line), "{line} missing");
    }
    srv.shutdown().await.unwrap();
    assert_eq!(envelopes(&config).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_limits_count_each_key_separately() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.segment.write_keys = vec!["a".into(), "b".into()];
    config.limits.per_key = "12/min".parse().unwrap();
    let (srv, base) = start(&config).await;
    let http = client();
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(1, Some("a")))
            .await
            .status,
        StatusCode::OK
    );
    let limited = post(&http, &base, "/v1/batch", batch(1, Some("a"))).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.json()["message"]
        .as_str()
        .unwrap()
        .contains("limits.per_key"));
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(1, Some("b")))
            .await
            .status,
        StatusCode::OK
    );
    wait_retry_after(&limited).await;
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(1, Some("a")))
            .await
            .status,
        StatusCode::OK
    );
    srv.shutdown().await.unwrap();
    assert_eq!(envelopes(&config).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_limit_is_shared_by_every_connection_and_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.wal.partitions = 4;
    config.wal.capacity = ByteSize(4 << 20);
    config.limits.per_ip = "1/h".parse().unwrap();
    config.limits.burst = 8;
    let (srv, base) = start(&config).await;
    // A new connection (and a different user, so a different partition) per request.
    for user in 0..8 {
        let http = client();
        let a = fetch(
            http.post(format!("{base}{TP2}"))
                .header("cookie", format!("sp=user-{user}"))
                .body(r#"{"data":[{"e":"pv"}]}"#),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "request {user}");
    }
    let a = fetch(
        client()
            .post(format!("{base}{TP2}"))
            .header("cookie", "sp=someone-else")
            .body(r#"{"data":[{"e":"pv"}]}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    srv.shutdown().await.unwrap();
    let stored = stored(&config);
    assert_eq!(stored.len(), 8);
    let partitions: std::collections::BTreeSet<usize> = stored.iter().map(|(p, _)| *p).collect();
    assert!(
        partitions.len() >= 2,
        "the users spread over partitions: {partitions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_picks_the_client_only_behind_a_trusted_proxy() {
    // Trusted (loopback is in the default trusted_proxies): each forwarded client has its own
    // bucket.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.limits.per_ip = "1/h".parse().unwrap();
    let (srv, base) = start(&config).await;
    let http = client();
    let from = |ip: &'static str| {
        http.post(format!("{base}/collect"))
            .header("x-forwarded-for", ip)
            .body("{}")
    };
    assert_eq!(
        fetch(from("203.0.113.1")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        fetch(from("203.0.113.2")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        fetch(from("203.0.113.1")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A client cannot escape by prepending a forged hop: the proxy's appended hop counts.
    assert_eq!(
        fetch(from("198.51.100.7, 203.0.113.2")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    srv.shutdown().await.unwrap();

    // Untrusted peer: the header is ignored, so every request is the peer's.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.limits.per_ip = "1/h".parse().unwrap();
    config.enrich.trusted_proxies = vec!["10.0.0.0/8".into()];
    let (srv, base) = start(&config).await;
    let from = |ip: &'static str| {
        http.post(format!("{base}/collect"))
            .header("x-forwarded-for", ip)
            .body("{}")
    };
    assert_eq!(
        fetch(from("203.0.113.1")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        fetch(from("203.0.113.2")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_keys_and_limits_while_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let http = client();
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(1, None)).await.status,
        StatusCode::OK
    );
    config.segment.write_keys = vec!["new".into()];
    config.limits.per_ip = "1/h".parse().unwrap();
    config.limits.burst = 2;
    srv.reload(&config);
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(1, None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(1, Some("new")))
            .await
            .status,
        StatusCode::OK
    );
    // The refused request took a token too (limits apply before anything else).
    assert_eq!(
        post(&http, &base, "/v1/batch", batch(1, Some("new")))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    srv.shutdown().await.unwrap();
    assert_eq!(envelopes(&config).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_counted_by_reason_and_source() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.pycolytics.api_keys = vec!["pk".into()];
    let (srv, base) = start(&config).await;
    let http = client();
    post(&http, &base, "/v1.0/event", py_event(None).to_string()).await;
    post(&http, &base, "/collect", "nope").await;
    post(&http, &base, "/v1/track", "x".repeat(40 << 10)).await;
    let metrics = metrics_text(&http, &srv).await;
    for (reason, source) in [
        ("auth", "pycolytics"),
        ("invalid", "collect"),
        ("size", "segment"),
    ] {
        let line =
            format!("sluice_http_rejections_total{{reason=\"{reason}\",source=\"{source}\"}}");
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
    srv.shutdown().await.unwrap();
}
