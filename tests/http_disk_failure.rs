//! A disk that fails an fsync, seen from a client: the server runs on a [`FaultyFs`] and one
//! sync fails. The request whose group commit it was gets 503 (never a 2xx), every later one
//! 503 saying the log is poisoned, `/ready` fails, `/metrics` shows it; after a restart on a
//! healthy disk, every acknowledged request is still stored and new ones are taken.

mod http_support;

use std::sync::Arc;

use http_support::{assert_unready_but_healthy, metrics_text, stored, test_config, IO_BOUND};
use reqwest::StatusCode;
use sluice::server;
use sluice_wal::fs::{FaultKind, FaultyFs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_acknowledged_and_the_log_refuses_until_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.wal.partitions = 1;
    let fs = FaultyFs::new();
    let srv = server::start_on(config.clone(), Arc::new(fs.clone()))
        .await
        .unwrap();
    let base = format!("http://{}", srv.collector_addr);
    let http = reqwest::Client::builder()
        .timeout(IO_BOUND)
        .build()
        .unwrap();
    let post = |n: u32| {
        http.post(format!("{base}/collect/disk"))
            .body(format!("{{\"n\":{n}}}"))
            .send()
    };

    let mut acknowledged = Vec::new();
    for n in 0..5 {
        let resp = post(n).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        acknowledged.push(format!("{{\"n\":{n}}}"));
    }

    // The next sync fails: the request it was for is refused, and so is everything after it,
    // although the disk would take the next sync again.
    fs.fail_after(FaultKind::Sync, 0);
    let mut refused = Vec::new();
    for n in 5..8 {
        let resp = post(n).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "request {n}"
        );
        assert_eq!(resp.headers()["retry-after"], "3");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "log_poisoned", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("this request was not stored"), "{message}");
        assert!(message.contains("restart sluice"), "{message}");
        refused.push(format!("{{\"n\":{n}}}"));
    }

    assert_unready_but_healthy(&http, &base).await;
    let metrics = metrics_text(&http, &srv).await;
    assert!(
        metrics.contains(r#"sluice_wal_poisoned{partition="0"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_http_requests_total{route="/collect/{stream}",status="503"} 3"#),
        "{metrics}"
    );
    // Closing a poisoned log reports the failure; what matters is that it stops.
    let _ = srv.shutdown().await;

    // A restart on a healthy disk recovers the log and takes requests again.
    let srv = server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", srv.collector_addr);
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let resp = http
        .post(format!("{base}/collect/disk"))
        .body("{\"n\":8}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    srv.shutdown().await.unwrap();

    let bodies: Vec<String> = stored(&config)
        .into_iter()
        .map(|(_, e)| String::from_utf8(e.body).unwrap())
        .collect();
    // Every acknowledged request, in order, then the new one. Between them may be refused
    // requests whose bytes reached the file before the failed sync (the client was told they
    // were not stored and retries them); nothing else.
    assert_eq!(bodies[..acknowledged.len()], acknowledged[..], "{bodies:?}");
    assert_eq!(bodies.last().unwrap(), "{\"n\":8}", "{bodies:?}");
    let between = &bodies[acknowledged.len()..bodies.len() - 1];
    assert!(
        between.iter().all(|b| refused.contains(b)),
        "{between:?} are not refused requests"
    );
}
