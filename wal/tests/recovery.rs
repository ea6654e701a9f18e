//! Recovery after crashes and damage: torn tails are cut, corruption is reported with its
//! segment and offset, and `verify` lists what it finds.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{payload, read_all, segment_files, small_config};
use sluice_wal::format::{encode_record, SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use sluice_wal::{verify, Error, LogView, Lsn, SegmentId, Wal};

/// Appends `n` records of `len` bytes and closes the log.
fn fill(dir: &Path, n: u64, len: usize) {
    let wal = Wal::open(dir, small_config()).unwrap();
    for i in 0..n {
        wal.append(payload(i, len)).unwrap();
    }
    wal.close().unwrap();
}

/// Offset of record `k` (0-based) in a segment of equal-sized records.
fn frame_offset(k: u64, len: usize) -> u64 {
    SEGMENT_HEADER_LEN + k * (FRAME_HEADER_LEN + len as u64)
}

fn flip_byte(path: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
}

#[test]
fn a_torn_final_record_is_truncated_and_the_log_accepts_new_records() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10, 500);
    // Simulate a write cut short: half of an 11th record after the 10th.
    let seg = &segment_files(dir.path())[0];
    let mut partial = Vec::new();
    sluice_wal::format::encode_record(&mut partial, 0, Lsn(11), &payload(10, 500), true);
    let f = OpenOptions::new().write(true).open(seg).unwrap();
    f.write_all_at(&partial[..200], frame_offset(10, 500))
        .unwrap();
    drop(f);

    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.torn_tail.is_some());
    assert_eq!(report.records, 10);

    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(wal.status().last_lsn, Lsn(10));
    assert_eq!(wal.append(payload(99, 700)).unwrap(), Lsn(11));
    let got = read_all(&wal, Lsn(1));
    assert_eq!(got.len(), 11);
    assert_eq!(got[10].1, payload(99, 700));
    wal.close().unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok() && report.torn_tail.is_none(), "{report:?}");
}

#[test]
fn garbage_after_the_last_record_is_treated_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, 300);
    let seg = &segment_files(dir.path())[0];
    let mut f = OpenOptions::new().write(true).open(seg).unwrap();
    f.seek(SeekFrom::Start(frame_offset(5, 300))).unwrap();
    f.write_all(&[0xAB; 4096]).unwrap();
    drop(f);

    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&wal, Lsn(1)).len(), 5);
    assert_eq!(wal.append(b"after".to_vec()).unwrap(), Lsn(6));
}

#[test]
fn a_segment_file_cut_short_keeps_every_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20, 1000);
    let seg = &segment_files(dir.path())[0];
    let f = OpenOptions::new().write(true).open(seg).unwrap();
    f.set_len(frame_offset(12, 1000) + 100).unwrap();
    drop(f);
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let got = read_all(&wal, Lsn(1));
    assert_eq!(got.len(), 12);
    assert_eq!(got[11].1, payload(11, 1000));
}

#[test]
fn a_damaged_record_in_a_sealed_segment_is_reported_with_its_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB segments hold 16 records of 4000 bytes; 40 records span three segments.
    fill(dir.path(), 40, 4000);
    let first = &segment_files(dir.path())[0];
    let bad_at = frame_offset(3, 4000);
    flip_byte(first, bad_at + FRAME_HEADER_LEN + 10);

    let err = Wal::open(dir.path(), small_config()).unwrap_err();
    match err {
        Error::Corruption {
            segment, offset, ..
        } => {
            assert_eq!(segment, SegmentId(1));
            assert_eq!(offset, bad_at);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.problems[0].offset, bad_at);
    assert_eq!(report.problems[0].path, *first);
    assert!(matches!(
        LogView::open(dir.path(), &small_config()),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn a_damaged_record_in_the_middle_of_the_newest_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10, 500);
    let seg = &segment_files(dir.path())[0];
    let bad_at = frame_offset(4, 500);
    flip_byte(seg, bad_at + FRAME_HEADER_LEN + 7);
    let err = Wal::open(dir.path(), small_config()).unwrap_err();
    assert!(
        matches!(err, Error::Corruption { segment: SegmentId(1), offset, .. } if offset == bad_at),
        "{err:?}"
    );
    // Nothing was truncated by the failed open.
    flip_byte(seg, bad_at + FRAME_HEADER_LEN + 7);
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&wal, Lsn(1)).len(), 10);
}

/// The segment file open for writing, and its header bytes.
fn open_with_header(seg: &Path) -> (std::fs::File, [u8; SEGMENT_HEADER_LEN as usize]) {
    let f = OpenOptions::new().read(true).write(true).open(seg).unwrap();
    let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
    f.read_exact_at(&mut head, 0).unwrap();
    (f, head)
}

/// Rewrites records `from..=to` (0-based, `len` bytes each) of the first segment as one commit
/// group, as the writer lays out records it syncs together; returns the segment's path.
fn rewrite_as_one_group(dir: &Path, from: u64, to: u64, len: usize) -> std::path::PathBuf {
    let seg = segment_files(dir)[0].clone();
    let (f, head) = open_with_header(&seg);
    let salt = SegmentHeader::decode(&head).unwrap().salt;
    let mut group = Vec::new();
    for k in from..=to {
        encode_record(&mut group, salt, Lsn(k + 1), &payload(k, len), k == from);
    }
    f.write_all_at(&group, frame_offset(from, len)).unwrap();
    seg
}

#[test]
fn a_damaged_record_inside_the_last_commit_group_is_a_torn_tail() {
    // A power cut can keep a later page of an unsynced group and lose an earlier one.
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10, 500);
    let seg = rewrite_as_one_group(dir.path(), 4, 9, 500);
    let bad_at = frame_offset(6, 500);
    flip_byte(&seg, bad_at + FRAME_HEADER_LEN + 7);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.torn_tail.as_ref().map(|t| t.offset), Some(bad_at));
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(wal.status().last_lsn, Lsn(6));
    assert_eq!(read_all(&wal, Lsn(1)).len(), 6);
    assert_eq!(wal.append(payload(77, 10)).unwrap(), Lsn(7));
}

#[test]
fn a_damaged_record_followed_by_a_later_commit_group_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10, 500);
    // Records 5..=7 were synced together; 8 opened the next group, so 6 had been synced.
    let seg = rewrite_as_one_group(dir.path(), 4, 6, 500);
    let bad_at = frame_offset(5, 500);
    flip_byte(&seg, bad_at + FRAME_HEADER_LEN + 7);
    let err = Wal::open(dir.path(), small_config()).unwrap_err();
    assert!(
        matches!(&err, Error::Corruption { offset, reason, .. }
            if *offset == bad_at && reason.contains("written after a sync that covered it")),
        "{err:?}"
    );
}

#[test]
fn in_a_version_1_segment_any_valid_record_after_a_bad_one_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10, 500);
    let seg = segment_files(dir.path())[0].clone();
    let (f, mut head) = open_with_header(&seg);
    let salt = SegmentHeader::decode(&head).unwrap().salt;
    head[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&head[0..48]);
    head[48..52].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&head, 0).unwrap();
    // Version 1 frames never carry the group bit.
    let mut v1 = Vec::new();
    for k in 0..10 {
        encode_record(&mut v1, salt, Lsn(k + 1), &payload(k, 500), false);
    }
    f.write_all_at(&v1, SEGMENT_HEADER_LEN).unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&wal, Lsn(1)).len(), 10, "version 1 records read");
    wal.close().unwrap();
    let bad_at = frame_offset(8, 500);
    flip_byte(&seg, bad_at + FRAME_HEADER_LEN + 7);
    let err = Wal::open(dir.path(), small_config()).unwrap_err();
    assert!(
        matches!(err, Error::Corruption { offset, .. } if offset == bad_at),
        "{err:?}"
    );
}

#[test]
fn confirmed_records_that_were_damaged_do_not_block_opening() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    for i in 0..40 {
        wal.append(payload(i, 4000)).unwrap();
    }
    wal.checkpoint(Lsn(20)).unwrap();
    wal.close().unwrap();
    // Segment 1 holds records 1..=16, all confirmed: opening doesn't need them.
    flip_byte(&segment_files(dir.path())[0], frame_offset(2, 4000) + 20);
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&wal, Lsn(21)).len(), 20);
    wal.close().unwrap();
    // verify still looks at everything.
    assert!(!verify(dir.path()).unwrap().is_ok());
}

#[test]
fn a_damaged_checkpoint_is_refused_rather_than_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let lsn = wal.append(b"x".to_vec()).unwrap();
    wal.checkpoint(lsn).unwrap();
    wal.close().unwrap();
    flip_byte(&dir.path().join("checkpoint"), 17);
    let err = Wal::open(dir.path(), small_config()).unwrap_err();
    assert!(matches!(err, Error::BadCheckpoint { .. }), "{err:?}");
}

#[test]
fn a_leftover_temporary_checkpoint_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3, 10);
    std::fs::write(dir.path().join("checkpoint.tmp"), b"half-written").unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    assert_eq!(wal.status().checkpoint, Lsn::ZERO);
    assert!(!dir.path().join("checkpoint.tmp").exists());
}

#[test]
fn a_recycled_slot_never_yields_the_previous_segments_records() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    // Fill the ring twice over with confirmation, then reopen mid-segment.
    for i in 0..130u64 {
        let lsn = wal.append(payload(i, 4000)).unwrap();
        wal.checkpoint(lsn).unwrap();
    }
    let last = wal.append(payload(1000, 100)).unwrap();
    wal.close().unwrap();
    // Replace the clean-close marker with garbage, as after a crash: what follows the last
    // record is then the previous segment's bytes in that slot.
    let newest = segment_files(dir.path())
        .into_iter()
        .max_by_key(|p| {
            let head = std::fs::read(p).unwrap();
            sluice_wal::format::SegmentHeader::decode(&head[..64]).map_or(0, |h| h.id.0)
        })
        .unwrap();
    let per_segment = ((64 << 10) - SEGMENT_HEADER_LEN) / (FRAME_HEADER_LEN + 4000);
    let in_newest = 130 % per_segment;
    let end = SEGMENT_HEADER_LEN + in_newest * (FRAME_HEADER_LEN + 4000) + FRAME_HEADER_LEN + 100;
    let f = OpenOptions::new().write(true).open(&newest).unwrap();
    f.write_all_at(&[0xAB; 16], end).unwrap();
    drop(f);
    assert!(verify(dir.path()).unwrap().torn_tail.is_some());
    let wal = Wal::open(dir.path(), small_config()).unwrap();
    let got = read_all(&wal, Lsn(1));
    assert_eq!(got.last().unwrap().0, last);
    assert!(got.iter().all(|(l, _)| *l <= last));
    assert_eq!(wal.append(b"next".to_vec()).unwrap(), last.next());
}

#[test]
fn a_log_view_reads_without_changing_anything_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 8, 100);
    let seg = &segment_files(dir.path())[0];
    let f = OpenOptions::new().write(true).open(seg).unwrap();
    f.write_all_at(&[0x55; 30], frame_offset(8, 100)).unwrap();
    drop(f);
    let before = std::fs::read(seg).unwrap();
    let view = LogView::open(dir.path(), &small_config()).unwrap();
    assert!(view.torn_tail().is_some());
    let s = view.status();
    assert_eq!(
        (s.first_lsn, s.last_lsn, s.unconfirmed),
        (Lsn(1), Lsn(8), 8)
    );
    let mut r = view.reader(Lsn(5));
    let mut n = 0;
    while let Some(rec) = r.next().unwrap() {
        assert_eq!(rec.payload, payload(rec.lsn.0 - 1, 100));
        n += 1;
    }
    assert_eq!(n, 4);
    assert_eq!(std::fs::read(seg).unwrap(), before);
}
