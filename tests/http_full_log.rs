//! A log with no consumer fills up: the collector answers 503 with `Retry-After`, `/ready`
//! flips to 503, `/health` stays 200, and every request that got a 2xx is in the log.

mod http_support;

use http_support::{assert_unready_but_healthy, metrics_text, stored, test_config, IO_BOUND};
use reqwest::StatusCode;
use sluice::config::ByteSize;
use sluice::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_answers_503_with_retry_after_and_ready_flips_while_health_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    // One partition of two 64 KiB segments: a handful of 8 KiB requests fill it.
    config.wal.partitions = 1;
    config.wal.segment_size = ByteSize(64 << 10);
    config.wal.capacity = ByteSize(128 << 10);
    let srv = server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", srv.collector_addr);
    let http = reqwest::Client::builder()
        .timeout(IO_BOUND)
        .build()
        .unwrap();

    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let mut accepted = Vec::new();
    let mut refusal = None;
    for i in 0..100u32 {
        // About 8 KiB of JSON, unique per request (/collect takes JSON objects).
        let body = format!("{{\"n\":\"{}\"}}", format!("{i:08}").repeat(1023));
        let resp = http
            .post(format!("{base}/collect/full"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        match resp.status() {
            StatusCode::ACCEPTED => accepted.push(body),
            StatusCode::SERVICE_UNAVAILABLE => {
                refusal = Some(resp);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refusal = refusal.expect("the log never filled up");
    assert!(!accepted.is_empty());
    assert_eq!(refusal.headers()["retry-after"], "3");
    assert!(refusal.text().await.unwrap().contains("full"));

    // Still full: the next request of that size is refused too, and nothing of it is stored.
    let again = http
        .post(format!("{base}/com.snowplowanalytics.snowplow/tp2"))
        .header("origin", "https://shop.example")
        .body("x".repeat(8 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(again.headers()["retry-after"], "3");
    assert_eq!(
        again.headers()["access-control-allow-origin"],
        "https://shop.example"
    );

    assert_unready_but_healthy(&http, &base).await;

    let metrics = metrics_text(&http, &srv).await;
    assert!(
        metrics.contains(r#"sluice_wal_full{partition="0"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_http_requests_total{route="/collect/{stream}",status="503"} 1"#),
        "{metrics}"
    );
    srv.shutdown().await.unwrap();

    let stored = stored(&config);
    let bodies: Vec<String> = stored
        .into_iter()
        .map(|(_, e)| String::from_utf8(e.body).unwrap())
        .collect();
    assert_eq!(
        bodies, accepted,
        "exactly the acknowledged requests are stored, in order"
    );
}
