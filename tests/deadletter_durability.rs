//! A flush of the dead-letter store is durable across a power cut, not only a kill -9: traced
//! with strace, [`Store::flush`] fsyncs sled's log file `db` and every new file in `blobs/` (and
//! that directory) after the last write to each (see the store's module docs, "Durability").
//! Without those syncs sled leaves the log to `sync_file_range` and never syncs a blob, which
//! this test would report.
//!
//! The traced process is this test binary re-run as its ignored child test. Needs `strace`
//! (Debian's package; scripts/test.sh installs it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::deadletter::{Entry, EntryId, Store};
use sluice::event::FailureCategory;

const DIR_ENV: &str = "SLUICE_TEST_DLQ_TRACE_DIR";
const CHILD: &str = "traced_child_writes_a_small_and_a_large_entry_and_flushes";

fn entry(lsn: u64, envelope_len: usize) -> Entry {
    let id = EntryId {
        received_at_ms: 1_700_000_000_000 + lsn,
        partition: 0,
        lsn,
        index: 0,
    };
    Entry {
        id,
        time_ms: id.received_at_ms as i64,
        category: FailureCategory::ALL[0],
        messages: vec![format!("entry {lsn}")],
        attempts: 1,
        event_payload: None,
        envelope: (0..envelope_len).map(|i| (i % 251) as u8).collect(),
    }
}

/// A path the child "opens" (it does not exist) so that the trace shows where the flush
/// starts and ends.
fn marker(dir: &Path, name: &str) -> PathBuf {
    dir.parent().unwrap().join(name)
}

/// The traced child: runs only when the test below starts it.
#[test]
#[ignore = "the child process the strace test below traces; it runs only when that test starts it"]
fn traced_child_writes_a_small_and_a_large_entry_and_flushes() {
    let Some(dir) = std::env::var_os(DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let store = Store::open(&dir).unwrap();
    // One entry that fits sled's log buffers, one (256 KiB of raw request) that becomes a blob.
    store
        .put_all(&[entry(1, 100), entry(2, 256 << 10)])
        .unwrap();
    let _ = std::fs::File::open(marker(&dir, "flush-begin"));
    store.flush().unwrap();
    let _ = std::fs::File::open(marker(&dir, "flush-end"));
}

/// One system call from the trace: its name, its arguments' text and its result.
#[derive(Debug)]
struct Call {
    name: String,
    args: String,
    result: String,
}

/// Parses `strace -f` output, joining `<unfinished ...>` / `<... resumed>` halves per thread.
fn calls(trace: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let whole = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if rest.starts_with("<... ") {
            let Some(head) = pending.remove(pid) else {
                continue;
            };
            let tail = rest.split_once("resumed>").map(|(_, t)| t).unwrap_or("");
            format!("{head}{tail}")
        } else {
            rest.to_string()
        };
        // `name(args) = result`, with strace's padding before the `=`.
        let (Some(open), Some(eq)) = (whole.find('('), whole.rfind(" = ")) else {
            continue;
        };
        let Some(args) = whole[open + 1..eq].trim_end().strip_suffix(')') else {
            continue;
        };
        out.push(Call {
            name: whole[..open].to_string(),
            args: args.to_string(),
            result: whole[eq + 3..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
        });
    }
    out
}

/// The path an `openat` names (its second argument, quoted).
fn opened_path(args: &str) -> Option<String> {
    let start = args.find('"')? + 1;
    let end = start + args[start..].find('"')?;
    Some(args[start..end].to_string())
}

fn first_arg(args: &str) -> &str {
    args.split(',').next().unwrap_or("").trim()
}

#[test]
fn a_flush_fsyncs_the_log_every_new_blob_and_the_blob_directory_after_their_last_write() {
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is not installed: install Debian's `strace` package (scripts/test.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deadletter");
    let trace_file = tmp.path().join("trace.txt");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-s", "256", "-o"])
        .arg(&trace_file)
        .args([
            "-e",
            "trace=openat,open,close,fsync,fdatasync,sync_file_range,write,pwrite64,pwritev,writev",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([CHILD, "--exact", "--ignored", "--test-threads=1"])
        .env(DIR_ENV, &dir)
        .status()
        .unwrap();
    assert!(status.success(), "the traced child failed: {status}");
    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let calls = calls(&trace);

    let begin_name = marker(&dir, "flush-begin").display().to_string();
    let end_name = marker(&dir, "flush-end").display().to_string();
    let db = dir.join("db").display().to_string();
    let blobs = dir.join("blobs").display().to_string();
    let is_marker = |c: &Call, name: &str| {
        c.name.starts_with("open") && opened_path(&c.args).as_deref() == Some(name)
    };
    let begin = calls
        .iter()
        .position(|c| is_marker(c, &begin_name))
        .unwrap_or_else(|| panic!("the trace has no flush-begin marker:\n{trace}"));
    let end = calls
        .iter()
        .position(|c| is_marker(c, &end_name))
        .expect("the trace has the flush-end marker");

    // Follow the file descriptors: which path each names at each point of the trace.
    let mut fds: HashMap<String, String> = HashMap::new();
    let mut last_write: HashMap<String, usize> = HashMap::new();
    let mut synced_at: HashMap<String, usize> = HashMap::new();
    for (i, c) in calls.iter().enumerate() {
        match c.name.as_str() {
            "openat" | "open" => {
                if let Some(path) = opened_path(&c.args) {
                    if !c.result.starts_with('-') {
                        fds.insert(c.result.clone(), path);
                    }
                }
            }
            "close" => {
                fds.remove(first_arg(&c.args));
            }
            "write" | "pwrite64" | "pwritev" | "writev" => {
                if let Some(path) = fds.get(first_arg(&c.args)) {
                    last_write.insert(path.clone(), i);
                }
            }
            "fsync" | "fdatasync" if (begin..end).contains(&i) && c.result == "0" => {
                if let Some(path) = fds.get(first_arg(&c.args)) {
                    synced_at.insert(path.clone(), i);
                }
            }
            _ => {}
        }
    }

    let blob_files: Vec<&String> = last_write
        .keys()
        .filter(|p| p.starts_with(&format!("{blobs}/")))
        .collect();
    assert!(
        !blob_files.is_empty(),
        "the large entry did not become a blob; the test no longer covers blobs:\n{trace}"
    );
    let mut problems = Vec::new();
    for path in blob_files.iter().copied().chain([&db]) {
        match synced_at.get(path) {
            None => problems.push(format!("{path} was not fsynced during the flush")),
            Some(&at) if last_write.get(path).is_some_and(|&w| w > at) => {
                problems.push(format!("{path} was written after its fsync"))
            }
            Some(_) => {}
        }
    }
    if !synced_at.contains_key(&blobs) {
        problems.push(format!(
            "{blobs} (the directory) was not fsynced during the flush"
        ));
    }
    assert!(problems.is_empty(), "{problems:#?}\n--- trace ---\n{trace}");
}
