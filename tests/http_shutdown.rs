//! Graceful shutdown: new connections are refused, requests already in flight are answered
//! and stored. (Its own test binary, so the process-wide in-flight gauge is this test's alone.)

mod http_support;

use std::time::Duration;

use http_support::{connect, read_response, send, stored, test_config, IO_BOUND};
use sluice::server;

/// Polls the metrics listener until `sluice_http_requests_in_flight` reads `want`.
async fn wait_for_in_flight(metrics: std::net::SocketAddr, want: u64) {
    let http = reqwest::Client::builder()
        .timeout(IO_BOUND)
        .build()
        .unwrap();
    let line = format!("sluice_http_requests_in_flight {want}\n");
    tokio::time::timeout(IO_BOUND, async {
        loop {
            let text = http
                .get(format!("http://{metrics}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains(&line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the request never reached the handler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_but_answers_a_request_already_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();
    let addr = srv.collector_addr;

    // A request whose head has arrived and whose body is still on its way.
    let mut conn = connect(addr).await;
    send(
        &mut conn,
        b"POST /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n01234",
    )
    .await;
    wait_for_in_flight(srv.metrics_addr, 1).await;

    let shutdown = tokio::spawn(srv.shutdown());
    // Wait until the listener is gone: new connections are refused.
    tokio::time::timeout(IO_BOUND, async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener was not closed");

    send(&mut conn, b"56789").await;
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"ok");
    tokio::time::timeout(IO_BOUND, shutdown)
        .await
        .expect("shutdown did not finish")
        .unwrap()
        .unwrap();

    let stored = stored(&config);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.body, b"0123456789");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_ok_once_its_shutdown_future_resolves_and_releases_the_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server::run(config.clone(), async move {
        let _ = rx.await;
    }));
    tx.send(()).unwrap();
    tokio::time::timeout(IO_BOUND, running)
        .await
        .expect("run did not return")
        .unwrap()
        .unwrap();
    // The logs' locks are released: a second server can open them.
    let again = server::start(config).await.unwrap();
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dropped_without_shutdown_stops_and_releases_its_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let srv = server::start(config.clone()).await.unwrap();
    let resp = reqwest::get(format!("http://{}/i?e=pv", srv.collector_addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(srv);
    // The tasks notice the dropped stop flag and end; the last of them closes the logs, after
    // which a new server can take their locks.
    let again = tokio::time::timeout(IO_BOUND, async {
        loop {
            match server::start(config.clone()).await {
                Ok(srv) => return srv,
                Err(e) => {
                    assert!(format!("{e:#}").contains("locked"), "{e:#}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
    .await
    .expect("the dropped server never released its logs");
    again.shutdown().await.unwrap();
    assert_eq!(stored(&config).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_finishes_is_cut_off_after_the_shutdown_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    // The body timeout is far beyond the test's bound: only the grace period can end the
    // stalled request, so a shutdown that finishes proves the grace period is applied.
    config.server.request_timeout = sluice::config::HumanDuration(Duration::from_secs(600));
    config.server.shutdown_grace = sluice::config::HumanDuration(Duration::from_millis(200));
    let srv = server::start(config.clone()).await.unwrap();

    let mut conn = connect(srv.collector_addr).await;
    send(
        &mut conn,
        b"POST /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n01234",
    )
    .await;
    wait_for_in_flight(srv.metrics_addr, 1).await;

    tokio::time::timeout(IO_BOUND, srv.shutdown())
        .await
        .expect("shutdown waited for a request that never finishes")
        .unwrap();

    // The server closed the stalled connection: the client reads the end of the stream (or
    // a reset), never an answer.
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(IO_BOUND, conn.read_to_end(&mut buf))
        .await
        .expect("the stalled connection was left open");
    assert!(
        read.is_err() || buf.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    // Half a body was never acknowledged, so nothing was stored.
    assert!(stored(&config).is_empty());
}
