//! The command-line grammar (clap derive). A stable contract: operators and scripts rely on it.
//!
//! ```text
//! sluice serve       [--config FILE] [--listen ADDR] [--metrics-listen ADDR] [--data-dir DIR] [--clickhouse-url URL]
//! sluice wal status  [--config FILE] [--data-dir DIR] [--json]
//! sluice wal inspect [--config FILE] [--data-dir DIR] [--partition N] [--from LSN] [--limit N] [--json]
//! sluice wal verify  [--config FILE] [--data-dir DIR]
//! sluice config show [--config FILE] [--json] [serve's flags, to preview their effect]
//! sluice --version
//! ```
//!
//! `--config FILE` is accepted by every subcommand (and defaults to `$SLUICE_CONFIG`).
//!
//! # Exit codes
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | runtime error (I/O, a listener could not bind, the log could not be opened, …) |
//! | 2 | usage or configuration error (clap's own parse errors also exit 2) |
//! | 3 | the data has problems: `wal verify` found corruption, or `wal inspect` met records it could not decode |

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// Exit codes of the `sluice` binary (see the module docs).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A runtime error.
    pub const RUNTIME: u8 = 1;
    /// A usage or configuration error.
    pub const USAGE: u8 = 2;
    /// `wal verify` / `wal inspect` found problems in the data.
    pub const PROBLEMS: u8 = 3;
}

/// sluice: a self-hosted event collector that fsyncs every request before acknowledging it.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about,
    propagate_version = true,
    after_help = "Exit codes: 0 success, 1 runtime error, 2 usage or configuration error, \
                  3 problems found in the log (wal verify, wal inspect).\n\
                  Example:\n  sluice serve --config /etc/sluice.toml"
)]
pub struct Cli {
    /// TOML configuration file. Precedence: defaults < file < SLUICE_* environment < flags.
    #[arg(long, global = true, value_name = "FILE", env = crate::config::CONFIG_FILE_ENV)]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector: accept events over HTTP and append them durably to the log.
    #[command(
        after_help = "Example:\n  sluice serve --config /etc/sluice.toml --listen 0.0.0.0:8080 --data-dir /var/lib/sluice"
    )]
    Serve(ServeArgs),
    /// Look at the write-ahead logs on disk (read-only; safe while the daemon runs).
    #[command(
        subcommand,
        after_help = "Examples:\n  sluice wal status --json\n  sluice wal inspect --partition 0 --limit 5\n  sluice wal verify --data-dir /var/lib/sluice"
    )]
    Wal(WalCommand),
    /// Show the configuration.
    #[command(subcommand, after_help = "Example:\n  sluice config show --json")]
    Config(ConfigCommand),
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
    #[command(after_help = "Example:\n  sluice wal status --data-dir /var/lib/sluice --json")]
    Status(StatusArgs),
    /// Print decoded records (envelopes), one line each.
    #[command(
        after_help = "Example:\n  sluice wal inspect --data-dir /var/lib/sluice --partition 0 --from 1000 --limit 10 --json"
    )]
    Inspect(InspectArgs),
    /// Check every record of every partition; exit 3 and name segment file and offset on corruption.
    #[command(after_help = "Example:\n  sluice wal verify --data-dir /var/lib/sluice")]
    Verify(VerifyArgs),
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
}

/// `sluice config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML, each value with the source it came from.
    #[command(
        after_help = "Example:\n  SLUICE_WAL__CAPACITY=8GiB sluice config show --config /etc/sluice.toml --listen 0.0.0.0:80"
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

impl Cli {
    /// The configuration values given as flags.
    pub fn overrides(&self) -> Overrides {
        let serve = |a: &ServeArgs| Overrides {
            listen: a.listen,
            metrics_listen: a.metrics_listen,
            data_dir: a.data_dir.clone(),
            clickhouse_url: a.clickhouse_url.clone(),
        };
        match &self.command {
            Command::Serve(a) => serve(a),
            Command::Config(ConfigCommand::Show(a)) => serve(&a.serve),
            Command::Wal(WalCommand::Status(StatusArgs { dir, .. }))
            | Command::Wal(WalCommand::Inspect(InspectArgs { dir, .. }))
            | Command::Wal(WalCommand::Verify(VerifyArgs { dir })) => Overrides {
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

    #[test]
    fn a_bad_listen_address_is_a_usage_error() {
        let err = Cli::try_parse_from(["sluice", "serve", "--listen", "nope"]).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE as i32);
    }
}
