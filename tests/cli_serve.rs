//! `sluice serve` as an operator runs it: flags and environment configure it, SIGTERM and
//! SIGINT stop it with exit code 0, and what it acknowledged is visible to `sluice wal`.

mod cli_support;

use cli_support::daemon::{serve, Daemon, PATIENCE};
use cli_support::sluice;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A daemon started by [`start_with`], with its listeners' addresses.
struct Running {
    daemon: Daemon,
    collector: SocketAddr,
    metrics: SocketAddr,
}

/// Starts `sluice serve` on free ports and waits for its "listening" log line.
fn start(data_dir: &Path) -> Running {
    start_with(data_dir, &[])
}

/// [`start`] with more environment variables.
fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Running {
    let daemon = Daemon::spawn(
        serve(data_dir)
            .env("SLUICE_WAL__PARTITIONS", "2")
            .env("SLUICE_WAL__CAPACITY", "16MiB")
            .env("SLUICE_WAL__SEGMENT_SIZE", "4MiB")
            .env("SLUICE_LOG__LEVEL", "info")
            .envs(env.iter().copied()),
    );
    let (collector, metrics) = daemon.listening();
    Running {
        daemon,
        collector,
        metrics,
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

    daemon.daemon.signal("TERM");
    assert_eq!(daemon.daemon.wait_exit(), Some(0));

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
    daemon.daemon.signal("INT");
    assert_eq!(daemon.daemon.wait_exit(), Some(0));
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
            "--admin-listen",
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

#[test]
fn sigterm_cuts_off_a_stalled_request_after_the_configured_grace_and_exits_0() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    // Only the grace period can end the stalled request (its body timeout is 10 minutes).
    let mut daemon = start_with(
        dir.path(),
        &[
            ("SLUICE_SERVER__SHUTDOWN_GRACE", "300ms"),
            ("SLUICE_SERVER__REQUEST_TIMEOUT", "10m"),
        ],
    );
    let mut stalled = std::net::TcpStream::connect(daemon.collector).unwrap();
    stalled
        .write_all(b"POST /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n01234")
        .unwrap();
    // Wait until the daemon is inside the stalled request.
    let client = reqwest::blocking::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let text = client
            .get(format!("http://{}/metrics", daemon.metrics))
            .send()
            .unwrap()
            .text()
            .unwrap();
        if text.contains("sluice_http_requests_in_flight 1\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request never reached the handler"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    daemon.daemon.signal("TERM");
    assert_eq!(daemon.daemon.wait_exit(), Some(0));
    let logs: Vec<String> = daemon.daemon.lines.try_iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("shutting down") && l.contains("SIGTERM") && l.contains("300ms")),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("connections still open after server.shutdown_grace")),
        "{logs:#?}"
    );
    // The stalled client sees its connection closed without an answer.
    stalled.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = Vec::new();
    let read = stalled.read_to_end(&mut buf);
    assert!(
        read.is_err() || buf.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[test]
fn sighup_applies_new_write_keys_names_restart_only_changes_and_ignores_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, "[server]\nretry_after = \"1s\"\n").unwrap();
    let config = file.to_str().unwrap();
    let mut daemon = start_with(&dir.path().join("data"), &[("SLUICE_CONFIG", config)]);
    let client = reqwest::blocking::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let url = format!("http://{}/v1/track", daemon.collector);
    let track = |key: Option<&str>| {
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(r#"{"userId":"u1","event":"Signed Up"}"#);
        if let Some(key) = key {
            req = req.basic_auth(key, Some(""));
        }
        req.send().unwrap().status().as_u16()
    };
    assert_eq!(track(None), 200, "no keys configured: open");

    std::fs::write(
        &file,
        "[server]\nretry_after = \"2s\"\n[segment]\nwrite_keys = [\"k1\"]\n",
    )
    .unwrap();
    daemon.daemon.signal("HUP");
    let warning = daemon
        .daemon
        .until_all(&["restart", "server.retry_after"])
        .pop()
        .unwrap();
    assert!(!warning.contains("segment.write_keys"), "{warning}");
    assert_eq!(track(None), 401, "the reloaded key list applies");
    assert_eq!(track(Some("wrong")), 401);
    assert_eq!(track(Some("k1")), 200);

    std::fs::write(&file, "[segment]\nwrite_keys = \"not a list\"\n").unwrap();
    daemon.daemon.signal("HUP");
    daemon
        .daemon
        .until_all(&["SIGHUP", "keeping the current one"]);
    assert_eq!(track(None), 401, "an unreadable file changes nothing");
    assert_eq!(track(Some("k1")), 200);

    daemon.daemon.signal("TERM");
    assert_eq!(daemon.daemon.wait_exit(), Some(0));
}
