//! The dead-letter store's kill -9 harness (the same shape as the WAL's): a child process
//! writes entries from two threads, flushes, and prints each acknowledged id; a third thread
//! purges some older entries (as `dlq purge` would) and prints what it removed. The parent
//! kills the child at random moments, reopens the store, and checks that every acknowledged
//! entry not purged is present and byte-for-byte intact. The child is this test binary re-run
//! by `sluice-crash-harness` (which also reads the child's report and does the killing; see its
//! crate docs).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::deadletter::{Entry, EntryId, Store};
use sluice::event::FailureCategory;
use sluice_crash_harness::{announce_ready, child_args, cycles_from_env, Harness, Output};

/// Every entry is regenerated from its id, so the parent can check its bytes.
fn entry(id: EntryId) -> Entry {
    let n = id.lsn.wrapping_mul(2_654_435_761) % 4000;
    Entry {
        id,
        time_ms: id.received_at_ms as i64,
        category: FailureCategory::ALL[(id.lsn % 7) as usize],
        messages: vec![format!("problem with {id}"), "x".repeat((n % 200) as usize)],
        attempts: 1 + (id.lsn % 3) as u32,
        event_payload: Some(format!("{{\"e\":\"pv\",\"n\":{n}}}")),
        envelope: (0..n).map(|i| (i ^ id.lsn) as u8).collect(),
    }
}

fn id(cycle: u64, thread: u32, seq: u64) -> EntryId {
    EntryId {
        received_at_ms: 1_700_000_000_000 + cycle * 1_000_000 + seq,
        partition: thread,
        lsn: (cycle << 32) | seq,
        index: (seq % 5) as u32,
    }
}

/// The child: write until killed. Returns at once unless the harness started it.
#[test]
#[ignore = "the child process of the kill -9 harness below; it runs only when that harness starts it"]
fn crash_child_process() {
    let Some(args) = child_args() else {
        return;
    };
    let cycle = args.cycle;
    let store = Store::open(&args.dir).expect("child opens the store");
    let out = Arc::new(Mutex::new(std::io::stdout()));
    announce_ready(&mut *out.lock().unwrap()).unwrap();
    let writers: Vec<_> = (0..2u32)
        .map(|t| {
            let store = store.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut seq = 0u64;
                loop {
                    // Like the publisher: a batch of entries, then a flush, then acknowledge.
                    let batch: Vec<Entry> = (0..1 + seq % 4)
                        .map(|k| entry(id(cycle, t, seq + k)))
                        .collect();
                    seq += batch.len() as u64;
                    store.put_all(&batch).expect("put");
                    store.flush().expect("flush");
                    let mut o = out.lock().unwrap();
                    for e in &batch {
                        writeln!(o, "ack {}", e.id).unwrap();
                    }
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    // Purger: removes every entry of an earlier cycle whose lsn is divisible by 3.
    {
        let store = store.clone();
        let out = out.clone();
        std::thread::spawn(move || loop {
            let victims: Vec<EntryId> = store
                .list(&Default::default())
                .expect("list")
                .into_iter()
                .map(|e| e.id)
                .filter(|i| (i.lsn >> 32) < cycle && i.lsn % 3 == 0)
                .take(20)
                .collect();
            if !victims.is_empty() {
                // Reported before removal: a purge the parent hears of may or may not have
                // become durable, so the parent treats these as "may be gone".
                let mut o = out.lock().unwrap();
                for v in &victims {
                    writeln!(o, "purging {v}").unwrap();
                }
                o.flush().unwrap();
                drop(o);
                store.remove(&victims).expect("remove");
            }
            std::thread::sleep(Duration::from_millis(20));
        });
    }
    for w in writers {
        w.join().unwrap();
    }
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_dead_letter() {
    let cycles = cycles_from_env("DLQ_CRASH_CYCLES", 20);
    let harness = Harness::new("crash_child_process");
    let dir = harness.dir();
    // Every acknowledged id, minus those a purge may have removed.
    let mut expected: BTreeSet<EntryId> = BTreeSet::new();
    let mut total_acked = 0usize;
    for cycle in 0..cycles {
        // Acknowledged ids, and ids a purge may have removed.
        let child = harness.spawn(
            cycle,
            (Vec::new(), Vec::new()),
            |(acked, purged): &mut (Vec<EntryId>, Vec<EntryId>), line: &str| {
                let mut parts = line.split_whitespace();
                match parts.next() {
                    Some("ack") => acked.push(parts.next().unwrap().parse::<EntryId>().unwrap()),
                    Some("purging") => {
                        purged.push(parts.next().unwrap().parse::<EntryId>().unwrap())
                    }
                    _ => {}
                }
            },
        );
        let Output {
            ready,
            state: (acked, purged),
        } = child.kill_at_random_moment(5..300);
        assert!(ready, "cycle {cycle}: the child never opened the store");
        total_acked += acked.len();
        expected.extend(acked);
        for p in &purged {
            expected.remove(p);
        }

        let store =
            Store::open(dir).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let held: BTreeMap<EntryId, Entry> = store
            .list(&Default::default())
            .unwrap_or_else(|e| panic!("cycle {cycle}: listing failed: {e}"))
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        for id in &expected {
            let got = held
                .get(id)
                .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged entry {id} is missing"));
            assert_eq!(got, &entry(*id), "cycle {cycle}: entry {id} differs");
        }
        // Whatever else is there (written but not yet acknowledged) must be intact too.
        for (id, e) in &held {
            assert_eq!(
                e,
                &entry(*id),
                "cycle {cycle}: unacknowledged entry {id} is damaged"
            );
        }
        drop(store);
    }
    assert!(total_acked > 0, "the children acknowledged nothing");
    eprintln!("{cycles} cycles, {total_acked} acknowledged entries, all present");
}
