//! Failure injection through the filesystem seam: a failed write or sync poisons the log,
//! no waiter is ever told "durable" after a failure, and a failed create or a full disk
//! never corrupts what was already acknowledged.

mod common;

use std::sync::Arc;

use common::{payload, read_all, small_config};
use sluice_wal::fs::{FaultKind, FaultyFs};
use sluice_wal::{Error, Lsn, NoopObserver, Wal};

fn open_faulty(dir: &std::path::Path) -> (Wal, FaultyFs) {
    let fs = FaultyFs::new();
    let wal = Wal::open_with(
        dir,
        small_config(),
        Arc::new(fs.clone()),
        Arc::new(NoopObserver),
    )
    .unwrap();
    (wal, fs)
}

fn assert_poisoned(r: sluice_wal::Result<Lsn>) {
    assert!(matches!(r, Err(Error::Poisoned { .. })), "{r:?}");
}

#[test]
fn a_failed_sync_fails_the_append_and_every_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, fs) = open_faulty(dir.path());
    wal.append(b"one".to_vec()).unwrap();
    fs.fail_after(FaultKind::Sync, 0);
    assert_poisoned(wal.append(b"two".to_vec()));
    // The fault is gone, but the log must not trust itself again.
    assert_poisoned(wal.append(b"three".to_vec()));
    let status = wal.status();
    assert!(status.poisoned.is_some());
    assert!(wal.appender().is_unavailable());
    assert!(wal.close().is_err());
    // What was acknowledged before the failure is intact after a restart.
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let got = read_all(&wal, Lsn(1));
    assert_eq!(got[0], (Lsn(1), b"one".to_vec()));
}

#[test]
fn a_failed_write_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, fs) = open_faulty(dir.path());
    wal.append(b"one".to_vec()).unwrap();
    fs.fail_after(FaultKind::Write, 0);
    assert_poisoned(wal.append(b"two".to_vec()));
    assert_poisoned(wal.append(b"three".to_vec()));
}

#[test]
fn no_space_poisons_the_log_and_acknowledged_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, fs) = open_faulty(dir.path());
    for i in 0..5 {
        wal.append(payload(i, 100)).unwrap();
    }
    fs.fail_after(FaultKind::NoSpace, 0);
    let err = wal.append(payload(5, 100)).unwrap_err();
    assert!(
        err.to_string().contains("No space") || err.to_string().contains("os error 28"),
        "{err}"
    );
    drop(wal);
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&wal, Lsn(1)).len(), 5);
}

#[test]
fn a_failed_segment_create_at_roll_over_fails_the_append_without_losing_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, fs) = open_faulty(dir.path());
    // The first append creates slot 0; the next creation is the roll-over into slot 1.
    wal.append(payload(0, 4000)).unwrap();
    fs.fail_after(FaultKind::Create, 0);
    let mut acked = 1;
    let err = loop {
        match wal.append(payload(acked, 4000)) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
    drop(wal);
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let got = read_all(&wal, Lsn(1));
    assert_eq!(got.len() as u64, acked);
    assert_eq!(wal.append(b"again".to_vec()).unwrap(), Lsn(acked + 1));
}

#[test]
fn a_batch_in_flight_when_the_sync_fails_is_never_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, fs) = open_faulty(dir.path());
    wal.append(b"warm-up".to_vec()).unwrap();
    fs.fail_after(FaultKind::Sync, 0);
    let app = wal.appender();
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            std::thread::spawn(move || app.append(payload(i, 50)))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // The first group commit after the warm-up is the one whose sync fails, and every append
    // after it meets a poisoned log: all sixteen are refused, none acknowledged.
    for (i, r) in results.iter().enumerate() {
        assert!(
            matches!(r, Err(Error::Poisoned { .. })),
            "append {i}: {r:?}"
        );
    }
    assert!(wal.status().poisoned.is_some());
    assert_eq!(wal.status().last_lsn, Lsn(1), "only the warm-up is durable");
    assert_poisoned(wal.append(b"after".to_vec()));
}

#[test]
fn a_failed_checkpoint_write_leaves_the_previous_checkpoint_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, fs) = open_faulty(dir.path());
    for i in 0..10 {
        wal.append(payload(i, 10)).unwrap();
    }
    wal.checkpoint(Lsn(3)).unwrap();
    fs.fail_after(FaultKind::Sync, 0);
    assert!(wal.checkpoint(Lsn(8)).is_err());
    assert_eq!(wal.status().checkpoint, Lsn(3));
    drop(wal);
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(wal.status().checkpoint, Lsn(3));
}
