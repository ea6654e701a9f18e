//! The disk limit for `benches/run.sh`: how many records per second the daemon's own logs make
//! durable when nothing but appends is asked of them.
//!
//! ```sh
//! cargo build --release --example wal_append
//! target/release/examples/wal_append --dir /path/on/the/real/disk --sizes 1300,7700 --seconds 5
//! ```
//!
//! For each record size it opens a fresh set of partitioned logs in `DIR/size-N` exactly as
//! `sluice serve` does ([`Ingest::open`] with the default configuration: same partition count,
//! segment size, queue and group-commit limits, same metrics observer), then `--concurrency`
//! tokio tasks on a multi-thread runtime (the daemon's kind) each loop on
//! [`Ingest::append`] — the call the HTTP handlers await before answering — spreading over the
//! partitions round-robin. So the figure is the daemon's durable append path with the HTTP
//! stack, envelope encoding and routing taken away: what the disk and the group commit allow at
//! that concurrency (match it to the load generator's connections). Nothing checkpoints, so
//! records go to freshly preallocated segments, as they do in a daemon that has nowhere to
//! publish (the load runs of `benches/run.sh`).
//!
//! The first `--warmup` seconds are not counted. Per size it prints one line:
//! `WAL_RESULT bytes=N records=R seconds=S rate=R/S mb_per_s=… commits=… records_per_commit=…
//! fsync_ms=…`, commit figures from the daemon's own metrics. The logs are left in `DIR` for
//! the caller to delete (deleting gigabytes stalls the disk for a while; the caller chooses when).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use sluice::config::{ByteSize, Config, WalSettings};
use sluice::ingest::Ingest;
use sluice::metrics::{WAL_COMMIT_RECORDS, WAL_FSYNC_DURATION_SECONDS};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Durable append rate of the daemon's logs, without HTTP (benches/run.sh)")]
struct Options {
    /// Directory for the logs (one fresh subdirectory per size); must be on the disk measured.
    #[arg(long)]
    dir: PathBuf,
    /// Record sizes in bytes, comma-separated (e.g. the mean envelope size of each scenario).
    #[arg(long, value_delimiter = ',', required = true)]
    sizes: Vec<usize>,
    /// Concurrent appenders (tasks), like the load generator's connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured seconds per size.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds appended before measuring, per size.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Disk budget of all partitions (must hold everything written; nothing is recycled).
    #[arg(long, default_value = "64GiB")]
    capacity: String,
    /// Partitions; 0 = the daemon's default (one per core).
    #[arg(long, default_value_t = 0)]
    partitions: usize,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let capacity: ByteSize = options
        .capacity
        .parse()
        .map_err(|e| anyhow::anyhow!("--capacity {}: {e}", options.capacity))?;
    if options.concurrency == 0 || options.seconds <= 0.0 {
        bail!("--concurrency and --seconds must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    for &size in &options.sizes {
        let defaults = Config::default();
        let config = Config {
            data_dir: options.dir.join(format!("size-{size}")),
            wal: WalSettings {
                capacity,
                partitions: options.partitions,
                ..defaults.wal.clone()
            },
            ..defaults
        };
        let ingest = Arc::new(
            Ingest::open(&config.wal, config.max_record_bytes(), &config.data_dir)
                .with_context(|| format!("opening logs in {}", config.data_dir.display()))?,
        );
        let line = runtime.block_on(measure(&ingest, size, &options))?;
        println!("{line}");
        ingest.close().context("closing the logs")?;
    }
    Ok(())
}

/// Appends `size`-byte records from `options.concurrency` tasks for warm-up + measured time and
/// returns the result line.
async fn measure(ingest: &Arc<Ingest>, size: usize, options: &Options) -> anyhow::Result<String> {
    let counted = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let partitions = ingest.routable();
    let mut tasks = Vec::with_capacity(options.concurrency);
    for task in 0..options.concurrency {
        let (ingest, counted, counting, stop) = (
            ingest.clone(),
            counted.clone(),
            counting.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = task;
            while !stop.load(Ordering::Relaxed) {
                ingest.append(n % partitions, vec![0x5a; size]).await?;
                if counting.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            Ok::<(), sluice_wal::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(options.warmup)).await;
    let before = commit_counters();
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(options.seconds)).await;
    counting.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let after = commit_counters();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await
            .context("an appender task panicked")?
            .context("append failed")?;
    }
    let records = counted.load(Ordering::Relaxed);
    let commits = after.0 - before.0;
    Ok(format!(
        "WAL_RESULT bytes={size} records={records} seconds={seconds:.3} rate={:.0} mb_per_s={:.1} \
         commits={commits:.0} records_per_commit={:.1} fsync_ms={:.3}",
        records as f64 / seconds,
        records as f64 * size as f64 / seconds / 1e6,
        (after.1 - before.1) / commits.max(1.0),
        1000.0 * (after.2 - before.2) / commits.max(1.0),
    ))
}

/// (group commits, records committed, seconds in fdatasync) so far, from the daemon's metrics.
fn commit_counters() -> (f64, f64, f64) {
    let text = sluice::metrics::handle().render();
    let mut values = (0.0, 0.0, 0.0);
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        let name = name.split('{').next().unwrap_or(name);
        match name.rsplit_once('_') {
            Some((WAL_COMMIT_RECORDS, "count")) => values.0 += value,
            Some((WAL_COMMIT_RECORDS, "sum")) => values.1 += value,
            Some((WAL_FSYNC_DURATION_SECONDS, "sum")) => values.2 += value,
            _ => {}
        }
    }
    values
}
