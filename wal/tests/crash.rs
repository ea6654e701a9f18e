//! The kill -9 harness. A child process appends records from several threads and prints each
//! acknowledged LSN; a consumer thread in the child confirms records as it reads them. The
//! parent kills the child at random moments, reopens the log, and checks that every
//! acknowledged record that is not yet confirmed is present and intact, and that `verify`
//! passes. The child is this same test binary, re-run by `sluice-crash-harness` (which also
//! reads the child's report and does the killing; see its crate docs).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::payload;
use sluice_crash_harness::{announce_ready, child_args, cycles_from_env, Harness, Output};
use sluice_wal::{Error, Lsn, Wal, WalConfig};

fn crash_config() -> WalConfig {
    WalConfig {
        segment_bytes: 128 << 10,
        capacity_bytes: 1 << 20,
        max_record_bytes: 8 << 10,
        max_batch_bytes: 1 << 20,
        ..WalConfig::default()
    }
}

/// Record ids encode (cycle, thread, sequence) so the parent can regenerate every payload.
fn record_id(cycle: u64, thread: u64, seq: u64) -> u64 {
    (cycle << 40) | (thread << 32) | seq
}

fn record_len(id: u64) -> usize {
    24 + (id.wrapping_mul(2654435761) % 3000) as usize
}

/// The child: append until killed. Ignored by normal runs; the harness starts it with
/// `--ignored` and its arguments set (without them, it returns at once).
#[test]
#[ignore = "the child process of the kill -9 harness below; it runs only when that harness starts it"]
fn crash_child_process() {
    let Some(args) = child_args() else {
        return;
    };
    let cycle = args.cycle;
    let wal = Arc::new(Wal::open(&args.dir, crash_config()).expect("child opens the log"));
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    announce_ready(&mut *out.lock().unwrap()).unwrap();
    // Consumer: confirms what it has read, so the ring keeps recycling.
    let consumer = {
        let wal = wal.clone();
        let out = out.clone();
        std::thread::spawn(move || {
            let mut reader = wal.reader(Lsn(wal.status().checkpoint.0 + 1));
            loop {
                let mut last = None;
                for _ in 0..50 {
                    match reader.next_timeout(Duration::from_millis(5)) {
                        Ok(Some(r)) => last = Some(r.lsn),
                        Ok(None) => break,
                        Err(e) => panic!("child reader: {e}"),
                    }
                }
                if let Some(lsn) = last {
                    wal.checkpoint(lsn).expect("checkpoint");
                    writeln!(out.lock().unwrap(), "ckpt {lsn}").unwrap();
                }
            }
        })
    };
    let writers: Vec<_> = (0..6u64)
        .map(|t| {
            let app = wal.appender();
            let out = out.clone();
            std::thread::spawn(move || {
                for seq in 0.. {
                    let id = record_id(cycle, t, seq);
                    loop {
                        match app.append(payload(id, record_len(id))) {
                            Ok(lsn) => {
                                let mut o = out.lock().unwrap();
                                writeln!(o, "ack {lsn} {id}").unwrap();
                                o.flush().unwrap();
                                break;
                            }
                            Err(Error::Full { .. }) | Err(Error::Busy { .. }) => {
                                std::thread::sleep(Duration::from_millis(1))
                            }
                            Err(e) => panic!("child append: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    consumer.join().unwrap();
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_record() {
    let cycles = cycles_from_env("CRASH_CYCLES", 30);
    let harness = Harness::new("crash_child_process");
    let dir = harness.dir();
    let started = Instant::now();
    let mut total_acked = 0usize;
    for cycle in 0..cycles {
        // Acknowledgements (LSN -> record id) and the last reported checkpoint.
        let child = harness.spawn(
            cycle,
            (BTreeMap::new(), Lsn::ZERO),
            |(acked, ckpt): &mut (BTreeMap<Lsn, u64>, Lsn), line: &str| {
                let mut parts = line.split_whitespace();
                match parts.next() {
                    Some("ack") => {
                        let lsn: u64 = parts.next().unwrap().parse().unwrap();
                        let id: u64 = parts.next().unwrap().parse().unwrap();
                        acked.insert(Lsn(lsn), id);
                    }
                    Some("ckpt") => *ckpt = Lsn(parts.next().unwrap().parse().unwrap()),
                    _ => {}
                }
            },
        );
        // Kill at a random moment after the child has opened the log (so recovery of the
        // previous cycle's crash has happened) and has been appending for a while.
        let Output {
            ready,
            state: (acked, reported_ckpt),
        } = child.kill_at_random_moment(5..300);
        assert!(ready, "cycle {cycle}: the child never opened the log");

        let wal = Wal::open(dir, crash_config())
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let status = wal.status();
        assert!(
            status.checkpoint >= reported_ckpt,
            "cycle {cycle}: checkpoint went back"
        );
        // Every acknowledged record above the durable checkpoint must be there, intact.
        let mut reader = wal.reader(status.checkpoint.next());
        let mut held = BTreeMap::new();
        while let Some(rec) = reader.next().unwrap() {
            held.insert(rec.lsn, rec.payload);
        }
        for (lsn, id) in acked.range(status.checkpoint.next()..) {
            let got = held
                .get(lsn)
                .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged record {lsn} is missing"));
            assert_eq!(
                got,
                &payload(*id, record_len(*id)),
                "cycle {cycle}: record {lsn} differs"
            );
        }
        if let Some((last, _)) = acked.last_key_value() {
            assert!(
                status.last_lsn >= *last,
                "cycle {cycle}: log ends before an ack"
            );
        }
        total_acked += acked.len();
        wal.close().unwrap();
        let report = sluice_wal::verify(dir).unwrap();
        assert!(
            report.is_ok(),
            "cycle {cycle}: verify found {:?}",
            report.problems
        );
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "harness ran too long"
        );
    }
    assert!(total_acked > 0, "no record was ever acknowledged");
    eprintln!("{cycles} kill -9 cycles, {total_acked} acknowledged records checked");
}
