//! The ClickHouse sink against a real server (18.16 here, or `SLUICE_TEST_CLICKHOUSE_URL`):
//! migrations, `db check`, the encoder's round trip, operator-changed tables, bad-row bisection
//! and the configuration-error pause. Each test uses its own database on one shared server.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use sluice::event::{Event, Text};
use sluice::sink::clickhouse::{
    migrate, sample, ClickHouseConfig, Compression, EncodedRows, Sink, SinkError,
};
use support::clickhouse::shared;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn fresh(db: &str) -> sluice::sink::clickhouse::ClickHouseConfig {
    let ch = shared();
    ch.query(&format!("DROP DATABASE IF EXISTS {db}"));
    ch.config(db)
}

fn no_stop() -> (sluice::shutdown::Stop, sluice::shutdown::Shutdown) {
    sluice::shutdown::channel()
}

fn close(got: Option<f64>, want: Option<f64>) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{g} != {w}"),
        (g, w) => assert_eq!(g, w),
    }
}

fn json_rows(text: &str) -> Vec<Json> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn db_init_is_idempotent_and_records_its_migrations() {
    let config = fresh("t_init");
    let rt = rt();
    let first = rt.block_on(migrate::init(&config)).unwrap();
    assert_eq!(
        first.applied,
        vec![
            (1, "create_events".to_string()),
            (2, "add_source_columns".to_string())
        ]
    );
    let second = rt.block_on(migrate::init(&config)).unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(second.already_applied, vec![1, 2]);
    let recorded = shared()
        .query("SELECT version, name FROM t_init.schema_migrations ORDER BY version FORMAT TSV");
    assert_eq!(recorded, "1\tcreate_events\n2\tadd_source_columns\n");
    let engine = shared().query(
        "SELECT engine, partition_key, sorting_key FROM system.tables WHERE database = 't_init' AND name = 'events' FORMAT TSV",
    );
    assert!(
        engine.starts_with("MergeTree\ttoYYYYMM(collector_tstamp)\t"),
        "{engine}"
    );
    assert!(
        engine.contains("app_id, event, toDate(collector_tstamp), event_id"),
        "{engine}"
    );
    let report = rt.block_on(migrate::check(&config)).unwrap();
    assert!(report.ok(), "{report:?}");
}

#[test]
fn db_check_names_a_missing_required_column_and_exits_non_zero() {
    let config = fresh("t_check");
    let rt = rt();
    rt.block_on(migrate::init(&config)).unwrap();
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let run = || {
        Command::new(sluice)
            .args(["db", "check", "--clickhouse-url", shared().url()])
            .env("SLUICE_CLICKHOUSE__DATABASE", "t_check")
            // sluice reads every SLUICE_* variable as configuration.
            .env_remove("SLUICE_TEST_CLICKHOUSE_URL")
            .output()
            .unwrap()
    };
    let ok = run();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    shared().query("ALTER TABLE t_check.events DROP COLUMN v_collector");
    shared().query("ALTER TABLE t_check.events DROP COLUMN page_title");
    let bad = run();
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("missing required column: v_collector"),
        "{stdout}"
    );
    assert!(
        stdout.contains("page_title"),
        "an absent optional column is a warning: {stdout}"
    );

    let err = rt.block_on(Sink::connect(&config)).unwrap_err();
    match err {
        SinkError::MissingColumn { column, .. } => assert_eq!(column, "v_collector"),
        other => panic!("{other}"),
    }
}

#[test]
fn every_kind_of_value_round_trips_through_the_encoder() {
    let config = fresh("t_roundtrip");
    let rt = rt();
    rt.block_on(migrate::init(&config)).unwrap();
    let sink = rt.block_on(Sink::connect(&config)).unwrap();
    let events = sample::events(40);
    let (_tx, mut stop) = no_stop();
    let d = rt
        .block_on(sink.deliver(0, &events, "sluice-0-1-40", &mut stop))
        .unwrap();
    assert_eq!(d.inserted, 40);
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);

    let text = shared().query(
        "SELECT toString(event_id) AS id, app_id, platform, event, page_title, page_url, \
         toString(page_urlport) AS port, se_value, tr_total, toString(ti_quantity) AS qty, \
         toString(domain_sessionidx) AS idx, toUInt64(toUnixTimestamp(collector_tstamp)) AS ts, \
         dvce_created_tstamp IS NULL AS no_created, toString(wal_partition) AS wp, br_cookies, \
         contexts, user_ipaddress, mkt_source, user_id \
         FROM t_roundtrip.events ORDER BY wal_index FORMAT JSONEachRow",
    );
    let rows = json_rows(&text);
    assert_eq!(rows.len(), 40);
    for (e, r) in events.iter().zip(&rows) {
        let s = |v: &Option<Text>| Json::from(v.as_deref());
        let n = |v: Option<Text>| v.as_deref().map(Json::from).unwrap_or(Json::Null);
        assert_eq!(r["id"], e.event_id.unwrap().to_string());
        assert_eq!(
            r["app_id"],
            e.app_id.as_deref().unwrap_or_default(),
            "NULL into non-Nullable is the default"
        );
        assert_eq!(r["platform"], s(&e.platform));
        assert_eq!(r["event"], s(&e.event));
        assert_eq!(
            r["page_title"],
            s(&e.page_title),
            "unicode and control characters"
        );
        assert_eq!(r["page_url"], s(&e.page_url));
        assert_eq!(
            r["port"],
            n((e.page_urlport.map(|v| v.to_string())).map(Text::from))
        );
        // 18.16 prints floats with ~15 significant digits; the bytes are exact (see the chdb
        // test, which compares RowBinary byte for byte).
        close(r["se_value"].as_f64(), e.se_value);
        close(r["tr_total"].as_f64(), e.tr_total);
        assert_eq!(
            r["qty"],
            n((e.ti_quantity.map(|v| v.to_string())).map(Text::from)),
            "i64 extremes"
        );
        assert_eq!(
            r["idx"],
            n((e.domain_sessionidx.map(|v| v.to_string())).map(Text::from))
        );
        let ts: u64 = r["ts"]
            .as_str()
            .map(|s| s.parse().unwrap())
            .unwrap_or_else(|| r["ts"].as_u64().unwrap());
        assert_eq!(ts as i64, e.collector_tstamp.unwrap() / 1000);
        assert_eq!(
            r["no_created"],
            Json::from(e.dvce_created_tstamp.is_none() as u8)
        );
        assert_eq!(
            r["wp"],
            n((e.wal_partition.map(|v| v.to_string())).map(Text::from))
        );
        assert_eq!(
            r["br_cookies"],
            e.br_cookies
                .map(|b| Json::from(b as u8))
                .unwrap_or(Json::Null)
        );
        assert_eq!(r["contexts"], s(&e.contexts));
        assert_eq!(r["user_ipaddress"], s(&e.user_ipaddress));
        assert_eq!(
            r["mkt_source"],
            s(&e.mkt_source),
            "empty string is not NULL"
        );
        assert_eq!(r["user_id"], s(&e.user_id));
    }
}

#[test]
fn an_operator_added_column_gets_its_default_and_a_dropped_optional_column_is_skipped() {
    let config = fresh("t_operator");
    let rt = rt();
    rt.block_on(migrate::init(&config)).unwrap();
    shared().query("ALTER TABLE t_operator.events ADD COLUMN mine UInt8 DEFAULT 42");
    shared().query("ALTER TABLE t_operator.events DROP COLUMN page_title");
    let sink = rt.block_on(Sink::connect(&config)).unwrap();
    assert!(!sink
        .columns()
        .iter()
        .any(|c| c == "page_title" || c == "mine"));
    let (_tx, mut stop) = no_stop();
    let d = rt
        .block_on(sink.deliver(0, &sample::events(10), "t", &mut stop))
        .unwrap();
    assert_eq!(d.inserted, 10);
    let text =
        shared().query("SELECT mine, count() FROM t_operator.events GROUP BY mine FORMAT TSV");
    assert_eq!(text, "42\t10\n");
}

#[test]
fn a_batch_encoded_before_a_column_was_dropped_is_refused_as_stale_and_loads_once_encoded_again() {
    let config = fresh("t_stale");
    let rt = rt();
    rt.block_on(migrate::init(&config)).unwrap();
    let sink = rt.block_on(Sink::connect(&config)).unwrap();
    let events = sample::events(10);
    let mut batch = EncodedRows::default();
    sink.encode_into(&mut batch, &events[..4], 0);
    sink.encode_into(&mut batch, &events[4..], 0);
    assert_eq!(batch.len(), 10);
    assert_eq!(
        batch.position(9),
        Some((events[9].wal_lsn, events[9].wal_index))
    );
    shared().query("ALTER TABLE t_stale.events DROP COLUMN page_title");
    let (_tx, mut stop) = no_stop();
    let r = rt.block_on(sink.deliver_encoded(0, &batch, "t", &mut stop));
    assert!(matches!(r, Err(SinkError::Stale)), "{r:?}");
    assert!(
        !sink.columns().iter().any(|c| c == "page_title"),
        "the table was read again"
    );
    let mut again = EncodedRows::default();
    sink.encode_into(&mut again, &events, events.len());
    let d = rt
        .block_on(sink.deliver_encoded(0, &again, "t", &mut stop))
        .unwrap();
    assert_eq!(d.inserted, 10);
    assert_eq!(
        shared().query("SELECT count() FROM t_stale.events FORMAT TSV"),
        "10\n"
    );
}

#[test]
fn a_batch_of_several_compressed_blocks_is_bisected_with_and_without_lz4() {
    for (db, compression) in [
        ("t_bisect_lz4", Compression::Lz4),
        ("t_bisect_raw", Compression::None),
    ] {
        let config = ClickHouseConfig {
            compression,
            ..fresh(db)
        };
        let rt = rt();
        rt.block_on(migrate::init(&config)).unwrap();
        shared().query(&format!(
            "ALTER TABLE {db}.events ADD COLUMN app_num UInt16 MATERIALIZED toUInt16(app_id)"
        ));
        let sink = rt.block_on(Sink::connect(&config)).unwrap();
        // Long page URLs: the batch's RowBinary spans several 1 MiB blocks, so with LZ4 the
        // pieces are cut from blocks sealed while the batch formed.
        let mut events = sample::events(3_000);
        for (i, e) in events.iter_mut().enumerate() {
            e.page_url = Some(Text::from(format!(
                "https://example.test/{i}/{}",
                "p".repeat(600)
            )));
            e.app_id = Some(if i == 7 || i == 2_345 {
                Text::from(format!("bad-{i}"))
            } else {
                Text::from((i % 1000).to_string())
            });
        }
        let (_tx, mut stop) = no_stop();
        let d = rt
            .block_on(sink.deliver(0, &events, "sluice-0-1-3000", &mut stop))
            .unwrap();
        assert_eq!(
            d.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![7, 2_345],
            "{compression:?}"
        );
        assert_eq!(d.inserted, 2_998);
        let text = shared().query(&format!(
            "SELECT count(), uniqExact(wal_index), sum(length(page_url)) FROM {db}.events FORMAT TSV"
        ));
        let urls: usize = events
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 7 && *i != 2_345)
            .map(|(_, e)| e.page_url.as_ref().unwrap().len())
            .sum();
        assert_eq!(text, format!("2998\t2998\t{urls}\n"), "{compression:?}");
    }
}

#[test]
fn rows_clickhouse_rejects_are_bisected_out_and_the_rest_land() {
    let config = fresh("t_bisect");
    let rt = rt();
    rt.block_on(migrate::init(&config)).unwrap();
    // An operator's check: app_id must be a number. ClickHouse refuses the whole insert
    // (code 6) when one row breaks it.
    shared()
        .query("ALTER TABLE t_bisect.events ADD COLUMN app_num UInt8 MATERIALIZED toUInt8(app_id)");
    let sink = rt.block_on(Sink::connect(&config)).unwrap();
    let mut events = sample::events(23);
    for (i, e) in events.iter_mut().enumerate() {
        e.app_id = Some(if i == 5 || i == 17 {
            Text::from(format!("bad-{i}"))
        } else {
            Text::from(i.to_string())
        });
    }
    let (_tx, mut stop) = no_stop();
    let d = rt
        .block_on(sink.deliver(0, &events, "sluice-0-1-23", &mut stop))
        .unwrap();
    assert_eq!(
        d.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![5, 17]
    );
    assert!(d.rejected[0].1.contains("bad-5"), "{}", d.rejected[0].1);
    assert_eq!(d.inserted, 21);
    let text =
        shared().query("SELECT count(), uniqExact(wal_index) FROM t_bisect.events FORMAT TSV");
    assert_eq!(text, "21\t21\n");
}

#[test]
fn values_the_column_type_cannot_hold_are_rejected_before_sending() {
    let config = fresh("t_encode_reject");
    let rt = rt();
    rt.block_on(migrate::init(&config)).unwrap();
    shared().query("ALTER TABLE t_encode_reject.events MODIFY COLUMN page_urlport Nullable(UInt8)");
    let sink = rt.block_on(Sink::connect(&config)).unwrap();
    let mut events = sample::events(4);
    events[0].page_urlport = Some(80);
    events[2].page_urlport = Some(8080);
    let (_tx, mut stop) = no_stop();
    let d = rt
        .block_on(sink.deliver(0, &events, "t", &mut stop))
        .unwrap();
    assert_eq!(d.inserted, 3);
    assert_eq!(d.rejected.len(), 1);
    assert_eq!(d.rejected[0].0, 2);
    assert!(
        d.rejected[0].1.contains("page_urlport"),
        "{}",
        d.rejected[0].1
    );
}

#[test]
fn an_unknown_table_pauses_delivery_until_it_exists_and_stop_ends_the_wait() {
    let config = fresh("t_pause");
    let rt = rt();
    rt.block_on(migrate::init(&config)).unwrap();
    let sink = Arc::new(rt.block_on(Sink::connect(&config)).unwrap());
    shared().query("DROP TABLE t_pause.events");
    shared().query("DROP TABLE t_pause.schema_migrations");

    let (tx, stop) = no_stop();
    let task = {
        let sink = sink.clone();
        let mut stop = stop.clone();
        rt.spawn(async move {
            let events = sample::events(5);
            sink.deliver(3, &events, "t", &mut stop).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.paused_because().is_none() {
        assert!(Instant::now() < deadline, "delivery never paused");
        assert!(!task.is_finished(), "deliver returned instead of pausing");
        std::thread::sleep(Duration::from_millis(50));
    }
    let why = sink.paused_because().unwrap();
    assert!(why.contains("60") || why.contains("doesn't exist"), "{why}");
    assert!(!task.is_finished());

    // The operator fixes it: the same call completes and the pause clears.
    rt.block_on(migrate::init(&config)).unwrap();
    let d = rt.block_on(task).unwrap().unwrap();
    assert_eq!(d.inserted, 5);
    assert_eq!(sink.paused_because(), None);

    // Broken again: now stop ends the wait.
    shared().query("DROP TABLE t_pause.events");
    let task = {
        let sink = sink.clone();
        let mut stop = stop.clone();
        rt.spawn(async move { sink.deliver(3, &sample::events(2), "u", &mut stop).await })
    };
    while sink.paused_because().is_none() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "delivery never paused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tx.stop();
    let r = rt.block_on(task).unwrap();
    assert!(matches!(r, Err(SinkError::Stopped)), "{r:?}");
}

#[test]
fn deliver_returns_stopped_at_once_when_stop_is_already_true() {
    let config = fresh("t_stopped");
    let rt = rt();
    rt.block_on(migrate::init(&config)).unwrap();
    let sink = rt.block_on(Sink::connect(&config)).unwrap();
    let (tx, mut stop) = sluice::shutdown::channel();
    tx.stop();
    let r = rt.block_on(sink.deliver(0, &[Event::default()], "t", &mut stop));
    assert!(matches!(r, Err(SinkError::Stopped)), "{r:?}");
}

#[test]
fn an_unreachable_server_is_reported_as_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = shared().config("t_unreachable");
    config.url = format!("http://127.0.0.1:{port}");
    let err = rt().block_on(Sink::connect(&config)).unwrap_err();
    assert_eq!(err.code(), "unreachable", "{err}");
}
