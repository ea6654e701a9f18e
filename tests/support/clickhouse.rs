//! A real ClickHouse server for tests.
//!
//! [`owned`] starts Debian's `clickhouse-server` (18.16 here) as the current user in a
//! temporary directory on free ports, waits for `/ping` (at most 30 s) and kills it on drop. A
//! watchdog shell also kills it when the test process dies, so a server shared through a
//! `static` (see [`shared`]) does not outlive its test binary.
//!
//! [`server`] is the same, except that outside CI a contributor may point it at a server of
//! their own with `SLUICE_TEST_CLICKHOUSE_URL`. Under CI (`CI=true`) that variable is refused:
//! CI runs against the server it installs, so that what a green run proves does not depend on
//! a runner's environment.
//!
//! Tests isolate themselves by database name ([`ClickHouse::config`]), so one server can serve
//! every test of a binary; tests that kill the server use [`owned`], which ignores the
//! variable, so they run (never skip) wherever they run.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sluice::config::HumanDuration;
use sluice::sink::clickhouse::ClickHouseConfig;

/// The server binary.
pub const SERVER_BIN: &str = "clickhouse-server";
/// Its packaged configuration (ports and paths are overridden on the command line).
pub const SERVER_CONFIG: &str = "/etc/clickhouse-server/config.xml";
/// How long a server may take to answer `/ping`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A ClickHouse server: external, or a child process this test owns.
pub struct ClickHouse {
    url: String,
    owned: Option<Owned>,
}

struct Owned {
    child: Option<Child>,
    watchdog: Option<Child>,
    dir: tempfile::TempDir,
    http_port: u16,
    tcp_port: u16,
    interserver_port: u16,
}

/// The variable naming a contributor's own server.
pub const URL_ENV: &str = "SLUICE_TEST_CLICKHOUSE_URL";

/// A server for this test: the external one named by [`URL_ENV`] (refused under CI), or a new
/// child process.
pub fn server() -> ClickHouse {
    if let Ok(url) = std::env::var(URL_ENV) {
        if !url.trim().is_empty() {
            super::refuse_override_in_ci(URL_ENV);
            return ClickHouse {
                url: url.trim().trim_end_matches('/').to_string(),
                owned: None,
            };
        }
    }
    owned()
}

/// A new child process this test owns (and may kill), whatever [`URL_ENV`] says.
pub fn owned() -> ClickHouse {
    let dir = tempfile::Builder::new()
        .prefix("sluice-clickhouse-")
        .tempdir()
        .expect("cannot create a temporary directory");
    let mut owned = Owned {
        child: None,
        watchdog: None,
        dir,
        http_port: free_port(),
        tcp_port: free_port(),
        interserver_port: free_port(),
    };
    owned.start();
    ClickHouse {
        url: format!("http://127.0.0.1:{}", owned.http_port),
        owned: Some(owned),
    }
}

/// One server shared by every test of this binary (started on first use).
pub fn shared() -> &'static ClickHouse {
    static SHARED: OnceLock<ClickHouse> = OnceLock::new();
    SHARED.get_or_init(server)
}

impl ClickHouse {
    /// `http://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this test started (and may kill) the server.
    pub fn is_owned(&self) -> bool {
        self.owned.is_some()
    }

    /// A sink configuration for database `database` on this server, with short retry delays.
    pub fn config(&self, database: &str) -> ClickHouseConfig {
        ClickHouseConfig {
            url: self.url.clone(),
            database: database.to_string(),
            backoff_min: HumanDuration(Duration::from_millis(50)),
            backoff_max: HumanDuration(Duration::from_millis(500)),
            pause_interval: HumanDuration(Duration::from_millis(200)),
            request_timeout: HumanDuration(Duration::from_secs(20)),
            ..ClickHouseConfig::default()
        }
    }

    /// Runs `sql`, panicking with the server's message on failure; returns the answer.
    pub fn query(&self, sql: &str) -> String {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/", self.url))
            .body(sql.to_string())
            .send()
            .unwrap_or_else(|e| panic!("ClickHouse at {} unreachable: {e}", self.url));
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        assert!(status.is_success(), "`{sql}` failed: {status} {text}");
        text
    }

    /// Kills the owned server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let owned = self
            .owned
            .as_mut()
            .expect("only an owned server can be killed");
        owned.stop();
    }

    /// Starts the owned server again on the same ports and data.
    pub fn restart(&mut self) {
        let owned = self
            .owned
            .as_mut()
            .expect("only an owned server can be restarted");
        owned.start();
    }
}

impl Owned {
    fn start(&mut self) {
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("tmp")).expect("cannot create tmp dir");
        let p = |name: &str| -> PathBuf { dir.join(name) };
        let arg = |k: &str, v: &Path| format!("--{k}={}", v.display());
        let mut cmd = Command::new(SERVER_BIN);
        cmd.arg(format!("--config-file={SERVER_CONFIG}"))
            .arg("--")
            .arg(format!("--path={}/", dir.display()))
            .arg(format!("--tmp_path={}/", p("tmp").display()))
            .arg(arg("logger.log", &p("log")))
            .arg(arg("logger.errorlog", &p("err")))
            .arg(format!("--http_port={}", self.http_port))
            .arg(format!("--tcp_port={}", self.tcp_port))
            .arg(format!("--interserver_http_port={}", self.interserver_port))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(p("stderr")).expect("cannot create stderr file"),
            ));
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{SERVER_BIN}` is not installed: run scripts/test.sh (it installs Debian's \
                 clickhouse-server)"
            ),
            Err(e) => panic!("cannot start {SERVER_BIN}: {e}"),
        };
        // Kill the server if this test process dies without dropping it (a server shared
        // through a `static` is never dropped), then remove its directory, which the
        // `TempDir` would have removed on drop: once the server is gone, and only when the
        // test process is gone too (a test that stops the server kills this watchdog first).
        let quoted_dir = format!("'{}'", dir.display().to_string().replace('\'', r"'\''"));
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {ch} 2>/dev/null; do sleep 1; done; \
                 kill -9 {ch} 2>/dev/null; \
                 if ! kill -0 {me} 2>/dev/null; then \
                   for _ in $(seq 100); do kill -0 {ch} 2>/dev/null || break; sleep 0.1; done; \
                   rm -rf {quoted_dir}; \
                 fi",
                me = std::process::id(),
                ch = child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let url = format!("http://127.0.0.1:{}/ping", self.http_port);
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = http.get(&url).send() {
                if r.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{SERVER_BIN} exited ({status}) before answering /ping:\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{SERVER_BIN} did not answer /ping within {START_TIMEOUT:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = Some(child);
        self.watchdog = watchdog;
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        let tail = |s: String| {
            s.lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "--- stderr\n{}\n--- err\n{}",
            tail(read("stderr")),
            tail(read("err"))
        )
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(o) = self.owned.as_mut() {
            o.stop();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}
