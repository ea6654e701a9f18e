//! `sluice serve` as a child process: started on free ports, its stderr read line by line on a
//! thread (so it never blocks on a full pipe), signalled and waited for with bounded patience,
//! killed if a test fails before stopping it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for the daemon to start, log a line or stop before failing.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// `sluice serve` on `127.0.0.1:0` for all three listeners, logging to the data directory `dir`,
/// with a clean environment (see [`super::sluice`]); add variables before [`Daemon::spawn`].
pub fn serve(dir: &Path) -> Command {
    let mut cmd = super::sluice();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir)
    .env("NO_COLOR", "1");
    cmd
}

/// A running daemon.
pub struct Daemon {
    pub child: Child,
    /// Its stderr lines not yet consumed.
    pub lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Spawns `cmd` with stderr piped and read on a thread.
    pub fn spawn(cmd: &mut Command) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines }
    }

    /// Stderr lines up to and including the first containing every one of `parts`.
    pub fn until_all(&self, parts: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no log line with {parts:?} ({e}); seen: {seen:#?}"));
            let done = parts.iter().all(|p| line.contains(p));
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// Stderr lines up to and including the first containing `what`.
    pub fn until(&self, what: &str) -> Vec<String> {
        self.until_all(&[what])
    }

    /// Waits for the text-format `listening` line; returns the collector's and the metrics
    /// listener's addresses.
    pub fn listening(&self) -> (SocketAddr, SocketAddr) {
        let lines = self.until("listening");
        let line = lines.last().expect("the listening line");
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .parse()
                .unwrap()
        };
        (field("collector_addr="), field("metrics_addr="))
    }

    /// Sends signal `name` (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) for the daemon to exit; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then every remaining stderr line once it has exited.
    pub fn stop(mut self) -> Vec<String> {
        self.signal("TERM");
        self.wait_exit();
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
