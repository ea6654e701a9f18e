//! A proptest model of the log: random sequences of appends, reads, checkpoints and reopens
//! are run against the real log and against a plain in-memory vector, and must agree.

mod common;

use proptest::prelude::*;

use common::{payload, small_config};
use sluice_wal::{Error, Lsn, Wal};

#[derive(Debug, Clone)]
enum Op {
    /// Append a record of this many bytes.
    Append(usize),
    /// Confirm this share (per mille) of the unconfirmed records.
    Checkpoint(u16),
    /// Read everything from this share (per mille) of the way through the log.
    Read(u16),
    /// Close and reopen.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6000).prop_map(Op::Append),
        2 => (0u16..=1000).prop_map(Op::Checkpoint),
        2 => (0u16..=1000).prop_map(Op::Read),
        1 => Just(Op::Reopen),
    ]
}

/// What the log must hold: every appended payload by LSN, and the confirmed position.
struct Model {
    records: Vec<Vec<u8>>,
    confirmed: u64,
}

impl Model {
    fn unconfirmed_bytes(&self) -> u64 {
        self.records[self.confirmed as usize..]
            .iter()
            .map(|p| 16 + p.len() as u64)
            .sum()
    }
}

fn check_read(wal: &Wal, model: &Model, from: u64) -> Result<(), TestCaseError> {
    let mut reader = wal.reader(Lsn(from));
    let mut expected = from.max(1);
    while let Some(rec) = reader
        .next()
        .map_err(|e| TestCaseError::fail(e.to_string()))?
    {
        if rec.lsn.0 != expected {
            // Only confirmed records may have been recycled away.
            prop_assert!(rec.lsn.0 <= model.confirmed + 1, "gap before {}", rec.lsn);
            prop_assert!(expected <= model.confirmed);
        }
        prop_assert_eq!(&rec.payload, &model.records[rec.lsn.0 as usize - 1]);
        expected = rec.lsn.0 + 1;
    }
    prop_assert_eq!(
        expected.max(from),
        (model.records.len() as u64 + 1).max(from)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_log_agrees_with_an_in_memory_model(ops in prop::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let mut wal = Wal::open(dir.path(), config.clone()).unwrap();
        let mut model = Model { records: Vec::new(), confirmed: 0 };
        for op in ops {
            match op {
                Op::Append(len) => {
                    let p = payload(model.records.len() as u64, len);
                    match wal.append(p.clone()) {
                        Ok(lsn) => {
                            model.records.push(p);
                            prop_assert_eq!(lsn.0, model.records.len() as u64);
                        }
                        Err(Error::Full { .. }) => {
                            // Full is only allowed when unconfirmed data leaves no whole
                            // segment free (two segments of slack for packing waste).
                            let slack = 2 * config.segment_bytes;
                            prop_assert!(model.unconfirmed_bytes() + len as u64 + slack
                                >= config.capacity_bytes,
                                "full with only {} unconfirmed bytes", model.unconfirmed_bytes());
                        }
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Op::Checkpoint(share) => {
                    let total = model.records.len() as u64;
                    let to = model.confirmed + (total - model.confirmed) * u64::from(share) / 1000;
                    wal.checkpoint(Lsn(to)).unwrap();
                    model.confirmed = model.confirmed.max(to);
                }
                Op::Read(share) => {
                    let from = model.records.len() as u64 * u64::from(share) / 1000;
                    check_read(&wal, &model, from)?;
                }
                Op::Reopen => {
                    wal.close().unwrap();
                    wal = Wal::open(dir.path(), config.clone()).unwrap();
                }
            }
            let s = wal.status();
            prop_assert_eq!(s.last_lsn.0, model.records.len() as u64);
            prop_assert_eq!(s.checkpoint.0, model.confirmed);
            prop_assert_eq!(s.unconfirmed, model.records.len() as u64 - model.confirmed);
            prop_assert!(s.used_bytes <= s.capacity_bytes);
        }
        check_read(&wal, &model, model.confirmed + 1)?;
        wal.close().unwrap();
        prop_assert!(sluice_wal::verify(dir.path()).unwrap().is_ok());
    }
}
