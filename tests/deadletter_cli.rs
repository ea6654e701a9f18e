//! `sluice dlq list|show|purge` through the binary, against a store written by the library;
//! and the clear refusal while another process (the daemon) holds the store.

use std::path::Path;
use std::process::{Command, Output};

use sluice::deadletter::{Entry, EntryId, Store, WHOLE_REQUEST};
use sluice::envelope::Envelope;
use sluice::event::FailureCategory;

fn sluice(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn envelope(body: &str) -> Envelope {
    Envelope {
        received_at_ms: 1_700_000_000_000,
        route: "/i".into(),
        method: "GET".into(),
        path: "/i".into(),
        query: Some("e=pv&tv=js-3".into()),
        headers: vec![],
        body: body.as_bytes().to_vec(),
        peer: Some("10.0.0.1".into()),
        nuid: None,
    }
}

fn entry(lsn: u64, index: u32, category: FailureCategory, time_ms: i64) -> Entry {
    Entry {
        id: EntryId {
            received_at_ms: 1_700_000_000_000 + lsn,
            partition: 1,
            lsn,
            index,
        },
        time_ms,
        category,
        messages: vec![format!("{category} at {lsn}")],
        attempts: 1,
        event_payload: Some("e=pv".into()),
        envelope: envelope("hello").encode(),
    }
}

fn seeded() -> (tempfile::TempDir, Vec<Entry>) {
    let dir = tempfile::tempdir().unwrap();
    let now = sluice::wire::time::now_ms();
    let entries = vec![
        entry(
            1,
            0,
            FailureCategory::SchemaViolation,
            now - 10 * 86_400_000,
        ),
        entry(2, WHOLE_REQUEST, FailureCategory::AdapterFailure, now),
        entry(3, 2, FailureCategory::SchemaViolation, now),
    ];
    let store = Store::open(&dir.path().join("deadletter")).unwrap();
    store.put_all(&entries).unwrap();
    store.flush().unwrap();
    (dir, entries)
}

#[test]
fn dlq_list_prints_every_entry_and_filters_by_reason() {
    let (dir, entries) = seeded();
    let o = sluice(dir.path(), &["dlq", "list"]);
    assert!(o.status.success(), "{o:?}");
    let text = stdout(&o);
    for e in &entries {
        assert!(text.contains(&e.id.to_string()), "{text}");
    }
    assert!(text.contains("3 entries"));

    let o = sluice(
        dir.path(),
        &["dlq", "list", "--reason", "adapter_failure", "--json"],
    );
    assert!(o.status.success(), "{o:?}");
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], entries[1].id.to_string());
    assert_eq!(lines[0]["category"], "adapter_failure");
    assert_eq!(lines[0]["event_index"], serde_json::Value::Null);

    let o = sluice(dir.path(), &["dlq", "list", "--reason", "nonsense"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("schema_violation"));
}

#[test]
fn dlq_show_prints_the_entry_with_its_raw_request_decoded() {
    let (dir, entries) = seeded();
    let id = entries[2].id.to_string();
    let o = sluice(dir.path(), &["dlq", "show", &id, "--json"]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["id"], id);
    assert_eq!(v["lsn"], 3);
    assert_eq!(v["partition"], 1);
    assert_eq!(v["event_index"], 2);
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["messages"][0], "schema_violation at 3");
    assert_eq!(v["envelope"]["query"], "e=pv&tv=js-3");
    assert_eq!(v["envelope"]["body"], "hello");

    let o = sluice(dir.path(), &["dlq", "show", "1-2-3-4"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no dead-letter entry 1-2-3-4"));
}

#[test]
fn dlq_purge_removes_by_age_reason_or_id_and_refuses_an_empty_selection() {
    let (dir, entries) = seeded();
    let o = sluice(dir.path(), &["dlq", "purge"]);
    assert!(
        !o.status.success(),
        "purging everything implicitly is refused"
    );

    let o = sluice(dir.path(), &["dlq", "purge", "--older-than", "7days"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("purged 1 entry"));

    let o = sluice(dir.path(), &["dlq", "purge", "--reason", "adapter_failure"]);
    assert!(stdout(&o).contains("purged 1 entry"), "{o:?}");

    let id = entries[2].id.to_string();
    let o = sluice(dir.path(), &["dlq", "purge", &id]);
    assert!(stdout(&o).contains("purged 1 entry"), "{o:?}");

    let store = Store::open(&dir.path().join("deadletter")).unwrap();
    assert!(store.is_empty());
}

#[test]
fn dlq_commands_refuse_while_another_process_holds_the_store() {
    let (dir, _) = seeded();
    // This test process plays the daemon.
    let _held = Store::open(&dir.path().join("deadletter")).unwrap();
    let o = sluice(dir.path(), &["dlq", "list"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains("stop it first"), "{err}");
}
