//! `sluice db init` and `sluice db check`: the events table, created by versioned migrations,
//! and the comparison of a table with what the daemon needs.
//!
//! # Migrations
//!
//! Each migration has a version and a name and is recorded in `<database>.schema_migrations`
//! (`version UInt32, name String, applied_at DateTime`) after its statements succeed. `init`
//! creates the database and that table if needed, then applies, in order, every migration not
//! recorded yet; a second `init` changes nothing. A migration interrupted before it was
//! recorded is safe to re-run: `CREATE` statements are written `IF NOT EXISTS`, and `ALTER`s
//! are computed from the table's columns as the server describes them just before (ClickHouse
//! 18.16 has no `ADD COLUMN IF NOT EXISTS`), so a column already there is not added again.
//!
//! Migration 1 creates the table with every column of [`COLUMNS`] as this build knows them, so
//! on a fresh server later migrations find nothing left to do; they exist for tables created by
//! older builds.
//!
//! | Version | Name | What |
//! |---|---|---|
//! | 1 | `create_events` | the events table |
//! | 2 | `add_source_columns` | the columns of the Segment / pycolytics / `/collect` sources ([`SOURCE_COLUMNS`]), each placed after the column it follows in [`COLUMNS`]; `source` gets `DEFAULT 'snowplow'` there, so rows stored before the migration (Snowplow was the only source) read as `snowplow` |
//!
//! # The events table (migration 1)
//!
//! - Engine `MergeTree`, `PARTITION BY toYYYYMM(collector_tstamp)`: monthly partitions are few
//!   (cheap merges, easy retention by `DROP PARTITION`) and prune time-range queries.
//! - `ORDER BY (app_id, event, toDate(collector_tstamp), event_id)`: the common questions are
//!   "for this app, how many page views / which events, per day"; filtering by app and event
//!   type reads a narrow range of the sorting key, the day keeps each range in time order, and
//!   `event_id` last makes the key unique per event. Sorting-key columns cannot be `Nullable`
//!   on most servers, so `app_id` is a non-Nullable string (empty when the tracker sent none).
//! - Types by server version ([`super::version::Features`]): `DateTime64(3, 'UTC')` from 20.1
//!   (else `DateTime('UTC')`, seconds); `LowCardinality(…)` for few-valued text from 19.3 (else
//!   plain); `Nullable` for optional columns, plain for required ones; booleans as `UInt8`.
//! - `SETTINGS non_replicated_deduplication_window = 1000` where supported (21.5+), so retried
//!   inserts carrying the same `insert_deduplication_token` are dropped.

use serde::{Deserialize, Serialize};

use super::client::{CallError, Client};
use super::encode::{compatible, quote_ident, TargetColumn};
use super::types::ChType;
use super::version::{Features, ServerVersion};
use super::{ClickHouseConfig, SinkError};
use crate::event::{Column, Kind, COLUMNS};

/// How many recent insert blocks a plain MergeTree remembers for deduplication.
pub const DEDUP_WINDOW: u32 = 1000;

/// The name of the migrations table.
pub const MIGRATIONS_TABLE: &str = "schema_migrations";

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Increasing from 1.
    pub version: u32,
    /// Short, stable name.
    pub name: &'static str,
    /// Its statements for a server with these features, given the events table as it is
    /// before the migration (`None` when it does not exist).
    pub statements: fn(&ClickHouseConfig, Features, Option<&TableInfo>) -> Vec<String>,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create_events",
        statements: |c, f, _| vec![events_ddl(c, f)],
    },
    Migration {
        version: 2,
        name: "add_source_columns",
        statements: |c, f, table| {
            table
                .and_then(|t| add_columns_ddl(c, f, &t.columns, SOURCE_COLUMNS))
                .into_iter()
                .collect()
        },
    },
];

/// The columns migration 2 adds to tables created before the JSON sources existed.
pub const SOURCE_COLUMNS: &[&str] = &[
    "message_id",
    "app_version",
    "source",
    "stream",
    "anonymous_id",
    "properties",
    "traits",
    "context",
];

/// The `DEFAULT` an added column gets, so that rows stored before it read sensibly.
fn added_default(name: &str) -> Option<&'static str> {
    (name == "source").then_some("'snowplow'")
}

/// One `ALTER TABLE … ADD COLUMN …` adding those of `names` the table lacks, each `AFTER` the
/// nearest column that precedes it in [`COLUMNS`] and exists by then (so a migrated table has
/// the column order of a new one); `None` when nothing is missing.
pub fn add_columns_ddl(
    config: &ClickHouseConfig,
    f: Features,
    table: &[TableColumn],
    names: &[&str],
) -> Option<String> {
    let mut present: Vec<&str> = table.iter().map(|c| c.name.as_str()).collect();
    let mut clauses = Vec::new();
    for (i, col) in COLUMNS.iter().enumerate() {
        if !names.contains(&col.name) || present.contains(&col.name) {
            continue;
        }
        let mut clause = format!(
            "ADD COLUMN {} {}",
            quote_ident(col.name),
            column_type(col, f)
        );
        if let Some(default) = added_default(col.name) {
            clause.push_str(&format!(" DEFAULT {default}"));
        }
        if let Some(prev) = COLUMNS[..i]
            .iter()
            .rev()
            .find(|p| present.contains(&p.name))
        {
            clause.push_str(&format!(" AFTER {}", quote_ident(prev.name)));
        }
        present.push(col.name);
        clauses.push(clause);
    }
    (!clauses.is_empty()).then(|| {
        format!(
            "ALTER TABLE {} {}",
            config.qualified_table(),
            clauses.join(", ")
        )
    })
}

/// A column of the table as the server describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableColumn {
    /// Name.
    pub name: String,
    /// Type as the server prints it.
    pub type_name: String,
    /// `DEFAULT`, `MATERIALIZED`, `ALIAS` or empty.
    pub default_kind: String,
}

/// The table as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Its columns, in table order.
    pub columns: Vec<TableColumn>,
    /// Engine name (`MergeTree`, `ReplicatedMergeTree`, …).
    pub engine: String,
    /// The engine clause with its settings.
    pub engine_full: String,
}

impl TableInfo {
    /// Whether the table drops a re-inserted block: replicated engines always, plain MergeTree
    /// with a non-zero `non_replicated_deduplication_window`.
    pub fn deduplicates(&self) -> bool {
        if self.engine.starts_with("Replicated") {
            return true;
        }
        let Some(at) = self.engine_full.find("non_replicated_deduplication_window") else {
            return false;
        };
        let rest = &self.engine_full[at + "non_replicated_deduplication_window".len()..];
        let digits: String = rest
            .trim_start_matches([' ', '='])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u64>().is_ok_and(|n| n > 0)
    }
}

/// A shared column sluice cannot write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnProblem {
    /// The column.
    pub column: String,
    /// Its type in the table.
    pub ty: String,
    /// Why.
    pub reason: String,
}

/// How a table's columns meet [`COLUMNS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Columns to insert, in [`COLUMNS`] order.
    pub columns: Vec<TargetColumn>,
    /// Required columns the table lacks (or cannot take inserts into).
    pub missing_required: Vec<&'static str>,
    /// Optional columns the table lacks: not written.
    pub missing_optional: Vec<&'static str>,
    /// Shared columns whose type sluice cannot write.
    pub incompatible: Vec<ColumnProblem>,
    /// Table columns sluice does not fill (they get their defaults).
    pub extra: Vec<String>,
}

/// Matches a table's columns with [`COLUMNS`]. `MATERIALIZED` and `ALIAS` columns cannot be
/// inserted into, so they count as absent.
pub fn plan(table: &[TableColumn]) -> Plan {
    let mut out = Plan {
        columns: Vec::new(),
        missing_required: Vec::new(),
        missing_optional: Vec::new(),
        incompatible: Vec::new(),
        extra: Vec::new(),
    };
    let insertable =
        |c: &&TableColumn| c.default_kind != "MATERIALIZED" && c.default_kind != "ALIAS";
    for col in COLUMNS {
        match table.iter().filter(insertable).find(|t| t.name == col.name) {
            None if col.required => out.missing_required.push(col.name),
            None => out.missing_optional.push(col.name),
            Some(t) => {
                let ty = ChType::parse(&t.type_name);
                match compatible(col.kind, &ty) {
                    Ok(()) => out.columns.push(TargetColumn {
                        name: col.name.to_string(),
                        ty,
                        kind: col.kind,
                    }),
                    Err(reason) => out.incompatible.push(ColumnProblem {
                        column: col.name.to_string(),
                        ty: t.type_name.clone(),
                        reason,
                    }),
                }
            }
        }
    }
    for t in table {
        if !COLUMNS.iter().any(|c| c.name == t.name) {
            out.extra.push(t.name.clone());
        }
    }
    out
}

/// Every column of the table `sluice db init` creates on a server with `f`, as the encoder
/// sees it (for benchmarks and tests that encode without a server).
pub fn created_columns(f: Features) -> Vec<TargetColumn> {
    COLUMNS
        .iter()
        .map(|c| TargetColumn {
            name: c.name.to_string(),
            ty: ChType::parse(&column_type(c, f)),
            kind: c.kind,
        })
        .collect()
}

/// The ClickHouse type sluice gives a column on a server with `f`.
pub fn column_type(col: &Column, f: Features) -> String {
    let lc = |t: &str| {
        if f.low_cardinality {
            format!("LowCardinality({t})")
        } else {
            t.to_string()
        }
    };
    let nullable = |t: &str| {
        if col.required {
            t.to_string()
        } else {
            format!("Nullable({t})")
        }
    };
    // In the sorting key: never Nullable.
    if col.name == "app_id" {
        return lc("String");
    }
    match col.kind {
        Kind::Uuid => nullable("UUID"),
        Kind::Text | Kind::Json => nullable("String"),
        Kind::LowCardinalityText => lc(&nullable("String")),
        Kind::Timestamp if f.datetime64 => nullable("DateTime64(3, 'UTC')"),
        Kind::Timestamp => nullable("DateTime('UTC')"),
        Kind::Int => nullable("Int64"),
        Kind::UInt => nullable("UInt64"),
        Kind::Float => nullable("Float64"),
        Kind::Bool => nullable("UInt8"),
    }
}

/// `CREATE TABLE IF NOT EXISTS` for the events table on a server with `f`.
pub fn events_ddl(config: &ClickHouseConfig, f: Features) -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("    {} {}", quote_ident(c.name), column_type(c, f)))
        .collect();
    let mut settings = vec!["index_granularity = 8192".to_string()];
    if f.non_replicated_dedup_window {
        settings.push(format!(
            "non_replicated_deduplication_window = {DEDUP_WINDOW}"
        ));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {}\n(\n{}\n)\nENGINE = MergeTree\n\
         PARTITION BY toYYYYMM(collector_tstamp)\n\
         ORDER BY (app_id, event, toDate(collector_tstamp), event_id)\n\
         SETTINGS {}",
        config.qualified_table(),
        cols.join(",\n"),
        settings.join(", ")
    )
}

fn migrations_table_ddl(config: &ClickHouseConfig) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (version UInt32, name String, applied_at DateTime) \
         ENGINE = MergeTree ORDER BY version",
        quote_ident(&config.database),
        quote_ident(MIGRATIONS_TABLE)
    )
}

fn database_ddl(config: &ClickHouseConfig) -> String {
    format!(
        "CREATE DATABASE IF NOT EXISTS {}",
        quote_ident(&config.database)
    )
}

/// Every statement `init` would run on an empty server of `version`, in order (the
/// bookkeeping INSERTs into `schema_migrations` left out): for `db init --print-ddl`. Later
/// migrations find the table migration 1 creates complete, so they add nothing here.
pub fn ddl(config: &ClickHouseConfig, version: ServerVersion) -> Vec<String> {
    let f = version.features();
    let mut out = vec![database_ddl(config), migrations_table_ddl(config)];
    let created = TableInfo {
        columns: COLUMNS
            .iter()
            .map(|c| TableColumn {
                name: c.name.to_string(),
                type_name: column_type(c, f),
                default_kind: String::new(),
            })
            .collect(),
        engine: "MergeTree".into(),
        engine_full: String::new(),
    };
    for m in MIGRATIONS {
        let table = (m.version > 1).then_some(&created);
        out.extend((m.statements)(config, f, table));
    }
    out
}

/// `SELECT version()`.
pub async fn server_version(
    client: &Client,
    config: &ClickHouseConfig,
) -> Result<ServerVersion, SinkError> {
    let text = client
        .query("SELECT version()")
        .await
        .map_err(|e| SinkError::from_call(config, e))?;
    text.trim()
        .parse()
        .map_err(|e| SinkError::Server { reason: e })
}

/// The table's columns and engine, or `None` when it does not exist.
pub async fn read_table(
    client: &Client,
    config: &ClickHouseConfig,
) -> Result<Option<TableInfo>, SinkError> {
    #[derive(Deserialize)]
    struct Col {
        name: String,
        #[serde(rename = "type")]
        type_name: String,
        default_kind: String,
    }
    #[derive(Deserialize)]
    struct Tab {
        engine: String,
        engine_full: String,
    }
    let call = |e: CallError| SinkError::from_call(config, e);
    let (db, table) = (sql_string(&config.database), sql_string(&config.table));
    let tables = client
        .query(&format!(
            "SELECT engine, engine_full FROM system.tables WHERE database = {db} AND name = {table} \
             FORMAT JSONEachRow"
        ))
        .await
        .map_err(call)?;
    let Some(line) = tables.lines().find(|l| !l.trim().is_empty()) else {
        return Ok(None);
    };
    let tab: Tab = serde_json::from_str(line).map_err(|e| SinkError::Server {
        reason: format!("unexpected system.tables row {line}: {e}"),
    })?;
    let text = client
        .query(&format!(
            "SELECT name, type, default_kind FROM system.columns \
             WHERE database = {db} AND table = {table} FORMAT JSONEachRow"
        ))
        .await
        .map_err(call)?;
    let mut columns = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let c: Col = serde_json::from_str(line).map_err(|e| SinkError::Server {
            reason: format!("unexpected system.columns row {line}: {e}"),
        })?;
        columns.push(TableColumn {
            name: c.name,
            type_name: c.type_name,
            default_kind: c.default_kind,
        });
    }
    Ok(Some(TableInfo {
        columns,
        engine: tab.engine,
        engine_full: tab.engine_full,
    }))
}

/// A SQL string literal.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// What `db init` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitReport {
    /// The server's version.
    pub server_version: String,
    /// Migrations applied now: (version, name).
    pub applied: Vec<(u32, String)>,
    /// Migrations that were already recorded.
    pub already_applied: Vec<u32>,
}

/// Creates the database, the migrations table and every missing migration.
pub async fn init(config: &ClickHouseConfig) -> Result<InitReport, SinkError> {
    let client = Client::new(config).map_err(|reason| SinkError::Config { reason })?;
    let version = server_version(&client, config).await?;
    let f = version.features();
    let run = |sql: String| {
        let client = client.clone();
        async move {
            client
                .query(&sql)
                .await
                .map_err(|e| SinkError::from_call(config, e))
        }
    };
    run(database_ddl(config)).await?;
    run(migrations_table_ddl(config)).await?;
    let recorded = run(format!(
        "SELECT version FROM {}.{} FORMAT TabSeparated",
        quote_ident(&config.database),
        quote_ident(MIGRATIONS_TABLE)
    ))
    .await?;
    let recorded: Vec<u32> = recorded
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut report = InitReport {
        server_version: version.to_string(),
        applied: Vec::new(),
        already_applied: Vec::new(),
    };
    for m in MIGRATIONS {
        if recorded.contains(&m.version) {
            report.already_applied.push(m.version);
            continue;
        }
        let table = read_table(&client, config).await?;
        for sql in (m.statements)(config, f, table.as_ref()) {
            run(sql).await?;
        }
        run(format!(
            "INSERT INTO {}.{} (version, name, applied_at) VALUES ({}, {}, now())",
            quote_ident(&config.database),
            quote_ident(MIGRATIONS_TABLE),
            m.version,
            sql_string(m.name)
        ))
        .await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        report.applied.push((m.version, m.name.to_string()));
    }
    Ok(report)
}

/// What `db check` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The server's version.
    pub server_version: String,
    /// `db.table`.
    pub table: String,
    /// Whether the table exists.
    pub table_exists: bool,
    /// Required columns missing: the daemon will not start.
    pub missing_required: Vec<String>,
    /// Optional columns missing: not written (a warning).
    pub missing_optional: Vec<String>,
    /// Shared columns of a type sluice cannot write: the daemon will not start.
    pub incompatible: Vec<ColumnProblem>,
    /// Table columns sluice does not fill (they get their defaults).
    pub extra: Vec<String>,
    /// Whether retried inserts are deduplicated (exactly-once) on this server and table.
    pub deduplicates: bool,
    /// Migrations recorded in `schema_migrations`.
    pub migrations: Vec<u32>,
}

impl CheckReport {
    /// Whether the daemon can publish into this table.
    pub fn ok(&self) -> bool {
        self.table_exists && self.missing_required.is_empty() && self.incompatible.is_empty()
    }
}

/// Compares the configured table with what the daemon needs.
pub async fn check(config: &ClickHouseConfig) -> Result<CheckReport, SinkError> {
    let client = Client::new(config).map_err(|reason| SinkError::Config { reason })?;
    let version = server_version(&client, config).await?;
    let info = read_table(&client, config).await?;
    let migrations = match client
        .query(&format!(
            "SELECT version FROM {}.{} ORDER BY version FORMAT TabSeparated",
            quote_ident(&config.database),
            quote_ident(MIGRATIONS_TABLE)
        ))
        .await
    {
        Ok(text) => text.lines().filter_map(|l| l.trim().parse().ok()).collect(),
        Err(_) => Vec::new(),
    };
    let mut report = CheckReport {
        server_version: version.to_string(),
        table: config.qualified_table(),
        table_exists: info.is_some(),
        missing_required: Vec::new(),
        missing_optional: Vec::new(),
        incompatible: Vec::new(),
        extra: Vec::new(),
        deduplicates: false,
        migrations,
    };
    if let Some(info) = info {
        let p = plan(&info.columns);
        report.missing_required = p.missing_required.iter().map(|s| s.to_string()).collect();
        report.missing_optional = p.missing_optional.iter().map(|s| s.to_string()).collect();
        report.incompatible = p.incompatible;
        report.extra = p.extra;
        report.deduplicates = version.features().insert_deduplication_token && info.deduplicates();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_get_datetime_and_plain_strings() {
        let ddl = events_ddl(
            &ClickHouseConfig::default(),
            ServerVersion::new(18, 16).features(),
        );
        assert!(ddl.contains("`collector_tstamp` DateTime('UTC')"), "{ddl}");
        assert!(
            ddl.contains("`dvce_created_tstamp` Nullable(DateTime('UTC'))"),
            "{ddl}"
        );
        assert!(!ddl.contains("LowCardinality") && !ddl.contains("DateTime64"));
        assert!(!ddl.contains("non_replicated_deduplication_window"));
        assert!(ddl.contains("`app_id` String,"), "{ddl}");
    }

    #[test]
    fn modern_servers_get_datetime64_low_cardinality_and_a_dedup_window() {
        let ddl = events_ddl(
            &ClickHouseConfig::default(),
            ServerVersion::new(26, 1).features(),
        );
        assert!(
            ddl.contains("`collector_tstamp` DateTime64(3, 'UTC')"),
            "{ddl}"
        );
        assert!(
            ddl.contains("`platform` LowCardinality(Nullable(String))"),
            "{ddl}"
        );
        assert!(ddl.contains("`event` LowCardinality(String)"), "{ddl}");
        assert!(ddl.contains("non_replicated_deduplication_window = 1000"));
    }

    #[test]
    fn every_generated_type_is_one_the_encoder_writes() {
        for v in [ServerVersion::new(18, 16), ServerVersion::new(26, 1)] {
            for c in COLUMNS {
                let ty = ChType::parse(&column_type(c, v.features()));
                assert_eq!(compatible(c.kind, &ty), Ok(()), "{} on {v}", c.name);
                assert_eq!(
                    ty.is_nullable(),
                    !c.required && c.name != "app_id",
                    "{}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn the_plan_names_missing_and_incompatible_columns() {
        let table = vec![
            TableColumn {
                name: "event_id".into(),
                type_name: "UUID".into(),
                default_kind: String::new(),
            },
            TableColumn {
                name: "collector_tstamp".into(),
                type_name: "Array(String)".into(),
                default_kind: String::new(),
            },
            TableColumn {
                name: "v_collector".into(),
                type_name: "String".into(),
                default_kind: "MATERIALIZED".into(),
            },
            TableColumn {
                name: "mine".into(),
                type_name: "UInt8".into(),
                default_kind: "DEFAULT".into(),
            },
        ];
        let p = plan(&table);
        assert_eq!(p.missing_required, vec!["event", "v_collector"]);
        assert_eq!(p.incompatible.len(), 1);
        assert_eq!(p.incompatible[0].column, "collector_tstamp");
        assert_eq!(p.extra, vec!["mine"]);
        assert_eq!(p.columns.len(), 1);
    }

    fn columns_except(skip: &[&str]) -> Vec<TableColumn> {
        let f = ServerVersion::new(18, 16).features();
        COLUMNS
            .iter()
            .filter(|c| !skip.contains(&c.name))
            .map(|c| TableColumn {
                name: c.name.into(),
                type_name: column_type(c, f),
                default_kind: String::new(),
            })
            .collect()
    }

    #[test]
    fn migration_2_adds_the_source_columns_after_their_neighbours() {
        let c = ClickHouseConfig::default();
        let f = ServerVersion::new(18, 16).features();
        let before = TableInfo {
            columns: columns_except(SOURCE_COLUMNS),
            engine: "MergeTree".into(),
            engine_full: String::new(),
        };
        let stmts = (MIGRATIONS[1].statements)(&c, f, Some(&before));
        assert_eq!(stmts.len(), 1, "{stmts:?}");
        let sql = &stmts[0];
        assert!(sql.starts_with(&format!("ALTER TABLE {} ADD COLUMN", c.qualified_table())));
        for clause in [
            "ADD COLUMN `message_id` Nullable(String) AFTER `event_id`",
            "ADD COLUMN `app_version` Nullable(String) AFTER `app_id`",
            "ADD COLUMN `source` Nullable(String) DEFAULT 'snowplow' AFTER `platform`",
            "ADD COLUMN `stream` Nullable(String) AFTER `source`",
            "ADD COLUMN `anonymous_id` Nullable(String) AFTER `user_id`",
            "ADD COLUMN `properties` Nullable(String) AFTER `unstruct_event`",
            "ADD COLUMN `traits` Nullable(String) AFTER `properties`",
            "ADD COLUMN `context` Nullable(String) AFTER `traits`",
        ] {
            assert!(sql.contains(clause), "{clause}: {sql}");
        }
        assert_eq!(sql.matches("ADD COLUMN").count(), SOURCE_COLUMNS.len());
        // Applying the ALTER gives a table whose columns match a new one's, in order.
        let modern = ServerVersion::new(26, 1).features();
        let sql = add_columns_ddl(&c, modern, &before.columns, SOURCE_COLUMNS).unwrap();
        assert!(sql.contains(
            "`source` LowCardinality(Nullable(String)) DEFAULT 'snowplow' AFTER `platform`"
        ));
    }

    #[test]
    fn migration_2_adds_only_what_is_missing_and_nothing_to_a_new_table() {
        let c = ClickHouseConfig::default();
        let f = ServerVersion::new(18, 16).features();
        let partial = TableInfo {
            columns: columns_except(&["traits", "stream"]),
            engine: "MergeTree".into(),
            engine_full: String::new(),
        };
        let stmts = (MIGRATIONS[1].statements)(&c, f, Some(&partial));
        assert_eq!(
            stmts,
            vec![format!(
                "ALTER TABLE {} ADD COLUMN `stream` Nullable(String) AFTER `source`, \
                 ADD COLUMN `traits` Nullable(String) AFTER `properties`",
                c.qualified_table()
            )]
        );
        let full = TableInfo {
            columns: columns_except(&[]),
            ..partial
        };
        assert!((MIGRATIONS[1].statements)(&c, f, Some(&full)).is_empty());
        assert!((MIGRATIONS[1].statements)(&c, f, None).is_empty());
        let all = ddl(&c, ServerVersion::new(18, 16));
        assert_eq!(all.len(), 3, "{all:?}");
        for col in SOURCE_COLUMNS {
            assert!(all[2].contains(&format!("`{col}` ")), "{col}");
        }
    }

    #[test]
    fn dedup_is_read_from_the_engine() {
        let t = |engine: &str, full: &str| TableInfo {
            columns: vec![],
            engine: engine.into(),
            engine_full: full.into(),
        };
        assert!(t(
            "MergeTree",
            "MergeTree ORDER BY x SETTINGS non_replicated_deduplication_window = 1000"
        )
        .deduplicates());
        assert!(!t(
            "MergeTree",
            "MergeTree ORDER BY x SETTINGS non_replicated_deduplication_window = 0"
        )
        .deduplicates());
        assert!(!t("MergeTree", "MergeTree ORDER BY x").deduplicates());
        assert!(t("ReplicatedMergeTree", "").deduplicates());
    }
}
