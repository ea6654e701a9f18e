//! `sluice db init|check` (and the hidden `db encode-sample`): the ClickHouse side of setup.
//!
//! `init` applies the versioned migrations ([`crate::sink::clickhouse::migrate`]); with
//! `--print-ddl --server-version V` it prints the statements for that version without
//! connecting. `check` compares the table with what the daemon needs and returns
//! [`Outcome::ProblemsFound`] (exit 3) when the daemon could not publish into it.

use std::io::{self, Write};

use super::Outcome;
use crate::cli::DbCommand;
use crate::config::Config;
use crate::sink::clickhouse::encode::{Encoder, TargetColumn};
use crate::sink::clickhouse::migrate::{self, TableColumn};
use crate::sink::clickhouse::version::ServerVersion;
use crate::sink::clickhouse::{sample, SinkError};

/// Why a `db` command could not run.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// ClickHouse could not be used.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// `--server-version` is not a version.
    #[error("--server-version: {0}")]
    BadVersion(String),
    /// Writing the report or a file failed.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

impl DbError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            DbError::Sink(e) => e.code(),
            DbError::BadVersion(_) => "bad_version",
            DbError::Output(_) => "output",
        }
    }
}

/// Runs one `db` subcommand, writing its report to `out`.
pub async fn run(
    command: &DbCommand,
    config: &Config,
    out: &mut dyn Write,
) -> Result<Outcome, DbError> {
    let ch = &config.clickhouse;
    match command {
        DbCommand::Init(args) if args.print_ddl => {
            let v = parse_version(args.server_version.as_deref().unwrap_or_default())?;
            for sql in migrate::ddl(ch, v) {
                writeln!(out, "{sql};\n")?;
            }
            Ok(Outcome::Clean)
        }
        DbCommand::Init(_) => {
            let r = migrate::init(ch).await?;
            for (v, name) in &r.applied {
                writeln!(out, "applied migration {v} ({name})")?;
            }
            if r.applied.is_empty() {
                writeln!(
                    out,
                    "{} is up to date (ClickHouse {}, migrations {:?} already applied)",
                    ch.qualified_table(),
                    r.server_version,
                    r.already_applied
                )?;
            } else {
                writeln!(
                    out,
                    "{} is ready (ClickHouse {})",
                    ch.qualified_table(),
                    r.server_version
                )?;
            }
            Ok(Outcome::Clean)
        }
        DbCommand::Check(args) => {
            let r = migrate::check(ch).await?;
            if args.json {
                let mut v = serde_json::to_value(&r).map_err(io::Error::other)?;
                v["ok"] = r.ok().into();
                writeln!(out, "{v}")?;
            } else {
                let verdict = if r.ok() { "OK" } else { "NOT USABLE" };
                writeln!(
                    out,
                    "ClickHouse {}, table {}: {verdict}",
                    r.server_version, r.table
                )?;
                if !r.table_exists {
                    writeln!(out, "  the table does not exist: run `sluice db init`")?;
                }
                for c in &r.missing_required {
                    writeln!(out, "  missing required column: {c}")?;
                }
                for p in &r.incompatible {
                    writeln!(out, "  column {} has type {}: {}", p.column, p.ty, p.reason)?;
                }
                if !r.missing_optional.is_empty() {
                    writeln!(
                        out,
                        "  warning: optional columns absent (not written): {}",
                        r.missing_optional.join(", ")
                    )?;
                }
                if !r.extra.is_empty() {
                    writeln!(
                        out,
                        "  columns sluice does not fill (get their defaults): {}",
                        r.extra.join(", ")
                    )?;
                }
                if r.table_exists {
                    let dedup = if r.deduplicates {
                        "exactly-once (insert dedup tokens)"
                    } else {
                        "at-least-once (no insert deduplication on this server/table)"
                    };
                    writeln!(out, "  delivery: {dedup}")?;
                    writeln!(out, "  migrations applied: {:?}", r.migrations)?;
                }
            }
            Ok(if r.ok() {
                Outcome::Clean
            } else {
                Outcome::ProblemsFound
            })
        }
        DbCommand::EncodeSample(args) => {
            let v = parse_version(&args.server_version)?;
            let f = v.features();
            let table: Vec<TableColumn> = crate::event::COLUMNS
                .iter()
                .map(|c| TableColumn {
                    name: c.name.to_string(),
                    type_name: migrate::column_type(c, f),
                    default_kind: String::new(),
                })
                .collect();
            let columns: Vec<TargetColumn> = migrate::plan(&table).columns;
            let encoder = Encoder::new(columns);
            let encoded = encoder.encode(&sample::events(args.rows));
            let path = |ext: &str| {
                let mut p = args.out.clone().into_os_string();
                p.push(ext);
                std::path::PathBuf::from(p)
            };
            std::fs::write(&args.out, &encoded.data)?;
            std::fs::write(path(".structure"), encoder.structure())?;
            std::fs::write(path(".columns"), encoder.column_list())?;
            std::fs::write(path(".ddl"), migrate::events_ddl(ch, f))?;
            writeln!(
                out,
                "wrote {} rows ({} bytes, {} rejected) to {}",
                encoded.accepted().len(),
                encoded.data.len(),
                encoded.rejected.len(),
                args.out.display()
            )?;
            Ok(if encoded.rejected.is_empty() {
                Outcome::Clean
            } else {
                Outcome::ProblemsFound
            })
        }
    }
}

fn parse_version(s: &str) -> Result<ServerVersion, DbError> {
    s.parse().map_err(DbError::BadVersion)
}
