//! `sluice wal status|inspect|verify` against logs written directly with `sluice_wal::Wal`, as
//! the daemon writes them (one log per partition under `data_dir/wal/partition-NNN`).

mod cli_support;

use cli_support::run;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sluice::config::{ByteSize, Config};
use sluice::envelope::Envelope;
use sluice::ingest::{partition_dir, wal_config};
use sluice_wal::{Lsn, Wal};

/// Small segments so tests write little; the same values go to the binary through the
/// environment, so it reads the logs with the configuration that wrote them.
const ENV: [(&str, &str); 5] = [
    ("SLUICE_WAL__PARTITIONS", "2"),
    ("SLUICE_WAL__SEGMENT_SIZE", "64KiB"),
    ("SLUICE_WAL__CAPACITY", "1MiB"),
    ("SLUICE_SERVER__MAX_BODY_BYTES", "16KiB"),
    ("SLUICE_SERVER__MAX_HEADER_BYTES", "8KiB"),
];

fn config(data_dir: &Path) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    c.wal.partitions = 2;
    c.wal.segment_size = ByteSize(64 << 10);
    c.wal.capacity = ByteSize(1 << 20);
    c.server.max_body_bytes = ByteSize(16 << 10);
    c.server.max_header_bytes = ByteSize(8 << 10);
    c.validate().unwrap();
    c
}

fn open(data_dir: &Path, partition: usize) -> Wal {
    Wal::open(
        partition_dir(data_dir, partition),
        wal_config(
            &config(data_dir).wal,
            config(data_dir).max_record_bytes(),
            2,
        ),
    )
    .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The `i`-th test envelope of a partition; received an hour ago so its age is known to be
/// at least 3600 s.
fn envelope(partition: usize, i: u64) -> Envelope {
    Envelope {
        received_at_ms: now_ms() - 3_600_000 + i as i64,
        route: "/com.snowplowanalytics.snowplow/tp2".into(),
        method: "POST".into(),
        path: "/com.snowplowanalytics.snowplow/tp2".into(),
        query: Some(format!("p={partition}&i={i}")),
        headers: vec![
            ("user-agent".into(), "cli-test/1.0".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: format!("{{\"partition\":{partition},\"i\":{i}}}").into_bytes(),
        peer: Some("192.0.2.7:5555".into()),
        nuid: None,
    }
}

/// Partition 0: 5 records, confirmed up to 2. Partition 1: 3 records, none confirmed.
fn prepare(data_dir: &Path) {
    for (partition, count, confirmed) in [(0usize, 5u64, 2u64), (1, 3, 0)] {
        let wal = open(data_dir, partition);
        for i in 1..=count {
            let lsn = wal.append(envelope(partition, i).encode()).unwrap();
            assert_eq!(lsn, Lsn(i));
        }
        if confirmed > 0 {
            wal.checkpoint(Lsn(confirmed)).unwrap();
        }
        wal.close().unwrap();
    }
}

/// The binary with the test's configuration in its environment and no inherited `SLUICE_*`
/// variable.
fn sluice() -> Command {
    let mut cmd = cli_support::sluice();
    cmd.envs(ENV);
    cmd
}

/// `sluice wal <args> --data-dir DIR`
fn wal(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    run(sluice()
        .arg("wal")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir))
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn status_json_reports_each_partition_and_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let (code, out, err) = wal(dir.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();

    assert_eq!(v["appended_total"], 8);
    assert_eq!(v["unpublished"], 6);
    assert_eq!(v["capacity_bytes"], 1 << 20);
    assert_eq!(v["dropped_total"], 0);
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);

    let p0 = &parts[0];
    assert_eq!(p0["partition"], 0);
    assert_eq!(p0["appended_total"], 5);
    assert_eq!(p0["unpublished"], 3);
    assert_eq!(p0["first_lsn"], 1);
    assert_eq!(p0["last_lsn"], 5);
    assert_eq!(p0["checkpoint"], 2);
    assert_eq!(p0["capacity_bytes"], 512 << 10);
    assert!(p0["used_bytes"].as_u64().unwrap() > 0);

    let p1 = &parts[1];
    assert_eq!(p1["appended_total"], 3);
    assert_eq!(p1["unpublished"], 3);
    assert_eq!(p1["checkpoint"], 0);

    // Oldest unpublished: partition 0's LSN 3 and partition 1's LSN 1, received an hour ago.
    for p in [p0, p1, &v] {
        let age = p["oldest_unpublished_age_seconds"].as_f64().unwrap();
        assert!(age >= 3599.0, "{age}");
    }
    let total_used: u64 = parts
        .iter()
        .map(|p| p["used_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(v["used_bytes"].as_u64().unwrap(), total_used);
}

#[test]
fn status_shows_no_age_when_everything_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(dir.path(), 0);
    w.append(envelope(0, 1).encode()).unwrap();
    w.checkpoint(Lsn(1)).unwrap();
    w.close().unwrap();
    let (code, out, err) = wal(dir.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unpublished"], 0);
    assert_eq!(v["appended_total"], 1);
    assert!(v["oldest_unpublished_age_seconds"].is_null());
    assert!(v["partitions"][0]["oldest_unpublished_age_seconds"].is_null());
}

#[test]
fn status_works_while_a_writer_holds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(dir.path(), 0);
    for i in 1..=4 {
        w.append(envelope(0, i).encode()).unwrap();
    }
    let (code, out, err) = wal(dir.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["partitions"][0]["last_lsn"], 4);
    w.close().unwrap();
}

#[test]
fn status_text_is_a_table_with_a_total_row() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let (code, out, err) = wal(dir.path(), &["status"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with("partition") && lines[1].contains("unpublished"),
        "{out}"
    );
    let row = |prefix: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} row in {out}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("0 ")[..3], ["0", "5", "3"]);
    assert_eq!(row("1 ")[..3], ["1", "3", "3"]);
    assert_eq!(row("total")[..3], ["total", "8", "6"]);
}

#[test]
fn an_empty_data_dir_has_zero_status_and_nothing_to_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = wal(dir.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["appended_total"], 0);
    assert_eq!(v["unpublished"], 0);
    assert_eq!(v["partitions"].as_array().unwrap().len(), 0);

    let (code, out, _) = wal(dir.path(), &["verify"]);
    assert_eq!(code, 0);
    assert!(out.contains("no partitions"), "{out}");

    let (code, out, _) = wal(dir.path(), &["inspect", "--json"]);
    assert_eq!(code, 0);
    assert!(out.is_empty());
}

#[test]
fn inspect_json_prints_every_record_decoded_with_lsn_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let (code, out, err) = wal(dir.path(), &["inspect", "--json"]);
    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 8);
    let keys: Vec<(u64, u64)> = lines
        .iter()
        .map(|v| (v["partition"].as_u64().unwrap(), v["lsn"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            (0, 1),
            (0, 2),
            (0, 3),
            (0, 4),
            (0, 5),
            (1, 1),
            (1, 2),
            (1, 3)
        ]
    );
    for v in &lines {
        let (p, i) = (
            v["partition"].as_u64().unwrap() as usize,
            v["lsn"].as_u64().unwrap(),
        );
        let expected = envelope(p, i);
        assert_eq!(v["route"], expected.route.as_str());
        assert_eq!(v["method"], "POST");
        assert_eq!(v["query"], expected.query.as_deref().unwrap());
        assert_eq!(
            v["body"],
            format!("{{\"partition\":{p},\"i\":{i}}}").as_str()
        );
        assert_eq!(v["peer"], "192.0.2.7:5555");
        assert_eq!(v["headers"][0][1], "cli-test/1.0");
    }
}

#[test]
fn inspect_honours_partition_from_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let (code, out, err) = wal(
        dir.path(),
        &[
            "inspect",
            "--json",
            "--partition",
            "0",
            "--from",
            "3",
            "--limit",
            "2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lsns: Vec<u64> = json_lines(&out)
        .iter()
        .map(|v| {
            assert_eq!(v["partition"], 0);
            v["lsn"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(lsns, [3, 4]);

    // The limit applies per partition.
    let (_, out, _) = wal(dir.path(), &["inspect", "--json", "--limit", "1"]);
    let keys: Vec<(u64, u64)> = json_lines(&out)
        .iter()
        .map(|v| (v["partition"].as_u64().unwrap(), v["lsn"].as_u64().unwrap()))
        .collect();
    assert_eq!(keys, [(0, 1), (1, 1)]);

    // An unknown partition is a usage error (see `an_unknown_partition_is_a_usage_error`).
    let (code, _, err) = wal(dir.path(), &["inspect", "--partition", "7"]);
    assert_eq!(code, 2);
    assert!(err.contains("partition 7 does not exist"), "{err}");
}

#[test]
fn inspect_text_prints_one_readable_line_per_record() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let (code, out, err) = wal(dir.path(), &["inspect", "--partition", "1"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("p1 lsn=1 "), "{out}");
    assert!(
        lines[0].contains("POST /com.snowplowanalytics.snowplow/tp2"),
        "{out}"
    );
    assert!(lines[0].contains("query=p=1&i=1"), "{out}");
    assert!(lines[0].contains("peer=192.0.2.7:5555"), "{out}");
}

#[test]
fn inspect_reports_an_undecodable_record_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(dir.path(), 0);
    w.append(envelope(0, 1).encode()).unwrap();
    w.append(vec![99, 1, 2, 3]).unwrap(); // an envelope version that does not exist
    w.append(envelope(0, 3).encode()).unwrap();
    w.close().unwrap();

    let (code, out, _) = wal(dir.path(), &["inspect", "--json"]);
    assert_eq!(code, 3, "{out}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["lsn"], 2);
    assert_eq!(lines[1]["error_code"], "unsupported_version");
    assert_eq!(lines[2]["lsn"], 3);
    assert_eq!(lines[2]["query"], "p=0&i=3");

    let (code, out, err) = wal(dir.path(), &["inspect"]);
    assert_eq!(code, 3);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1].starts_with("p0 lsn=2 ERROR"), "{out}");
    assert!(lines[2].starts_with("p0 lsn=3 "), "{out}");
    assert_eq!(lines[3], "1 record(s) could not be decoded");
    assert!(err.contains("problems found"), "{err}");
}

#[test]
fn verify_passes_on_a_sound_log() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let (code, out, err) = wal(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("partition 0"), "{out}");
    assert!(out.contains("5 record(s)"), "{out}");
    assert!(out.contains("checkpoint 2"), "{out}");
    assert!(out.contains("partition 1"), "{out}");
    assert!(out.contains("every record checks"), "{out}");
}

fn segment_path(data_dir: &Path, partition: usize) -> PathBuf {
    partition_dir(data_dir, partition).join("ring-0000.seg")
}

#[test]
fn verify_exits_3_naming_segment_file_and_offset_of_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    // Records start at byte 64 (after the segment header); a frame is a 16-byte header plus
    // the payload. Flip a byte inside the first record's payload: records after it are intact,
    // so this is corruption in the middle of the log, not a torn tail.
    let seg = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 16 + 10] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();

    let (code, out, err) = wal(dir.path(), &["verify"]);
    assert_eq!(code, 3, "{out}{err}");
    let problem = out
        .lines()
        .find(|l| l.contains("problem:"))
        .unwrap_or_else(|| panic!("no problem line in {out}"));
    assert!(problem.contains(&seg.display().to_string()), "{problem}");
    assert!(problem.contains("offset 64"), "{problem}");
    // The untouched partition still checks.
    assert!(out.contains("partition 1"), "{out}");
}

#[test]
fn status_of_a_corrupt_partition_fails_but_reports_the_others() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let seg = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 16 + 10] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();

    let (code, out, err) = wal(dir.path(), &["status", "--json"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("could not be read"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["partitions"].as_array().unwrap().len(), 1);
    assert_eq!(v["partitions"][0]["partition"], 1);
    assert_eq!(v["errors"][0]["partition"], 0);
    assert!(v["errors"][0]["error"]
        .as_str()
        .unwrap()
        .contains("corruption"));
}

#[test]
fn data_dir_comes_from_the_environment_when_no_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let mut cmd = sluice();
    cmd.env("SLUICE_DATA_DIR", dir.path())
        .args(["wal", "status", "--json"]);
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["appended_total"], 8);
}

#[test]
fn verify_notes_a_torn_tail_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(dir.path(), 0);
    let mut end = 64u64;
    for i in 1..=3 {
        let payload = envelope(0, i).encode();
        end += 16 + payload.len() as u64;
        w.append(payload).unwrap();
    }
    w.close().unwrap();
    // Half a write that was never acknowledged: a frame header whose checksum cannot match.
    let seg = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = end as usize;
    bytes[at..at + 16].copy_from_slice(&[10, 0, 0, 0, 1, 2, 3, 4, 4, 0, 0, 0, 0, 0, 0, 0]);
    std::fs::write(&seg, &bytes).unwrap();

    let (code, out, err) = wal(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 record(s)"), "{out}");
    let note = out
        .lines()
        .find(|l| l.contains("torn tail"))
        .unwrap_or_else(|| panic!("no torn tail note in {out}"));
    assert!(note.contains(&format!("offset {end}")), "{note}");
    assert!(out.contains("every record checks"), "{out}");
}

#[test]
fn verify_json_is_one_document_and_corruption_exits_3_with_the_spot_named() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let (code, out, err) = wal(dir.path(), &["verify", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["records"], 8);
    assert_eq!(v["partitions"][0]["records"], 5);
    assert_eq!(v["partitions"][0]["checkpoint"], 2);
    assert_eq!(v["partitions"][1]["problems"], serde_json::json!([]));

    let seg = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 16 + 10] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let (code, out, err) = wal(dir.path(), &["verify", "--json"]);
    assert_eq!(code, 3, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"], 1);
    let problem = &v["partitions"][0]["problems"][0];
    assert_eq!(problem["path"], seg.display().to_string().as_str());
    assert_eq!(problem["offset"], 64);
}

#[test]
fn verify_off_a_terminal_draws_no_bar_and_ends_with_one_summary_line_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    // The test harness captures stderr through a pipe: not a terminal.
    let (code, out, err) = wal(dir.path(), &["verify", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str::<Value>(&out).expect("stdout stays one JSON document");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(
            "sluice wal verify: 8 record(s) in 2 partition(s) checked, 0 problem(s), 0 unreadable partition(s) in "
        ),
        "{err}"
    );
}

#[test]
fn an_unknown_partition_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    for args in [
        &["inspect", "--partition", "7"][..],
        &["tail", "--partition", "7", "--count", "1"],
    ] {
        let (code, _, err) = wal(dir.path(), args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("partition 7 does not exist"), "{err}");
    }
    let (code, _, err) = wal(dir.path(), &["replay", "--from", "5", "--to", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--from 5 is after --to 1"), "{err}");
}

/// Runs `sluice wal tail` in the background; its stdout lines arrive on a channel. Killed on
/// drop.
struct Tail {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Tail {
    fn start(data_dir: &Path, args: &[&str]) -> Tail {
        use std::io::BufRead;
        let mut child = sluice()
            .args(["wal", "tail", "--interval", "20ms", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tail { child, lines }
    }

    /// The next line, waiting at most 30 s.
    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("wal tail printed nothing new");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Waits for the process to end by itself (at most 30 s): its exit code.
    fn wait(mut self) -> i32 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "wal tail did not stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tail_starts_with_the_newest_records_and_stops_after_count() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let tail = Tail::start(
        dir.path(),
        &["--partition", "0", "--lines", "2", "--count", "2", "--json"],
    );
    let (a, b) = (tail.next(), tail.next());
    assert_eq!(
        (a["partition"].clone(), a["lsn"].clone()),
        (0.into(), 4.into())
    );
    assert_eq!(b["lsn"], 5);
    assert_eq!(b["query"], "p=0&i=5");
    assert_eq!(tail.wait(), 0);
}

#[test]
fn tail_follows_records_appended_after_it_started_including_a_new_partition() {
    let dir = tempfile::tempdir().unwrap();
    // Partition 0 only, 3 records.
    let w = open(dir.path(), 0);
    for i in 1..=3 {
        w.append(envelope(0, i).encode()).unwrap();
    }
    let tail = Tail::start(dir.path(), &["--lines", "1", "--count", "5", "--json"]);
    // The newest existing record first: the tail has read the logs once.
    assert_eq!(tail.next()["lsn"], 3);

    // New records in partition 0, and a partition that did not exist when the tail started
    // (everything in it is new).
    for i in 4..=5 {
        w.append(envelope(0, i).encode()).unwrap();
    }
    w.close().unwrap();
    let w1 = open(dir.path(), 1);
    for i in 1..=2 {
        w1.append(envelope(1, i).encode()).unwrap();
    }
    w1.close().unwrap();

    let mut seen: Vec<(u64, u64)> = (0..4)
        .map(|_| {
            let v = tail.next();
            (v["partition"].as_u64().unwrap(), v["lsn"].as_u64().unwrap())
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [(0, 4), (0, 5), (1, 1), (1, 2)]);
    assert_eq!(tail.wait(), 0);
}

#[test]
fn tail_text_lines_match_inspect() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let (code, tail_out, err) = wal(
        dir.path(),
        &["tail", "--partition", "1", "--lines", "3", "--count", "3"],
    );
    assert_eq!(code, 0, "{err}");
    let (_, inspect_out, _) = wal(dir.path(), &["inspect", "--partition", "1"]);
    assert_eq!(tail_out, inspect_out);
}

#[test]
fn verify_on_a_terminal_draws_a_progress_bar_then_the_summary_line() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    // `script` (util-linux) runs the command with a pseudo-terminal as its stdin/out/err.
    let command = format!(
        "{} wal verify --data-dir {}",
        env!("CARGO_BIN_EXE_sluice"),
        dir.path().display()
    );
    let (code, out, err) = run(Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .envs(ENV)
        .env("TERM", "xterm")
        .env_remove("SLUICE_CONFIG"));
    assert_eq!(code, 0, "{out}{err}");
    let bar = out
        .find("wal verify partition")
        .unwrap_or_else(|| panic!("no progress bar drawn: {out:?}"));
    let report = out.find("every record checks").unwrap();
    let summary = out
        .find("sluice wal verify: 8 record(s) in 2 partition(s) checked")
        .unwrap();
    assert!(bar < report && report < summary, "{out:?}");
}
