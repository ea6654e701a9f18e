//! Durable append throughput of `sluice_wal::Wal`, and the same workload on sled 0.34.
//!
//! Run: `cargo bench -p sluice-wal --bench append` (a filter narrows it, e.g.
//! `cargo bench -p sluice-wal --bench append -- target_256B`). Per-append latency at a fixed
//! rate is the `latency` bench; the figures and the commands that produced them are in
//! `BENCHMARKS.md`.
//!
//! # What is measured
//!
//! One criterion iteration is **one record made durable**. For `iters` iterations, `W` writer
//! threads (1, 8 or 64) are started and parked on a barrier; the clock starts when they are
//! released and stops when the last one has finished its share (`iters / W`, the remainder
//! spread over the first few). Each thread loops on a blocking call that returns only once its
//! record is durable, so the figure is "records per second, each acknowledged durable to the
//! thread that wrote it". Records are 100 B, 1 KiB or 16 KiB of constant bytes (neither system
//! compresses); each call gets a fresh `Vec` copy, as a caller handing over ownership would.
//!
//! - **sluice-wal**: `Appender::append(payload)`, which returns after the writer thread has
//!   written the group and `fdatasync`ed the segment (group commit: concurrent writers share a
//!   sync). The log runs with `WalConfig::default()` (64 MiB segments, 1 GiB ring) in steady
//!   state: a consumer thread checkpoints the last durable LSN every 100 ms, so segments are
//!   recycled rather than the ring filling. The checkpoint writes (temp file, fsync, rename,
//!   directory fsync) compete with the appends for the disk, as in the daemon.
//! - **sled 0.34** used as a log: each call is `insert(u64 big-endian key, payload)` followed by
//!   `flush()`, keys taken from a shared counter, default `sled::Config` (background flush every
//!   500 ms). Concurrent `flush()` callers share sled's log writes, so with `W` writers this is
//!   sled's own group commit, and the same contract: each thread's record is flushed when its
//!   `flush()` returns. **Caveat, in sled's favour:** on Linux sled 0.34's `flush()` ends in
//!   `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`, not `fsync`/`fdatasync`: it waits for
//!   writeback but neither flushes the device's volatile cache nor makes metadata durable, so
//!   it promises less than the WAL's `fdatasync` (a real sync happens only every 500 ms in the
//!   background flusher).
//!
//! The `target_256B` group measures the WAL target on its own: 256-byte records from 64
//! writers (target: at least 200 000 durable appends per second on the 2-core machine), once
//! with 64 threads as above (`sluice-wal/64`) and once with 64 tokio tasks on one
//! current-thread runtime awaiting `Appender::append_async` (`sluice-wal-tasks/64`), which is
//! how the daemon's handlers call the log. The clock for the tasks starts before they are
//! spawned (spawning a task costs well under a microsecond).
//!
//! # Where
//!
//! Every run uses a fresh temporary directory under the workspace's `target/` (override with
//! `SLUICE_BENCH_DIR`), i.e. on the same disk as the build, never tmpfs: a sync on tmpfs costs
//! nothing and would measure only the CPU path.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use sluice_wal::{Wal, WalConfig};
use tempfile::TempDir;

/// Record sizes measured, with their labels.
const SIZES: [(usize, &str); 3] = [(100, "100B"), (1024, "1KiB"), (16 << 10, "16KiB")];
/// Concurrent writer threads measured.
const WRITERS: [usize; 3] = [1, 8, 64];
/// How often the consumer thread checkpoints the last durable LSN.
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

/// The directory temporary logs are created in: `SLUICE_BENCH_DIR`, else the workspace target.
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

/// Runs `op` `iters` times in total, spread over `writers` threads, and returns the wall time
/// from releasing the threads until the last one finished.
fn run_concurrent<F: Fn() + Sync>(writers: usize, iters: u64, op: F) -> Duration {
    let barrier = Barrier::new(writers + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers as u64)
            .map(|w| {
                let share = iters / writers as u64 + u64::from(w < iters % writers as u64);
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    barrier.wait();
                    for _ in 0..share {
                        op();
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("writer thread panicked");
        }
        start.elapsed()
    })
}

/// An open log in steady state: a consumer thread checkpoints what is durable so the ring
/// recycles, as the publisher does in the daemon.
struct WalRig {
    wal: Arc<Wal>,
    stop: Arc<AtomicBool>,
    consumer: JoinHandle<()>,
    _dir: TempDir,
}

impl WalRig {
    fn open() -> WalRig {
        let dir = temp_dir("wal-bench-");
        let wal = Wal::open(dir.path(), WalConfig::default()).expect("open the log");
        prewarm(&wal);
        let wal = Arc::new(wal);
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (wal, stop) = (wal.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-checkpointer".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(CHECKPOINT_EVERY);
                        let last = wal.status().last_lsn;
                        wal.checkpoint(last).expect("checkpoint");
                    }
                })
                .expect("spawn the checkpointer")
        };
        WalRig {
            wal,
            stop,
            consumer,
            _dir: dir,
        }
    }

    /// Stops the consumer, then closes the log (draining the writer) and checks it stayed
    /// healthy; the directory is removed after.
    fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.consumer.join().expect("checkpointer panicked");
        let wal = Arc::try_unwrap(self.wal).expect("the consumer held the last other handle");
        wal.close().expect("close the log");
    }
}

/// A sled database used as a log: keys are a counter, big-endian so they sort in append order.
struct SledRig {
    db: sled::Db,
    next_key: AtomicU64,
    _dir: TempDir,
}

impl SledRig {
    fn open() -> SledRig {
        let dir = temp_dir("sled-bench-");
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .expect("open sled");
        SledRig {
            db,
            next_key: AtomicU64::new(0),
            _dir: dir,
        }
    }

    /// One durable append: insert, then flush (which returns once the write is on disk, as far
    /// as sled promises; see the module docs).
    fn append(&self, payload: &[u8]) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        self.db.insert(key, payload).expect("sled insert");
        self.db.flush().expect("sled flush");
    }
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    // Each iteration is a sync-bound append: few, flat samples keep the whole suite to minutes
    // on two cores while each sample still covers hundreds of group commits.
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(1));
}

fn bench_wal(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    size: usize,
    writers: usize,
) {
    let payload = vec![0x5a_u8; size];
    let rig = WalRig::open();
    let appender = rig.wal.appender();
    group.bench_function(BenchmarkId::new("sluice-wal", writers), |b| {
        b.iter_custom(|iters| {
            run_concurrent(writers, iters, || {
                appender.append(payload.clone()).expect("append");
            })
        })
    });
    drop(appender);
    rig.close();
}

fn bench_sled(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    size: usize,
    writers: usize,
) {
    let payload = vec![0x5a_u8; size];
    let rig = SledRig::open();
    group.bench_function(BenchmarkId::new("sled", writers), |b| {
        b.iter_custom(|iters| run_concurrent(writers, iters, || rig.append(&payload)))
    });
}

/// Record size × writers, sluice-wal next to sled, one criterion group per size.
fn durable_append(c: &mut Criterion) {
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("durable_append/{label}"));
        configure(&mut group);
        for writers in WRITERS {
            bench_wal(&mut group, size, writers);
            bench_sled(&mut group, size, writers);
        }
        group.finish();
    }
}

/// The same appends from `writers` tokio tasks on one current-thread runtime, awaiting
/// `Appender::append_async`: how the daemon's request handlers call the log. One thread is
/// woken per group commit instead of one per record.
fn bench_wal_tasks(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    size: usize,
    writers: usize,
) {
    let payload = Arc::new(vec![0x5a_u8; size]);
    let rig = WalRig::open();
    let appender = rig.wal.appender();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("build a tokio runtime");
    group.bench_function(BenchmarkId::new("sluice-wal-tasks", writers), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..writers as u64)
                    .map(|w| {
                        let share = iters / writers as u64 + u64::from(w < iters % writers as u64);
                        let (appender, payload) = (appender.clone(), payload.clone());
                        tokio::spawn(async move {
                            for _ in 0..share {
                                let record = payload.to_vec();
                                appender.append_async(record).await.expect("append");
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("writer task panicked");
                }
                start.elapsed()
            })
        })
    });
    drop(runtime);
    drop(appender);
    rig.close();
}

/// The target: 256-byte records, 64 writers, at least 200k durable appends/s. Measured
/// with 64 threads (as the size × writers groups) and with 64 tasks (as the daemon calls it).
fn target_256b(c: &mut Criterion) {
    let mut group = c.benchmark_group("target_256B");
    configure(&mut group);
    group.measurement_time(Duration::from_secs(5));
    bench_wal(&mut group, 256, 64);
    bench_wal_tasks(&mut group, 256, 64);
    group.finish();
}

criterion_group!(benches, durable_append, target_256b);
criterion_main!(benches);
