//! # sluice-crash-harness: kill -9 a child process mid-write, then check what survived
//!
//! The crash tests of the log (`wal/tests/crash.rs`) and of the dead-letter store
//! (`tests/deadletter_crash.rs`) share one shape: a child process writes and reports on stdout
//! what it was told is durable, the parent kills it at a random moment, reopens the store, and
//! checks that everything reported is there. This crate is the part they share: starting the
//! child, reading its report, killing and reaping it, and bounding how long that takes. What
//! the child writes and what the parent checks stay in the tests.
//!
//! ## Why kill -9
//!
//! `SIGKILL` cannot be caught: no destructor, `Drop`, flush or clean-shutdown path of the child
//! runs, and its threads stop wherever they are, mid-write included. So a test sees exactly
//! what a crashed process leaves behind, and cannot pass by way of shutdown code. It does not
//! lose the page cache: this is a process crash, not a power cut, so it shows that nothing
//! acknowledged was left unwritten and that recovery copes with what an interrupted writer
//! leaves, not that `fsync` reached the disk.
//!
//! ## The child
//!
//! The child is an `#[ignore]`d test in the same test binary, so it needs no binary of its own
//! and runs the code under test exactly as built for the parent. [`Harness::spawn`] re-runs
//! [`std::env::current_exe`] with `<name> --exact --ignored --nocapture --test-threads=1` and
//! passes the store's directory and the cycle number in [`DIR_ENV`] and [`CYCLE_ENV`]. The
//! child test starts with [`child_args`], which is `None` (return at once) when those are
//! not set, as in every ordinary run with `--ignored`.
//!
//! The child reports on stdout, one line per fact. It prints [`READY`] (with
//! [`announce_ready`]) once it has opened its store, i.e. once recovery from the previous
//! cycle's crash is done; every other line is the test's own, handed to the parent's line
//! handler on a reader thread as it arrives. A child must print a line only *after* the fact
//! it reports is durable: the parent may kill it between any two lines.
//!
//! ## The parent
//!
//! ```no_run
//! use sluice_crash_harness::{cycles_from_env, Harness, Output};
//!
//! let cycles = cycles_from_env("MY_CRASH_CYCLES", 20);
//! let harness = Harness::new("crash_child_process");
//! for cycle in 0..cycles {
//!     let child = harness.spawn(cycle, Vec::new(), |acked: &mut Vec<String>, line: &str| {
//!         if let Some(id) = line.strip_prefix("ack ") {
//!             acked.push(id.to_string());
//!         }
//!     });
//!     let Output { ready, state: acked } = child.kill_at_random_moment(5..300);
//!     assert!(ready, "cycle {cycle}: the child never opened the store");
//!     // reopen the store in harness.dir() and check every id in `acked`
//! }
//! ```
//!
//! Run time is bounded: the parent waits at most [`READY_TIMEOUT`] for the child to open its
//! store and then kills it whether or not it did (the test sees `ready == false`); the kill
//! itself cannot be ignored, and the child is reaped before the report is returned. A [`Child`]
//! dropped without being killed (the parent panicked) is killed and reaped then, so no child
//! outlives its test writing into a deleted directory.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{self, BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{self, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Environment variable carrying the store's directory to the child.
pub const DIR_ENV: &str = "CRASH_HARNESS_DIR";
/// Environment variable carrying the cycle number (0, 1, …) to the child.
pub const CYCLE_ENV: &str = "CRASH_HARNESS_CYCLE";
/// The line a child prints once it has opened its store.
pub const READY: &str = "ready";
/// Longest the parent waits for [`READY`] before killing the child anyway.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the child was given by the parent.
#[derive(Debug, Clone)]
pub struct ChildArgs {
    /// The store's directory, the same in every cycle.
    pub dir: PathBuf,
    /// Which cycle this is, from 0; lets the child write values no earlier cycle wrote.
    pub cycle: u64,
}

/// In the child test: its arguments when the harness started it, else `None`.
///
/// # Panics
///
/// When [`DIR_ENV`] is set but [`CYCLE_ENV`] is missing or not a number.
pub fn child_args() -> Option<ChildArgs> {
    let dir = std::env::var_os(DIR_ENV)?;
    let cycle = std::env::var(CYCLE_ENV)
        .unwrap_or_else(|e| panic!("{CYCLE_ENV}: {e}"))
        .parse()
        .unwrap_or_else(|e| panic!("{CYCLE_ENV}: {e}"));
    Some(ChildArgs {
        dir: dir.into(),
        cycle,
    })
}

/// In the child: tells the parent the store is open. Starts with a newline because libtest
/// has already printed `test <name> ... ` without one.
pub fn announce_ready(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "\n{READY}")?;
    out.flush()
}

/// The number of kill cycles: the environment variable `var` if it holds a number, else
/// `default`. Lets a developer run a crash test longer (or shorter) without editing it.
pub fn cycles_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The parent's side: one store directory, and the test binary that is re-run as the child.
#[derive(Debug)]
pub struct Harness {
    child_test: String,
    exe: PathBuf,
    /// Holds the store across cycles; deleted when the harness is dropped.
    dir: tempfile::TempDir,
}

impl Harness {
    /// A harness whose children run the ignored test `child_test` of the current test binary
    /// in a new temporary directory.
    pub fn new(child_test: &str) -> Harness {
        Harness {
            child_test: child_test.to_string(),
            exe: std::env::current_exe().expect("the test binary's path"),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The store's directory, passed to every child and left for the parent to check.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the child for `cycle`. Each line it prints, other than [`READY`], is passed to
    /// `on_line` with `state`, on a reader thread, until the child dies.
    pub fn spawn<S, F>(&self, cycle: u64, state: S, on_line: F) -> Child<S>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &str) + Send + 'static,
    {
        let mut process = Command::new(&self.exe)
            .args([
                self.child_test.as_str(),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, self.dir.path())
            .env(CYCLE_ENV, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.exe.display()));
        let stdout = process.stdout.take().expect("stdout is piped");
        let (ready_tx, ready) = mpsc::channel();
        let reader = std::thread::spawn(move || read_report(stdout, ready_tx, state, on_line));
        Child {
            process: Some(process),
            ready,
            reader: Some(reader),
        }
    }
}

/// Reads the child's lines until the pipe closes (the child died).
fn read_report<S>(
    stdout: process::ChildStdout,
    ready_tx: mpsc::Sender<()>,
    mut state: S,
    mut on_line: impl FnMut(&mut S, &str),
) -> Output<S> {
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.split_whitespace().next() == Some(READY) {
            ready = true;
            let _ = ready_tx.send(());
        } else {
            on_line(&mut state, &line);
        }
    }
    Output { ready, state }
}

/// A running child. Kill it with [`Child::kill_at_random_moment`] or [`Child::kill_9`].
#[derive(Debug)]
pub struct Child<S> {
    /// `None` once killed and reaped.
    process: Option<process::Child>,
    ready: mpsc::Receiver<()>,
    reader: Option<JoinHandle<Output<S>>>,
}

/// What the parent learnt from a child that is now dead.
#[derive(Debug)]
pub struct Output<S> {
    /// The child printed [`READY`]: it opened its store (and so recovered the last crash).
    pub ready: bool,
    /// The line handler's state after the child's last line.
    pub state: S,
}

impl<S> Child<S> {
    /// Waits up to `timeout` for [`READY`]; true if it came.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.ready.recv_timeout(timeout).is_ok()
    }

    /// Waits for [`READY`] (at most [`READY_TIMEOUT`]), lets the child run for a random number
    /// of milliseconds in `after_ready_ms`, then kills it with [`Child::kill_9`].
    pub fn kill_at_random_moment(self, after_ready_ms: Range<u64>) -> Output<S> {
        let _ = self.wait_ready(READY_TIMEOUT);
        std::thread::sleep(Duration::from_millis(fastrand::u64(after_ready_ms)));
        self.kill_9()
    }

    /// Sends `SIGKILL` (what [`std::process::Child::kill`] sends on Unix), reaps the child, and
    /// returns what it reported before it died.
    pub fn kill_9(mut self) -> Output<S> {
        let mut process = self.process.take().expect("not yet killed");
        process.kill().expect("SIGKILL the child");
        process.wait().expect("reap the child");
        self.reader
            .take()
            .expect("not yet joined")
            .join()
            .expect("the line handler panicked")
    }
}

impl<S> Drop for Child<S> {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}
