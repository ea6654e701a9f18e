//! Per-append latency of `sluice_wal::Wal` at a fixed rate, and the disk's sync latency for
//! context. Not a criterion bench: an open-loop load has to pace itself, which criterion's
//! closed loop cannot express, so this is a plain `main` that prints a report.
//!
//! Run: `cargo bench -p sluice-wal --bench latency`. Settings through the environment:
//! `LATENCY_RATE` (appends/s; default half the maximum measured in step 2), `LATENCY_SECS`
//! (length of the paced run, default 10), `SLUICE_BENCH_DIR` (where temporary logs go; default
//! the workspace's `target/`, i.e. the real disk, never tmpfs).
//!
//! # Steps
//!
//! 1. **Disk sync latency**: 2 000 × (`pwrite` 4 KiB at the next offset + `fdatasync`) into a
//!    file whose blocks were already written (the WAL's steady state, a recycled segment), then
//!    the same into a freshly `fallocate`d file (a segment slot's first use: every sync also
//!    converts unwritten extents, a metadata change). Median, p99, max.
//! 2. **Maximum rate**: 64 threads append 256-byte records in a closed loop for 3 s.
//! 3. **Latency at a fixed rate**: 64 threads each pace their appends to `rate / 64` per second
//!    (evenly spaced, threads phase-shifted), open loop: a thread that falls behind does not
//!    skip appends, so queueing shows up instead of being hidden (no coordinated omission).
//!    Per append two durations are recorded: *response* (from the moment the append was due to
//!    its durable acknowledgement, the figure the 2 ms p99 target is about) and *service* (from
//!    the call to its return). Percentiles come from the sorted samples.
//! 4. **The same rate through `append_async`**: one driver thread wakes every 100 µs and
//!    submits every append that has come due (open loop, same schedule), and each append is
//!    awaited by its own task on a current-thread tokio runtime on another thread, which is
//!    how the daemon's handlers use the log. *Response* is measured from the due time (so it
//!    includes up to one driver tick), *service* from submission; both end when the awaiting
//!    task runs, so the runtime's wake-up is included.
//!
//! Steps 2 and 3 run the log in steady state, `WalConfig::default()`, first written through
//! four segments of 1 MiB records (confirmed as they go) so the slots in use have been
//! recycled, then with a consumer thread checkpointing the last durable LSN every 100 ms; an observer collects
//! the group commits (records per sync, sync time).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use sluice_wal::fs::{FileSystem, OpenMode, StdFs};
use sluice_wal::{CommitStats, Observer, Wal, WalConfig};
use tempfile::TempDir;

/// Record size of the target.
const RECORD_BYTES: usize = 256;
/// Concurrent writers of the target.
const WRITERS: usize = 64;
/// How often the consumer thread checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Segments written (and recycled) before measuring; see [`prewarm`].
const PREWARM_SEGMENTS: u64 = 4;

/// Writes a little over `PREWARM_SEGMENTS` segments of 1 MiB records, checkpointing after each,
/// so the slots the measurement writes into have been written and recycled before: the ring's
/// steady state. A slot's first use writes into freshly `fallocate`d (unwritten) extents, whose
/// syncs also carry the extent conversion, which a long-running log pays only once per slot.
fn prewarm(wal: &Wal) {
    let config = WalConfig::default();
    let records = PREWARM_SEGMENTS * config.segment_bytes / (1 << 20) + 1;
    for _ in 0..records {
        let lsn = wal.append(vec![0xa5; 1 << 20]).expect("prewarm append");
        wal.checkpoint(lsn).expect("prewarm checkpoint");
    }
}
/// Length of the closed-loop run that finds the maximum rate.
const MAX_RATE_RUN: Duration = Duration::from_secs(3);

fn bench_root() -> PathBuf {
    let root = std::env::var_os("SLUICE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    std::fs::create_dir_all(&root).expect("create the benchmark directory");
    root
}

fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(bench_root())
        .expect("create a temporary directory for the benchmark")
}

fn env_number(name: &str) -> Option<f64> {
    let raw = std::env::var(name).ok()?;
    Some(
        raw.parse()
            .unwrap_or_else(|_| panic!("{name}={raw:?} is not a number")),
    )
}

/// Percentile `p` (0..=100) of sorted samples, nearest rank.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn summary(name: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    println!(
        "  {name:<10} n={:<8} p50 {:>9}  p90 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}",
        samples.len(),
        fmt_dur(percentile(samples, 50.0)),
        fmt_dur(percentile(samples, 90.0)),
        fmt_dur(percentile(samples, 99.0)),
        fmt_dur(percentile(samples, 99.9)),
        fmt_dur(samples.last().copied().unwrap_or_default()),
    );
}

/// CPU time this process has used so far (all threads, user + system), from `/proc/self/stat`
/// (fields 14 and 15, in clock ticks, taken as the usual 100 per second); `None` off Linux.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; the fields after it start past its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Prints the CPU this process used since `since`, as cores busy over `elapsed`.
fn report_cpu(since: Option<Duration>, elapsed: Duration) {
    if let (Some(before), Some(after)) = (since, cpu_time()) {
        let used = after.saturating_sub(before);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "  cpu: {:.2} s in {:.2} s = {:.2} cores busy (of {cores})",
            used.as_secs_f64(),
            elapsed.as_secs_f64(),
            used.as_secs_f64() / elapsed.as_secs_f64()
        );
    }
}

/// Step 1: `pwrite` 4 KiB + `fdatasync`, into already-written and into fallocated blocks.
fn disk_sync_latency() {
    const BLOCK: usize = 4096;
    const ROUNDS: usize = 2000;
    let dir = temp_dir("sync-probe-");
    let block = vec![0xa5_u8; BLOCK];
    let len = (BLOCK * ROUNDS) as u64;
    println!("step 1: pwrite {BLOCK} B + fdatasync, {ROUNDS} rounds each");

    let written = dir.path().join("written");
    let f = std::fs::File::create_new(&written).expect("create probe file");
    f.write_all_at(&vec![0u8; len as usize], 0)
        .expect("fill probe file");
    f.sync_all().expect("sync probe file");
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let t = Instant::now();
        f.write_all_at(&block, (i * BLOCK) as u64).expect("pwrite");
        f.sync_data().expect("fdatasync");
        samples.push(t.elapsed());
    }
    summary("written", &mut samples);

    // Through the WAL's own filesystem seam, so the preallocation is exactly the log's.
    let path = dir.path().join("fallocated");
    let file = StdFs
        .open(&path, OpenMode::CreateNew)
        .expect("create probe file");
    file.allocate(len).expect("fallocate");
    file.sync_data().expect("sync probe file");
    StdFs.sync_dir(dir.path()).expect("sync directory");
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let t = Instant::now();
        file.write_all_at(&block, (i * BLOCK) as u64)
            .expect("pwrite");
        file.sync_data().expect("fdatasync");
        samples.push(t.elapsed());
    }
    summary("fallocated", &mut samples);
}

/// Group commits seen by the writer.
#[derive(Debug, Default)]
struct Commits {
    records: AtomicU64,
    syncs: Mutex<Vec<Duration>>,
}

impl Observer for Commits {
    fn committed(&self, s: &CommitStats) {
        self.records.fetch_add(s.records as u64, Ordering::Relaxed);
        self.syncs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s.sync_time);
    }
}

impl Commits {
    /// Takes what was collected so far and resets.
    fn take(&self) -> (u64, Vec<Duration>) {
        let records = self.records.swap(0, Ordering::Relaxed);
        let syncs = std::mem::take(&mut *self.syncs.lock().unwrap_or_else(|e| e.into_inner()));
        (records, syncs)
    }

    fn report(&self) {
        let (records, mut syncs) = self.take();
        if syncs.is_empty() {
            return;
        }
        println!(
            "  group commits: {} ({:.1} records per sync on average)",
            syncs.len(),
            records as f64 / syncs.len() as f64
        );
        summary("sync", &mut syncs);
    }
}

/// The log in steady state, as in the `append` bench.
struct Rig {
    wal: Arc<Wal>,
    commits: Arc<Commits>,
    stop: Arc<AtomicBool>,
    consumer: std::thread::JoinHandle<()>,
    _dir: TempDir,
}

impl Rig {
    fn open() -> Rig {
        let dir = temp_dir("wal-latency-");
        let commits = Arc::new(Commits::default());
        let wal = Wal::open_with(
            dir.path(),
            WalConfig::default(),
            Arc::new(StdFs),
            commits.clone(),
        )
        .expect("open the log");
        prewarm(&wal);
        let wal = Arc::new(wal);
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (wal, stop) = (wal.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    let last = wal.status().last_lsn;
                    wal.checkpoint(last).expect("checkpoint");
                }
            })
        };
        Rig {
            wal,
            commits,
            stop,
            consumer,
            _dir: dir,
        }
    }

    fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.consumer.join().expect("checkpointer panicked");
        let wal = Arc::try_unwrap(self.wal).expect("the consumer held the last other handle");
        wal.close().expect("close the log");
    }
}

/// Step 2: 64 writers in a closed loop; returns appends per second.
fn max_rate(rig: &Rig) -> f64 {
    let appender = rig.wal.appender();
    let payload = vec![0x5a_u8; RECORD_BYTES];
    // A short warm-up creates the first slots and settles the page cache.
    let warm_until = Instant::now() + Duration::from_millis(500);
    let done = AtomicU64::new(0);
    let barrier = Barrier::new(WRITERS + 1);
    let mut cpu = None;
    let elapsed = std::thread::scope(|s| {
        for _ in 0..WRITERS {
            let (appender, payload, done, barrier) = (&appender, &payload, &done, &barrier);
            s.spawn(move || {
                while Instant::now() < warm_until {
                    appender.append(payload.clone()).expect("append");
                }
                barrier.wait();
                let end = Instant::now() + MAX_RATE_RUN;
                let mut n = 0;
                while Instant::now() < end {
                    appender.append(payload.clone()).expect("append");
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        barrier.wait();
        rig.commits.take();
        cpu = cpu_time();
        let start = Instant::now();
        // Scope end joins the writers; their last append may finish just after `end`.
        start
    });
    let elapsed = elapsed.elapsed();
    report_cpu(cpu, elapsed);
    done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// Step 3: paced, open-loop appends at `rate` per second for `run`.
fn paced(rig: &Rig, rate: f64, run: Duration) {
    let appender = rig.wal.appender();
    let payload = vec![0x5a_u8; RECORD_BYTES];
    let interval = Duration::from_secs_f64(WRITERS as f64 / rate);
    let per_thread = (run.as_secs_f64() * rate / WRITERS as f64).ceil() as usize;
    let barrier = Barrier::new(WRITERS + 1);
    let results: Mutex<(Vec<Duration>, Vec<Duration>)> = Mutex::default();
    let mut start = Instant::now();
    let mut cpu = None;
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (appender, payload, barrier, results) = (&appender, &payload, &barrier, &results);
            s.spawn(move || {
                let mut response = Vec::with_capacity(per_thread);
                let mut service = Vec::with_capacity(per_thread);
                barrier.wait();
                let t0 = Instant::now() + interval.mul_f64(w as f64 / WRITERS as f64);
                for i in 0..per_thread {
                    let due = t0 + interval * i as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let called = Instant::now();
                    appender.append(payload.clone()).expect("append");
                    let acked = Instant::now();
                    response.push(acked - due);
                    service.push(acked - called);
                }
                let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                r.0.extend(response);
                r.1.extend(service);
            });
        }
        barrier.wait();
        rig.commits.take();
        cpu = cpu_time();
        start = Instant::now();
    });
    let elapsed = start.elapsed();
    report_cpu(cpu, elapsed);
    let (mut response, mut service) = results.into_inner().unwrap_or_else(|e| e.into_inner());
    println!(
        "  achieved {:.0} appends/s over {:.1} s (asked {rate:.0}/s)",
        response.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    summary("response", &mut response);
    summary("service", &mut service);
}

/// Step 4: the same paced load from one driver thread submitting `append_async` futures on
/// schedule, each awaited by its own task on a current-thread tokio runtime running on a second
/// thread, as the daemon's request handlers await the log.
fn paced_tasks(rig: &Rig, rate: f64, run: Duration) {
    /// How often the driver wakes to submit every append that has come due.
    const TICK: Duration = Duration::from_micros(100);
    let appender = rig.wal.appender();
    let payload = vec![0x5a_u8; RECORD_BYTES];
    let total = (run.as_secs_f64() * rate).ceil() as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("build a tokio runtime");
    let handle = runtime.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut tasks = Vec::with_capacity(total as usize);
    let mut cpu = None;
    let start = std::thread::scope(|s| {
        let runtime = &runtime;
        s.spawn(move || runtime.block_on(async { stop_rx.await.ok() }));
        cpu = cpu_time();
        let start = Instant::now();
        let mut next = 0u64;
        while next < total {
            let due_now = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
            while next < due_now {
                let due = start + Duration::from_secs_f64(next as f64 / rate);
                let submitted = Instant::now();
                let ack = appender.append_async(payload.clone());
                tasks.push(handle.spawn(async move {
                    ack.await.expect("append");
                    let acked = Instant::now();
                    (acked - due, acked - submitted)
                }));
                next += 1;
            }
            std::thread::sleep(TICK);
        }
        // Every append is submitted; the runtime thread can stop, and the rest is awaited below.
        let _ = stop_tx.send(());
        start
    });
    let (mut response, mut service): (Vec<_>, Vec<_>) = runtime.block_on(async {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.expect("append task panicked"));
        }
        out.into_iter().unzip()
    });
    let elapsed = start.elapsed();
    report_cpu(cpu, elapsed);
    println!(
        "  achieved {:.0} appends/s over {:.1} s (asked {rate:.0}/s)",
        response.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    summary("response", &mut response);
    summary("service", &mut service);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not name this bench skips it,
    // so `cargo bench -p sluice-wal -- durable_append` runs only the criterion groups.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "latency".contains(f.as_str())) {
        return;
    }

    println!(
        "sluice-wal latency bench (temporary files under {})",
        bench_root().display()
    );
    disk_sync_latency();

    let rig = Rig::open();
    println!("step 2: {WRITERS} writers × {RECORD_BYTES} B, closed loop, {MAX_RATE_RUN:?}");
    let max = max_rate(&rig);
    println!("  max {max:.0} durable appends/s");
    rig.commits.report();

    let rate = env_number("LATENCY_RATE").unwrap_or(max / 2.0);
    let run = Duration::from_secs_f64(env_number("LATENCY_SECS").unwrap_or(10.0));
    println!(
        "step 3: {WRITERS} writers × {RECORD_BYTES} B, paced open loop at {rate:.0}/s for {run:?}"
    );
    paced(&rig, rate, run);
    rig.commits.report();
    println!("step 4: one driver thread × {RECORD_BYTES} B, paced open loop at {rate:.0}/s for {run:?}, awaited by tokio tasks");
    rig.commits.take();
    paced_tasks(&rig, rate, run);
    rig.commits.report();
    rig.close();
}
