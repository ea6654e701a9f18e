//! `sluice wal replay` and `sluice dlq replay` against a real ClickHouse (18.16 here, or
//! `SLUICE_TEST_CLICKHOUSE_URL`): off a terminal they draw no progress bar and end with one
//! summary line on stderr; `--json` prints one document on stdout.

mod cli_support;
mod support;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use cli_support::{run, sluice};
use serde_json::Value;
use sluice::config::{ByteSize, Config};
use sluice::envelope::Envelope;
use sluice::ingest::{partition_dir, wal_config};
use sluice_wal::Wal;
use support::clickhouse::shared;

const DB: &str = "t_cli_replay";
const RECORDS: u64 = 25;

/// The configuration the binary gets through the environment, as a struct for writing logs.
fn config(data_dir: &Path) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    c.wal.partitions = 1;
    c.wal.segment_size = ByteSize(4 << 20);
    c.wal.capacity = ByteSize(16 << 20);
    c
}

fn binary(data_dir: &Path) -> std::process::Command {
    let mut cmd = sluice();
    cmd.env("SLUICE_WAL__PARTITIONS", "1")
        .env("SLUICE_WAL__SEGMENT_SIZE", "4MiB")
        .env("SLUICE_WAL__CAPACITY", "16MiB")
        .env("SLUICE_DATA_DIR", data_dir)
        .env("SLUICE_CLICKHOUSE__URL", shared().url())
        .env("SLUICE_CLICKHOUSE__DATABASE", DB);
    cmd
}

/// `RECORDS` Snowplow page views in partition 0, as the collector stores them.
fn write_log(data_dir: &Path) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let wal = Wal::open(
        partition_dir(data_dir, 0),
        wal_config(
            &config(data_dir).wal,
            config(data_dir).max_record_bytes(),
            1,
        ),
    )
    .unwrap();
    for i in 0..RECORDS {
        let query = format!(
            "e=pv&tv=js-3.0.0&p=web&aid=cli-replay&url=http%3A%2F%2Fexample.com%2F{i}\
             &eid=6a7b1f0e-0000-4000-8000-{i:012}"
        );
        let envelope = Envelope {
            received_at_ms: now,
            route: "/i".into(),
            method: "GET".into(),
            path: "/i".into(),
            query: Some(query),
            headers: vec![("user-agent".into(), "cli-replay/1.0".into())],
            body: Vec::new(),
            peer: Some("192.0.2.7:5555".into()),
            nuid: None,
        };
        wal.append(envelope.encode()).unwrap();
    }
    wal.close().unwrap();
}

/// The summary line: exactly one stderr line from the command, no bar drawn.
fn summary_line<'a>(err: &'a str, command: &str) -> &'a str {
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "a bar was drawn: {err:?}"
    );
    let prefix = format!("sluice {command}: ");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0]
}

#[test]
fn replays_off_a_terminal_print_one_summary_line_and_json_on_request() {
    shared().query(&format!("DROP DATABASE IF EXISTS {DB}"));
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let (code, out, err) = run(binary(dir.path()).args(["db", "init"]));
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = run(binary(dir.path()).args(["wal", "replay", "--from", "1", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["records"], RECORDS);
    assert_eq!(v["inserted"], RECORDS);
    assert_eq!(v["partitions"][0]["from"], 1);
    assert_eq!(v["partitions"][0]["to"], RECORDS);
    let line = summary_line(&err, "wal replay");
    assert!(
        line.starts_with(&format!(
            "sluice wal replay: {RECORDS} records replayed in "
        )),
        "{line}"
    );
    let count = shared().query(&format!(
        "SELECT count() FROM {DB}.events WHERE app_id = 'cli-replay'"
    ));
    assert_eq!(count.trim(), RECORDS.to_string());

    // Text output: one line per partition and a total on stdout; the summary on stderr.
    let (code, out, err) = run(binary(dir.path()).args(["wal", "replay", "--from", "20"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("partition 0: LSN 20..=25: 6 records"), "{out}");
    assert!(out.contains("replayed 6 records"), "{out}");
    summary_line(&err, "wal replay");

    // Nothing in the dead-letter store: a replay of nothing still reports.
    let (code, out, err) = run(binary(dir.path()).args(["dlq", "replay", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["tried"], 0);
    assert_eq!(v["failed_again"], 0);
    let line = summary_line(&err, "dlq replay");
    assert!(
        line.starts_with("sluice dlq replay: 0 entries replayed, 0 loaded, 0 failed again in "),
        "{line}"
    );
}
