//! `sluice serve` as an operator runs it: flags and environment configure it, SIGTERM and
//! SIGINT stop it with exit code 0, and what it acknowledged is visible to `sluice wal`.

mod cli_support;

use cli_support::sluice;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for the daemon to start or stop before giving up.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running daemon, killed if the test fails before stopping it.
struct Daemon {
    child: Child,
    collector: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sluice serve` on free ports and waits for its "listening" log line.
fn start(data_dir: &Path) -> Daemon {
    let mut child = sluice()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("SLUICE_WAL__PARTITIONS", "2")
        .env("SLUICE_WAL__CAPACITY", "16MiB")
        .env("SLUICE_WAL__SEGMENT_SIZE", "4MiB")
        .env("SLUICE_LOG__LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut daemon = Daemon {
        child,
        collector: "0.0.0.0:0".parse().unwrap(),
    };
    let mut seen = Vec::new();
    loop {
        let line = rx.recv_timeout(PATIENCE).unwrap_or_else(|e| {
            panic!("the daemon never logged `listening` ({e}); its stderr: {seen:#?}")
        });
        if line.contains("listening") {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("collector_addr="))
                .unwrap_or_else(|| panic!("no collector_addr in {line}"));
            daemon.collector = addr.parse().unwrap();
            // Keep draining stderr so the daemon never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return daemon;
        }
        seen.push(line);
    }
}

fn signal(daemon: &Daemon, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(daemon.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded) for the daemon to exit and returns its exit code.
fn wait_exit(daemon: &mut Daemon) -> Option<i32> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not stop after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_stops_with_exit_0_on_sigterm_and_its_records_are_visible_to_wal_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start(dir.path());

    let client = reqwest::blocking::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let url = format!(
        "http://{}/i?e=pv&url=http%3A%2F%2Fexample.com",
        daemon.collector
    );
    let answer = client.get(&url).send().unwrap();
    assert_eq!(answer.status(), 200);

    signal(&daemon, "TERM");
    assert_eq!(wait_exit(&mut daemon), Some(0));

    let out = sluice()
        .args(["wal", "inspect", "--json", "--data-dir"])
        .arg(dir.path())
        .env("SLUICE_WAL__PARTITIONS", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["route"], "/i");
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["query"], "e=pv&url=http%3A%2F%2Fexample.com");

    let out = sluice()
        .args(["wal", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn serve_stops_with_exit_0_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start(dir.path());
    signal(&daemon, "INT");
    assert_eq!(wait_exit(&mut daemon), Some(0));
}

#[test]
fn serve_exits_1_when_its_address_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = sluice()
        .args([
            "serve",
            "--metrics-listen",
            "127.0.0.1:0",
            "--listen",
            &addr,
            "--data-dir",
        ])
        .arg(dir.path())
        .env("SLUICE_WAL__PARTITIONS", "1")
        .env("SLUICE_WAL__CAPACITY", "16MiB")
        .env("SLUICE_WAL__SEGMENT_SIZE", "4MiB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("sluice: error:"), "{err}");
}
