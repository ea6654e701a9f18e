//! The collector against a real listener: each protocol's answers, what is stored, the limits,
//! metrics and graceful shutdown.

mod http_support;

use std::time::Duration;

use http_support::{connect, read_response, send, stored, test_config, IO_BOUND};
use reqwest::{Client, Method, StatusCode};
use sluice::config::HumanDuration;
use sluice::http::PIXEL;
use sluice::server;

const TP2: &str = "/com.snowplowanalytics.snowplow/tp2";
const TP1: &str = "/com.snowplowanalytics.snowplow/tp1";

fn client() -> Client {
    Client::builder().timeout(IO_BOUND).build().unwrap()
}

/// One request the routes test sends, and what it must answer.
struct Case {
    method: Method,
    path: &'static str,
    query: Option<&'static str>,
    body: &'static [u8],
    status: StatusCode,
    content_type: Option<&'static str>,
    answer: &'static [u8],
    route: &'static str,
}

fn cases() -> Vec<Case> {
    let pixel = |method: Method, path: &'static str, route: &'static str| Case {
        method,
        path,
        query: Some("e=pv&url=https%3A%2F%2Fshop.example%2F&tv=js-3"),
        body: b"",
        status: StatusCode::OK,
        content_type: Some("image/gif"),
        answer: &PIXEL,
        route,
    };
    let post = |path: &'static str,
                route: &'static str,
                status: StatusCode,
                content_type: Option<&'static str>,
                answer: &'static [u8]| Case {
        method: Method::POST,
        path,
        query: None,
        body: br#"{"schema":"iglu:x","data":[{"e":"pv"}]}"#,
        status,
        content_type,
        answer,
        route,
    };
    let segment = |path: &'static str| {
        post(
            path,
            path,
            StatusCode::OK,
            Some("application/json"),
            br#"{"success":true}"#,
        )
    };
    // Each JSON route checks its body's shape before storing it.
    let with_body = |case: Case, body: &'static [u8]| Case { body, ..case };
    const BATCH: &[u8] = br#"{"batch":[{"type":"track","event":"E","userId":"u"}]}"#;
    const PY_EVENT: &[u8] = br#"{"event_type":"e","application":"a","version":"1","platform":"p","user_id":"u","session_id":"s"}"#;
    const PY_EVENTS: &[u8] = br#"[{"event_type":"e","application":"a","version":"1","platform":"p","user_id":"u","session_id":"s","value":{"n":1}}]"#;
    vec![
        pixel(Method::GET, "/i", "/i"),
        pixel(Method::GET, "/ice.png", "/ice.png"),
        pixel(Method::GET, TP2, TP2),
        pixel(Method::GET, TP1, TP1),
        post(TP2, TP2, StatusCode::OK, Some("text/plain"), b"ok"),
        segment("/v1/track"),
        segment("/v1/identify"),
        segment("/v1/page"),
        segment("/v1/screen"),
        segment("/v1/group"),
        segment("/v1/alias"),
        with_body(segment("/v1/batch"), BATCH),
        with_body(segment("/v1/import"), BATCH),
        segment("/v1/t"),
        with_body(segment("/v1/b"), BATCH),
        with_body(
            post(
                "/v1.0/event",
                "/v1.0/event",
                StatusCode::NO_CONTENT,
                None,
                b"",
            ),
            PY_EVENT,
        ),
        with_body(
            post(
                "/v1.0/events",
                "/v1.0/events",
                StatusCode::NO_CONTENT,
                None,
                b"",
            ),
            PY_EVENTS,
        ),
        post("/collect", "/collect", StatusCode::ACCEPTED, None, b""),
        post(
            "/collect/orders",
            "/collect/{stream}",
            StatusCode::ACCEPTED,
            None,
            b"",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_its_protocol_expects_and_stores_the_raw_request() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", srv.collector_addr);
    let http = client();

    for (i, case) in cases().iter().enumerate() {
        let url = match case.query {
            Some(q) => format!("{base}{}?{q}", case.path),
            None => format!("{base}{}", case.path),
        };
        let mut req = http
            .request(case.method.clone(), &url)
            .header("user-agent", "sluice-test/1")
            .header("origin", "https://shop.example")
            .header("referer", "https://shop.example/cart")
            .header("cookie", format!("other=1; sp=user-{i}"))
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.1")
            .header("authorization", "Basic d3JpdGVrZXk6")
            .header("x-not-logged", "secret");
        if !case.body.is_empty() {
            req = req
                .header("content-type", "application/json")
                .body(case.body.to_vec());
        }
        let resp = req.send().await.unwrap();
        let what = format!("{} {}", case.method, case.path);
        assert_eq!(resp.status(), case.status, "{what}");
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        match case.content_type {
            Some(ct) => assert!(
                content_type.as_deref().is_some_and(|v| v.starts_with(ct)),
                "{what}: content-type {content_type:?}"
            ),
            None => assert_eq!(content_type, None, "{what}"),
        }
        let headers = resp.headers().clone();
        assert_eq!(
            headers["access-control-allow-origin"], "https://shop.example",
            "{what}"
        );
        assert_eq!(
            headers["access-control-allow-credentials"], "true",
            "{what}"
        );
        assert_eq!(headers["vary"], "Origin", "{what}");
        if case.answer == PIXEL {
            assert_eq!(
                headers["cache-control"], "no-cache, no-store, must-revalidate",
                "{what}"
            );
        }
        let body = resp.bytes().await.unwrap();
        assert_eq!(&body[..], case.answer, "{what}");
    }
    srv.shutdown().await.unwrap();

    let stored = stored(&config);
    let cases = cases();
    assert_eq!(stored.len(), cases.len(), "one record per accepted request");
    for (i, case) in cases.iter().enumerate() {
        let (_, env) = stored
            .iter()
            .find(|(_, e)| e.header("cookie") == Some(&*format!("other=1; sp=user-{i}")))
            .unwrap_or_else(|| panic!("request {i} ({}) was not stored", case.path));
        assert_eq!(env.route, case.route);
        assert_eq!(env.method, case.method.as_str());
        assert_eq!(env.path, case.path);
        assert_eq!(env.query.as_deref(), case.query);
        assert_eq!(env.body, case.body);
        assert_eq!(env.header("user-agent"), Some("sluice-test/1"));
        assert_eq!(env.header("origin"), Some("https://shop.example"));
        assert_eq!(env.header("referer"), Some("https://shop.example/cart"));
        assert_eq!(env.header("x-forwarded-for"), Some("203.0.113.9, 10.0.0.1"));
        assert_eq!(env.header("authorization"), Some("Basic d3JpdGVrZXk6"));
        assert_eq!(env.header("x-not-logged"), None);
        if !case.body.is_empty() {
            assert_eq!(env.header("content-type"), Some("application/json"));
        }
        assert!(env
            .peer
            .as_deref()
            .is_some_and(|p| p.starts_with("127.0.0.1:")));
        assert!(env.received_at_ms > 1_600_000_000_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests_on_pixel_routes_are_stored_and_answered_without_a_body() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();
    let resp = client()
        .head(format!("http://{}/i?e=pv", srv.collector_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/gif");
    assert!(resp.bytes().await.unwrap().is_empty());
    srv.shutdown().await.unwrap();

    let stored = stored(&config);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.method, "HEAD");
    assert_eq!(stored[0].1.query.as_deref(), Some("e=pv"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_network_user_id_always_lands_in_the_same_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();
    let http = client();
    for user in 0..8 {
        for n in 0..3 {
            let resp = http
                .get(format!("http://{}/i?n={n}", srv.collector_addr))
                .header("cookie", format!("sp=user-{user}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }
    srv.shutdown().await.unwrap();

    let stored = stored(&config);
    assert_eq!(stored.len(), 24);
    for user in 0..8 {
        let cookie = format!("sp=user-{user}");
        let mine: Vec<_> = stored
            .iter()
            .filter(|(_, e)| e.header("cookie") == Some(cookie.as_str()))
            .collect();
        assert_eq!(mine.len(), 3);
        assert!(
            mine.iter().all(|(p, _)| *p == mine[0].0),
            "user {user} split"
        );
        // In arrival order within the partition.
        let order: Vec<_> = mine.iter().map(|(_, e)| e.query.clone().unwrap()).collect();
        assert_eq!(order, ["n=0", "n=1", "n=2"]);
    }
    let partitions: std::collections::BTreeSet<_> = stored.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        partitions.len(),
        2,
        "eight users should use both partitions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_health_unknown_paths_and_wrong_methods_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", srv.collector_addr);
    let http = client();

    let resp = http
        .request(Method::OPTIONS, format!("{base}{TP2}"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(
        h["access-control-allow-headers"],
        "Content-Type, SP-Anonymous, Authorization, X-API-Key"
    );
    assert_eq!(h["access-control-max-age"], "3600");
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = http
        .request(Method::OPTIONS, format!("{base}/anything/at/all"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");

    let resp = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap().trim(), "ok");

    let resp = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    for path in ["/", "/nope", "/v1/unknown", "/collect/a/b"] {
        let resp = http
            .post(format!("{base}{path}"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(resp.text().await.unwrap().contains("no route"), "{path}");
    }
    for (method, path, allow) in [
        (Method::POST, "/i", "GET, HEAD, OPTIONS"),
        (Method::PUT, TP2, "GET, HEAD, POST, OPTIONS"),
        (Method::GET, "/v1/batch", "POST, OPTIONS"),
        (Method::DELETE, "/collect/x", "POST, OPTIONS"),
    ] {
        let resp = http
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
    }
    srv.shutdown().await.unwrap();
    assert!(stored(&config).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_larger_than_the_limit_is_refused_with_413_before_it_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();

    // Only the head is sent: the answer must not wait for a body.
    let mut conn = connect(srv.collector_addr).await;
    send(
        &mut conn,
        format!(
            "POST {TP2} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            10 << 20
        )
        .as_bytes(),
    )
    .await;
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 413);
    assert!(String::from_utf8_lossy(&resp.body).contains("server.max_body_bytes"));
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));

    // Exactly at the limit is fine (a JSON object of 16 KiB: /collect takes JSON objects).
    let mut body = b"{\"a\":\"".to_vec();
    body.resize((16 << 10) - 2, b'a');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), 16 << 10);
    let ok = client()
        .post(format!("http://{}/collect", srv.collector_addr))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    srv.shutdown().await.unwrap();

    let stored = stored(&config);
    assert_eq!(
        stored.len(),
        1,
        "only the request within the limit is stored"
    );
    assert_eq!(stored[0].1.body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_that_grows_past_the_limit_is_refused_with_413_and_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();

    let mut request =
        b"POST /v1/batch HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(format!("{:x}\r\n", 8 << 10).as_bytes());
        request.extend(std::iter::repeat_n(b'z', 8 << 10));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut conn = connect(srv.collector_addr).await;
    send(&mut conn, &request).await;
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 413);

    // A chunked body within the limit is accepted.
    let mut conn = connect(srv.collector_addr).await;
    send(
        &mut conn,
        b"POST /v1/batch HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n7\r\n{\"batch\r\n7\r\n\":[{}]}\r\n0\r\n\r\n",
    )
    .await;
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, br#"{"success":true}"#);
    srv.shutdown().await.unwrap();

    let stored = stored(&config);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.body, br#"{"batch":[{}]}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_within_the_request_timeout_gets_408_and_is_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.server.request_timeout = HumanDuration(Duration::from_millis(500));
    let srv = server::start(config.clone()).await.unwrap();

    let mut conn = connect(srv.collector_addr).await;
    send(
        &mut conn,
        format!("POST {TP2} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
            .as_bytes(),
    )
    .await;
    // The rest of the body never comes.
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 408);
    assert!(String::from_utf8_lossy(&resp.body).contains("server.request_timeout"));
    srv.shutdown().await.unwrap();
    assert!(stored(&config).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_larger_than_the_limit_is_refused_with_431() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();
    let mut conn = connect(srv.collector_addr).await;
    let huge = "a".repeat(32 << 10);
    send(
        &mut conn,
        format!("GET /i HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n").as_bytes(),
    )
    .await;
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 431);
    srv.shutdown().await.unwrap();
    assert!(stored(&config).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_exposes_every_sluice_metric_after_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();
    let http = client();
    for _ in 0..5 {
        let resp = http
            .get(format!("http://{}/i?e=pv", srv.collector_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = http
        .get(format!("http://{}/metrics", srv.metrics_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    for name in [
        r#"sluice_http_requests_total{route="/i",status="200"}"#,
        r#"sluice_http_request_duration_seconds_bucket{route="/i",le="0.001"}"#,
        "sluice_wal_append_duration_seconds_bucket",
        "sluice_wal_commit_records_bucket",
        "sluice_wal_fsync_duration_seconds_bucket",
        r#"sluice_wal_records_appended_total{partition="0"}"#,
        r#"sluice_wal_bytes_appended_total{partition="1"}"#,
        r#"sluice_wal_used_bytes{partition="0"}"#,
        r#"sluice_wal_capacity_bytes{partition="1"} 524288"#,
        r#"sluice_wal_unconfirmed_records{partition="0"}"#,
        r#"sluice_wal_full{partition="0"} 0"#,
        r#"sluice_wal_poisoned{partition="1"} 0"#,
        r#"sluice_wal_dropped_records_total{partition="0"}"#,
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    let resp = http
        .get(format!("http://{}/other", srv.metrics_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    srv.shutdown().await.unwrap();
}
