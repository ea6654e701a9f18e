//! The harness on itself: a child that counts, killed at a random moment.

use std::io::Write;

use sluice_crash_harness::{announce_ready, child_args, Harness, Output};

/// The child: prints `n 0`, `n 1`, … until killed. Returns at once unless the harness started it.
#[test]
#[ignore = "the child process of the test below; it runs only when the harness starts it"]
fn crash_child_process() {
    let Some(args) = child_args() else {
        return;
    };
    assert!(
        args.dir.is_dir(),
        "the harness passes an existing directory"
    );
    let mut out = std::io::stdout();
    announce_ready(&mut out).unwrap();
    for n in 0u64.. {
        // One write per line, so a kill cannot leave half a number behind.
        out.write_all(format!("n {n}\n").as_bytes()).unwrap();
    }
}

#[test]
fn a_child_reports_every_line_it_printed_before_it_was_killed() {
    let harness = Harness::new("crash_child_process");
    for cycle in 0..3 {
        let child = harness.spawn(cycle, Vec::new(), |seen: &mut Vec<u64>, line: &str| {
            if let Some(n) = line.strip_prefix("n ") {
                seen.push(n.parse().unwrap());
            }
        });
        let Output { ready, state: seen } = child.kill_at_random_moment(5..50);
        assert!(ready, "cycle {cycle}: the child never announced itself");
        assert!(!seen.is_empty(), "cycle {cycle}: no line arrived");
        assert!(
            seen.iter().copied().eq(0..seen.len() as u64),
            "cycle {cycle}: lines were lost or reordered"
        );
    }
}
