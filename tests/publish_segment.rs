//! The JSON sources against a real ClickHouse (18.16 here, or `SLUICE_TEST_CLICKHOUSE_URL`):
//! stored Segment, pycolytics and `/collect` requests go through the publisher (the real
//! processor and sink) into `sluice.events`, bad batch items into the dead-letter store; and
//! migration 2 brings a table created before these sources up to date.

mod support;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::config::{ByteSize, Config, HumanDuration};
use sluice::deadletter::{Filter, Store};
use sluice::envelope::Envelope;
use sluice::event::{FailureCategory, COLUMNS};
use sluice::publish::process::Processor;
use sluice::publish::{PublishConfig, Publishers, Shared};
use sluice::sink::clickhouse::migrate::{self, column_type};
use sluice::sink::clickhouse::Sink;
use sluice_wal::{Wal, WalConfig};
use support::clickhouse::shared;

const RECEIVED: i64 = 1_700_000_100_000;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn envelope(route: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Envelope {
    Envelope {
        received_at_ms: RECEIVED,
        route: route.into(),
        method: "POST".into(),
        path: path.into(),
        query: None,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body,
        peer: Some("198.51.100.7:40000".into()),
        nuid: None,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rows of `sql` (which must end in `FORMAT JSONEachRow`).
fn rows(sql: &str) -> Vec<Value> {
    shared()
        .query(sql)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn segment_pycolytics_and_collect_requests_land_in_clickhouse_with_their_columns() {
    let db = "t_publish_segment";
    let ch = shared();
    ch.query(&format!("DROP DATABASE IF EXISTS {db}"));
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        clickhouse: ch.config(db),
        ..Config::default()
    };
    config.segment.max_event_bytes = ByteSize(2 << 10);
    let runtime = rt();
    runtime.block_on(migrate::init(&config.clickhouse)).unwrap();
    let sink = Arc::new(runtime.block_on(Sink::connect(&config.clickhouse)).unwrap());

    let wal = Arc::new(
        Wal::open(
            dir.path().join("wal/partition-000"),
            WalConfig {
                segment_bytes: 256 << 10,
                capacity_bytes: 4 << 20,
                max_record_bytes: 64 << 10,
                ..WalConfig::default()
            },
        )
        .unwrap(),
    );
    let json = [("content-type", "application/json")];
    let batch = format!(
        r#"{{"writeKey":"secret-write-key","sentAt":"2023-11-14T22:13:22.000Z",
        "context":{{"library":{{"name":"analytics-python","version":"2.3.4"}}}},
        "batch":[
          {{"type":"track","event":"Order Completed","userId":"u-1","messageId":"m-track",
            "timestamp":"2023-11-14T22:13:20.000Z","properties":{{"total":30}},
            "context":{{"ip":"203.0.113.9","campaign":{{"source":"news"}},
              "page":{{"url":"https://shop.example/cart?utm_medium=email","title":"Cart"}}}}}},
          {{"type":"identify","anonymousId":"a-1","messageId":"m-identify","traits":{{"plan":"pro"}}}},
          {{"type":"page","userId":"u-1","messageId":"m-page","name":"Pricing"}},
          {{"type":"screen","userId":"u-1","messageId":"m-screen","name":"Home",
            "context":{{"app":{{"name":"Shop","version":"3.1"}}}}}},
          {{"type":"group","userId":"u-1","messageId":"m-group","groupId":"acme"}},
          {{"type":"alias","userId":"u-1","messageId":"m-alias","previousId":"a-1"}},
          {{"type":"track","userId":"u-1","messageId":"m-bad"}},
          {{"type":"track","event":"Big","userId":"u-1","properties":{{"pad":"{}"}}}}
        ]}}"#,
        "x".repeat(3 << 10)
    );
    let single = br#"{"userId":"u-2","event":"Zipped","messageId":"0b5e4d3c-1a2b-4c3d-8e9f-0123456789ab","writeKey":"secret-write-key"}"#;
    let envelopes = [
        envelope("/v1/batch", "/v1/batch", &json, batch.into_bytes()),
        envelope(
            "/v1/t",
            "/v1/t",
            &[("content-type", "text/plain"), ("content-encoding", "gzip")],
            gzip(single),
        ),
        envelope(
            "/v1.0/event",
            "/v1.0/event",
            &[("user-agent", "GodotEngine/4.2.1.stable (Linux)")],
            br#"{"event_type":"level_up","application":"game","version":"1.2","platform":"linux",
                "user_id":"p-1","session_id":"s-1","value":{"level":3},"api_key":"secret-api-key"}"#
                .to_vec(),
        ),
        envelope(
            "/v1.0/events",
            "/v1.0/events",
            &json,
            br#"[{"event_type":"quit","application":"game","version":"1.2","platform":"linux",
                "user_id":"p-1","session_id":"s-1"}]"#
                .to_vec(),
        ),
        envelope(
            "/collect/{stream}",
            "/collect/sign%20ups",
            &json,
            br#"[{"plan":"pro"},{"type":"track","event":"Signed Up","userId":"c-1","messageId":"m-collect"}]"#
                .to_vec(),
        ),
        envelope("/collect", "/collect", &json, br#"{"hello":"world"}"#.to_vec()),
    ];
    let mut last = None;
    for e in &envelopes {
        last = Some(wal.append(e.encode()).unwrap());
    }
    let last = last.unwrap();

    let store = Store::open(&dir.path().join("deadletter")).unwrap();
    let publishers = Publishers::start(
        vec![(0, wal.clone())],
        Shared {
            processor: Arc::new(
                Processor::new(
                    &config.enrich,
                    config.process_limits(),
                    sluice::instance::InstanceId::from_u64(0),
                )
                .unwrap(),
            ),
            sink,
            dead_letters: store.clone(),
            config: PublishConfig {
                batch_age: HumanDuration(Duration::from_millis(50)),
                ..PublishConfig::default()
            },
            runtime: runtime.handle().clone(),
            data_dir: dir.path().to_path_buf(),
            instance: sluice::instance::InstanceId::from_u64(0),
            health: Default::default(),
        },
    )
    .unwrap();
    wait_until("every request is checkpointed", || {
        wal.status().checkpoint >= last
    });
    let (late, error) = publishers.stop();
    assert!(late.is_empty() && error.is_none(), "{late:?} {error:?}");

    let got = rows(&format!(
        "SELECT source, stream, event, event_name, user_id, anonymous_id, message_id, \
         toString(event_id) AS event_id, properties, traits, context, app_id, app_version, \
         platform, domain_sessionid, name_tracker, v_tracker, page_url, page_urlhost, page_title, \
         mkt_source, mkt_medium, user_ipaddress, useragent, \
         toUnixTimestamp(collector_tstamp) AS collector, \
         toUnixTimestamp(dvce_created_tstamp) AS created, \
         toUnixTimestamp(dvce_sent_tstamp) AS sent, toUnixTimestamp(derived_tstamp) AS derived, \
         toUInt32(wal_lsn) AS wal_lsn, toUInt32(wal_index) AS wal_index \
         FROM {db}.events ORDER BY wal_lsn, wal_index FORMAT JSONEachRow"
    ));
    let all = serde_json::to_string(&got).unwrap();
    assert!(!all.contains("secret-write-key") && !all.contains("secret-api-key"));
    let keys: Vec<(u64, u64, &str, &str)> = got
        .iter()
        .map(|r| {
            (
                r["wal_lsn"].as_u64().unwrap(),
                r["wal_index"].as_u64().unwrap(),
                r["source"].as_str().unwrap(),
                r["event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            (1, 0, "segment", "track"),
            (1, 1, "segment", "identify"),
            (1, 2, "segment", "page"),
            (1, 3, "segment", "screen"),
            (1, 4, "segment", "group"),
            (1, 5, "segment", "alias"),
            (2, 0, "segment", "track"),
            (3, 0, "pycolytics", "pycolytics"),
            (4, 0, "pycolytics", "pycolytics"),
            (5, 0, "collect", "collect"),
            (5, 1, "collect", "track"),
            (6, 0, "collect", "collect"),
        ]
    );
    let track = &got[0];
    let expect = |row: &Value, pairs: &[(&str, Value)]| {
        for (k, v) in pairs {
            assert_eq!(&row[*k], v, "{k} in {row}");
        }
    };
    use serde_json::json;
    expect(
        track,
        &[
            ("stream", Value::Null),
            ("event_name", json!("Order Completed")),
            ("user_id", json!("u-1")),
            ("message_id", json!("m-track")),
            ("properties", json!(r#"{"total":30}"#)),
            ("name_tracker", json!("analytics-python")),
            ("v_tracker", json!("2.3.4")),
            (
                "page_url",
                json!("https://shop.example/cart?utm_medium=email"),
            ),
            ("page_urlhost", json!("shop.example")),
            ("page_title", json!("Cart")),
            ("mkt_source", json!("news")),
            ("mkt_medium", json!("email")),
            ("user_ipaddress", json!("203.0.113.9")),
            ("collector", json!((RECEIVED / 1000) as u64)),
            ("created", json!(1_700_000_000u64)),
            ("sent", json!(1_700_000_002u64)),
            ("derived", json!((RECEIVED / 1000 - 2) as u64)),
        ],
    );
    expect(
        &got[1],
        &[
            ("anonymous_id", json!("a-1")),
            ("user_id", Value::Null),
            ("traits", json!(r#"{"plan":"pro"}"#)),
            ("user_ipaddress", json!("198.51.100.7")),
        ],
    );
    expect(&got[2], &[("event_name", json!("Pricing"))]);
    expect(
        &got[3],
        &[
            ("event_name", json!("Home")),
            ("app_id", json!("Shop")),
            ("app_version", json!("3.1")),
        ],
    );
    expect(&got[4], &[("properties", json!(r#"{"groupId":"acme"}"#))]);
    expect(&got[5], &[("properties", json!(r#"{"previousId":"a-1"}"#))]);
    expect(
        &got[6],
        &[
            ("event_name", json!("Zipped")),
            ("event_id", json!("0b5e4d3c-1a2b-4c3d-8e9f-0123456789ab")),
        ],
    );
    expect(
        &got[7],
        &[
            ("event_name", json!("level_up")),
            ("app_id", json!("game")),
            ("app_version", json!("1.2")),
            ("platform", json!("linux")),
            ("user_id", json!("p-1")),
            ("domain_sessionid", json!("s-1")),
            ("properties", json!(r#"{"level":3}"#)),
            ("useragent", json!("GodotEngine/4.2.1.stable (Linux)")),
        ],
    );
    expect(
        &got[8],
        &[("event_name", json!("quit")), ("properties", json!("{}"))],
    );
    expect(
        &got[9],
        &[
            ("stream", json!("sign ups")),
            ("properties", json!(r#"{"plan":"pro"}"#)),
        ],
    );
    expect(
        &got[10],
        &[
            ("stream", json!("sign ups")),
            ("event_name", json!("Signed Up")),
            ("message_id", json!("m-collect")),
        ],
    );
    expect(
        &got[11],
        &[
            ("stream", Value::Null),
            ("properties", json!(r#"{"hello":"world"}"#)),
        ],
    );
    // Every row has an event id, and Segment's are the same on a replay (from messageId).
    let ids: std::collections::HashSet<_> = got.iter().map(|r| r["event_id"].clone()).collect();
    assert_eq!(ids.len(), got.len());

    // The two bad batch items are dead-lettered with their index; the rest of the batch loaded.
    let mut dead: Vec<_> = store
        .list(&Filter::default())
        .unwrap()
        .into_iter()
        .map(|e| (e.id.lsn, e.event_index(), e.category))
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        vec![
            (1, Some(6), FailureCategory::SchemaViolation),
            (1, Some(7), FailureCategory::SizeViolation),
        ]
    );
    drop(store);
    Arc::try_unwrap(wal).ok().unwrap().close().unwrap();
    runtime.shutdown_background();
}

#[test]
fn migration_2_adds_the_source_columns_to_a_table_created_before_them() {
    let db = "t_migrate_sources";
    let ch = shared();
    ch.query(&format!("DROP DATABASE IF EXISTS {db}"));
    let config = ch.config(db);
    let runtime = rt();
    let version = runtime
        .block_on(async {
            let client = sluice::sink::clickhouse::client::Client::new(&config).unwrap();
            migrate::server_version(&client, &config).await
        })
        .unwrap();
    let f = version.features();
    // The table as migration 1 created it before the JSON sources existed.
    let old: Vec<String> = COLUMNS
        .iter()
        .filter(|c| !migrate::SOURCE_COLUMNS.contains(&c.name))
        .map(|c| format!("`{}` {}", c.name, column_type(c, f)))
        .collect();
    ch.query(&format!("CREATE DATABASE {db}"));
    ch.query(&format!(
        "CREATE TABLE {db}.events ({}) ENGINE = MergeTree PARTITION BY toYYYYMM(collector_tstamp) \
         ORDER BY (app_id, event, toDate(collector_tstamp), event_id)",
        old.join(", ")
    ));
    ch.query(&format!(
        "CREATE TABLE {db}.schema_migrations (version UInt32, name String, applied_at DateTime) \
         ENGINE = MergeTree ORDER BY version"
    ));
    ch.query(&format!(
        "INSERT INTO {db}.schema_migrations VALUES (1, 'create_events', now())"
    ));
    ch.query(&format!(
        "INSERT INTO {db}.events (event_id, app_id, collector_tstamp, event, v_collector) \
         VALUES ('0b5e4d3c-1a2b-4c3d-8e9f-0123456789ab', 'old', '2023-11-14 22:13:20', 'page_view', 'sluice')"
    ));
    let before = runtime.block_on(migrate::check(&config)).unwrap();
    assert!(before.ok(), "the old table still works: {before:?}");
    assert_eq!(before.missing_optional.len(), migrate::SOURCE_COLUMNS.len());

    let report = runtime.block_on(migrate::init(&config)).unwrap();
    assert_eq!(report.applied, vec![(2, "add_source_columns".to_string())]);
    assert_eq!(report.already_applied, vec![1]);
    let names: Vec<String> = ch
        .query(&format!(
            "SELECT name FROM system.columns WHERE database = '{db}' AND table = 'events' \
             FORMAT TabSeparated"
        ))
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(
        names, expected,
        "a migrated table has a new table's column order"
    );
    assert_eq!(
        ch.query(&format!(
            "SELECT source, stream FROM {db}.events FORMAT TabSeparated"
        )),
        "snowplow\t\\N\n",
        "rows stored before the migration read as Snowplow's"
    );
    let after = runtime.block_on(migrate::check(&config)).unwrap();
    assert!(after.ok(), "{after:?}");
    assert!(after.missing_optional.is_empty(), "{after:?}");
    assert_eq!(after.migrations, vec![1, 2]);
    let again = runtime.block_on(migrate::init(&config)).unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, vec![1, 2]);

    // A fresh database gets the whole table from migration 1; migration 2 finds nothing to do.
    let fresh = ch.config("t_migrate_sources_fresh");
    ch.query("DROP DATABASE IF EXISTS t_migrate_sources_fresh");
    let report = runtime.block_on(migrate::init(&fresh)).unwrap();
    assert_eq!(report.applied.len(), 2);
    let check = runtime.block_on(migrate::check(&fresh)).unwrap();
    assert!(check.ok() && check.missing_optional.is_empty(), "{check:?}");
    runtime.shutdown_background();
}
