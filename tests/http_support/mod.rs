//! Shared helpers of the `http_*` integration tests: a small test configuration, starting the
//! server, whole answers through reqwest, a raw HTTP/1.1 client for the cases reqwest cannot
//! express (slow or oversize bodies), and reading every stored envelope back from the logs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use sluice::config::{ByteSize, Config, HumanDuration};
use sluice::envelope::Envelope;
use sluice::ingest::{existing_partitions, partition_count, partition_dir, wal_config};
use sluice::server::{self, RunningServer};
use sluice_wal::{LogView, Lsn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single network wait in these tests, so a hang fails instead of blocking.
pub const IO_BOUND: Duration = Duration::from_secs(20);

/// Starts the server with `config`; returns it and the collector's base URL.
pub async fn start(config: &Config) -> (RunningServer, String) {
    let srv = server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", srv.collector_addr);
    (srv, base)
}

/// A whole answer: status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `req` and reads the whole answer.
pub async fn fetch(req: RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

/// Listeners on port 0, two partitions of small logs, a 16 KiB body limit.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.server.max_body_bytes = ByteSize(16 << 10);
    config.server.max_header_bytes = ByteSize(8 << 10);
    config.server.request_timeout = HumanDuration(Duration::from_secs(10));
    config.server.shutdown_grace = HumanDuration(Duration::from_secs(10));
    config.server.retry_after = HumanDuration(Duration::from_secs(3));
    config.wal.partitions = 2;
    config.wal.segment_size = ByteSize(64 << 10);
    config.wal.capacity = ByteSize(1 << 20);
    config
}

/// Every envelope stored under `config.data_dir`, with its partition, in partition then LSN
/// order. Call after the server has shut down.
pub fn stored(config: &Config) -> Vec<(usize, Envelope)> {
    let wal = wal_config(
        &config.wal,
        config.max_record_bytes(),
        partition_count(&config.wal),
    );
    let mut out = Vec::new();
    for partition in existing_partitions(&config.data_dir).unwrap() {
        let view = LogView::open(partition_dir(&config.data_dir, partition), &wal).unwrap();
        let mut reader = view.reader(Lsn(0));
        while let Some(record) = reader.next().unwrap() {
            out.push((partition, Envelope::decode(&record.payload).unwrap()));
        }
    }
    out
}

/// A parsed raw HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Connects to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(IO_BOUND, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Writes `bytes` to the stream.
pub async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("write failed");
    stream.flush().await.unwrap();
}

/// Reads until the server closes the connection and parses the one response it sent.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    tokio::time::timeout(IO_BOUND, stream.read_to_end(&mut buf))
        .await
        .expect("the server neither answered nor closed the connection")
        .expect("read failed");
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> RawResponse {
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(buf)
            )
        });
    let head = std::str::from_utf8(&buf[..head_end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: buf[head_end + 4..].to_vec(),
    }
}

/// The metrics port's `/metrics` text.
pub async fn metrics_text(http: &reqwest::Client, srv: &RunningServer) -> String {
    http.get(format!("http://{}/metrics", srv.metrics_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `/ready` fails naming partition 0 while `/health` still answers 200: the process is alive
/// but its log takes nothing.
pub async fn assert_unready_but_healthy(http: &reqwest::Client, base: &str) {
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().await.unwrap().contains("partition(s) 0"));
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}
