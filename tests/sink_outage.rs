//! The sink keeps retrying while ClickHouse is down and delivers once it is back. Starts its
//! own server (it kills it), so it needs a local clickhouse-server even when
//! `SLUICE_TEST_CLICKHOUSE_URL` is set, and ignores that variable.

mod support;

use std::time::Duration;

use sluice::sink::clickhouse::{migrate, sample, Sink};

#[test]
fn a_killed_server_is_retried_until_it_returns_and_every_row_lands() {
    let mut ch = support::clickhouse::owned();
    let config = ch.config("t_outage");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(migrate::init(&config)).unwrap();
    let sink = std::sync::Arc::new(rt.block_on(Sink::connect(&config)).unwrap());

    ch.kill();
    let (_tx, stop) = sluice::shutdown::channel();
    let task = {
        let sink = sink.clone();
        let mut stop = stop.clone();
        rt.spawn(async move {
            sink.deliver(0, &sample::events(100), "sluice-0-1-100", &mut stop)
                .await
        })
    };
    // Let it fail a few times against the dead server.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !task.is_finished(),
        "deliver gave up while ClickHouse was down"
    );

    ch.restart();
    let d = rt.block_on(task).unwrap().unwrap();
    assert_eq!(d.inserted, 100);
    assert_eq!(
        ch.query("SELECT count() FROM t_outage.events FORMAT TSV"),
        "100\n"
    );
}
