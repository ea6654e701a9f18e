//! Helpers shared by the log's integration tests.
#![allow(dead_code)]

use std::path::Path;

use sluice_wal::{Lsn, Wal, WalConfig};

/// A small log: 64 KiB segments, four of them.
pub fn small_config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 << 10,
        capacity_bytes: 256 << 10,
        max_record_bytes: 16 << 10,
        max_batch_bytes: 1 << 20,
        ..WalConfig::default()
    }
}

/// A payload that names its index and fills `len` bytes with a pattern derived from it.
pub fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("record-{i}:").into_bytes();
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// Every record from `from` on, as (lsn, payload).
pub fn read_all(wal: &Wal, from: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    let mut r = wal.reader(from);
    let mut out = Vec::new();
    while let Some(rec) = r.next().expect("read") {
        out.push((rec.lsn, rec.payload));
    }
    out
}

/// The segment slot files of a log directory, sorted.
pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}
