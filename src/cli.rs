//! The command-line grammar (clap derive). A stable contract: operators and scripts rely on it.
//!
//! ```text
//! sluice serve       [--config FILE] [--listen ADDR] [--metrics-listen ADDR] [--admin-listen ADDR] [--data-dir DIR] [--clickhouse-url URL]
//! sluice wal status  [--config FILE] [--data-dir DIR] [--json]
//! sluice wal inspect [--config FILE] [--data-dir DIR] [--partition N] [--from LSN] [--limit N] [--json]
//! sluice wal tail    [--config FILE] [--data-dir DIR] [--partition N] [--lines N] [--count N] [--interval DUR] [--json]
//! sluice wal verify  [--config FILE] [--data-dir DIR] [--json]
//! sluice wal replay  [--config FILE] [--data-dir DIR] [--clickhouse-url URL] --from LSN [--to LSN] [--partition N] [--json]
//! sluice dlq list    [--config FILE] [--data-dir DIR] [--reason R] [--json]
//! sluice dlq show    [--config FILE] [--data-dir DIR] ID [--json]
//! sluice dlq replay  [--config FILE] [--data-dir DIR] [--clickhouse-url URL] [--reason R | ID…] [--json]
//! sluice dlq purge   [--config FILE] [--data-dir DIR] [--older-than DUR | --reason R | ID…] [--json]
//! sluice config show [--config FILE] [--json] [serve's flags, to preview their effect]
//! sluice db init     [--config FILE] [--clickhouse-url URL] [--print-ddl --server-version V]
//! sluice db check    [--config FILE] [--clickhouse-url URL] [--json]
//! sluice --version
//! ```
//!
//! `--config FILE` is accepted by every subcommand (and defaults to `$SLUICE_CONFIG`).
//!
//! `--json` prints one JSON document for commands that report one thing and JSON lines (one
//! object per record) for `wal inspect`, `wal tail` and `dlq list`; see [`crate::commands`].
//!
//! # Exit codes
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success (also when the reader of the output goes away, as in `sluice wal inspect \| head`) |
//! | 1 | failure: I/O, a listener could not bind, a log or the dead-letter store could not be opened (or is in use), ClickHouse unreachable, … |
//! | 2 | usage or configuration error: a bad flag or argument (clap's own errors), an unknown partition, reason, entry id or server version, an invalid configuration |
//! | 3 | the command ran but found problems in the data: `wal verify` found corruption, `wal inspect` met undecodable records, `db check` found the table unusable, `dlq replay` left entries that failed again |
//!
//! A signal that stops `serve` (SIGTERM, SIGINT) ends it with 0 after the drain.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::load::Overrides;

/// Exit codes of the `sluice` binary (see the module docs).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command failed (I/O, ClickHouse, a locked store, …).
    pub const FAILURE: u8 = 1;
    /// A usage or configuration error.
    pub const USAGE: u8 = 2;
    /// The command ran and found problems in the data.
    pub const PROBLEMS: u8 = 3;
}

/// The exit codes as `sluice --help` prints them.
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  failure (I/O, ClickHouse unreachable, dead-letter store in use, a listener cannot bind, ...)
  2  usage or configuration error (bad flag or argument, unknown partition/reason/id, invalid config)
  3  problems found in the data (wal verify: corruption; wal inspect: undecodable records;
     db check: table unusable; dlq replay: entries failed again)

--json prints one JSON document, or JSON lines (one object per record) for wal inspect,
wal tail and dlq list. Progress and summaries of long operations go to stderr.

Examples:
  sluice db init --config /etc/sluice.toml
  sluice serve --config /etc/sluice.toml
  sluice wal status --json
  sluice config show";

/// sluice: a self-hosted event collector that fsyncs every request before acknowledging it.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about,
    propagate_version = true,
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// TOML configuration file. Precedence: defaults < file < SLUICE_* environment < flags.
    #[arg(long, global = true, value_name = "FILE", env = crate::config::load::CONFIG_FILE_ENV)]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector: accept events over HTTP and append them durably to the log.
    ///
    /// SIGTERM or SIGINT stops it: the listeners close, requests in flight are answered for up
    /// to server.shutdown_grace, the publishers stop, the logs are closed; then it exits 0.
    #[command(
        after_help = "Examples:\n  sluice serve --config /etc/sluice.toml\n  sluice serve --listen 0.0.0.0:8080 --data-dir /var/lib/sluice --clickhouse-url http://ch:8123\n  SLUICE_LOG__FORMAT=json sluice serve"
    )]
    Serve(ServeArgs),
    /// Look at the write-ahead logs on disk (read-only; safe while the daemon runs).
    #[command(
        subcommand,
        after_help = "Examples:\n  sluice wal status --json\n  sluice wal inspect --partition 0 --limit 5\n  sluice wal tail --json\n  sluice wal verify --data-dir /var/lib/sluice\n  sluice wal replay --from 1000 --to 2000"
    )]
    Wal(WalCommand),
    /// Show the configuration.
    #[command(
        subcommand,
        after_help = "Examples:\n  sluice config show\n  sluice config show --json --config /etc/sluice.toml"
    )]
    Config(ConfigCommand),
    /// The dead-letter store: events that can never load. Run while the daemon is stopped
    /// (the store admits one process at a time).
    #[command(
        subcommand,
        after_help = "Examples:\n  sluice dlq list --reason schema_violation\n  sluice dlq show 1718000000000-0-42-req --json\n  sluice dlq replay --reason adapter_failure\n  sluice dlq purge --older-than 30d"
    )]
    Dlq(DlqCommand),
    /// Create (`db init`) or check (`db check`) the ClickHouse database and events table.
    #[command(
        subcommand,
        after_help = "Examples:\n  sluice db init --clickhouse-url http://127.0.0.1:8123\n  sluice db check --json\n  sluice db init --print-ddl --server-version 26.1"
    )]
    Db(DbCommand),
}

/// `sluice serve` flags; each overrides the file and the environment.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Collector listen address (server.listen). Default 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Prometheus /metrics listen address (metrics.listen). Default 0.0.0.0:9090.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Admin API listen address (admin.listen). Default 127.0.0.1:9091.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Directory of the write-ahead logs (data_dir). Default ./data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// ClickHouse HTTP interface (clickhouse.url). Default http://127.0.0.1:8123.
    #[arg(long, value_name = "URL")]
    pub clickhouse_url: Option<String>,
}

/// `sluice wal …`
#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Per-partition and total counts: appended, unpublished, bytes used, LSNs, checkpoint, oldest unpublished age.
    #[command(
        after_help = "Examples:\n  sluice wal status\n  sluice wal status --data-dir /var/lib/sluice --json"
    )]
    Status(StatusArgs),
    /// Print decoded records (envelopes), one line each.
    #[command(
        after_help = "Examples:\n  sluice wal inspect --limit 10\n  sluice wal inspect --data-dir /var/lib/sluice --partition 0 --from 1000 --limit 10 --json"
    )]
    Inspect(InspectArgs),
    /// Follow new records as they are appended (like `tail -f`), one line each, until
    /// interrupted (or --count records were shown). Read-only; run it beside the daemon.
    #[command(
        after_help = "Examples:\n  sluice wal tail\n  sluice wal tail --partition 0 --lines 0 --json | jq .path\n  sluice wal tail --count 100 --json > sample.jsonl"
    )]
    Tail(TailArgs),
    /// Check every record of every partition; exit 3 and name segment file and offset on corruption.
    #[command(
        after_help = "Examples:\n  sluice wal verify --data-dir /var/lib/sluice\n  sluice wal verify --json || echo \"damaged: see the problems listed\""
    )]
    Verify(VerifyArgs),
    /// Re-publish a range of the log to ClickHouse with the original batch boundaries (the
    /// deduplication tokens make it safe). Works beside a running daemon.
    #[command(
        after_help = "Examples:\n  sluice wal replay --from 1000 --to 2000 --partition 0\n  sluice wal replay --from 1 --json --clickhouse-url http://ch:8123"
    )]
    Replay(WalReplayArgs),
}

/// `sluice wal replay` flags.
#[derive(Debug, Args)]
pub struct WalReplayArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// ClickHouse HTTP interface (clickhouse.url). Default from the configuration.
    #[arg(long, value_name = "URL")]
    pub clickhouse_url: Option<String>,
    /// First LSN to re-publish (clamped to the oldest record held).
    #[arg(long, value_name = "LSN")]
    pub from: u64,
    /// Last LSN to re-publish (default: the newest record).
    #[arg(long, value_name = "LSN")]
    pub to: Option<u64>,
    /// Only this partition (default: every partition).
    #[arg(long, value_name = "N")]
    pub partition: Option<usize>,
    /// One JSON object: a `partitions` array and the totals.
    #[arg(long)]
    pub json: bool,
}

/// `sluice wal tail` flags.
#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Only this partition (default: every partition, including ones created later).
    #[arg(long, value_name = "N")]
    pub partition: Option<usize>,
    /// Start with the newest N records of each partition (0: only records appended from now).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    pub lines: u64,
    /// Stop after showing N records in all, N ≥ 1 (default: follow until interrupted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// How often to look for new records (e.g. 250ms, 2s).
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = parse_interval)]
    pub interval: std::time::Duration,
    /// One JSON object per line, as `wal inspect --json` prints them.
    #[arg(long)]
    pub json: bool,
}

/// A poll interval: a duration from 10ms to 1h.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    let (min, max) = (
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(3600),
    );
    if d < min || d > max {
        return Err(format!("must be between 10ms and 1h, not {text}"));
    }
    Ok(d)
}

/// `sluice dlq …`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per entry (id, reason, attempts, first message), oldest first.
    #[command(
        after_help = "Examples:\n  sluice dlq list\n  sluice dlq list --reason schema_violation --json"
    )]
    List(DlqListArgs),
    /// Every field of one entry, with its raw request decoded.
    #[command(
        after_help = "Examples:\n  sluice dlq show 1718000000000-0-42-req\n  sluice dlq show 1718000000000-0-42-req --json | jq .envelope"
    )]
    Show(DlqShowArgs),
    /// Re-process the selected entries and deliver them to ClickHouse; loaded entries are
    /// removed, failing ones kept with attempts + 1 (exit 3 when any failed again).
    #[command(
        after_help = "Examples:\n  sluice dlq replay --reason adapter_failure\n  sluice dlq replay 1718000000000-0-42-req --json\n  sluice dlq replay --clickhouse-url http://ch:8123"
    )]
    Replay(DlqReplayArgs),
    /// Remove the selected entries.
    #[command(
        after_help = "Examples:\n  sluice dlq purge --older-than 30d\n  sluice dlq purge --reason schema_violation --json\n  sluice dlq purge 1718000000000-0-42-req"
    )]
    Purge(DlqPurgeArgs),
}

/// `sluice dlq list` flags.
#[derive(Debug, Args)]
pub struct DlqListArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Only this failure category (e.g. schema_violation, loader_rejection).
    #[arg(long, value_name = "R")]
    pub reason: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// `sluice dlq show` flags.
#[derive(Debug, Args)]
pub struct DlqShowArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The entry's id, as `dlq list` prints it.
    #[arg(value_name = "ID")]
    pub id: String,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `sluice dlq replay` flags.
#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// ClickHouse HTTP interface (clickhouse.url). Default from the configuration.
    #[arg(long, value_name = "URL")]
    pub clickhouse_url: Option<String>,
    /// Only entries of this failure category.
    #[arg(long, value_name = "R", conflicts_with = "ids")]
    pub reason: Option<String>,
    /// Only these entries (default: every entry).
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// One JSON object with the counts (and the entries that failed again).
    #[arg(long)]
    pub json: bool,
}

/// `sluice dlq purge` flags.
#[derive(Debug, Args)]
pub struct DlqPurgeArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Entries last written longer ago than this (e.g. 30d, 12h).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, conflicts_with = "ids")]
    pub older_than: Option<std::time::Duration>,
    /// Entries of this failure category.
    #[arg(long, value_name = "R", conflicts_with = "ids")]
    pub reason: Option<String>,
    /// These entries.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// One JSON object with the count.
    #[arg(long)]
    pub json: bool,
}

/// Where the logs are.
#[derive(Debug, Args)]
pub struct DataDirArg {
    /// Directory of the write-ahead logs (data_dir). Default from the configuration (./data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `sluice wal status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// One JSON object: totals at top level and a `partitions` array.
    #[arg(long)]
    pub json: bool,
}

/// `sluice wal inspect` flags.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Only this partition (default: every partition, in order).
    #[arg(long, value_name = "N")]
    pub partition: Option<usize>,
    /// First LSN to show in each partition (default: the oldest record held).
    #[arg(long, value_name = "LSN")]
    pub from: Option<u64>,
    /// Most records to show per partition; 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u64,
    /// One JSON object per line (the envelope's fields plus `lsn` and `partition`).
    #[arg(long)]
    pub json: bool,
}

/// `sluice wal verify` flags.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// One JSON object: `ok`, the problem count and a `partitions` array.
    #[arg(long)]
    pub json: bool,
}

/// `sluice config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML, each value with the source it came from
    /// (default, file, env SLUICE_…, flag). Keys, passwords, secrets and tokens are redacted.
    #[command(
        after_help = "Examples:\n  sluice config show --config /etc/sluice.toml\n  SLUICE_WAL__CAPACITY=8GiB sluice config show --listen 0.0.0.0:80\n  sluice config show --json | jq '.[\"wal.capacity\"]'"
    )]
    Show(ShowArgs),
}

/// `sluice config show` flags.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// `{"key": {"value": …, "source": "…"}}` instead of TOML.
    #[arg(long)]
    pub json: bool,
    /// `serve`'s flags, to see the configuration a `serve` with them would use.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `sluice db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the versioned migrations: create the database, `schema_migrations` and the events
    /// table with types chosen for the server's version. Running it again changes nothing.
    #[command(
        after_help = "Examples:\n  sluice db init --clickhouse-url http://127.0.0.1:8123\n  sluice db init --print-ddl --server-version 26.1"
    )]
    Init(DbInitArgs),
    /// Say whether the table has what the daemon needs; exit 3 when it does not.
    #[command(
        after_help = "Examples:\n  sluice db check\n  sluice db check --json --clickhouse-url http://ch:8123"
    )]
    Check(DbCheckArgs),
    /// Write a RowBinary sample batch for a server version (for tests against other engines).
    #[command(hide = true)]
    EncodeSample(DbEncodeSampleArgs),
}

/// Which ClickHouse.
#[derive(Debug, Args)]
pub struct ClickHouseUrlArg {
    /// ClickHouse HTTP interface (clickhouse.url). Default from the configuration.
    #[arg(long, value_name = "URL")]
    pub clickhouse_url: Option<String>,
}

/// `sluice db init` flags.
#[derive(Debug, Args)]
pub struct DbInitArgs {
    #[command(flatten)]
    pub url: ClickHouseUrlArg,
    /// Print the DDL for `--server-version` instead of connecting.
    #[arg(long, requires = "server_version")]
    pub print_ddl: bool,
    /// The server version to print DDL for (e.g. 18.16 or 26.1).
    #[arg(long, value_name = "VERSION")]
    pub server_version: Option<String>,
}

/// `sluice db check` flags.
#[derive(Debug, Args)]
pub struct DbCheckArgs {
    #[command(flatten)]
    pub url: ClickHouseUrlArg,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `sluice db encode-sample` flags.
#[derive(Debug, Args)]
pub struct DbEncodeSampleArgs {
    /// Where to write the RowBinary; the structure goes to FILE.structure, the INSERT's
    /// columns to FILE.columns, the table DDL to FILE.ddl.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The server version whose schema to encode for.
    #[arg(long, value_name = "VERSION", default_value = "26.1")]
    pub server_version: String,
    /// How many events.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub rows: usize,
}

impl Cli {
    /// The configuration values given as flags.
    pub fn overrides(&self) -> Overrides {
        let serve = |a: &ServeArgs| Overrides {
            listen: a.listen,
            metrics_listen: a.metrics_listen,
            admin_listen: a.admin_listen,
            data_dir: a.data_dir.clone(),
            clickhouse_url: a.clickhouse_url.clone(),
        };
        match &self.command {
            Command::Serve(a) => serve(a),
            Command::Db(DbCommand::Init(DbInitArgs { url, .. }))
            | Command::Db(DbCommand::Check(DbCheckArgs { url, .. })) => Overrides {
                clickhouse_url: url.clickhouse_url.clone(),
                ..Overrides::default()
            },
            Command::Db(DbCommand::EncodeSample(_)) => Overrides::default(),
            Command::Config(ConfigCommand::Show(a)) => serve(&a.serve),
            Command::Wal(WalCommand::Replay(a)) => Overrides {
                data_dir: a.dir.data_dir.clone(),
                clickhouse_url: a.clickhouse_url.clone(),
                ..Overrides::default()
            },
            Command::Dlq(DlqCommand::Replay(a)) => Overrides {
                data_dir: a.dir.data_dir.clone(),
                clickhouse_url: a.clickhouse_url.clone(),
                ..Overrides::default()
            },
            Command::Dlq(DlqCommand::List(DlqListArgs { dir, .. }))
            | Command::Dlq(DlqCommand::Show(DlqShowArgs { dir, .. }))
            | Command::Dlq(DlqCommand::Purge(DlqPurgeArgs { dir, .. })) => Overrides {
                data_dir: dir.data_dir.clone(),
                ..Overrides::default()
            },
            Command::Wal(WalCommand::Status(StatusArgs { dir, .. }))
            | Command::Wal(WalCommand::Inspect(InspectArgs { dir, .. }))
            | Command::Wal(WalCommand::Tail(TailArgs { dir, .. }))
            | Command::Wal(WalCommand::Verify(VerifyArgs { dir, .. })) => Overrides {
                data_dir: dir.data_dir.clone(),
                ..Overrides::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_accepted_after_every_subcommand() {
        for args in [
            &["sluice", "serve", "--config", "f.toml"][..],
            &["sluice", "wal", "status", "--config", "f.toml"],
            &["sluice", "wal", "inspect", "--config", "f.toml"],
            &["sluice", "wal", "verify", "--config", "f.toml"],
            &["sluice", "config", "show", "--config", "f.toml"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.config, Some(PathBuf::from("f.toml")), "{args:?}");
        }
    }

    #[test]
    fn serve_flags_become_overrides() {
        let cli = Cli::try_parse_from([
            "sluice",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--metrics-listen",
            "127.0.0.1:2",
            "--data-dir",
            "/d",
            "--clickhouse-url",
            "http://ch:8123",
        ])
        .unwrap();
        let o = cli.overrides();
        assert_eq!(o.listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(o.metrics_listen, Some("127.0.0.1:2".parse().unwrap()));
        assert_eq!(o.data_dir, Some(PathBuf::from("/d")));
        assert_eq!(o.clickhouse_url.as_deref(), Some("http://ch:8123"));
    }

    #[test]
    fn inspect_limit_defaults_to_100() {
        let cli = Cli::try_parse_from(["sluice", "wal", "inspect"]).unwrap();
        let Command::Wal(WalCommand::Inspect(a)) = cli.command else {
            panic!("not inspect")
        };
        assert_eq!(a.limit, 100);
        assert_eq!(a.partition, None);
        assert_eq!(a.from, None);
    }

    /// Every visible subcommand, as the words after `sluice` (`["wal", "status"]`).
    pub(crate) fn subcommand_paths() -> Vec<Vec<String>> {
        fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
            for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                out.push(p.clone());
                walk(sub, p, out);
            }
        }
        let mut out = Vec::new();
        walk(&Cli::command(), Vec::new(), &mut out);
        out
    }

    #[test]
    fn every_subcommand_has_examples_that_parse() {
        let paths = subcommand_paths();
        assert!(paths.len() >= 17, "{paths:?}");
        for path in paths {
            let mut cmd = Cli::command();
            let mut sub = &mut cmd;
            for name in &path {
                sub = sub.find_subcommand_mut(name).unwrap();
            }
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            let examples: Vec<&str> = help
                .split_once("Examples:\n")
                .map(|(_, e)| {
                    e.lines()
                        .filter_map(|l| l.trim().split_once("sluice "))
                        .map(|(_, rest)| rest)
                        .collect()
                })
                .unwrap_or_default();
            assert!(!examples.is_empty(), "{path:?} has no examples: {help}");
            // Each example is a command line the grammar accepts (up to the first pipe).
            for example in examples {
                let line = example.split(['|', '>']).next().unwrap();
                let args = std::iter::once("sluice")
                    .chain(line.split_whitespace().map(|w| w.trim_matches('\'')));
                if let Err(e) = Cli::try_parse_from(args) {
                    panic!("{path:?}: example `sluice {line}` does not parse: {e}");
                }
            }
        }
    }

    #[test]
    fn tail_defaults_to_the_last_10_records_polled_twice_a_second() {
        let cli = Cli::try_parse_from(["sluice", "wal", "tail", "--json"]).unwrap();
        let Command::Wal(WalCommand::Tail(a)) = cli.command else {
            panic!("not tail")
        };
        assert_eq!(a.lines, 10);
        assert_eq!(a.count, None);
        assert_eq!(a.interval, std::time::Duration::from_millis(500));
        assert!(a.json);
        let err = Cli::try_parse_from(["sluice", "wal", "tail", "--interval", "1ms"]).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE as i32);
        let err = Cli::try_parse_from(["sluice", "wal", "tail", "--count", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE as i32);
    }

    #[test]
    fn a_bad_listen_address_is_a_usage_error() {
        let err = Cli::try_parse_from(["sluice", "serve", "--listen", "nope"]).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE as i32);
    }
}
