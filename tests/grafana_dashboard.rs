//! `grafana/sluice.json` queries only metrics the daemon really exports. The test starts
//! `sluice serve` against a real ClickHouse, produces the traffic that makes every family of
//! series exist (tracking requests, an oversize request that is refused, an event that is
//! dead-lettered, published batches, then ClickHouse killed so inserts fail and are retried),
//! scrapes `/metrics`, and checks every metric name each panel's query references — histograms
//! by their `_bucket`, `_sum`, `_count` series — and every label the queries group or filter by.
//!
//! The exporter prints `# HELP`/`# TYPE` only for metrics that have series (descriptions of
//! metrics never touched are not rendered), so the check is on samples, which is stricter.

mod cli_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::daemon::{serve, Daemon};
use cli_support::sluice;
use std::time::{Duration, Instant};

/// How long the test waits for the daemon to start, or for a metric to appear, before failing.
const PATIENCE: Duration = Duration::from_secs(90);

/// Labels Prometheus adds at scrape time (absent from the exporter's own text).
const TARGET_LABELS: &[&str] = &["instance", "job"];

/// The daemon and its listeners' addresses.
struct Running {
    /// Kept so the process lives (and is killed) with the test.
    _daemon: Daemon,
    collector: SocketAddr,
    metrics: SocketAddr,
}

/// The `sluice` binary with a clean environment plus `env`.
fn sluice_with(env: &[(&str, String)]) -> Command {
    let mut cmd = sluice();
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

fn start(env: &[(&str, String)], data_dir: &Path) -> Running {
    let daemon = Daemon::spawn(serve(data_dir).envs(env.iter().map(|(k, v)| (*k, v.as_str()))));
    let (collector, metrics) = daemon.listening();
    Running {
        _daemon: daemon,
        collector,
        metrics,
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One scrape: sample name → label sets.
type Scrape = BTreeMap<String, Vec<BTreeMap<String, String>>>;

fn scrape(daemon: &Running) -> Scrape {
    let text = http()
        .get(format!("http://{}/metrics", daemon.metrics))
        .send()
        .unwrap()
        .text()
        .unwrap();
    parse_exposition(&text)
}

/// Parses the Prometheus text format's sample lines.
fn parse_exposition(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let mut labels = BTreeMap::new();
        if line[name_end..].starts_with('{') {
            let close = line.rfind('}').unwrap();
            let body = &line[name_end + 1..close];
            let mut rest = body;
            while let Some(eq) = rest.find("=\"") {
                let key = rest[..eq].trim_start_matches(',').trim().to_string();
                let after = &rest[eq + 2..];
                let mut end = 0;
                let bytes = after.as_bytes();
                while end < bytes.len()
                    && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
                {
                    end += 1;
                }
                labels.insert(key, after[..end].to_string());
                rest = &after[(end + 1).min(after.len())..];
            }
        }
        out.entry(name.to_string()).or_default().push(labels);
    }
    out
}

/// Waits until the scrape has every name in `names`; returns the last scrape.
fn wait_for(daemon: &Running, names: &[&str], why: &str) -> Scrape {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = scrape(daemon);
        let missing: Vec<&&str> = names.iter().filter(|n| !s.contains_key(**n)).collect();
        if missing.is_empty() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: still no {missing:?} after {PATIENCE:?}; scrape has {:?}",
            s.keys().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn dashboard_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana/sluice.json")
}

/// Every (panel title, query) of the dashboard, rows' nested panels included.
fn queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title}: a target without expr"));
                out.push((title.clone(), expr.to_string()));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Identifiers in a PromQL expression that name sluice metrics.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("sluice_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.push(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Label names in `by (…)` / `without (…)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kw in ["by (", "by(", "without (", "without("] {
        let mut rest = expr;
        while let Some(at) = rest.find(kw) {
            let after = &rest[at + kw.len()..];
            let close = after.find(')').unwrap();
            out.extend(
                after[..close]
                    .split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
            rest = &after[close..];
        }
    }
    out
}

/// `(metric, label)` of every matcher inside `metric{…}` selectors.
fn selector_labels(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in metric_names(expr) {
        let mut rest = expr;
        while let Some(at) = rest.find(&format!("{name}{{")) {
            let body = &rest[at + name.len() + 1..];
            let close = body.find('}').unwrap();
            for m in body[..close].split(',') {
                let label: String = m
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !label.is_empty() {
                    out.push((name.clone(), label));
                }
            }
            rest = &body[close..];
        }
    }
    out
}

#[test]
fn every_metric_and_label_the_dashboard_queries_exists_in_a_live_scrape() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap())
            .expect("grafana/sluice.json is not JSON");
    let queries = queries(&dashboard);
    let referenced: BTreeSet<String> = queries.iter().flat_map(|(_, q)| metric_names(q)).collect();

    // The panels the dashboard exists for: their metrics must be queried.
    for required in [
        "sluice_http_requests_total",
        "sluice_http_request_duration_seconds_bucket",
        "sluice_wal_fsync_duration_seconds_bucket",
        "sluice_wal_commit_records_sum",
        "sluice_wal_used_bytes",
        "sluice_wal_capacity_bytes",
        "sluice_publish_lag_records",
        "sluice_publish_lag_seconds",
        "sluice_publish_events_total",
        "sluice_clickhouse_inserts_total",
        "sluice_dead_letters_total",
        "sluice_http_rejections_total",
    ] {
        assert!(referenced.contains(required), "no panel queries {required}");
    }

    // A real ClickHouse, the database created by `db init`, the daemon publishing into it.
    // Its own server, whatever SLUICE_TEST_CLICKHOUSE_URL says: the failure metrics below need
    // a server this test can kill.
    let mut ch = support::clickhouse::owned();
    let database = "grafana_dashboard";
    let env = vec![
        ("SLUICE_CLICKHOUSE__URL", ch.url().to_string()),
        ("SLUICE_CLICKHOUSE__DATABASE", database.to_string()),
        ("SLUICE_CLICKHOUSE__BACKOFF_MIN", "20ms".to_string()),
        ("SLUICE_CLICKHOUSE__BACKOFF_MAX", "200ms".to_string()),
        ("SLUICE_CLICKHOUSE__CONNECT_TIMEOUT", "1s".to_string()),
        ("SLUICE_PUBLISH__BATCH_AGE", "50ms".to_string()),
        ("SLUICE_WAL__PARTITIONS", "2".to_string()),
        ("SLUICE_WAL__CAPACITY", "16MiB".to_string()),
        ("SLUICE_WAL__SEGMENT_SIZE", "4MiB".to_string()),
        ("SLUICE_LOG__LEVEL", "info".to_string()),
    ];
    let init = sluice_with(&env).args(["db", "init"]).output().unwrap();
    assert!(
        init.status.success(),
        "db init failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(&env, dir.path());
    let client = http();
    let base = format!("http://{}", daemon.collector);

    // Stored and published: page views from a few visitors.
    for i in 0..20 {
        let r = client
            .get(format!(
                "{base}/i?e=pv&tv=js-3.0.0&p=web&aid=dash&url=https%3A%2F%2Fexample.com%2F{i}&eid={}",
                uuid::Uuid::new_v4()
            ))
            .header("Cookie", format!("sp={}", uuid::Uuid::new_v4()))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "GET /i answered {}", r.status());
    }
    // Stored, then dead-lettered by the publisher (an event type Snowplow does not define).
    let r = client
        .get(format!("{base}/i?e=no_such_type&tv=js-3.0.0&p=web"))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "GET /i answered {}", r.status());
    // Refused before storing: a body over server.max_body_bytes (2 MiB by default). The
    // daemon answers from the declared length and closes; a client still writing the body can
    // see the close as a broken pipe before it reads the answer, so it sends again.
    let r = (0..5)
        .find_map(|_| {
            client
                .post(format!("{base}/com.snowplowanalytics.snowplow/tp2"))
                .header("Content-Type", "application/json")
                .body(vec![b' '; (2 << 20) + 1])
                .send()
                .ok()
        })
        .expect("no answer to an oversized body in five tries");
    assert_eq!(r.status().as_u16(), 413);

    wait_for(
        &daemon,
        &[
            "sluice_publish_events_total",
            "sluice_dead_letters_total",
            "sluice_clickhouse_inserts_total",
            "sluice_http_rejections_total",
        ],
        "publishing to ClickHouse, dead-lettering and refusing",
    );

    // ClickHouse goes away: the next batch's inserts fail (connection refused) and are retried.
    let failure_metrics = ["sluice_clickhouse_retries_total"];
    ch.kill();
    let r = client
        .get(format!(
            "{base}/i?e=pv&tv=js-3.0.0&p=web&aid=dash&eid={}",
            uuid::Uuid::new_v4()
        ))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    wait_for(
        &daemon,
        &failure_metrics,
        "retrying inserts while ClickHouse is down",
    );
    let samples = scrape(&daemon);

    let mut problems = Vec::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        for name in &names {
            if !samples.contains_key(name) {
                problems.push(format!("panel {title:?}: {name} is not in the scrape"));
            }
        }
        let labels_of = |name: &str| -> BTreeSet<String> {
            samples
                .get(name)
                .into_iter()
                .flatten()
                .flat_map(|l| l.keys().cloned())
                .collect()
        };
        for label in grouping_labels(expr) {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            if !names.iter().any(|n| labels_of(n).contains(&label)) {
                problems.push(format!(
                    "panel {title:?}: groups by `{label}`, which none of {names:?} has"
                ));
            }
        }
        for (name, label) in selector_labels(expr) {
            if TARGET_LABELS.contains(&label.as_str()) || !samples.contains_key(&name) {
                continue;
            }
            if !labels_of(&name).contains(&label) {
                problems.push(format!(
                    "panel {title:?}: filters {name} by `{label}`, which it does not have"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the dashboard queries what the daemon does not export:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_dashboard_is_a_grafana_model_with_its_data_source_as_a_variable() {
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap()).unwrap();
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some());
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());

    let mut ids = BTreeSet::new();
    let mut panels = 0;
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(
                g[k].as_u64().is_some(),
                "panel {} lacks gridPos.{k}",
                p["id"]
            );
        }
        assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24);
        if p["type"] == "row" {
            continue;
        }
        panels += 1;
        assert_eq!(
            p["datasource"]["uid"],
            ds_ref.as_str(),
            "panel {}",
            p["title"]
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} queries nothing", p["title"]);
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"]["uid"], ds_ref.as_str());
            assert!(refs.insert(t["refId"].as_str().unwrap().to_string()));
        }
    }
    assert!(panels >= 10, "{panels} panels");
}

#[test]
fn the_query_parsers_find_names_groupings_and_matchers() {
    // The checks above are only as good as these helpers.
    let q = r#"histogram_quantile(0.99, sum by (le, route) (rate(sluice_http_request_duration_seconds_bucket{instance=~"$instance",route!="/health"}[5m]))) / sluice_wal_used_bytes"#;
    assert_eq!(
        metric_names(q),
        [
            "sluice_http_request_duration_seconds_bucket",
            "sluice_wal_used_bytes"
        ]
    );
    assert_eq!(grouping_labels(q), ["le", "route"]);
    assert_eq!(
        selector_labels(q),
        [
            (
                "sluice_http_request_duration_seconds_bucket".to_string(),
                "instance".to_string()
            ),
            (
                "sluice_http_request_duration_seconds_bucket".to_string(),
                "route".to_string()
            ),
        ]
    );
    let s = parse_exposition(
        "# TYPE a counter\na_total{route=\"/i\",status=\"200\"} 3\nb 1\nc_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(s["a_total"][0]["route"], "/i");
    assert!(s.contains_key("b") && s.contains_key("c_bucket"));
    assert!(!s.contains_key("a"));
}
