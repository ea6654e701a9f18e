//! The publisher against a recording sink: batching limits, checkpoint order, dead letters,
//! several batches in flight, and re-forming the recorded batches after a restart.

mod publish_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use publish_support::*;
use sluice::deadletter::{EntryId, Filter, WHOLE_REQUEST};
use sluice::event::FailureCategory;
use sluice_wal::Lsn;

const LONG: Duration = Duration::from_secs(600);

#[test]
fn batches_close_at_the_row_limit() {
    let h = Harness::new();
    for _ in 0..7 {
        h.append("ok");
    }
    let sink = Arc::new(RecordingSink::default());
    let p = h.start(sink.clone(), config(3, 1 << 30, LONG));
    wait_until("six records are confirmed", || h.checkpoint() == Lsn(6));
    stop(p);
    assert_eq!(sink.tokens(), vec!["sluice-0-1-3", "sluice-0-4-6"]);
    assert_eq!(sink.calls()[1].rows, vec![(4, 0), (5, 0), (6, 0)]);
    assert_eq!(
        h.checkpoint(),
        Lsn(6),
        "the seventh record waits for its batch's age"
    );
    h.close();
}

#[test]
fn batches_close_at_the_byte_limit() {
    let h = Harness::new();
    let padding = format!("ok\npad{}", "x".repeat(600));
    for _ in 0..5 {
        h.append(&padding);
    }
    let sink = Arc::new(RecordingSink::default());
    // The limit counts the stored requests (~650 bytes each here) plus the rows as the sink
    // holds them (this sink keeps whole events, E bytes each): one record stays under
    // 1.5 E + 1 KiB, two reach it.
    let event = std::mem::size_of::<sluice::event::Event>() as u64;
    let p = h.start(sink.clone(), config(1000, event * 3 / 2 + 1024, LONG));
    wait_until("four records are confirmed", || h.checkpoint() == Lsn(4));
    stop(p);
    assert_eq!(sink.tokens(), vec!["sluice-0-1-2", "sluice-0-3-4"]);
    h.close();
}

#[test]
fn a_small_batch_is_sent_once_it_reaches_its_age() {
    let h = Harness::new();
    h.append("ok\nok");
    h.append("ok");
    let sink = Arc::new(RecordingSink::default());
    let p = h.start(
        sink.clone(),
        config(1000, 1 << 30, Duration::from_millis(20)),
    );
    wait_until("the first two records are confirmed", || {
        h.checkpoint() == Lsn(2)
    });
    h.append("ok");
    wait_until("the third record is confirmed", || h.checkpoint() == Lsn(3));
    stop(p);
    assert_eq!(sink.tokens(), vec!["sluice-0-1-2", "sluice-0-3-3"]);
    assert_eq!(sink.calls()[0].rows, vec![(1, 0), (1, 1), (2, 0)]);
    h.close();
}

#[test]
fn the_checkpoint_advances_only_after_the_sink_confirms() {
    let h = Harness::new();
    h.append("ok");
    h.append("ok");
    let sink = Arc::new(RecordingSink::default());
    sink.hold.store(true, Ordering::SeqCst);
    let p = h.start(sink.clone(), config(2, 1 << 30, LONG));
    wait_until("the sink has the batch", || !sink.calls().is_empty());
    assert_eq!(
        h.checkpoint(),
        Lsn(0),
        "nothing is confirmed while the sink holds the batch"
    );
    sink.hold.store(false, Ordering::SeqCst);
    wait_until("the batch is confirmed", || h.checkpoint() == Lsn(2));
    stop(p);
    h.close();
}

#[test]
fn a_failed_delivery_is_retried_with_the_same_token() {
    let h = Harness::new();
    h.append("ok");
    h.append("ok");
    let sink = Arc::new(RecordingSink::default());
    sink.fail_first.store(2, Ordering::SeqCst);
    let p = h.start(sink.clone(), config(2, 1 << 30, LONG));
    wait_until("the batch is confirmed", || h.checkpoint() == Lsn(2));
    stop(p);
    assert_eq!(sink.tokens(), vec!["sluice-0-1-2"; 3]);
    let calls = sink.calls();
    assert!(
        calls.iter().all(|c| c.rows == calls[0].rows),
        "a retry resends the same rows"
    );
    h.close();
}

#[test]
fn a_stale_batch_is_prepared_again_from_its_requests_and_sent_with_the_same_rows_and_token() {
    let h = Harness::new();
    h.append("ok\nok");
    h.append("ok");
    let sink = Arc::new(RecordingSink::default());
    sink.stale_first.store(1, Ordering::SeqCst);
    let p = h.start(sink.clone(), config(3, 1 << 30, LONG));
    wait_until("the batch is confirmed", || h.checkpoint() == Lsn(2));
    stop(p);
    assert_eq!(
        sink.prepared_batches.load(Ordering::SeqCst),
        2,
        "formed, then made again"
    );
    assert_eq!(sink.tokens(), vec!["sluice-0-1-2"]);
    assert_eq!(
        sink.calls()[0].rows,
        vec![(1, 0), (1, 1), (2, 0)],
        "the rows made again are the rows formed"
    );
    h.close();
}

#[test]
fn failures_are_dead_lettered_with_their_category_and_raw_request_before_the_checkpoint() {
    let h = Harness::new();
    let mixed = envelope("ok\nbad one\nreject me", 1_700_000_000_123);
    let lsn1 = h.wal.append(mixed.encode()).unwrap();
    let lsn2 = h.append("BAD REQUEST");
    let garbage = b"\x09not an envelope".to_vec();
    let lsn3 = h.wal.append(garbage.clone()).unwrap();
    let sink = Arc::new(RecordingSink::default());
    let p = h.start(
        sink.clone(),
        config(1000, 1 << 30, Duration::from_millis(20)),
    );
    wait_until("the batch is confirmed", || h.checkpoint() == lsn3);
    stop(p);

    let entries = h.store.list(&Filter::default()).unwrap();
    let by_id = |partition: u32, lsn: Lsn, index: u32, t: u64| {
        let id = EntryId {
            received_at_ms: t,
            partition,
            lsn: lsn.0,
            index,
        };
        entries
            .iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("no entry {id} among {entries:#?}"))
            .clone()
    };
    assert_eq!(entries.len(), 4, "{entries:#?}");

    let bad = by_id(0, lsn1, 1, 1_700_000_000_123);
    assert_eq!(bad.category, FailureCategory::SchemaViolation);
    assert_eq!(bad.event_payload.as_deref(), Some("bad one"));
    assert_eq!(bad.envelope, mixed.encode(), "the raw request is kept");
    assert_eq!(bad.attempts, 1);

    let rejected = by_id(0, lsn1, 2, 1_700_000_000_123);
    assert_eq!(rejected.category, FailureCategory::LoaderRejection);
    assert!(rejected.messages[0].contains("Cannot parse input"));
    assert!(rejected.event_payload.unwrap().contains("reject me"));

    let whole = by_id(0, lsn2, WHOLE_REQUEST, 1_700_000_000_000);
    assert_eq!(whole.category, FailureCategory::AdapterFailure);

    let undecodable = by_id(0, lsn3, WHOLE_REQUEST, 0);
    assert_eq!(
        undecodable.category,
        FailureCategory::CollectorPayloadFormatViolation
    );
    assert_eq!(undecodable.envelope, garbage);

    assert_eq!(sink.calls()[0].rows, vec![(1, 0), (1, 2)]);
    h.close();
}

#[test]
fn a_rejected_row_of_a_request_that_processed_cleanly_is_dead_lettered_with_its_request_read_back_from_the_log(
) {
    let h = Harness::new();
    h.append("ok");
    let clean = envelope("ok\nreject me\nok", 1_700_000_000_456);
    let lsn = h.wal.append(clean.encode()).unwrap();
    h.append("ok");
    let sink = Arc::new(RecordingSink::default());
    let p = h.start(
        sink.clone(),
        config(1000, 1 << 30, Duration::from_millis(20)),
    );
    wait_until("the batch is confirmed", || h.checkpoint() == Lsn(3));
    stop(p);
    let entries = h.store.list(&Filter::default()).unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let rejected = &entries[0];
    assert_eq!(
        rejected.id,
        EntryId {
            received_at_ms: 1_700_000_000_456,
            partition: 0,
            lsn: lsn.0,
            index: 1
        }
    );
    assert_eq!(rejected.category, FailureCategory::LoaderRejection);
    assert_eq!(
        rejected.envelope,
        clean.encode(),
        "the raw request, read back"
    );
    assert!(rejected
        .event_payload
        .as_deref()
        .is_some_and(|p| p.contains("reject me")));
    h.close();
}

#[test]
fn a_batch_whose_records_all_failed_is_checkpointed_without_a_delivery() {
    let h = Harness::new();
    h.append("bad a\nbad b");
    h.append("BAD REQUEST");
    let sink = Arc::new(RecordingSink::default());
    let p = h.start(
        sink.clone(),
        config(1000, 1 << 30, Duration::from_millis(20)),
    );
    wait_until("the batch is checkpointed", || h.checkpoint() == Lsn(2));
    stop(p);
    assert!(sink.calls().is_empty());
    assert_eq!(h.store.len(), 3);
    h.close();
}

#[test]
fn after_a_restart_the_first_batch_is_the_recorded_one_with_the_same_token() {
    let h = Harness::new();
    for _ in 0..5 {
        h.append("ok");
    }
    // First run: the sink never confirms the first batch; the publisher is stopped (as by a
    // crash) with it in flight.
    let sink = Arc::new(RecordingSink::default());
    sink.hold.store(true, Ordering::SeqCst);
    let p = h.start(sink.clone(), config(3, 1 << 30, LONG));
    wait_until("the sink has the batch", || !sink.calls().is_empty());
    stop(p);
    assert_eq!(h.checkpoint(), Lsn(0));
    let first = sink.calls()[0].clone();
    assert_eq!(first.token, "sluice-0-1-3");
    let dir = h.close();

    // Second run, with limits that would form a different batch: the recorded one comes first.
    let h = Harness::open(dir);
    let sink = Arc::new(RecordingSink::default());
    let p = h.start(
        sink.clone(),
        config(1000, 1 << 30, Duration::from_millis(20)),
    );
    wait_until("everything is confirmed", || h.checkpoint() == Lsn(5));
    stop(p);
    let calls = sink.calls();
    assert_eq!(calls[0], first, "same range, same rows, same token");
    assert_eq!(sink.tokens(), vec!["sluice-0-1-3", "sluice-0-4-5"]);
    h.close();
}

/// `config` with `max_in_flight` batches in flight.
fn in_flight(rows: usize, age: Duration, max_in_flight: usize) -> sluice::publish::PublishConfig {
    sluice::publish::PublishConfig {
        max_in_flight,
        ..config(rows, 1 << 30, age)
    }
}

#[test]
fn a_confirmed_batch_waits_for_the_older_unconfirmed_one_before_its_dead_letters_and_checkpoint() {
    let h = Harness::new();
    for body in ["ok", "ok", "ok\nbad x", "ok", "ok", "ok"] {
        h.append(body);
    }
    let sink = Arc::new(RecordingSink::default());
    sink.hold_token("sluice-0-1-2");
    let p = h.start(sink.clone(), in_flight(2, LONG, 3));
    wait_until("the two younger batches are confirmed", || {
        let confirmed = sink.confirmed();
        confirmed.contains(&"sluice-0-3-4".to_string())
            && confirmed.contains(&"sluice-0-5-6".to_string())
    });
    assert_eq!(sink.calls().len(), 3, "three batches in flight at once");
    assert_eq!(h.checkpoint(), Lsn(0), "the oldest batch is not confirmed");
    assert_eq!(
        h.store.len(),
        0,
        "dead letters wait for the checkpoint's turn"
    );

    sink.release("sluice-0-1-2");
    wait_until("everything is checkpointed", || h.checkpoint() == Lsn(6));
    stop(p);
    assert_eq!(h.store.len(), 1, "the bad event of batch 3–4");
    h.close();
}

#[test]
fn no_more_than_max_in_flight_batches_are_sent_before_the_oldest_is_checkpointed() {
    let h = Harness::new();
    for _ in 0..6 {
        h.append("ok");
    }
    let sink = Arc::new(RecordingSink::default());
    sink.hold_token("sluice-0-1-2");
    let p = h.start(sink.clone(), in_flight(2, LONG, 2));
    wait_until("the second batch is confirmed", || {
        sink.confirmed() == vec!["sluice-0-3-4".to_string()]
    });
    // Batch 5–6 is formed (the former runs ahead by one), but two are outstanding.
    stop(p);
    assert_eq!(sink.tokens(), vec!["sluice-0-1-2", "sluice-0-3-4"]);
    assert_eq!(h.checkpoint(), Lsn(0));
    h.close();
}

#[test]
fn after_a_restart_every_batch_that_was_in_flight_is_re_formed_with_its_rows_and_token() {
    let h = Harness::new();
    for _ in 0..6 {
        h.append("ok");
    }
    // First run: three batches in flight; the middle one is confirmed, the other two never
    // are before the publisher is stopped (as by a crash).
    let sink = Arc::new(RecordingSink::default());
    sink.hold_token("sluice-0-1-2");
    sink.hold_token("sluice-0-5-6");
    let p = h.start(sink.clone(), in_flight(2, LONG, 3));
    wait_until("all three are sent and the middle one confirmed", || {
        sink.calls().len() == 3 && sink.confirmed() == vec!["sluice-0-3-4".to_string()]
    });
    stop(p);
    assert_eq!(h.checkpoint(), Lsn(0));
    let mut first_run = sink.calls();
    first_run.sort_by(|a, b| a.rows.cmp(&b.rows));
    let dir = h.close();

    // Second run, with limits that would form one different batch and one lane: the recorded
    // ranges come first, in order, each with its rows and token; new records come after.
    let h = Harness::open(dir);
    h.append("ok");
    h.append("ok");
    let sink = Arc::new(RecordingSink::default());
    let p = h.start(sink.clone(), in_flight(1000, Duration::from_millis(20), 1));
    wait_until("everything is confirmed", || h.checkpoint() == Lsn(8));
    stop(p);
    let calls = sink.calls();
    assert_eq!(
        &calls[..3],
        &first_run[..],
        "same ranges, same rows, same tokens"
    );
    assert_eq!(
        sink.tokens(),
        vec![
            "sluice-0-1-2",
            "sluice-0-3-4",
            "sluice-0-5-6",
            "sluice-0-7-8"
        ]
    );
    h.close();
}

#[test]
fn max_in_flight_outside_its_bounds_is_refused() {
    for (n, ok) in [(0, false), (1, true), (16, true), (17, false)] {
        let keys: Vec<_> = in_flight(1, LONG, n)
            .violations()
            .into_iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(keys.is_empty(), ok, "{n}: {keys:?}");
    }
}

#[test]
fn while_a_backlog_is_drained_batches_fill_to_their_row_limit_whatever_their_age() {
    let h = Harness::new();
    for _ in 0..6 {
        h.append("slow");
    }
    let sink = Arc::new(RecordingSink::default());
    // Each record takes 20 ms to process, twice the batch age: the log always has the next
    // record ready, so only the row limit closes a batch.
    let p = h.start(sink.clone(), config(3, 1 << 30, Duration::from_millis(10)));
    wait_until("everything is confirmed", || h.checkpoint() == Lsn(6));
    stop(p);
    assert_eq!(sink.tokens(), vec!["sluice-0-1-3", "sluice-0-4-6"]);
    h.close();
}

#[test]
fn tokens_carry_the_data_directorys_instance_id_so_two_instances_never_share_one() {
    let a = Harness::new();
    let b = Harness::new();
    let mut raw = Vec::new();
    for h in [&a, &b] {
        h.append("ok");
        let sink = Arc::new(RecordingSink::default());
        let p = h.start(sink.clone(), config(1, 1 << 30, LONG));
        wait_until("the record is confirmed", || h.checkpoint() == Lsn(1));
        stop(p);
        let call = &sink.calls()[0];
        assert_eq!(call.token, "sluice-0-1-1");
        assert_eq!(call.raw_token, format!("sluice-{}-0-1-1", h.instance()));
        raw.push(call.raw_token.clone());
    }
    assert_ne!(raw[0], raw[1], "same positions, different instances");
}
