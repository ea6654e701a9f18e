//! `sluice dlq list|show|replay|purge`: the dead-letter store from the command line.
//!
//! The store admits one process at a time (see [`crate::deadletter`]). With the daemon stopped
//! the commands open the store themselves; while it runs they ask it through its admin API
//! ([`crate::admin::client`], at `admin.listen` with its token), with the same output, `--json`
//! and exit codes. When the store is held and no daemon answers there, they fail with "the
//! dead-letter store … is in use by another process" and why the daemon could not be asked,
//! and exit 1, changing nothing.

use std::io::Write;
use std::time::Duration;

use super::progress::{Progress, ProgressMode};
use crate::admin::client::{Client, ClientError};
use crate::config::Config;
use crate::deadletter::{DeadLetterError, Entry, EntryId, Filter, Store};
use crate::event::FailureCategory;

/// Why a `dlq` command could not run.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The store failed (or is locked by the daemon).
    #[error(transparent)]
    Store(#[from] DeadLetterError),
    /// `--reason` is not a failure category.
    #[error("unknown reason `{0}`; expected one of: {list}", list = categories())]
    UnknownReason(String),
    /// An id does not parse.
    #[error("{0}")]
    BadId(String),
    /// `purge` without a selection.
    #[error("purge needs --older-than DUR, --reason R or one or more IDs (refusing to purge everything implicitly)")]
    NothingSelected,
    /// Writing the report failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// The running daemon could not do what was asked.
    #[error(transparent)]
    Daemon(#[from] ClientError),
    /// `dlq replay --clickhouse-url` while the daemon holds the store: the daemon replays into
    /// its own ClickHouse, so the flag cannot be honoured.
    #[error("--clickhouse-url {0} cannot be used while the daemon runs: the daemon holds the dead-letter store and replays into its own clickhouse.url; drop the flag, or stop the daemon to replay into another server")]
    ClickHouseUrlWithDaemon(String),
    /// The store is held by another process, and no daemon answered on `admin.listen`.
    #[error("{locked}; asking the daemon instead failed: {source}")]
    DaemonUnreachable {
        /// The store's refusal.
        locked: DeadLetterError,
        /// Why the daemon could not be asked.
        source: Box<ClientError>,
    },
}

impl DlqError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            DlqError::Store(e) => e.code(),
            DlqError::UnknownReason(_) => "unknown_reason",
            DlqError::BadId(_) => "bad_id",
            DlqError::NothingSelected => "nothing_selected",
            DlqError::Output(_) => "output",
            DlqError::Daemon(e) => e.code(),
            DlqError::DaemonUnreachable { .. } => "locked",
            DlqError::ClickHouseUrlWithDaemon(_) => "clickhouse_url_with_daemon",
        }
    }
}

fn categories() -> String {
    FailureCategory::ALL
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the commands find the dead letters.
#[derive(Debug)]
pub enum Target {
    /// The store itself: no daemon holds it.
    Store(Store),
    /// The running daemon that holds it, through its admin API.
    Daemon(Client),
}

impl Target {
    fn list(&self, filter: &Filter) -> Result<Vec<Entry>, DlqError> {
        Ok(match self {
            Target::Store(s) => s.list(filter)?,
            Target::Daemon(c) => c.list(filter)?,
        })
    }

    fn get(&self, id: EntryId) -> Result<Entry, DlqError> {
        match self {
            Target::Store(s) => Ok(s.get(id)?),
            Target::Daemon(c) => c.get(id).map_err(|e| match e {
                ClientError::Refused { code, .. } if code == "not_found" => {
                    DlqError::Store(DeadLetterError::NotFound(id))
                }
                e => e.into(),
            }),
        }
    }

    fn purge(&self, filter: &Filter) -> Result<usize, DlqError> {
        Ok(match self {
            Target::Store(s) => {
                let ids: Vec<EntryId> = s.list(filter)?.into_iter().map(|e| e.id).collect();
                s.remove(&ids)?
            }
            Target::Daemon(c) => c.purge(filter)?,
        })
    }
}

/// Opens the configured store (blocking), or reaches the daemon holding it.
pub fn open(config: &Config) -> Result<Target, DlqError> {
    match Store::open(&config.dead_letter.path(&config.data_dir)) {
        Ok(store) => Ok(Target::Store(store)),
        Err(locked @ DeadLetterError::Locked { .. }) => {
            let daemon = Client::for_config(config).and_then(|c| c.status().map(|_| c));
            match daemon {
                Ok(client) => Ok(Target::Daemon(client)),
                Err(source) => Err(DlqError::DaemonUnreachable {
                    locked,
                    source: Box::new(source),
                }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Builds a filter from the CLI's selection.
pub fn filter(
    reason: Option<&str>,
    older_than: Option<Duration>,
    ids: &[String],
) -> Result<Filter, DlqError> {
    let category = reason
        .map(|r| FailureCategory::parse(r).ok_or_else(|| DlqError::UnknownReason(r.into())))
        .transpose()?;
    let ids = ids
        .iter()
        .map(|i| i.parse::<EntryId>().map_err(DlqError::BadId))
        .collect::<Result<Vec<_>, _>>()?;
    let written_before_ms = older_than.map(|d| crate::wire::time::now_ms() - d.as_millis() as i64);
    Ok(Filter {
        category,
        written_before_ms,
        ids,
        ..Filter::default()
    })
}

fn summary_line(e: &Entry) -> String {
    let first = e.messages.first().map_or("", String::as_str);
    let more = match e.messages.len() {
        0 | 1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    format!(
        "{id}  {category}  attempts={attempts}  {first}{more}",
        id = e.id,
        category = e.category,
        attempts = e.attempts,
    )
}

/// `dlq list [--reason R] [--json]`: one line per entry (a JSON object per line with `--json`),
/// in receive-time order, then a count on stderr-free stdout when not JSON.
pub fn list(
    target: &Target,
    filter: &Filter,
    json: bool,
    out: &mut dyn Write,
) -> Result<usize, DlqError> {
    let entries = target.list(filter)?;
    for e in &entries {
        if json {
            writeln!(out, "{}", e.to_json())?;
        } else {
            writeln!(out, "{}", summary_line(e))?;
        }
    }
    if !json {
        writeln!(
            out,
            "{} entr{}",
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" }
        )?;
    }
    Ok(entries.len())
}

/// `dlq show ID [--json]`: every field of one entry, the raw request decoded.
pub fn show(target: &Target, id: &str, json: bool, out: &mut dyn Write) -> Result<(), DlqError> {
    let id: EntryId = id.parse().map_err(DlqError::BadId)?;
    let entry = target.get(id)?;
    let v = entry.to_json();
    if json {
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
        )?;
    }
    Ok(())
}

/// `dlq purge [--older-than DUR | --reason R | ID…] [--json]`: removes the selected entries.
pub fn purge(
    target: &Target,
    filter: &Filter,
    json: bool,
    out: &mut dyn Write,
) -> Result<usize, DlqError> {
    if filter == &Filter::default() {
        return Err(DlqError::NothingSelected);
    }
    let removed = target.purge(filter)?;
    if json {
        writeln!(out, "{}", serde_json::json!({ "purged": removed }))?;
    } else {
        writeln!(
            out,
            "purged {removed} entr{}",
            if removed == 1 { "y" } else { "ies" }
        )?;
    }
    Ok(removed)
}

/// `dlq replay [--reason R | ID…] [--json]`: re-processes the selected entries and delivers
/// their rows to the configured ClickHouse (see [`crate::publish::replay`] for why directly and
/// not through the log). Entries that load are removed; the rest stay with `attempts` + 1 and
/// are listed (in the JSON document's `failed_again`). A progress bar over the entries is drawn
/// on a terminal; a summary line goes to stderr.
pub fn replay(
    config: &Config,
    target: &Target,
    filter: &Filter,
    json: bool,
    mode: ProgressMode,
    out: &mut dyn Write,
) -> Result<crate::publish::replay::DlqSummary, crate::commands::RunError> {
    use crate::publish::replay::{replay_dead_letters, Pipeline};
    let progress = Progress::new("dlq replay", "entries", 0, mode);
    // The entries that failed again are reported one per line; in JSON they are collected.
    let mut failed_lines = Vec::new();
    let s = match target {
        Target::Store(store) => {
            let pipeline = Pipeline::connect(
                &config.enrich,
                config.process_limits(),
                &config.clickhouse,
                &config.data_dir,
            )?;
            replay_dead_letters(
                &pipeline.instance,
                store,
                filter,
                config.publish.batch_rows,
                &pipeline.processor,
                &pipeline.sink,
                pipeline.runtime.handle(),
                if json { &mut failed_lines } else { &mut *out },
                &progress,
            )?
        }
        Target::Daemon(client) => {
            let (s, lines) = client.replay(filter).map_err(DlqError::from)?;
            let sink: &mut dyn Write = if json { &mut failed_lines } else { &mut *out };
            for line in lines {
                writeln!(sink, "{line}").map_err(DlqError::from)?;
            }
            s
        }
    };
    let entries = if s.tried == 1 { "entry" } else { "entries" };
    if json {
        let failed_again: Vec<&str> = std::str::from_utf8(&failed_lines)
            .unwrap_or_default()
            .lines()
            .collect();
        let doc = serde_json::json!({
            "tried": s.tried,
            "loaded": s.loaded,
            "rows": s.rows,
            "failed_again": s.failed_again,
            "failures": failed_again,
        });
        writeln!(out, "{doc}").map_err(DlqError::from)?;
    } else {
        writeln!(
            out,
            "replayed {} {entries}: {} loaded and removed ({} rows), {} failed again and kept",
            s.tried, s.loaded, s.rows, s.failed_again
        )
        .map_err(DlqError::from)?;
    }
    progress.finish(&format!(
        "{} {entries} replayed, {} loaded, {} failed again",
        s.tried, s.loaded, s.failed_again
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_reject_unknown_reasons_and_bad_ids() {
        assert!(matches!(
            filter(Some("nope"), None, &[]),
            Err(DlqError::UnknownReason(_))
        ));
        assert!(matches!(
            filter(None, None, &["x".into()]),
            Err(DlqError::BadId(_))
        ));
        let f = filter(Some("schema_violation"), None, &["1-0-2-req".into()]).unwrap();
        assert_eq!(f.category, Some(FailureCategory::SchemaViolation));
        assert_eq!(f.ids.len(), 1);
    }

    #[test]
    fn purge_refuses_an_empty_selection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Target::Store(Store::open(dir.path()).unwrap());
        let err = purge(&store, &Filter::default(), false, &mut Vec::new()).unwrap_err();
        assert_eq!(err.code(), "nothing_selected");
    }
}
