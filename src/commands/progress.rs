//! Progress of long operator commands (`wal replay`, `dlq replay`, `wal verify`).
//!
//! On a terminal (stderr is a tty) a progress bar is drawn on stderr and cleared at the end;
//! otherwise (a pipe, a file, a CI log) nothing is drawn while the work runs. Either way the
//! command ends with **one summary line on stderr**, `sluice <command>: <what was done> in
//! <elapsed>`, so logs of scripted runs get one line per run and stdout stays the command's
//! report (text or `--json`).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on stderr while the work runs, then the summary line.
    Bar,
    /// Only the summary line.
    SummaryOnly,
}

impl ProgressMode {
    /// [`ProgressMode::Bar`] when stderr is a terminal.
    pub fn detect() -> ProgressMode {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::SummaryOnly
        }
    }
}

/// One long operation's progress: a bar (or nothing) while it runs, a summary line at the end.
#[derive(Debug)]
pub struct Progress {
    /// The command, as the summary line names it (`wal verify`).
    command: &'static str,
    /// `None` in [`ProgressMode::SummaryOnly`].
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    /// Starts tracking `total` units of `unit` (`records`, `bytes`, `entries`); `total` may be
    /// changed later with [`Progress::set_total`].
    pub fn new(command: &'static str, unit: &str, total: u64, mode: ProgressMode) -> Progress {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = if unit == "bytes" {
                format!(
                    "{command} {{msg}} [{{bar:40}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, eta {{eta}})"
                )
            } else {
                format!(
                    "{command} {{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
                )
            };
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            command,
            bar,
            started: Instant::now(),
        }
    }

    /// Whether a bar is drawn.
    pub fn is_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Sets how many units the whole operation has.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// `n` more units are done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// What is being worked on now (e.g. `partition 3`).
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.into());
        }
    }

    /// Clears the bar and writes the summary line to stderr.
    pub fn finish(self, summary: &str) {
        let line = self.finish_line(summary);
        // The summary is informational: a closed stderr must not fail the command.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// Clears the bar and returns the summary line [`Progress::finish`] would print.
    pub fn finish_line(self, summary: &str) -> String {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        format!(
            "sluice {}: {summary} in {}",
            self.command,
            elapsed_text(self.started.elapsed())
        )
    }
}

impl crate::publish::replay::Progress for Progress {
    fn start(&self, total: u64) {
        self.set_total(total);
    }

    fn advance(&self, records: u64) {
        self.inc(records);
    }
}

/// `0.42s`, `12.3s`, `3m 5s`.
fn elapsed_text(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.2}s")
    } else {
        let whole = d.as_secs();
        format!("{}m {}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_only_mode_draws_no_bar_and_ends_with_one_line() {
        let p = Progress::new("wal verify", "records", 10, ProgressMode::SummaryOnly);
        assert!(!p.is_bar());
        p.inc(10);
        let line = p.finish_line("10 records checked");
        assert!(
            line.starts_with("sluice wal verify: 10 records checked in "),
            "{line}"
        );
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    }

    #[test]
    fn bar_mode_keeps_a_bar_until_finished() {
        let p = Progress::new("wal replay", "records", 5, ProgressMode::Bar);
        assert!(p.is_bar());
        p.set_total(7);
        p.inc(7);
        assert_eq!(p.bar.as_ref().map(|b| b.position()), Some(7));
        assert_eq!(p.bar.as_ref().and_then(|b| b.length()), Some(7));
        let line = p.finish_line("done");
        assert!(line.starts_with("sluice wal replay: done in "), "{line}");
    }

    #[test]
    fn elapsed_times_are_short() {
        assert_eq!(elapsed_text(Duration::from_millis(420)), "0.42s");
        assert_eq!(elapsed_text(Duration::from_secs(185)), "3m 5s");
    }
}
