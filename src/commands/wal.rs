//! `sluice wal status|inspect|verify`: read-only views of the partition logs under `data_dir`.
//!
//! Every command opens the logs with [`sluice_wal::LogView`] or [`sluice_wal::verify`], which
//! take no lock and change nothing, so they are safe while the daemon runs (a snapshot taken
//! mid-write may show the newest batch as a torn tail; re-run to confirm).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;
use sluice_wal::{LogView, Lsn, Status, WalConfig};

use super::progress::{Progress, ProgressMode};
use super::{CommandError, Outcome};
use crate::config::{ByteSize, Config};
use crate::envelope::Envelope;
use crate::ingest::{existing_partitions, partition_count, partition_dir, wal_config};
use crate::wire::time::now_ms;

/// One partition's state, as `wal status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionStatus {
    /// The partition's index.
    pub partition: usize,
    /// Records ever appended (= `last_lsn`; survives restarts).
    pub appended_total: u64,
    /// Records appended but not yet confirmed as published.
    pub unpublished: u64,
    /// Bytes of segments that cannot be recycled yet.
    pub used_bytes: u64,
    /// This partition's share of `wal.capacity`.
    pub capacity_bytes: u64,
    /// The oldest record held on disk.
    pub first_lsn: u64,
    /// The newest durable record.
    pub last_lsn: u64,
    /// Every record at or below it is confirmed.
    pub checkpoint: u64,
    /// Records overwritten by the `drop_oldest` policy, ever.
    pub dropped_total: u64,
    /// Segment files holding records.
    pub segments: usize,
    /// Seconds since the oldest unpublished record was received; `None` when everything is
    /// published (or its envelope could not be decoded).
    pub oldest_unpublished_age_seconds: Option<f64>,
}

/// `wal status` for every partition plus totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// The data directory looked at.
    pub data_dir: PathBuf,
    /// Sum over partitions.
    pub appended_total: u64,
    /// Sum over partitions.
    pub unpublished: u64,
    /// Sum over partitions.
    pub used_bytes: u64,
    /// Sum over partitions.
    pub capacity_bytes: u64,
    /// Sum over partitions.
    pub dropped_total: u64,
    /// The oldest over all partitions.
    pub oldest_unpublished_age_seconds: Option<f64>,
    /// Each partition found on disk, by index.
    pub partitions: Vec<PartitionStatus>,
    /// Partitions that could not be opened: `(index, error)`.
    #[serde(skip)]
    pub failed: Vec<(usize, String)>,
}

/// Options of `wal inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectOptions {
    /// Only this partition.
    pub partition: Option<usize>,
    /// First LSN to show in each partition (default: the oldest held).
    pub from: Option<u64>,
    /// Most records per partition; 0 = no limit.
    pub limit: u64,
    /// One JSON object per line.
    pub json: bool,
}

fn partitions(data_dir: &Path) -> Result<Vec<usize>, CommandError> {
    existing_partitions(data_dir).map_err(|source| CommandError::ListPartitions {
        path: data_dir.to_path_buf(),
        source,
    })
}

/// The log configuration the daemon uses for every partition (it fixes the capacity share
/// reported; segment sizes are read from the files).
fn view_config(config: &Config) -> WalConfig {
    wal_config(
        &config.wal,
        config.max_record_bytes(),
        partition_count(&config.wal),
    )
}

fn open_view(data_dir: &Path, partition: usize, wal: &WalConfig) -> Result<LogView, CommandError> {
    let path = partition_dir(data_dir, partition);
    LogView::open(&path, wal).map_err(|source| CommandError::Wal {
        partition,
        path,
        source,
    })
}

/// Age in seconds of the oldest record not yet confirmed, read from its envelope.
fn oldest_unpublished_age(view: &LogView, status: &Status, now_ms: i64) -> Option<f64> {
    if status.unconfirmed == 0 {
        return None;
    }
    let from = Lsn(status.checkpoint.0 + 1).max(status.first_lsn);
    let record = view.reader(from).next().ok()??;
    let envelope = Envelope::decode(&record.payload).ok()?;
    Some((now_ms - envelope.received_at_ms).max(0) as f64 / 1000.0)
}

/// Reads every partition's status.
pub fn collect_status(config: &Config) -> Result<StatusReport, CommandError> {
    let data_dir = &config.data_dir;
    let found = partitions(data_dir)?;
    let wal = view_config(config);
    let now = now_ms();
    let mut report = StatusReport {
        data_dir: data_dir.clone(),
        appended_total: 0,
        unpublished: 0,
        used_bytes: 0,
        capacity_bytes: 0,
        dropped_total: 0,
        oldest_unpublished_age_seconds: None,
        partitions: Vec::new(),
        failed: Vec::new(),
    };
    for &partition in &found {
        let view = match open_view(data_dir, partition, &wal) {
            Ok(v) => v,
            Err(e) => {
                report.failed.push((partition, e.to_string()));
                continue;
            }
        };
        let s = view.status();
        let p = PartitionStatus {
            partition,
            appended_total: s.last_lsn.0,
            unpublished: s.unconfirmed,
            used_bytes: s.used_bytes,
            capacity_bytes: s.capacity_bytes,
            first_lsn: s.first_lsn.0,
            last_lsn: s.last_lsn.0,
            checkpoint: s.checkpoint.0,
            dropped_total: s.dropped_total,
            segments: s.segments,
            oldest_unpublished_age_seconds: oldest_unpublished_age(&view, &s, now),
        };
        report.appended_total += p.appended_total;
        report.unpublished += p.unpublished;
        report.used_bytes += p.used_bytes;
        report.capacity_bytes += p.capacity_bytes;
        report.dropped_total += p.dropped_total;
        report.oldest_unpublished_age_seconds = match (
            report.oldest_unpublished_age_seconds,
            p.oldest_unpublished_age_seconds,
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        report.partitions.push(p);
    }
    Ok(report)
}

/// `sluice wal status [--json]`.
pub fn status(
    config: &Config,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CommandError> {
    let report = collect_status(config)?;
    if as_json {
        let mut value = serde_json::to_value(&report).unwrap_or_default();
        if let (Some(obj), false) = (value.as_object_mut(), report.failed.is_empty()) {
            obj.insert(
                "errors".into(),
                report
                    .failed
                    .iter()
                    .map(|(p, e)| json!({ "partition": p, "error": e }))
                    .collect(),
            );
        }
        writeln!(out, "{value}")?;
    } else {
        write_status_table(&report, out)?;
    }
    if report.failed.is_empty() {
        Ok(Outcome::Clean)
    } else {
        Err(CommandError::PartitionsFailed {
            count: report.failed.len(),
        })
    }
}

/// Bytes for a table cell: exact units when they divide evenly (`4GiB`), else one decimal
/// (`28.9KiB`).
fn human_bytes(n: u64) -> String {
    let exact = ByteSize(n).to_string();
    if exact.ends_with("iB") || n < 1024 {
        return exact;
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in ["KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1}{unit}")
}

fn age_text(age: Option<f64>) -> String {
    age.map_or_else(|| "-".into(), |a| format!("{a:.1}s"))
}

fn write_status_table(r: &StatusReport, out: &mut dyn Write) -> std::io::Result<()> {
    let header = [
        "partition",
        "appended",
        "unpublished",
        "used",
        "capacity",
        "first_lsn",
        "last_lsn",
        "checkpoint",
        "dropped",
        "oldest_unpublished",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for p in &r.partitions {
        rows.push(vec![
            p.partition.to_string(),
            p.appended_total.to_string(),
            p.unpublished.to_string(),
            human_bytes(p.used_bytes),
            human_bytes(p.capacity_bytes),
            p.first_lsn.to_string(),
            p.last_lsn.to_string(),
            p.checkpoint.to_string(),
            p.dropped_total.to_string(),
            age_text(p.oldest_unpublished_age_seconds),
        ]);
    }
    rows.push(vec![
        "total".into(),
        r.appended_total.to_string(),
        r.unpublished.to_string(),
        human_bytes(r.used_bytes),
        human_bytes(r.capacity_bytes),
        "-".into(),
        "-".into(),
        "-".into(),
        r.dropped_total.to_string(),
        age_text(r.oldest_unpublished_age_seconds),
    ]);
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    writeln!(out, "data_dir: {}", r.data_dir.display())?;
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    for (p, e) in &r.failed {
        writeln!(out, "partition {p}: error: {e}")?;
    }
    Ok(())
}

/// `sluice wal inspect`: decoded envelopes, one line each. Records that fail to decode are
/// reported (with their LSN) and make the outcome [`Outcome::ProblemsFound`].
pub fn inspect(
    config: &Config,
    opts: &InspectOptions,
    out: &mut dyn Write,
) -> Result<Outcome, CommandError> {
    let data_dir = &config.data_dir;
    let found = partitions(data_dir)?;
    let selected: Vec<usize> = match opts.partition {
        Some(p) if found.contains(&p) => vec![p],
        Some(p) => {
            return Err(CommandError::NoSuchPartition {
                partition: p,
                data_dir: data_dir.clone(),
                found,
            })
        }
        None => found.clone(),
    };
    let wal = view_config(config);
    let mut undecodable = 0u64;
    for partition in selected {
        let view = open_view(data_dir, partition, &wal)?;
        let from = opts.from.map_or(view.status().first_lsn, Lsn);
        let mut reader = view.reader(from);
        let mut shown = 0u64;
        while opts.limit == 0 || shown < opts.limit {
            let record = reader.next().map_err(|source| CommandError::Wal {
                partition,
                path: partition_dir(data_dir, partition),
                source,
            })?;
            let Some(record) = record else { break };
            shown += 1;
            if !write_record(out, &record.payload, record.lsn, partition, opts.json)? {
                undecodable += 1;
            }
        }
    }
    if undecodable > 0 {
        if !opts.json {
            writeln!(out, "{undecodable} record(s) could not be decoded")?;
        }
        Ok(Outcome::ProblemsFound)
    } else {
        Ok(Outcome::Clean)
    }
}

/// One readable line per record: where, when, what.
fn summary_line(env: &Envelope, lsn: Lsn, partition: usize) -> String {
    let at = if env.received_at_ms >= 0 {
        humantime::format_rfc3339_millis(
            UNIX_EPOCH + Duration::from_millis(env.received_at_ms as u64),
        )
        .to_string()
    } else {
        format!("{}ms", env.received_at_ms)
    };
    let mut line = format!(
        "p{partition} lsn={lsn} {at} {} {} route={} body={}B",
        env.method,
        env.path,
        env.route,
        env.body.len()
    );
    if let Some(q) = &env.query {
        line.push_str(&format!(" query={}", truncate(q, 120)));
    }
    if let Some(peer) = &env.peer {
        line.push_str(&format!(" peer={peer}"));
    }
    if let Some(ua) = env.header("user-agent") {
        line.push_str(&format!(" ua={:?}", truncate(ua, 80)));
    }
    line
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// What `wal verify` found in one partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionVerify {
    /// The partition's index.
    pub partition: usize,
    /// Its directory.
    pub path: PathBuf,
    /// Segments with valid headers.
    pub segments: usize,
    /// Valid records found.
    pub records: u64,
    /// The oldest record held.
    pub first_lsn: u64,
    /// The newest valid record.
    pub last_lsn: u64,
    /// The durable checkpoint.
    pub checkpoint: u64,
    /// Damage found (each one a segment file, an offset and a reason).
    pub problems: Vec<VerifyProblem>,
    /// The newest segment's unacknowledged tail, truncated on the next open: not a problem.
    pub torn_tail: Option<VerifyProblem>,
    /// Why the partition could not be read at all (not a finding about the data).
    pub error: Option<String>,
}

/// One bad spot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyProblem {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset within it.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl From<&sluice_wal::Problem> for VerifyProblem {
    fn from(p: &sluice_wal::Problem) -> Self {
        VerifyProblem {
            path: p.path.clone(),
            offset: p.offset,
            reason: p.reason.clone(),
        }
    }
}

/// `wal verify` over every partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The data directory looked at.
    pub data_dir: PathBuf,
    /// True when no problem was found and every partition could be read.
    pub ok: bool,
    /// Problems over all partitions.
    pub problems: usize,
    /// Partitions that could not be read.
    pub unreadable: usize,
    /// Records checked over all partitions.
    pub records: u64,
    /// Each partition found on disk.
    pub partitions: Vec<PartitionVerify>,
    /// The summary line for stderr (`sluice wal verify: … in 0.42s`).
    #[serde(skip)]
    pub summary: String,
}

/// Bytes of the files in a directory (the work `verify` has to do there).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Checks every partition, with a progress bar over their bytes on a terminal (cleared when
/// done; the summary line is left in [`VerifyReport::summary`]).
pub fn collect_verify(config: &Config, mode: ProgressMode) -> Result<VerifyReport, CommandError> {
    let data_dir = &config.data_dir;
    let found = partitions(data_dir)?;
    let sizes: Vec<u64> = found
        .iter()
        .map(|&p| dir_bytes(&partition_dir(data_dir, p)))
        .collect();
    let progress = Progress::new("wal verify", "bytes", sizes.iter().sum(), mode);
    let mut report = VerifyReport {
        data_dir: data_dir.clone(),
        ok: true,
        problems: 0,
        unreadable: 0,
        records: 0,
        partitions: Vec::new(),
        summary: String::new(),
    };
    for (&partition, &bytes) in found.iter().zip(&sizes) {
        let dir = partition_dir(data_dir, partition);
        progress.set_message(format!("partition {partition}"));
        let mut p = PartitionVerify {
            partition,
            path: dir.clone(),
            segments: 0,
            records: 0,
            first_lsn: 0,
            last_lsn: 0,
            checkpoint: 0,
            problems: Vec::new(),
            torn_tail: None,
            error: None,
        };
        match sluice_wal::verify(&dir) {
            Ok(r) => {
                p.segments = r.segments;
                p.records = r.records;
                p.first_lsn = r.first_lsn.0;
                p.last_lsn = r.last_lsn.0;
                p.checkpoint = r.checkpoint.0;
                p.problems = r.problems.iter().map(VerifyProblem::from).collect();
                p.torn_tail = r.torn_tail.as_ref().map(VerifyProblem::from);
            }
            // Damage that stops the scan altogether is a finding about the data, not a failure
            // of this command.
            Err(
                e
                @ (sluice_wal::Error::Corruption { .. } | sluice_wal::Error::BadCheckpoint { .. }),
            ) => p.problems.push(VerifyProblem {
                path: dir.clone(),
                offset: 0,
                reason: e.to_string(),
            }),
            Err(e) => {
                p.error = Some(e.to_string());
                report.unreadable += 1;
            }
        }
        progress.inc(bytes);
        report.problems += p.problems.len();
        report.records += p.records;
        report.partitions.push(p);
    }
    report.ok = report.problems == 0 && report.unreadable == 0;
    report.summary = progress.finish_line(&format!(
        "{} record(s) in {} partition(s) checked, {} problem(s), {} unreadable partition(s)",
        report.records,
        report.partitions.len(),
        report.problems,
        report.unreadable
    ));
    Ok(report)
}

/// `sluice wal verify [--json]`: checks every record of every partition. Problems are listed
/// with their segment file and offset and make the outcome [`Outcome::ProblemsFound`]; a torn
/// tail (the unacknowledged end of the newest segment, repaired on the next open) is noted
/// only. A partition that cannot be read at all fails the command, unless damage was found
/// elsewhere (exit code 3 says "look at the data", and the unreadable partition is listed too).
pub fn verify(
    config: &Config,
    as_json: bool,
    mode: ProgressMode,
    out: &mut dyn Write,
) -> Result<Outcome, CommandError> {
    let report = collect_verify(config, mode)?;
    if as_json {
        writeln!(out, "{}", serde_json::to_value(&report).unwrap_or_default())?;
    } else {
        write_verify_text(&report, out)?;
    }
    out.flush()?;
    // Informational: a closed stderr must not fail the command.
    let _ = writeln!(std::io::stderr().lock(), "{}", report.summary);
    if report.problems > 0 {
        Ok(Outcome::ProblemsFound)
    } else if report.unreadable > 0 {
        Err(CommandError::PartitionsFailed {
            count: report.unreadable,
        })
    } else {
        Ok(Outcome::Clean)
    }
}

fn write_verify_text(r: &VerifyReport, out: &mut dyn Write) -> std::io::Result<()> {
    if r.partitions.is_empty() {
        return writeln!(
            out,
            "no partitions under {}: nothing to verify",
            r.data_dir.display()
        );
    }
    for p in &r.partitions {
        if let Some(e) = &p.error {
            writeln!(
                out,
                "partition {} ({}): error: {e}",
                p.partition,
                p.path.display()
            )?;
            continue;
        }
        writeln!(
            out,
            "partition {} ({}): {} segment(s), {} record(s), lsn {}..{}, checkpoint {}: {}",
            p.partition,
            p.path.display(),
            p.segments,
            p.records,
            p.first_lsn,
            p.last_lsn,
            p.checkpoint,
            if p.problems.is_empty() {
                "ok".to_string()
            } else {
                format!("{} problem(s)", p.problems.len())
            }
        )?;
        for problem in &p.problems {
            writeln!(
                out,
                "  problem: {} offset {}: {}",
                problem.path.display(),
                problem.offset,
                problem.reason
            )?;
        }
        if let Some(t) = &p.torn_tail {
            writeln!(
                out,
                "  note: torn tail at {} offset {} ({}); unacknowledged bytes, truncated on next open",
                t.path.display(),
                t.offset,
                t.reason
            )?;
        }
    }
    if r.problems > 0 {
        writeln!(out, "{} problem(s) found", r.problems)
    } else if r.unreadable == 0 {
        writeln!(out, "every record checks")
    } else {
        Ok(())
    }
}

/// Options of `wal tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailOptions {
    /// Only this partition.
    pub partition: Option<usize>,
    /// Start with the newest `lines` records of each partition.
    pub lines: u64,
    /// Stop after this many records in all.
    pub count: Option<u64>,
    /// How often to look for new records.
    pub interval: Duration,
    /// One JSON object per line.
    pub json: bool,
}

/// `sluice wal tail`: prints records as they become durable, one line each (a JSON object per
/// line with `--json`), until `count` records were printed or the output is closed. Each poll
/// opens a fresh read-only view of every partition (the logs are not locked), reads what is
/// new since the last poll, then sleeps `interval`. Records overwritten by `drop_oldest`
/// before they were seen are reported as skipped.
pub fn tail(
    config: &Config,
    opts: &TailOptions,
    out: &mut dyn Write,
) -> Result<Outcome, CommandError> {
    let data_dir = &config.data_dir;
    if let Some(p) = opts.partition {
        let found = partitions(data_dir)?;
        if !found.contains(&p) {
            return Err(CommandError::NoSuchPartition {
                partition: p,
                data_dir: data_dir.clone(),
                found,
            });
        }
    }
    let wal = view_config(config);
    // The next LSN to print, per partition; a partition first seen gets its start from
    // `lines` (or from 1 when it appears after the tail started: everything in it is new).
    let mut next: std::collections::BTreeMap<usize, Lsn> = Default::default();
    let mut first_poll = true;
    let mut shown = 0u64;
    loop {
        let selected = match opts.partition {
            Some(p) => vec![p],
            None => partitions(data_dir)?,
        };
        for partition in selected {
            let view = match open_view(data_dir, partition, &wal) {
                Ok(v) => v,
                // A partition directory created a moment ago may not hold a segment yet.
                Err(_) if !first_poll => continue,
                Err(e) => return Err(e),
            };
            let status = view.status();
            let from = *next.entry(partition).or_insert_with(|| {
                if first_poll {
                    Lsn(status.last_lsn.0.saturating_sub(opts.lines) + 1).max(status.first_lsn)
                } else {
                    Lsn(1)
                }
            });
            if from > status.last_lsn {
                continue;
            }
            let mut reader = view.reader(from);
            while let Some(record) = reader.next().map_err(|source| CommandError::Wal {
                partition,
                path: partition_dir(data_dir, partition),
                source,
            })? {
                write_record(out, &record.payload, record.lsn, partition, opts.json)?;
                next.insert(partition, record.lsn.next());
                shown += 1;
                if opts.count.is_some_and(|c| shown >= c) {
                    out.flush()?;
                    return Ok(Outcome::Clean);
                }
            }
            if reader.skipped() > 0 {
                tracing::warn!(
                    partition,
                    skipped = reader.skipped(),
                    "records were overwritten (wal.full_policy = drop_oldest) before wal tail read them"
                );
            }
        }
        out.flush()?;
        first_poll = false;
        std::thread::sleep(opts.interval);
    }
}

/// One record as `wal inspect` prints it (text or a JSON object), undecodable ones included.
fn write_record(
    out: &mut dyn Write,
    payload: &[u8],
    lsn: Lsn,
    partition: usize,
    json: bool,
) -> std::io::Result<bool> {
    match Envelope::decode(payload) {
        Ok(env) if json => writeln!(out, "{}", env.to_json(lsn, partition))?,
        Ok(env) => writeln!(out, "{}", summary_line(&env, lsn, partition))?,
        Err(e) => {
            if json {
                let line = json!({
                    "lsn": lsn.0,
                    "partition": partition,
                    "error": e.to_string(),
                    "error_code": e.code(),
                    "payload_bytes": payload.len(),
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(
                    out,
                    "p{partition} lsn={lsn} ERROR cannot decode envelope ({} bytes): {e}",
                    payload.len()
                )?;
            }
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sizes_are_short_and_readable() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1000), "1000B");
        assert_eq!(human_bytes(4 << 30), "4GiB");
        assert_eq!(human_bytes(29_556), "28.9KiB");
        assert_eq!(human_bytes((3 << 20) + (1 << 19)), "3584KiB");
        assert_eq!(human_bytes((3 << 20) + 100), "3.0MiB");
    }
}

/// `wal replay` options.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// First LSN (clamped to the oldest record held).
    pub from: u64,
    /// Last LSN (default: the newest durable record).
    pub to: Option<u64>,
    /// Only this partition (default: every partition).
    pub partition: Option<usize>,
    /// One JSON document instead of text lines.
    pub json: bool,
    /// A progress bar on a terminal, or only the summary line.
    pub progress: ProgressMode,
}

/// `sluice wal replay --from LSN [--to LSN] [--partition N] [--json]`: re-publishes a range of
/// each partition through the configured processing and ClickHouse, with the publisher's
/// recorded batch boundaries so the deduplication tokens match (see
/// [`crate::publish::replay`]). Reads the logs without a lock, so it works beside the daemon.
/// Prints one line per partition and a total (or one JSON document), with a progress bar over
/// the records on a terminal and a summary line on stderr.
pub fn replay(
    config: &Config,
    opts: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<Outcome, crate::publish::replay::ReplayError> {
    use crate::publish::replay::{clamp_range, replay_range, Pipeline, RangeSummary, ReplayError};
    if let Some(to) = opts.to {
        if opts.from > to {
            return Err(ReplayError::EmptyRange {
                from: opts.from,
                to,
            });
        }
    }
    let found = existing_partitions(&config.data_dir).map_err(ReplayError::List)?;
    let selected = match opts.partition {
        Some(p) if found.contains(&p) => vec![p],
        Some(partition) => return Err(ReplayError::NoSuchPartition { partition, found }),
        None => found,
    };
    let pipeline = Pipeline::connect(
        &config.enrich,
        config.process_limits(),
        &config.clickhouse,
        &config.data_dir,
    )?;
    let wal = view_config(config);
    // The records to go through, for the bar (ranges widen a little to whole batches).
    let total: u64 = selected
        .iter()
        .filter_map(|&p| open_view(&config.data_dir, p, &wal).ok())
        .filter_map(|v| clamp_range(&v, Lsn(opts.from), opts.to.map(Lsn)))
        .map(|(f, t)| t.0 - f.0 + 1)
        .sum();
    let progress = Progress::new("wal replay", "records", total, opts.progress);
    let mut total = RangeSummary::default();
    let mut partitions = Vec::new();
    for partition in selected {
        progress.set_message(format!("partition {partition}"));
        let s = replay_range(
            &pipeline.instance,
            &config.data_dir,
            &wal,
            partition,
            Lsn(opts.from),
            opts.to.map(Lsn),
            &config.publish,
            &pipeline.processor,
            &pipeline.sink,
            pipeline.runtime.handle(),
            &progress,
        )?;
        if !opts.json {
            let range = s.range.map_or_else(
                || "nothing to replay".to_string(),
                |(f, t)| format!("LSN {f}..={t}"),
            );
            writeln!(
                out,
                "partition {}: {range}: {} records in {} batches ({} with recorded boundaries), \
                 {} rows inserted, {} events failed processing, {} rows rejected",
                partition,
                s.records,
                s.batches,
                s.recorded_batches,
                s.inserted,
                s.failed,
                s.rejected
            )?;
        }
        total.records += s.records;
        total.batches += s.batches;
        total.recorded_batches += s.recorded_batches;
        total.inserted += s.inserted;
        total.failed += s.failed;
        total.rejected += s.rejected;
        partitions.push(s);
    }
    if opts.json {
        let partitions: Vec<_> = partitions
            .iter()
            .map(|s| {
                json!({
                    "partition": s.partition,
                    "from": s.range.map(|r| r.0),
                    "to": s.range.map(|r| r.1),
                    "records": s.records,
                    "batches": s.batches,
                    "recorded_batches": s.recorded_batches,
                    "inserted": s.inserted,
                    "failed": s.failed,
                    "rejected": s.rejected,
                })
            })
            .collect();
        let doc = json!({
            "records": total.records,
            "batches": total.batches,
            "recorded_batches": total.recorded_batches,
            "inserted": total.inserted,
            "failed": total.failed,
            "rejected": total.rejected,
            "partitions": partitions,
        });
        writeln!(out, "{doc}")?;
    } else {
        writeln!(
            out,
            "replayed {} records in {} batches: {} rows inserted, {} events failed processing, \
             {} rows rejected (dead letters were written when the range was first published)",
            total.records, total.batches, total.inserted, total.failed, total.rejected
        )?;
    }
    progress.finish(&format!(
        "{} records replayed in {} batches, {} rows inserted",
        total.records, total.batches, total.inserted
    ));
    Ok(Outcome::Clean)
}
