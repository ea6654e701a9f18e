//! Appending, reading, checkpointing and recycling against a real directory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{payload, read_all, segment_files, small_config};
use sluice_wal::{Error, FullPolicy, Lsn, Wal, WalConfig};

#[test]
fn appended_records_read_back_in_order_with_consecutive_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    for i in 0..100 {
        assert_eq!(wal.append(payload(i, 100)).unwrap(), Lsn(i + 1));
    }
    let got = read_all(&wal, Lsn(1));
    assert_eq!(got.len(), 100);
    for (i, (lsn, p)) in got.into_iter().enumerate() {
        assert_eq!(lsn, Lsn(i as u64 + 1));
        assert_eq!(p, payload(i as u64, 100));
    }
}

#[test]
fn records_and_lsns_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    for i in 0..50 {
        wal.append(payload(i, 3000)).unwrap();
    }
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(wal.status().last_lsn, Lsn(50));
    assert_eq!(wal.append(payload(50, 10)).unwrap(), Lsn(51));
    let got = read_all(&wal, Lsn(1));
    assert_eq!(got.len(), 51);
    assert_eq!(got[49].1, payload(49, 3000));
}

#[test]
fn reader_starts_at_the_requested_lsn_in_the_middle_of_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    for i in 0..40 {
        wal.append(payload(i, 2000)).unwrap();
    }
    let got = read_all(&wal, Lsn(33));
    assert_eq!(got.first().unwrap().0, Lsn(33));
    assert_eq!(got.len(), 8);
}

#[test]
fn checkpoint_lets_segments_be_recycled_so_disk_use_stays_within_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let wal = Wal::open(dir.path(), config.clone()).unwrap();
    // 20 segments' worth of records through a 4-segment ring, confirming as we go.
    for i in 0..400u64 {
        let lsn = wal.append(payload(i, 3000)).unwrap();
        if i % 10 == 9 {
            wal.checkpoint(lsn).unwrap();
        }
    }
    let files = segment_files(dir.path());
    assert!(
        files.len() as u64 <= config.slots(),
        "{} files",
        files.len()
    );
    let status = wal.status();
    assert_eq!(status.last_lsn, Lsn(400));
    assert_eq!(status.checkpoint, Lsn(400));
    assert_eq!(status.unconfirmed, 0);
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), config).unwrap();
    assert_eq!(wal.status().checkpoint, Lsn(400));
    assert_eq!(wal.append(payload(400, 10)).unwrap(), Lsn(401));
}

#[test]
fn append_fails_with_full_when_every_segment_is_unconfirmed_and_recovers_after_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let mut last = Lsn::ZERO;
    let err = loop {
        match wal.append(payload(last.0, 4000)) {
            Ok(lsn) => last = lsn,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Full { .. }), "{err:?}");
    assert!(wal.status().full);
    assert!(wal.appender().is_unavailable());
    // Nothing acknowledged was lost.
    assert_eq!(read_all(&wal, Lsn(1)).len() as u64, last.0);
    wal.checkpoint(last).unwrap();
    assert!(!wal.status().full);
    assert_eq!(wal.append(payload(0, 4000)).unwrap(), last.next());
}

#[test]
fn drop_oldest_policy_overwrites_the_oldest_records_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        full_policy: FullPolicy::DropOldest,
        ..small_config()
    };
    let wal = Wal::open(dir.path(), config.clone()).unwrap();
    wal.append(payload(0, 4000)).unwrap();
    let mut reader = wal.reader(Lsn(1));
    assert_eq!(reader.next().unwrap().unwrap().lsn, Lsn(1));
    for i in 1..200 {
        wal.append(payload(i, 4000)).unwrap();
    }
    let status = wal.status();
    assert!(status.dropped_total > 0);
    assert_eq!(status.checkpoint.0, status.dropped_total);
    // The reader that was left behind skips to the oldest record still held.
    let next = reader.next().unwrap().unwrap();
    assert_eq!(next.lsn, status.first_lsn);
    assert_eq!(reader.skipped(), status.first_lsn.0 - 2);
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), config).unwrap();
    assert_eq!(wal.status().dropped_total, status.dropped_total);
}

#[test]
fn oversized_record_is_rejected_before_it_reaches_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let err = wal.append(vec![0; (16 << 10) + 1]).unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { .. }));
    assert_eq!(wal.append(vec![1; 16 << 10]).unwrap(), Lsn(1));
}

#[test]
fn checkpoint_beyond_the_durable_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    wal.append(b"x".to_vec()).unwrap();
    assert!(matches!(
        wal.checkpoint(Lsn(2)),
        Err(Error::CheckpointAhead { .. })
    ));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let err = Wal::open(dir.path(), small_config()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    wal.close().unwrap();
    Wal::open(dir.path(), small_config()).unwrap();
}

#[test]
fn concurrent_appenders_get_distinct_lsns_and_every_record_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        capacity_bytes: 4 << 20,
        ..small_config()
    };
    let wal = Arc::new(Wal::open(dir.path(), config).unwrap());
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let app = wal.appender();
            std::thread::spawn(move || {
                (0..200u64)
                    .map(|i| {
                        let id = t * 1000 + i;
                        (app.append(payload(id, 64)).unwrap(), id)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(Lsn, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    acked.sort();
    let got = read_all(&wal, Lsn(1));
    assert_eq!(got.len(), 1600);
    for ((lsn, id), (rlsn, p)) in acked.iter().zip(got) {
        assert_eq!(*lsn, rlsn);
        assert_eq!(p, payload(*id, 64));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn async_append_resolves_once_the_record_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let app = wal.appender();
    let futs: Vec<_> = (0..10).map(|i| app.append_async(payload(i, 10))).collect();
    let mut lsns = Vec::new();
    for f in futs {
        lsns.push(f.await.unwrap());
    }
    assert_eq!(lsns, (1..=10).map(Lsn).collect::<Vec<_>>());
    assert_eq!(wal.status().last_lsn, Lsn(10));
}

#[test]
fn a_following_reader_wakes_when_a_new_record_becomes_durable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let mut reader = wal.reader(Lsn(1));
    assert!(reader
        .next_timeout(Duration::from_millis(10))
        .unwrap()
        .is_none());
    let app = wal.appender();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        app.append(b"late".to_vec()).unwrap()
    });
    let rec = reader
        .next_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("woken by the append");
    assert_eq!(rec.payload, b"late");
    assert_eq!(writer.join().unwrap(), rec.lsn);
}

#[test]
fn status_reports_unconfirmed_records_and_used_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    for i in 0..10 {
        wal.append(payload(i, 1000)).unwrap();
    }
    wal.checkpoint(Lsn(4)).unwrap();
    let s = wal.status();
    assert_eq!(s.first_lsn, Lsn(1));
    assert_eq!(s.last_lsn, Lsn(10));
    assert_eq!(s.checkpoint, Lsn(4));
    assert_eq!(s.unconfirmed, 6);
    assert_eq!(s.used_bytes, 64 + 10 * (16 + 1000));
    assert_eq!(s.capacity_bytes, 256 << 10);
    assert_eq!(s.segments, 1);
}

#[test]
fn appends_after_close_fail_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let app = wal.appender();
    wal.close().unwrap();
    assert!(matches!(app.append(b"x".to_vec()), Err(Error::Closed)));
}

#[test]
fn invalid_config_names_the_offending_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        capacity_bytes: 64 << 10,
        ..small_config()
    };
    let err = Wal::open(dir.path(), config).unwrap_err();
    assert!(err.to_string().contains("capacity_bytes"), "{err}");
}
