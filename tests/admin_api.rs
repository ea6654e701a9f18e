//! The admin API of a running daemon: its token, its routes' refusals, and dead letters listed,
//! paged, replayed and purged while the publishers run against a real ClickHouse (18.16 here,
//! or `SLUICE_TEST_CLICKHOUSE_URL`), also through `sluice dlq`.

mod admin_support;
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use admin_support::{config, rt, token};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use sluice::config::{ByteSize, HumanDuration};
use sluice::server::RunningServer;
use sluice::sink::clickhouse::migrate;
use support::clickhouse::shared;

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The admin API of one running server, with its generated token.
struct Admin {
    base: String,
    token: String,
    http: Client,
}

impl Admin {
    fn of(server: &RunningServer, dir: &Path) -> Admin {
        Admin {
            base: format!("http://{}", server.admin_addr),
            token: token(dir),
            http: Client::new(),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap())
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(body.to_string())
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap())
    }

    fn entries(&self, query: &str) -> Vec<Value> {
        let (status, page) = self.get(&format!("/api/v1/dead-letters?{query}"));
        assert_eq!(status, 200, "{page}");
        page["entries"].as_array().unwrap().clone()
    }
}

#[test]
fn admin_routes_need_the_token_and_the_collector_port_serves_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // Nothing listens there: the daemon keeps collecting into the log and says why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.clickhouse.url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let runtime = rt();
    let server = runtime
        .block_on(sluice::server::start(config.clone()))
        .unwrap();
    let admin = Admin::of(&server, dir.path());
    let http = Client::new();
    let url = |path: &str| format!("{}{path}", admin.base);

    let resp = http.get(url("/healthz")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), "ok\n");

    let resp = http.get(url("/api/v1/status")).send().unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"sluice-admin\""
    );
    let body: Value = resp.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    assert!(body["error"].as_str().unwrap().contains("admin.token"));

    let resp = http
        .get(url("/api/v1/dead-letters"))
        .bearer_auth("not-the-token")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("does not match"));
    let resp = http
        .get(url("/api/v1/status"))
        .header("authorization", format!("Basic {}", admin.token))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .post(url("/api/v1/dead-letters/purge"))
        .body(r#"{"all": true}"#)
        .send()
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "a write without the token changes nothing"
    );

    // Not on the collector port, with or without the token.
    let collector = format!("http://{}", server.collector_addr);
    for path in ["/api/v1/status", "/api/v1/dead-letters", "/healthz"] {
        let resp = http
            .get(format!("{collector}{path}"))
            .bearer_auth(&admin.token)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 404, "{path} on the collector port");
    }
    // And the collector's routes are not served on the admin port.
    let resp = http
        .get(url("/i?e=pv&tv=js-3&p=web"))
        .bearer_auth(&admin.token)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);

    wait_until("the status names the ClickHouse error", || {
        admin.get("/api/v1/status").1["clickhouse"]["last_error"].is_string()
    });
    let (status, s) = admin.get("/api/v1/status");
    assert_eq!(status, 200);
    assert_eq!(s["clickhouse"]["connected"], false);
    assert_eq!(s["clickhouse"]["up"], false);
    assert_eq!(s["publishers"]["running"], false);
    assert!(s["publishers"]["paused"]
        .as_str()
        .unwrap()
        .contains("waiting for ClickHouse"));
    assert_eq!(s["partitions"].as_array().unwrap().len(), 1);
    assert_eq!(s["dead_letters"]["total"], 0);
    assert_eq!(s["dead_letters"]["by_category"]["schema_violation"], 0);

    // Refusals say what to fix.
    let (code, body) = admin.post("/api/v1/dead-letters/replay", &json!({"all": true}));
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["code"], "not_connected");
    let (code, body) = admin.post("/api/v1/dead-letters/purge", &json!({}));
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("nothing selected"));
    let (code, body) = admin.post(
        "/api/v1/dead-letters/purge",
        &json!({"all": true, "category": "schema_violation"}),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = admin.post("/api/v1/dead-letters/purge", &json!({"colour": 1}));
    assert_eq!(code, 400, "{body}");
    let (code, body) = admin.get("/api/v1/dead-letters?category=nope");
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("schema_violation"));
    let (code, _) = admin.get("/api/v1/dead-letters?limit=0");
    assert_eq!(code, 400);
    let (code, _) = admin.get("/api/v1/dead-letters?page=2");
    assert_eq!(code, 400);
    let (code, body) = admin.get("/api/v1/dead-letters/1-2-3-4");
    assert_eq!(code, 404, "{body}");
    let (code, _) = admin.get("/api/v1/dead-letters/not-an-id");
    assert_eq!(code, 400);
    let (code, _) = admin.get("/api/v1/nothing-here");
    assert_eq!(code, 404);
    let (code, _) = admin.post("/api/v1/status", &json!({}));
    assert_eq!(code, 405);
    let resp = http
        .post(url("/api/v1/dead-letters/purge"))
        .bearer_auth(&admin.token)
        .body(vec![b' '; 2 << 20])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 413, "larger than admin.max_body_bytes");

    runtime.block_on(server.shutdown()).unwrap();
}

fn sluice(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("SLUICE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn dead_letters_are_paged_replayed_and_purged_while_the_daemon_publishes() {
    let db = "t_admin_dead_letters";
    let ch = shared();
    ch.query(&format!("DROP DATABASE IF EXISTS {db}"));
    let count = |app: &str| -> u64 {
        ch.query(&format!(
            "SELECT count() FROM {db}.events WHERE app_id = '{app}'"
        ))
        .trim()
        .parse()
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.clickhouse = ch.config(db);
    // Requests over 1 KiB are stored, then dead-lettered as size violations.
    config.collector.max_payload_bytes = ByteSize(1 << 10);
    let runtime = rt();
    runtime.block_on(migrate::init(&config.clickhouse)).unwrap();
    let server = runtime
        .block_on(sluice::server::start(config.clone()))
        .unwrap();
    let admin = Admin::of(&server, dir.path());
    let http = Client::new();
    let collector = format!("http://{}", server.collector_addr);
    let send = |app: &str, i: u32, extra: &str| {
        let url = format!(
            "{collector}/i?e=se&se_ca=c&se_ac=a&tv=js-3.0.0&p=web&aid={app}\
             &eid=6a7b1f0e-0000-4000-8000-{i:012}{extra}"
        );
        assert!(http.get(url).send().unwrap().status().is_success());
    };
    let long = format!("&se_la={}", "x".repeat(1500));
    for i in 0..3 {
        send("large", i, &long);
    }
    for i in 0..2 {
        let resp = http
            .get(format!("{collector}/i?aid=broken&n={i}"))
            .send()
            .unwrap();
        assert!(resp.status().is_success());
    }
    for i in 0..5 {
        send("good", 100 + i, "");
    }
    wait_until("five entries are listed", || admin.entries("").len() == 5);
    wait_until("the good events are in ClickHouse", || count("good") == 5);

    // Paging: by id, with the next page's start, and an end.
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = admin.get(&format!("/api/v1/dead-letters?limit=2{after}"));
        assert_eq!(status, 200);
        pages += 1;
        seen.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 5));
    let ids: Vec<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "no entry twice: {ids:?}");
    assert_eq!(admin.entries("category=size_violation").len(), 3);
    assert_eq!(
        admin.entries("category=tracker_protocol_violation").len(),
        2
    );
    assert_eq!(admin.entries("partition=0").len(), 5);
    assert_eq!(admin.entries("partition=1").len(), 0);
    assert_eq!(admin.entries("received_before_ms=1").len(), 0);

    let broken = &admin.entries("category=tracker_protocol_violation")[0];
    let (status, one) = admin.get(&format!(
        "/api/v1/dead-letters/{}",
        broken["id"].as_str().unwrap()
    ));
    assert_eq!(status, 200);
    assert!(one["envelope"]["query"]
        .as_str()
        .unwrap()
        .starts_with("aid=broken"));
    assert_eq!(one["attempts"], 1);
    assert!(one["request_base64"].as_str().unwrap().len() > 10);

    let (_, s) = admin.get("/api/v1/status");
    assert_eq!(s["dead_letters"]["total"], 5);
    assert_eq!(s["dead_letters"]["by_category"]["size_violation"], 3);
    assert_eq!(s["clickhouse"]["connected"], true);
    assert_eq!(s["clickhouse"]["up"], true);
    assert_eq!(s["publishers"]["running"], true);
    assert_eq!(s["partitions"][0]["appended"], 10);
    wait_until("the rates cover a window", || {
        admin.get("/api/v1/status").1["rates"]["window_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    });
    let (_, h) = admin.get("/api/v1/history");
    assert!(!h["samples"].as_array().unwrap().is_empty());

    // `sluice dlq` while the daemon holds the store: through the admin API.
    let addr = server.admin_addr.to_string();
    let env = [("SLUICE_ADMIN__LISTEN", addr.as_str())];
    let o = sluice(dir.path(), &env, &["dlq", "list", "--json"]);
    assert!(o.status.success(), "{o:?}");
    let through_daemon = lines(&o);
    assert_eq!(through_daemon.len(), 5);
    let o = sluice(dir.path(), &env, &["dlq", "list"]);
    assert!(lines(&o).last().unwrap().contains("5 entries"), "{o:?}");
    let broken_id = broken["id"].as_str().unwrap();
    let o = sluice(dir.path(), &env, &["dlq", "show", broken_id, "--json"]);
    assert!(o.status.success(), "{o:?}");
    let o = sluice(dir.path(), &env, &["dlq", "show", "1-2-3-4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no dead-letter entry 1-2-3-4"));
    // A broken request fails again, through the daemon's sink: exit 3, one attempt more.
    let o = sluice(
        dir.path(),
        &env,
        &["dlq", "replay", "--reason", "tracker_protocol_violation"],
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 failed again"),
        "{o:?}"
    );
    let (_, one) = admin.get(&format!("/api/v1/dead-letters/{broken_id}"));
    assert_eq!(one["attempts"], 2);
    // The daemon replays into its own ClickHouse: another server cannot be asked for.
    let o = sluice(
        dir.path(),
        &env,
        &["dlq", "replay", "--clickhouse-url", "http://127.0.0.1:9"],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--clickhouse-url http://127.0.0.1:9 cannot be used while the daemon runs"),
        "{err}"
    );
    assert_eq!(admin.entries("").len(), 5, "nothing was replayed");

    // Purge by filter through the API, then by id through the CLI.
    let (status, r) = admin.post(
        "/api/v1/dead-letters/purge",
        &json!({"category": "tracker_protocol_violation", "ids": [broken_id]}),
    );
    assert_eq!((status, r["purged"].as_u64()), (200, Some(1)));
    let other = admin.entries("category=tracker_protocol_violation")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = sluice(dir.path(), &env, &["dlq", "purge", &other]);
    assert!(lines(&o)[0].contains("purged 1 entry"), "{o:?}");
    assert_eq!(admin.entries("").len(), 3);

    // The publishers went on meanwhile.
    for i in 0..5 {
        send("good", 200 + i, "");
    }
    wait_until("the later good events are in ClickHouse", || {
        count("good") == 10
    });
    runtime.block_on(server.shutdown()).unwrap();

    // With the daemon stopped the CLI opens the store itself, and prints the same.
    let o = sluice(dir.path(), &[], &["dlq", "list", "--json"]);
    let local = lines(&o);
    let large_through_daemon: Vec<&String> = through_daemon
        .iter()
        .filter(|l| l.contains("size_violation"))
        .collect();
    assert_eq!(local.iter().collect::<Vec<_>>(), large_through_daemon);

    // The fix: a larger payload limit. Replayed by the restarted daemon, the rows load once.
    config.collector.max_payload_bytes = ByteSize(1 << 20);
    let server = runtime
        .block_on(sluice::server::start(config.clone()))
        .unwrap();
    let admin = Admin::of(&server, dir.path());
    wait_until("the daemon is connected", || {
        admin.get("/api/v1/status").1["clickhouse"]["connected"] == true
    });
    let collector = format!("http://{}", server.collector_addr);
    let send = |i: u32| {
        let url = format!(
            "{collector}/i?e=pv&tv=js-3.0.0&p=web&aid=good&eid=6a7b1f0e-0000-4000-8000-{i:012}"
        );
        assert!(http.get(url).send().unwrap().status().is_success());
    };
    for i in 300..305 {
        send(i);
    }
    let (status, r) = admin.post(
        "/api/v1/dead-letters/replay",
        &json!({"category": "size_violation"}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["tried"].as_u64(), r["loaded"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(r["rows"], 3);
    assert_eq!(count("large"), 3);
    let (status, r) = admin.post("/api/v1/dead-letters/replay", &json!({"all": true}));
    assert_eq!((status, r["tried"].as_u64()), (200, Some(0)));
    wait_until("the good events sent during the replay are in", || {
        count("good") == 15
    });
    assert_eq!(count("large"), 3, "nothing published twice");
    assert_eq!(admin.get("/api/v1/status").1["dead_letters"]["total"], 0);
    runtime.block_on(server.shutdown()).unwrap();
}

/// Reads a live stream's `data:` lines on a thread.
fn watch(admin: &Admin, query: &str) -> std::sync::mpsc::Receiver<Value> {
    use std::io::BufRead;
    let resp = Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(format!("{}/api/v1/live?{query}", admin.base))
        .bearer_auth(&admin.token)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data: ") {
                if tx.send(serde_json::from_str(data).unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[test]
fn the_live_feed_shows_rows_and_failures_and_queries_stay_read_only() {
    use std::io::Write;
    let db = "t_admin_live";
    let ch = shared();
    ch.query(&format!("DROP DATABASE IF EXISTS {db}"));
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.clickhouse = ch.config(db);
    // Long enough for a busy machine; the endless query below still reaches it.
    config.admin.query_timeout = HumanDuration(Duration::from_secs(5));
    config.admin.max_live_viewers = 3;
    // Every record is shown here; passing over records is tested with the tailer itself.
    config.admin.live_max_records_per_second = 1_000_000;
    let runtime = rt();
    runtime.block_on(migrate::init(&config.clickhouse)).unwrap();
    let server = runtime
        .block_on(sluice::server::start(config.clone()))
        .unwrap();
    let admin = Admin::of(&server, dir.path());
    wait_until("the daemon is connected", || {
        admin.get("/api/v1/status").1["clickhouse"]["connected"] == true
    });

    // A viewer that never reads: it must hold up neither the collector nor the others.
    let mut stuck = std::net::TcpStream::connect(server.admin_addr).unwrap();
    write!(
        stuck,
        "GET /api/v1/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        admin.token
    )
    .unwrap();
    let feed = watch(&admin, "app_id=live");
    let everything = watch(&admin, "");
    wait_until("three viewers watch", || {
        admin.get("/api/v1/status").1["live"]["viewers"] == 3
    });
    let resp = admin
        .http
        .get(format!("{}/api/v1/live", admin.base))
        .bearer_auth(&admin.token)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503, "admin.max_live_viewers");

    let http = Client::new();
    let collector = format!("http://{}", server.collector_addr);
    // Enough traffic to overflow the stuck viewer's socket and the feed's ring many times.
    for i in 0..1500 {
        let url = format!("{collector}/i?e=pv&tv=js-3.0.0&p=web&aid=other&n={i}");
        assert!(http.get(url).send().unwrap().status().is_success());
    }
    let good = format!(
        "{collector}/i?e=pv&tv=js-3.0.0&p=web&aid=live&eid=6a7b1f0e-0000-4000-8000-000000000001\
         &url=http%3A%2F%2Fexample.com%2Fshop"
    );
    assert!(http.get(good).send().unwrap().status().is_success());
    assert!(http
        .get(format!("{collector}/i?aid=live&broken=1"))
        .send()
        .unwrap()
        .status()
        .is_success());

    let next =
        |rx: &std::sync::mpsc::Receiver<Value>| rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let row = next(&feed);
    assert_eq!(row["route"], "/i");
    assert_eq!(row["source"], "snowplow");
    assert_eq!(row["events"][0]["app_id"], "live");
    assert_eq!(row["events"][0]["page_urlhost"], "example.com");
    assert_eq!(
        row["events"][0]["event_id"],
        "6a7b1f0e-0000-4000-8000-000000000001"
    );
    assert!(row["request"]["query"]
        .as_str()
        .unwrap()
        .contains("aid=live"));
    assert!(row["failures"].as_array().unwrap().is_empty());
    // The filter passed only events of app `live`; a failure has no app, so the unfiltered
    // viewer shows it.
    let failed = loop {
        let r = next(&everything);
        if !r["failures"].as_array().unwrap().is_empty() {
            break r;
        }
    };
    assert_eq!(
        failed["failures"][0]["category"],
        "tracker_protocol_violation"
    );
    assert!(failed["events"].as_array().unwrap().is_empty());
    drop(stuck);

    // Read-only queries, guarded by the daemon and by ClickHouse.
    let table = format!("{db}.events");
    wait_until("the row is in ClickHouse", || {
        let (_, r) = admin.post(
            "/api/v1/query",
            &json!({"sql": format!("SELECT count() AS n FROM {table} WHERE app_id = 'live'")}),
        );
        r["rows"][0]["n"] == "1" || r["rows"][0]["n"] == 1
    });
    for sql in [
        format!("INSERT INTO {table} (event_id) VALUES (generateUUIDv4())"),
        format!("ALTER TABLE {table} DELETE WHERE 1"),
        format!("DROP TABLE {table}"),
        "KILL QUERY WHERE 1".to_string(),
    ] {
        let (status, r) = admin.post("/api/v1/query", &json!({ "sql": sql }));
        assert_eq!(
            (status, r["code"].as_str()),
            (400, Some("not_read_only")),
            "{sql}: {r}"
        );
    }
    // Past the first check, the server's readonly mode refuses.
    for sql in [
        "SELECT 1 SETTINGS readonly = 0".to_string(),
        format!("SELECT * FROM {table} SETTINGS max_result_rows = 1000000000"),
    ] {
        let (status, r) = admin.post("/api/v1/query", &json!({ "sql": sql }));
        assert_eq!(
            (status, r["code"].as_str()),
            (400, Some("refused_by_clickhouse")),
            "{sql}: {r}"
        );
    }
    let (status, r) = admin.post(
        "/api/v1/query",
        &json!({"sql": "SELECT number FROM system.numbers LIMIT 100000", "max_rows": 5}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["rows"].as_array().unwrap().len(), 5);
    let (status, r) = admin.post(
        "/api/v1/query",
        &json!({"sql": "SELECT count() FROM system.numbers"}),
    );
    assert_eq!(status, 504, "admin.query_timeout: {r}");
    assert_eq!(
        ch.query(&format!(
            "SELECT count() FROM {table} WHERE app_id = 'live'"
        ))
        .trim(),
        "1",
        "nothing was written through the query route"
    );

    // The events table, paged and sorted by the daemon.
    let (status, page) = admin.get("/api/v1/events?app_id=live&limit=10");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["rows"].as_array().unwrap().len(), 1);
    assert_eq!(page["rows"][0]["page_urlhost"], "example.com");
    assert!(page["columns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "event_id"));
    wait_until("the other rows are in", || {
        admin.get("/api/v1/events?app_id=other&limit=2000").1["rows"]
            .as_array()
            .is_some_and(|r| r.len() == 1500)
    });
    let (_, first) =
        admin.get("/api/v1/events?app_id=other&limit=2&order_by=collector_tstamp&desc=false");
    let (_, second) = admin
        .get("/api/v1/events?app_id=other&limit=2&offset=2&order_by=collector_tstamp&desc=false");
    assert_eq!(first["rows"].as_array().unwrap().len(), 2);
    assert_ne!(first["rows"][0]["event_id"], second["rows"][0]["event_id"]);
    let (status, _) = admin.get("/api/v1/events?order_by=nope");
    assert_eq!(status, 400);
    let (status, none) = admin.get("/api/v1/events?app_id=x'%20OR%201%3D1%20--");
    assert_eq!(status, 200, "a quote in a filter is a value, not SQL");
    assert!(none["rows"].as_array().unwrap().is_empty(), "{none}");
    let (status, _) = admin.get("/api/v1/events?limit=0");
    assert_eq!(status, 400);

    runtime.block_on(server.shutdown()).unwrap();
}
