//! The whole daemon against a real ClickHouse (18.16 here, or `SLUICE_TEST_CLICKHOUSE_URL`):
//! Snowplow requests go through the log, the real processor and sink into the table; a request
//! that cannot load goes to the dead-letter store; `wal replay` re-publishes with the recorded
//! batch boundaries.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use sluice::config::{Config, HumanDuration};
use sluice::sink::clickhouse::{migrate, Sink};
use support::clickhouse::shared;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn count(db: &str) -> u64 {
    shared()
        .query(&format!(
            "SELECT count() FROM {db}.events WHERE app_id = 'h4'"
        ))
        .trim()
        .parse()
        .unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stored_snowplow_requests_reach_clickhouse_and_bad_ones_are_dead_lettered() {
    const N: u64 = 20;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("sluice=debug")
        .with_test_writer()
        .try_init();
    let db = "t_publish_e2e";
    let ch = shared();
    ch.query(&format!("DROP DATABASE IF EXISTS {db}"));
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        clickhouse: ch.config(db),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.wal.partitions = 1;
    config.publish.batch_age = HumanDuration(Duration::from_millis(50));
    let runtime = rt();
    runtime.block_on(migrate::init(&config.clickhouse)).unwrap();
    let dedup = runtime
        .block_on(Sink::connect(&config.clickhouse))
        .unwrap()
        .supports_dedup();

    let server = runtime
        .block_on(sluice::server::start(config.clone()))
        .unwrap();
    let base = format!("http://{}", server.collector_addr);
    let client = reqwest::blocking::Client::new();
    for i in 0..N {
        let url = format!(
            "{base}/i?e=pv&tv=js-3.0.0&p=web&aid=h4&url=http%3A%2F%2Fexample.com%2Fp{i}\
             &eid=6a7b1f0e-0000-4000-8000-{i:012}"
        );
        let resp = client.get(url).send().unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    // Missing the required `e`, `p` and `tv`: can never load.
    let resp = client.get(format!("{base}/i?aid=h4&bad=1")).send().unwrap();
    assert!(resp.status().is_success());

    wait_until("every good event is in ClickHouse", || count(db) == N);
    wait_until("everything is checkpointed", || {
        server
            .ingest()
            .statuses()
            .iter()
            .all(|(_, s)| s.checkpoint == s.last_lsn)
    });
    runtime.block_on(server.shutdown()).unwrap();

    let sluice = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("SLUICE_CONFIG")
            .env("SLUICE_CLICKHOUSE__DATABASE", db)
            .output()
            .unwrap()
    };
    let o = sluice(&["dlq", "list", "--json"]);
    assert!(o.status.success(), "{o:?}");
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(
        entries[0]["envelope"]["query"], "aid=h4&bad=1",
        "the raw request is kept"
    );
    assert_eq!(entries[0]["attempts"], 1);

    // Replaying a dead letter that still cannot load keeps it, one attempt more.
    let id = entries[0]["id"].as_str().unwrap().to_string();
    let o = sluice(&["dlq", "replay", "--clickhouse-url", ch.url(), &id]);
    // Exit 3: the command ran, and an entry still cannot load.
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 failed again"),
        "{o:?}"
    );
    let o = sluice(&["dlq", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["attempts"], 2);

    // Re-publishing the whole log uses the recorded batches: a deduplicating server keeps one
    // copy, an old one gets the rows again (at least once).
    let o = sluice(&["wal", "replay", "--from", "1", "--clickhouse-url", ch.url()]);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains(&format!("{} records", N + 1)), "{text}");
    assert!(!text.contains("(0 with recorded boundaries)"), "{text}");
    assert_eq!(count(db), if dedup { N } else { 2 * N });
}
