//! Logging: the global subscriber's level can be changed while running (for SIGHUP), the JSON
//! format writes one object per line, and at the default level nothing a client sent (body,
//! query, keys) nor its address reaches the log.

mod cli_support;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use cli_support::daemon::{serve, Daemon, PATIENCE};
use sluice::config::{LogConfig, LogFormat};
use sluice::logging;

/// A writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Captured {
        self.clone()
    }
}

/// The only test in this binary that installs the global subscriber.
#[test]
fn set_level_changes_the_global_filter_and_refuses_a_bad_one() {
    assert!(matches!(
        logging::set_level("debug"),
        Err(logging::LogError::NotInitialised)
    ));
    let out = Captured::default();
    let config = LogConfig {
        level: "warn".into(),
        format: LogFormat::Json,
    };
    logging::init_with_writer(&config, out.clone(), false).unwrap();
    let err = logging::init_with_writer(&config, out.clone(), false).unwrap_err();
    assert_eq!(err.code(), "already_initialised");

    tracing::info!("before: hidden");
    logging::set_level("sluice=debug,info").unwrap();
    assert_eq!(logging::current_level().unwrap(), "sluice=debug,info");
    tracing::info!("after: shown");
    let err = logging::set_level("=[nonsense").unwrap_err();
    assert_eq!(err.code(), "bad_filter");
    assert_eq!(logging::current_level().unwrap(), "sluice=debug,info");

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains("before: hidden"), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["fields"]["message"], "after: shown");
}

/// `sluice serve` on free ports with `env` and nothing to publish to (the publisher retries in
/// the background).
fn start(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
    Daemon::spawn(
        serve(data_dir)
            .env("SLUICE_WAL__PARTITIONS", "1")
            .env("SLUICE_WAL__CAPACITY", "16MiB")
            .env("SLUICE_WAL__SEGMENT_SIZE", "4MiB")
            .env("SLUICE_CLICKHOUSE__URL", "http://127.0.0.1:9")
            .envs(env.iter().copied()),
    )
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &[("SLUICE_LOG__FORMAT", "json")]);
    let mut lines = daemon.until("listening");
    lines.extend(daemon.stop());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"collector_addr\"")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{lines:#?}"
    );
}

#[test]
fn default_level_logs_hold_no_bodies_keys_queries_or_client_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &[]);
    let mut lines = daemon.until("listening");
    let addr = lines
        .last()
        .unwrap()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("collector_addr="))
        .unwrap()
        .to_string();

    let mut client_ports = Vec::new();
    for request in [
        "GET /i?e=pv&aid=sentinel-query HTTP/1.1\r\nhost: x\r\nx-api-key: sentinel-key\r\nconnection: close\r\n\r\n".to_string(),
        format!(
            "POST /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             authorization: Basic c2VudGluZWwtYXV0aA==\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            "{\"sentinel-body\":1}".len(),
            "{\"sentinel-body\":1}"
        ),
        // Malformed requests take error paths.
        "POST /v1/track HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nnot{j".to_string(),
        "GARBAGE sentinel-garbage\r\n\r\n".to_string(),
    ] {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        client_ports.push(conn.local_addr().unwrap().port());
        conn.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
    }
    lines.extend(daemon.stop());
    let log = lines.join("\n");
    for secret in [
        "sentinel-query",
        "sentinel-key",
        "sentinel-body",
        "c2VudGluZWwtYXV0aA",
        "sentinel-garbage",
    ] {
        assert!(!log.contains(secret), "`{secret}` was logged:\n{log}");
    }
    for port in client_ports {
        assert!(
            !log.contains(&format!("127.0.0.1:{port}")),
            "a client address was logged:\n{log}"
        );
    }
}
